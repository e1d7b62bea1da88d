//! The agent's settings, their documented defaults, and the TOML file form.
//!
//! Precedence: command-line flags, then environment variables, then the
//! `--config` file, then these defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::agent::channel::{self, Timings};
use crate::protocol::codec::DEFAULT_MAX_FRAME_BYTES;
pub use crate::settings::{parse_duration, parse_port, ConfigError};

/// Default listen port of an agent.
pub const DEFAULT_LISTEN_PORT: u16 = 2151;
/// Default port of a controller, in connect mode.
pub const DEFAULT_CONTROLLER_PORT: u16 = 2150;

/// Which cluster backend script nodes are started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClusterBackend {
    /// Ask `<zeek-binary> --version`: ZeroMQ from Zeek 8.1 on, none before.
    #[default]
    Auto,
    Zeromq,
    Broker,
    None,
}

crate::settings::value_enum_setting!(ClusterBackend, "BACKEND");
crate::settings::value_enum_setting!(channel::Mode, "MODE");

/// Default bound of a peer's unread output (64 MiB).
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 64 * 1024 * 1024;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

crate::settings::declare_settings! {
    /// Every setting of the agent, resolved.
    pub struct Config;
    /// The settings one source gives (flags, environment, the `--config`
    /// file); a setting left `None` keeps what lies below it.
    pub struct Settings;

    /// Agent name: topic, hello and every result's instance
    name: String = default_name(), shown "agent-<hostname>", env "ZEEK_AGENT_NAME";
    /// Address to accept controllers and clients on
    listen_addr: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), env "ZEEK_AGENT_ADDR";
    /// Port to listen on, `2151` or `2151/tcp`; 0 picks a free one
    listen_port: u16 = DEFAULT_LISTEN_PORT, env "ZEEK_AGENT_PORT", alias "port";
    /// Controller to dial (connect mode); without it the agent only listens
    controller_addr: Option<String> = None, env "ZEEK_CONTROLLER_ADDR";
    /// Controller port, `2150` or `2150/tcp`
    controller_port: u16 = DEFAULT_CONTROLLER_PORT, env "ZEEK_CONTROLLER_PORT";
    /// In connect mode, do not listen as well (`--no-listen=false` undoes a file's `true`)
    no_listen: bool = false;
    /// Directory holding one working directory per node
    cluster_dir: PathBuf = PathBuf::from("./cluster");
    /// Directory for the persisted configuration and node pids; one agent at a time
    state_dir: PathBuf = PathBuf::from("./state");
    /// The Zeek program nodes run (`zeek`: the one on PATH)
    zeek_binary: PathBuf = PathBuf::from("zeek"), env "ZEEK_BINARY";
    /// Cluster backend script: auto asks `zeek --version` (ZeroMQ from 8.1 on)
    cluster_backend: ClusterBackend = ClusterBackend::Auto;
    /// How long `zeek --version` may take
    version_timeout: Duration = secs(5), zero Refused;
    /// Answer `request timed out` after this long
    request_timeout: Duration = secs(10), zero Refused;
    /// Heartbeat interval announced to peers
    heartbeat: Duration = secs(5), zero Off;
    /// Drop a connection that has not sent its hello by then
    handshake_timeout: Duration = secs(10), zero Refused;
    /// Largest frame accepted, in bytes
    max_frame_bytes: usize = DEFAULT_MAX_FRAME_BYTES, zero Refused;
    /// Peers connected at once; more wait to be accepted
    max_peers: usize = 64, zero Refused;
    /// Requests in flight per peer; more are answered `overloaded`
    max_in_flight: usize = 1024, zero Refused;
    /// Notifications kept while no controller is connected, the oldest dropped first (clients never take them); 0 keeps none
    notification_backlog: usize = 1000;
    /// A node counts as running once alive this long
    settle_time: Duration = millis(250), zero Off;
    /// A node that binds its port counts as running only once the port accepts, and role groups wait for each other
    port_checks: bool = false;
    /// Time between SIGTERM and SIGKILL when stopping a node
    stop_grace: Duration = secs(10), zero Refused;
    /// Delay of the second revival in a row (the first is at once); doubles every third attempt
    revive_delay: Duration = secs(1), zero Refused;
    /// Longest revival delay
    revive_max_delay: Duration = secs(60), zero Refused;
    /// A run this long resets the revival delay
    revive_reset_after: Duration = secs(30), zero Refused;
    /// Failed revivals in a row before a node is given up as FAILED; 0 gives up at the first crash
    max_revivals: u32 = 10;
    /// Interval of the background cpu/memory sampling
    sample_interval: Duration = secs(2), zero Refused;
    /// Delay between dials of the controller (plus a little jitter)
    reconnect_interval: Duration = secs(1), zero Refused;
    /// Disconnect a peer that leaves more than this many bytes unread
    max_outbound_bytes: usize = DEFAULT_MAX_OUTBOUND_BYTES, zero Refused;
    /// TLS certificate (PEM); with --tls-key the agent speaks only TLS 1.3
    tls_cert: Option<PathBuf> = None;
    /// TLS private key (PEM)
    tls_key: Option<PathBuf> = None;
    /// CA (PEM): require and verify client certificates (mutual TLS); in connect mode, verify the controller against it
    tls_ca: Option<PathBuf> = None;
    /// Node channel (readiness and get_id_value through a script in each node): auto uses it with Zeek 8.0 and later
    node_channel: channel::Mode = channel::Mode::Auto;
    /// Node channel: TCP connect retry, and a logging node's port probe
    channel_connect_interval: Duration = millis(20), zero Refused;
    /// Node channel: ping retry until the join grace passes
    channel_ping_interval: Duration = millis(100), zero Refused;
    /// Node channel: ping retry after the join grace
    channel_slow_ping_interval: Duration = secs(1), zero Refused;
    /// Node channel: a node connected but unanswered this long counts as running, degraded
    channel_join_grace: Duration = secs(5), zero Refused;
    /// Node channel: with no connection this long after spawn, fall back to the settle time
    channel_timeout: Duration = secs(30), zero Refused;
    /// Node channel: a node's answer to a node_dispatch command
    channel_command_timeout: Duration = secs(5), zero Refused;
    /// Node channel: relaunches in a row with a new port when a node's channel port was taken
    channel_port_retries: u32 = 3;
    /// Node channel: delay before reconnecting to a live node
    channel_reconnect_delay: Duration = secs(1), zero Refused;
    /// Before a new configuration stops anything, check each new node's scripts with `zeek -a` (Zeek only; `--check-scripts=false` skips it)
    check_scripts: bool = true;
    /// Logging nodes rotate into the agent's queue and the agent archives, compresses and expires their logs (`--log-archive=false` leaves rotation and archiving to the site)
    log_archive: bool = true;
    /// Archive directory: DIR/YYYY-MM-DD/STREAM.HH:MM:SS-HH:MM:SS.log.gz, as zeek-archiver
    archive_dir: Option<PathBuf> = None, shown "logs beside the cluster directory";
    /// How often logging nodes rotate their logs
    log_rotation_interval: Duration = secs(3600), zero Refused;
    /// How often the log queue is looked at
    archive_scan_interval: Duration = secs(1), zero Refused;
    /// Archived days kept, today included; 0 keeps every day
    archive_expire_days: u32 = 0;
    /// Bytes of archive kept, the oldest files deleted first; 0 is no cap
    archive_max_bytes: u64 = 0;
    /// Warn when the archive's filesystem has less free space, in percent
    min_disk_space: f64 = 5.0;
    /// Serve Prometheus metrics (/metrics) on this address, for example 127.0.0.1:9101; port 0 picks a free one. Off without it
    metrics_addr: Option<std::net::SocketAddr> = None, env "ZEEK_AGENT_METRICS_ADDR";
    /// Crash records kept per node (in its directory, crashes/), the oldest deleted first; 0 keeps none
    crash_records: usize = 20;
}

