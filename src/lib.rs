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
//! Three programs over shared layers; the binaries in `src/bin/` are thin.
//!
//! - [`api`]: Zeek's records and one actix message per API event; every
//!   request is declared once, in `api::events`.
//! - [`protocol`]: what both ends of the wire share: framing (`codec`), the
//!   CBOR frames and events (`cbor`, the only CBOR user), a controller's or
//!   client's side of a connection (`connection`), TLS (`tls`).
//! - [`broker`]: Zeek's Broker JSON values, the WebSocket API's frames and
//!   the Management records in that encoding (what zeek-client speaks).
//! - [`agent`]: the agent. [`AgentBuilder`] starts its actors inside an
//!   actix system and returns an [`AgentHandle`]; `agent::actors` holds the
//!   actors, one per file (see `actors.md`), their shared messages in
//!   `actors::messages`, and the node supervisor's decisions (what
//!   `set_configuration` answers, which nodes launch now, what happens when
//!   a node exits) in `actors/supervisor/`; `config`, `validate`, `layout`,
//!   `state` and `process` are its settings, configuration checks,
//!   `cluster-layout.zeek`, state directory and OS process control;
//!   `channel` is the node channel as plain data (the node script, its
//!   frames, the readiness decision).
//! - [`controller`]: the controller, `zeek-mgmt-controller`: `start` runs
//!   its actors (`controller::actors`: the `Core` that owns the
//!   configurations, a session per WebSocket client and per agent over TCP,
//!   the `LocalAgent` for an agent in its own process, the `Hub`); `stage`
//!   (checks, port assignment), `requests`, `answers` and `store` are
//!   plain functions and data.
//! - [`client`]: the operator client, `zeek-mgmt-client`: a controller as
//!   zeek-client drives it (`client::controller`, which reads cluster files
//!   as zeek-client does: `client::controller::cluster_file`), or many
//!   agents at once; INI and JSON cluster files.
//! - [`settings`], [`daemon`], [`memory`], [`logging`]: what the daemons
//!   share: the settings' syntax and environment, the log set-up and signal
//!   wait, handing freed memory back, the log line format and its buffered
//!   writer.
//!
//! ## Who owns whom
//!
//! `AgentBuilder::start` starts the long-lived actors; they start the
//! short-lived ones and own them until they end:
//!
//! ```text
//! AgentHandle (the agent's life)
//! ├── Notifier
//! ├── Tracker ─────────────── Workers (recipients of the NodeSupervisor)
//! ├── NodeSupervisor ──────── holds the state directory's lock
//! │   ├── StateWriter         (SyncArbiter thread: configuration, pids file)
//! │   └── NodeProcess × n     (one per OS process, until it is reaped)
//! ├── Listener                (accept loop, max_peers places)
//! │   └── Peer × n            (one per connection)
//! └── Connector               (connect mode: dials, redials)
//!     └── Peer                (the controller's connection)
//! ```
//!
//! ## How messages flow
//!
//! ```text
//! Peer ──Track──▶ Tracker ──request──▶ NodeSupervisor ──NodeProcess…
//! Peer ◀─Outbound── Tracker ◀─response──┘        │
//! Peer ◀─Outbound── Notifier ◀─Notification──────┘
//! ```
//!
//! ## Embedding
//!
//! ```no_run
//! use actix::prelude::*;
//! use zeek_mgmt_agent::{AgentBuilder, Config};
//! use zeek_mgmt_agent::agent::actors::messages::Outbound;
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

pub mod agent;
pub mod api;
pub mod broker;
pub mod client;
pub mod controller;
pub mod daemon;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod protocol;
pub mod settings;
pub mod testing;

pub use agent::config::Config;
pub use agent::error::Error;
pub use agent::{AgentBuilder, AgentHandle, LocalPeer};
