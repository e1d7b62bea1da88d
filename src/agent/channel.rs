//! The node channel, as plain data: the script every node is given, the
//! frames exchanged with it (Broker JSON over Zeek's WebSocket API), what
//! makes a ping answer valid, and the readiness decision, a function of
//! what the channel said and when, which the `NodeProcess` applies. Its
//! actor, `NodeChannel` (one WebSocket to a node), lives beside it in
//! [`actor`].

pub mod actor;

use std::time::Duration;

use serde::Deserialize;

use crate::broker::message::{DataMessage, Event};
use crate::broker::Value;

/// The node script, the same bytes on every launch.
pub const SCRIPT: &str = include_str!("channel/agent-channel.zeek");
/// Its name in a node's working directory.
pub const SCRIPT_FILE: &str = "agent-channel.zeek";
/// The environment variable the script reads its port from.
pub const PORT_ENV: &str = "ZEEK_AGENT_CHANNEL_PORT";
/// The path of Zeek's WebSocket API (JSON v1).
pub const WS_PATH: &str = "/v1/messages/json";
/// Shown in the node's `cluster.log` for each connection.
pub const APPLICATION_NAME: &str = "zeek-mgmt-agent";

const REQUEST_EVENT: &str = "AgentChannel::request";
const RESPONSE_EVENT: &str = "AgentChannel::response";
const PEER_UP_EVENT: &str = "AgentChannel::peer_up";
const PEER_DOWN_EVENT: &str = "AgentChannel::peer_down";

/// `--node-channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// On for Zeek 8.0 and later (asked with `--version`).
    #[default]
    Auto,
    /// Never: nodes run as they did before the channel.
    Off,
}

/// The channel's timers and counts: the agent's `channel_*` settings
/// (`Config::channel`), which tests shrink.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    /// TCP connect retry, and the logging node's port probe.
    pub connect_interval: Duration,
    /// Ping retry during the join grace.
    pub ping_interval: Duration,
    /// Ping retry after it.
    pub slow_ping_interval: Duration,
    /// From the upgrade (own) or the port's accept (routed) to a degraded
    /// `RUNNING`.
    pub join_grace: Duration,
    /// From spawn to the fallback.
    pub channel_timeout: Duration,
    /// A `node_dispatch` answer per node.
    pub command_timeout: Duration,
    /// Relaunches in a row after channel-port collisions.
    pub port_retries: u32,
    /// Before reconnecting to a live node whose connection ended.
    pub reconnect_delay: Duration,
}

/// The channel command that asks a node for its packet source and
/// `get_net_stats()` counters.
pub const NET_STATS: &str = "net_stats";

/// The topic a node takes requests on.
pub fn request_topic(node: &str) -> String {
    format!("zeek/agent/node/{node}/request")
}

/// The topic a node answers on.
pub fn reply_topic(node: &str) -> String {
    format!("zeek/agent/node/{node}/reply")
}

/// The first frame: the subscription to `target`'s replies.
pub fn subscription(target: &str) -> String {
    serde_json::to_string(&[reply_topic(target)]).unwrap_or_default()
}

/// `AgentChannel::request(reqid, action)` on `target`'s request topic.
pub fn request(target: &str, reqid: &str, action: &[String]) -> String {
    let event = Event {
        name: REQUEST_EVENT.to_owned(),
        args: vec![
            Value::string(reqid),
            Value::Vector(action.iter().map(Value::string).collect()),
        ],
    };
    DataMessage {
        topic: request_topic(target),
        value: event.into_value(),
    }
    .to_json()
}

/// An `AgentChannel::response`, as the script sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub reqid: String,
    pub node: String,
    pub success: bool,
    pub data: String,
    pub error: String,
}

/// What a text frame from a node says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The subscription is in place: requests may be sent.
    Ack,
    Response(Answer),
    PeerUp(String),
    PeerDown(String),
    /// An error frame: a bug of the agent's or the script's.
    Error(String),
    /// Anything else (logged, ignored).
    Other(String),
}

