//! What both ends of the wire agree on, used by the agent and the client
//! alike: framing (`codec`), the CBOR frames and events (`cbor`), the
//! controller's (or a client's) side of a connection (`connection`), and
//! TLS 1.3 (`tls`).

pub mod cbor;
pub mod codec;
pub mod connection;
mod host_port;
pub mod tls;

pub use host_port::{HostPort, HostPortError};

/// The topic of the agent named `agent`: its requests, responses and
/// notifications travel on it.
pub fn agent_topic(agent: &str) -> String {
    format!("zeek/management/agent/{agent}")
}
