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
use crate::settings::de;
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

/// Every setting of the agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agent name: topic, hello endpoint, every `Result$instance`.
    pub name: String,
    pub listen_addr: IpAddr,
    /// 0 picks a free port (tests).
    pub listen_port: u16,
    /// Controller to dial (connect mode); `None` is listen mode.
    pub controller_addr: Option<String>,
    pub controller_port: u16,
    /// In connect mode, accept peers on the listen address as well.
    pub listen_in_connect_mode: bool,
    pub cluster_dir: PathBuf,
    pub state_dir: PathBuf,
    pub zeek_binary: PathBuf,
    pub cluster_backend: ClusterBackend,
    /// How long `<zeek-binary> --version` may take.
    pub version_timeout: Duration,
    /// A request not finished in this time is answered `request timed out`.
    pub request_timeout: Duration,
    /// Heartbeat interval announced in our hello (0 = none).
    pub heartbeat: Duration,
    /// A peer that has not completed the hello exchange by then is dropped.
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    pub max_peers: usize,
    pub max_in_flight: usize,
    /// Notifications kept while no controller is connected (oldest dropped
    /// first); clients never take them.
    pub notification_backlog: usize,
    /// A node counts as running once alive this long after exec (0 = at once).
    pub settle_time: Duration,
    /// A node with a port counts as running only once the port accepts.
    pub port_checks: bool,
    /// Time between SIGTERM and SIGKILL when stopping a node.
    pub stop_grace: Duration,
    /// First revival delay; doubles every third attempt.
    pub revive_delay: Duration,
    pub revive_max_delay: Duration,
    /// A node that ran this long has its revival delay reset.
    pub revive_reset_after: Duration,
    /// Revivals in a row before a node is given up as FAILED.
    pub max_revivals: u32,
    /// Interval of the background cpu/memory sampling.
    pub sample_interval: Duration,
    /// Delay between dial attempts in connect mode (plus a little jitter).
    pub reconnect_interval: Duration,
    /// Bytes queued for one peer that it has not read yet; beyond this the
    /// peer is disconnected instead of growing the agent's memory.
    pub max_outbound_bytes: usize,
    /// TLS certificate and key (PEM); with them the agent speaks TLS 1.3.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA (PEM): when listening, client certificates are required and
    /// verified against it; in connect mode, the controller's is.
    pub tls_ca: Option<PathBuf>,
    /// The node channel: on for Zeek 8.0 and later (`auto`), or never.
    pub node_channel: channel::Mode,
    /// The node channel's timers.
    pub channel: Timings,
    /// Before stopping anything for a new configuration, run each new node
    /// in Zeek's parse-only mode; a failure refuses the configuration.
    pub check_scripts: bool,
    /// Logging nodes rotate into the agent's queue and the agent archives,
    /// compresses and expires their logs; off leaves it to the site.
    pub log_archive: bool,
    /// Where logs are archived; `None`: `logs` beside the cluster directory.
    pub archive_dir: Option<PathBuf>,
    /// How often logging nodes rotate their logs (Zeek's default: 1 h).
    pub log_rotation_interval: Duration,
    /// How often the queue is looked at.
    pub archive_scan_interval: Duration,
    /// Archived days kept (0: every day).
    pub archive_expire_days: u32,
    /// Bytes of archive kept, oldest deleted first (0: no cap).
    pub archive_max_bytes: u64,
    /// Free space of the archive's filesystem, in percent, below which the
    /// agent warns (once per crossing).
    pub min_disk_space: f64,
}

/// Default bound of a peer's unread output (64 MiB).
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 64 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            name: default_name(),
            listen_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: DEFAULT_LISTEN_PORT,
            controller_addr: None,
            controller_port: DEFAULT_CONTROLLER_PORT,
            listen_in_connect_mode: true,
            cluster_dir: PathBuf::from("./cluster"),
            state_dir: PathBuf::from("./state"),
            zeek_binary: PathBuf::from("zeek"),
            cluster_backend: ClusterBackend::Auto,
            version_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_peers: 64,
            max_in_flight: 1024,
            notification_backlog: 1000,
            settle_time: Duration::from_millis(250),
            port_checks: false,
            stop_grace: Duration::from_secs(10),
            revive_delay: Duration::from_secs(1),
            revive_max_delay: Duration::from_secs(60),
            revive_reset_after: Duration::from_secs(30),
            max_revivals: 10,
            sample_interval: Duration::from_secs(2),
            reconnect_interval: Duration::from_secs(1),
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            node_channel: channel::Mode::Auto,
            channel: Timings::default(),
            check_scripts: true,
            log_archive: true,
            archive_dir: None,
            log_rotation_interval: Duration::from_secs(3600),
            archive_scan_interval: Duration::from_secs(1),
            archive_expire_days: 0,
            archive_max_bytes: 0,
            min_disk_space: 5.0,
        }
    }
}