/// `agent-<hostname>`, or `agent` when the host name cannot be read.
pub fn default_name() -> String {
    crate::settings::host_name_or("agent")
}

impl Config {
    /// The node channel's timers.
    pub fn channel(&self) -> Timings {
        Timings {
            connect_interval: self.channel_connect_interval,
            ping_interval: self.channel_ping_interval,
            slow_ping_interval: self.channel_slow_ping_interval,
            join_grace: self.channel_join_grace,
            channel_timeout: self.channel_timeout,
            command_timeout: self.channel_command_timeout,
            port_retries: self.channel_port_retries,
            reconnect_delay: self.channel_reconnect_delay,
        }
    }
}

impl Config {
    /// Refuses values the agent cannot run with: 0 where the declaration
    /// refuses it (a sampling interval of 0 would spin), a percentage out of
    /// range.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_zero()?;
        if !(0.0..100.0).contains(&self.min_disk_space) {
            return Err(ConfigError::Usage(
                "min_disk_space (--min-disk-space) is a percentage, from 0 to below 100",
            ));
        }
        Ok(())
    }

    /// Where logs are archived: the setting, or `logs` beside the cluster
    /// directory.
    pub fn archive_dir(&self) -> PathBuf {
        self.archive_dir.clone().unwrap_or_else(|| {
            let parent = self
                .cluster_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            parent.join("logs")
        })
    }

    /// The queue logging nodes rotate into, in the cluster directory.
    pub fn log_queue(&self) -> PathBuf {
        let queue = self.cluster_dir.join(crate::agent::archive::QUEUE_DIR);
        std::path::absolute(&queue).unwrap_or(queue)
    }
}

#[cfg(test)]
mod tests;
