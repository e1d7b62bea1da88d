//! The controller's settings: flags, environment, TOML file, defaults, in
//! that order of precedence, each declared once in [`Settings`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::api::types::{Port, ZeromqPorts, DEFAULT_ZEROMQ_XPUB_PORT, DEFAULT_ZEROMQ_XSUB_PORT};
use crate::settings::{de, parse_duration, parse_port, ConfigError};

/// Every setting of the controller, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub websocket_addr: IpAddr,
    /// `None`: no WebSocket listener (port 0 in the settings).
    pub websocket_port: Option<u16>,
    pub listen_addr: IpAddr,
    /// `None`: no agent listener (port 0 in the settings).
    pub listen_port: Option<u16>,
    pub state_dir: PathBuf,
    pub request_timeout: Duration,
    pub auto_assign_ports: bool,
    pub auto_assign_metrics_ports: bool,
    /// The manager's ZeroMQ broker: XPUB and XSUB ports, given to every
    /// agent with the configuration.
    pub zeromq_xpub_port: u16,
    pub zeromq_xsub_port: u16,
    /// Between dials of an agent that listens.
    pub dial_interval: Duration,
    /// Heartbeat announced to agents.
    pub heartbeat: Duration,
    /// WebSocket clients connected at once; more wait to be accepted.
    pub max_clients: usize,
    /// Ping interval towards WebSocket clients (zero: none).
    pub websocket_ping: Duration,
    /// `wss://` with this certificate and key.
    pub websocket_tls_cert: Option<PathBuf>,
    pub websocket_tls_key: Option<PathBuf>,
    /// TLS 1.3 towards the agents: certificate and key for agents dialling
    /// in, CA to verify agents (both ways; mutual TLS for those dialling
    /// in).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    /// The agent port as configured, which nodes may not use (kept when
    /// the listener is off or on a free port).
    pub agent_port_setting: u16,
    /// An agent run inside the controller's process (`--local-agent`),
    /// with its settings.
    pub local_agent: Option<crate::agent::config::Config>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: default_name(),
            websocket_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            websocket_port: Some(2149),
            listen_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: Some(2150),
            state_dir: PathBuf::from("./controller-state"),
            request_timeout: Duration::from_secs(15),
            auto_assign_ports: true,
            auto_assign_metrics_ports: true,
            zeromq_xpub_port: DEFAULT_ZEROMQ_XPUB_PORT,
            zeromq_xsub_port: DEFAULT_ZEROMQ_XSUB_PORT,
            dial_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            max_clients: 256,
            websocket_ping: Duration::from_secs(5),
            websocket_tls_cert: None,
            websocket_tls_key: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            agent_port_setting: 2150,
            local_agent: None,
        }
    }
}

impl Config {
    /// The agent port nodes must not use.
    pub fn configured_agent_port(&self) -> u16 {
        self.agent_port_setting
    }

    /// The ports of the manager's ZeroMQ broker, for every configuration.
    pub fn zeromq_ports(&self) -> ZeromqPorts {
        ZeromqPorts {
            xpub_port: Port::tcp(self.zeromq_xpub_port),
            xsub_port: Port::tcp(self.zeromq_xsub_port),
        }
    }
}

/// `controller-<hostname>`.
pub fn default_name() -> String {
    crate::settings::host_name_or("controller")
}