/// `agent-<hostname>`, or `agent` when the host name cannot be read.
pub fn default_name() -> String {
    crate::settings::host_name_or("agent")
}

/// Every setting, declared once: as a flag (`--listen-port`), as a key of
/// the `--config` TOML file (`listen_port`), and for some as an environment
/// variable (see [`ENV_VARS`]). A field left `None` keeps what lies below it.
/// The doc comments are `--help`'s text.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Agent name: topic, hello and every result's instance [env: ZEEK_AGENT_NAME] [default: agent-HOSTNAME]
    #[arg(long)]
    pub name: Option<String>,
    /// Address to accept controllers and clients on [env: ZEEK_AGENT_ADDR] [default: 127.0.0.1]
    #[arg(long)]
    pub listen_addr: Option<IpAddr>,
    /// Port to listen on, `2151` or `2151/tcp`; 0 picks a free one [env: ZEEK_AGENT_PORT] [default: 2151]
    #[arg(long, value_parser = parse_port, alias = "port")]
    #[serde(default, deserialize_with = "de::port")]
    pub listen_port: Option<u16>,
    /// Controller to dial (connect mode); without it the agent only listens [env: ZEEK_CONTROLLER_ADDR]
    #[arg(long)]
    pub controller_addr: Option<String>,
    /// Controller port, `2150` or `2150/tcp` [env: ZEEK_CONTROLLER_PORT] [default: 2150]
    #[arg(long, value_parser = parse_port)]
    #[serde(default, deserialize_with = "de::port")]
    pub controller_port: Option<u16>,
    /// In connect mode, do not listen as well (`--no-listen=false` undoes a file's `true`)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub no_listen: Option<bool>,
    /// Directory holding one working directory per node [default: ./cluster]
    #[arg(long)]
    pub cluster_dir: Option<PathBuf>,
    /// Directory for the persisted configuration and node pids; one agent at a time [default: ./state]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The Zeek program nodes run [env: ZEEK_BINARY] [default: zeek on PATH]
    #[arg(long)]
    pub zeek_binary: Option<PathBuf>,
    /// Cluster backend script: auto asks `zeek --version` (ZeroMQ from 8.1 on) [default: auto]
    #[arg(long, value_enum)]
    pub cluster_backend: Option<ClusterBackend>,
    /// How long `zeek --version` may take (more than 0) [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub version_timeout: Option<Duration>,
    /// Answer `request timed out` after this long (more than 0) [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub request_timeout: Option<Duration>,
    /// Heartbeat interval announced to peers; 0 turns heartbeats off [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub heartbeat: Option<Duration>,
    /// Drop a connection that has not sent its hello by then (more than 0) [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub handshake_timeout: Option<Duration>,
    /// Largest frame accepted, in bytes [default: 16777216]
    #[arg(long)]
    pub max_frame_bytes: Option<usize>,
    /// Peers connected at once; more wait to be accepted [default: 64]
    #[arg(long)]
    pub max_peers: Option<usize>,
    /// Requests in flight per peer; more are answered `overloaded` [default: 1024]
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Notifications kept while no controller is connected (clients never take them); 0 keeps none [default: 1000]
    #[arg(long)]
    pub notification_backlog: Option<usize>,
    /// A node counts as running once alive this long; 0 turns the wait off [default: 250ms]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub settle_time: Option<Duration>,
    /// A node that binds its port counts as running only once the port
    /// accepts, and role groups wait for each other
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub port_checks: Option<bool>,
    /// Time between SIGTERM and SIGKILL when stopping a node (more than 0) [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub stop_grace: Option<Duration>,
    /// Delay of the second revival in a row (the first is at once); doubles every third attempt (more than 0) [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub revive_delay: Option<Duration>,
    /// Longest revival delay (more than 0) [default: 60s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub revive_max_delay: Option<Duration>,
    /// A run this long resets the revival delay (more than 0) [default: 30s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub revive_reset_after: Option<Duration>,
    /// Failed revivals in a row before a node is given up as FAILED; 0 gives up at the first crash [default: 10]
    #[arg(long)]
    pub max_revivals: Option<u32>,
    /// Interval of the background cpu/memory sampling (more than 0) [default: 2s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub sample_interval: Option<Duration>,
    /// Delay between dials of the controller (more than 0) [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub reconnect_interval: Option<Duration>,
    /// Disconnect a peer that leaves more than this many bytes unread [default: 67108864]
    #[arg(long)]
    pub max_outbound_bytes: Option<usize>,
    /// TLS certificate (PEM); with --tls-key the agent speaks only TLS 1.3
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM): require and verify client certificates (mutual TLS); in
    /// connect mode, verify the controller against it
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Node channel (readiness and get_id_value through a script in each
    /// node): auto uses it with Zeek 8.0 and later [default: auto]
    #[arg(long, value_enum)]
    pub node_channel: Option<channel::Mode>,
    /// Node channel: TCP connect retry (more than 0) [default: 20ms]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_connect_interval: Option<Duration>,
    /// Node channel: ping retry until the join grace passes (more than 0) [default: 100ms]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_ping_interval: Option<Duration>,
    /// Node channel: ping retry after the join grace (more than 0) [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_slow_ping_interval: Option<Duration>,
    /// Node channel: a node connected but unanswered this long counts as running, degraded (more than 0) [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_join_grace: Option<Duration>,
    /// Node channel: with no connection this long after spawn, fall back to the settle time (more than 0) [default: 30s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_timeout: Option<Duration>,
    /// Node channel: a node's answer to a node_dispatch command (more than 0) [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_command_timeout: Option<Duration>,
    /// Node channel: relaunches in a row with a new port when a node's channel port was taken [default: 3]
    #[arg(long)]
    pub channel_port_retries: Option<u32>,
    /// Node channel: delay before reconnecting to a live node (more than 0) [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub channel_reconnect_delay: Option<Duration>,
    /// Before a new configuration stops anything, check each new node's scripts with `zeek -a` (Zeek only; `--check-scripts=false` skips it) [default: true]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub check_scripts: Option<bool>,
    /// Logging nodes rotate into the agent's queue and the agent archives, compresses and expires their logs (`--log-archive=false` leaves rotation and archiving to the site) [default: true]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub log_archive: Option<bool>,
    /// Archive directory: DIR/YYYY-MM-DD/STREAM.HH:MM:SS-HH:MM:SS.log.gz, as zeek-archiver [default: logs beside the cluster directory]
    #[arg(long)]
    pub archive_dir: Option<PathBuf>,
    /// How often logging nodes rotate their logs (more than 0) [default: 1h]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub log_rotation_interval: Option<Duration>,
    /// How often the log queue is looked at (more than 0) [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub archive_scan_interval: Option<Duration>,
    /// Archived days kept, today included; 0 keeps every day [default: 0]
    #[arg(long, value_name = "DAYS")]
    pub archive_expire_days: Option<u32>,
    /// Bytes of archive kept, the oldest files deleted first; 0 is no cap [default: 0]
    #[arg(long, value_name = "BYTES")]
    pub archive_max_bytes: Option<u64>,
    /// Warn when the archive's filesystem has less free space, in percent [default: 5]
    #[arg(long, value_name = "PERCENT")]
    pub min_disk_space: Option<f64>,
}

