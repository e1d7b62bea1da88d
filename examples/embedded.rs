//! Embedding the agent in a larger actix system, with no socket at all:
//! requests go in as typed messages, responses and notifications come out
//! to an actor of the host system.
//!
//! ```text
//! cargo run --example embedded
//! ```
//! It uses the test suite's stand-in node program instead of Zeek and a
//! temporary directory for the nodes and the state.

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use zeek_mgmt_agent::agent::actors::messages::Outbound;
use zeek_mgmt_agent::api::events::{
    AgentStandbyRequest, GetNodesRequest, Notification, Request, SetConfigurationRequest,
};
use zeek_mgmt_agent::api::types::{
    Addr as ZeekAddr, Configuration, Instance, Node, ResultData, Role,
};
use zeek_mgmt_agent::{AgentBuilder, Config};

/// The host system's actor: prints what the agent sends it.
struct Console;

impl Actor for Console {
    type Context = Context<Self>;
}

impl Handler<Outbound> for Console {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        match msg {
            Outbound::Response(r) => {
                println!(
                    "response {} {}: {}",
                    r.stem.as_str(),
                    r.reqid,
                    r.result.summary()
                );
                if let Some(ResultData::NodeStatuses(nodes)) = r.result.data {
                    for n in nodes {
                        println!(
                            "  {:<10} {:<8} pid {:?}",
                            n.node,
                            n.state.to_string(),
                            n.pid
                        );
                    }
                }
            }
            Outbound::Notification(Notification::Change(c)) => {
                println!("notify_change {}: {} -> {}", c.node.name, c.old, c.new)
            }
            Outbound::Notification(n) => println!("{}", n.name()),
        }
    }
}

fn main() -> std::io::Result<()> {
    let dir = tempfile_dir()?;
    let system = System::new();
    system.block_on(async move {
        let config = Config {
            name: "embedded".into(),
            cluster_dir: dir.join("cluster"),
            state_dir: dir.join("state"),
            zeek_binary: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stand-in-node.sh"),
            // The bash stand-in has no node channel.
            node_channel: zeek_mgmt_agent::agent::channel::Mode::Off,
            ..Config::default()
        };
        let agent = match AgentBuilder::new(config).listen(false).start() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("cannot start the agent: {e}");
                return;
            }
        };
        let peer = agent.attach(Console.start().recipient());
        let mut w = Node::new("worker-1", "embedded", Role::Worker);
        w.env.insert("EXAMPLE".into(), "1".into());
        peer.request(Request::SetConfiguration(SetConfigurationRequest {
            reqid: "deploy".into(),
            config: Configuration {
                id: "embedded-1".into(),
                instances: vec![Instance {
                    name: "embedded".into(),
                    host: ZeekAddr([127, 0, 0, 1].into()),
                    listen_port: None,
                }],
                nodes: vec![w],
                zeromq: None,
            },
        }));
        actix_rt::time::sleep(Duration::from_millis(800)).await;
        peer.request(Request::GetNodes(GetNodesRequest {
            reqid: "nodes".into(),
        }));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        peer.request(Request::AgentStandby(AgentStandbyRequest {
            reqid: "standby".into(),
        }));
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        agent.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("zeek-mgmt-embedded-{}", std::process::id())),
    );
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("zeek-mgmt-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
