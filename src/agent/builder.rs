//! `AgentBuilder` and `AgentHandle`: start the agent's actors, in order,
//! inside a running actix system, wire them together, and talk to them.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;

use crate::agent::actors::connector::Connector;
use crate::agent::actors::listener::Listener;
use crate::agent::actors::messages::{Outbound, PeerClosed, PeerId, PeerReady, StopPeering, Track};
use crate::agent::actors::notifier::Notifier;
use crate::agent::actors::peer::{PeerLinks, PeerSettings};
use crate::agent::actors::supervisor::{NodeSupervisor, Shutdown};
use crate::agent::actors::tracker::{Tracker, TrackerSettings, Workers};
use crate::agent::config::Config;
use crate::agent::error::Error;
use crate::agent::metrics::AgentScrape;
use crate::api::events::Request;
use crate::metrics::{Metrics, MetricsServer};

/// Starts an agent from a `Config`.
pub struct AgentBuilder {
    config: Config,
    listen: Option<bool>,
}

impl AgentBuilder {
    pub fn new(config: Config) -> Self {
        AgentBuilder {
            config,
            listen: None,
        }
    }

    /// Whether to accept TCP peers at all (an embedded agent may take
    /// requests only through `AgentHandle::attach`). By default it listens
    /// in listen mode, and in connect mode unless `no_listen`.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = Some(listen);
        self
    }

    /// Starts the actors. Must be called from within a running actix system.
    pub fn start(self) -> Result<AgentHandle, Error> {
        let mut config = self.config;
        config.check()?;
        // Nodes run in their own directories: a relative program path like
        // `./zeek` must mean the agent's directory, not the node's. A bare
        // name (`zeek`) stays a PATH lookup.
        if config.zeek_binary.is_relative() && config.zeek_binary.components().count() > 1 {
            if let Ok(cwd) = std::env::current_dir() {
                config.zeek_binary = cwd.join(&config.zeek_binary);
            }
        }
        let cfg = Arc::new(config);
        // First of all: a second agent on the same state directory must
        // touch nothing of the first one's.
        let lock = crate::agent::state::StateDir::new(cfg.state_dir.clone()).lock()?;
        // Found now, not at the first deploy: both directories are written.
        for dir in [&cfg.state_dir, &cfg.cluster_dir] {
            std::fs::create_dir_all(dir)
                .and_then(|()| check_writable(dir))
                .map_err(|source| Error::Dir {
                    path: dir.clone(),
                    source,
                })?;
        }
        let connect_mode = cfg.controller_addr.is_some();
        let listen = self.listen.unwrap_or(!connect_mode || !cfg.no_listen);
        let listener = if listen {
            let addr = SocketAddr::new(cfg.listen_addr, cfg.listen_port);
            let bind = |addr| {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            };
            Some(bind(addr).map_err(|source| Error::Bind { addr, source })?)
        } else {
            None
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let tls = crate::protocol::tls::TlsFiles {
            cert: cfg.tls_cert.clone(),
            key: cfg.tls_key.clone(),
            ca: cfg.tls_ca.clone(),
        }
        .build(listen, connect_mode)?;

        let notifier = Notifier::new(cfg.name.clone(), cfg.notification_backlog).start();
        let supervisor = NodeSupervisor::new(
            Arc::clone(&cfg),
            local_addr.map(|a| a.port()),
            notifier.clone().recipient(),
        )
        .holding(lock)
        .start();
        let metrics = match cfg.metrics_addr {
            Some(addr) => Some(start_metrics(addr, &supervisor)?),
            None => None,
        };
        let tracker = Tracker::new(
            TrackerSettings {
                instance: cfg.name.clone(),
                request_timeout: cfg.request_timeout,
                max_in_flight: cfg.max_in_flight,
            },
            Workers::all(&supervisor),
        )
        .with_metrics(metrics.as_ref().map(|(m, _)| Arc::clone(m)))
        .start();

        let settings = Arc::new(PeerSettings {
            agent_name: cfg.name.clone(),
            heartbeat: cfg.heartbeat,
            handshake_timeout: cfg.handshake_timeout,
            max_frame_bytes: cfg.max_frame_bytes,
            max_outbound_bytes: cfg.max_outbound_bytes,
        });
        let links = PeerLinks {
            tracker: tracker.clone().recipient(),
            notifier: notifier.clone().recipient(),
            on_close: vec![tracker.clone().recipient(), notifier.clone().recipient()],
        };
        let mut stoppers: Vec<Recipient<StopPeering>> = Vec::new();
        if let Some(l) = listener {
            tracing::info!(addr = ?local_addr, name = %cfg.name, tls = tls.acceptor.is_some(), "listening");
            let l = Listener::new(l, Arc::clone(&settings), links.clone(), cfg.max_peers)
                .with_tls(tls.acceptor.clone())
                .start();
            stoppers.push(l.recipient());
        }
        if let Some(host) = &cfg.controller_addr {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let target = crate::protocol::HostPort::new(host, cfg.controller_port).to_string();
            tracing::info!(controller = %target, name = %cfg.name, "connect mode");
            let c = Connector::new(target, Arc::clone(&settings), links, cfg.reconnect_interval)
                .with_tls(tls.connector.clone())
                .start();
            stoppers.push(c.recipient());
        }
        Ok(AgentHandle {
            config: cfg,
            local_addr,
            metrics: metrics.map(|(_, server)| Arc::new(server)),
            tracker,
            notifier,
            supervisor,
            stoppers,
        })
    }
}

