//! The `cluster-layout.zeek` every node finds in its working directory, and
//! the command line a node is started with.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::api::types::{Configuration, Node, Role};

/// The cluster backend script from Zeek 8.1 on.
pub const ZEROMQ_BACKEND: &str = "policy/frameworks/cluster/backend/zeromq";
/// The Broker backend script.
pub const BROKER_BACKEND: &str = "policy/frameworks/cluster/backend/broker";

/// Renders `cluster-layout.zeek` for the whole configuration.
pub fn cluster_layout(config: &Configuration) -> String {
    let hosts: BTreeMap<&str, IpAddr> = config
        .instances
        .iter()
        .map(|i| (i.name.as_str(), i.host.0))
        .collect();
    let manager = config
        .nodes
        .iter()
        .find(|n| n.role == Role::Manager)
        .map(|n| n.name.as_str());
    let has_logger = config.nodes.iter().any(|n| n.role == Role::Logger);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by zeek-mgmt-agent for configuration {:?}; rewritten on every deployment.",
        config.id
    );
    let _ = writeln!(
        out,
        "redef Cluster::manager_is_logger = {};",
        if has_logger { "F" } else { "T" }
    );
    out.push_str("redef Cluster::nodes = {\n");
    let mut nodes: Vec<&Node> = config.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    for node in nodes {
        let ip = hosts
            .get(node.instance.as_str())
            .copied()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let _ = write!(
            out,
            "\t[\"{}\"] = [$node_type={}, $ip={ip}",
            node.name,
            node.role.zeek_node_type()
        );
        if let Some(p) = node.p {
            let _ = write!(out, ", $p={p}");
        }
        if let (Some(m), Role::Proxy | Role::Worker) = (manager, node.role) {
            let _ = write!(out, ", $manager=\"{m}\"");
        }
        if let Some(m) = node.metrics_port {
            let _ = write!(out, ", $metrics_port={m}");
        }
        out.push_str("],\n");
    }
    out.push_str("};\n");
    let _ = writeln!(
        out,
        "redef global_hash_seed = \"{:016x}\";",
        fnv1a(config.id.as_bytes())
    );
    out
}

/// The file with the ZeroMQ backend's settings, loaded on the command line
/// right after the backend script (`cluster-layout.zeek` is loaded before
/// it, when the backend's identifiers do not exist yet).
pub const ZEROMQ_FILE: &str = "cluster-backend.zeek";

/// Renders the ZeroMQ backend's settings for the whole configuration: the
/// manager binds its XPUB/XSUB broker on the address the cluster knows it
/// by (its `$ip`), and every node connects there, so that a cluster spans
/// hosts (Zeek's defaults are loopback). The ports are the
/// configuration's, the same on every host. An IPv6 address goes in
/// brackets and turns Zeek's `ipv6` switch on.
pub fn zeromq_settings(config: &Configuration) -> String {
    let ports = config.zeromq_ports();
    let ip = config
        .manager()
        .and_then(|(_, host)| host)
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    // An unspecified address binds every interface; the nodes then reach
    // the broker on their own host.
    let (bind, connect) = if ip.is_unspecified() {
        let local = match ip {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        };
        (ip, local)
    } else {
        (ip, ip)
    };
    let endpoint = |ip: IpAddr, port: u16| match ip {
        IpAddr::V4(v4) => format!("tcp://{v4}:{port}"),
        IpAddr::V6(v6) => format!("tcp://[{v6}]:{port}"),
    };
    let (xpub, xsub) = (ports.xpub_port.number, ports.xsub_port.number);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by zeek-mgmt-agent for configuration {:?}: where the manager's ZeroMQ broker listens and every node reaches it.",
        config.id
    );
    let module = "Cluster::Backend::ZeroMQ";
    for (name, value) in [
        ("listen_xpub_endpoint", endpoint(bind, xpub)),
        ("listen_xsub_endpoint", endpoint(bind, xsub)),
        ("connect_xsub_endpoint", endpoint(connect, xpub)),
        ("connect_xpub_endpoint", endpoint(connect, xsub)),
    ] {
        let _ = writeln!(out, "redef {module}::{name} = \"{value}\";");
    }
    if ip.is_ipv6() {
        let _ = writeln!(out, "redef {module}::ipv6 = T;");
    }
    out
}

