//! The agent API, version 1: Zeek's records and one message per event.

pub mod events;
pub mod types;
