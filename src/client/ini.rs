//! Cluster configuration files as `zeek-client` reads them: an optional
//! `[instances]` section, then one section per node. Also the same
//! configuration as JSON (the record shapes of the protocol).

use std::collections::BTreeMap;
use std::fmt;

use crate::api::types::{Configuration, Instance, Node, Port, Role, State};
use crate::protocol::HostPort;

/// Where a problem in a configuration file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(s) = &self.section {
            write!(f, ": section [{s}]")?;
        }
        if let Some(k) = &self.key {
            write!(f, ", key {k:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// An instance of the file: `name = host:port` (the agent listens there)
/// or a bare `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub name: String,
    /// A host name or address, when the file gives one.
    pub host: Option<String>,
    /// The port the agent listens on, when the file gives one.
    pub port: Option<u16>,
}

impl InstanceSpec {
    /// `host:port` to reach the agent at, when both are known.
    pub fn address(&self) -> Option<String> {
        let (host, port) = (self.host.as_ref()?, self.port?);
        Some(HostPort::new(host.clone(), port).to_string())
    }
}

/// A parsed cluster configuration, before instance hosts are resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFile {
    pub id: String,
    pub instances: Vec<InstanceSpec>,
    pub nodes: Vec<Node>,
    /// Things that did not stop the parse (unknown keys, `state`).
    pub warnings: Vec<String>,
    /// The manager's ZeroMQ broker ports (a JSON file's `zeromq`, or the
    /// client's `--zeromq-xpub-port`/`--zeromq-xsub-port`).
    pub zeromq: Option<crate::api::types::ZeromqPorts>,
    /// An instance named after its host (a node.cfg's) takes the name of
    /// the agent that answers at its address.
    pub adopt_names: bool,
}

impl ClusterFile {
    /// The configuration, with each instance's host from `hosts` (by
    /// instance name).
    pub fn configuration(&self, hosts: &BTreeMap<String, std::net::IpAddr>) -> Configuration {
        Configuration {
            id: self.id.clone(),
            instances: self
                .instances
                .iter()
                .map(|i| Instance {
                    name: i.name.clone(),
                    host: crate::api::types::Addr(
                        hosts.get(&i.name).copied().unwrap_or([127, 0, 0, 1].into()),
                    ),
                    listen_port: i.port.map(Port::tcp),
                })
                .collect(),
            nodes: self.nodes.clone(),
            zeromq: self.zeromq,
        }
    }
}

/// Splits like a POSIX shell: whitespace separates, quotes group, a
/// backslash escapes the next character (outside single quotes).
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn parse_role(v: &str) -> Option<Role> {
    match v.to_ascii_lowercase().as_str() {
        "manager" => Some(Role::Manager),
        "logger" => Some(Role::Logger),
        "proxy" => Some(Role::Proxy),
        "worker" => Some(Role::Worker),
        _ => None,
    }
}

/// Parses the INI form. `file` names the file in errors and warnings.
pub fn parse_ini(text: &str, file: &str) -> Result<ClusterFile, FileError> {
    parse_ini_checked(text, file)
}