/// The environment variables, each with the flag it stands for. They beat
/// the `--config` file; flags beat them.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("ZEEK_AGENT_NAME", "--name"),
    ("ZEEK_AGENT_ADDR", "--listen-addr"),
    ("ZEEK_AGENT_PORT", "--listen-port"),
    ("ZEEK_CONTROLLER_ADDR", "--controller-addr"),
    ("ZEEK_CONTROLLER_PORT", "--controller-port"),
    ("ZEEK_BINARY", "--zeek-binary"),
];

/// The environment's settings as flags (`ZEEK_AGENT_PORT=2151` becomes
/// `--listen-port 2151`), to be parsed before the command line's own so that
/// flags beat them; an invalid value is named by its variable.
pub fn env_args(
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, ConfigError> {
    crate::settings::env_args::<Settings>(ENV_VARS, lookup)
}

impl Settings {
    /// Reads a TOML file whose keys are the flags' names, with underscores.
    pub fn from_file(path: &std::path::Path) -> Result<Settings, ConfigError> {
        crate::settings::from_file(path)
    }

    /// Lays these settings over `config`.
    pub fn apply(self, config: &mut Config) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { config.$field = v; } )* };
        }
        set!(
            name,
            listen_addr,
            listen_port,
            controller_port,
            cluster_dir,
            state_dir,
            zeek_binary,
            cluster_backend,
            version_timeout,
            request_timeout,
            heartbeat,
            handshake_timeout,
            max_frame_bytes,
            max_peers,
            max_in_flight,
            notification_backlog,
            settle_time,
            port_checks,
            stop_grace,
            revive_delay,
            revive_max_delay,
            revive_reset_after,
            max_revivals,
            sample_interval,
            reconnect_interval,
            max_outbound_bytes,
            node_channel,
            check_scripts,
            log_archive,
            log_rotation_interval,
            archive_scan_interval,
            archive_expire_days,
            archive_max_bytes,
            min_disk_space
        );
        if self.archive_dir.is_some() {
            config.archive_dir = self.archive_dir;
        }
        macro_rules! set_channel {
            ($($field:ident => $to:ident),*) => { $( if let Some(v) = self.$field { config.channel.$to = v; } )* };
        }
        set_channel!(
            channel_connect_interval => connect_interval,
            channel_ping_interval => ping_interval,
            channel_slow_ping_interval => slow_ping_interval,
            channel_join_grace => join_grace,
            channel_timeout => channel_timeout,
            channel_command_timeout => command_timeout,
            channel_port_retries => port_retries,
            channel_reconnect_delay => reconnect_delay
        );
        if let Some(no_listen) = self.no_listen {
            config.listen_in_connect_mode = !no_listen;
        }
        if let Some(addr) = self.controller_addr {
            config.controller_addr = Some(addr);
        }
        for (from, to) in [
            (self.tls_cert, &mut config.tls_cert),
            (self.tls_key, &mut config.tls_key),
            (self.tls_ca, &mut config.tls_ca),
        ] {
            if from.is_some() {
                *to = from;
            }
        }
    }
}

