//! The controller's settings: flags, environment, TOML file, defaults, in
//! that order of precedence, each declared once in [`Settings`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::api::types::{Port, ZeromqPorts, DEFAULT_ZEROMQ_XPUB_PORT, DEFAULT_ZEROMQ_XSUB_PORT};
use crate::settings::ConfigError;

crate::settings::declare_settings! {
    /// Every setting of the controller, resolved.
    pub struct Config;
    /// The settings one source gives (flags, environment, the `--config`
    /// file); a setting left `None` keeps what lies below it.
    pub struct Settings;

    /// Controller name: the endpoint of its hello to agents
    name: String = default_name(), shown "controller-<hostname>", env "ZEEK_CONTROLLER_NAME";
    /// Address zeek-client connects to
    websocket_addr: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), env "ZEEK_CONTROLLER_WEBSOCKET_ADDR";
    /// WebSocket port, `2149` or `2149/tcp`; 0 picks a free one
    websocket_port: u16 = 2149, env "ZEEK_CONTROLLER_WEBSOCKET_PORT";
    /// Do not accept zeek-client (an embedding that drives the controller itself)
    no_websocket: bool = false;
    /// Address agents dial in to
    listen_addr: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST), env "ZEEK_CONTROLLER_ADDR";
    /// Agent port, `2150` or `2150/tcp`; 0 picks a free one. Nodes may not use it
    listen_port: u16 = 2150, env "ZEEK_CONTROLLER_PORT";
    /// Do not accept agents dialling in: the controller dials every agent, each an instance with a port
    no_listen: bool = false;
    /// Directory for controller.json (staged, ready and deployed configurations)
    state_dir: PathBuf = PathBuf::from("./controller-state"), env "ZEEK_CONTROLLER_STATE_DIR";
    /// Answer a client `request timed out` after this long; below zeek-client's 20 s
    request_timeout: Duration = Duration::from_secs(15), zero Refused;
    /// Give managers, loggers and proxies without a port one from 2200 on (`--auto-assign-ports=false` turns it off)
    auto_assign_ports: bool = true;
    /// Give every node without a metrics port one from 9000 on, per host
    auto_assign_metrics_ports: bool = true;
    /// Port of the manager's ZeroMQ broker XPUB socket, the same for every node of the cluster (Zeek's listen_xpub_endpoint); two clusters on one host need different ones
    zeromq_xpub_port: u16 = DEFAULT_ZEROMQ_XPUB_PORT, zero Refused;
    /// Port of the manager's ZeroMQ broker XSUB socket (Zeek's listen_xsub_endpoint)
    zeromq_xsub_port: u16 = DEFAULT_ZEROMQ_XSUB_PORT, zero Refused;
    /// Delay between dials of an agent that listens
    dial_interval: Duration = Duration::from_secs(1), zero Refused;
    /// Heartbeat announced to agents
    heartbeat: Duration = Duration::from_secs(5), zero Off;
    /// WebSocket clients connected at once; more wait to be accepted
    max_clients: usize = 256, zero Refused;
    /// Ping WebSocket clients this often and drop one silent for three intervals
    websocket_ping: Duration = Duration::from_secs(5), zero Off;
    /// Certificate (PEM) for wss:// towards zeek-client (TLS 1.3); with --websocket-tls-key
    websocket_tls_cert: Option<PathBuf> = None;
    /// Private key (PEM) of --websocket-tls-cert
    websocket_tls_key: Option<PathBuf> = None;
    /// TLS certificate (PEM) towards agents; with --tls-key agents dialling in speak only TLS 1.3
    tls_cert: Option<PathBuf> = None;
    /// TLS private key (PEM) of --tls-cert
    tls_key: Option<PathBuf> = None;
    /// CA (PEM): agents dialling in must present a certificate of it (mutual TLS), and dialled agents are verified against it
    tls_ca: Option<PathBuf> = None;
    /// Serve Prometheus metrics (/metrics) and the service discovery of every node's metrics port (/sd) on this address, for example 127.0.0.1:9102; port 0 picks a free one. Off without it
    metrics_addr: Option<std::net::SocketAddr> = None, env "ZEEK_CONTROLLER_METRICS_ADDR";
    /// Also run this host's agent inside the controller's process (one host, one process); its settings come from the `[agent]` table of the --config file, then --local-agent-config, then the agent's own flags after `--`
    local_agent: bool = false;
    /// The local agent's settings: a TOML file as zeek-mgmt-agent --config reads it
    local_agent_config: Option<PathBuf> = None;

    @tables {
        /// The local agent's settings in the controller's own file, under
        /// the agent's names.
        agent: crate::agent::config::Settings;
    }
    @extra {
        /// The local agent's settings, resolved, when `local_agent` is on.
        agent: Option<crate::agent::config::Config> = None;
    }
}

impl Config {
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

/// The negations of two switches, flags only (`--no-auto-assign-ports`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Negations {
    /// The same as --auto-assign-ports=false
    #[arg(long, conflicts_with = "auto_assign_ports")]
    pub no_auto_assign_ports: bool,
    /// The same as --auto-assign-metrics-ports=false
    #[arg(long, conflicts_with = "auto_assign_metrics_ports")]
    pub no_auto_assign_metrics_ports: bool,
}