/// The agent's metrics, served on `addr`.
fn start_metrics(
    addr: SocketAddr,
    supervisor: &Addr<NodeSupervisor>,
) -> Result<(Arc<Metrics>, MetricsServer), Error> {
    let fail = |reason: String| Error::Metrics { addr, reason };
    let metrics = Metrics::new("zeek_mgmt_agent").map_err(|e| fail(e.to_string()))?;
    let scrape =
        AgentScrape::new(&metrics.registry, supervisor.clone()).map_err(|e| fail(e.to_string()))?;
    let metrics = Arc::new(metrics);
    let server = crate::metrics::serve(addr, Arc::clone(&metrics), Arc::new(Arc::new(scrape)))
        .map_err(|e| fail(e.to_string()))?;
    tracing::info!(addr = %server.addr, "serving metrics");
    Ok((metrics, server))
}

/// Creates and removes a file in `dir`: it can be written.
fn check_writable(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// A running agent.
#[derive(Clone)]
pub struct AgentHandle {
    config: Arc<Config>,
    local_addr: Option<SocketAddr>,
    metrics: Option<Arc<MetricsServer>>,
    tracker: Addr<Tracker>,
    notifier: Addr<Notifier>,
    supervisor: Addr<NodeSupervisor>,
    stoppers: Vec<Recipient<StopPeering>>,
}

impl AgentHandle {
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The address the agent listens on, if it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The address `/metrics` is served on, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// The request tracker: send it `Track` messages.
    pub fn tracker(&self) -> Addr<Tracker> {
        self.tracker.clone()
    }

    /// The node supervisor: it also takes the API requests directly, without
    /// request tracking (no timeout, no duplicate check).
    pub fn supervisor(&self) -> Addr<NodeSupervisor> {
        self.supervisor.clone()
    }

    /// Connects an in-process peer: responses to its requests and every
    /// notification go to `outbound`, exactly as to a network peer.
    pub fn attach(&self, outbound: Recipient<Outbound>) -> LocalPeer {
        let id = PeerId::next();
        self.notifier.do_send(PeerReady {
            peer: id,
            outbound: outbound.clone(),
            takes_backlog: true,
        });
        LocalPeer {
            id,
            tracker: self.tracker.clone().recipient(),
            outbound,
            on_close: vec![
                self.tracker.clone().recipient(),
                self.notifier.clone().recipient(),
            ],
        }
    }

    /// Stops every node (the persisted configuration stays), then stops
    /// accepting and closes every peer.
    pub async fn shutdown(&self) {
        tracing::info!("shutting down: stopping every node");
        let _ = self.supervisor.send(Shutdown).await;
        for s in &self.stoppers {
            let _ = s.send(StopPeering).await;
        }
        if let Some(m) = &self.metrics {
            m.stop().await;
        }
        tracing::info!("every node stopped");
    }
}

/// An in-process peer of an embedded agent.
pub struct LocalPeer {
    id: PeerId,
    tracker: Recipient<Track>,
    outbound: Recipient<Outbound>,
    on_close: Vec<Recipient<PeerClosed>>,
}

impl LocalPeer {
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// Sends a request; its response arrives at the attached recipient.
    pub fn request(&self, request: Request) {
        self.tracker.do_send(Track {
            peer: self.id,
            reply_to: self.outbound.clone(),
            request,
        });
    }

    /// Detaches: no more notifications, and responses still in flight are
    /// dropped (their work goes on).
    pub fn detach(self) {
        for r in &self.on_close {
            r.do_send(PeerClosed { peer: self.id });
        }
    }
}
