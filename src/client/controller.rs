//! `zeek-mgmt-client --controller`: the client speaking to a controller
//! over its WebSocket API, as Zeek's `zeek-client` 1.5.0 does, and printing
//! what zeek-client prints, byte for byte, with the same exit codes. The
//! requests and answers are the Broker JSON values of `crate::broker`; what
//! is printed is a pure function of the answer (the `Printed` of each
//! command), so that it can be tested without a controller.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::api::types::{Configuration, Instance, Node, Role};
use crate::broker::records::{self, BrokerResult};
use crate::broker::Value;

pub mod cluster_file;
mod session;
pub mod settings;
pub use session::Session;

/// What a command prints, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Printed {
    fn json(v: &Json, failed: bool) -> Printed {
        Printed {
            stdout: render(v),
            stderr: String::new(),
            code: u8::from(failed),
        }
    }

    /// `error: <message>` on stderr, exit 1.
    pub fn error(message: &str) -> Printed {
        Printed {
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
            code: 1,
        }
    }
}

/// Python's `json.dumps(v, sort_keys=True, indent=2)` plus a newline:
/// sorted keys, 2-space indent, `": "`, and non-ASCII as `\uXXXX`.
pub fn render(v: &Json) -> String {
    let pretty = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".to_owned());
    let mut out = String::with_capacity(pretty.len() + 1);
    for c in pretty.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out.push('\n');
    out
}

/// The results of a response: its one Result, or its vector of them.
pub fn results_of(args: &[Value]) -> Vec<BrokerResult> {
    match args.first() {
        Some(Value::Vector(v)) if v.first().is_some_and(|f| matches!(f, Value::Vector(_))) => v
            .iter()
            .filter_map(|r| BrokerResult::from_value(r).ok())
            .collect(),
        Some(Value::Vector(v)) if v.is_empty() => Vec::new(),
        Some(one) => BrokerResult::from_value(one).into_iter().collect(),
        None => Vec::new(),
    }
}

fn source(s: &Option<String>) -> Json {
    s.as_ref().map_or(Json::Null, |v| json!(v))
}

fn error_text(r: &BrokerResult) -> String {
    r.error
        .clone()
        .unwrap_or_else(|| "no reason given".to_owned())
}

/// An enum value's bare name (`WORKER` of `Supervisor::WORKER`), `null`
/// for `NONE`.
fn enum_name(v: &Value) -> Json {
    match v {
        Value::EnumValue(n) => match n.rsplit("::").next() {
            Some("NONE") | None => Json::Null,
            Some(bare) => json!(bare),
        },
        _ => Json::Null,
    }
}

fn port_number(v: &Value) -> Option<u64> {
    match v {
        Value::Port(p) => p.split('/').next().and_then(|n| n.parse().ok()),
        _ => None,
    }
}

/// `get-instances`.
pub fn get_instances(args: &[Value]) -> Printed {
    let Some(r) = results_of(args).into_iter().next() else {
        return Printed::error("no reason given");
    };
    if !r.success {
        return Printed::error(&error_text(&r));
    }
    let mut out = Map::new();
    for i in r.data.as_ref().and_then(Value::as_list).unwrap_or(&[]) {
        let Ok(inst) = records::read_instance(i) else {
            continue;
        };
        out.insert(inst.name.clone(), instance_json(&inst));
    }
    Printed::json(&Json::Object(out), false)
}

fn instance_json(i: &Instance) -> Json {
    let host = i.host.to_string();
    match (i.listen_port, host.as_str()) {
        (Some(p), _) => json!({"host": host, "port": p.number}),
        (None, "0.0.0.0") => json!({}),
        (None, _) => json!({"host": host}),
    }
}

