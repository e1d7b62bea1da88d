//! Validation of a cluster configuration before anything is changed. It
//! collects *every* problem, so an operator fixes them all in one round.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::types::{Configuration, Role};

/// What validation needs to know about this agent and host.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// This agent's name: nodes with this `instance` run here.
    pub agent_name: String,
    /// The port this agent listens on, if it listens.
    pub agent_port: Option<u16>,
    /// CPUs this host has (`cpu_affinity` must be below this).
    pub cpus: usize,
    /// The nodes use the ZeroMQ backend (or may: it is still being asked),
    /// so the manager's host needs the broker's two ports.
    pub zeromq: bool,
}

/// Longest single argument or environment entry the kernel passes to a
/// program (Linux `MAX_ARG_STRLEN`, 32 pages).
pub const MAX_EXEC_STRING_BYTES: usize = 128 * 1024;
/// Most bytes of arguments and environment a node may add (Linux allows
/// about 2 MiB in all, the agent's own environment included).
pub const MAX_EXEC_TOTAL_BYTES: usize = 1024 * 1024;

/// Whether `name` can be a node name (and so a directory name).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks the whole configuration; returns every problem, sorted.
pub fn validate(config: &Configuration, host: &HostFacts) -> Result<(), Vec<String>> {
    let mut problems = BTreeSet::new();

    let mut instances = BTreeMap::new();
    for inst in &config.instances {
        if instances.insert(inst.name.as_str(), inst).is_some() {
            problems.insert(format!("duplicate instance name {:?}", inst.name));
        }
    }

    let mut names = BTreeSet::new();
    let mut ports: BTreeMap<(&str, u16), &str> = BTreeMap::new();
    for node in &config.nodes {
        let n = &node.name;
        if !names.insert(n.as_str()) {
            problems.insert(format!("duplicate node name {n:?}"));
        }
        if !valid_node_name(n) {
            problems.insert(format!(
                "node name {n:?} is invalid: use 1 or more of A-Z a-z 0-9 _ . - (not \".\" or \"..\")"
            ));
        }
        let instance = instances.get(node.instance.as_str());
        if instance.is_none() {
            problems.insert(format!(
                "node {n:?} names instance {:?}, which is not declared",
                node.instance
            ));
        }
        if node.role == Role::None {
            problems.insert(format!("node {n:?} has no cluster role (NONE)"));
        }
        if matches!(node.role, Role::Manager | Role::Logger) && node.p.is_none() {
            problems.insert(format!(
                "node {n:?} is a {} and needs a port",
                if node.role == Role::Manager {
                    "manager"
                } else {
                    "logger"
                }
            ));
        }
        if let Some(p) = node.p {
            if let Some(other) = ports.insert((node.instance.as_str(), p.number), n) {
                problems.insert(format!(
                    "nodes {other:?} and {n:?} of instance {:?} both use port {p}",
                    node.instance
                ));
            }
            let instance_port = instance.and_then(|i| i.listen_port).map(|lp| lp.number);
            let own_port = if node.instance == host.agent_name {
                host.agent_port
            } else {
                None
            };
            if instance_port == Some(p.number) || own_port == Some(p.number) {
                problems.insert(format!(
                    "node {n:?} uses port {p}, the agent's own port on instance {:?}",
                    node.instance
                ));
            }
        }
        if node.instance == host.agent_name {
            if let Some(cpu) = node.cpu_affinity {
                let ok = usize::try_from(cpu).is_ok_and(|c| c < host.cpus);
                if !ok {
                    problems.insert(format!(
                        "node {n:?} asks for cpu_affinity {cpu}, but this host has CPUs 0-{}",
                        host.cpus.saturating_sub(1)
                    ));
                }
            }
        }
        for (key, value) in &node.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                problems.insert(format!(
                    "node {n:?} has env key {key:?}: keys must be non-empty without '=' or NUL"
                ));
            }
            if value.contains('\0') {
                problems.insert(format!("node {n:?} has a NUL byte in env {key:?}"));
            }
        }
        let mut args: Vec<&str> = Vec::new();
        args.extend(node.scripts.iter().flatten().map(String::as_str));
        args.extend(node.interface.as_deref());
        for opt in node.options.iter().flatten() {
            if opt.name.is_empty() || opt.name.contains('=') {
                problems.insert(format!(
                    "node {n:?} has option name {:?}: names must be non-empty without '='",
                    opt.name
                ));
            }
            args.push(&opt.name);
            args.push(&opt.value);
        }
        if args.iter().any(|a| a.contains('\0')) {
            problems.insert(format!(
                "node {n:?} has a NUL byte in its scripts, interface or options"
            ));
        }
        let env_entries = node.env.iter().map(|(k, v)| k.len() + v.len() + 2);
        let longest = env_entries
            .clone()
            .chain(args.iter().map(|a| a.len() + 1))
            .max()
            .unwrap_or(0);
        if longest > MAX_EXEC_STRING_BYTES {
            problems.insert(format!(
                "node {n:?} has an env entry, script, interface or option of {longest} bytes; at most {MAX_EXEC_STRING_BYTES} can be passed to a program"
            ));
        }
        let total: usize =
            env_entries.sum::<usize>() + args.iter().map(|a| a.len() + 1).sum::<usize>();
        if total > MAX_EXEC_TOTAL_BYTES {
            problems.insert(format!(
                "node {n:?} has {total} bytes of env and arguments; at most {MAX_EXEC_TOTAL_BYTES} are allowed"
            ));
        }
        if node.interface.as_deref() == Some("") {
            problems.insert(format!("node {n:?} has an empty interface"));
        }
    }

    // A Zeek cluster has one manager: two would each be told they lead it.
    let managers: Vec<String> = config
        .nodes
        .iter()
        .filter(|n| n.role == Role::Manager)
        .map(|n| format!("{:?}", n.name))
        .collect();
    if managers.len() > 1 {
        problems.insert(format!(
            "the configuration has {} managers ({}); a cluster has at most one",
            managers.len(),
            managers.join(", ")
        ));
    }

    if host.zeromq {
        check_zeromq_ports(config, host, &mut problems);
    }
    check_reachable(config, host, &mut problems);

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.into_iter().collect())
    }
}

