//! The agent's cost of serving `/metrics`: the time per scrape with 100
//! nodes, beside a `get_nodes` round trip of the same agent in the same
//! run (a scrape asks the supervisor the same question, then renders).
//! Prints a table; asserts nothing.
//!
//! ```text
//! cargo build --release && cargo run --release --example metrics_bench
//! cargo run --release --example metrics_bench -- --nodes 100 --rounds 500
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use zeek_mgmt_agent::api::events::{GetNodesRequest, Request, SetConfigurationRequest};
use zeek_mgmt_agent::api::types::{Addr, Configuration, Instance, Node, ReqId, Role};
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

#[path = "common/mod.rs"]
mod common;
use common::*;

const NAME: &str = "agent-metrics";

fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One scrape: its time and the body's size.
fn scrape(addr: SocketAddr) -> (Duration, usize) {
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("response");
    (start.elapsed(), body.len())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let nodes = flag("--nodes", 100);
    let rounds = flag("--rounds", 300);
    let dir = std::env::temp_dir().join(format!("zeek-mgmt-mbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let node = sleeping_node(&dir);
    let mut args: Vec<String> = [
        "--name",
        NAME,
        "--listen-port",
        "0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--sample-interval",
        "1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(SLEEPING_NODES.map(String::from));
    for (k, v) in [
        ("--cluster-dir", dir.join("cluster")),
        ("--state-dir", dir.join("state")),
        ("--zeek-binary", node),
    ] {
        args.push(k.to_owned());
        args.push(v.display().to_string());
    }
    let (agent, lines) = start_lines(&binary("zeek-mgmt-agent"), &args, &dir.join("agent.log"), 2);
    let addr: SocketAddr = lines[0]
        .rsplit_once("listening on ")
        .and_then(|(_, a)| a.trim().parse().ok())
        .expect("the agent's address");
    let metrics: SocketAddr = lines[1]
        .split_once("http://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(a, _)| a.parse().ok())
        .expect("the metrics address");

    let mut config = Configuration {
        id: "metrics-bench".into(),
        instances: vec![Instance {
            name: NAME.into(),
            host: Addr(std::net::IpAddr::from([127, 0, 0, 1])),
            listen_port: None,
        }],
        ..Configuration::default()
    };
    for i in 0..nodes {
        let mut n = Node::new(&format!("worker-{i}"), NAME, Role::Worker);
        if i == 0 {
            n = Node::new("manager", NAME, Role::Manager);
            n.p = Some(zeek_mgmt_agent::api::types::Port::tcp(27_998));
        }
        config.nodes.push(n);
    }
    let c = Connection::connect(addr, PeerOptions::default())
        .await
        .expect("connect");
    let r = c
        .request(
            Request::SetConfiguration(SetConfigurationRequest {
                reqid: ReqId("deploy".into()),
                config,
            }),
            Duration::from_secs(120),
        )
        .await
        .expect("deployed");
    assert!(r.result.success, "{:?}", r.result.error);
    // Let the sampler see every node once.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Scrapes and get_nodes round trips in turn, so that the machine's
    // noise falls on both alike.
    let (mut scrapes, mut asks) = (Vec::new(), Vec::new());
    let mut size = 0;
    for i in 0..rounds {
        let (t, n) = scrape(metrics);
        scrapes.push(t);
        size = n;
        let start = Instant::now();
        c.request(
            Request::GetNodes(GetNodesRequest {
                reqid: ReqId(format!("g{i}")),
            }),
            Duration::from_secs(10),
        )
        .await
        .expect("get_nodes");
        asks.push(start.elapsed());
    }
    let (scrape_p50, ask_p50) = (p50(scrapes), p50(asks));
    println!("| measure | figure | against |");
    println!("| --- | --- | --- |");
    println!(
        "| scrape of /metrics, {nodes} nodes, p50 of {rounds} | {} ({size} bytes) | get_nodes round trip {}: ×{:.1} |",
        ms(scrape_p50),
        ms(ask_p50),
        scrape_p50.as_secs_f64() / ask_p50.as_secs_f64()
    );
    println!(
        "| agent resident memory after the scrapes | {} KiB | |",
        rss_kib(agent.0.id())
    );
    drop(c);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
