//! The operator client (`zeek-mgmt-client`): talks to one or many agents at
//! once over the library's controller side, and shapes their answers the
//! way Zeek's `zeek-client` does (one result per agent, JSON with sorted
//! keys).

pub mod controller;
pub mod crashes;
pub mod ini;
pub mod netstats;
pub mod nodecfg;
mod per_node;
mod table;

pub use table::nodes_table;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::api::events::{
    CheckConfigurationRequest, Notification, Request, SetConfigurationRequest, Stem,
};
use crate::api::types::{ApiResult, MgmtRole, NodeStatus, ReqId, ResultData, Role};
use crate::protocol::to_agent::{Connection, Incoming, LinkError, PeerOptions};
use crate::protocol::HostPort;

/// Default agent address.
pub const DEFAULT_AGENT: &str = "127.0.0.1:2151";

/// What keeps a client command from reaching an agent or getting its answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `--agent` address that is not `HOST:PORT`.
    #[error("agent address {addr:?}: expected HOST:PORT, for example 127.0.0.1:2151 or [::1]:2151 ({reason})")]
    Address { addr: String, reason: String },
    /// Dialling, TLS or the hello failed.
    #[error("cannot reach agent at {addr}: {source}")]
    Unreachable { addr: String, source: LinkError },
    /// The agent did not complete the connection in time.
    #[error("cannot reach agent at {addr}: no answer within {timeout:?}")]
    NoAnswer { addr: String, timeout: Duration },
    /// A request was asked for without the arguments it needs.
    #[error("{0} needs arguments")]
    NeedsArguments(&'static str),
    /// The request was sent but its answer did not come.
    #[error(transparent)]
    Request(#[from] LinkError),
    /// An instance's host name that does not resolve.
    #[error("cannot resolve host {host:?} of instance {instance:?}")]
    Resolve { host: String, instance: String },
    /// An instance that neither answered nor has an address in the file.
    #[error("no agent named {0:?} answered, and the file gives no address for it: add `{0} = HOST:PORT` to [instances] or pass --agent")]
    NoAddress(String),
}

/// Checks that an agent address is `HOST:PORT` (`[v6]:PORT` for an IPv6
/// address), before anything is dialled; returns it as the client dials it.
pub fn check_agent_address(addr: &str) -> Result<String, Error> {
    addr.parse::<HostPort>()
        .map(|hp| hp.to_string())
        .map_err(|e| Error::Address {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

/// How the client reaches its agents.
#[derive(Clone)]
pub struct ClientOptions {
    /// `host:port` of each agent.
    pub agents: Vec<String>,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// TLS towards the agents, when set.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What a command produced: the JSON to print, and whether any result
/// failed (exit 1) or an agent could not be reached (exit 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub json: Value,
    pub failed: bool,
    pub unreachable: bool,
}

impl Outcome {
    /// 0 when everything succeeded, 1 when any result failed, 2 when an
    /// agent could not be reached.
    pub fn exit_code(&self) -> u8 {
        if self.unreachable {
            2
        } else if self.failed {
            1
        } else {
            0
        }
    }
}

/// `{...}` printed with sorted keys, 2-space indent and a trailing newline.
pub fn render(v: &Value) -> String {
    // serde_json's Map keeps keys sorted (no `preserve_order`).
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}

async fn connect(addr: &str, opts: &ClientOptions) -> Result<Connection, Error> {
    let co = PeerOptions {
        endpoint: "zeek-mgmt-client".into(),
        role: "client".into(),
        tls: opts.tls.clone(),
        ..PeerOptions::default()
    };
    match tokio::time::timeout(opts.timeout, Connection::connect(addr, co)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(Error::Unreachable {
            addr: addr.to_owned(),
            source,
        }),
        Err(_) => Err(Error::NoAnswer {
            addr: addr.to_owned(),
            timeout: opts.timeout,
        }),
    }
}

/// A request built from a fresh reqid, or the error of one that cannot be
/// built.
pub type MakeRequest = Arc<dyn Fn(ReqId) -> Result<Request, Error> + Send + Sync>;

/// A request that takes no arguments but its reqid.
fn plain(stem: Stem) -> MakeRequest {
    Arc::new(move |reqid| {
        Request::without_args(stem, reqid).ok_or(Error::NeedsArguments(stem.request_name()))
    })
}

async fn ask(c: &Connection, make: &MakeRequest, opts: &ClientOptions) -> Result<ApiResult, Error> {
    let req = make(c.new_reqid())?;
    Ok(c.request(req, opts.timeout).await.map(|r| r.result)?)
}

/// An enum value by its wire name (`WORKER`), `null` for `NONE`, as
/// zeek-client prints it.
fn name_or_null<T: serde::Serialize>(v: T, none: bool) -> Value {
    if none {
        Value::Null
    } else {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }
}

/// One node's status as zeek-client prints it, plus our figures.
pub fn status_json(s: &NodeStatus) -> Value {
    let mut m = Map::new();
    m.insert(
        "cluster_role".into(),
        name_or_null(s.cluster_role, s.cluster_role == Role::None),
    );
    m.insert(
        "mgmt_role".into(),
        name_or_null(s.mgmt_role, s.mgmt_role == MgmtRole::None),
    );
    if let Some(pid) = s.pid {
        m.insert("pid".into(), json!(pid));
    }
    if let Some(p) = s.p {
        m.insert("port".into(), json!(p.number));
    }
    m.insert("state".into(), json!(s.state.to_string()));
    if let Some(v) = s.cpu_percent {
        m.insert("cpu_percent".into(), json!(v));
    }
    if let Some(v) = s.rss_bytes {
        m.insert("rss_bytes".into(), json!(v));
    }
    if let Some(v) = s.cpu_affinity {
        m.insert("cpu_affinity".into(), json!(v));
    }
    if let Some(v) = s.restarts {
        m.insert("restarts".into(), json!(v));
    }
    if let Some(v) = s.uptime_secs {
        m.insert("uptime_secs".into(), json!(v));
    }
    if let Some(v) = &s.running_by {
        m.insert("running_by".into(), json!(v));
    }
    if let Some(v) = s.joined {
        m.insert("joined".into(), json!(v));
    }
    if let Some(v) = &s.join_error {
        m.insert("join_error".into(), json!(v));
    }
    if let Some(a) = &s.archive {
        m.insert(
            "archive".into(),
            serde_json::to_value(a).unwrap_or(Value::Null),
        );
    }
    Value::Object(m)
}

pub(crate) fn error_entry(source: &str, error: &str) -> Value {
    json!({"source": source, "error": error})
}

/// Runs `stem` on every agent at once; `shape` turns each agent's result
/// into its entry under `results`.
async fn per_agent(opts: &ClientOptions, stem: Stem, shape: fn(&ApiResult) -> Value) -> Outcome {
    per_agent_with(opts, plain(stem), shape).await
}

/// Runs the request `make` builds on every agent at once; `shape` turns
/// each agent's result into its entry under `results`.
pub(crate) async fn per_agent_with(
    opts: &ClientOptions,
    make: MakeRequest,
    shape: fn(&ApiResult) -> Value,
) -> Outcome {
    let mut set = tokio::task::JoinSet::new();
    for addr in opts.agents.clone() {
        let (o, make) = (opts.clone(), Arc::clone(&make));
        set.spawn(async move {
            let c = match connect(&addr, &o).await {
                Ok(c) => c,
                Err(e) => return (addr, Err((true, e))),
            };
            let name = c.agent().endpoint.clone();
            match ask(&c, &make, &o).await {
                Ok(r) => (name, Ok(r)),
                Err(e) => (name, Err((false, e))),
            }
        });
    }
    let mut errors = Vec::new();
    let mut results = Map::new();
    let (mut failed, mut unreachable) = (false, false);
    while let Some(joined) = set.join_next().await {
        let Ok((source, r)) = joined else { continue };
        match r {
            Ok(result) => {
                if !result.success {
                    failed = true;
                    errors.push(error_entry(&source, &result.error));
                }
                results.insert(source, shape(&result));
            }
            Err((down, e)) => {
                unreachable |= down;
                failed = true;
                errors.push(error_entry(&source, &e.to_string()));
            }
        }
    }
    errors.sort_by_key(|e| e["source"].as_str().unwrap_or_default().to_owned());
    Outcome {
        json: json!({"errors": errors, "results": results}),
        failed,
        unreachable,
    }
}

/// `get-nodes`: every node of every agent. A running node that has not
/// joined its cluster is also an error, with the reason (as through a
/// controller).
pub async fn get_nodes(opts: &ClientOptions) -> Outcome {
    let mut outcome = per_agent(opts, Stem::GetNodes, |r| {
        let mut nodes = Map::new();
        if let Some(ResultData::NodeStatuses(list)) = &r.data {
            for s in list {
                nodes.insert(s.node.clone(), status_json(s));
            }
        }
        Value::Object(nodes)
    })
    .await;
    let mut not_joined = Vec::new();
    for (agent, nodes) in outcome.json["results"].as_object().into_iter().flatten() {
        for s in nodes.as_object().into_iter().flatten().map(|(_, s)| s) {
            if s["joined"] == Value::Bool(false) {
                let why = s["join_error"]
                    .as_str()
                    .unwrap_or("has not joined the cluster");
                not_joined.push(error_entry(agent, why));
            }
        }
    }
    if let Some(errors) = outcome.json["errors"].as_array_mut() {
        outcome.failed |= !not_joined.is_empty();
        errors.extend(not_joined);
        errors.sort_by_key(|e| e["source"].as_str().unwrap_or_default().to_owned());
    }
    outcome
}

fn success_json(r: &ApiResult) -> Value {
    let mut m = Map::new();
    m.insert("success".into(), json!(r.success));
    if !r.error.is_empty() {
        m.insert("error".into(), json!(r.error));
    }
    Value::Object(m)
}

/// `welcome`: agent_welcome on every agent.
pub async fn welcome(opts: &ClientOptions) -> Outcome {
    per_agent(opts, Stem::AgentWelcome, success_json).await
}

/// `standby`: agent_standby on every agent.
pub async fn standby(opts: &ClientOptions) -> Outcome {
    per_agent(opts, Stem::AgentStandby, success_json).await
}

/// Each instance that no agent of its name answered takes the name of the
/// agent that answered at its address (a node.cfg's host is an address,
/// not an agent's name), its nodes with it.
fn adopt_names(
    mut file: ini::ClusterFile,
    by_name: &BTreeMap<String, (Connection, String)>,
) -> ini::ClusterFile {
    for i in &mut file.instances {
        if by_name.contains_key(&i.name) {
            continue;
        }
        let Some(addr) = i.address() else { continue };
        let Some(agent) = by_name
            .iter()
            .find(|(_, (_, a))| *a == addr)
            .map(|(n, _)| n)
        else {
            continue;
        };
        for n in file.nodes.iter_mut().filter(|n| n.instance == i.name) {
            n.instance = agent.clone();
        }
        i.name = agent.clone();
    }
    file
}

fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    (host, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
}

/// `deploy`: sends the configuration to every agent it names. Agents with
/// an address in the file are dialled there; the others are found among
/// `opts.agents` by name. Returns an error for what makes a deployment
/// impossible (an agent whose host is unknown).
pub async fn deploy(opts: &ClientOptions, file: ini::ClusterFile) -> Result<Outcome, Error> {
    send_configuration(opts, file, false).await
}

/// `check`: every agent the file names checks its nodes as a deployment
/// would (Zeek's parse-only mode), and nothing is deployed.
pub async fn check(opts: &ClientOptions, file: ini::ClusterFile) -> Result<Outcome, Error> {
    send_configuration(opts, file, true).await
}

async fn send_configuration(
    opts: &ClientOptions,
    file: ini::ClusterFile,
    check_only: bool,
) -> Result<Outcome, Error> {
    // Dial every address we know: the file's and the command line's.
    let mut addrs: Vec<String> = file.instances.iter().filter_map(|i| i.address()).collect();
    if file.instances.iter().any(|i| i.address().is_none()) {
        addrs.extend(opts.agents.iter().cloned());
    }
    addrs.sort();
    addrs.dedup();
    let mut set = tokio::task::JoinSet::new();
    for addr in addrs {
        let o = opts.clone();
        set.spawn(async move {
            let r = connect(&addr, &o).await;
            (addr, r)
        });
    }
    let mut by_name: BTreeMap<String, (Connection, String)> = BTreeMap::new();
    let mut unreachable: Vec<(String, String)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        let Ok((addr, r)) = joined else { continue };
        match r {
            Ok(c) => {
                by_name
                    .entry(c.agent().endpoint.clone())
                    .or_insert((c, addr));
            }
            Err(e) => unreachable.push((addr, e.to_string())),
        }
    }
    let file = if file.adopt_names {
        adopt_names(file, &by_name)
    } else {
        file
    };
    // Each instance's host: from the file, else where we reached it.
    let mut hosts = BTreeMap::new();
    for i in &file.instances {
        let ip = match &i.host {
            Some(h) => resolve(h).ok_or_else(|| Error::Resolve {
                host: h.clone(),
                instance: i.name.clone(),
            })?,
            None => match by_name.get(&i.name) {
                Some((c, addr)) => resolve(
                    &addr
                        .parse::<HostPort>()
                        .map(|hp| hp.host)
                        .unwrap_or_else(|_| addr.clone()),
                )
                .filter(|ip| !ip.is_unspecified())
                .or_else(|| c.agent().endpoint.parse().ok())
                .unwrap_or([127, 0, 0, 1].into()),
                None => return Err(Error::NoAddress(i.name.clone())),
            },
        };
        hosts.insert(i.name.clone(), ip);
    }
    let mut config = file.configuration(&hosts);
    // A file without an id gets one of its content: every agent the same
    // (one hash seed for the cluster), and the same file again the same,
    // which the agents answer as unchanged without restarting anything.
    if config.id.is_empty() {
        config.id = config.content_id();
    }
    let progress = std::io::stderr().is_terminal() && file.instances.len() > 1;
    let total = file.instances.len();
    let mut set = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    let mut failed = false;
    let mut any_unreachable = false;
    for i in &file.instances {
        let Some((c, _)) = by_name.remove(&i.name) else {
            let why = unreachable
                .iter()
                .find(|(a, _)| i.address().as_deref() == Some(a.as_str()))
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| format!("no agent named {:?} answered", i.name));
            errors.push(error_entry(&i.name, &why));
            failed = true;
            any_unreachable = true;
            continue;
        };
        let (config, timeout, name) = (config.clone(), opts.timeout, i.name.clone());
        set.spawn(async move {
            let reqid = c.new_reqid();
            let request = if check_only {
                Request::CheckConfiguration(CheckConfigurationRequest { reqid, config })
            } else {
                Request::SetConfiguration(SetConfigurationRequest { reqid, config })
            };
            let r = c.request(request, timeout).await;
            (name, r.map(|r| r.result).map_err(|e| e.to_string()))
        });
    }
    let mut nodes = Map::new();
    let mut done = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((name, r)) = joined else { continue };
        done += 1;
        if progress {
            eprint!("\rdeploying: {done}/{total} agents answered");
        }
        match r {
            Ok(result) => {
                if !result.success {
                    failed = true;
                    errors.push(error_entry(&name, &result.error));
                }
                if let Some(ResultData::Results(per)) = &result.data {
                    for p in per {
                        let mut m = Map::new();
                        m.insert("success".into(), json!(p.success));
                        m.insert("instance".into(), json!(name));
                        if !p.error.is_empty() {
                            m.insert("error".into(), json!(p.error));
                        }
                        nodes.insert(p.node.clone().unwrap_or_default(), Value::Object(m));
                    }
                }
            }
            Err(e) => {
                failed = true;
                errors.push(error_entry(&name, &e));
            }
        }
    }
    if progress {
        eprintln!();
    }
    errors.sort_by_key(|e| e["source"].as_str().unwrap_or_default().to_owned());
    Ok(Outcome {
        json: json!({"errors": errors, "results": {"id": config.id, "nodes": nodes}}),
        failed,
        unreachable: any_unreachable,
    })
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A notification as one JSON object: timestamp, agent, event, args.
pub fn notification_json(agent: &str, n: &Notification) -> Value {
    let event = n.name().rsplit("::").next().unwrap_or_default();
    let args = match n {
        Notification::AgentHello(h) => {
            json!({"instance": h.instance, "host": h.host.to_string(), "api_version": h.api_version})
        }
        Notification::Change(c) => json!({
            "instance": c.instance,
            "node": serde_json::to_value(&c.node).unwrap_or(Value::Null),
            "old": c.old.to_string(),
            "new": c.new.to_string(),
        }),
        Notification::Error(e) => json!({"instance": e.instance, "msg": e.msg, "node": e.node}),
        Notification::Log(l) => json!({"instance": l.instance, "msg": l.msg, "node": l.node}),
    };
    json!({"timestamp": now_secs(), "agent": agent, "event": event, "args": args})
}

/// `monitor`: stays connected to every agent and prints each notification
/// as one JSON line; reconnects when an agent goes away, and says so on
/// stderr. Runs until the process is interrupted.
pub async fn monitor(opts: &ClientOptions) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for addr in opts.agents.clone() {
        let (o, tx) = (opts.clone(), tx.clone());
        tokio::spawn(async move {
            let mut announced_down = false;
            loop {
                match connect(&addr, &o).await {
                    Ok(mut c) => {
                        let name = c.agent().endpoint.clone();
                        eprintln!("monitor: connected to {name} at {addr}");
                        announced_down = false;
                        loop {
                            match c.next_event(Duration::from_secs(3600)).await {
                                Ok(Incoming::Notification(n)) => {
                                    let line = serde_json::to_string(&notification_json(&name, &n))
                                        .unwrap_or_default();
                                    if tx.send(line).is_err() {
                                        return;
                                    }
                                }
                                Ok(_) | Err(LinkError::Timeout(_)) => {}
                                Err(_) => break,
                            }
                        }
                        eprintln!("monitor: {name} at {addr} went away; reconnecting");
                    }
                    Err(e) => {
                        if !announced_down {
                            eprintln!("monitor: {e}; retrying every second");
                            announced_down = true;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout();
    while let Some(line) = rx.recv().await {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests;
