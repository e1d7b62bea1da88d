//! The side of the agent's peers (a controller, a client): connect to an
//! agent (or accept an agent that dials in), exchange hellos, send requests
//! and await each response by its reqid, and receive notifications. Used by
//! the controller, the client, the tests and the examples; it shares the
//! agent's codec and records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Encoder, FramedRead};

use crate::api::events::{Notification, Request, Response};
use crate::api::types::ReqId;
use crate::protocol::cbor::{self, ErrorCode, EventBody, Frame, Hello};
use crate::protocol::codec::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES};

/// A failure of a connection to an agent, on its peer's side.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent refused us: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the connection is closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("no hello within {0:?}: the address does not speak the zeek-mgmt-agent protocol")]
    NoHello(Duration),
}

/// How long the other side may take to send its hello.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How the agent's peer introduces itself, and how it connects.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub endpoint: String,
    /// `controller` or `client`.
    pub role: String,
    /// Announced heartbeat in seconds (0 = none).
    pub heartbeat: u64,
    pub max_frame_bytes: usize,
    /// Dial with TLS 1.3, verifying the agent with this configuration
    /// (see `tls::client_config`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The name the agent's certificate must carry; by default the address
    /// dialled.
    pub server_name: Option<String>,
    /// For `accept`: speak TLS to an agent dialling in.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Give up on an agent that has not sent its hello by then (a server
    /// that speaks another protocol never does).
    pub hello_timeout: Duration,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            endpoint: "controller".to_owned(),
            role: "controller".to_owned(),
            heartbeat: 0,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            tls: None,
            server_name: None,
            tls_server: None,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
        }
    }
}

/// What arrives from the agent besides responses.
#[derive(Debug, Clone)]
pub enum Incoming {
    Notification(Notification),
    Error { code: ErrorCode, message: String },
    Heartbeat,
}

type Pending = Arc<Mutex<HashMap<ReqId, oneshot::Sender<Response>>>>;

/// Responses that matched no waiting request (a duplicate, or one nobody
/// asked for).
type Unmatched = Arc<AtomicU64>;

/// A live connection to one agent.
pub struct Connection {
    agent: Hello,
    topic: String,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    events: mpsc::UnboundedReceiver<Incoming>,
    next: AtomicU64,
    unmatched: Unmatched,
    /// The task reading from the agent; it holds the socket's read half, so
    /// it is ended when the connection is dropped.
    reader: tokio::task::JoinHandle<()>,
    /// The other end's address, as the socket saw it.
    remote: Option<std::net::SocketAddr>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The reading half, framed by the agent's own codec (one framing
/// implementation for both ends).
type FrameReader<R> = FramedRead<R, FrameCodec>;

/// The next frame, or why there is none.
async fn next_frame<R: AsyncRead + Unpin>(r: &mut FrameReader<R>) -> Result<Bytes, LinkError> {
    match r.next().await {
        Some(Ok(frame)) => Ok(frame),
        Some(Err(FrameError::Io(e))) => Err(LinkError::Io(e)),
        Some(Err(e @ (FrameError::TooLarge { .. } | FrameError::Http { .. }))) => {
            Err(LinkError::Protocol(e.to_string()))
        }
        None => Err(LinkError::Closed),
    }
}

/// Prefixes `payload` with its length.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(payload.len() + 4);
    // Only a payload over 4 GiB cannot be framed (the result is then
    // empty); the agent refuses anything over its limit long before that.
    let _ = FrameCodec::new(usize::MAX).encode(Bytes::copy_from_slice(payload), &mut buf);
    buf.to_vec()
}

/// A frame with its length prefix, by the encoder the agent writes with.
fn encode_frame(frame: &Frame) -> Result<Vec<u8>, LinkError> {
    let mut buf = BytesMut::new();
    cbor::put_frame(&mut buf, frame).map_err(|e| LinkError::Protocol(e.to_string()))?;
    Ok(buf.to_vec())
}

