//! `Dialer`: dials the agents that listen when the core sends `DialAgent`,
//! and [`Sessions`]: what opens an `AgentSession` on a connection, whether
//! the controller dialled it or the agent dialled in. Each session gets a
//! connection id of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::agent_session::AgentSession;
use super::messages::{AgentConnId, AgentGone, AgentUp, DialAgent};
use crate::api::types::Port;
use crate::protocol::to_agent::{Connection, PeerOptions};

/// Opens the controller's agent sessions, numbering them.
#[derive(Clone)]
pub struct Sessions {
    options: PeerOptions,
    ids: Arc<AtomicU64>,
    up: Recipient<AgentUp>,
    gone: Recipient<AgentGone>,
    heartbeat: Duration,
}

impl Sessions {
    pub fn new(
        options: PeerOptions,
        up: Recipient<AgentUp>,
        gone: Recipient<AgentGone>,
        heartbeat: Duration,
    ) -> Self {
        Sessions {
            options,
            ids: Arc::new(AtomicU64::new(1)),
            up,
            gone,
            heartbeat,
        }
    }

    /// How the controller introduces itself to agents.
    pub fn options(&self) -> PeerOptions {
        self.options.clone()
    }

    /// A connection id never given before.
    pub fn next_id(&self) -> AgentConnId {
        AgentConnId(self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts the session of a connection; `listen_port` is set when the
    /// controller dialled the agent.
    pub fn open(&self, conn: Connection, listen_port: Option<Port>) {
        AgentSession::new(
            conn,
            self.next_id(),
            listen_port,
            self.up.clone(),
            self.gone.clone(),
            self.heartbeat,
        )
        .start();
    }
}

/// Dials agents at the core's word.
pub struct Dialer {
    sessions: Sessions,
}

impl Dialer {
    pub fn new(sessions: Sessions) -> Self {
        Dialer { sessions }
    }
}

impl Actor for Dialer {
    type Context = Context<Self>;
}

impl Handler<DialAgent> for Dialer {
    type Result = ();

    fn handle(&mut self, msg: DialAgent, _: &mut Context<Self>) {
        let sessions = self.sessions.clone();
        actix_rt::spawn(async move {
            match Connection::connect(msg.addr.as_str(), sessions.options()).await {
                Ok(conn) => sessions.open(conn, Some(msg.port)),
                Err(e) => tracing::debug!(agent = %msg.name, "dial {}: {e}", msg.addr),
            }
        });
    }
}