/// A node that the nodes of other hosts connect to (the manager, loggers,
/// and with Broker proxies) must not be known by a loopback address when
/// nodes run on hosts with other addresses: they would connect to their
/// own host. Such an address comes from an agent that dialled its
/// controller on loopback.
fn check_reachable(config: &Configuration, host: &HostFacts, problems: &mut BTreeSet<String>) {
    let host_of = |instance: &str| {
        config
            .instances
            .iter()
            .find(|i| i.name == instance)
            .map(|i| i.host.0)
    };
    let remote = config.nodes.iter().find_map(|n| {
        let ip = host_of(&n.instance)?;
        (!ip.is_loopback() && !ip.is_unspecified()).then_some((n.instance.as_str(), ip))
    });
    let Some((other, other_ip)) = remote else {
        return;
    };
    for node in &config.nodes {
        let reached = match node.role {
            Role::Manager | Role::Logger => true,
            Role::Proxy => !host.zeromq,
            _ => false,
        };
        match host_of(&node.instance) {
            Some(ip) if reached && ip.is_loopback() => {
                problems.insert(format!(
                    "node {:?} runs on instance {:?} at {ip}, a loopback address, which the nodes of instance {other:?} ({other_ip}) cannot reach; give {:?} its host's address (an agent that dials its controller is known by the address it dials from)",
                    node.name, node.instance, node.instance
                ));
            }
            _ => {}
        }
    }
}