fn parse_ini_checked(text: &str, file: &str) -> Result<ClusterFile, FileError> {
    let err = |line: usize, section: Option<&str>, key: Option<&str>, message: String| FileError {
        file: file.to_owned(),
        line: Some(line),
        section: section.map(str::to_owned),
        key: key.map(str::to_owned),
        message,
    };
    let mut instances: Vec<InstanceSpec> = Vec::new();
    let mut has_instances_section = false;
    // (section, line, node, explicit instance?)
    let mut nodes: Vec<(String, usize, Node, bool)> = Vec::new();
    let mut warnings = Vec::new();
    let mut section: Option<String> = None;
    let mut seen_sections = BTreeMap::new();

    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| {
                    err(
                        line_no,
                        None,
                        None,
                        format!("section header {line:?} lacks its closing ']'"),
                    )
                })?
                .trim()
                .to_owned();
            if name.is_empty() {
                return Err(err(line_no, None, None, "empty section name".into()));
            }
            if let Some(first) = seen_sections.insert(name.clone(), line_no) {
                return Err(err(
                    line_no,
                    Some(&name),
                    None,
                    format!("section repeats the one on line {first}"),
                ));
            }
            if name == "instances" {
                has_instances_section = true;
            } else {
                let mut node = Node::new(&name, "", Role::None);
                node.state = State::Pending;
                nodes.push((name.clone(), line_no, node, false));
            }
            section = Some(name);
            continue;
        }
        let Some(sec) = section.as_deref() else {
            return Err(err(
                line_no,
                None,
                None,
                format!("{line:?} is outside any section"),
            ));
        };
        let (key, value) = match line.split_once('=').or_else(|| line.split_once(':')) {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (line, None),
        };
        if sec == "instances" {
            let (host, port) = match value {
                None | Some("") => (None, None),
                Some(v) => {
                    let HostPort { host, port } = v
                        .parse::<HostPort>()
                        .map_err(|e| err(line_no, Some(sec), Some(key), e.to_string()))?;
                    (Some(host), Some(port))
                }
            };
            if instances.iter().any(|i| i.name == key) {
                return Err(err(
                    line_no,
                    Some(sec),
                    Some(key),
                    "instance listed twice".into(),
                ));
            }
            instances.push(InstanceSpec {
                name: key.to_owned(),
                host,
                port,
            });
            continue;
        }
        let Some((_, _, node, explicit)) = nodes.last_mut() else {
            continue;
        };
        let value = value.unwrap_or("");
        let bad = |m: String| err(line_no, Some(sec), Some(key), m);
        match key.to_ascii_lowercase().as_str() {
            "instance" => {
                node.instance = value.to_owned();
                *explicit = true;
            }
            "role" | "type" => {
                node.role = parse_role(value).ok_or_else(|| {
                    bad(format!("{value:?} is not a role (manager, logger, proxy, worker)"))
                })?;
            }
            "port" => node.p = Some(value.parse::<Port>().map_err(bad)?),
            "metrics_port" => node.metrics_port = Some(value.parse::<Port>().map_err(bad)?),
            "interface" => node.interface = Some(value.to_owned()),
            "cpu_affinity" => {
                node.cpu_affinity = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| bad(format!("{value:?} is not a CPU number")))?,
                )
            }
            "scripts" => node.scripts = Some(shell_split(value).map_err(bad)?),
            // Ours (zeek-client's INI has none): Zeek options, NAME=VALUE each.
            "options" => {
                let mut options = Vec::new();
                for word in shell_split(value).map_err(bad)? {
                    let (name, value) = word
                        .split_once('=')
                        .ok_or_else(|| bad(format!("{word:?} is not NAME=VALUE")))?;
                    options.push(crate::api::types::ZeekOption {
                        name: name.to_owned(),
                        value: value.to_owned(),
                    });
                }
                node.options = Some(options);
            }
            "env" => {
                for word in shell_split(value).map_err(bad)? {
                    let (k, v) = word
                        .split_once('=')
                        .ok_or_else(|| bad(format!("{word:?} is not KEY=VALUE")))?;
                    node.env.insert(k.to_owned(), v.to_owned());
                }
            }
            "state" => warnings.push(format!(
                "{file}:{line_no}: section [{sec}]: key \"state\" is ignored (the agent reports states)"
            )),
            other => warnings.push(format!("{file}:{line_no}: section [{sec}]: unknown key {other:?} ignored")),
        }
    }

    let explicit = nodes.iter().filter(|n| n.3).count();
    if explicit > 0 {
        if let Some((sec, line, _, _)) = nodes.iter().find(|n| !n.3) {
            return Err(err(
                *line,
                Some(sec),
                Some("instance"),
                "some nodes name an instance and this one does not: name one for every node, or for none".into(),
            ));
        }
    }
    if explicit == 0 && !nodes.is_empty() {
        let agent = crate::agent::config::default_name();
        for n in &mut nodes {
            n.2.instance = agent.clone();
        }
        if !instances.iter().any(|i| i.name == agent) {
            instances.push(InstanceSpec {
                name: agent,
                host: None,
                port: None,
            });
        }
    }
    for (sec, line, node, _) in &nodes {
        if node.role == Role::None {
            return Err(err(
                *line,
                Some(sec),
                Some("role"),
                "every node needs a role".into(),
            ));
        }
        if !instances.iter().any(|i| i.name == node.instance) {
            if has_instances_section {
                return Err(err(
                    *line,
                    Some(sec),
                    Some("instance"),
                    format!("instance {:?} is not listed in [instances]", node.instance),
                ));
            }
            instances.push(InstanceSpec {
                name: node.instance.clone(),
                host: None,
                port: None,
            });
        }
    }
    Ok(ClusterFile {
        id: String::new(),
        instances,
        nodes: nodes.into_iter().map(|n| n.2).collect(),
        warnings,
        zeromq: None,
        adopt_names: false,
    })
}

/// Parses the JSON form: a `Configuration` record.
pub fn parse_json(text: &str, file: &str) -> Result<ClusterFile, FileError> {
    let config: Configuration = serde_json::from_str(text).map_err(|e| FileError {
        file: file.to_owned(),
        line: Some(e.line()),
        section: None,
        key: None,
        message: e.to_string(),
    })?;
    Ok(ClusterFile {
        id: config.id,
        instances: config
            .instances
            .iter()
            .map(|i| InstanceSpec {
                name: i.name.clone(),
                host: Some(i.host.to_string()),
                port: i.listen_port.map(|p| p.number),
            })
            .collect(),
        nodes: config.nodes,
        warnings: Vec::new(),
        zeromq: config.zeromq,
        adopt_names: false,
    })
}

/// Parses by extension: `.json` as JSON, anything else as INI.
pub fn parse(text: &str, file: &str) -> Result<ClusterFile, FileError> {
    let parsed = if file.ends_with(".json") {
        parse_json(text, file)
    } else {
        parse_ini(text, file)
    }?;
    if parsed.nodes.is_empty() {
        // Deploying it would change nothing anywhere: an empty file is a
        // mistake (a wrong path, a truncated file), not a request.
        return Err(FileError {
            file: file.to_owned(),
            line: None,
            section: None,
            key: None,
            message: "the cluster file has no nodes, so there is nothing to deploy (to stop every node, use `standby`)".to_owned(),
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests;
