//! The agent: its actors, how it starts and supervises node processes, the
//! `cluster-layout.zeek` it writes, its state directory, configuration
//! checks and settings. `AgentBuilder` starts it inside an actix system.

pub mod actors;
pub mod archive;
mod builder;
pub mod channel;
pub mod config;
pub mod crash;
pub mod error;
pub mod layout;
pub mod metrics;
pub mod process;
pub mod state;
pub mod validate;

pub use builder::{AgentBuilder, AgentHandle, LocalPeer};

/// The protocol extensions this agent announces in its hello (see
/// `docs/protocol.md`, "Extensions").
pub const FEATURES: &[&str] = &[
    "restart",
    "metrics_port",
    "node_outputs",
    "unchanged",
    "node_dispatch",
    "check_configuration",
    "get_crashes",
];
