//! ZeekControl's `node.cfg`, read as ZeekControl reads it: one section per
//! node with `type` and `host`, workers expanded by `lb_procs` into
//! `NAME-1 … NAME-N` (AF_PACKET or one interface each), `pin_cpus` one per
//! process, `env_vars`, the AF_PACKET keys and `aux_scripts`; a
//! `networks.cfg` beside it becomes `Site::local_nets` for every node, and
//! the settings of a `zeekctl.cfg` beside it are carried or named. Its
//! refusals are ZeekControl's words; what cannot be driven here is refused
//! with the reason. Each `host` becomes an instance: the agent named
//! `agent-<host>` (an agent's default name on that host) unless mapped.

use std::collections::BTreeMap;
use std::path::Path;

use super::ini::{ClusterFile, FileError, InstanceSpec};
use crate::api::types::{Node, Role, ZeekOption};

mod zeekctl;
pub use zeekctl::ZeekctlSettings;

/// The port agents listen on unless told otherwise.
const AGENT_PORT: u16 = 2151;

/// The host names of the loopback, which mean this host.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// ZeekControl's first port for its nodes (`ZeekPort`).
const ZEEK_PORT: u16 = 27760;

/// The keys of a node section ZeekControl knows (and its AF_PACKET
/// plugin's, with `.` read as `_`).
const KEYS: &[&str] = &[
    "type",
    "host",
    "interface",
    "aux_scripts",
    "zeekbase",
    "ether",
    "zone_id",
    "lb_procs",
    "lb_method",
    "lb_interfaces",
    "pin_cpus",
    "env_vars",
    "af_packet_fanout_id",
    "af_packet_fanout_mode",
    "af_packet_buffer_size",
];

/// The keys ZeekControl knows that have no counterpart here.
const NOT_CARRIED: &[&str] = &["zeekbase", "ether", "zone_id"];

/// One section as written.
#[derive(Debug, Default, Clone)]
struct Section {
    name: String,
    keys: BTreeMap<String, String>,
}

impl Section {
    fn get(&self, key: &str) -> &str {
        self.keys.get(key).map_or("", |v| v.trim())
    }
}

/// How hosts become instances: `host → agent name`, from `--instance
/// HOST=NAME` or from the agents that answered.
pub type HostMap = BTreeMap<String, String>;

/// What `node.cfg` turned into, with what was read but not carried.
#[derive(Debug, Clone)]
pub struct Converted {
    pub file: ClusterFile,
    /// The hosts and the instances they became.
    pub hosts: BTreeMap<String, String>,
    /// What `zeekctl.cfg` said, setting by setting.
    pub notes: Vec<String>,
}

fn refuse(file: &str, section: Option<&str>, message: String) -> FileError {
    FileError {
        file: file.to_owned(),
        line: None,
        section: section.map(str::to_owned),
        key: None,
        message,
    }
}

/// The sections of an INI text, keys lowercased (as Python's
/// configparser reads them), `.` in a key read as `_`.
fn sections(text: &str, file: &str) -> Result<Vec<Section>, FileError> {
    let mut out: Vec<Section> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let current = out.last().map(|s| s.name.clone());
        let at = |message: String| FileError {
            file: file.to_owned(),
            line: Some(n + 1),
            section: current,
            key: None,
            message,
        };
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Section {
                name: name.trim().to_owned(),
                ..Section::default()
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(at(format!("not a key = value line: {line:?}")));
        };
        let Some(section) = out.last_mut() else {
            return Err(at("File contains no section headers.".to_owned()));
        };
        let key = key.trim().to_ascii_lowercase().replace('.', "_");
        section.keys.insert(key, value.trim().to_owned());
    }
    Ok(out)
}

/// `VAR1=1, VAR2=2` as ZeekControl splits it.
fn env_vars(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    if text.is_empty() {
        return Ok(env);
    }
    for item in text.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("missing '=' in env_vars option value: {item}"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!(
                "env_vars option value must contain at least one environment variable name: {item}"
            ));
        }
        env.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(env)
}

