//! The actors of the agent, one per file; `actors.md` describes how they fit.

pub mod archiver;
pub mod connector;
pub mod listener;
pub mod messages;
pub mod node;
pub mod notifier;
pub mod peer;
pub mod state_writer;
pub mod supervisor;
pub mod tracker;
