//! The controller, `zeek-mgmt-controller`: Zeek's `zeek-client` drives it
//! over WebSocket (Broker JSON, [`crate::broker`]), and it drives one agent
//! per host over the agent protocol ([`crate::protocol::to_agent`]).
//!
//! - `config`: its settings, declared once (flags, environment, TOML);
//! - `stage`: the checks of a staged configuration and the READY copy with
//!   resolved hosts and assigned ports, as plain functions;
//! - `plan`: whom a request about nodes goes to, and which instances a
//!   deployment drops and adds, as plain functions;
//! - `requests` and `answers`: the client API's events, and agents' answers
//!   turned into the results zeek-client reads;
//! - `store`: `controller.json`, written atomically;
//! - `actors`: the [`Core`] that owns the state, a
//!   `ClientSession` per WebSocket client, the `Hub` that fans messages
//!   out, an `AgentSession` per agent connection (see `actors.md`).

pub mod actors;
pub mod answers;
pub mod config;
pub mod metrics;
pub mod plan;
pub mod requests;
pub mod stage;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::protocol::to_agent::{Connection, PeerOptions};
use actors::client_session::{application_name_ok, ClientIo, ClientSession, ClientSocket, Upgrade};
use actors::core::{Core, CoreSettings};
use actors::dialer::{Dialer, Sessions};
use actors::hub::Hub;
use actors::messages::ClientId;
use config::Config;
use stage::PortPolicy;
use store::Store;

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] crate::protocol::tls::TlsError),
    #[error("state directory {path} cannot be used: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Lock(#[from] crate::daemon::LockError),
    #[error("cannot serve metrics on {addr}: {reason}")]
    Metrics { addr: SocketAddr, reason: String },
    #[error("the local agent cannot start: {0}")]
    LocalAgent(crate::agent::error::Error),
}

/// Notes what the upgrade request says that the session must act on.
struct Inspect<'a>(&'a mut Upgrade);

impl tokio_tungstenite::tungstenite::handshake::server::Callback for Inspect<'_> {
    fn on_request(
        self,
        req: &Request,
        resp: Response,
    ) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
        self.0.wrong_path = req.uri().path() != "/v1/messages/json";
        self.0.bad_application_name = req
            .headers()
            .get("X-Application-Name")
            .is_some_and(|v| !v.to_str().is_ok_and(application_name_ok));
        Ok(resp)
    }
}

/// The largest message a client may send: twice a staged configuration
/// of 10,000 nodes (about 8 MiB). A frame announcing more is refused at
/// its header, before its bytes are read (and held in the connection's
/// read buffer for as long as it lives).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long a new client may take to complete its upgrade request.
const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Upgrades in progress at once; beyond it the oldest gives way.
const MAX_PENDING_UPGRADES: usize = 128;

/// The clients' connections still upgrading, oldest first. At the limit the
/// oldest is dropped for the newcomer: a connection that has not finished
/// its handshake in the time the limit's worth of others arrived is far
/// slower than any zeek-client, so silent connections cannot lock real
/// clients out, however many there are.
#[derive(Default)]
struct Upgrading(std::sync::Mutex<std::collections::VecDeque<(u64, tokio::task::AbortHandle)>>);

impl Upgrading {
    fn add(&self, n: u64, task: tokio::task::AbortHandle) {
        let Ok(mut q) = self.0.lock() else { return };
        q.retain(|(_, t)| !t.is_finished());
        while q.len() >= MAX_PENDING_UPGRADES {
            if let Some((old, t)) = q.pop_front() {
                tracing::debug!(
                    client = old,
                    "dropped unfinished upgrade for a newer connection"
                );
                t.abort();
            }
        }
        q.push_back((n, task));
    }

    fn done(&self, n: u64) {
        if let Ok(mut q) = self.0.lock() {
            q.retain(|(m, _)| *m != n);
        }
    }
}

