//! `zeek-mgmt-controller`: the controller daemon. Flags → `Config` →
//! `controller::start`, then run until SIGINT or SIGTERM and exit 0,
//! leaving the agents' nodes running.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zeek_mgmt_agent::controller::config::{self, Config, Settings};
use zeek_mgmt_agent::settings::ConfigError;

/// The controller of a Zeek cluster: Zeek's zeek-client drives it over
/// WebSocket (ws://ADDR:2149/v1/messages/json), and it drives one
/// zeek-mgmt-agent per host (agents dial in on port 2150, or it dials the
/// agents whose instance has a port). It keeps the staged and deployed
/// configurations in its state directory across restarts.
///
/// Durations: a number with a unit (500ms, 1.5s, 2m) or a bare number of
/// seconds. Precedence: flags, then environment, then --config FILE, then
/// defaults.
#[derive(Debug, Parser)]
#[command(name = "zeek-mgmt-controller", version, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    negations: config::Negations,
    /// TOML file with any of these settings (the flags' names, with
    /// underscores), and the local agent's in an `[agent]` table
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// With --local-agent: the agent's own flags, as zeek-mgmt-agent takes
    /// them (zeek-mgmt-agent --help lists them), after `--`
    #[arg(last = true, value_name = "AGENT FLAGS")]
    agent_flags: Vec<std::ffi::OsString>,
}

/// The local agent's own flags.
#[derive(Debug, Parser)]
#[command(
    name = "zeek-mgmt-controller --local-agent --",
    args_override_self = true
)]
struct AgentFlags {
    #[command(flatten)]
    settings: zeek_mgmt_agent::agent::config::Settings,
}

fn build_config(mut cli: Cli) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let mut table = None;
    if let Some(path) = cli.config.take() {
        let mut file = Settings::from_file(&path)?;
        table = file.agent.take();
        file.apply(&mut config);
    }
    cli.settings.apply(&mut config);
    cli.negations.apply(&mut config);
    let flags = (!cli.agent_flags.is_empty()).then(|| {
        let argv = std::iter::once(std::ffi::OsString::from(
            "zeek-mgmt-controller --local-agent --",
        ))
        .chain(cli.agent_flags);
        AgentFlags::parse_from(argv).settings
    });
    config.agent = config::local_agent(&config, table, flags)?;
    config.check()?;
    Ok(config)
}

/// The command line with the environment's settings laid under it.
fn command_line() -> Result<Cli, ConfigError> {
    let env = Settings::env_args(|var| std::env::var_os(var))?;
    Ok(zeek_mgmt_agent::settings::parse_command_line(env))
}

fn main() -> ExitCode {
    let _log_guard = zeek_mgmt_agent::daemon::init_logging();
    let config = match command_line().and_then(build_config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zeek-mgmt-controller: {e}");
            return ExitCode::from(2);
        }
    };
    let name = config.name.clone();
    let system = actix::System::new();
    system.block_on(async move {
        let handle = match zeek_mgmt_agent::controller::start(config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("zeek-mgmt-controller: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The ready line: tests and scripts read the bound addresses from it.
        let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "zeek-mgmt-controller {name} listening on {} (clients) and {} (agents)",
            show(handle.websocket_addr),
            show(handle.agent_addr)
        );
        // A second ready line with the metrics address, when served.
        if let Some(addr) = handle.metrics_addr {
            let _ = writeln!(
                out,
                "zeek-mgmt-controller {name} metrics on http://{addr}/metrics, service discovery on http://{addr}/sd"
            );
        }
        let _ = out.flush();
        drop(out);
        match zeek_mgmt_agent::daemon::wait_for_signal().await {
            Ok(sig) => {
                tracing::info!("{sig} received; the agents keep their nodes running");
                // The local agent stops as an agent of its own would.
                if let Some(agent) = &handle.local_agent {
                    agent.shutdown().await;
                }
            }
            Err(e) => {
                tracing::error!("cannot watch for signals: {e}");
                return ExitCode::FAILURE;
            }
        }
        ExitCode::SUCCESS
    })
}
