//! What both ends of the wire agree on, used by the agent and the client
//! alike: framing (`codec`), the CBOR frames and events (`cbor`), the
//! side of the agent's peers, controller or client, dialling or accepting
//! an agent (`to_agent`), and TLS 1.3 (`tls`).

pub mod cbor;
pub mod codec;
mod host_port;
pub mod tls;
pub mod to_agent;

pub use host_port::{HostPort, HostPortError};

/// The topic of the agent named `agent`: its requests, responses and
/// notifications travel on it.
pub fn agent_topic(agent: &str) -> String {
    format!("zeek/management/agent/{agent}")
}