/// The CPUs of `pin_cpus`, repeated to cover `procs` processes.
fn pin_cpus(text: &str, procs: usize) -> Result<Vec<i64>, ()> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let cpus: Vec<i64> = text
        .split(',')
        .map(|c| c.trim().parse::<i64>().map_err(|_| ()))
        .collect::<Result<_, _>>()?;
    if cpus.iter().any(|c| *c < 0) {
        return Err(());
    }
    let n = cpus.len();
    Ok(if procs > n {
        (0..procs).map(|i| cpus[i % n]).collect()
    } else {
        cpus
    })
}

/// The instance a host becomes: the mapped agent, else `agent-<host>`
/// (`agent-<this host's name>` for the loopback names).
fn instance_of(host: &str, map: &HostMap) -> String {
    if let Some(name) = map.get(host) {
        return name.clone();
    }
    if LOOPBACK.contains(&host) {
        return crate::agent::config::default_name();
    }
    format!("agent-{host}")
}

/// `networks.cfg` (`PREFIX [description]` per line) as the value of
/// `Site::local_nets`.
pub fn local_nets(text: &str) -> Option<String> {
    let nets: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    (!nets.is_empty()).then(|| format!("{{{}}}", nets.join(",")))
}

/// Reads `node.cfg` (`text`, named `file`), with `networks` the text of a
/// `networks.cfg` beside it, if any.
pub fn convert(
    text: &str,
    file: &str,
    networks: Option<&str>,
    zeekctl: Option<&ZeekctlSettings>,
    map: &HostMap,
) -> Result<Converted, FileError> {
    let mut warnings = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut hosts: BTreeMap<String, String> = BTreeMap::new();
    let mut names_lower: Vec<(String, String)> = Vec::new();
    let local_nets = networks.and_then(local_nets);
    let mut standalone = false;
    // Each node's host, beside `nodes`.
    let mut node_hosts: Vec<String> = Vec::new();
    for sec in sections(text, file)? {
        let name = sec.name.as_str();
        let no = |message: String| refuse(file, Some(name), message);
        for key in sec.keys.keys() {
            if !KEYS.contains(&key.as_str()) {
                warnings.push(format!(
                    "ignoring unrecognized node config option '{key}' given for node '{name}'"
                ));
            } else if NOT_CARRIED.contains(&key.as_str()) && !sec.get(key).is_empty() {
                warnings.push(format!(
                    "node config option '{key}' given for node '{name}' is not carried (no counterpart here)"
                ));
            }
        }
        let kind = sec.get("type");
        if kind.is_empty() {
            return Err(no(format!("no type given for node {name}")));
        }
        let role = match kind {
            "manager" | "standalone" => Role::Manager,
            "logger" => Role::Logger,
            "proxy" => Role::Proxy,
            "worker" => Role::Worker,
            other => {
                return Err(no(format!(
                    "unknown node type '{other}' given for node '{name}'"
                )))
            }
        };
        let host = sec.get("host");
        if host.is_empty() {
            return Err(no(format!("no host given for node '{name}'")));
        }
        // zeekctl.cfg's env_vars for every node; the node's own win.
        let mut env = zeekctl.map(|z| z.env_vars.clone()).unwrap_or_default();
        env.extend(
            env_vars(sec.get("env_vars")).map_err(|e| no(format!("node '{name}' config: {e}")))?,
        );
        let (lb_procs, lb_method) = (sec.get("lb_procs"), sec.get("lb_method"));
        let mut procs = 0usize;
        if !lb_procs.is_empty() {
            if kind != "worker" {
                return Err(no(format!("node '{name}' config: load balancing node config options are only for worker nodes")));
            }
            let n: i64 = lb_procs.parse().map_err(|_| {
                no(format!(
                    "number of load-balanced processes must be an integer for node '{name}'"
                ))
            })?;
            if n < 1 {
                return Err(no(format!(
                    "number of load-balanced processes must be greater than zero for node '{name}'"
                )));
            }
            procs = usize::try_from(n).unwrap_or(1);
        } else if !lb_method.is_empty() {
            return Err(no(format!(
                "number of load-balanced processes not specified for node '{name}'"
            )));
        }
        let cpus = pin_cpus(sec.get("pin_cpus"), procs).map_err(|()| {
            no(format!(
                "pin cpus list must contain only non-negative integers for node '{name}'"
            ))
        })?;
        let mut interface = sec.get("interface").to_owned();
        let mut interfaces: Vec<String> = Vec::new();
        if procs > 0 {
            match lb_method {
                "" => {
                    return Err(no(format!(
                        "no load balancing method given for node '{name}'"
                    )))
                }
                "af_packet" => {
                    if interface.starts_with("af_packet::") {
                        return Err(no(format!(
                            "unexpected af_packet:: prefix for interface {interface} of {name}"
                        )));
                    }
                    interface = format!("af_packet::{interface}");
                }
                "interfaces" => {
                    let list = sec.get("lb_interfaces");
                    if list.is_empty() {
                        return Err(no(format!(
                            "list of load-balanced interfaces not specified for node '{name}'"
                        )));
                    }
                    interfaces = list.split(',').map(|i| i.trim().to_owned()).collect();
                    if interfaces.len() != procs {
                        return Err(no(format!("number of load-balanced interfaces is not same as number of load-balanced processes for node '{name}'")));
                    }
                }
                method @ ("pf_ring" | "myricom" | "custom") => {
                    return Err(no(format!(
                        "load balancing method '{method}' of node '{name}' cannot be driven by zeek-mgmt-agent (it needs ZeekControl's {method} plugin and its drivers); use lb_method=af_packet (Linux's own fanout), or lb_method=interfaces"
                    )))
                }
                other => {
                    return Err(no(format!(
                        "unknown load balancing method '{other}' given for node '{name}'"
                    )))
                }
            }
        }
        let instance = instance_of(host, map);
        hosts.insert(host.to_owned(), instance.clone());
        let mut template = Node::new(name, &instance, role);
        template.env = env;
        if !interface.is_empty() {
            template.interface = Some(interface.clone());
        }
        let aux = sec.get("aux_scripts");
        if !aux.is_empty() {
            template.scripts = Some(aux.split_whitespace().map(str::to_owned).collect());
        }
        let mut options: Vec<ZeekOption> = Vec::new();
        for (key, id) in [
            ("af_packet_fanout_id", "AF_Packet::fanout_id"),
            ("af_packet_fanout_mode", "AF_Packet::fanout_mode"),
            ("af_packet_buffer_size", "AF_Packet::buffer_size"),
        ] {
            let v = sec.get(key);
            if !v.is_empty() {
                options.push(ZeekOption {
                    name: id.to_owned(),
                    value: v.to_owned(),
                });
            }
        }
        if let Some(nets) = &local_nets {
            options.push(ZeekOption {
                name: "Site::local_nets".to_owned(),
                value: nets.clone(),
            });
        }
        if !options.is_empty() {
            template.options = Some(options);
        }
        let expanded: Vec<Node> = if procs == 0 {
            template.cpu_affinity = cpus.first().copied();
            vec![template]
        } else {
            (1..=procs)
                .map(|i| {
                    let mut n = template.clone();
                    n.name = format!("{name}-{i}");
                    n.cpu_affinity = cpus.get(i - 1).copied();
                    if !interfaces.is_empty() {
                        // ZeekControl hands them out from the end of the list.
                        n.interface = Some(interfaces[procs - i].clone());
                    }
                    n
                })
                .collect()
        };
        for n in expanded {
            node_hosts.push(host.to_owned());
            let lower = n.name.to_ascii_lowercase();
            if let Some((_, first)) = names_lower.iter().find(|(l, _)| *l == lower) {
                return Err(no(format!(
                    "node name \"{}\" is a duplicate of \"{first}\"",
                    n.name
                )));
            }
            names_lower.push((lower, n.name.clone()));
            nodes.push(n);
        }
        standalone |= kind == "standalone";
    }
    check_nodes(file, &nodes, &node_hosts, standalone)?;
    assign_ports(
        &mut nodes,
        zeekctl.and_then(|z| z.zeek_port).unwrap_or(ZEEK_PORT),
    );
    let instances = hosts
        .iter()
        .map(|(host, name)| {
            let local = LOOPBACK.contains(&host.as_str());
            InstanceSpec {
                name: name.clone(),
                host: (!local).then(|| host.clone()),
                port: (!local).then_some(AGENT_PORT),
            }
        })
        .collect();
    Ok(Converted {
        file: ClusterFile {
            id: String::new(),
            instances,
            nodes,
            warnings,
            zeromq: None,
            adopt_names: true,
        },
        hosts,
        notes: zeekctl.map(|z| z.notes.clone()).unwrap_or_default(),
    })
}

