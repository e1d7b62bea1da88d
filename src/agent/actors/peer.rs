//! `Peer`: one actor per connection. It owns the socket (split into a framed
//! reader stream and a framed writer), runs the hello exchange, sends
//! `notify_agent_hello`, keeps heartbeats, decodes every frame and hands each
//! request to the tracker. It answers protocol-level problems itself with an
//! `error` frame, but never answers a request: responses come back through
//! the tracker as `Outbound` messages.

use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Encoder, FramedRead};

use crate::agent::actors::messages::{Disconnect, Outbound, PeerClosed, PeerId, PeerReady, Track};
use crate::api::events::{Notification, NotifyAgentHello, API_VERSION};
use crate::api::types::Addr as ZeekAddr;
use crate::protocol::cbor::{self, ErrorCode, EventBody, Frame, Hello};
use crate::protocol::codec::{FrameCodec, FrameError};

/// Who opened the connection; that side sends `hello` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The peer connected to our listener.
    Accepted,
    /// We dialled the peer (connect mode).
    Dialed,
}

/// Settings shared by every peer of an agent.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub agent_name: String,
    /// Announced in our hello; 0 = none.
    pub heartbeat: Duration,
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    /// Unread output a peer may leave before it is disconnected.
    pub max_outbound_bytes: usize,
}

impl PeerSettings {
    pub fn topic(&self) -> String {
        crate::protocol::agent_topic(&self.agent_name)
    }
}

/// Where a peer sends what it learns.
#[derive(Clone)]
pub struct PeerLinks {
    pub tracker: Recipient<Track>,
    pub notifier: Recipient<PeerReady>,
    /// Told when the peer stops.
    pub on_close: Vec<Recipient<PeerClosed>>,
}

type Reader = Box<dyn AsyncRead + Unpin>;
type Writer = Box<dyn AsyncWrite + Unpin>;

