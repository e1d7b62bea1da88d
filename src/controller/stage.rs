//! What staging does to a configuration, as plain functions: the checks
//! and their messages, and the READY copy with resolved hosts and assigned
//! ports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::api::types::{Addr, Configuration, Node, Port, Role, ZeromqPorts};

/// Where auto-assigned ports start, and which kinds are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPolicy {
    /// First Broker port for managers, loggers and proxies; `None`: off.
    pub broker_from: Option<u16>,
    /// First metrics port per host; `None`: off.
    pub metrics_from: Option<u16>,
    /// The controller's own agent port, which no node may use.
    pub controller_port: u16,
    /// The ports of the manager's ZeroMQ broker, given to every agent with
    /// the configuration (and kept free of auto-assigned ports on the
    /// manager's host).
    pub zeromq: ZeromqPorts,
}

impl Default for PortPolicy {
    fn default() -> Self {
        PortPolicy {
            broker_from: Some(2200),
            metrics_from: Some(9000),
            controller_port: 2150,
            zeromq: ZeromqPorts::default(),
        }
    }
}

fn tcp(p: Port) -> String {
    format!("{}/tcp", p.number)
}

/// Every problem of `config`, each once, sorted by byte order; empty when
/// it may be staged.
pub fn problems(config: &Configuration, policy: &PortPolicy) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut seen = HashMap::new();
    for i in &config.instances {
        *seen.entry(i.name.as_str()).or_insert(0) += 1;
    }
    for (name, n) in &seen {
        if *n > 1 {
            out.insert(format!("multiple instances named '{name}'"));
        }
    }
    let mut nodes = HashMap::new();
    for n in &config.nodes {
        *nodes.entry(n.name.as_str()).or_insert(0) += 1;
    }
    for (name, n) in &nodes {
        if *n > 1 {
            out.insert(format!("multiple nodes named '{name}'"));
        }
    }
    let collide: BTreeSet<&str> = nodes
        .keys()
        .filter(|n| seen.contains_key(*n))
        .copied()
        .collect();
    if !collide.is_empty() {
        let names: Vec<&str> = collide.into_iter().collect();
        out.insert(format!(
            "node and instance names collide: {}",
            names.join(", ")
        ));
    }
    // With two instances of one name, the first declared one counts.
    let mut instances: HashMap<&str, &crate::api::types::Instance> = HashMap::new();
    for i in &config.instances {
        instances.entry(i.name.as_str()).or_insert(i);
    }
    let mut used: HashMap<(&str, u16), usize> = HashMap::new();
    for n in &config.nodes {
        let inst = instances.get(n.instance.as_str());
        if inst.is_none() {
            out.insert(format!(
                "node '{}' has undeclared instance name '{}'",
                n.name, n.instance
            ));
        }
        let Some(p) = n.p else { continue };
        if let Some(lp) = inst.and_then(|i| i.listen_port) {
            if lp.number == p.number {
                out.insert(format!(
                    "node '{}' port {} conflicts with agent port on instance '{}'",
                    n.name,
                    tcp(p),
                    n.instance
                ));
            }
        }
        if p.number == policy.controller_port {
            out.insert(format!(
                "node '{}' port {} conflicts with controller port",
                n.name,
                tcp(p)
            ));
        }
        *used.entry((n.instance.as_str(), p.number)).or_insert(0) += 1;
    }
    for ((inst, port), n) in used {
        if n > 1 {
            out.insert(format!(
                "multiple nodes on instance '{inst}' using port {port}/tcp"
            ));
        }
    }
    if policy.broker_from.is_none() {
        let lacking: BTreeSet<&str> = config
            .nodes
            .iter()
            .filter(|n| {
                matches!(n.role, Role::Manager | Role::Logger | Role::Proxy) && n.p.is_none()
            })
            .map(|n| n.name.as_str())
            .collect();
        if !lacking.is_empty() {
            let names: Vec<&str> = lacking.into_iter().collect();
            out.insert(format!(
                "Broker port auto-assignment disabled but nodes {} lack ports",
                names.join(", ")
            ));
        }
    }
    out.into_iter().collect()
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Manager => 0,
        Role::Logger => 1,
        Role::Proxy => 2,
        Role::Worker => 3,
        Role::None => 4,
    }
}

/// The order in which nodes get ports: by instance, role, then name.
fn port_order(nodes: &[Node]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&nodes[a], &nodes[b]);
        (&x.instance, rank(x.role), &x.name).cmp(&(&y.instance, rank(y.role), &y.name))
    });
    order
}

/// Gives every `0.0.0.0` instance whose agent is known the address it was
/// seen at.
pub fn resolve_hosts(config: &mut Configuration, known: &BTreeMap<String, IpAddr>) {
    for i in &mut config.instances {
        if i.host.0.is_unspecified() {
            if let Some(ip) = known.get(&i.name) {
                i.host = Addr(*ip);
            }
        }
    }
}