/// ZeekControl's ports: from its `ZeekPort` (27760 unless zeekctl.cfg
/// says) up, the loggers
/// first, then the manager, then the proxies, in the file's order (the
/// workers listen on none).
fn assign_ports(nodes: &mut [Node], first: u16) {
    let mut next = first;
    for role in [Role::Logger, Role::Manager, Role::Proxy] {
        for n in nodes.iter_mut().filter(|n| n.role == role) {
            n.p = Some(crate::api::types::Port::tcp(next));
            next = next.saturating_add(1);
        }
    }
}

/// ZeekControl's checks of the whole: one manager (or one standalone node
/// alone), a proxy in a cluster, and every node on the loopback when the
/// manager is (`hosts[i]` is `nodes[i]`'s host).
fn check_nodes(
    file: &str,
    nodes: &[Node],
    hosts: &[String],
    standalone: bool,
) -> Result<(), FileError> {
    let no = |m: &str| refuse(file, None, m.to_owned());
    if nodes.is_empty() {
        return Err(no("no nodes found in node config"));
    }
    let managers = nodes.iter().filter(|n| n.role == Role::Manager).count();
    if standalone {
        if nodes.len() > 1 {
            return Err(no("more than one node defined in standalone node config"));
        }
        return Ok(());
    }
    if managers > 1 {
        return Err(no("only one manager can be defined in node config"));
    }
    if managers == 0 {
        return Err(no("no manager defined in node config"));
    }
    if !nodes.iter().any(|n| n.role == Role::Proxy) {
        return Err(no("no proxy defined in node config"));
    }
    let loopback = |h: &str| LOOPBACK.contains(&h);
    let manager_local = nodes
        .iter()
        .zip(hosts)
        .any(|(n, h)| n.role == Role::Manager && loopback(h));
    if manager_local
        && nodes
            .iter()
            .zip(hosts)
            .any(|(n, h)| n.role != Role::Manager && !loopback(h))
    {
        return Err(no(
            "all nodes must use localhost/127.0.0.1/::1 when manager uses it",
        ));
    }
    Ok(())
}