/// Reads a text frame from a node.
pub fn parse(text: &str) -> Incoming {
    let other = || Incoming::Other(text.chars().take(200).collect());
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return other();
    };
    match json.get("type").and_then(|t| t.as_str()) {
        Some("ack") => return Incoming::Ack,
        Some("error") => {
            let field = |k: &str| json.get(k).and_then(|v| v.as_str()).unwrap_or("");
            return Incoming::Error(format!("{}: {}", field("code"), field("context")));
        }
        Some("data-message") => {}
        _ => return other(),
    }
    let Some(event) = DataMessage::parse(text)
        .ok()
        .and_then(|m| Event::from_value(&m.value))
    else {
        return other();
    };
    let text_args: Option<Vec<&str>> = event.args.iter().map(Value::as_str).collect();
    match (event.name.as_str(), event.args.as_slice()) {
        (
            RESPONSE_EVENT,
            [Value::String(reqid), Value::String(node), Value::Boolean(success), Value::String(data), Value::String(error)],
        ) => Incoming::Response(Answer {
            reqid: reqid.clone(),
            node: node.clone(),
            success: *success,
            data: data.clone(),
            error: error.clone(),
        }),
        (PEER_UP_EVENT, _) | (PEER_DOWN_EVENT, _) => match text_args.as_deref() {
            Some([_, peer]) if event.name == PEER_UP_EVENT => Incoming::PeerUp((*peer).to_owned()),
            Some([_, peer]) => Incoming::PeerDown((*peer).to_owned()),
            _ => other(),
        },
        _ => other(),
    }
}

/// What a valid ping answer tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub peers: Vec<String>,
    pub listening: bool,
}

#[derive(Deserialize)]
struct PingData {
    node: String,
    pid: u64,
    #[serde(default)]
    listening: bool,
    #[serde(default)]
    peers: Vec<String>,
}

/// Checks a ping's answer: successful, from `target`, and its data an
/// object naming `target` with the pid the agent started. The error says
/// why not, for the log.
pub fn check_ping(answer: &Answer, target: &str, pid: u32) -> Result<Ping, String> {
    if !answer.success {
        return Err(format!("ping failed: {}", answer.error));
    }
    if answer.node != target {
        return Err(format!("ping answered by node {}", answer.node));
    }
    let data: PingData = serde_json::from_str(&answer.data)
        .map_err(|e| format!("ping answer is not a ping object ({e})"))?;
    if data.node != target {
        return Err(format!("ping answer names node {}", data.node));
    }
    if data.pid != u64::from(pid) {
        return Err(format!(
            "channel answered by pid {}, expected {pid} (another cluster on the same ZeroMQ ports?)",
            data.pid
        ));
    }
    Ok(Ping {
        peers: data.peers,
        listening: data.listening,
    })
}

/// Which rule made a node `RUNNING` (the `running_by` key of a node's
/// status, see the protocol document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A valid ping answer on its channel (its own or a route).
    Channel,
    /// The join grace passed after the upgrade (or the port's accept)
    /// without an answer.
    Degraded,
    /// No channel within the channel timeout: the rule without one.
    Fallback,
    /// A ZeroMQ logging node without a sibling to route through: its port
    /// accepts and the settle time has passed.
    Port,
    /// No channel (Zeek before 8.0, or `--node-channel off`): alive after
    /// the settle time (and its port accepts, with port checks on).
    Settle,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Channel => "channel",
            Rule::Degraded => "degraded",
            Rule::Fallback => "fallback",
            Rule::Port => "port",
            Rule::Settle => "settle",
        }
    }
}

/// How a node can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Its own server.
    Own,
    /// Through a sibling's server (a ZeroMQ logging node).
    Routed,
    /// A ZeroMQ logging node with no sibling to route through.
    PortOnly,
    /// No channel at all.
    None,
}

/// What is known of one launch, as times since its spawn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Now.
    pub elapsed: Duration,
    /// The upgrade's 101 (own), or the port's first accept (routed).
    pub opened: Option<Duration>,
    /// A valid ping answer has come.
    pub answered: bool,
    /// The rule without a channel holds: alive past the settle time, and
    /// its port accepts where one is checked.
    pub settled: bool,
}

/// The readiness decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet; `fallen_back` once the channel is given up for this launch.
    Wait {
        fallen_back: bool,
    },
    Running(Rule),
}

