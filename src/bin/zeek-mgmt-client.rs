//! `zeek-mgmt-client`: the operator's tool for zeek-mgmt-agent. Talks to a
//! controller as Zeek's zeek-client does (`--controller`), or straight to
//! one or many agents at once, and prints the answers as zeek-client does.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use zeek_mgmt_agent::api::types::Port;
use zeek_mgmt_agent::client::{self, controller, ini, ClientOptions, Outcome, DEFAULT_AGENT};
use zeek_mgmt_agent::settings::parse_port;

#[path = "zeek-mgmt-client/with_controller.rs"]
mod with_controller;
use with_controller::with_controller;

/// Operator client for zeek-mgmt-agent.
///
/// With --controller (or ZEEK_MGMT_CONTROLLER) it drives a controller
/// (zeek-mgmt-controller, or Zeek's own) over its WebSocket API, exactly as
/// Zeek's zeek-client does, and prints what zeek-client prints: use it for
/// a cluster the controller manages (get-instances, stage-config, deploy,
/// deploy-config, get-config, get-nodes, get-id-value, restart,
/// test-timeout, monitor). Without it, it talks straight to one or many
/// agents (get-nodes, deploy FILE, welcome, standby, monitor): for a
/// cluster without a controller, or to look at agents behind one.
///
/// Exit codes: 0 everything succeeded, 1 a result failed (or, with a
/// controller, any error, as zeek-client), 2 usage or connection errors
/// with agents.
#[derive(Debug, Parser)]
#[command(name = "zeek-mgmt-client", version)]
struct Cli {
    /// Agent to talk to, HOST:PORT; repeat for several [default: the
    /// comma-separated list in ZEEK_MGMT_AGENTS, else 127.0.0.1:2151]
    #[arg(long = "agent", value_name = "HOST:PORT", global = true)]
    agents: Vec<String>,
    /// Controller to talk to, HOST:PORT (its WebSocket API, as for
    /// zeek-client; either part may be left out: 127.0.0.1, 2149)
    /// [env: ZEEK_MGMT_CONTROLLER]; with --tls-ca, over TLS
    #[arg(long, value_name = "HOST:PORT", global = true)]
    controller: Option<String>,
    /// How long to wait for each answer, longer than the agent's own
    /// request timeout: 500ms, 1.5s, 2m, or a bare number of seconds
    /// [default: 20s; with a controller, zeek-client's
    /// client.request_timeout_secs]
    #[arg(long, value_parser = parse_timeout, value_name = "DURATION", global = true)]
    timeout: Option<Duration>,
    /// With a controller: zeek-client's config file (its sections
    /// [client], [controller], [ssl]) [env: ZEEK_CLIENT_CONFIG_FILE]
    #[arg(short = 'c', long = "configfile", value_name = "FILE", global = true)]
    configfile: Option<PathBuf>,
    /// With a controller: one of zeek-client's settings, as zeek-client
    /// takes it (client.request_timeout_secs, client.pretty_json,
    /// controller.host, controller.port, ssl.enable, ssl.cafile, ...);
    /// repeat for several; see show-settings [env:
    /// ZEEK_CLIENT_CONFIG_SETTINGS, space-separated]
    #[arg(long = "set", value_name = "SECTION.KEY=VAL", global = true)]
    set: Vec<String>,
    /// As zeek-client's: suppress informational output on stderr (this
    /// client prints none)
    #[arg(short = 'q', long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// As zeek-client's: more informational output (sets
    /// client.verbosity; this client prints none)
    #[arg(short = 'v', long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// CA (PEM) to verify agents (or the controller, wss://) against:
    /// speak TLS 1.3
    #[arg(long, value_name = "PEM", global = true)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for agents (or a controller) that require one
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
    /// List every node (JSON; with agents, or --table)
    GetNodes {
        /// Print an aligned table instead of JSON
        #[arg(long)]
        table: bool,
    },
    /// With agents: send a cluster configuration (zeek-client's INI format,
    /// or .json) to every agent it names; FILE `-` reads stdin. With a
    /// controller: deploy its staged configuration (no FILE)
    #[command(alias = "set-config")]
    Deploy {
        file: Option<String>,
        /// With agents: the port of the manager's ZeroMQ broker XPUB
        /// socket, for every agent (two clusters on one host need their
        /// own) [default: 5555]
        #[arg(long, value_parser = parse_port, value_name = "PORT")]
        zeromq_xpub_port: Option<u16>,
        /// With agents: the port of its XSUB socket [default: 5556]
        #[arg(long, value_parser = parse_port, value_name = "PORT")]
        zeromq_xsub_port: Option<u16>,
    },
    /// Check a cluster file's scripts on every agent it names (Zeek's
    /// parse-only mode, as a deployment does first), deploying nothing;
    /// exit 1 if any node fails. With a controller, through it (INI, read
    /// as stage-config reads it)
    Check { file: String },
    /// Controller: list the connected agents
    GetInstances,
    /// Controller: stage a cluster configuration (INI, read and refused as zeek-client does)
    StageConfig { file: String },
    /// Controller: stage, then deploy, a cluster configuration (INI, as stage-config)
    DeployConfig { file: String },
    /// Controller: print the staged (default) or deployed configuration
    GetConfig {
        /// The deployed configuration
        #[arg(long, conflicts_with = "staged")]
        deployed: bool,
        /// The staged configuration (the default)
        #[arg(long)]
        staged: bool,
        /// As JSON instead of INI
        #[arg(long)]
        as_json: bool,
        /// Write it to FILE instead of stdout
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Controller: the value of a global identifier on nodes (all by default)
    GetIdValue { id: String, nodes: Vec<String> },
    /// Controller: restart nodes (all by default)
    Restart { nodes: Vec<String> },
    /// Packets received, dropped and seen on the link by each worker (or
    /// the nodes named) since it started, and the drop rate, asked of the
    /// nodes themselves (JSON; or --table)
    Netstats {
        nodes: Vec<String>,
        /// Print an aligned table instead of JSON
        #[arg(long)]
        table: bool,
    },
    /// The records the agents keep of their nodes' crashes (every node's,
    /// or the nodes named), newest first: when, the exit, the output
    /// tails, reporter.log, the core file (JSON; or --table)
    Crashes {
        nodes: Vec<String>,
        /// One line per crash instead of JSON
        #[arg(long)]
        table: bool,
    },
    /// Controller: print zeek-client's own settings as they stand (its
    /// defaults, the config file, ZEEK_CLIENT_CONFIG_SETTINGS, --set)
    ShowSettings,
    /// Controller: a request it answers only at its deadline
    TestTimeout {
        /// Keep state, so that the deadline answers
        #[arg(long)]
        with_state: bool,
    },
    /// Print a ZeekControl node.cfg (with the networks.cfg beside it) as
    /// this project's cluster file: workers expanded, each host an
    /// instance; deploy-config, deploy and check take node.cfg as it is
    Convert {
        file: String,
        /// Map a node.cfg host to the agent that runs it (default:
        /// agent-HOST, an agent's default name there)
        #[arg(long = "instance", value_name = "HOST=AGENT")]
        instances: Vec<String>,
    },
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

/// Reads a cluster file (`-`: stdin), printing its warnings; on failure the
/// exit code of a usage error, said on stderr.
fn read_cluster_file(file: &str) -> Result<ini::ClusterFile, ExitCode> {
    if client::nodecfg::is_node_cfg(file) {
        let converted = client::nodecfg::read(file, &Default::default()).map_err(usage_error)?;
        for w in &converted.file.warnings {
            eprintln!("zeek-mgmt-client: warning: {w}");
        }
        return Ok(converted.file);
    }
    let (text, name) = if file == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            return Err(usage_error(format!("cannot read stdin: {e}")));
        }
        (s, "<stdin>".to_owned())
    } else {
        match std::fs::read_to_string(file) {
            Ok(s) => (s, file.to_owned()),
            Err(e) => return Err(usage_error(format!("cannot read {file}: {e}"))),
        }
    };
    let parsed = ini::parse(&text, &name).map_err(usage_error)?;
    for w in &parsed.warnings {
        eprintln!("zeek-mgmt-client: warning: {w}");
    }
    Ok(parsed)
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("zeek-mgmt-client: {msg}");
    ExitCode::from(2)
}