/// Where the nodes reach the manager's ZeroMQ broker, for messages to
/// operators: `198.18.0.1 ports 5555 and 5556`.
pub fn zeromq_broker(config: &Configuration) -> String {
    let ports = config.zeromq_ports();
    let host = config
        .manager()
        .and_then(|(_, host)| host)
        .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string());
    format!(
        "the manager's ZeroMQ broker at {host} (tcp ports {} and {})",
        ports.xpub_port.number, ports.xsub_port.number
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The scripts the agent adds to a node's command line, by absolute path.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentScripts<'a> {
    /// The backend's settings (`cluster-backend.zeek`), right after the
    /// backend script.
    pub backend_settings: Option<&'a str>,
    /// The node channel's script, after `local`.
    pub channel: Option<&'a str>,
    /// The log archive's script (`agent-logs.zeek`), after the channel's.
    pub logs: Option<&'a str>,
    /// The AF_PACKET fanout group of the node's interface
    /// ([`fanout_ids`]), before the node's own options (which may set
    /// another).
    pub fanout_id: Option<u16>,
}

/// The prefix of an interface Zeek reads through AF_PACKET.
pub const AF_PACKET: &str = "af_packet::";

/// One AF_PACKET fanout group per interface of `instance`'s nodes: every
/// node on an interface joins its group (the kernel balances packets
/// across them), and the groups of a host's interfaces differ (a group
/// belongs to one device: a second interface joining the same id fails
/// with "failed to join fanout group: Invalid argument"). Stable across
/// deployments: a hash of the interface and the cluster (its ZeroMQ
/// broker's XPUB port, which two clusters on one host cannot share, else
/// the manager's port), collisions moved on in the interfaces' order.
pub fn fanout_ids(config: &Configuration, instance: &str) -> BTreeMap<String, u16> {
    let cluster = config
        .zeromq
        .map(|z| z.xpub_port.number)
        .or_else(|| config.manager().and_then(|(m, _)| m.p.map(|p| p.number)))
        .unwrap_or(0);
    let interfaces: BTreeSet<&str> = config
        .nodes
        .iter()
        .filter(|n| n.instance == instance)
        .filter_map(|n| n.interface.as_deref())
        .filter(|i| i.starts_with(AF_PACKET))
        .collect();
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for iface in interfaces {
        // FNV-1a: the same on every build and platform.
        let mut h: u32 = 0x811c_9dc5;
        for b in format!("{cluster}/{iface}").bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        // Zeek's own default group (23) and the low ids are left alone.
        let mut id = 1024 + (h % 64_000) as u16;
        while !taken.insert(id) {
            id = if id == u16::MAX { 1024 } else { id + 1 };
        }
        out.insert(iface.to_owned(), id);
    }
    out
}

/// The arguments after the program: `[-i IFACE] [BACKEND
/// [BACKEND-SETTINGS]] local [CHANNEL-SCRIPT] [LOGS-SCRIPT] SCRIPTS...
/// NAME=VALUE...` (the node's own scripts last, so that they may redefine
/// what the agent's set).
pub fn node_args(node: &Node, backend: Option<&str>, agent: AgentScripts<'_>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(iface) = &node.interface {
        args.push("-i".to_owned());
        args.push(iface.clone());
    }
    if let Some(b) = backend {
        args.push(b.to_owned());
        args.extend(agent.backend_settings.map(str::to_owned));
    }
    args.push("local".to_owned());
    args.extend(agent.channel.map(str::to_owned));
    args.extend(agent.logs.map(str::to_owned));
    args.extend(node.scripts.iter().flatten().cloned());
    args.extend(
        agent
            .fanout_id
            .map(|id| format!("AF_Packet::fanout_id={id}")),
    );
    args.extend(
        node.options
            .iter()
            .flatten()
            .map(|o| format!("{}={}", o.name, o.value)),
    );
    args
}

/// Whether `node` will bind its port `p`: with Broker (Zeek before 8.1,
/// where `backend` is none, or the Broker script) every node that has a
/// port listens on it; with ZeroMQ only the manager does (its log
/// endpoint), and a proxy's or worker's `p` is never bound.
pub fn binds_port(node: &Node, backend: Option<&str>) -> bool {
    node.p.is_some() && (backend != Some(ZEROMQ_BACKEND) || node.role == Role::Manager)
}