/// The converted file as our INI: the hosts as comments, the instances
/// (an address for the remote ones, where their agents listen), then the
/// nodes with their Zeek options.
pub fn ini(c: &Converted) -> String {
    let mut out =
        String::from("# Converted from ZeekControl's node.cfg. Hosts and their instances:\n");
    for (host, name) in &c.hosts {
        out.push_str(&format!("#   {host} -> {name}\n"));
    }
    if !c.notes.is_empty() {
        out.push_str("# zeekctl.cfg, setting by setting:\n");
        for n in &c.notes {
            out.push_str(&format!("#   {n}\n"));
        }
    }
    out.push_str("\n[instances]\n");
    for i in &c.file.instances {
        match i.address() {
            Some(a) => out.push_str(&format!("{} = {a}\n", i.name)),
            None => out.push_str(&format!("{}\n", i.name)),
        }
    }
    out.push('\n');
    let nodes = crate::api::types::Configuration {
        nodes: c.file.nodes.clone(),
        ..Default::default()
    };
    out.push_str(&super::controller::ini_text(&nodes, true));
    out
}

/// Whether a cluster file is ZeekControl's `node.cfg` (by its name).
pub fn is_node_cfg(path: &str) -> bool {
    path.ends_with(".cfg")
}

/// Reads a `node.cfg` file and the `networks.cfg` beside it.
pub fn read(path: &str, map: &HostMap) -> Result<Converted, FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| refuse(path, None, format!("cannot read node config file: {e}")))?;
    let beside = |name: &str| {
        Path::new(path)
            .parent()
            .map(|d| d.join(name))
            .and_then(|p| std::fs::read_to_string(p).ok())
    };
    let networks = beside("networks.cfg");
    let zeekctl = match beside("zeekctl.cfg") {
        Some(text) => Some(zeekctl::read(&text).map_err(|e| refuse("zeekctl.cfg", None, e))?),
        None => None,
    };
    convert(&text, path, networks.as_deref(), zeekctl.as_ref(), map)
}

#[cfg(test)]
mod tests;