impl Connection {
    /// Dials an agent and exchanges hellos.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        opts: PeerOptions,
    ) -> Result<Connection, LinkError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let remote = stream.peer_addr().ok();
        let Some(tls) = opts.tls.clone() else {
            return Self::handshake(stream, opts, true)
                .await
                .map(|c| c.at(remote));
        };
        let name = match &opts.server_name {
            Some(n) => n.clone(),
            None => stream.peer_addr()?.ip().to_string(),
        };
        let name = rustls_pki_types::ServerName::try_from(name)
            .map_err(|e| LinkError::Protocol(format!("invalid server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await?;
        Self::handshake(stream, opts, true)
            .await
            .map(|c| c.at(remote))
    }

    /// Accepts one agent dialling in (connect mode) and exchanges hellos.
    pub async fn accept(
        listener: &TcpListener,
        opts: PeerOptions,
    ) -> Result<Connection, LinkError> {
        let (stream, _) = listener.accept().await?;
        Self::accept_stream(stream, opts).await
    }

    /// Exchanges hellos with an agent that dialled in on `stream`.
    pub async fn accept_stream(
        stream: TcpStream,
        opts: PeerOptions,
    ) -> Result<Connection, LinkError> {
        stream.set_nodelay(true)?;
        let remote = stream.peer_addr().ok();
        let conn = match opts.tls_server.clone() {
            Some(tls) => {
                let stream = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await?;
                Self::handshake(stream, opts, false).await
            }
            None => Self::handshake(stream, opts, false).await,
        };
        conn.map(|c| c.at(remote))
    }

    fn at(mut self, remote: Option<std::net::SocketAddr>) -> Self {
        self.remote = remote;
        self
    }

    /// The other end's address, as the socket saw it.
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.remote
    }

    /// Hands over the stream of notifications, errors and heartbeats (it
    /// ends when the connection does); `next_event` sees nothing after.
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<Incoming> {
        let (_, empty) = mpsc::unbounded_channel();
        std::mem::replace(&mut self.events, empty)
    }

    async fn handshake<S>(
        stream: S,
        opts: PeerOptions,
        we_dialled: bool,
    ) -> Result<Connection, LinkError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (r, mut w) = tokio::io::split(stream);
        let mut r = FramedRead::new(r, FrameCodec::new(opts.max_frame_bytes));
        let ours = encode_frame(&Frame::Hello(Hello::new(
            opts.endpoint.clone(),
            opts.role.clone(),
            opts.heartbeat,
        )))?;
        if we_dialled {
            w.write_all(&ours).await?;
            w.flush().await?;
        }
        let first = tokio::time::timeout(opts.hello_timeout, next_frame(&mut r))
            .await
            .map_err(|_| LinkError::NoHello(opts.hello_timeout))??;
        let agent = match cbor::decode(&first) {
            Ok(Frame::Hello(h)) => h,
            Ok(Frame::Error { code, message }) => {
                return Err(LinkError::Refused {
                    code: code.as_str().to_owned(),
                    message,
                })
            }
            Ok(other) => {
                return Err(LinkError::Protocol(format!(
                    "expected hello, got {other:?}"
                )))
            }
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        };
        if !we_dialled {
            // A controller's port takes agents only: a client or another
            // controller on it is told where to go, at once.
            if agent.role != "agent" {
                let why = format!(
                    "this is a controller's port for agents, and {:?} says it is a {}: zeek-mgmt-client talks to a controller with --controller HOST:PORT (its WebSocket port, 2149 by default), and to agents on their own ports (2151)",
                    agent.endpoint, agent.role
                );
                let refusal = encode_frame(&Frame::Error {
                    code: ErrorCode::BadHello,
                    message: why.clone(),
                })?;
                w.write_all(&refusal).await?;
                w.flush().await?;
                return Err(LinkError::Protocol(why));
            }
            w.write_all(&ours).await?;
            w.flush().await?;
        }
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
                    break;
                }
            }
        });
        let p = Arc::clone(&pending);
        let unmatched: Unmatched = Arc::new(AtomicU64::new(0));
        let u = Arc::clone(&unmatched);
        let reader = tokio::spawn(async move {
            while let Ok(bytes) = next_frame(&mut r).await {
                let incoming = match cbor::decode(&bytes) {
                    Ok(Frame::Event {
                        body: EventBody::Response(resp),
                        ..
                    }) => {
                        let tx = p.lock().ok().and_then(|mut m| m.remove(&resp.reqid));
                        match tx {
                            Some(tx) => {
                                let _ = tx.send(resp);
                            }
                            None => {
                                u.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        continue;
                    }
                    Ok(Frame::Event {
                        body: EventBody::Notification(n),
                        ..
                    }) => Incoming::Notification(n),
                    Ok(Frame::Error { code, message }) => Incoming::Error { code, message },
                    Ok(Frame::Heartbeat) => Incoming::Heartbeat,
                    Ok(_) | Err(_) => continue,
                };
                if ev_tx.send(incoming).is_err() {
                    break;
                }
            }
            // Wake every waiter: the connection is gone.
            if let Ok(mut m) = p.lock() {
                m.clear();
            }
        });
        Ok(Connection {
            topic: super::agent_topic(&agent.endpoint),
            agent,
            out: out_tx,
            pending,
            events: ev_rx,
            next: AtomicU64::new(1),
            unmatched,
            reader,
            remote: None,
        })
    }

    /// The agent's hello.
    pub fn agent(&self) -> &Hello {
        &self.agent
    }

    /// Responses received that no request was waiting for.
    pub fn unmatched_responses(&self) -> u64 {
        self.unmatched.load(Ordering::Relaxed)
    }

    /// The agent's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// A fresh reqid for this connection.
    pub fn new_reqid(&self) -> ReqId {
        ReqId(format!("req-{}", self.next.fetch_add(1, Ordering::Relaxed)))
    }

    /// Sends raw bytes (tests use it for malformed frames).
    pub fn send_raw(&self, bytes: Vec<u8>) -> Result<(), LinkError> {
        self.out.send(bytes).map_err(|_| LinkError::Closed)
    }

    /// Sends a frame.
    pub fn send_frame(&self, frame: &Frame) -> Result<(), LinkError> {
        self.send_raw(encode_frame(frame)?)
    }

    /// Sends a request without waiting; the response can be awaited with
    /// the returned receiver.
    pub fn start_request(
        &self,
        request: Request,
    ) -> Result<oneshot::Receiver<Response>, LinkError> {
        let rx = self.expect_response(request.reqid().clone());
        self.send_frame(&Frame::Event {
            topic: self.topic.clone(),
            body: EventBody::Request(request),
        })?;
        Ok(rx)
    }

    /// Registers interest in the response to `reqid` without sending
    /// anything (for a request sent with `send_raw`).
    pub fn expect_response(&self, reqid: ReqId) -> oneshot::Receiver<Response> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.pending.lock() {
            m.insert(reqid, tx);
        }
        rx
    }

    /// Sends a request and awaits its response.
    pub async fn request(&self, request: Request, limit: Duration) -> Result<Response, LinkError> {
        let rx = self.start_request(request)?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout(limit)),
        }
    }

    /// The next notification, error or heartbeat; `None` once closed.
    pub async fn next_event(&mut self, limit: Duration) -> Result<Incoming, LinkError> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout(limit)),
        }
    }

    /// The next notification satisfying `f`, skipping everything else.
    pub async fn wait_notification(
        &mut self,
        limit: Duration,
        f: impl Fn(&Notification) -> bool,
    ) -> Result<Notification, LinkError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Incoming::Notification(n) = self.next_event(left).await? {
                if f(&n) {
                    return Ok(n);
                }
            }
        }
    }

    /// The next protocol error from the agent, skipping everything else.
    pub async fn wait_error(&mut self, limit: Duration) -> Result<(ErrorCode, String), LinkError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Incoming::Error { code, message } = self.next_event(left).await? {
                return Ok((code, message));
            }
        }
    }
}
