//! # zeek-mgmt-agent
//!
//! A host agent for Zeek's cluster Management framework. It speaks the
//! Management agent API, version 1 (`set_configuration`, `get_nodes`,
//! `agent_welcome`, `agent_standby`, and the notifications `notify_agent_hello`,
//! `notify_change`, `notify_error`, `notify_log`) as CBOR frames over TCP,
//! launches and supervises the Zeek processes of its host, and reports
//! their state to its controller.
//!
//! ## Layout
//!
//! - [`api`]: Zeek's records and one actix message per API event.
//! - [`wire`]: framing (`codec`) and the CBOR encoding (`cbor`, the only CBOR user).
//! - [`actors`]: the actors, one per file (see `actors.md`).
//! - [`agent`]: [`AgentBuilder`] starts the actors inside an actix system and
//!   returns an [`AgentHandle`].
//! - [`controller`]: the controller side of the protocol, for tools and tests.
//! - [`config`], [`validate`], [`layout`], [`state`], [`process`]: settings,
//!   configuration checks, `cluster-layout.zeek`, the state directory and OS
//!   process control.
//!
//! ## Supervision tree
//!
//! ```text
//! Listener ──starts──▶ Peer (one per connection) ──Track──▶ Tracker ──request──▶ NodeSupervisor
//! Connector ─starts──▶ Peer                       ◀─Outbound── Tracker ◀─response──┘   │ starts
//!                                                 ◀─Outbound── Notifier ◀─Notification─┤
//!                                                                     NodeProcess (one per OS process)
//! ```
//!
//! ## Embedding
//!
//! ```no_run
//! use actix::prelude::*;
//! use zeek_mgmt_agent::{AgentBuilder, Config};
//! use zeek_mgmt_agent::actors::messages::Outbound;
//! use zeek_mgmt_agent::api::events::{GetNodesRequest, Request};
//!
//! struct Printer;
//! impl Actor for Printer { type Context = Context<Self>; }
//! impl Handler<Outbound> for Printer {
//!     type Result = ();
//!     fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) { println!("{msg:?}"); }
//! }
//!
//! #[actix_rt::main]
//! async fn main() {
//!     let agent = AgentBuilder::new(Config::default()).listen(false).start().expect("start");
//!     let peer = agent.attach(Printer.start().recipient());
//!     peer.request(Request::GetNodes(GetNodesRequest { reqid: "r1".into() }));
//! }
//! ```
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod actors;
pub mod agent;
pub mod api;
pub mod client;
pub mod config;
pub mod controller;
pub mod error;
pub mod layout;
pub mod logging;
pub mod process;
pub mod state;
pub mod testing;
pub mod tls;
pub mod validate;
pub mod wire;

pub use agent::{AgentBuilder, AgentHandle, LocalPeer};
pub use config::Config;
pub use error::Error;