/// Every setting, declared once: a flag (`--websocket-port`), a key of the
/// `--config` TOML file (`websocket_port`), and for some an environment
/// variable ([`ENV_VARS`]). The doc comments are `--help`'s text.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Controller name: the endpoint of its hello to agents [env: ZEEK_CONTROLLER_NAME] [default: controller-HOSTNAME]
    #[arg(long)]
    pub name: Option<String>,
    /// Address zeek-client connects to [env: ZEEK_CONTROLLER_WEBSOCKET_ADDR] [default: 127.0.0.1]
    #[arg(long)]
    pub websocket_addr: Option<IpAddr>,
    /// WebSocket port, `2149` or `2149/tcp`; 0 turns the listener off [env: ZEEK_CONTROLLER_WEBSOCKET_PORT] [default: 2149]
    #[arg(long, value_parser = parse_port)]
    #[serde(default, deserialize_with = "de::port")]
    pub websocket_port: Option<u16>,
    /// Address agents dial in to [env: ZEEK_CONTROLLER_ADDR] [default: 127.0.0.1]
    #[arg(long)]
    pub listen_addr: Option<IpAddr>,
    /// Agent port, `2150` or `2150/tcp`; 0 turns the listener off [env: ZEEK_CONTROLLER_PORT] [default: 2150]
    #[arg(long, value_parser = parse_port)]
    #[serde(default, deserialize_with = "de::port")]
    pub listen_port: Option<u16>,
    /// Directory for controller.json (staged, ready and deployed configurations) [env: ZEEK_CONTROLLER_STATE_DIR] [default: ./controller-state]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Answer a client `request timed out` after this long; below zeek-client's 20 s (more than 0) [default: 15s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub request_timeout: Option<Duration>,
    /// Give managers, loggers and proxies without a port one from 2200 on (`--auto-assign-ports=false` turns it off) [default: true]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub auto_assign_ports: Option<bool>,
    /// Give every node without a metrics port one from 9000 on, per host [default: true]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub auto_assign_metrics_ports: Option<bool>,
    /// Port of the manager's ZeroMQ broker XPUB socket, the same for every node of the cluster (Zeek's listen_xpub_endpoint); two clusters on one host need different ones [default: 5555]
    #[arg(long, value_parser = parse_port)]
    #[serde(default, deserialize_with = "de::port")]
    pub zeromq_xpub_port: Option<u16>,
    /// Port of the manager's ZeroMQ broker XSUB socket (Zeek's listen_xsub_endpoint) [default: 5556]
    #[arg(long, value_parser = parse_port)]
    #[serde(default, deserialize_with = "de::port")]
    pub zeromq_xsub_port: Option<u16>,
    /// The same as --auto-assign-ports=false
    #[arg(long, conflicts_with = "auto_assign_ports")]
    #[serde(skip)]
    pub no_auto_assign_ports: bool,
    /// The same as --auto-assign-metrics-ports=false
    #[arg(long, conflicts_with = "auto_assign_metrics_ports")]
    #[serde(skip)]
    pub no_auto_assign_metrics_ports: bool,
    /// Delay between dials of an agent that listens (more than 0) [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub dial_interval: Option<Duration>,
    /// Heartbeat announced to agents; 0 turns heartbeats off [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub heartbeat: Option<Duration>,
    /// WebSocket clients connected at once; more wait to be accepted (more than 0) [default: 256]
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Ping WebSocket clients this often and drop one silent for three intervals; 0 turns pings off [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    #[serde(default, deserialize_with = "de::duration")]
    pub websocket_ping: Option<Duration>,
    /// Certificate (PEM) for wss:// towards zeek-client (TLS 1.3); with --websocket-tls-key
    #[arg(long, value_name = "PEM")]
    pub websocket_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --websocket-tls-cert
    #[arg(long, value_name = "PEM")]
    pub websocket_tls_key: Option<PathBuf>,
    /// TLS certificate (PEM) towards agents; with --tls-key agents dialling in speak only TLS 1.3
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM): agents dialling in must present a certificate of it (mutual TLS), and dialled agents are verified against it
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Also run this host's agent inside the controller's process (one
    /// host, one process); its settings come from the `[agent]` table of
    /// the --config file, then --local-agent-config, then the agent's own
    /// flags after `--`
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub local_agent: Option<bool>,
    /// The local agent's settings: a TOML file as zeek-mgmt-agent --config reads it
    #[arg(long, value_name = "FILE")]
    pub local_agent_config: Option<PathBuf>,
    /// The local agent's settings in the controller's own file, under the
    /// agent's names
    #[arg(skip)]
    #[serde(default)]
    pub agent: Option<crate::agent::config::Settings>,
}

/// The environment variables, each with the flag it stands for.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("ZEEK_CONTROLLER_NAME", "--name"),
    ("ZEEK_CONTROLLER_WEBSOCKET_ADDR", "--websocket-addr"),
    ("ZEEK_CONTROLLER_WEBSOCKET_PORT", "--websocket-port"),
    ("ZEEK_CONTROLLER_ADDR", "--listen-addr"),
    ("ZEEK_CONTROLLER_PORT", "--listen-port"),
    ("ZEEK_CONTROLLER_STATE_DIR", "--state-dir"),
];

