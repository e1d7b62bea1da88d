//! `NodeChannel`: one WebSocket connection from the agent to a Zeek node's
//! server (the node's own, or a sibling's for a route). It connects (every
//! connect interval, from the node's spawn on), upgrades at once on the
//! connected socket (a bare connect-and-close makes Zeek print an error),
//! subscribes to its target's replies, waits for the ack, then pings until
//! an answer passes the pid check. It tells its owner, the target's
//! `NodeProcess`, every fact, and serves `NodeCommand` (requests of
//! `node_dispatch`) once acked. It never decides a node's state.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::agent::channel::{self, Answer, Incoming, Ping, Timings};

/// Request ids unique across the agent: `ch-<n>`.
static NEXT_REQID: AtomicU64 = AtomicU64::new(1);

fn next_reqid() -> String {
    format!("ch-{}", NEXT_REQID.fetch_add(1, Ordering::Relaxed))
}

/// What a channel is for.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    /// The node it serves.
    pub target: String,
    /// The server it connects to: the target's, or a sibling's (a route).
    pub port: u16,
    /// The target's child pid, for the ping check.
    pub pid: u32,
    /// A route through a sibling's server.
    pub route: bool,
    pub timings: Arc<Timings>,
    /// Largest message taken from the node.
    pub max_message: usize,
}

/// A fact about the connection, for its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelFact {
    /// The upgrade's 101: every `zeek_init` handler of the server's node
    /// has run.
    Opened,
    /// The subscription is in place.
    Acked,
    /// A valid ping answer (the first one only).
    Answered(Ping),
    PeerUp(String),
    PeerDown(String),
    /// An answer failed the ping check (told once per channel).
    Invalid(String),
    /// The connection has ended (`reason` for the log); the actor stops.
    Closed {
        reason: String,
    },
}

#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ChannelReport {
    pub route: bool,
    pub port: u16,
    pub fact: ChannelFact,
}

/// Why a node command got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodeCommandError {
    /// No channel for this launch (none planned, or fallen back).
    #[error("node has no node channel")]
    NoChannel,
    #[error("request timed out")]
    TimedOut,
    #[error("node channel closed")]
    Closed,
}

/// A command for a node (`node_dispatch`, the join check's ping), the same
/// message on every hop: the supervisor sends it to the `NodeProcess`,
/// which passes it to its channel (or its sibling's), which puts it to
/// the node as `AgentChannel::request(<fresh reqid>, action)`, the action
/// passed on unchanged.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Answer, NodeCommandError>")]
pub struct NodeCommand {
    pub action: Vec<String>,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// Sent by the owner: close the connection and stop.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CloseChannel;

type WsItem = Result<Message, tokio_tungstenite::tungstenite::Error>;

/// How many of its latest pings a channel remembers.
const KEPT_PINGS: usize = 32;

/// The reqids of a channel's latest pings: an answer to any of them
/// counts. Older ones are forgotten, so that a node that never answers
/// (pinged at the slow interval for as long as it runs) costs no more.
#[derive(Debug, Default)]
struct RecentPings(VecDeque<String>);

impl RecentPings {
    fn push(&mut self, reqid: String) {
        if self.0.len() == KEPT_PINGS {
            self.0.pop_front();
        }
        self.0.push_back(reqid);
    }

    fn contains(&self, reqid: &str) -> bool {
        self.0.iter().any(|r| r == reqid)
    }
}

pub struct NodeChannel {
    spec: ChannelSpec,
    owner: Recipient<ChannelReport>,
    /// Frames to the writer task (dropped with the actor: the connection
    /// closes).
    out: Option<mpsc::UnboundedSender<Message>>,
    opened_at: Option<Instant>,
    acked: bool,
    /// Reqids of this channel's latest pings.
    pings: RecentPings,
    answered: bool,
    told_invalid: bool,
    /// Commands waiting for their answers, by reqid.
    waiting: HashMap<String, oneshot::Sender<Answer>>,
    /// Commands sent before the ack, held until it.
    held: Vec<String>,
    closed: bool,
}

impl NodeChannel {
    pub fn new(spec: ChannelSpec, owner: Recipient<ChannelReport>) -> Self {
        NodeChannel {
            spec,
            owner,
            out: None,
            opened_at: None,
            acked: false,
            pings: RecentPings::default(),
            answered: false,
            told_invalid: false,
            waiting: HashMap::new(),
            held: Vec::new(),
            closed: false,
        }
    }

    fn tell(&self, fact: ChannelFact) {
        self.owner.do_send(ChannelReport {
            route: self.spec.route,
            port: self.spec.port,
            fact,
        });
    }

    fn send(&self, text: String) {
        if let Some(out) = &self.out {
            let _ = out.send(Message::text(text));
        }
    }