/// Decides whether a node is `RUNNING`, and by which rule.
pub fn decide(path: Path, facts: &Facts, t: &Timings) -> Verdict {
    let running = Verdict::Running;
    match path {
        Path::None => {
            if facts.settled {
                return running(Rule::Settle);
            }
            Verdict::Wait { fallen_back: false }
        }
        Path::PortOnly => {
            if facts.settled {
                return running(Rule::Port);
            }
            Verdict::Wait { fallen_back: false }
        }
        Path::Own | Path::Routed => {
            if facts.answered {
                return running(Rule::Channel);
            }
            // Only an opening within the channel timeout opens the grace:
            // after it, the node has fallen back for this launch.
            if let Some(opened) = facts.opened.filter(|o| *o < t.channel_timeout) {
                if facts.elapsed >= opened + t.join_grace {
                    return running(Rule::Degraded);
                }
                return Verdict::Wait { fallen_back: false };
            }
            if facts.elapsed < t.channel_timeout {
                return Verdict::Wait { fallen_back: false };
            }
            if facts.settled {
                return running(Rule::Fallback);
            }
            Verdict::Wait { fallen_back: true }
        }
    }
}

/// Whether a running node has joined its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// It answers through its cluster backend and sees every node it
    /// needs (the manager).
    Joined,
    /// It does not; why, in words for operators.
    NotJoined(String),
}

/// What the join decision sees of a running node.
#[derive(Debug, Clone)]
pub struct JoinFacts<'a> {
    /// Who it must see: the manager's name.
    pub needs: &'a [String],
    /// Who it sees: its latest ping answer's peers, with the `peer_up` and
    /// `peer_down` since.
    pub peers: &'a std::collections::BTreeSet<String>,
    /// Since its latest valid ping answer (none: never answered).
    pub since_answer: Option<Duration>,
    /// Since its channel opened (the 101, or a routed node's port accept).
    pub since_open: Duration,
}

/// Where the nodes of `config` reach their cluster, for an operator whose
/// node has not joined: the manager's ZeroMQ broker, or (Broker) the
/// manager's address and port.
pub fn join_hint(config: &crate::api::types::Configuration, backend: Option<&str>) -> String {
    if backend == Some(crate::agent::layout::ZEROMQ_BACKEND) {
        return crate::agent::layout::zeromq_broker(config);
    }
    match config.manager().map(|(m, h)| (m.p, h)) {
        Some((Some(p), Some(h))) => format!("the manager at {h} port {p}"),
        _ => "the manager".to_owned(),
    }
}

/// Decides whether a running node has joined: `None` while it is too
/// early to say. An answer through the node's channel proves that its
/// cluster backend carries messages (under ZeroMQ every answer crosses the
/// manager's broker); its peers tell whether the manager's hello came.
/// Unanswered for the join grace, or without the manager's hello for the
/// join grace after opening, it has not joined.
pub fn join_verdict(f: &JoinFacts<'_>, grace: Duration) -> Option<Join> {
    let recent = f.since_answer.is_some_and(|d| d < grace);
    if recent {
        let missing: Vec<&str> = f
            .needs
            .iter()
            .filter(|n| !f.peers.contains(*n))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            return Some(Join::Joined);
        }
        if f.since_open < grace {
            return None;
        }
        let sees: Vec<&str> = f.peers.iter().map(String::as_str).collect();
        return Some(Join::NotJoined(format!(
            "no hello from {} within {} s (it sees: {})",
            missing.join(", "),
            secs(grace),
            if sees.is_empty() {
                "no other node".to_owned()
            } else {
                sees.join(", ")
            }
        )));
    }
    if f.since_answer.is_some() || f.since_open >= grace {
        return Some(Join::NotJoined(format!(
            "no answer through its cluster backend for {} s",
            secs(grace)
        )));
    }
    None
}

/// The stderr text of a channel-port collision (Zeek's own words).
pub fn collided(stderr: &str, port: u16) -> bool {
    stderr.contains(&format!("WebSocket: Unable to listen on 127.0.0.1:{port}:"))
}

/// Seconds with one decimal, as the notifications print settings.
pub fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

#[cfg(test)]
mod tests;