/// Whether the HTTP request waiting on `stream` (read without consuming
/// it) asks for a WebSocket upgrade; `None` when no complete request head
/// arrives.
async fn asks_for_upgrade(stream: &TcpStream) -> Option<bool> {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let head = &buf[..n];
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            return Some(text.lines().any(|l| {
                l.split_once(':')
                    .is_some_and(|(k, v)| k.trim() == "upgrade" && v.contains("websocket"))
            }));
        }
        if n == buf.len() {
            return Some(false);
        }
        // The head is still on its way, unless the client has gone.
        let ready = stream.ready(tokio::io::Interest::READABLE).await.ok()?;
        if ready.is_read_closed() {
            return None;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Completes a client's WebSocket upgrade (inside TLS when `tls` is set);
/// a plain HTTP request gets 400.
async fn upgrade(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Option<(ClientSocket, Upgrade)> {
    let _ = stream.set_nodelay(true);
    let attempt = async move {
        let io: Box<dyn ClientIo> = match tls {
            Some(tls) => match tls.accept(stream).await {
                Ok(s) => Box::new(s),
                Err(e) => {
                    tracing::info!("TLS handshake with {peer} failed: {e}");
                    return None;
                }
            },
            None => Box::new(plain_upgrade(stream, peer).await?),
        };
        websocket(io, peer).await
    };
    tokio::time::timeout(UPGRADE_TIMEOUT, attempt)
        .await
        .ok()
        .flatten()
}

/// The TCP stream again once it carries a WebSocket upgrade request; a
/// plain HTTP request gets 400.
async fn plain_upgrade(mut stream: TcpStream, peer: SocketAddr) -> Option<TcpStream> {
    use tokio::io::AsyncWriteExt;
    match asks_for_upgrade(&stream).await? {
        true => Some(stream),
        false => {
            tracing::info!("HTTP request from {peer} without a WebSocket upgrade: 400");
            // Take the request off the socket first: closing with unread
            // bytes would reset the connection, answer and all.
            let mut sink = [0u8; 8192];
            let _ = stream.try_read(&mut sink);
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = stream.shutdown().await;
            None
        }
    }
}

/// The WebSocket handshake proper.
async fn websocket(io: Box<dyn ClientIo>, peer: SocketAddr) -> Option<(ClientSocket, Upgrade)> {
    let mut upgrade = Upgrade::default();
    let callback = Inspect(&mut upgrade);
    // Small buffers that grow with the message: most clients send a few
    // hundred bytes, and a connection's buffers should not outweigh it.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    match tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(config)).await {
        Ok(ws) => Some((ws, upgrade)),
        Err(e) => {
            tracing::info!("WebSocket handshake with {peer} failed: {e}");
            None
        }
    }
}

/// A running controller.
pub struct ControllerHandle {
    pub core: Addr<Core>,
    /// The client (WebSocket) address, when listening.
    pub websocket_addr: Option<SocketAddr>,
    /// The agents' address, when listening.
    pub agent_addr: Option<SocketAddr>,
    /// Where `/metrics` and `/sd` are served, when they are.
    pub metrics_addr: Option<SocketAddr>,
    _metrics: Option<crate::metrics::MetricsServer>,
    /// The agent in the controller's process (`--local-agent`): shut it
    /// down, as an agent of its own would be, before the process exits.
    pub local_agent: Option<crate::agent::AgentHandle>,
    /// The state directory, held for the controller's life.
    _lock: crate::daemon::DirLock,
}

/// The certificate and key of one TLS setting pair, which go together.
fn pair<'a>(
    cert: &'a Option<std::path::PathBuf>,
    key: &'a Option<std::path::PathBuf>,
    flags: &str,
) -> Result<Option<(&'a std::path::Path, &'a std::path::Path)>, StartError> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c.as_path(), k.as_path()))),
        (None, None) => Ok(None),
        _ => Err(StartError::Tls(crate::protocol::tls::TlsError::Setting(
            format!("{flags} go together"),
        ))),
    }
}