/// Picks the backend from the output of `zeek --version`
/// (`<program> version 8.2.2`): ZeroMQ from 8.1 on, none before or when the
/// output is not a Zeek version.
pub fn backend_for_version(output: &str) -> Option<&'static str> {
    zeek_version(output)
        .filter(|v| *v >= (8, 1))
        .map(|_| ZEROMQ_BACKEND)
}

/// Major and minor version from the output of `zeek --version`, if it is
/// Zeek's.
pub fn zeek_version(output: &str) -> Option<(u32, u32)> {
    let version = output
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// Whether `node` is a ZeroMQ logging node (a logger, or the manager when
/// there is no logger): it must never open a WebSocket server.
pub fn is_logging_node(node: &Node, config: &Configuration, backend: Option<&str>) -> bool {
    backend == Some(ZEROMQ_BACKEND)
        && match node.role {
            Role::Logger => true,
            Role::Manager => !config.nodes.iter().any(|n| n.role == Role::Logger),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_af_packet_interface_of_a_host_gets_its_own_stable_fanout_group() {
        let worker = |name: &str, instance: &str, iface: &str| {
            let mut w = Node::new(name, instance, Role::Worker);
            w.interface = Some(iface.into());
            w
        };
        let config = Configuration {
            nodes: vec![
                worker("w1", "a", "af_packet::eth0"),
                worker("w2", "a", "af_packet::eth0"),
                worker("w3", "a", "af_packet::eth1"),
                worker("w4", "a", "eth2"),
                worker("w5", "b", "af_packet::eth3"),
            ],
            ..Configuration::default()
        };
        let ids = fanout_ids(&config, "a");
        let ifaces: Vec<&str> = ids.keys().map(String::as_str).collect();
        assert_eq!(ifaces, ["af_packet::eth0", "af_packet::eth1"]);
        assert_ne!(ids["af_packet::eth0"], ids["af_packet::eth1"]);
        assert!(ids.values().all(|id| *id >= 1024));
        // The same again for the next deployment; another cluster (another
        // broker port) gets other groups.
        assert_eq!(fanout_ids(&config, "a"), ids);
        let mut other = config.clone();
        other.zeromq = Some(crate::api::types::ZeromqPorts {
            xpub_port: crate::api::types::Port::tcp(6555),
            xsub_port: crate::api::types::Port::tcp(6556),
        });
        assert_ne!(fanout_ids(&other, "a"), ids);
        // On the command line, before the node's own options.
        let mut w = worker("w1", "a", "af_packet::eth0");
        w.options = Some(vec![crate::api::types::ZeekOption {
            name: "AF_Packet::fanout_mode".into(),
            value: "AF_Packet::FANOUT_CPU".into(),
        }]);
        let args = node_args(
            &w,
            None,
            AgentScripts {
                fanout_id: Some(4242),
                ..AgentScripts::default()
            },
        );
        assert_eq!(
            args[args.len() - 2..],
            [
                "AF_Packet::fanout_id=4242",
                "AF_Packet::fanout_mode=AF_Packet::FANOUT_CPU"
            ]
        );
    }
    use crate::api::types::{Addr, Instance, Port, ZeekOption};

    fn node(name: &str, inst: &str, role: Role, port: Option<u16>) -> Node {
        let mut n = Node::new(name, inst, role);
        n.p = port.map(Port::tcp);
        n
    }

    #[test]
    fn layout_for_a_two_instance_cluster_line_by_line() {
        let config = Configuration {
            id: "cfg-7".into(),
            instances: vec![
                Instance {
                    name: "agent-a".into(),
                    host: Addr("10.0.0.1".parse().expect("addr")),
                    listen_port: None,
                },
                Instance {
                    name: "agent-b".into(),
                    host: Addr("fd00::2".parse().expect("addr")),
                    listen_port: None,
                },
            ],
            nodes: vec![
                node("worker-2", "agent-b", Role::Worker, None),
                node("manager", "agent-a", Role::Manager, Some(27760)),
                node("logger-1", "agent-a", Role::Logger, Some(27761)),
                node("proxy-1", "agent-a", Role::Proxy, Some(27762)),
                node("worker-1", "agent-a", Role::Worker, Some(27764)),
            ],
            zeromq: None,
        };
        let text = cluster_layout(&config);
        let lines: Vec<&str> = text.lines().collect();
        let expected = [
            "# Written by zeek-mgmt-agent for configuration \"cfg-7\"; rewritten on every deployment.",
            "redef Cluster::manager_is_logger = F;",
            "redef Cluster::nodes = {",
            "\t[\"logger-1\"] = [$node_type=Cluster::LOGGER, $ip=10.0.0.1, $p=27761/tcp],",
            "\t[\"manager\"] = [$node_type=Cluster::MANAGER, $ip=10.0.0.1, $p=27760/tcp],",
            "\t[\"proxy-1\"] = [$node_type=Cluster::PROXY, $ip=10.0.0.1, $p=27762/tcp, $manager=\"manager\"],",
            "\t[\"worker-1\"] = [$node_type=Cluster::WORKER, $ip=10.0.0.1, $p=27764/tcp, $manager=\"manager\"],",
            "\t[\"worker-2\"] = [$node_type=Cluster::WORKER, $ip=[fd00::2], $manager=\"manager\"],",
            "};",
        ];
        assert_eq!(&lines[..expected.len()], &expected);
        assert_eq!(lines.len(), expected.len() + 1);
        let seed = lines[expected.len()];
        assert!(seed.starts_with("redef global_hash_seed = \""), "{seed}");
        assert!(!text.contains("$interface"));
        // The same id gives the same seed on every node; another id another.
        let mut other = config.clone();
        assert_eq!(cluster_layout(&other).lines().last(), Some(seed));
        other.id = "cfg-8".into();
        assert_ne!(cluster_layout(&other).lines().last(), Some(seed));
    }

    fn two_host_cluster(manager_host: &str) -> Configuration {
        let inst = |name: &str, host: &str| Instance {
            name: name.into(),
            host: Addr(host.parse().expect("addr")),
            listen_port: None,
        };
        Configuration {
            id: "c".into(),
            instances: vec![inst("agent-a", manager_host), inst("agent-b", "198.18.0.2")],
            nodes: vec![
                node("manager", "agent-a", Role::Manager, Some(27760)),
                node("worker-1", "agent-b", Role::Worker, None),
            ],
            zeromq: None,
        }
    }

    #[test]
    fn every_node_reaches_the_zeromq_broker_at_the_managers_address() {
        let text = zeromq_settings(&two_host_cluster("198.18.0.1"));
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "redef Cluster::Backend::ZeroMQ::listen_xpub_endpoint = \"tcp://198.18.0.1:5555\";",
                "redef Cluster::Backend::ZeroMQ::listen_xsub_endpoint = \"tcp://198.18.0.1:5556\";",
                "redef Cluster::Backend::ZeroMQ::connect_xsub_endpoint = \"tcp://198.18.0.1:5555\";",
                "redef Cluster::Backend::ZeroMQ::connect_xpub_endpoint = \"tcp://198.18.0.1:5556\";",
            ]
        );
        assert!(text.starts_with("# Written by zeek-mgmt-agent"), "{text}");
    }

    #[test]
    fn zeromq_ports_ipv6_and_an_unspecified_manager_address() {
        let mut c = two_host_cluster("fd00::1");
        c.zeromq = Some(crate::api::types::ZeromqPorts {
            xpub_port: Port::tcp(6001),
            xsub_port: Port::tcp(6002),
        });
        let text = zeromq_settings(&c);
        assert!(
            text.contains("listen_xpub_endpoint = \"tcp://[fd00::1]:6001\";"),
            "{text}"
        );
        assert!(
            text.contains("connect_xpub_endpoint = \"tcp://[fd00::1]:6002\";"),
            "{text}"
        );
        assert!(
            text.contains("redef Cluster::Backend::ZeroMQ::ipv6 = T;"),
            "{text}"
        );
        assert_eq!(
            zeromq_broker(&c),
            "the manager's ZeroMQ broker at fd00::1 (tcp ports 6001 and 6002)"
        );
        // Bound on every interface, reached on the node's own host.
        let text = zeromq_settings(&two_host_cluster("0.0.0.0"));
        assert!(
            text.contains("listen_xsub_endpoint = \"tcp://0.0.0.0:5556\";"),
            "{text}"
        );
        assert!(
            text.contains("connect_xpub_endpoint = \"tcp://127.0.0.1:5556\";"),
            "{text}"
        );
        assert!(!text.contains("ipv6"), "{text}");
    }

    #[test]
    fn the_backend_settings_follow_the_backend_script() {
        let n = node("w", "a", Role::Worker, None);
        let agent = AgentScripts {
            backend_settings: Some("/c/w/cluster-backend.zeek"),
            channel: Some("/c/w/agent-channel.zeek"),
            logs: Some("/c/w/agent-logs.zeek"),
            fanout_id: None,
        };
        assert_eq!(
            node_args(&n, Some(ZEROMQ_BACKEND), agent),
            [
                ZEROMQ_BACKEND,
                "/c/w/cluster-backend.zeek",
                "local",
                "/c/w/agent-channel.zeek",
                "/c/w/agent-logs.zeek"
            ]
        );
        // No backend script (Zeek before 8.1): no backend settings either.
        assert_eq!(
            node_args(&n, None, agent),
            ["local", "/c/w/agent-channel.zeek", "/c/w/agent-logs.zeek"]
        );
    }

    #[test]
    fn a_metrics_port_goes_into_the_layout() {
        let mut w = node("w1", "a", Role::Worker, None);
        w.metrics_port = Some(crate::api::types::Port::tcp(9002));
        let config = Configuration {
            id: "c".into(),
            instances: vec![],
            nodes: vec![w],
            zeromq: None,
        };
        assert!(
            cluster_layout(&config).contains(
                "[\"w1\"] = [$node_type=Cluster::WORKER, $ip=127.0.0.1, $metrics_port=9002/tcp],"
            ),
            "{}",
            cluster_layout(&config)
        );
    }

    #[test]
    fn manager_is_logger_without_a_logger() {
        let config = Configuration {
            id: "x".into(),
            instances: vec![],
            nodes: vec![node("manager", "a", Role::Manager, Some(1))],
            zeromq: None,
        };
        assert!(cluster_layout(&config).contains("redef Cluster::manager_is_logger = T;"));
    }

    #[test]
    fn command_line_order() {
        let mut w = node("w", "a", Role::Worker, None);
        w.interface = Some("eth1".into());
        w.scripts = Some(vec!["site/a.zeek".into(), "b".into()]);
        w.options = Some(vec![ZeekOption {
            name: "ignore_checksums".into(),
            value: "T".into(),
        }]);
        assert_eq!(
            node_args(&w, Some(ZEROMQ_BACKEND), AgentScripts::default()),
            [
                "-i",
                "eth1",
                ZEROMQ_BACKEND,
                "local",
                "site/a.zeek",
                "b",
                "ignore_checksums=T"
            ]
        );
        assert_eq!(
            node_args(
                &node("m", "a", Role::Manager, None),
                None,
                AgentScripts::default()
            ),
            ["local"]
        );
    }

    #[test]
    fn backend_follows_the_zeek_version() {
        assert_eq!(
            backend_for_version("zeek version 8.2.2\n"),
            Some(ZEROMQ_BACKEND)
        );
        assert_eq!(
            backend_for_version("/usr/bin/zeek version 8.1.0-dev.12"),
            Some(ZEROMQ_BACKEND)
        );
        assert_eq!(backend_for_version("zeek version 8.0.4"), None);
        assert_eq!(backend_for_version("zeek version 7.2.1"), None);
        assert_eq!(backend_for_version("bash: no such file"), None);
        assert_eq!(backend_for_version(""), None);
    }

    #[test]
    fn only_nodes_that_listen_bind_their_port() {
        let with_port = |role| {
            let mut n = Node::new("n", "a", role);
            n.p = Some(crate::api::types::Port::tcp(27760));
            n
        };
        for role in [Role::Manager, Role::Logger, Role::Proxy, Role::Worker] {
            for backend in [None, Some(BROKER_BACKEND)] {
                assert!(
                    binds_port(&with_port(role), backend),
                    "{role:?} {backend:?}"
                );
            }
            assert_eq!(
                binds_port(&with_port(role), Some(ZEROMQ_BACKEND)),
                role == Role::Manager,
                "{role:?}"
            );
            assert!(!binds_port(&Node::new("n", "a", role), None));
        }
    }
}
