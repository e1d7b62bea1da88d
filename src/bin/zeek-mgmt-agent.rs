//! `zeek-mgmt-agent`: the host daemon. Flags → `Config` → `AgentBuilder`,
//! then run until SIGINT or SIGTERM, stop every node, exit 0.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zeek_mgmt_agent::agent::config::{Config, Settings};
use zeek_mgmt_agent::AgentBuilder;

/// A host agent for Zeek's cluster Management framework: it takes cluster
/// configurations from a controller (agent API v1, CBOR over TCP), launches
/// and supervises this host's Zeek nodes, and reports their state.
///
/// Durations: a number with a unit (500ms, 1.5s, 2m) or a bare number of
/// seconds, in flags, environment and file alike. A period or timeout must
/// be more than 0; only --heartbeat and --settle-time take 0, to mean off.
/// Precedence: flags, then environment, then --config FILE, then defaults.
#[derive(Debug, Parser)]
#[command(name = "zeek-mgmt-agent", version, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    /// TOML file with any of these settings (the flags' names, with underscores)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn build_config(mut cli: Cli) -> Result<Config, zeek_mgmt_agent::Error> {
    let mut config = Config::default();
    if let Some(path) = cli.config.take() {
        Settings::from_file(&path)?.apply(&mut config);
    }
    cli.settings.apply(&mut config);
    config.check()?;
    Ok(config)
}

/// The command line with the environment's settings laid under it.
fn command_line() -> Result<Cli, zeek_mgmt_agent::Error> {
    let env = Settings::env_args(|var| std::env::var_os(var))?;
    Ok(zeek_mgmt_agent::settings::parse_command_line(env))
}

fn main() -> ExitCode {
    let _log_guard = zeek_mgmt_agent::daemon::init_logging();
    let config = match command_line().and_then(build_config) {
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
        // A second ready line with the metrics address, when served.
        if let Some(addr) = agent.metrics_addr() {
            let _ = writeln!(
                out,
                "zeek-mgmt-agent {} metrics on http://{addr}/metrics",
                agent.name()
            );
        }
        let _ = out.flush();
        drop(out);
        match zeek_mgmt_agent::daemon::wait_for_signal().await {
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