/// Sorted by instance, unset instances last, in a stable sort.
fn by_instance(mut results: Vec<BrokerResult>) -> Vec<BrokerResult> {
    results.sort_by(|a, b| match (&a.instance, &b.instance) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    results
}

/// `get-nodes`.
pub fn get_nodes(args: &[Value]) -> Printed {
    let mut errors = Vec::new();
    let mut results = Map::new();
    for r in by_instance(results_of(args)) {
        if !r.success {
            errors.push(json!({"source": source(&r.instance), "error": error_text(&r)}));
            continue;
        }
        let Some(list) = r.data.as_ref().and_then(Value::as_list) else {
            errors.push(json!({"source": source(&r.instance), "error": "result does not contain node status data"}));
            continue;
        };
        let mut nodes = Map::new();
        for s in list {
            let Some(f) = s.as_list().filter(|f| f.len() >= 4) else {
                continue;
            };
            let mut n = Map::new();
            n.insert("state".into(), enum_name(&f[1]));
            n.insert("mgmt_role".into(), enum_name(&f[2]));
            n.insert("cluster_role".into(), enum_name(&f[3]));
            if let Some(Value::Integer(pid)) = f.get(4) {
                n.insert("pid".into(), json!(pid));
            }
            if let Some(p) = f.get(5).and_then(port_number) {
                n.insert("port".into(), json!(p));
            }
            if let Some(p) = f.get(6).and_then(port_number) {
                n.insert("metrics_port".into(), json!(p));
            }
            let name = f[0].as_str().unwrap_or_default().to_owned();
            nodes.insert(name, Json::Object(n));
        }
        results.insert(r.instance.clone().unwrap_or_default(), Json::Object(nodes));
    }
    let failed = !errors.is_empty();
    Printed::json(&json!({"errors": errors, "results": results}), failed)
}

/// `stage-config`.
pub fn stage(args: &[Value]) -> Printed {
    let mut errors = Vec::new();
    let mut results = Map::new();
    for r in results_of(args) {
        if !r.success {
            errors.push(json!(error_text(&r)));
        } else if let Some(d) = &r.data {
            results.insert("id".into(), broker_to_json(d));
        }
    }
    let failed = !errors.is_empty();
    Printed::json(&json!({"errors": errors, "results": results}), failed)
}

/// `deploy` (and the second half of `deploy-config`).
pub fn deploy(args: &[Value]) -> Printed {
    node_verdicts(args, false)
}

/// `check` (ours): each node's verdict as `deploy` prints it; an agent's
/// own failure (not connected, an invalid configuration) under errors.
pub fn check(args: &[Value]) -> Printed {
    node_verdicts(args, true)
}

/// The errors and the nodes' results, as zeek-client prints a deployment's;
/// `agent_errors`: failures of an agent without a node are errors too
/// (zeek-client leaves them out of a deployment's answer).
fn node_verdicts(args: &[Value], agent_errors: bool) -> Printed {
    let mut errors = Vec::new();
    let mut results = Map::new();
    let mut nodes = Map::new();
    let mut failed = false;
    for r in results_of(args) {
        failed |= !r.success;
        match (&r.node, &r.instance) {
            (None, _) if !r.success && (r.instance.is_none() || agent_errors) => {
                if let Some(e) = &r.error {
                    match &r.instance {
                        Some(i) if !e.contains(i.as_str()) => {
                            errors.push(json!(format!("{i}: {e}")))
                        }
                        _ => errors.push(json!(e)),
                    }
                }
            }
            (None, None) => {
                if let Some(d) = &r.data {
                    results.insert("id".into(), broker_to_json(d));
                }
            }
            (_, None) | (None, Some(_)) => {}
            (Some(node), Some(instance)) => {
                let mut n = Map::new();
                n.insert("instance".into(), json!(instance));
                n.insert("success".into(), json!(r.success));
                if let Some(Value::Vector(outputs)) = &r.data {
                    if let [Value::String(stdout), Value::String(stderr)] = outputs.as_slice() {
                        n.insert("stdout".into(), json!(stdout));
                        n.insert("stderr".into(), json!(stderr));
                    }
                }
                nodes.insert(node.clone(), Json::Object(n));
            }
        }
    }
    if !nodes.is_empty() {
        results.insert("nodes".into(), Json::Object(nodes));
    }
    Printed::json(&json!({"errors": errors, "results": results}), failed)
}

/// `get-config`: the configuration as INI (zeek-client's layout) or JSON.
pub fn get_config(args: &[Value], as_json: bool) -> Result<String, Printed> {
    let Some(r) = results_of(args).into_iter().next() else {
        return Err(Printed::error("no reason given"));
    };
    if !r.success {
        return Err(Printed::error(&error_text(&r)));
    }
    let config = r
        .data
        .as_ref()
        .ok_or_else(|| "no configuration in the result".to_owned())
        .and_then(records::read_configuration)
        .map_err(|e| Printed::error(&e))?;
    Ok(if as_json {
        render(&config_json(&config))
    } else {
        config_ini(&config)
    })
}

fn sorted_instances(c: &Configuration) -> Vec<&Instance> {
    let mut v: Vec<&Instance> = c.instances.iter().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn sorted_nodes(c: &Configuration) -> Vec<&Node> {
    let mut v: Vec<&Node> = c.nodes.iter().collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn role_name(r: Role) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A value quoted when it holds a space, as Python's `shlex.quote` would
/// leave the simple ones alone.
fn quoted(s: &str) -> String {
    if s.contains(' ') {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

fn config_ini(c: &Configuration) -> String {
    ini_text(c, false)
}

/// A configuration in the INI form; `with_options` adds each node's Zeek
/// options (`options = NAME=VALUE ...`, a key of ours that zeek-client's
/// INI lacks).
pub fn ini_text(c: &Configuration, with_options: bool) -> String {
    let mut out = String::new();
    if !c.instances.is_empty() {
        out.push_str("[instances]\n");
        for i in sorted_instances(c) {
            match i.listen_port {
                Some(p) => out.push_str(&format!("{} = {}:{}\n", i.name, i.host, p.number)),
                None => out.push_str(&format!("{}\n", i.name)),
            }
        }
        out.push('\n');
    }
    for n in sorted_nodes(c) {
        out.push_str(&format!("[{}]\n", n.name));
        out.push_str(&format!("instance = {}\n", n.instance));
        if n.role != Role::None {
            out.push_str(&format!("role = {}\n", role_name(n.role)));
        }
        if let Some(p) = n.p {
            out.push_str(&format!("port = {}\n", p.number));
        }
        if let Some(scripts) = n.scripts.as_ref().filter(|s| !s.is_empty()) {
            let mut s: Vec<&String> = scripts.iter().collect();
            s.sort();
            let s: Vec<String> = s.into_iter().map(|x| quoted(x)).collect();
            out.push_str(&format!("scripts = {}\n", s.join(" ")));
        }
        if let Some(i) = &n.interface {
            out.push_str(&format!("interface = {i}\n"));
        }
        if let Some(cpu) = n.cpu_affinity {
            out.push_str(&format!("cpu_affinity = {cpu}\n"));
        }
        if !n.env.is_empty() {
            let env: Vec<String> = n
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", quoted(v)))
                .collect();
            out.push_str(&format!("env = {}\n", env.join(" ")));
        }
        if let Some(p) = n.metrics_port {
            out.push_str(&format!("metrics_port = {}\n", p.number));
        }
        if let Some(options) = n.options.as_ref().filter(|o| with_options && !o.is_empty()) {
            let o: Vec<String> = options
                .iter()
                .map(|o| quoted(&format!("{}={}", o.name, o.value)))
                .collect();
            out.push_str(&format!("options = {}\n", o.join(" ")));
        }
        out.push('\n');
    }
    out
}

fn config_json(c: &Configuration) -> Json {
    let instances: Vec<Json> = sorted_instances(c)
        .into_iter()
        .map(|i| {
            let host = i.host.to_string();
            match (i.listen_port, host.as_str()) {
                (Some(p), _) => json!({"host": host, "name": i.name, "port": p.number}),
                (None, "0.0.0.0") => json!({"name": i.name}),
                (None, _) => json!({"host": host, "name": i.name}),
            }
        })
        .collect();
    let nodes: Vec<Json> = sorted_nodes(c)
        .into_iter()
        .map(|n| {
            let env: BTreeMap<&String, &String> = n.env.iter().collect();
            json!({
                "cpu_affinity": n.cpu_affinity,
                "env": env,
                "instance": n.instance,
                "interface": n.interface,
                "metrics_port": n.metrics_port.map(|p| p.number),
                "name": n.name,
                "options": Json::Null,
                "port": n.p.map(|p| p.number),
                "role": role_name(n.role),
                "scripts": n.scripts,
            })
        })
        .collect();
    json!({"id": c.id, "instances": instances, "nodes": nodes})
}

/// Results sorted by instance, then node.
fn by_instance_and_node(mut results: Vec<BrokerResult>) -> Vec<BrokerResult> {
    results.sort_by(|a, b| (&a.instance, &a.node).cmp(&(&b.instance, &b.node)));
    results
}

/// `restart`.
pub fn restart(args: &[Value]) -> Printed {
    let mut errors = Vec::new();
    let mut results = Map::new();
    for r in by_instance_and_node(results_of(args)) {
        if !r.success && r.instance.is_none() {
            errors.push(json!({"source": source(&r.node), "error": error_text(&r)}));
        } else if let Some(node) = &r.node {
            results.insert(node.clone(), json!(r.success));
        } else {
            errors.push(json!({"error": format!("result lacking node: {}", result_repr(&r))}));
        }
    }
    let failed = !errors.is_empty();
    Printed::json(&json!({"errors": errors, "results": results}), failed)
}

/// `get-id-value`.
pub fn get_id_value(args: &[Value]) -> Printed {
    let mut errors = Vec::new();
    let mut results = Map::new();
    for r in by_instance_and_node(results_of(args)) {
        if !r.success {
            errors.push(json!({"source": source(&r.node), "error": error_text(&r)}));
            continue;
        }
        let Some(node) = &r.node else {
            errors.push(json!({"error": format!("result lacking node: {}", result_repr(&r))}));
            continue;
        };
        match &r.data {
            Some(Value::String(text)) => match serde_json::from_str::<Json>(text) {
                Ok(v) => {
                    results.insert(node.clone(), v);
                }
                Err(e) => {
                    errors.push(json!({"source": node, "error": format!("JSON decode error: {e}")}))
                }
            },
            other => errors.push(
                json!({"source": node, "error": format!("invalid result data type {other:?}")}),
            ),
        }
    }
    let failed = !errors.is_empty();
    Printed::json(&json!({"errors": errors, "results": results}), failed)
}

/// `test-timeout`: the one Result.
pub fn test_timeout(args: &[Value]) -> Printed {
    let Some(r) = results_of(args).into_iter().next() else {
        return Printed::error("no reason given");
    };
    let mut m = Map::new();
    m.insert("success".into(), json!(r.success));
    if let Some(e) = &r.error {
        m.insert("error".into(), json!(e));
    }
    Printed::json(&Json::Object(m), false)
}

fn result_repr(r: &BrokerResult) -> String {
    format!(
        "Result(reqid={:?}, success={}, instance={:?}, node={:?})",
        r.reqid, r.success, r.instance, r.node
    )
}

/// A Broker value as plain JSON (strings, numbers, arrays).
fn broker_to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => json!(s),
        Value::Count(n) => json!(n),
        Value::Integer(n) => json!(n),
        Value::Boolean(b) => json!(b),
        Value::Vector(v) | Value::Set(v) => Json::Array(v.iter().map(broker_to_json).collect()),
        _ => Json::Null,
    }
}

/// The controller's `HOST:PORT` as zeek-client reads `--controller`:
/// either part may be left out (`10.0.0.1` or `:2149`; 127.0.0.1 and 2149
/// stand in), and an IPv6 host is written in brackets (`[::1]:2149`). The
/// result is also how errors name the controller.
pub fn controller_address(arg: &str) -> Result<String, String> {
    let (host, port) =
        split_controller(arg).map_err(|e| format!("controller address {arg:?}: {e}"))?;
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let port = if port.is_empty() { "2149" } else { port };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "controller address {arg:?}: the port {port:?} is not a number 0-65535"
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// `HOST:PORT` split as zeek-client splits `--controller`, either part
/// empty when left out (`[::1]` is a host alone).
pub fn split_controller(arg: &str) -> Result<(&str, &str), String> {
    match arg.rsplit_once(':') {
        None => Ok((arg, "")),
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
            Err("IPv6 addresses must be surrounded by brackets: [<ipv6>]:<port>".to_owned())
        }
        Some((host, port)) if host.contains(':') && port.ends_with(']') => Ok((arg, "")),
        Some(parts) => Ok(parts),
    }
}

/// The configuration zeek-client sends for a cluster file: a fresh id,
/// instances with their host (`0.0.0.0` when the file gives none) and
/// port.
pub fn staged_configuration(file: &super::ini::ClusterFile) -> Result<Configuration, String> {
    let mut instances = Vec::new();
    for i in &file.instances {
        let host = match &i.host {
            None => std::net::IpAddr::from([0, 0, 0, 0]),
            Some(h) => match h.parse() {
                Ok(ip) => ip,
                Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), 0))
                    .ok()
                    .and_then(|mut a| a.next())
                    .map(|a| a.ip())
                    .ok_or_else(|| format!("cannot resolve host {h:?} of instance {:?}", i.name))?,
            },
        };
        instances.push(Instance {
            name: i.name.clone(),
            host: crate::api::types::Addr(host),
            listen_port: i.port.map(crate::api::types::Port::tcp),
        });
    }
    Ok(Configuration {
        id: uuid::Uuid::new_v4().to_string(),
        instances,
        nodes: file.nodes.clone(),
        zeromq: None,
    })
}

#[cfg(test)]
mod tests;