/// The ZeroMQ broker's two ports must be two, and free on the manager's
/// host: no node's port or metrics port there, no agent's port.
fn check_zeromq_ports(config: &Configuration, host: &HostFacts, problems: &mut BTreeSet<String>) {
    let ports = config.zeromq_ports();
    let (xpub, xsub) = (ports.xpub_port.number, ports.xsub_port.number);
    if xpub == xsub {
        problems.insert(format!(
            "the ZeroMQ broker's XPUB and XSUB ports are both {xpub}; they must differ"
        ));
    }
    let Some(manager) = config.nodes.iter().find(|n| n.role == Role::Manager) else {
        return;
    };
    let host_of = |instance: &str| {
        config
            .instances
            .iter()
            .find(|i| i.name == instance)
            .map(|i| i.host)
    };
    let Some(manager_host) = host_of(&manager.instance) else {
        return;
    };
    let broker = |p: u16| p == xpub || p == xsub;
    let mut taken = |what: String, p: u16| {
        problems.insert(format!(
            "{what} uses port {p}/tcp, a port of the manager's ZeroMQ broker on {manager_host}; give the cluster other ZeroMQ ports or the {what} another port"
        ));
    };
    for node in config
        .nodes
        .iter()
        .filter(|n| host_of(&n.instance) == Some(manager_host))
    {
        for p in [node.p, node.metrics_port].into_iter().flatten() {
            if broker(p.number) {
                taken(format!("node {:?}", node.name), p.number);
            }
        }
    }
    for inst in config.instances.iter().filter(|i| i.host == manager_host) {
        let own = (inst.name == host.agent_name)
            .then_some(host.agent_port)
            .flatten();
        for p in inst.listen_port.map(|p| p.number).into_iter().chain(own) {
            if broker(p) {
                taken(format!("agent {:?}", inst.name), p);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::types::{Addr, Instance, Node, Port};

    /// The agent "a" on port 2151 of a host with two CPUs.
    pub(crate) fn host() -> HostFacts {
        HostFacts {
            agent_name: "a".into(),
            agent_port: Some(2151),
            cpus: 2,
            zeromq: true,
        }
    }

    /// An instance on 127.0.0.1.
    pub(crate) fn inst(name: &str) -> Instance {
        Instance {
            name: name.into(),
            host: Addr("127.0.0.1".parse().expect("addr")),
            listen_port: None,
        }
    }

    #[test]
    fn a_good_configuration_passes() {
        let mut m = Node::new("manager", "a", Role::Manager);
        m.p = Some(Port::tcp(27760));
        let mut w = Node::new("worker-1", "a", Role::Worker);
        w.cpu_affinity = Some(1);
        let c = Configuration {
            id: "x".into(),
            instances: vec![inst("a"), inst("b")],
            nodes: vec![m, w, Node::new("worker-2", "b", Role::Worker)],
            zeromq: None,
        };
        assert_eq!(validate(&c, &host()), Ok(()));
    }

    #[test]
    fn every_problem_is_listed_sorted() {
        let mut m = Node::new("manager", "a", Role::Manager);
        m.p = None;
        let mut w1 = Node::new("w1", "a", Role::Worker);
        w1.p = Some(Port::tcp(5000));
        w1.cpu_affinity = Some(7);
        w1.env.insert("A=B".into(), "x".into());
        w1.env.insert("".into(), "x".into());
        let mut w2 = Node::new("w2", "a", Role::Worker);
        w2.p = Some(Port::tcp(5000));
        let mut w3 = Node::new("w3", "a", Role::Worker);
        w3.p = Some(Port::tcp(2151));
        w3.cpu_affinity = Some(-1);
        let c = Configuration {
            id: "x".into(),
            instances: vec![inst("a"), inst("a")],
            nodes: vec![
                m,
                w1,
                w2,
                w3,
                Node::new("../x", "a", Role::Worker),
                Node::new("..", "a", Role::Worker),
                Node::new("", "a", Role::Worker),
                Node::new("w2", "a", Role::Worker),
                Node::new("nobody", "zz", Role::Worker),
                Node::new("norole", "a", Role::None),
            ],
            zeromq: None,
        };
        let problems = validate(&c, &host()).expect_err("invalid");
        let mut sorted = problems.clone();
        sorted.sort();
        assert_eq!(problems, sorted);
        let expect = [
            "duplicate instance name \"a\"",
            "duplicate node name \"w2\"",
            "node \"../x\" is invalid",
            "node name \"..\" is invalid",
            "node name \"\" is invalid",
            "node \"manager\" is a manager and needs a port",
            "nodes \"w1\" and \"w2\" of instance \"a\" both use port 5000/tcp",
            "node \"w3\" uses port 2151/tcp, the agent's own port",
            "node \"w1\" asks for cpu_affinity 7",
            "node \"w3\" asks for cpu_affinity -1",
            "node \"w1\" has env key \"A=B\"",
            "node \"w1\" has env key \"\"",
            "node \"nobody\" names instance \"zz\", which is not declared",
            "node \"norole\" has no cluster role (NONE)",
        ];
        for e in expect {
            let e = e.replace("node \"../x\" is invalid", "node name \"../x\" is invalid");
            assert!(
                problems.iter().any(|p| p.starts_with(&e)),
                "missing {e:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn oversized_env_and_arguments_are_refused() {
        let mut w = Node::new("w", "a", Role::Worker);
        w.env
            .insert("BIG".into(), "x".repeat(MAX_EXEC_STRING_BYTES));
        let mut v = Node::new("v", "a", Role::Worker);
        for i in 0..16 {
            v.env.insert(format!("K{i}"), "y".repeat(100 * 1024));
        }
        let c = Configuration {
            id: "x".into(),
            instances: vec![inst("a")],
            nodes: vec![w, v],
            zeromq: None,
        };
        let problems = validate(&c, &host()).expect_err("too big");
        assert!(
            problems[0].starts_with("node \"v\" has 1638"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("node \"w\" has an env entry"),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn remote_cpu_affinity_is_not_checked_here() {
        let mut w = Node::new("w", "b", Role::Worker);
        w.cpu_affinity = Some(64);
        let c = Configuration {
            id: "x".into(),
            instances: vec![inst("b")],
            nodes: vec![w],
            zeromq: None,
        };
        assert_eq!(validate(&c, &host()), Ok(()));
    }

    #[test]
    fn a_second_manager_is_refused_among_the_other_problems() {
        let mut m1 = Node::new("manager", "a", Role::Manager);
        m1.p = Some(Port::tcp(27760));
        let mut m2 = Node::new("manager-2", "b", Role::Manager);
        m2.p = Some(Port::tcp(27760));
        let mut m3 = Node::new("manager-3", "b", Role::Manager);
        m3.p = Some(Port::tcp(27761));
        let c = Configuration {
            id: "x".into(),
            instances: vec![inst("a"), inst("b")],
            nodes: vec![m1, m2, m3, Node::new("norole", "a", Role::None)],
            zeromq: None,
        };
        let problems = validate(&c, &host()).expect_err("two managers");
        assert_eq!(
            problems,
            vec![
                "node \"norole\" has no cluster role (NONE)".to_owned(),
                "the configuration has 3 managers (\"manager\", \"manager-2\", \"manager-3\"); a cluster has at most one".to_owned(),
            ]
        );
    }

    #[test]
    fn the_zeromq_brokers_ports_are_free_on_the_managers_host() {
        let mut m = Node::new("manager", "a", Role::Manager);
        m.p = Some(Port::tcp(5555));
        let mut p = Node::new("proxy-1", "a", Role::Proxy);
        p.metrics_port = Some(Port::tcp(5556));
        // Another host may use them.
        let mut w = Node::new("worker-1", "b", Role::Worker);
        w.metrics_port = Some(Port::tcp(5556));
        let mut a = inst("a");
        a.host = Addr("198.18.0.1".parse().expect("addr"));
        let mut b = inst("b");
        b.host = Addr("198.18.0.2".parse().expect("addr"));
        let c = Configuration {
            id: "x".into(),
            instances: vec![a, b],
            nodes: vec![m, p, w],
            zeromq: None,
        };
        let problems = validate(&c, &host()).expect_err("collisions");
        assert_eq!(
            problems,
            [
                "node \"manager\" uses port 5555/tcp, a port of the manager's ZeroMQ broker on 198.18.0.1; give the cluster other ZeroMQ ports or the node \"manager\" another port",
                "node \"proxy-1\" uses port 5556/tcp, a port of the manager's ZeroMQ broker on 198.18.0.1; give the cluster other ZeroMQ ports or the node \"proxy-1\" another port",
            ]
        );
        // Under Broker the ports mean nothing.
        let broker = HostFacts {
            zeromq: false,
            ..host()
        };
        assert_eq!(validate(&c, &broker), Ok(()));
        // Other ports for the broker, and the agent's own port among them.
        let mut moved = c.clone();
        moved.zeromq = Some(crate::api::types::ZeromqPorts {
            xpub_port: Port::tcp(2151),
            xsub_port: Port::tcp(2151),
        });
        let problems = validate(&moved, &host()).expect_err("collisions");
        assert_eq!(
            problems,
            [
                "agent \"a\" uses port 2151/tcp, a port of the manager's ZeroMQ broker on 198.18.0.1; give the cluster other ZeroMQ ports or the agent \"a\" another port",
                "the ZeroMQ broker's XPUB and XSUB ports are both 2151; they must differ",
            ]
        );
    }

    #[test]
    fn a_manager_on_loopback_is_refused_when_nodes_run_on_other_hosts() {
        let mut m = Node::new("manager", "a", Role::Manager);
        m.p = Some(Port::tcp(2200));
        let mut p = Node::new("proxy-1", "a", Role::Proxy);
        p.p = Some(Port::tcp(2201));
        let mut b = inst("b");
        b.host = Addr("198.18.0.2".parse().expect("addr"));
        let c = Configuration {
            id: "x".into(),
            instances: vec![inst("a"), b],
            nodes: vec![m, p, Node::new("worker-1", "b", Role::Worker)],
            zeromq: None,
        };
        let manager = "node \"manager\" runs on instance \"a\" at 127.0.0.1, a loopback address, which the nodes of instance \"b\" (198.18.0.2) cannot reach; give \"a\" its host's address (an agent that dials its controller is known by the address it dials from)";
        assert_eq!(validate(&c, &host()), Err(vec![manager.to_owned()]));
        // With Broker, the workers connect to the proxies too.
        let broker = HostFacts {
            zeromq: false,
            ..host()
        };
        let problems = validate(&c, &broker).expect_err("refused");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].starts_with("node \"proxy-1\" runs on instance \"a\" at 127.0.0.1"));
        // Every host on loopback (one machine), or the remote one not yet
        // known (0.0.0.0): nothing to refuse.
        let mut one = c.clone();
        one.instances[1].host = Addr("127.0.0.1".parse().expect("addr"));
        assert_eq!(validate(&one, &host()), Ok(()));
        one.instances[1].host = Addr("0.0.0.0".parse().expect("addr"));
        assert_eq!(validate(&one, &host()), Ok(()));
    }
}