/// The READY configuration: `staged` with resolved hosts and assigned
/// Broker and metrics ports.
pub fn ready(
    staged: &Configuration,
    known: &BTreeMap<String, IpAddr>,
    policy: &PortPolicy,
) -> Configuration {
    let mut c = staged.clone();
    resolve_hosts(&mut c, known);
    let zeromq = *c.zeromq.get_or_insert(policy.zeromq);
    let broker_ports = [zeromq.xpub_port.number, zeromq.xsub_port.number];
    let manager_host = c.manager().and_then(|(_, host)| host);
    let order = port_order(&c.nodes);
    if let Some(from) = policy.broker_from {
        let mut taken: BTreeSet<u16> = c
            .instances
            .iter()
            .filter_map(|i| i.listen_port.map(|p| p.number))
            .chain(c.nodes.iter().filter_map(|n| n.p.map(|p| p.number)))
            .chain(broker_ports)
            .collect();
        let mut next = from;
        for &i in &order {
            let n = &mut c.nodes[i];
            if n.p.is_some() || !matches!(n.role, Role::Manager | Role::Logger | Role::Proxy) {
                continue;
            }
            while taken.contains(&next) {
                next = next.saturating_add(1);
            }
            n.p = Some(Port::tcp(next));
            taken.insert(next);
        }
    }
    if let Some(from) = policy.metrics_from {
        let host_of: HashMap<&str, IpAddr> = c
            .instances
            .iter()
            .map(|i| (i.name.as_str(), i.host.0))
            .collect();
        let host = |inst: &str| host_of.get(inst).copied();
        let mut taken: HashMap<Option<IpAddr>, BTreeSet<u16>> = HashMap::new();
        if let Some(h) = manager_host {
            taken.entry(Some(h)).or_default().extend(broker_ports);
        }
        for i in &c.instances {
            if let Some(p) = i.listen_port {
                taken.entry(Some(i.host.0)).or_default().insert(p.number);
            }
        }
        for n in &c.nodes {
            for p in [n.p, n.metrics_port].into_iter().flatten() {
                taken.entry(host(&n.instance)).or_default().insert(p.number);
            }
        }
        let mut next: HashMap<Option<IpAddr>, u16> = HashMap::new();
        for &i in &order {
            if c.nodes[i].metrics_port.is_some() {
                continue;
            }
            let h = host(&c.nodes[i].instance);
            let used = taken.entry(h).or_default();
            let counter = next.entry(h).or_insert(from);
            while used.contains(counter) {
                *counter = counter.saturating_add(1);
            }
            c.nodes[i].metrics_port = Some(Port::tcp(*counter));
            used.insert(*counter);
            *counter = counter.saturating_add(1);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::Instance;

    fn inst(name: &str, port: Option<u16>) -> Instance {
        Instance {
            name: name.into(),
            host: Addr([0, 0, 0, 0].into()),
            listen_port: port.map(Port::tcp),
        }
    }

    fn node(name: &str, instance: &str, role: Role, p: Option<u16>) -> Node {
        let mut n = Node::new(name, instance, role);
        n.p = p.map(Port::tcp);
        n
    }

    fn config(instances: Vec<Instance>, nodes: Vec<Node>) -> Configuration {
        Configuration {
            id: "c".into(),
            instances,
            nodes,
            zeromq: None,
        }
    }

    #[test]
    fn the_specs_bad_configuration_gets_its_four_messages_sorted() {
        let c = config(
            vec![inst("agent-local", None), inst("manager", None)],
            vec![
                node("manager", "agent-local", Role::Manager, Some(2150)),
                node("logger", "agent-other", Role::Logger, Some(2300)),
                node("worker-1", "agent-local", Role::Worker, Some(2300)),
                node("worker-2", "agent-local", Role::Worker, Some(2300)),
            ],
        );
        assert_eq!(
            problems(&c, &PortPolicy::default()),
            [
                "multiple nodes on instance 'agent-local' using port 2300/tcp",
                "node 'logger' has undeclared instance name 'agent-other'",
                "node 'manager' port 2150/tcp conflicts with controller port",
                "node and instance names collide: manager",
            ]
        );
    }

    #[test]
    fn every_other_check_has_its_message() {
        let c = config(
            vec![inst("a", Some(2151)), inst("a", None), inst("b", None)],
            vec![
                node("m", "a", Role::Manager, Some(2151)),
                node("m", "a", Role::Proxy, None),
                node("l", "b", Role::Logger, None),
                node("b", "b", Role::Worker, None),
            ],
        );
        let policy = PortPolicy {
            broker_from: None,
            ..PortPolicy::default()
        };
        assert_eq!(
            problems(&c, &policy),
            [
                "Broker port auto-assignment disabled but nodes l, m lack ports",
                "multiple instances named 'a'",
                "multiple nodes named 'm'",
                "node 'm' port 2151/tcp conflicts with agent port on instance 'a'",
                "node and instance names collide: b",
            ]
        );
        assert!(problems(
            &config(
                vec![inst("a", None)],
                vec![node("w", "a", Role::Worker, None)]
            ),
            &PortPolicy::default()
        )
        .is_empty());
    }

    #[test]
    fn the_specs_example_gets_its_ports() {
        let c = config(
            vec![inst("agent-local", None)],
            vec![
                node("worker-2", "agent-local", Role::Worker, None),
                node("proxy-1", "agent-local", Role::Proxy, None),
                node("manager", "agent-local", Role::Manager, None),
                node("worker-1", "agent-local", Role::Worker, None),
            ],
        );
        let known = BTreeMap::from([("agent-local".to_owned(), IpAddr::from([127, 0, 0, 1]))]);
        let r = ready(&c, &known, &PortPolicy::default());
        let ports: BTreeMap<&str, (Option<u16>, Option<u16>)> = r
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    (n.p.map(|p| p.number), n.metrics_port.map(|p| p.number)),
                )
            })
            .collect();
        assert_eq!(
            ports,
            BTreeMap::from([
                ("manager", (Some(2200), Some(9000))),
                ("proxy-1", (Some(2201), Some(9001))),
                ("worker-1", (None, Some(9002))),
                ("worker-2", (None, Some(9003))),
            ])
        );
        assert_eq!(r.instances[0].host, Addr([127, 0, 0, 1].into()));
        // STAGED is left as it was sent.
        assert!(c
            .nodes
            .iter()
            .all(|n| n.p.is_none() && n.metrics_port.is_none()));
    }

    #[test]
    fn assigned_ports_skip_every_port_already_in_use() {
        let mut m = node("m", "a", Role::Manager, None);
        m.metrics_port = Some(Port::tcp(9001));
        let c = config(
            vec![inst("a", Some(2200)), inst("b", Some(9000))],
            vec![
                m,
                node("p", "a", Role::Proxy, Some(2201)),
                node("l", "b", Role::Logger, None),
                node("w", "b", Role::Worker, None),
            ],
        );
        let r = ready(&c, &BTreeMap::new(), &PortPolicy::default());
        let get = |name: &str| r.nodes.iter().find(|n| n.name == name).expect(name).clone();
        // One Broker counter for the whole configuration: a's manager gets
        // 2202 (2200 and 2201 taken), b's logger 2203.
        assert_eq!(get("m").p, Some(Port::tcp(2202)));
        assert_eq!(get("l").p, Some(Port::tcp(2203)));
        assert_eq!(get("w").p, None);
        // Both instances are at 0.0.0.0, one host: 9000 (b's agent) and
        // 9001 (m's own) are taken.
        assert_eq!(get("m").metrics_port, Some(Port::tcp(9001)));
        assert_eq!(get("p").metrics_port, Some(Port::tcp(9002)));
        assert_eq!(get("l").metrics_port, Some(Port::tcp(9003)));
        assert_eq!(get("w").metrics_port, Some(Port::tcp(9004)));
    }

    #[test]
    fn the_zeromq_ports_go_to_every_agent_and_no_node_is_given_them() {
        let c = config(
            vec![inst("a", None)],
            vec![
                node("manager", "a", Role::Manager, None),
                node("proxy-1", "a", Role::Proxy, None),
            ],
        );
        let policy = PortPolicy {
            broker_from: Some(6000),
            metrics_from: Some(6001),
            zeromq: ZeromqPorts {
                xpub_port: Port::tcp(6000),
                xsub_port: Port::tcp(6002),
            },
            ..PortPolicy::default()
        };
        let r = ready(&c, &BTreeMap::new(), &policy);
        assert_eq!(r.zeromq, Some(policy.zeromq));
        let get = |name: &str| r.nodes.iter().find(|n| n.name == name).expect(name).clone();
        assert_eq!(get("manager").p, Some(Port::tcp(6001)));
        assert_eq!(get("proxy-1").p, Some(Port::tcp(6003)));
        assert_eq!(get("manager").metrics_port, Some(Port::tcp(6004)));
        assert_eq!(get("proxy-1").metrics_port, Some(Port::tcp(6005)));
        // Ports the staged configuration carries are kept.
        let mut own = c.clone();
        own.zeromq = Some(ZeromqPorts::default());
        assert_eq!(
            ready(&own, &BTreeMap::new(), &policy).zeromq,
            Some(ZeromqPorts::default())
        );
    }
}
