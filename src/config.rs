//! The agent's settings, their documented defaults, and the TOML file form.
//!
//! Precedence: command-line flags, then environment variables, then the
//! `--config` file, then these defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::wire::codec::DEFAULT_MAX_FRAME_BYTES;

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
    /// Notifications kept while no peer is connected (oldest dropped first).
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
        }
    }
}

/// `agent-<hostname>`, or `agent` when the host name cannot be read.
pub fn default_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if host.is_empty() {
        "agent".to_owned()
    } else {
        format!("agent-{host}")
    }
}

/// A partial configuration: the `--config` file, or the flags and
/// environment. Durations are seconds (fractions allowed).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub name: Option<String>,
    pub listen_addr: Option<IpAddr>,
    pub listen_port: Option<u16>,
    pub controller_addr: Option<String>,
    pub controller_port: Option<u16>,
    pub listen_in_connect_mode: Option<bool>,
    pub cluster_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub zeek_binary: Option<PathBuf>,
    pub cluster_backend: Option<ClusterBackend>,
    pub version_timeout: Option<f64>,
    pub request_timeout: Option<f64>,
    pub heartbeat: Option<f64>,
    pub handshake_timeout: Option<f64>,
    pub max_frame_bytes: Option<usize>,
    pub max_peers: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub notification_backlog: Option<usize>,
    pub settle_time: Option<f64>,
    pub port_checks: Option<bool>,
    pub stop_grace: Option<f64>,
    pub revive_delay: Option<f64>,
    pub revive_max_delay: Option<f64>,
    pub revive_reset_after: Option<f64>,
    pub max_revivals: Option<u32>,
    pub sample_interval: Option<f64>,
    pub reconnect_interval: Option<f64>,
    pub max_outbound_bytes: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {value} is not a duration in seconds (0 or more)")]
    Duration { key: &'static str, value: f64 },
    #[error("{key} must be at least 1")]
    Zero { key: &'static str },
}

/// Seconds as a `Duration`, refusing negative, NaN and absurd values.
pub fn secs(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && (0.0..=1.0e9).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::Duration { key, value })
    }
}

impl Overrides {
    /// Reads a TOML file whose keys are the settings' names.
    pub fn from_file(path: &std::path::Path) -> Result<Overrides, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Lays these settings over `config`.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { config.$field = v; } )* };
        }
        macro_rules! set_secs {
            ($($field:ident),*) => {
                $( if let Some(v) = self.$field { config.$field = secs(stringify!($field), v)?; } )*
            };
        }
        macro_rules! set_nonzero {
            ($($field:ident),*) => {
                $( if let Some(v) = self.$field {
                    if v == 0 { return Err(ConfigError::Zero { key: stringify!($field) }); }
                    config.$field = v;
                } )*
            };
        }
        set!(
            name,
            listen_addr,
            listen_port,
            controller_port,
            listen_in_connect_mode,
            cluster_dir,
            state_dir,
            zeek_binary,
            cluster_backend,
            port_checks,
            max_revivals
        );
        if let Some(c) = self.controller_addr {
            config.controller_addr = Some(c);
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
        set_secs!(
            version_timeout,
            request_timeout,
            heartbeat,
            handshake_timeout,
            settle_time,
            stop_grace,
            revive_delay,
            revive_max_delay,
            revive_reset_after,
            sample_interval,
            reconnect_interval
        );
        set_nonzero!(
            max_frame_bytes,
            max_peers,
            max_in_flight,
            max_outbound_bytes
        );
        if let Some(v) = self.notification_backlog {
            config.notification_backlog = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::default();
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1");
        assert_eq!(c.listen_port, 2151);
        assert_eq!(c.controller_port, 2150);
        assert_eq!(c.cluster_dir, PathBuf::from("./cluster"));
        assert_eq!(c.state_dir, PathBuf::from("./state"));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(c.heartbeat, Duration::from_secs(5));
        assert!(c.name.starts_with("agent"));
    }

    #[test]
    fn the_example_file_names_every_setting_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/zeek-mgmt-agent.toml");
        let text = std::fs::read_to_string(path).expect("example file");
        let mut c = Config::default();
        Overrides::from_file(std::path::Path::new(path))
            .expect("parses")
            .apply(&mut c)
            .expect("applies");
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
        // Every key of the file form appears, set or commented out.
        let keys = format!("{:?}", Overrides::default());
        let keys = keys
            .trim_start_matches("Overrides { ")
            .trim_end_matches(" }")
            .split(", ")
            .filter_map(|kv| kv.split(':').next());
        for key in keys {
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
                "{key} is missing from {path}"
            );
        }
    }

    #[test]
    fn file_overrides_apply_and_typos_are_refused() {
        let o: Overrides =
            toml::from_str("name = \"a1\"\nlisten_port = 9\nsettle_time = 0.5\n").expect("toml");
        let mut c = Config::default();
        o.apply(&mut c).expect("apply");
        assert_eq!(c.name, "a1");
        assert_eq!(c.listen_port, 9);
        assert_eq!(c.settle_time, Duration::from_millis(500));
        assert!(toml::from_str::<Overrides>("listen_prot = 1").is_err());
        let bad = Overrides {
            request_timeout: Some(-1.0),
            ..Overrides::default()
        };
        assert!(bad.apply(&mut Config::default()).is_err());
        let zero = Overrides {
            max_peers: Some(0),
            ..Overrides::default()
        };
        assert!(zero.apply(&mut Config::default()).is_err());
    }
}