impl Config {
    /// Refuses values the agent cannot run with: a period or timeout of 0
    /// (a sampling interval of 0 would spin), a limit of 0. Settings where
    /// 0 means "off" (`heartbeat`, `settle_time`) and counts where 0 is a
    /// choice (`max_revivals`, `notification_backlog`) are not checked.
    pub fn check(&self) -> Result<(), ConfigError> {
        let periods = [
            ("version_timeout", self.version_timeout),
            ("request_timeout", self.request_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("stop_grace", self.stop_grace),
            ("revive_delay", self.revive_delay),
            ("revive_max_delay", self.revive_max_delay),
            ("revive_reset_after", self.revive_reset_after),
            ("sample_interval", self.sample_interval),
            ("reconnect_interval", self.reconnect_interval),
            ("channel_connect_interval", self.channel.connect_interval),
            ("channel_ping_interval", self.channel.ping_interval),
            (
                "channel_slow_ping_interval",
                self.channel.slow_ping_interval,
            ),
            ("channel_join_grace", self.channel.join_grace),
            ("channel_timeout", self.channel.channel_timeout),
            ("channel_command_timeout", self.channel.command_timeout),
            ("channel_reconnect_delay", self.channel.reconnect_delay),
            ("log_rotation_interval", self.log_rotation_interval),
            ("archive_scan_interval", self.archive_scan_interval),
        ];
        if let Some((key, _)) = periods.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero {
                key,
                hint: "; only heartbeat and settle_time take 0, to mean off",
            });
        }
        let limits = [
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_peers", self.max_peers),
            ("max_in_flight", self.max_in_flight),
            ("max_outbound_bytes", self.max_outbound_bytes),
        ];
        if let Some((key, _)) = limits.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::Zero { key, hint: "" });
        }
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
