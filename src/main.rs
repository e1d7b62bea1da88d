//! `zeek-mgmt-agent`: the host daemon. Flags → `Config` → `AgentBuilder`,
//! then run until SIGINT or SIGTERM, stop every node, exit 0.

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zeek_mgmt_agent::api::types::Port;
use zeek_mgmt_agent::config::{ClusterBackend, Config, Overrides};
use zeek_mgmt_agent::AgentBuilder;

/// A host agent for Zeek's cluster Management framework: it takes cluster
/// configurations from a controller (agent API v1, CBOR over TCP), launches
/// and supervises this host's Zeek nodes, and reports their state.
///
/// Durations are seconds (`1.5`), or with a unit (`250ms`, `10s`).
/// Precedence: flags, then environment, then --config FILE, then defaults.
#[derive(Debug, Parser)]
#[command(name = "zeek-mgmt-agent", version, args_override_self = true)]
struct Cli {
    /// Agent name: topic, hello and every result's instance [default: agent-<hostname>]
    #[arg(long, env = "ZEEK_AGENT_NAME")]
    name: Option<String>,
    /// Address to accept controllers and clients on [default: 127.0.0.1]
    #[arg(long, env = "ZEEK_AGENT_ADDR")]
    listen_addr: Option<IpAddr>,
    /// Port to listen on, `2151` or `2151/tcp`; 0 picks a free one [default: 2151]
    #[arg(long, env = "ZEEK_AGENT_PORT", value_parser = parse_port)]
    listen_port: Option<u16>,
    /// Controller to dial (connect mode); without it the agent only listens
    #[arg(long, env = "ZEEK_CONTROLLER_ADDR")]
    controller_addr: Option<String>,
    /// Controller port, `2150` or `2150/tcp` [default: 2150]
    #[arg(long, env = "ZEEK_CONTROLLER_PORT", value_parser = parse_port)]
    controller_port: Option<u16>,
    /// In connect mode, do not listen as well
    #[arg(long)]
    no_listen: bool,
    /// Directory holding one working directory per node [default: ./cluster]
    #[arg(long)]
    cluster_dir: Option<PathBuf>,
    /// Directory for the persisted configuration and node pids [default: ./state]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The Zeek program nodes run [default: zeek on PATH]
    #[arg(long, env = "ZEEK_BINARY")]
    zeek_binary: Option<PathBuf>,
    /// Cluster backend script: auto asks `zeek --version` (ZeroMQ from 8.1 on) [default: auto]
    #[arg(long, value_enum)]
    cluster_backend: Option<ClusterBackend>,
    /// Answer `request timed out` after this long [default: 10s]
    #[arg(long, value_parser = parse_secs)]
    request_timeout: Option<f64>,
    /// Heartbeat interval announced to peers, 0 for none [default: 5s]
    #[arg(long, value_parser = parse_secs)]
    heartbeat: Option<f64>,
    /// Drop a connection that has not sent its hello by then [default: 10s]
    #[arg(long, value_parser = parse_secs)]
    handshake_timeout: Option<f64>,
    /// Largest frame accepted, in bytes [default: 16777216]
    #[arg(long)]
    max_frame_bytes: Option<usize>,
    /// Peers connected at once [default: 64]
    #[arg(long)]
    max_peers: Option<usize>,
    /// Requests in flight per peer; more are answered `overloaded` [default: 1024]
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Notifications kept while no peer is connected [default: 1000]
    #[arg(long)]
    notification_backlog: Option<usize>,
    /// A node counts as running once alive this long; 0 at once [default: 250ms]
    #[arg(long, value_parser = parse_secs)]
    settle_time: Option<f64>,
    /// A node with a port counts as running only once its port accepts, and
    /// role groups wait for each other
    #[arg(long)]
    port_checks: bool,
    /// Time between SIGTERM and SIGKILL when stopping a node [default: 10s]
    #[arg(long, value_parser = parse_secs)]
    stop_grace: Option<f64>,
    /// Revival delay after the first (the first revival is at once); doubles every third attempt [default: 1s]
    #[arg(long, value_parser = parse_secs)]
    revive_delay: Option<f64>,
    /// Longest revival delay [default: 60s]
    #[arg(long, value_parser = parse_secs)]
    revive_max_delay: Option<f64>,
    /// A run this long resets the revival delay [default: 30s]
    #[arg(long, value_parser = parse_secs)]
    revive_reset_after: Option<f64>,
    /// Failed revivals in a row before a node is given up as FAILED [default: 10]
    #[arg(long)]
    max_revivals: Option<u32>,
    /// Interval of the background cpu/memory sampling [default: 2s]
    #[arg(long, value_parser = parse_secs)]
    sample_interval: Option<f64>,
    /// Delay between dials of the controller [default: 1s]
    #[arg(long, value_parser = parse_secs)]
    reconnect_interval: Option<f64>,
    /// Disconnect a peer that leaves more than this many bytes unread [default: 67108864]
    #[arg(long)]
    max_outbound_bytes: Option<usize>,
    /// TLS certificate (PEM); with --tls-key the agent speaks only TLS 1.3
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// CA (PEM): require and verify client certificates (mutual TLS); in
    /// connect mode, verify the controller against it
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// TOML file with any of these settings (same names, underscores)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<Port>().map(|p| p.number)
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale),
        _ => Err(format!("{s:?} is not a duration (e.g. 10, 1.5s, 250ms)")),
    }
}

