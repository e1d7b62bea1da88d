//! `zeek-mgmt-client --controller`: the client speaking to a controller
//! over its WebSocket API, as Zeek's `zeek-client` 1.5.0 does, and printing
//! what zeek-client prints, byte for byte, with the same exit codes. The
//! requests and answers are the Broker JSON values of `crate::broker`; what
//! is printed is a pure function of the answer (the `Printed` of each
//! command), so that it can be tested without a controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value as Json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::api::types::{Configuration, Instance, Node, Role};
use crate::broker::message::{DataMessage, Event, CONTROLLER_TOPIC};
use crate::broker::records::{self, BrokerResult};
use crate::broker::Value;

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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to a controller's WebSocket API, subscribed and acked.
pub struct Session {
    ws: WebSocketStream<Box<dyn Io>>,
    addr: String,
    timeout: Duration,
}

/// How zeek-client dials: 10 tries, 1 s apart, each waiting 1 s for the
/// connection and then for the ack.
const TRIES: u32 = 10;
const TRY_WAIT: Duration = Duration::from_secs(1);

impl Session {
    /// Connects to `addr` (`HOST:PORT`), with TLS when `tls` is given.
    /// `timeout` bounds each answer (zeek-client: 20 s).
    pub async fn connect(
        addr: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Session, String> {
        let mut reached = false;
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(TRY_WAIT).await;
            }
            let Ok(Ok(ws)) = tokio::time::timeout(TRY_WAIT, open(addr, tls.clone())).await else {
                continue;
            };
            reached = true;
            let mut ws = ws;
            if ws
                .send(Message::text(format!("[\"{CONTROLLER_TOPIC}\"]")))
                .await
                .is_err()
            {
                continue;
            }
            match tokio::time::timeout(TRY_WAIT, first_text(&mut ws)).await {
                Ok(Some(text)) => {
                    let v: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
                    if v.get("type").is_some() && v.get("endpoint").is_some() {
                        return Ok(Session {
                            ws,
                            addr: addr.to_owned(),
                            timeout,
                        });
                    }
                    return Err(format!(
                        "protocol data error with controller {addr}: invalid data layout for HandshakeAckMessage: required key \"endpoint\" missing, raw data: {text}"
                    ));
                }
                _ => continue,
            }
        }
        Err(if reached {
            format!("websocket connection to {addr} timed out in handshake")
        } else {
            format!("websocket connection to {addr} timed out in connect()")
        })
    }

    /// Publishes `<stem>_request(reqid, args...)` and returns the
    /// arguments after the reqid of its response.
    pub async fn ask(&mut self, stem: &str, args: Vec<Value>) -> Result<Vec<Value>, String> {
        let reqid = uuid::Uuid::new_v4().to_string();
        let mut all = vec![Value::string(&reqid)];
        all.extend(args);
        let m = DataMessage {
            topic: CONTROLLER_TOPIC.into(),
            value: Event {
                name: format!("Management::Controller::API::{stem}_request"),
                args: all,
            }
            .into_value(),
        };
        let lost = || {
            format!(
                "no response received: websocket connection to {} timed out",
                self.addr
            )
        };
        if self.ws.send(Message::text(m.to_json())).await.is_err() {
            return Err(lost());
        }
        let want = format!("Management::Controller::API::{stem}_response");
        let wait = async {
            loop {
                let text = match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => return None,
                };
                let Some(e) = DataMessage::parse(text.as_str())
                    .ok()
                    .and_then(|m| Event::from_value(&m.value))
                else {
                    continue;
                };
                if e.name == want && e.args.first().and_then(Value::as_str) == Some(&reqid) {
                    return Some(e.args.into_iter().skip(1).collect());
                }
            }
        };
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Some(args)) => Ok(args),
            _ => Err(lost()),
        }
    }

    /// Every data message published to this client, as one JSON object per
    /// line: `{"topic", "event", "args"}` with the arguments in Broker's
    /// JSON form; until the connection ends.
    pub async fn monitor(&mut self, mut line: impl FnMut(String)) {
        while let Some(item) = self.ws.next().await {
            let Ok(Message::Text(t)) = item else {
                if item.is_err() {
                    return;
                }
                continue;
            };
            let Ok(m) = DataMessage::parse(t.as_str()) else {
                continue;
            };
            let Some(e) = Event::from_value(&m.value) else {
                continue;
            };
            let args: Vec<Json> = e
                .args
                .iter()
                .map(|a| serde_json::from_str(&a.to_json()).unwrap_or(Json::Null))
                .collect();
            line(json!({"topic": m.topic, "event": e.name, "args": args}).to_string());
        }
    }
}

async fn open(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WebSocketStream<Box<dyn Io>>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let host = addr
        .parse::<crate::protocol::HostPort>()
        .map(|hp| hp.host)
        .unwrap_or_else(|_| addr.to_owned());
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name =
                rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            Box::new(stream)
        }
    };
    let scheme = "ws";
    let url = format!("{scheme}://{addr}/v1/messages/json");
    tokio_tungstenite::client_async(url, io)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

async fn first_text(ws: &mut WebSocketStream<Box<dyn Io>>) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
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
    let mut errors = Vec::new();
    let mut results = Map::new();
    let mut nodes = Map::new();
    let mut failed = false;
    for r in results_of(args) {
        failed |= !r.success;
        match (&r.node, &r.instance) {
            (None, _) if !r.success => {
                if let Some(e) = &r.error {
                    errors.push(json!(e));
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
    })
}

#[cfg(test)]
mod tests;