/// The options of the controller's side of each agent connection.
fn agent_options(config: &Config) -> Result<PeerOptions, StartError> {
    use crate::protocol::tls;
    let identity = pair(
        &config.tls_cert,
        &config.tls_key,
        "--tls-cert and --tls-key",
    )?;
    let tls_server = match identity {
        Some((c, k)) => Some(tls::server_config(c, k, config.tls_ca.as_deref())?),
        None if config.tls_ca.is_some() => {
            return Err(StartError::Tls(tls::TlsError::Setting(
                "--tls-ca needs --tls-cert and --tls-key, for the agents dialling in".into(),
            )))
        }
        None => None,
    };
    let tls = match &config.tls_ca {
        Some(ca) => Some(tls::client_config(ca, identity)?),
        None => None,
    };
    Ok(PeerOptions {
        endpoint: config.name.clone(),
        role: "controller".into(),
        heartbeat: config.heartbeat.as_secs(),
        hello_timeout: config.request_timeout,
        tls,
        tls_server,
        ..PeerOptions::default()
    })
}

/// The controller's registry, with the core's counters in it.
fn controller_metrics() -> Result<Arc<actors::core::CoreMetrics>, String> {
    let requests =
        crate::metrics::Metrics::new("zeek_mgmt_controller").map_err(|e| e.to_string())?;
    let deployments =
        actors::core::Deployments::new(&requests.registry).map_err(|e| e.to_string())?;
    Ok(Arc::new(actors::core::CoreMetrics {
        requests: Arc::new(requests),
        deployments,
    }))
}

/// A listener on `ip:port` (0: a free port), or none when it is off.
async fn bind(
    ip: std::net::IpAddr,
    port: u16,
    on: bool,
) -> Result<Option<TcpListener>, StartError> {
    if !on {
        return Ok(None);
    }
    let addr = SocketAddr::new(ip, port);
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    // A listen queue for bursts of connections (the accept loops drain it
    // at once).
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(1024)
        })
        .map(Some)
        .map_err(|source| StartError::Listen { addr, source })
}