impl Cli {
    fn overrides(self) -> Overrides {
        Overrides {
            name: self.name,
            listen_addr: self.listen_addr,
            listen_port: self.listen_port,
            controller_addr: self.controller_addr,
            controller_port: self.controller_port,
            listen_in_connect_mode: self.no_listen.then_some(false),
            cluster_dir: self.cluster_dir,
            state_dir: self.state_dir,
            zeek_binary: self.zeek_binary,
            cluster_backend: self.cluster_backend,
            version_timeout: None,
            request_timeout: self.request_timeout,
            heartbeat: self.heartbeat,
            handshake_timeout: self.handshake_timeout,
            max_frame_bytes: self.max_frame_bytes,
            max_peers: self.max_peers,
            max_in_flight: self.max_in_flight,
            notification_backlog: self.notification_backlog,
            settle_time: self.settle_time,
            port_checks: self.port_checks.then_some(true),
            stop_grace: self.stop_grace,
            revive_delay: self.revive_delay,
            revive_max_delay: self.revive_max_delay,
            revive_reset_after: self.revive_reset_after,
            max_revivals: self.max_revivals,
            sample_interval: self.sample_interval,
            reconnect_interval: self.reconnect_interval,
            max_outbound_bytes: self.max_outbound_bytes,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            tls_ca: self.tls_ca,
        }
    }
}

fn build_config(mut cli: Cli) -> Result<Config, zeek_mgmt_agent::Error> {
    let mut config = Config::default();
    if let Some(path) = cli.config.take() {
        Overrides::from_file(&path)?.apply(&mut config)?;
    }
    cli.overrides().apply(&mut config)?;
    Ok(config)
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn main() -> ExitCode {
    // Log lines are buffered and written out every few milliseconds (at
    // once for warnings and errors); the guard flushes the rest at the end.
    let (writer, _log_guard) = zeek_mgmt_agent::logging::BufferedStderr::start();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .event_format(zeek_mgmt_agent::logging::LineFormat {
            ansi: std::io::stderr().is_terminal(),
        })
        .init();
    let config = match build_config(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zeek-mgmt-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let system = actix::System::new();
    let code = system.block_on(async move {
        let agent = match AgentBuilder::new(config).start() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("zeek-mgmt-agent: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The ready line: tests and scripts read the bound address from it.
        let mut out = std::io::stdout().lock();
        match agent.local_addr() {
            Some(addr) => {
                let _ = writeln!(out, "zeek-mgmt-agent {} listening on {addr}", agent.name());
            }
            None => {
                let _ = writeln!(
                    out,
                    "zeek-mgmt-agent {} started (not listening)",
                    agent.name()
                );
            }
        }
        let _ = out.flush();
        drop(out);
        match wait_for_signal().await {
            Ok(sig) => tracing::info!("{sig} received"),
            Err(e) => {
                tracing::error!("cannot watch for signals: {e}");
                return ExitCode::FAILURE;
            }
        }
        agent.shutdown().await;
        ExitCode::SUCCESS
    });
    code
}
