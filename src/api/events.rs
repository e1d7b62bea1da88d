//! One actix message per event of the agent API, version 1.
//!
//! A request's `rtype` is its response, so the compiler pairs them. Requests
//! are sent by a peer (through the request tracker) to the actor that does the
//! work; notifications are emitted by the node supervisor and fanned out by
//! the notifier.

use actix::Message;

use super::types::{Addr, ApiResult, Configuration, Node, ReqId, State};

/// Prefix of every event name of the agent API.
pub const EVENT_PREFIX: &str = "Management::Agent::API::";

/// The API version this agent speaks.
pub const API_VERSION: u64 = 1;

/// The request/response pairs of the API, by the stem of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stem {
    SetConfiguration,
    GetNodes,
    AgentWelcome,
    AgentStandby,
}

impl Stem {
    pub const ALL: [Stem; 4] = [
        Stem::SetConfiguration,
        Stem::GetNodes,
        Stem::AgentWelcome,
        Stem::AgentStandby,
    ];

    /// The bare stem, as in `get_nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stem::SetConfiguration => "set_configuration",
            Stem::GetNodes => "get_nodes",
            Stem::AgentWelcome => "agent_welcome",
            Stem::AgentStandby => "agent_standby",
        }
    }

    /// The fully qualified name of the request event.
    pub fn request_name(self) -> &'static str {
        match self {
            Stem::SetConfiguration => "Management::Agent::API::set_configuration_request",
            Stem::GetNodes => "Management::Agent::API::get_nodes_request",
            Stem::AgentWelcome => "Management::Agent::API::agent_welcome_request",
            Stem::AgentStandby => "Management::Agent::API::agent_standby_request",
        }
    }

    /// The fully qualified name of the response event.
    pub fn response_name(self) -> &'static str {
        match self {
            Stem::SetConfiguration => "Management::Agent::API::set_configuration_response",
            Stem::GetNodes => "Management::Agent::API::get_nodes_response",
            Stem::AgentWelcome => "Management::Agent::API::agent_welcome_response",
            Stem::AgentStandby => "Management::Agent::API::agent_standby_response",
        }
    }
}

/// `set_configuration_request(reqid, config)`; handled by the node
/// supervisor, which answers once every local node runs or has failed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "SetConfigurationResponse")]
pub struct SetConfigurationRequest {
    pub reqid: ReqId,
    pub config: Configuration,
}

/// `get_nodes_request(reqid)`; handled by the node supervisor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "GetNodesResponse")]
pub struct GetNodesRequest {
    pub reqid: ReqId,
}

/// `agent_welcome_request(reqid)`; handled by the node supervisor, which
/// records that a controller welcomed this agent.
#[derive(Debug, Clone, Message)]
#[rtype(result = "AgentWelcomeResponse")]
pub struct AgentWelcomeRequest {
    pub reqid: ReqId,
}

/// `agent_standby_request(reqid)`; handled by the node supervisor, which
/// stops every node and clears the configuration before answering.
#[derive(Debug, Clone, Message)]
#[rtype(result = "AgentStandbyResponse")]
pub struct AgentStandbyRequest {
    pub reqid: ReqId,
}

macro_rules! response {
    ($(#[$doc:meta])* $name:ident, $stem:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            pub reqid: ReqId,
            pub result: ApiResult,
        }

        impl From<$name> for Response {
            fn from(r: $name) -> Response {
                Response { stem: $stem, reqid: r.reqid, result: r.result }
            }
        }
    };
}

response!(
    /// `set_configuration_response(reqid, result)`: `data` holds one result per local node.
    SetConfigurationResponse,
    Stem::SetConfiguration
);
response!(
    /// `get_nodes_response(reqid, result)`: `data` holds one `NodeStatus` per node plus the agent.
    GetNodesResponse,
    Stem::GetNodes
);
response!(
    /// `agent_welcome_response(reqid, result)`.
    AgentWelcomeResponse,
    Stem::AgentWelcome
);
response!(
    /// `agent_standby_response(reqid, result)`.
    AgentStandbyResponse,
    Stem::AgentStandby
);

/// A decoded request, as a peer hands it to the request tracker.
#[derive(Debug, Clone)]
pub enum Request {
    SetConfiguration(SetConfigurationRequest),
    GetNodes(GetNodesRequest),
    AgentWelcome(AgentWelcomeRequest),
    AgentStandby(AgentStandbyRequest),
    /// A request whose reqid could be read but whose other args could not:
    /// the tracker answers it with its response event and `error`.
    Invalid {
        stem: Stem,
        reqid: ReqId,
        error: String,
    },
}

impl Request {
    pub fn stem(&self) -> Stem {
        match self {
            Request::SetConfiguration(_) => Stem::SetConfiguration,
            Request::GetNodes(_) => Stem::GetNodes,
            Request::AgentWelcome(_) => Stem::AgentWelcome,
            Request::AgentStandby(_) => Stem::AgentStandby,
            Request::Invalid { stem, .. } => *stem,
        }
    }

    pub fn reqid(&self) -> &ReqId {
        match self {
            Request::SetConfiguration(r) => &r.reqid,
            Request::GetNodes(r) => &r.reqid,
            Request::AgentWelcome(r) => &r.reqid,
            Request::AgentStandby(r) => &r.reqid,
            Request::Invalid { reqid, .. } => reqid,
        }
    }
}

/// Any response event, as the tracker routes it back to a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub stem: Stem,
    pub reqid: ReqId,
    pub result: ApiResult,
}

/// `notify_agent_hello(instance, host, api_version)`: the agent's check-in,
/// sent by a peer actor right after the hello exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyAgentHello {
    pub instance: String,
    pub host: Addr,
    pub api_version: u64,
}

/// `notify_change(instance, node, old, new)`: a node changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyChange {
    pub instance: String,
    pub node: Node,
    pub old: State,
    pub new: State,
}

/// `notify_error(instance, msg, node)`: a node failed to launch, exited
/// prematurely or was given up.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyError {
    pub instance: String,
    pub msg: String,
    pub node: String,
}

/// `notify_log(instance, msg, node)`: something an operator wants to see in
/// passing.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyLog {
    pub instance: String,
    pub msg: String,
    pub node: String,
}

/// A notification event. The node supervisor sends these to the notifier,
/// which fans them out to every connected peer.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum Notification {
    AgentHello(NotifyAgentHello),
    Change(NotifyChange),
    Error(NotifyError),
    Log(NotifyLog),
}

impl Notification {
    /// The fully qualified event name.
    pub fn name(&self) -> &'static str {
        match self {
            Notification::AgentHello(_) => "Management::Agent::API::notify_agent_hello",
            Notification::Change(_) => "Management::Agent::API::notify_change",
            Notification::Error(_) => "Management::Agent::API::notify_error",
            Notification::Log(_) => "Management::Agent::API::notify_log",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api() {
        for stem in Stem::ALL {
            assert_eq!(
                stem.request_name(),
                format!("{EVENT_PREFIX}{}_request", stem.as_str())
            );
            assert_eq!(
                stem.response_name(),
                format!("{EVENT_PREFIX}{}_response", stem.as_str())
            );
        }
        let log = Notification::Log(NotifyLog {
            instance: String::new(),
            msg: String::new(),
            node: String::new(),
        });
        assert_eq!(log.name(), format!("{EVENT_PREFIX}notify_log"));
    }
}
