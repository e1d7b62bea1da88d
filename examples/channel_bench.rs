//! Benchmarks of the node channel, against the Python stand-in of a Zeek
//! node (`tests/fixtures/stand-in-zeek.py`), each beside its own baseline
//! measured in the same run. Prints a table; asserts nothing.
//!
//! ```text
//! cargo build --release && cargo run --release --example channel_bench
//! cargo run --release --example channel_bench -- --quick
//! ```
//! - exec to `RUNNING` per role, against the moment the stand-in could
//!   answer (its server bound, or for the routed manager its subscription
//!   up and a sibling answering), the ack of its own connection (none for
//!   the routed manager) and its first answer;
//! - the agent's cost per channel: resident memory and file descriptors
//!   with the channel on and off, same nodes;
//! - a `get_id_value` round trip through the agent, and through the
//!   controller, against the channel's own round trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use zeek_mgmt_agent::agent::channel;
use zeek_mgmt_agent::api::events::{
    NodeDispatchRequest, Notification, Request, SetConfigurationRequest,
};
use zeek_mgmt_agent::api::types::{Addr, Configuration, Instance, Node, Port, ReqId, Role, State};
use zeek_mgmt_agent::broker::Value;
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

#[path = "common/mod.rs"]
mod common;
use common::*;

fn stand_in() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stand-in-zeek.py")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A release agent in `dir` with the stand-in as Zeek; `extra` flags.
fn agent(dir: &Path, name: &str, extra: &[String]) -> (Proc, SocketAddr) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut args: Vec<String> = [
        "--name",
        name,
        "--listen-port",
        "0",
        "--request-timeout",
        "30",
        "--channel-join-grace",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--cluster-dir".into(),
        dir.join("cluster").display().to_string(),
        "--state-dir".into(),
        dir.join("state").display().to_string(),
        "--zeek-binary".into(),
        stand_in().display().to_string(),
    ]);
    args.extend_from_slice(extra);
    let (p, addr) = start(
        &binary("zeek-mgmt-agent"),
        &args,
        &dir.join("agent.log"),
        "listening on ",
    );
    (p, addr.parse().expect("agent addr"))
}

/// manager, proxy-1 and `workers` workers on `agent`, each node's server
/// opening `delay_ms` after its start.
fn config(id: &str, agent: &str, workers: usize, delay_ms: u64) -> Configuration {
    let mut nodes = vec![
        Node::new("manager", agent, Role::Manager),
        Node::new("proxy-1", agent, Role::Proxy),
    ];
    nodes[0].p = Some(Port::tcp(free_port()));
    nodes[1].p = Some(Port::tcp(free_port()));
    for i in 1..=workers {
        nodes.push(Node::new(&format!("worker-{i}"), agent, Role::Worker));
    }
    for n in &mut nodes {
        n.env
            .insert("STANDIN_CHANNEL_DELAY_MS".into(), delay_ms.to_string());
    }
    Configuration {
        id: id.into(),
        instances: vec![Instance {
            name: agent.into(),
            host: Addr("127.0.0.1".parse().expect("ip")),
            listen_port: None,
        }],
        nodes,
        zeromq: None,
    }
}

/// `what` of the process `pid` in a node's `standin-times`.
fn mark(dir: &Path, node: &str, pid: u32, what: &str) -> Option<f64> {
    std::fs::read_to_string(dir.join("cluster").join(node).join("standin-times"))
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (p, w, t) = (f.next()?, f.next()?, f.next()?);
            (p == pid.to_string() && w == what)
                .then(|| t.parse().ok())
                .flatten()
        })
}

/// Deploys `config` straight to the agent and returns, per node, its pid
/// and when its `RUNNING` arrived (wall clock).
async fn deploy_timed(c: &mut Connection, config: Configuration) -> BTreeMap<String, f64> {
    let n = config.nodes.len();
    let answer = c
        .start_request(Request::SetConfiguration(SetConfigurationRequest {
            reqid: ReqId(format!("bench-{}", config.id)),
            config,
        }))
        .expect("send");
    let mut running = BTreeMap::new();
    while running.len() < n {
        let note = c
            .wait_notification(
                Duration::from_secs(60),
                |n| matches!(n, Notification::Change(ch) if ch.new == State::Running),
            )
            .await
            .expect("RUNNING");
        if let Notification::Change(ch) = note {
            running.insert(ch.node.name.clone(), now());
        }
    }
    let r = answer.await.expect("answer");
    assert!(r.result.success, "{:?}", r.result);
    running
}

