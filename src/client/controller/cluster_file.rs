//! A cluster file read as zeek-client 1.5.0 reads it before it stages it
//! with a controller: Python's `configparser` (keys case-insensitive, `=`
//! or `:`, `#`/`;` comments, indented continuation lines, a `[DEFAULT]`
//! section, keys without a value), then zeek-client's checks, in its order
//! and with its words, so that both clients refuse a file alike.
//!
//! Where zeek-client ends in a Python traceback (a line outside any
//! section, a section or key given twice), this reader gives one line of
//! its own instead; an instance host given by name, which zeek-client
//! cannot take, is resolved when the configuration is made.

use std::collections::BTreeSet;

use super::Printed;
use crate::api::types::{Node, Port, Role, State};
use crate::client::ini::{shell_split, ClusterFile, InstanceSpec};

/// Why a cluster file is not staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No file at that path.
    NoFile,
    /// zeek-client's own refusal of the configuration.
    Invalid(String),
    /// The file cannot be read as INI (zeek-client raises a traceback).
    Syntax(String),
}

impl Refusal {
    /// What the client prints, and its exit code.
    pub fn printed(&self) -> Printed {
        match self {
            Refusal::NoFile => Printed::error("please provide a cluster configuration file."),
            Refusal::Invalid(why) => Printed {
                stdout: String::new(),
                stderr: format!("error: {why}\nerror: configuration has errors, not sending\n"),
                code: 1,
            },
            Refusal::Syntax(why) => Printed::error(why),
        }
    }
}

/// Reads the cluster file at `path`.
pub fn read(path: &str) -> Result<ClusterFile, Refusal> {
    if !std::path::Path::new(path).is_file() {
        return Err(Refusal::NoFile);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Refusal::Syntax(format!("cannot read {path}: {e}")))?;
    parse(&text, path)
}

/// Reads a cluster file's text; `file` names it in syntax errors.
pub fn parse(text: &str, file: &str) -> Result<ClusterFile, Refusal> {
    let ini = Ini::parse(text, file)?;
    let mut instances = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut instance_free = 0;
    let has_instances = ini.sections.iter().any(|s| s.name == "instances");
    for section in &ini.sections {
        let items = ini.items(section);
        if section.name == "instances" {
            for (key, val) in items {
                instances.push(instance(&key, val.as_deref())?);
            }
            continue;
        }
        // A key without a value reads as absent (zeek-client's "needs a
        // value" check never fires: configparser's items() give "" for it).
        if !items.iter().any(|(k, _)| k == "instance") {
            instance_free += 1;
        }
        let node = node(&section.name, &items).map_err(|why| {
            Refusal::Invalid(format!(
                "invalid node \"{}\" configuration: {why}",
                section.name
            ))
        })?;
        nodes.push(node);
    }
    if instance_free > 0 {
        if instance_free != nodes.len() {
            return Err(Refusal::Invalid(
                "either all or no nodes must state instances".into(),
            ));
        }
        if has_instances {
            return Err(Refusal::Invalid(
                "omit instances section when skipping instances in node definitions".into(),
            ));
        }
    }
    if !has_instances {
        let names: BTreeSet<&str> = nodes.iter().map(|n| n.instance.as_str()).collect();
        instances = names
            .into_iter()
            .map(|name| InstanceSpec {
                name: name.to_owned(),
                host: None,
                port: None,
            })
            .collect();
    }
    Ok(ClusterFile {
        id: String::new(),
        instances,
        nodes,
        warnings: Vec::new(),
        zeromq: None,
        adopt_names: false,
    })
}

