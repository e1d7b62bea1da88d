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

/// Every request of the API, declared once: its stem (the event names are
/// `<stem>_request` and `<stem>_response`), its message, the arguments after
/// the reqid (with what an invalid one is called in the error, and `record`
/// for a Zeek record, which must arrive as a map), and its response. Each layer that handles requests generically expands this list
/// with a macro of its own: the types below, the tracker's workers and
/// dispatch, the CBOR decoder and encoder. Adding a request is a line here
/// plus the handler of the actor that does the work.
macro_rules! with_requests {
    ($m:ident) => {
        $m! {
            /// `set_configuration_request(reqid, config)`; handled by the node
            /// supervisor, which answers once every local node runs or has
            /// failed. The response's `data` holds one result per local node.
            SetConfiguration(set_configuration) SetConfigurationRequest {
                config: Configuration = "configuration" record
            } -> SetConfigurationResponse;
            /// `get_nodes_request(reqid)`; handled by the node supervisor. The
            /// response's `data` holds one `NodeStatus` per node plus the agent.
            GetNodes(get_nodes) GetNodesRequest {} -> GetNodesResponse;
            /// `agent_welcome_request(reqid)`; handled by the node supervisor,
            /// which records that a controller welcomed this agent.
            AgentWelcome(agent_welcome) AgentWelcomeRequest {} -> AgentWelcomeResponse;
            /// `agent_standby_request(reqid)`; handled by the node supervisor,
            /// which stops every node and clears the configuration first.
            AgentStandby(agent_standby) AgentStandbyRequest {} -> AgentStandbyResponse;
            /// `restart_request(reqid, nodes)` (an extension): handled by the
            /// node supervisor, which stops the named local nodes (every one
            /// when `nodes` is empty) and launches them again from the
            /// running configuration. The response's `data` holds one result
            /// per restarted node.
            Restart(restart) RestartRequest {
                nodes: Vec<String> = "node names"
            } -> RestartResponse;
            /// `node_dispatch_request(reqid, action, nodes)` (an extension):
            /// handled by the node supervisor, which puts `action` (a command
            /// and its arguments, passed on unchanged) to the named local
            /// nodes (every one when `nodes` is empty) over their node
            /// channels. The response's `data` holds one result per node,
            /// sorted by name, each with the node's answer as text.
            NodeDispatch(node_dispatch) NodeDispatchRequest {
                action: Vec<String> = "action",
                nodes: Vec<String> = "node names"
            } -> NodeDispatchResponse;
            CheckConfiguration(check_configuration) CheckConfigurationRequest {
                config: Configuration = "configuration" record
            } -> CheckConfigurationResponse;
            /// `get_crashes_request(reqid, nodes)` (an extension): handled
            /// by the node supervisor, which reads the crash records of the
            /// named local nodes (every one when `nodes` is empty). The
            /// response's `data` holds one result per node, sorted by name,
            /// each with its records, newest first, as a JSON array.
            GetCrashes(get_crashes) GetCrashesRequest {
                nodes: Vec<String> = "node names"
            } -> GetCrashesResponse;
        }
    };
}
pub(crate) use with_requests;

macro_rules! declare_requests {
    ($(
        $(#[$doc:meta])*
        $stem:ident($snake:ident) $req:ident { $($field:ident: $ty:ty = $what:literal $($record:ident)?),* } -> $resp:ident;
    )*) => {
        /// The request/response pairs of the API, by the stem of their names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Stem {
            $($stem,)*
        }

        impl Stem {
            pub const ALL: [Stem; [$(stringify!($stem)),*].len()] = [$(Stem::$stem,)*];

            /// The bare stem, as in `get_nodes`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Stem::$stem => stringify!($snake),)*
                }
            }

            /// The fully qualified name of the request event.
            pub fn request_name(self) -> &'static str {
                match self {
                    $(Stem::$stem => concat!("Management::Agent::API::", stringify!($snake), "_request"),)*
                }
            }

            /// The fully qualified name of the response event.
            pub fn response_name(self) -> &'static str {
                match self {
                    $(Stem::$stem => concat!("Management::Agent::API::", stringify!($snake), "_response"),)*
                }
            }
        }

        $(
            $(#[$doc])*
            #[derive(Debug, Clone)]
            pub struct $req {
                pub reqid: ReqId,
                $(pub $field: $ty,)*
            }

            /// Its response is its answer, so the compiler pairs them.
            impl Message for $req {
                type Result = $resp;
            }

            #[doc = concat!("`", stringify!($snake), "_response(reqid, result)`.")]
            #[derive(Debug, Clone, PartialEq)]
            pub struct $resp {
                pub reqid: ReqId,
                pub result: ApiResult,
            }

            impl From<$resp> for Response {
                fn from(r: $resp) -> Response {
                    Response { stem: Stem::$stem, reqid: r.reqid, result: r.result }
                }
            }
        )*

        /// A decoded request, as a peer hands it to the request tracker.
        #[derive(Debug, Clone)]
        pub enum Request {
            $($stem($req),)*
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
                    $(Request::$stem(_) => Stem::$stem,)*
                    Request::Invalid { stem, .. } => *stem,
                }
            }

            pub fn reqid(&self) -> &ReqId {
                match self {
                    $(Request::$stem(r) => &r.reqid,)*
                    Request::Invalid { reqid, .. } => reqid,
                }
            }

            /// The request of `stem` for a request that takes no argument
            /// but its reqid; `None` for one that takes more.
            #[allow(unreachable_code)]
            pub fn without_args(stem: Stem, reqid: ReqId) -> Option<Request> {
                Some(match stem {
                    $(Stem::$stem => Request::$stem($req {
                        reqid,
                        $($field: return None,)*
                    }),)*
                })
            }
        }
    };
}

with_requests!(declare_requests);

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

/// Each notification as a sentence for an operator's log (the agent it
/// came from is the log line's `agent` field, or the agent's own log).
impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let about = |f: &mut std::fmt::Formatter<'_>, node: &str, msg: &str| {
            // Most messages name their node already.
            if node.is_empty() || msg.contains(node) {
                f.write_str(msg)
            } else {
                write!(f, "node {node}: {msg}")
            }
        };
        match self {
            Notification::AgentHello(h) => write!(
                f,
                "agent {} says hello from {} (API version {})",
                h.instance, h.host, h.api_version
            ),
            Notification::Change(c) => {
                write!(f, "node {} is {} (was {})", c.node.name, c.new, c.old)
            }
            Notification::Error(e) => about(f, &e.node, &e.msg),
            Notification::Log(l) => about(f, &l.node, &l.msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_read_as_sentences() {
        let node = Node::new("worker-1", "agent-b", crate::api::types::Role::Worker);
        let said = [
            Notification::Change(NotifyChange {
                instance: "agent-b".into(),
                node,
                old: State::Pending,
                new: State::Running,
            }),
            Notification::Error(NotifyError {
                instance: "agent-b".into(),
                msg: "exited with code 1".into(),
                node: "worker-1".into(),
            }),
            Notification::Log(NotifyLog {
                instance: "agent-b".into(),
                msg: "restarted 2 nodes".into(),
                node: String::new(),
            }),
        ]
        .map(|n| n.to_string());
        assert_eq!(
            said,
            [
                "node worker-1 is RUNNING (was PENDING)",
                "node worker-1: exited with code 1",
                "restarted 2 nodes",
            ]
        );
    }

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
