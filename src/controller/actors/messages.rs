//! The messages between the controller's actors that have more than one
//! sender or handler.

use std::net::IpAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::api::events::{Request, Response, SetConfigurationRequest, Stem};
use crate::api::types::{Configuration, Port, ReqId};
use crate::broker::message::DataMessage;

/// Why a sub-request to an agent got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The connection ended first.
    #[error("lost connection to the agent")]
    Lost,
    /// The deadline passed first.
    #[error("request timed out")]
    TimedOut,
    /// The agent answered `unknown-event`: it does not implement the
    /// request after all.
    #[error("the agent does not know the request")]
    Unsupported,
}

impl CallError {
    /// The error as a Result of `agent` words it for zeek-client.
    pub fn of_agent(self, agent: &str) -> String {
        match self {
            CallError::Lost => format!("lost connection to agent {agent}"),
            CallError::TimedOut => self.to_string(),
            CallError::Unsupported => format!("agent {agent} does not know the request"),
        }
    }
}

/// A sub-request to one agent; answered exactly once.
#[derive(Message)]
#[rtype(result = "Result<Response, CallError>")]
pub struct AgentCall {
    pub ask: Ask,
    pub timeout: Duration,
}

/// What an agent is asked. A deployment's configuration is shared by all
/// its agents' calls and becomes a request of its own only as it leaves
/// for one agent, so that a deployment to many agents holds one copy of
/// it, not one per agent waiting in the mailboxes.
pub enum Ask {
    Request(Request),
    SetConfiguration {
        reqid: ReqId,
        config: std::sync::Arc<Configuration>,
    },
}

impl Ask {
    pub fn stem(&self) -> Stem {
        match self {
            Ask::Request(r) => r.stem(),
            Ask::SetConfiguration { .. } => Stem::SetConfiguration,
        }
    }

    pub fn reqid(&self) -> &ReqId {
        match self {
            Ask::Request(r) => r.reqid(),
            Ask::SetConfiguration { reqid, .. } => reqid,
        }
    }

    /// The request itself, the configuration copied out of its share.
    pub fn into_request(self) -> Request {
        match self {
            Ask::Request(r) => r,
            Ask::SetConfiguration { reqid, config } => {
                Request::SetConfiguration(SetConfigurationRequest {
                    reqid,
                    config: std::sync::Arc::unwrap_or_clone(config),
                })
            }
        }
    }
}

impl From<Request> for Ask {
    fn from(r: Request) -> Ask {
        Ask::Request(r)
    }
}

/// Ends an agent's connection (a newer one replaced it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAgent;

/// How the controller reaches one agent, whatever carries it: a session
/// over TCP, or an agent in the controller's own process.
#[derive(Clone)]
pub struct AgentLink {
    pub call: Recipient<AgentCall>,
    pub close: Recipient<CloseAgent>,
}

/// An agent connection's number, unique for the controller's life: which
/// of two connections under one name is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentConnId(pub u64);

impl std::fmt::Display for AgentConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Dial an agent that listens (an instance with a port); a connection
/// made becomes an `AgentSession`, which checks in with `AgentUp`.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct DialAgent {
    pub name: String,
    pub addr: String,
    pub port: Port,
}

/// An agent checked in (`notify_agent_hello`).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AgentUp {
    pub id: AgentConnId,
    pub name: String,
    pub api_version: u64,
    /// The address observed on the connection.
    pub host: IpAddr,
    /// The connection's remote address and port (none in-process).
    pub peer: Option<std::net::SocketAddr>,
    /// Set when the controller dialled it.
    pub listen_port: Option<Port>,
    /// The extensions its hello announced.
    pub features: Vec<String>,
    pub link: AgentLink,
}

/// An agent's connection ended.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AgentGone {
    pub id: AgentConnId,
    pub name: String,
}

/// Identifies a WebSocket client for the controller's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// A data message to publish to every client subscribed to its topic
/// (`from`, when set, is left out: a client never hears its own message).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Publish {
    pub message: DataMessage,
    pub from: Option<ClientId>,
}

/// Text for one client's socket.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct SendText(pub String);