/// One `[instances]` entry: a name alone (an agent that connects), or
/// `HOST:PORT` (an agent the controller dials).
fn instance(name: &str, val: Option<&str>) -> Result<InstanceSpec, Refusal> {
    let Some(val) = val.filter(|v| !v.is_empty()) else {
        return Ok(InstanceSpec {
            name: name.to_owned(),
            host: None,
            port: None,
        });
    };
    let (host, port) = val.rsplit_once(':').unwrap_or(("", ""));
    if host.is_empty() || port.is_empty() {
        return Err(Refusal::Invalid(format!(
            "invalid spec for instance \"{name}\": \"{val}\" should be <host>:<port>"
        )));
    }
    let host = host.trim_matches(|c| c == '[' || c == ']' || c == ' ');
    let port = port.trim();
    let number = port.strip_suffix("/tcp").unwrap_or(port);
    let port = number.parse::<u16>().map_err(|_| {
        Refusal::Syntax(format!(
            "invalid port \"{port}\" of instance \"{name}\": expected a number 0-65535"
        ))
    })?;
    Ok(InstanceSpec {
        name: name.to_owned(),
        host: Some(host.to_owned()),
        port: Some(port),
    })
}

/// One node section, checked as zeek-client checks it (conversions first,
/// then the role, the ranges, scripts and environment).
fn node(name: &str, items: &[(String, Option<String>)]) -> Result<Node, String> {
    let get = |keys: &[&str]| -> Option<(&str, &str)> {
        keys.iter().find_map(|k| {
            items
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(key, v)| v.as_deref().map(|v| (key.as_str(), v)))
        })
    };
    let int = |key: &str| -> Result<Option<i128>, String> {
        match get(&[key]) {
            None => Ok(None),
            Some((k, v)) => python_int(v)
                .map(Some)
                .ok_or_else(|| format!("cannot convert \"{name}.{k}\" value \"{v}\" to int")),
        }
    };
    let instance = get(&["instance"]).map(|(_, v)| v.to_owned());
    let role = get(&["role", "type"]).map(|(_, v)| v.to_owned());
    let port = int("port")?;
    let interface = get(&["interface"]).map(|(_, v)| v.to_owned());
    let cpu_affinity = int("cpu_affinity")?;
    let metrics_port = int("metrics_port")?;

    let instance = match instance.filter(|i| !i.is_empty()) {
        Some(i) => i,
        None => crate::settings::host_name_or("agent"),
    };
    let role = match role.filter(|r| !r.is_empty()) {
        None => return Err("node requires a role".into()),
        Some(r) => lookup_role(&r).ok_or_else(|| format!("role \"{r}\" is invalid"))?,
    };
    let in_range = |p: i128| (1..=65535).contains(&p);
    let port = match port {
        Some(p) if !in_range(p) => return Err(format!("port {p} outside valid range")),
        p => p,
    };
    if metrics_port.is_some_and(|p| !in_range(p)) {
        // zeek-client names the node's port here, not the metrics port.
        let shown = port.map_or_else(|| "None".to_owned(), |p| p.to_string());
        return Err(format!("metrics port {shown} outside valid range"));
    }
    let mut node = Node::new(name, &instance, role);
    node.state = State::Pending;
    node.p = port.and_then(|p| u16::try_from(p).ok()).map(Port::tcp);
    node.metrics_port = metrics_port
        .and_then(|p| u16::try_from(p).ok())
        .map(Port::tcp);
    node.interface = interface;
    node.cpu_affinity =
        match cpu_affinity {
            None => None,
            Some(c) => Some(i64::try_from(c).map_err(|_| {
                format!("cannot convert \"{name}.cpu_affinity\" value \"{c}\" to int")
            })?),
        };
    if let Some((_, val)) = get(&["scripts"]).filter(|(_, v)| !v.is_empty()) {
        let mut scripts = shlex(val)?;
        scripts.sort();
        node.scripts = Some(scripts);
    }
    if let Some((_, val)) = get(&["env"]).filter(|(_, v)| !v.is_empty()) {
        let invalid = || format!("env value \"{val}\" is invalid");
        for item in shlex(val).map_err(|_| invalid())? {
            let (k, v) = item.split_once('=').ok_or_else(invalid)?;
            node.env.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(node)
}

/// A role by zeek-client's lookup: any `Module::` or `Module.` prefix
/// dropped, the rest upper-cased, then the enum's own names.
fn lookup_role(text: &str) -> Option<Role> {
    let name = text.rsplit("::").next().unwrap_or(text);
    let name = name.rsplit('.').next().unwrap_or(name);
    serde_json::from_value(serde_json::Value::String(name.to_uppercase())).ok()
}

/// Words as Python's `shlex.split` makes them, with its error words.
fn shlex(text: &str) -> Result<Vec<String>, String> {
    shell_split(text).map_err(|e| {
        if e.contains("quote") {
            "No closing quotation".to_owned()
        } else {
            "No escaped character".to_owned()
        }
    })
}

/// An integer as Python's `int()` reads one: an optional sign, digits,
/// single underscores between digits.
fn python_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let n: i128 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -n } else { n })
}