/// The environment's settings as flags, laid under the command line.
pub fn env_args(
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, ConfigError> {
    crate::settings::env_args::<Settings>(ENV_VARS, lookup)
}

/// What turns the local agent on and sets it up, gathered from every
/// source before the controller's own settings are applied.
#[derive(Debug, Default)]
pub struct LocalAgentSettings {
    enabled: Option<bool>,
    file: Option<PathBuf>,
    /// `[agent]` tables, in order of precedence (lowest first).
    tables: Vec<crate::agent::config::Settings>,
}

impl LocalAgentSettings {
    /// Takes the local agent's settings out of `s` (the file's first, then
    /// the command line's: later ones win).
    pub fn take_from(&mut self, s: &mut Settings) {
        if let Some(e) = s.local_agent.take() {
            self.enabled = Some(e);
        }
        if let Some(f) = s.local_agent_config.take() {
            self.file = Some(f);
        }
        if let Some(t) = s.agent.take() {
            self.tables.push(t);
        }
    }

    /// The local agent's configuration when it is on: the agent's
    /// defaults, the `[agent]` tables, the --local-agent-config file, then
    /// `flags` (the agent's own flags, parsed). The local agent neither
    /// listens nor dials: the controller reaches it in process.
    pub fn resolve(
        self,
        flags: Option<crate::agent::config::Settings>,
    ) -> Result<Option<crate::agent::config::Config>, ConfigError> {
        if self.enabled != Some(true) {
            return Ok(None);
        }
        let mut config = crate::agent::config::Config::default();
        for t in self.tables {
            t.apply(&mut config);
        }
        if let Some(path) = &self.file {
            crate::agent::config::Settings::from_file(path)?.apply(&mut config);
        }
        if let Some(f) = flags {
            f.apply(&mut config);
        }
        config.controller_addr = None;
        config.check()?;
        Ok(Some(config))
    }
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
            websocket_addr,
            listen_addr,
            state_dir,
            request_timeout,
            auto_assign_ports,
            auto_assign_metrics_ports,
            zeromq_xpub_port,
            zeromq_xsub_port,
            dial_interval,
            heartbeat,
            max_clients,
            websocket_ping
        );
        if self.no_auto_assign_ports {
            config.auto_assign_ports = false;
        }
        if self.no_auto_assign_metrics_ports {
            config.auto_assign_metrics_ports = false;
        }
        for (from, to) in [
            (self.websocket_tls_cert, &mut config.websocket_tls_cert),
            (self.websocket_tls_key, &mut config.websocket_tls_key),
            (self.tls_cert, &mut config.tls_cert),
            (self.tls_key, &mut config.tls_key),
            (self.tls_ca, &mut config.tls_ca),
        ] {
            if from.is_some() {
                *to = from;
            }
        }
        if let Some(p) = self.websocket_port {
            config.websocket_port = (p != 0).then_some(p);
        }
        if let Some(p) = self.listen_port {
            config.listen_port = (p != 0).then_some(p);
            config.agent_port_setting = p;
        }
    }
}

impl Config {
    /// Refuses a period of 0 where it cannot mean "off".
    pub fn check(&self) -> Result<(), ConfigError> {
        for (key, d) in [
            ("request_timeout", self.request_timeout),
            ("dial_interval", self.dial_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero {
                    key,
                    hint: "; only heartbeat takes 0, to mean off",
                });
            }
        }
        if self.max_clients == 0 {
            return Err(ConfigError::Zero {
                key: "max_clients",
                hint: "",
            });
        }
        for (key, port) in [
            ("zeromq_xpub_port", self.zeromq_xpub_port),
            ("zeromq_xsub_port", self.zeromq_xsub_port),
        ] {
            if port == 0 {
                return Err(ConfigError::Zero { key, hint: "" });
            }
        }
        if self.zeromq_xpub_port == self.zeromq_xsub_port {
            return Err(ConfigError::Usage(
                "--zeromq-xpub-port and --zeromq-xsub-port must differ",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_zero_turns_a_listener_off() {
        let file: Settings = toml::from_str(
            "websocket_port = \"2249/tcp\"\nlisten_port = 0\nrequest_timeout = \"3s\"",
        )
        .expect("toml");
        let mut c = Config::default();
        file.apply(&mut c);
        assert_eq!(c.websocket_port, Some(2249));
        assert_eq!(c.listen_port, None);
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        let flags = Settings {
            websocket_port: Some(0),
            ..Settings::default()
        };
        flags.apply(&mut c);
        assert_eq!(c.websocket_port, None);
        let zero = Config {
            request_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert!(zero
            .check()
            .expect_err("zero")
            .to_string()
            .contains("request_timeout (--request-timeout) must be more than 0"));
    }

    #[test]
    fn auto_assignment_is_turned_off_either_way() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        for args in [
            &[
                "c",
                "--no-auto-assign-ports",
                "--no-auto-assign-metrics-ports",
            ][..],
            &[
                "c",
                "--auto-assign-ports=false",
                "--auto-assign-metrics-ports=false",
            ][..],
        ] {
            let cli = <Cli as clap::Parser>::try_parse_from(args).expect("parses");
            let mut c = Config::default();
            cli.settings.apply(&mut c);
            assert!(
                !c.auto_assign_ports && !c.auto_assign_metrics_ports,
                "{args:?}"
            );
        }
        let both = <Cli as clap::Parser>::try_parse_from([
            "c",
            "--no-auto-assign-ports",
            "--auto-assign-ports",
        ]);
        assert!(both.is_err());
    }

    #[test]
    fn the_contrib_file_holds_every_setting_with_its_default() {
        let text = include_str!("../../contrib/zeek-mgmt-controller.toml");
        let file: Settings = toml::from_str(text).expect("contrib TOML");
        let mut c = Config::default();
        file.apply(&mut c);
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn an_invalid_environment_value_names_its_variable() {
        let e = env_args(|v| (v == "ZEEK_CONTROLLER_WEBSOCKET_PORT").then(|| "http".into()))
            .expect_err("invalid");
        assert!(
            e.to_string()
                .starts_with("ZEEK_CONTROLLER_WEBSOCKET_PORT: invalid value \"http\""),
            "{e}"
        );
        let ok = env_args(|v| (v == "ZEEK_CONTROLLER_PORT").then(|| "2250".into())).expect("valid");
        assert_eq!(ok, ["--listen-port", "2250"]);
    }
}