/// Counts the bytes the socket has taken, so that the peer knows how much
/// of its output is still queued.
struct Counting<W> {
    inner: W,
    sent: Rc<Cell<u64>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.sent.set(self.sent.get() + n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The answer to an HTTP request on the agent's port.
fn wrong_port_http() -> Vec<u8> {
    const BODY: &str = "This is a zeek-mgmt-agent port: it speaks the agent protocol (CBOR frames over TCP), not WebSocket. Point zeek-client at a controller's WebSocket port (2149 by default); talk to agents with zeek-mgmt-client --agent HOST:PORT.\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// What a peer writes: a frame, or an event on the peer's topic.
enum Outgoing {
    Frame(Frame),
    Event(EventBody),
    /// Bytes as they are (an HTTP answer to a client on the wrong port).
    Raw(Vec<u8>),
}

/// Encodes straight into the writer's buffer (no buffer per frame), and
/// counts the bytes it queued.
struct PeerEncoder {
    peer: PeerId,
    topic: String,
    queued: Rc<Cell<u64>>,
}

impl Encoder<Outgoing> for PeerEncoder {
    type Error = FrameError;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), FrameError> {
        let before = dst.len();
        let done = match &item {
            Outgoing::Frame(f) => cbor::put_frame(dst, f),
            Outgoing::Event(body) => cbor::put_event(dst, &self.topic, body),
            Outgoing::Raw(bytes) => {
                dst.extend_from_slice(bytes);
                Ok(())
            }
        };
        match done {
            Ok(()) => self
                .queued
                .set(self.queued.get() + (dst.len() - before) as u64),
            // The frame is left out; the connection goes on.
            Err(e) => tracing::error!(peer = %self.peer, "cannot encode a frame: {e}"),
        }
        Ok(())
    }
}

/// Frames in one item of the reading side: the frames the socket has ready
/// go together (`ready_chunks`), so that a pipelining peer's requests
/// travel through the actors, and their responses reach the socket, in
/// batches (actix hands a stream handler 16 items per wake-up, which
/// otherwise means one `send` per 16 responses). 8 measured best among 1,
/// 4, 8, 16, 32, 128.
const READ_BATCH: usize = 8;

pub struct Peer {
    id: PeerId,
    remote: SocketAddr,
    local: SocketAddr,
    side: Side,
    settings: Arc<PeerSettings>,
    topic: String,
    links: PeerLinks,
    writer: FramedWrite<Outgoing, Writer, PeerEncoder>,
    /// Bytes handed to the writer, and bytes the socket has taken.
    queued: Rc<Cell<u64>>,
    sent: Rc<Cell<u64>>,
    ready: bool,
    closing: bool,
    peer_heartbeat: Option<Duration>,
    last_rx: Instant,
    last_tx: Instant,
}

impl Peer {
    /// Starts the actor for one connection.
    pub fn start<T>(
        id: PeerId,
        io: T,
        remote: SocketAddr,
        local: SocketAddr,
        side: Side,
        settings: Arc<PeerSettings>,
        links: PeerLinks,
    ) -> Addr<Peer>
    where
        T: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let codec = FrameCodec::new(settings.max_frame_bytes);
        Peer::create(move |ctx| {
            let reader: Reader = Box::new(r);
            ctx.add_stream(FramedRead::new(reader, codec).ready_chunks(READ_BATCH));
            let sent = Rc::new(Cell::new(0));
            let queued = Rc::new(Cell::new(0));
            let encoder = PeerEncoder {
                peer: id,
                topic: settings.topic(),
                queued: Rc::clone(&queued),
            };
            let writer: Writer = Box::new(Counting {
                inner: w,
                sent: Rc::clone(&sent),
            });
            Peer {
                queued: Rc::clone(&queued),
                sent,
                id,
                remote,
                local,
                side,
                topic: settings.topic(),
                settings,
                links,
                writer: FramedWrite::new(writer, encoder, ctx),
                ready: false,
                closing: false,
                peer_heartbeat: None,
                last_rx: Instant::now(),
                last_tx: Instant::now(),
            }
        })
    }

    fn send_frame(&mut self, frame: Frame) {
        self.send(Outgoing::Frame(frame));
    }

    fn send(&mut self, out: Outgoing) {
        self.writer.write(out);
        self.last_tx = Instant::now();
    }

    fn send_error(&mut self, code: ErrorCode, message: String) {
        tracing::warn!(peer = %self.id, remote = %self.remote, code = code.as_str(), "{message}");
        self.send_frame(Frame::Error { code, message });
    }

    /// Sends the error, flushes, and closes the connection.
    fn close_with(&mut self, code: ErrorCode, message: String, ctx: &mut Context<Self>) {
        self.send_error(code, message);
        self.closing = true;
        self.writer.close();
        ctx.run_later(CLOSE_LINGER, |_, ctx| ctx.stop());
    }

    fn our_hello(&self) -> Frame {
        Frame::Hello(
            Hello::new(
                self.settings.agent_name.clone(),
                "agent",
                self.settings.heartbeat.as_secs(),
            )
            .with_features(crate::agent::FEATURES),
        )
    }

    fn on_hello_frame(&mut self, frame: Result<Frame, cbor::DecodeError>, ctx: &mut Context<Self>) {
        let hello = match frame {
            Ok(Frame::Hello(h)) => h,
            Ok(_) => {
                return self.close_with(
                    ErrorCode::BadHello,
                    "first frame must be a hello".into(),
                    ctx,
                );
            }
            Err(e) => return self.close_with(ErrorCode::BadHello, e.message, ctx),
        };
        if hello.version != API_VERSION {
            let msg = format!(
                "version {} is not supported; this agent speaks version {API_VERSION}",
                hello.version
            );
            return self.close_with(ErrorCode::VersionMismatch, msg, ctx);
        }
        if self.side == Side::Accepted {
            let ours = self.our_hello();
            self.send_frame(ours);
        }
        self.peer_heartbeat = (hello.heartbeat > 0).then(|| Duration::from_secs(hello.heartbeat));
        self.ready = true;
        tracing::info!(peer = %self.id, remote = %self.remote, endpoint = %hello.endpoint, role = %hello.role, "peer connected");
        let check_in = Notification::AgentHello(NotifyAgentHello {
            instance: self.settings.agent_name.clone(),
            host: ZeekAddr(self.local.ip()),
            api_version: API_VERSION,
        });
        self.send(Outgoing::Event(EventBody::Notification(check_in)));
        self.links.notifier.do_send(PeerReady {
            peer: self.id,
            outbound: ctx.address().recipient(),
            takes_backlog: hello.role != "client",
        });
    }

    fn on_frame(&mut self, frame: Result<Frame, cbor::DecodeError>, ctx: &mut Context<Self>) {
        match frame {
            Err(e) => {
                // After the hello, a malformed hello is just a bad frame.
                let code = if e.code == ErrorCode::BadHello {
                    ErrorCode::BadFrame
                } else {
                    e.code
                };
                self.send_error(code, e.message);
            }
            Ok(Frame::Hello(_)) => {
                self.send_error(ErrorCode::BadFrame, "hello was already exchanged".into())
            }
            Ok(Frame::Heartbeat) => {}
            Ok(Frame::Error { code, message }) => {
                tracing::warn!(peer = %self.id, code = code.as_str(), "peer reported: {message}");
            }
            Ok(Frame::Event { topic, body }) => {
                if topic != self.topic {
                    let msg = format!("topic {topic:?} is not this agent's ({:?})", self.topic);
                    return self.send_error(ErrorCode::UnknownTopic, msg);
                }
                match body {
                    EventBody::Request(request) => self.links.tracker.do_send(Track {
                        peer: self.id,
                        reply_to: ctx.address().recipient(),
                        request,
                    }),
                    EventBody::Response(r) => self.send_error(
                        ErrorCode::UnknownEvent,
                        format!("the agent does not accept {}", r.stem.response_name()),
                    ),
                    EventBody::Notification(n) => self.send_error(
                        ErrorCode::UnknownEvent,
                        format!("the agent does not accept {}", n.name()),
                    ),
                }
            }
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.peer_heartbeat {
            // A peer may announce any u64: saturate instead of overflowing.
            let silence = h.saturating_mul(3);
            if self.last_rx.elapsed() > silence {
                tracing::warn!(peer = %self.id, remote = %self.remote, "no frame for {silence:?}; closing");
                ctx.stop();
                return;
            }
        }
        let hb = self.settings.heartbeat;
        if self.ready && !hb.is_zero() && !self.closing && self.last_tx.elapsed() >= hb / 2 {
            self.send_frame(Frame::Heartbeat);
        }
    }
}

impl Actor for Peer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(peer = %self.id, remote = %self.remote, "connection open");
        if self.side == Side::Dialed {
            let ours = self.our_hello();
            self.send_frame(ours);
        }
        let hb = self.settings.heartbeat;
        let tick = if hb.is_zero() {
            Duration::from_secs(1)
        } else {
            (hb / 2).max(Duration::from_millis(10))
        };
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
        ctx.run_later(self.settings.handshake_timeout, |act, ctx| {
            if !act.ready {
                tracing::warn!(peer = %act.id, remote = %act.remote, "no hello in time; closing");
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        tracing::info!(peer = %self.id, remote = %self.remote, "peer disconnected");
        for r in &self.links.on_close {
            r.do_send(PeerClosed { peer: self.id });
        }
    }
}

impl StreamHandler<Vec<Result<Bytes, FrameError>>> for Peer {
    fn handle(&mut self, items: Vec<Result<Bytes, FrameError>>, ctx: &mut Context<Self>) {
        self.last_rx = Instant::now();
        for item in items {
            if self.closing || ctx.state() != ActorState::Running {
                return;
            }
            self.on_item(item, ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // While closing, the writer finishes the flush and then stops us.
        if !self.closing {
            ctx.stop();
        }
    }
}

impl Peer {
    fn on_item(&mut self, item: Result<Bytes, FrameError>, ctx: &mut Context<Self>) {
        match item {
            Ok(bytes) => {
                let frame = cbor::decode(&bytes);
                if self.ready {
                    self.on_frame(frame, ctx);
                } else {
                    self.on_hello_frame(frame, ctx);
                }
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                self.close_with(ErrorCode::TooLarge, e.to_string(), ctx)
            }
            Err(FrameError::Http { method }) => {
                tracing::info!(
                    peer = %self.id,
                    "{} sent an HTTP {method} request (zeek-client pointed at an agent?); answered 400",
                    self.remote
                );
                self.writer.write(Outgoing::Raw(wrong_port_http()));
                self.closing = true;
                self.writer.close();
                ctx.run_later(CLOSE_LINGER, |_, ctx| ctx.stop());
            }
            Err(FrameError::Io(e)) => {
                tracing::info!(peer = %self.id, "read error: {e}");
                ctx.stop();
            }
        }
    }
}

impl WriteHandler<FrameError> for Peer {
    fn error(&mut self, err: FrameError, _: &mut Context<Self>) -> Running {
        tracing::info!(peer = %self.id, "write error: {err}");
        Running::Stop
    }
}

impl Peer {
    /// Output queued for the peer that its socket has not taken yet.
    fn unread(&self) -> u64 {
        self.queued.get().saturating_sub(self.sent.get())
    }
}

impl Handler<Outbound> for Peer {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let body = match msg {
            Outbound::Response(r) => EventBody::Response(r),
            Outbound::Notification(n) => EventBody::Notification(n),
        };
        self.send(Outgoing::Event(body));
        let unread = self.unread();
        if unread > self.settings.max_outbound_bytes as u64 {
            tracing::warn!(
                peer = %self.id,
                remote = %self.remote,
                unread,
                "peer is not reading its responses; disconnecting"
            );
            self.closing = true;
            ctx.stop();
        }
    }
}

impl Handler<Disconnect> for Peer {
    type Result = ();

    fn handle(&mut self, _: Disconnect, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Settings and probe links for actor tests of peers and of the actors
/// that start them.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::testing::{Probe, Seen};

    pub fn settings(name: &str) -> Arc<PeerSettings> {
        Arc::new(PeerSettings {
            agent_name: name.into(),
            heartbeat: Duration::ZERO,
            handshake_timeout: Duration::from_secs(30),
            max_frame_bytes: 1024,
            max_outbound_bytes: 1 << 20,
        })
    }

    /// Links to probes; returns what the close probe sees.
    pub fn links() -> (PeerLinks, Seen<PeerClosed>) {
        let (tracker, _) = Probe::<Track>::start();
        let (notifier, _) = Probe::<PeerReady>::start();
        let (closer, closed) = Probe::<PeerClosed>::start();
        let links = PeerLinks {
            tracker,
            notifier,
            on_close: vec![closer],
        };
        (links, closed)
    }
}

#[cfg(test)]
mod tests;