/// One section: its name and its keys in file order.
struct Section {
    name: String,
    items: Vec<(String, Option<String>)>,
}

/// The file as `configparser.ConfigParser(allow_no_value=True)` holds it.
struct Ini {
    defaults: Vec<(String, Option<String>)>,
    sections: Vec<Section>,
}

impl Ini {
    fn parse(text: &str, file: &str) -> Result<Ini, Refusal> {
        let mut ini = Ini {
            defaults: Vec::new(),
            sections: Vec::new(),
        };
        // None: before any section; Some(None): in [DEFAULT].
        let mut current: Option<Option<usize>> = None;
        // The key a continuation line extends, with its indent.
        let mut open: Option<(String, usize)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let stripped = raw.trim();
            let at = |why: String| Refusal::Syntax(format!("{file}:{line_no}: {why}"));
            if stripped.is_empty() || stripped.starts_with('#') || stripped.starts_with(';') {
                if stripped.is_empty() {
                    open = None;
                }
                continue;
            }
            let indent = raw.len() - raw.trim_start().len();
            if let (Some((key, key_indent)), Some(cur)) = (&open, current) {
                if indent > *key_indent {
                    let items = ini.items_mut(cur);
                    if let Some((_, Some(v))) = items.iter_mut().find(|(k, _)| k == key) {
                        v.push('\n');
                        v.push_str(stripped);
                        continue;
                    }
                }
            }
            open = None;
            if let Some(header) = stripped
                .strip_prefix('[')
                .and_then(|rest| rest.rfind(']').map(|end| &rest[..end]))
                .filter(|h| !h.is_empty())
            {
                if header == "DEFAULT" {
                    current = Some(None);
                    continue;
                }
                if ini.sections.iter().any(|s| s.name == header) {
                    return Err(at(format!("section [{header}] is given twice")));
                }
                ini.sections.push(Section {
                    name: header.to_owned(),
                    items: Vec::new(),
                });
                current = Some(Some(ini.sections.len() - 1));
                continue;
            }
            let Some(cur) = current else {
                return Err(at(format!("{stripped:?} is outside any section")));
            };
            let (key, value) = match stripped.find(['=', ':']) {
                Some(d) => (&stripped[..d], Some(stripped[d + 1..].trim().to_owned())),
                None => (stripped, None),
            };
            let key = key.trim().to_lowercase();
            if key.is_empty() {
                return Err(at(format!("{stripped:?} has no key")));
            }
            let items = ini.items_mut(cur);
            if items.iter().any(|(k, _)| *k == key) {
                return Err(at(format!("key {key:?} is given twice in its section")));
            }
            if value.is_some() {
                open = Some((key.clone(), indent));
            }
            items.push((key, value));
        }
        Ok(ini)
    }

    fn items_mut(&mut self, section: Option<usize>) -> &mut Vec<(String, Option<String>)> {
        match section.and_then(|i| self.sections.get_mut(i)) {
            Some(s) => &mut s.items,
            None => &mut self.defaults,
        }
    }

    /// A section's keys with `[DEFAULT]`'s beneath them, as `items()`.
    fn items(&self, section: &Section) -> Vec<(String, Option<String>)> {
        let mut all = self.defaults.clone();
        for (k, v) in &section.items {
            match all.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v.clone(),
                None => all.push((k.clone(), v.clone())),
            }
        }
        all
    }
}

#[cfg(test)]
mod tests;