fn print(outcome: &Outcome) -> ExitCode {
    print!("{}", client::render(&outcome.json));
    report(outcome)
}

/// An outcome as JSON, or as `table` renders it, to print as a
/// controller's answer is.
fn printed(outcome: &Outcome, table: Option<fn(&Outcome) -> String>) -> controller::Printed {
    controller::Printed {
        stdout: match table {
            Some(table) => table(outcome),
            None => client::render(&outcome.json),
        },
        stderr: String::new(),
        code: outcome.exit_code(),
    }
}

/// `convert`: a node.cfg printed as our INI, with what was read aside.
fn convert(file: &str, instances: &[String]) -> ExitCode {
    let mut map = client::nodecfg::HostMap::new();
    for item in instances {
        let Some((host, agent)) = item.split_once('=') else {
            return usage_error(format!("--instance {item:?}: expected HOST=AGENT"));
        };
        map.insert(host.to_owned(), agent.to_owned());
    }
    match client::nodecfg::read(file, &map) {
        Ok(c) => {
            for w in &c.file.warnings {
                eprintln!("zeek-mgmt-client: warning: {w}");
            }
            print!("{}", client::nodecfg::ini(&c));
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(e),
    }
}

/// Prints an outcome as JSON, or with `table`.
fn print_with(outcome: &Outcome, table: Option<fn(&Outcome) -> String>) -> ExitCode {
    match table {
        Some(table) => {
            print!("{}", table(outcome));
            report(outcome)
        }
        None => print(outcome),
    }
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
    // Reads a file and prints it: no agent, no controller.
    if let Command::Convert { file, instances } = &cli.command {
        return convert(file, instances);
    }
    let controller = cli
        .controller
        .clone()
        .or_else(|| std::env::var("ZEEK_MGMT_CONTROLLER").ok());
    // zeek-client's settings make it a controller command too.
    let with_settings = cli.configfile.is_some()
        || !cli.set.is_empty()
        || matches!(cli.command, Command::ShowSettings);
    let settings = if controller.is_some() || with_settings {
        match client_settings(&cli, controller.as_deref()) {
            Ok(s) => Some(s),
            Err(code) => return code,
        }
    } else {
        None
    };
    if matches!(cli.command, Command::ShowSettings) {
        if let Some(s) = &settings {
            print!("{}", s.show());
        }
        return ExitCode::SUCCESS;
    }
    let timeout = match (cli.timeout, &settings) {
        (Some(t), _) => t,
        (None, Some(s)) => match s.request_timeout() {
            Ok(t) => t,
            Err(e) => return emit(&controller::Printed::error(&e)),
        },
        (None, None) => Duration::from_secs(20),
    };
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
    // zeek-client's ssl.* settings stand in for --tls-* with a controller.
    let (ca, cert, key) = match ssl_files(&cli, settings.as_ref()) {
        Ok(files) => files,
        Err(e) => return usage_error(e),
    };
    let tls = match (&ca, &cert, &key) {
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
        timeout,
        tls,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(format!("cannot start: {e}")),
    };
    if let Some(settings) = settings {
        let addr = match controller::controller_address(&settings.address()) {
            Ok(a) => a,
            Err(e) => return usage_error(e),
        };
        let pretty = settings.flag("client", "pretty_json").unwrap_or(true);
        return runtime.block_on(with_controller(&addr, cli.command, &opts, pretty));
    }
    runtime.block_on(async move {
        match cli.command {
            Command::GetNodes { table } => {
                let outcome = client::get_nodes(&opts).await;
                if table {
                    // Each worker's drop rate, asked of the workers.
                    let stats = client::netstats::with_agents(&opts, &[]).await;
                    let drops = client::netstats::drop_rates(&stats);
                    print!("{}", client::nodes_table(&outcome, &drops));
                    report(&outcome)
                } else {
                    print(&outcome)
                }
            }
            Command::Netstats { nodes, table } => {
                let outcome = client::netstats::with_agents(&opts, &nodes).await;
                print_with(&outcome, table.then_some(client::netstats::table))
            }
            Command::Crashes { nodes, table } => {
                let outcome = client::crashes::with_agents(&opts, &nodes).await;
                print_with(&outcome, table.then_some(client::crashes::table))
            }
            Command::Convert { .. } => ExitCode::SUCCESS,
            Command::Welcome => print(&client::welcome(&opts).await),
            Command::Standby => print(&client::standby(&opts).await),
            Command::Deploy { file: None, .. } => {
                usage_error("deploy needs a cluster file when talking to agents")
            }
            Command::GetInstances
            | Command::ShowSettings
            | Command::StageConfig { .. }
            | Command::DeployConfig { .. }
            | Command::GetConfig { .. }
            | Command::GetIdValue { .. }
            | Command::Restart { .. }
            | Command::TestTimeout { .. } => {
                usage_error("this command needs a controller: --controller HOST:PORT")
            }
            Command::Deploy {
                file: Some(file),
                zeromq_xpub_port,
                zeromq_xsub_port,
            } => {
                let mut parsed = match read_cluster_file(&file) {
                    Ok(p) => p,
                    Err(code) => return code,
                };
                if zeromq_xpub_port.is_some() || zeromq_xsub_port.is_some() {
                    let mut ports = parsed.zeromq.unwrap_or_default();
                    if let Some(p) = zeromq_xpub_port {
                        ports.xpub_port = Port::tcp(p);
                    }
                    if let Some(p) = zeromq_xsub_port {
                        ports.xsub_port = Port::tcp(p);
                    }
                    parsed.zeromq = Some(ports);
                }
                match client::deploy(&opts, parsed).await {
                    Ok(outcome) => print(&outcome),
                    Err(e) => usage_error(e),
                }
            }
            Command::Check { file } => {
                let parsed = match read_cluster_file(&file) {
                    Ok(p) => p,
                    Err(code) => return code,
                };
                match client::check(&opts, parsed).await {
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

/// zeek-client's settings, laid over in its order: its defaults, the config
/// file (-c, else ZEEK_CLIENT_CONFIG_FILE), ZEEK_CLIENT_CONFIG_SETTINGS,
/// --set, then --controller (or ZEEK_MGMT_CONTROLLER) and -v.
fn client_settings(
    cli: &Cli,
    controller: Option<&str>,
) -> Result<controller::settings::ClientSettings, ExitCode> {
    let mut s = controller::settings::ClientSettings::default();
    let file = cli
        .configfile
        .clone()
        .or_else(|| std::env::var_os("ZEEK_CLIENT_CONFIG_FILE").map(PathBuf::from));
    if let Some(file) = file {
        s.read_file(&file)
            .map_err(|e| emit(&controller::Printed::error(&e)))?;
    }
    if let Ok(env) = std::env::var("ZEEK_CLIENT_CONFIG_SETTINGS") {
        s.apply_env(&env);
    }
    for item in &cli.set {
        // zeek-client passes a malformed item over.
        let _ = s.apply(item);
    }
    if let Some(c) = controller {
        s.controller(c).map_err(usage_error)?;
    }
    if cli.verbose > 0 {
        s.set("client", "verbosity", &cli.verbose.to_string());
    }
    Ok(s)
}

/// A CA, certificate and key, each perhaps given.
type TlsFiles = (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>);

/// The CA, certificate and key: the --tls-* flags, else (with a
/// controller) zeek-client's ssl.cafile, ssl.certificate and ssl.keyfile
/// when ssl.enable is set.
fn ssl_files(
    cli: &Cli,
    settings: Option<&controller::settings::ClientSettings>,
) -> Result<TlsFiles, String> {
    let flags = (
        cli.tls_ca.clone(),
        cli.tls_cert.clone(),
        cli.tls_key.clone(),
    );
    let Some(s) = settings.filter(|_| flags == (None, None, None)) else {
        return Ok(flags);
    };
    if !s
        .flag("ssl", "enable")
        .map_err(|e| format!("ssl.enable: {e}"))?
    {
        return Ok(flags);
    }
    let path = |key: &str| {
        s.get("ssl", key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match path("cafile") {
        Some(ca) => Ok((Some(ca), path("certificate"), path("keyfile"))),
        None => Err("ssl.enable without ssl.cafile: zeek-mgmt-client verifies the controller's certificate; set ssl.cafile (or --tls-ca)".to_owned()),
    }
}

fn emit(p: &controller::Printed) -> ExitCode {
    print!("{}", p.stdout);
    eprint!("{}", p.stderr);
    ExitCode::from(p.code)
}