async fn pids(c: &Connection) -> BTreeMap<String, u32> {
    use zeek_mgmt_agent::api::events::GetNodesRequest;
    use zeek_mgmt_agent::api::types::ResultData;
    let r = c
        .request(
            Request::GetNodes(GetNodesRequest {
                reqid: c.new_reqid(),
            }),
            Duration::from_secs(10),
        )
        .await
        .expect("get_nodes");
    match r.result.data {
        Some(ResultData::NodeStatuses(s)) => s
            .into_iter()
            .filter_map(|n| Some((n.node, u32::try_from(n.pid?).ok()?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn ms_f(secs: f64) -> String {
    if secs.is_nan() {
        return "n/a".into();
    }
    format!("{:.1} ms", secs * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A WebSocket client on worker-1's server, as the agent's channel is.
struct ChannelClient {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next: u64,
}

impl ChannelClient {
    async fn connect(port: u16) -> ChannelClient {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}{}", channel::WS_PATH), tcp)
                .await
                .expect("upgrade");
        ws.send(Message::text(channel::subscription("worker-1")))
            .await
            .expect("subscribe");
        let _ack = ws.next().await;
        ChannelClient { ws, next: 0 }
    }

    /// One get_id_value round trip.
    async fn ask(&mut self) -> Duration {
        self.next += 1;
        let reqid = format!("b{}", self.next);
        let action = ["get_id_value".to_owned(), "Cluster::node".to_owned()];
        let t = Instant::now();
        self.ws
            .send(Message::text(channel::request("worker-1", &reqid, &action)))
            .await
            .expect("send");
        loop {
            let text = match self.ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                // The node's pings.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("channel lost: {other:?}"),
            };
            if matches!(channel::parse(text.as_str()), channel::Incoming::Response(a) if a.reqid == reqid)
            {
                return t.elapsed();
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 10 };
    let tmp = std::env::temp_dir().join(format!("zeek-mgmt-chbench-{}", std::process::id()));
    let mut rows: Vec<(String, String, String)> = Vec::new();
    std::fs::create_dir_all(&tmp).expect("temporary directory");

    // A controller, and an agent that dials it (and listens, for the
    // direct figures).
    let (_controller, ws_addr, agent_port) = start_controller(
        &[
            "--state-dir".into(),
            tmp.join("controller-state").display().to_string(),
        ],
        &tmp.join("controller.log"),
    );
    let dir = tmp.join("a");
    let (agent_proc, addr) = agent(
        &dir,
        "agent-a",
        &[
            "--controller-addr".into(),
            "127.0.0.1".into(),
            "--controller-port".into(),
            agent_port.to_string(),
            "--reconnect-interval".into(),
            "0.05".into(),
        ],
    );
    let mut c = Connection::connect(addr, PeerOptions::default())
        .await
        .expect("agent");

    // 1. exec to RUNNING, per role, the stand-in at Zeek's timings of four
    //    nodes starting at once on two cores (about 0.3 to 1.2 s).
    let mut by_role: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    for round in 0..rounds {
        let running = deploy_timed(&mut c, config(&format!("r{round}"), "agent-a", 2, 500)).await;
        let pids = pids(&c).await;
        let answered = |n: &str| pids.get(n).and_then(|p| mark(&dir, n, *p, "answered"));
        for (node, at) in &running {
            let Some(&pid) = pids.get(node) else { continue };
            let role = match node.as_str() {
                "manager" => "manager (routed)",
                "proxy-1" => "proxy",
                _ => "worker",
            };
            let could = if node == "manager" {
                // Its subscription is up and a sibling answers for the route.
                let sibling = ["proxy-1", "worker-1", "worker-2"]
                    .iter()
                    .filter_map(|s| answered(s))
                    .fold(f64::INFINITY, f64::min);
                mark(&dir, node, pid, "subscribed").map(|s| s.max(sibling))
            } else {
                mark(&dir, node, pid, "listening")
            };
            let e = by_role.entry(role).or_default();
            let acked = mark(&dir, node, pid, "acked");
            for (i, since) in [could, acked, answered(node)].into_iter().enumerate() {
                if let Some(since) = since {
                    e[i].push(at - since);
                }
            }
        }
    }
    for (role, [since_could, since_ack, since_answer]) in by_role {
        rows.push((
            format!("{role}: RUNNING after it could answer, p50 of {rounds}"),
            ms_f(median(since_could)),
            format!(
                "after the ack of its own channel: {}; after its first answer: {} (goal: within 20 ms)",
                ms_f(median(since_ack)),
                ms_f(median(since_answer))
            ),
        ));
    }

    // 2. get_id_value round trips, the three paths taken in turn so that
    //    the machine's noise falls on all alike: the channel alone, through
    //    the agent (node_dispatch), through the controller (as zeek-client
    //    asks, after a deployment by it).
    let mut ws = Client::connect(ws_addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let v = ws.ask("get_instances", vec![]).await;
        if v.to_json().contains("agent-a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    deploy(&mut ws, &config("via-controller", "agent-a", 2, 300)).await;
    let port: u16 = std::fs::read_to_string(dir.join("cluster/worker-1/env"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}=", channel::PORT_ENV)))
        .and_then(|p| p.parse().ok())
        .expect("worker-1's channel port");
    let mut own = ChannelClient::connect(port).await;
    let n = if quick { 200 } else { 2000 };
    let (mut alone, mut via_agent, mut via_controller) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        alone.push(own.ask().await);
        let t = Instant::now();
        let r = c
            .request(
                Request::NodeDispatch(NodeDispatchRequest {
                    reqid: ReqId(format!("d{i}")),
                    action: vec!["get_id_value".into(), "Cluster::node".into()],
                    nodes: vec!["worker-1".into()],
                }),
                Duration::from_secs(10),
            )
            .await
            .expect("node_dispatch");
        assert!(r.result.success, "{:?}", r.result);
        via_agent.push(t.elapsed());
        let t = Instant::now();
        let v = ws
            .ask(
                "get_id_value",
                vec![
                    Value::string("Cluster::node"),
                    Value::Set(vec![Value::string("worker-1")]),
                ],
            )
            .await;
        assert!(v.to_json().contains("worker-1"), "{}", v.to_json());
        via_controller.push(t.elapsed());
    }
    let (alone, via_agent, via_controller) = (p50(alone), p50(via_agent), p50(via_controller));
    rows.push((
        format!("get_id_value round trip via the agent, p50 of {n}"),
        ms(via_agent),
        format!(
            "channel alone {}: the agent adds {}",
            ms(alone),
            ms(via_agent.saturating_sub(alone))
        ),
    ));
    rows.push((
        format!("get_id_value round trip via the controller, p50 of {n}"),
        ms(via_controller),
        format!(
            "via the agent alone {}: the controller adds {}",
            ms(via_agent),
            ms(via_controller.saturating_sub(via_agent))
        ),
    ));
    drop(c);
    drop(agent_proc);

    // 3. The agent's cost per channel: the same nodes, channel off and on.
    let workers = if quick { 6 } else { 20 };
    let mut cost = Vec::new();
    for mode in ["off", "auto"] {
        let d = tmp.join(format!("cost-{mode}"));
        let (p, addr) = agent(&d, "agent-c", &["--node-channel".into(), mode.into()]);
        let pid = p.0.id();
        let mut c = Connection::connect(addr, PeerOptions::default())
            .await
            .expect("agent");
        deploy_timed(&mut c, config(mode, "agent-c", workers, 300)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        cost.push((rss_kib(pid), fds(pid)));
    }
    let nodes = workers + 2;
    let (off, on) = (cost[0], cost[1]);
    rows.push((
        format!("agent with {nodes} nodes: resident memory, channel off / on"),
        format!("{} KiB / {} KiB", off.0, on.0),
        format!(
            "{:.1} KiB per channel",
            (on.0 as f64 - off.0 as f64) / nodes as f64
        ),
    ));
    rows.push((
        format!("agent with {nodes} nodes: open files, channel off / on"),
        format!("{} / {}", off.1, on.1),
        format!(
            "{:.1} per channel",
            (on.1 as f64 - off.1 as f64) / nodes as f64
        ),
    ));
    let _ = std::fs::remove_dir_all(&tmp);

    println!("| measure | figure | against |");
    println!("| --- | --- | --- |");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}
