//! The actors' shared vocabulary: the messages that have several senders or
//! several handlers, and the id they carry. A message with one handler
//! lives beside that actor instead.
//!
//! ```text
//! PeerId       names a peer in every message below
//! Track        Peer, LocalPeer ─▶ Tracker            a decoded request
//! Outbound     Tracker, Notifier ─▶ Peer (or any recipient of an embedder)
//! PeerReady    Peer, AgentHandle::attach ─▶ Notifier
//! PeerClosed   Peer, LocalPeer ─▶ Tracker, Notifier, Listener/Connector
//! Disconnect   Listener, Connector ─▶ Peer
//! StopPeering  AgentHandle ─▶ Listener, Connector
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;

use crate::api::events::{Notification, Request, Response};

/// Identifies a peer (a connection, or an embedding application's channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl PeerId {
    /// A process-wide unique id.
    pub fn next() -> PeerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        PeerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Sent by a `Peer` when it stops, to the tracker, the notifier and its
/// listener or connector, each of which forgets the peer.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PeerClosed {
    pub peer: PeerId,
}

/// Sent by a listener or connector that shuts down: close the connection.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Disconnect;

/// Sent by a peer (or an embedding application) for every decoded request.
/// The response goes to `reply_to`, once.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Track {
    pub peer: PeerId,
    pub reply_to: Recipient<Outbound>,
    pub request: Request,
}

/// Sent by a peer once its hello exchange (and `notify_agent_hello`) is
/// done: from now on it receives notifications.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PeerReady {
    pub peer: PeerId,
    pub outbound: Recipient<Outbound>,
    /// A controller (or an embedding application): it takes the backlog,
    /// and while one is connected nothing is kept.
    pub takes_backlog: bool,
}

/// What an agent sends to a peer: a response or a notification. Sent by the
/// tracker and the notifier to the peer actor (or, when embedded, to any
/// recipient of the host system).
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub enum Outbound {
    Response(Response),
    Notification(Notification),
}

/// Sent by the agent on shutdown to the `Listener` and the `Connector`:
/// stop accepting or dialling, and close every peer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopPeering;
