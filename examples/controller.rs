//! A small controller: deploys a four-node cluster (manager, proxy, two
//! workers) to a running agent and prints `get_nodes`.
//!
//! ```text
//! cargo run --example controller -- [HOST:PORT] [deploy|nodes|standby]
//! ```
//! The default address is 127.0.0.1:2151; without a command it deploys and
//! then prints the nodes.

use std::process::ExitCode;
use std::time::Duration;

use zeek_mgmt_agent::api::events::{
    AgentStandbyRequest, GetNodesRequest, Notification, Request, SetConfigurationRequest,
};
use zeek_mgmt_agent::api::types::{
    Addr, Configuration, Instance, Node, NodeStatus, Port, ResultData, Role,
};
use zeek_mgmt_agent::protocol::to_agent::{Connection, Incoming, PeerOptions};

const TIMEOUT: Duration = Duration::from_secs(30);

fn cluster(agent: &str, host: Addr) -> Configuration {
    let node = |name: &str, role: Role, port: Option<u16>| {
        let mut n = Node::new(name, agent, role);
        n.p = port.map(Port::tcp);
        n
    };
    Configuration {
        id: String::new(),
        instances: vec![Instance {
            name: agent.to_owned(),
            host,
            listen_port: None,
        }],
        nodes: vec![
            node("manager", Role::Manager, Some(27760)),
            node("proxy-1", Role::Proxy, Some(27761)),
            node("worker-1", Role::Worker, None),
            node("worker-2", Role::Worker, None),
        ],
        zeromq: None,
    }
}

fn print_nodes(nodes: &[NodeStatus]) {
    println!(
        "{:<12} {:<8} {:<8} {:<10} {:>8} {:>10} {:>6} {:>9}",
        "node", "role", "mgmt", "state", "pid", "rss", "cpu%", "uptime"
    );
    for n in nodes {
        println!(
            "{:<12} {:<8} {:<8} {:<10} {:>8} {:>10} {:>6} {:>9}",
            n.node,
            format!("{:?}", n.cluster_role).to_uppercase(),
            format!("{:?}", n.mgmt_role).to_uppercase(),
            n.state.to_string(),
            n.pid.map(|p| p.to_string()).unwrap_or_default(),
            n.rss_bytes
                .map(|b| format!("{} KiB", b / 1024))
                .unwrap_or_default(),
            n.cpu_percent.map(|c| format!("{c:.1}")).unwrap_or_default(),
            n.uptime_secs
                .map(|u| format!("{u:.1}s"))
                .unwrap_or_default(),
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // [HOST:PORT] [COMMAND]: a first word that is a command leaves the
    // address its default.
    const COMMANDS: &[&str] = &["deploy", "nodes", "standby"];
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| COMMANDS.contains(&a.as_str())) {
        args.insert(0, "127.0.0.1:2151".to_owned());
    }
    let mut args = args.into_iter();
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:2151".to_owned());
    let command = args.next();
    if let Some(c) = command.as_deref().filter(|c| !COMMANDS.contains(c)) {
        eprintln!("unknown command {c:?}: use deploy, nodes or standby");
        return ExitCode::from(2);
    }
    let opts = PeerOptions {
        endpoint: "example-controller".into(),
        ..PeerOptions::default()
    };
    let mut conn = match Connection::connect(addr.as_str(), opts).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot reach an agent at {addr}: {e} (is `cargo run` running?)");
            return ExitCode::from(2);
        }
    };
    let agent = conn.agent().endpoint.clone();
    if let Ok(Incoming::Notification(Notification::AgentHello(h))) = conn.next_event(TIMEOUT).await
    {
        println!(
            "agent {} checked in from {} (API v{})",
            h.instance, h.host, h.api_version
        );
    }
    let host = conn_host(&addr);

    let mut ok = true;
    if matches!(command.as_deref(), None | Some("deploy")) {
        let config = cluster(&agent, host);
        let reqid = conn.new_reqid();
        println!("deploying {} nodes to {agent} ...", config.nodes.len());
        match conn
            .request(
                Request::SetConfiguration(SetConfigurationRequest { reqid, config }),
                TIMEOUT,
            )
            .await
        {
            Ok(r) => {
                ok &= r.result.success;
                println!("set_configuration: {}", r.result.summary());
                if let Some(ResultData::Results(per)) = r.result.data {
                    for p in per {
                        println!(
                            "  {:<10} {}",
                            p.node.clone().unwrap_or_default(),
                            p.summary()
                        );
                    }
                }
            }
            Err(e) => {
                eprintln!("set_configuration failed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if matches!(command.as_deref(), None | Some("deploy") | Some("nodes")) {
        let reqid = conn.new_reqid();
        match conn
            .request(Request::GetNodes(GetNodesRequest { reqid }), TIMEOUT)
            .await
        {
            Ok(r) => match r.result.data {
                Some(ResultData::NodeStatuses(nodes)) => print_nodes(&nodes),
                _ => println!("get_nodes: {}", r.result.summary()),
            },
            Err(e) => {
                eprintln!("get_nodes failed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if command.as_deref() == Some("standby") {
        let reqid = conn.new_reqid();
        match conn
            .request(
                Request::AgentStandby(AgentStandbyRequest { reqid }),
                TIMEOUT,
            )
            .await
        {
            Ok(r) => {
                ok &= r.result.success;
                println!("agent_standby: {}", r.result.summary());
            }
            Err(e) => {
                eprintln!("agent_standby failed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The agent's host as a Zeek address (the nodes' `$ip`).
fn conn_host(addr: &str) -> Addr {
    use std::net::ToSocketAddrs;
    let ip = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| a.ip())
        .unwrap_or_else(|| [127, 0, 0, 1].into());
    Addr(ip)
}