impl Negations {
    /// Lays these over `config`.
    pub fn apply(&self, config: &mut Config) {
        if self.no_auto_assign_ports {
            config.auto_assign_ports = false;
        }
        if self.no_auto_assign_metrics_ports {
            config.auto_assign_metrics_ports = false;
        }
    }
}

/// The local agent's configuration when `config.local_agent` is on: the
/// agent's defaults, the `[agent]` table of the controller's file, the
/// `--local-agent-config` file, then `flags` (the agent's own flags,
/// parsed). The local agent neither listens nor dials: the controller
/// reaches it in process.
pub fn local_agent(
    config: &Config,
    table: Option<crate::agent::config::Settings>,
    flags: Option<crate::agent::config::Settings>,
) -> Result<Option<crate::agent::config::Config>, ConfigError> {
    if !config.local_agent {
        if flags.is_some() {
            return Err(ConfigError::Usage(
                "agent flags after `--` need --local-agent",
            ));
        }
        return Ok(None);
    }
    let mut agent = crate::agent::config::Config::default();
    if let Some(t) = table {
        t.apply(&mut agent);
    }
    if let Some(path) = &config.local_agent_config {
        crate::agent::config::Settings::from_file(path)?.apply(&mut agent);
    }
    if let Some(f) = flags {
        f.apply(&mut agent);
    }
    agent.controller_addr = None;
    agent.check()?;
    Ok(Some(agent))
}

impl Config {
    /// Refuses 0 where it cannot run, and one port for both ZeroMQ sockets.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_zero()?;
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
    fn flags_beat_the_file_and_a_listener_is_turned_off_by_its_own_switch() {
        let file: Settings = toml::from_str(
            "websocket_port = \"2249/tcp\"\nlisten_port = 0\nno_listen = true\nrequest_timeout = \"3s\"",
        )
        .expect("toml");
        let mut c = Config::default();
        file.apply(&mut c);
        assert_eq!(c.websocket_port, 2249);
        assert_eq!((c.listen_port, c.no_listen), (0, true));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        let flags = Settings {
            websocket_port: Some(0),
            no_listen: Some(false),
            ..Settings::default()
        };
        flags.apply(&mut c);
        assert_eq!((c.websocket_port, c.no_listen), (0, false));
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
            #[command(flatten)]
            negations: Negations,
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
            cli.negations.apply(&mut c);
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
    fn the_example_file_names_every_setting_with_its_default() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/zeek-mgmt-controller.toml"
        );
        crate::settings::tests::example_file_agrees(path, &Settings::specs(), |file| {
            Ok(Settings::from_file(file)?.keeps_defaults())
        });
    }

    #[test]
    fn the_readme_table_lists_every_setting_with_its_variable_and_default() {
        crate::settings::tests::readme_table_agrees(
            "### The controller's settings",
            &Settings::specs(),
        );
    }

    #[test]
    fn the_defaults_help_shows_are_the_defaults() {
        crate::settings::tests::shown_defaults_parse_back(
            &Settings::specs(),
            Settings::keeps_defaults,
        );
    }

    #[test]
    fn the_local_agent_takes_the_table_then_its_file_then_its_flags() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, "stop_grace = \"3s\"\nsettle_time = \"1s\"\n").expect("write");
        let mut c: Settings = toml::from_str(&format!(
            "local_agent = true\nlocal_agent_config = {:?}\n[agent]\nname = \"a-local\"\nstop_grace = \"2s\"\ncontroller_addr = \"10.0.0.1\"\n",
            file.display().to_string()
        ))
        .expect("toml");
        let table = c.agent.take();
        let mut config = Config::default();
        c.apply(&mut config);
        let flags = crate::agent::config::Settings {
            settle_time: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        let agent = local_agent(&config, table, Some(flags))
            .expect("valid")
            .expect("on");
        assert_eq!(agent.name, "a-local");
        assert_eq!(agent.stop_grace, Duration::from_secs(3));
        assert_eq!(agent.settle_time, Duration::from_millis(10));
        assert_eq!(agent.controller_addr, None, "the local agent never dials");
        let off = Config::default();
        assert!(local_agent(&off, None, None).expect("off").is_none());
        let e = local_agent(&off, None, Some(Default::default())).expect_err("flags without it");
        assert!(e.to_string().contains("need --local-agent"), "{e}");
    }

    #[test]
    fn an_invalid_environment_value_names_its_variable() {
        let e =
            Settings::env_args(|v| (v == "ZEEK_CONTROLLER_WEBSOCKET_PORT").then(|| "http".into()))
                .expect_err("invalid");
        assert!(
            e.to_string()
                .starts_with("ZEEK_CONTROLLER_WEBSOCKET_PORT: invalid value \"http\""),
            "{e}"
        );
        let ok = Settings::env_args(|v| (v == "ZEEK_CONTROLLER_PORT").then(|| "2250".into()))
            .expect("valid");
        assert_eq!(ok, ["--listen-port", "2250"]);
    }
}
