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
/// What is allowed but likely a mistake, said at deployment: nodes of this
/// host pinned to one CPU (each then gets part of it while others idle).
pub fn warnings(config: &Configuration, host: &HostFacts) -> Vec<String> {
    let mut by_cpu: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for n in config
        .nodes
        .iter()
        .filter(|n| n.instance == host.agent_name)
    {
        if let Some(cpu) = n.cpu_affinity {
            by_cpu.entry(cpu).or_default().push(&n.name);
        }
    }
    by_cpu
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(cpu, nodes)| {
            format!(
                "nodes {} are all pinned to CPU {cpu} (cpu_affinity) and share it",
                nodes.join(", ")
            )
        })
        .collect()
}

/// A node environment variable that says two nodes share a plain interface
/// on purpose (each then sees every packet).
pub const SHARED_INTERFACE_ENV: &str = "ZEEK_MGMT_SHARED_INTERFACE";

pub fn validate(config: &Configuration, host: &HostFacts) -> Result<(), Vec<String>> {
    let mut problems = BTreeSet::new();

    let mut instances = BTreeMap::new();
    for inst in &config.instances {
        if instances.insert(inst.name.as_str(), inst).is_some() {
            problems.insert(format!("duplicate instance name {:?}", inst.name));
        }
    }

    let mut sniffers: BTreeMap<(&str, &str), (&str, bool)> = BTreeMap::new();
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
        // Plain (libpcap) interfaces: one worker each, unless told.
        let plain = node.interface.as_deref().filter(|i| !i.contains("::"));
        if let Some(iface) = plain.filter(|_| node.role == Role::Worker) {
            let shared = node.env.get(SHARED_INTERFACE_ENV).is_some_and(|v| v == "1");
            let key = (node.instance.as_str(), iface);
            if let Some((other, other_shared)) = sniffers.insert(key, (n.as_str(), shared)) {
                if !(shared && other_shared) {
                    problems.insert(format!(
                        "nodes {other:?} and {n:?} of instance {:?} both sniff {iface} through libpcap, so each would analyse every packet (every connection logged twice): use interface = {}{iface} for both, which balances the packets across them (or set env {SHARED_INTERFACE_ENV}=1 on both to mean it)",
                        node.instance,
                        crate::agent::layout::AF_PACKET
                    ));
                }
            }
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
    let host_of = |instance: &str| config.host_of(instance);
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
    let Some((_, Some(manager_host))) = config.manager() else {
        return;
    };
    let host_of = |instance: &str| config.host_of(instance);
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
    for inst in config.instances.iter().filter(|i| i.host.0 == manager_host) {
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
pub(crate) mod tests;
