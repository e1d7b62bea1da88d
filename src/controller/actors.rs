//! The controller's actors, one per file; their shared messages in
//! `messages`.

pub mod agent_session;
pub mod client_session;
pub mod core;
pub mod dialer;
pub mod hub;
pub mod local_agent;
pub mod messages;