    fn on_open(&mut self, ws: WebSocketStream<TcpStream>, ctx: &mut Context<Self>) {
        self.opened_at = Some(Instant::now());
        self.tell(ChannelFact::Opened);
        let (mut sink, stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        actix_rt::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        self.out = Some(tx);
        // The subscription, then nothing before the ack (Zeek discards it).
        self.send(channel::subscription(&self.spec.target));
        ctx.add_stream(stream);
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        match channel::parse(text) {
            Incoming::Ack => {
                if self.acked {
                    return;
                }
                self.acked = true;
                self.tell(ChannelFact::Acked);
                for frame in std::mem::take(&mut self.held) {
                    self.send(frame);
                }
                self.ping(ctx);
            }
            Incoming::Response(answer) => self.on_answer(answer),
            Incoming::PeerUp(p) => self.tell(ChannelFact::PeerUp(p)),
            Incoming::PeerDown(p) => self.tell(ChannelFact::PeerDown(p)),
            Incoming::Error(e) => {
                tracing::warn!(node = %self.spec.target, port = self.spec.port, "node channel error frame: {e}");
            }
            Incoming::Other(t) => {
                tracing::debug!(node = %self.spec.target, "node channel: ignored {t}");
            }
        }
    }

    fn on_answer(&mut self, answer: Answer) {
        if let Some(tx) = self.waiting.remove(&answer.reqid) {
            let _ = tx.send(answer);
            return;
        }
        if self.answered || !self.pings.contains(&answer.reqid) {
            return;
        }
        match channel::check_ping(&answer, &self.spec.target, self.spec.pid) {
            Ok(ping) => {
                self.answered = true;
                self.pings = RecentPings::default();
                self.tell(ChannelFact::Answered(ping));
            }
            Err(why) if !self.told_invalid => {
                self.told_invalid = true;
                self.tell(ChannelFact::Invalid(why));
            }
            Err(_) => {}
        }
    }

    /// Sends a ping, and schedules the next until one is answered.
    fn ping(&mut self, ctx: &mut Context<Self>) {
        if self.answered || self.closed {
            return;
        }
        let reqid = next_reqid();
        self.send(channel::request(
            &self.spec.target,
            &reqid,
            &["ping".to_owned()],
        ));
        self.pings.push(reqid);
        let t = &self.spec.timings;
        let in_grace = self.opened_at.is_some_and(|at| at.elapsed() < t.join_grace);
        let next = if in_grace {
            t.ping_interval
        } else {
            t.slow_ping_interval
        };
        ctx.run_later(next, |act, ctx| act.ping(ctx));
    }

    fn close(&mut self, reason: String, ctx: &mut Context<Self>) {
        if !self.closed {
            self.closed = true;
            self.tell(ChannelFact::Closed { reason });
        }
        ctx.stop();
    }
}

/// Connects to `127.0.0.1:<port>` until a WebSocket upgrade succeeds.
async fn open(port: u16, every: Duration, max_message: usize) -> WebSocketStream<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(stream) = TcpStream::connect(addr).await {
            // A socket connected to itself (its local port was the target's).
            let own = stream.local_addr().ok() == stream.peer_addr().ok();
            if !own {
                if let Some(ws) = upgrade(stream, port, max_message).await {
                    return ws;
                }
            }
        }
        actix_rt::time::sleep(every).await;
    }
}

async fn upgrade(
    stream: TcpStream,
    port: u16,
    max_message: usize,
) -> Option<WebSocketStream<TcpStream>> {
    let url = format!("ws://127.0.0.1:{port}{}", channel::WS_PATH);
    let mut request = url.into_client_request().ok()?;
    request.headers_mut().insert(
        "X-Application-Name",
        HeaderValue::from_static(channel::APPLICATION_NAME),
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((ws, _)) => Some(ws),
        Err(e) => {
            tracing::debug!(port, "node channel upgrade failed: {e}");
            None
        }
    }
}

impl Actor for NodeChannel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let t = &self.spec.timings;
        ctx.spawn(
            open(self.spec.port, t.connect_interval, self.spec.max_message)
                .into_actor(self)
                .map(|ws, act, ctx| act.on_open(ws, ctx)),
        );
    }
}

impl StreamHandler<WsItem> for NodeChannel {
    fn handle(&mut self, item: WsItem, ctx: &mut Context<Self>) {
        match item {
            Ok(Message::Text(t)) => self.on_text(t.as_str(), ctx),
            Ok(Message::Close(frame)) => {
                let reason = frame.map_or_else(
                    || "closed".to_owned(),
                    |f| format!("closed {} {}", u16::from(f.code), f.reason),
                );
                self.close(reason, ctx);
            }
            Err(e) => self.close(e.to_string(), ctx),
            // tungstenite answers the node's pings itself.
            Ok(_) => {}
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close("end of stream".to_owned(), ctx);
    }
}

impl Handler<CloseChannel> for NodeChannel {
    type Result = ();

    fn handle(&mut self, _: CloseChannel, ctx: &mut Context<Self>) {
        self.closed = true;
        ctx.stop();
    }
}

impl Handler<NodeCommand> for NodeChannel {
    type Result = ResponseFuture<Result<Answer, NodeCommandError>>;

    fn handle(&mut self, msg: NodeCommand, _: &mut Context<Self>) -> Self::Result {
        self.waiting.retain(|_, tx| !tx.is_closed());
        let reqid = next_reqid();
        let frame = channel::request(&self.spec.target, &reqid, &msg.action);
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(reqid, tx);
        if self.acked {
            self.send(frame);
        } else {
            self.held.push(frame);
        }
        Box::pin(async move {
            match tokio::time::timeout(msg.timeout, rx).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(_)) => Err(NodeCommandError::Closed),
                Err(_) => Err(NodeCommandError::TimedOut),
            }
        })
    }
}

#[cfg(test)]
mod tests;