/// The next connection; an accept error (out of file descriptors and
/// the like) is logged and retried after a pause instead of spinning.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(s) => return s,
            Err(e) => {
                tracing::error!("accept failed: {e}");
                actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Starts the controller's actors and listeners inside the running actix
/// system.
pub async fn start(config: Config) -> Result<ControllerHandle, StartError> {
    let lock = crate::daemon::lock_dir(&config.state_dir, store::LOCK_FILE, "controller")?;
    let state_dir_error = |source| StartError::StateDir {
        path: config.state_dir.clone(),
        source,
    };
    store::probe(&config.state_dir).map_err(state_dir_error)?;
    let snapshot = store::load(&config.state_dir).map_err(state_dir_error)?;
    let dir = config.state_dir.clone();
    let store = SyncArbiter::start(1, move || Store { dir: dir.clone() });
    let hub = Hub::default().start();
    let options = agent_options(&config)?;
    let ws_tls = match pair(
        &config.websocket_tls_cert,
        &config.websocket_tls_key,
        "--websocket-tls-cert and --websocket-tls-key",
    )? {
        Some((c, k)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::protocol::tls::server_config(c, k, None)?,
        )),
        None => None,
    };

    let agent_listener = bind(config.listen_addr, config.listen_port, !config.no_listen).await?;
    let ws_listener = bind(
        config.websocket_addr,
        config.websocket_port,
        !config.no_websocket,
    )
    .await?;
    // Nodes may not use the agent port: the bound one, else the setting.
    let agent_port = agent_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map_or(config.listen_port, |a| a.port());

    let settings = CoreSettings {
        request_timeout: config.request_timeout,
        policy: PortPolicy {
            broker_from: config.auto_assign_ports.then_some(2200),
            metrics_from: config.auto_assign_metrics_ports.then_some(9000),
            controller_port: agent_port,
            zeromq: config.zeromq_ports(),
        },
        dial_interval: config.dial_interval,
    };
    // The core and the dialer know each other: the core's address comes
    // first, from its context.
    let metrics = match config.metrics_addr {
        Some(addr) => {
            Some(controller_metrics().map_err(|reason| StartError::Metrics { addr, reason })?)
        }
        None => None,
    };
    let core_context = Context::<Core>::new();
    let core_addr = core_context.address();
    let sessions = Sessions::new(
        options,
        core_addr.clone().recipient(),
        core_addr.recipient(),
        config.heartbeat,
    );
    let dialer = Dialer::new(sessions.clone()).start();
    let core = core_context.run(
        Core::new(settings, hub.clone(), store, snapshot, dialer.recipient())
            .with_metrics(metrics.clone()),
    );
    let metrics_server = match (config.metrics_addr, metrics) {
        (Some(addr), Some(m)) => {
            let fail = |reason: String| StartError::Metrics { addr, reason };
            let scrape = metrics::ControllerScrape::new(&m.requests.registry, core.clone())
                .map_err(|e| fail(e.to_string()))?;
            let server =
                crate::metrics::serve(addr, Arc::clone(&m.requests), Arc::new(Arc::new(scrape)))
                    .map_err(|e| fail(e.to_string()))?;
            tracing::info!(addr = %server.addr, "serving metrics and service discovery");
            Some(server)
        }
        _ => None,
    };

    let agent_addr = agent_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = agent_listener {
        let sessions = sessions.clone();
        actix_rt::spawn(async move {
            loop {
                let (stream, peer) = accept(&listener).await;
                let sessions = sessions.clone();
                actix_rt::spawn(async move {
                    match Connection::accept_stream(stream, sessions.options()).await {
                        Ok(conn) => sessions.open(conn, None),
                        Err(e) => tracing::info!("agent connection from {peer} failed: {e}"),
                    }
                });
            }
        });
    }

    let websocket_addr = ws_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = ws_listener {
        let (core, hub) = (core.clone(), hub.clone());
        let prefix = uuid::Uuid::new_v4().to_string();
        let places = Arc::new(tokio::sync::Semaphore::new(config.max_clients));
        let max_clients = config.max_clients;
        let upgrading = Arc::new(Upgrading::default());
        actix_rt::spawn(async move {
            let mut n: u64 = 0;
            loop {
                // Every connection is taken off the backlog at once; a
                // place is taken once it is a WebSocket client.
                let (stream, peer) = accept(&listener).await;
                n += 1;
                let (core, hub, endpoint) =
                    (core.clone(), hub.clone(), format!("{prefix}-websocket-{n}"));
                let tls = ws_tls.clone();
                let ping = config.websocket_ping;
                let id = ClientId(n);
                let (places, pending) = (Arc::clone(&places), Arc::clone(&upgrading));
                let task = actix_rt::spawn(async move {
                    let ws = upgrade(stream, peer, tls).await;
                    pending.done(n);
                    let Some((mut ws, upgrade)) = ws else {
                        return;
                    };
                    let Ok(place) = places.try_acquire_owned() else {
                        tracing::warn!(
                            "WebSocket client {peer} refused: {max_clients} clients connected (--max-clients)"
                        );
                        let _ = ws
                            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Again,
                                reason: "too many clients".into(),
                            }))
                            .await;
                        return;
                    };
                    tracing::debug!(client = n, "WebSocket client from {peer}");
                    ClientSession::new(ws, id, endpoint, upgrade, hub, core.recipient())
                        .holding(place)
                        .pinging(ping)
                        .start();
                });
                upgrading.add(n, task.abort_handle());
            }
        });
    }
    let local_agent = match config.agent.clone() {
        None => None,
        Some(agent_config) => {
            // No socket between them: the agent neither listens nor dials.
            let agent = crate::agent::AgentBuilder::new(agent_config)
                .listen(false)
                .start()
                .map_err(StartError::LocalAgent)?;
            let id = sessions.next_id();
            actors::local_agent::LocalAgent::new(
                agent.clone(),
                id,
                core.clone().recipient(),
                core.clone().recipient(),
            )
            .start();
            Some(agent)
        }
    };
    Ok(ControllerHandle {
        core,
        websocket_addr,
        agent_addr,
        metrics_addr: metrics_server.as_ref().map(|m| m.addr),
        _metrics: metrics_server,
        local_agent,
        _lock: lock,
    })
}
