//! `zeek-mgmt-client`: the operator's tool for zeek-mgmt-agent. Talks to
//! one or many agents at once and prints their answers as zeek-client does.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use zeek_mgmt_agent::client::{self, ini, ClientOptions, Outcome, DEFAULT_AGENT};

/// Operator client for zeek-mgmt-agent: deploy cluster configurations, list
/// nodes, watch notifications, on one or many agents at once.
///
/// Exit codes: 0 everything succeeded, 1 a result failed, 2 usage or
/// connection errors.
#[derive(Debug, Parser)]
#[command(name = "zeek-mgmt-client", version)]
struct Cli {
    /// Agent to talk to, HOST:PORT; repeat for several [default: the
    /// comma-separated list in ZEEK_MGMT_AGENTS, else 127.0.0.1:2151]
    #[arg(long = "agent", value_name = "HOST:PORT", global = true)]
    agents: Vec<String>,
    /// How long to wait for each answer, longer than the agent's own
    /// request timeout: 500ms, 1.5s, 2m, or a bare number of seconds
    #[arg(long, default_value = "20s", value_parser = parse_timeout, value_name = "DURATION", global = true)]
    timeout: Duration,
    /// CA (PEM) to verify agents against: speak TLS 1.3
    #[arg(long, value_name = "PEM", global = true)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for agents that require one
    #[arg(long, value_name = "PEM", global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM)
    #[arg(long, value_name = "PEM", global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every node of every agent (JSON, or --table)
    GetNodes {
        /// Print an aligned table instead of JSON
        #[arg(long)]
        table: bool,
    },
    /// Send a cluster configuration (INI as zeek-client reads it, or .json)
    /// to every agent it names; FILE `-` reads stdin
    #[command(alias = "set-config")]
    Deploy { file: String },
    /// Tell every agent that a controller welcomes it
    Welcome,
    /// Stop every node of every agent and clear their configurations
    Standby,
    /// Print every notification of every agent as one JSON object per line,
    /// reconnecting when an agent goes away, until interrupted
    Monitor,
}

/// A duration in the agent's syntax, more than 0.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match zeek_mgmt_agent::agent::config::parse_duration(text)? {
        d if d.is_zero() => Err("must be more than 0".to_owned()),
        d => Ok(d),
    }
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("zeek-mgmt-client: {msg}");
    ExitCode::from(2)
}

fn print(outcome: &Outcome) -> ExitCode {
    print!("{}", client::render(&outcome.json));
    report(outcome)
}

fn report(outcome: &Outcome) -> ExitCode {
    if outcome.unreachable {
        eprintln!("zeek-mgmt-client: some agents could not be reached; check the addresses (--agent, ZEEK_MGMT_AGENTS) and that the agents run");
    } else if outcome.failed {
        eprintln!("zeek-mgmt-client: some results failed; see \"errors\"");
    }
    ExitCode::from(outcome.exit_code())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut agents = cli.agents.clone();
    if agents.is_empty() {
        agents = std::env::var("ZEEK_MGMT_AGENTS")
            .ok()
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
    }
    if agents.is_empty() {
        agents.push(DEFAULT_AGENT.to_owned());
    }
    let agents = match agents
        .iter()
        .map(|a| client::check_agent_address(a))
        .collect::<Result<Vec<String>, client::Error>>()
    {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let tls = match (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (None, None, None) => None,
        (Some(ca), cert, key) => {
            let identity = cert.as_deref().zip(key.as_deref());
            match zeek_mgmt_agent::protocol::tls::client_config(ca, identity) {
                Ok(c) => Some(c),
                Err(e) => return usage_error(e),
            }
        }
        (None, _, _) => {
            return usage_error("--tls-cert and --tls-key need --tls-ca to verify the agents")
        }
    };
    let opts = ClientOptions {
        agents,
        timeout: cli.timeout,
        tls,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(format!("cannot start: {e}")),
    };
    runtime.block_on(async move {
        match cli.command {
            Command::GetNodes { table } => {
                let outcome = client::get_nodes(&opts).await;
                if table {
                    print!("{}", client::nodes_table(&outcome));
                    report(&outcome)
                } else {
                    print(&outcome)
                }
            }
            Command::Welcome => print(&client::welcome(&opts).await),
            Command::Standby => print(&client::standby(&opts).await),
            Command::Deploy { file } => {
                let (text, name) = if file == "-" {
                    let mut s = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                        return usage_error(format!("cannot read stdin: {e}"));
                    }
                    (s, "<stdin>".to_owned())
                } else {
                    match std::fs::read_to_string(&file) {
                        Ok(s) => (s, file.clone()),
                        Err(e) => return usage_error(format!("cannot read {file}: {e}")),
                    }
                };
                let parsed = match ini::parse(&text, &name) {
                    Ok(p) => p,
                    Err(e) => return usage_error(e),
                };
                for w in &parsed.warnings {
                    eprintln!("zeek-mgmt-client: warning: {w}");
                }
                match client::deploy(&opts, parsed).await {
                    Ok(outcome) => print(&outcome),
                    Err(e) => usage_error(e),
                }
            }
            Command::Monitor => {
                tokio::select! {
                    _ = client::monitor(&opts) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                ExitCode::SUCCESS
            }
        }
    })
}
