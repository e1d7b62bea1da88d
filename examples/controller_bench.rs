//! Benchmarks of the controller binary, each beside its own baseline
//! measured in the same run. Prints a table; asserts nothing.
//!
//! ```text
//! cargo build --release && cargo run --release --example controller_bench
//! cargo run --release --example controller_bench -- --quick   # 20 agents, fewer rounds
//! cargo run --release --example controller_bench -- --only get-nodes --rounds N
//! ```
//! The controller and the agents are the release binaries next to this
//! example; the nodes are a program that only sleeps; the client is a
//! WebSocket client speaking as zeek-client does (and zeek-client itself
//! for the last row, when `$ZEEK_CLIENT` or `.ci/venv/bin/zeek-client`
//! exists).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use zeek_mgmt_agent::api::events::{GetNodesRequest, Request, SetConfigurationRequest};
use zeek_mgmt_agent::api::types::{Addr, Configuration, Instance, Node, Port, ReqId, Role};
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

#[path = "common/mod.rs"]
mod common;
use common::*;

fn cluster(id: &str, agents: &[(String, SocketAddr)], per_agent: usize) -> Configuration {
    let mut nodes = Vec::new();
    for (i, (name, _)) in agents.iter().enumerate() {
        for j in 0..per_agent {
            let role = if i == 0 && j == 0 {
                Role::Manager
            } else {
                Role::Worker
            };
            let mut node = Node::new(&format!("{name}-n{j}"), name, role);
            if role == Role::Manager {
                // The agent needs a manager's port; nothing binds it here.
                node.p = Some(Port::tcp(27_999));
            }
            nodes.push(node);
        }
    }
    Configuration {
        id: id.into(),
        instances: agents
            .iter()
            .map(|(name, addr)| Instance {
                name: name.clone(),
                host: Addr(addr.ip()),
                listen_port: Some(Port::tcp(addr.port())),
            })
            .collect(),
        nodes,
        zeromq: None,
    }
}

struct Setup {
    _controller: Proc,
    controller_pid: u32,
    ws: SocketAddr,
    agents: Vec<(String, SocketAddr, Proc)>,
    _dir: PathBuf,
}

/// A controller and `n` listening agents, which the controller dials.
fn setup(dir: &Path, n: usize) -> Setup {
    std::fs::create_dir_all(dir).expect("dir");
    let node = sleeping_node(dir);
    let (controller, ws, _) = start_controller(
        &[
            "--state-dir".into(),
            dir.join("controller-state").display().to_string(),
            "--dial-interval".into(),
            "0.05".into(),
            "--request-timeout".into(),
            "60".into(),
        ],
        &dir.join("controller.log"),
    );
    let controller_pid = controller.0.id();
    let mut agents = Vec::new();
    for i in 0..n {
        let name = format!("agent-{i:03}");
        let d = dir.join(&name);
        std::fs::create_dir_all(&d).expect("agent dir");
        let mut args: Vec<String> = vec![
            "--name".into(),
            name.clone(),
            "--listen-port".into(),
            "0".into(),
            "--cluster-dir".into(),
            d.join("cluster").display().to_string(),
            "--state-dir".into(),
            d.join("state").display().to_string(),
            "--zeek-binary".into(),
            node.display().to_string(),
        ];
        args.extend(SLEEPING_NODES.map(String::from));
        let (p, addr) = start(
            &binary("zeek-mgmt-agent"),
            &args,
            &d.join("agent.log"),
            "listening on ",
        );
        agents.push((name, addr.parse().expect("agent addr"), p));
    }
    Setup {
        _controller: controller,
        controller_pid,
        ws,
        agents,
        _dir: dir.to_owned(),
    }
}

fn zeek_client() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ZEEK_CLIENT") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/zeek-client");
    venv.exists().then_some(venv)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--only get-nodes`: the get_nodes rows alone (for profiling, with
    // `--rounds N`).
    let only_get_nodes = flag("--only").as_deref() == Some("get-nodes");
    let rounds = flag("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 200 } else { 2000 });
    let many = if quick { 20 } else { 100 };
    let tmp = std::env::temp_dir().join(format!("zeek-mgmt-cbench-{}", std::process::id()));
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // Two agents with two nodes each.
    {
        let s = setup(&tmp.join("small"), 2);
        let idle = rss_kib(s.controller_pid);
        let agents: Vec<(String, SocketAddr)> =
            s.agents.iter().map(|(n, a, _)| (n.clone(), *a)).collect();
        let mut c = Client::connect(s.ws).await;
        // Deploy of 4 nodes through the controller, against the same
        // set_configuration sent straight to both agents at once.
        let mut via = Vec::new();
        let mut direct = Vec::new();
        let conns: Vec<Connection> = {
            let mut v = Vec::new();
            for (_, a) in &agents {
                v.push(
                    Connection::connect(*a, PeerOptions::default())
                        .await
                        .expect("direct"),
                );
            }
            v
        };
        for i in 0..if only_get_nodes {
            1
        } else if quick {
            3
        } else {
            10
        } {
            via.push(deploy(&mut c, &cluster(&format!("via-{i}"), &agents, 2)).await);
            let config = cluster(&format!("direct-{i}"), &agents, 2);
            let t = Instant::now();
            let waits: Vec<_> = conns
                .iter()
                .map(|conn| {
                    conn.start_request(Request::SetConfiguration(SetConfigurationRequest {
                        reqid: ReqId(format!("d{i}")),
                        config: config.clone(),
                    }))
                    .expect("send")
                })
                .collect();
            for w in waits {
                assert!(w.await.expect("answer").result.success);
            }
            direct.push(t.elapsed());
        }
        let (via, direct) = (p50(via), p50(direct));
        rows.push((
            "deploy of 4 nodes on 2 agents, p50".into(),
            format!(
                "{} via the controller, {} straight to the agents",
                ms(via),
                ms(direct)
            ),
            format!(
                "controller's share {} (goal < 5 ms)",
                ms(via.saturating_sub(direct))
            ),
        ));
        // get_nodes through the controller against straight to an agent.
        let mut via = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            c.ask("get_nodes", vec![]).await;
            via.push(t.elapsed());
        }
        // The same get_nodes straight to both agents at once.
        let mut direct = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            let waits: Vec<_> = conns
                .iter()
                .map(|conn| {
                    conn.start_request(Request::GetNodes(GetNodesRequest {
                        reqid: ReqId(format!("g{i}")),
                    }))
                    .expect("send")
                })
                .collect();
            for w in waits {
                w.await.expect("get_nodes");
            }
            direct.push(t.elapsed());
        }
        let (via, direct) = (p50(via), p50(direct));
        rows.push((
            "get_nodes round trip, p50".into(),
            format!(
                "{} via the controller, {} straight to both agents at once",
                ms(via),
                ms(direct)
            ),
            format!(
                "controller adds {} = {:.2} agent round trips (goal < 1)",
                ms(via.saturating_sub(direct)),
                via.saturating_sub(direct).as_secs_f64() / direct.as_secs_f64().max(1e-9)
            ),
        ));
        rows.push((
            "controller resident memory, idle".into(),
            format!("{idle} KiB"),
            "goal < 10 MiB".into(),
        ));
        if let Some(zc) = zeek_client().filter(|_| !only_get_nodes) {
            let mut times = Vec::new();
            for _ in 0..if quick { 3 } else { 10 } {
                let t = Instant::now();
                let out = Command::new(&zc)
                    .args(["--controller", &s.ws.to_string(), "get-nodes"])
                    .output()
                    .expect("zeek-client");
                assert!(out.status.success());
                times.push(t.elapsed());
            }
            let t = Instant::now();
            let _ = Command::new(&zc).arg("--version").output();
            let startup = t.elapsed();
            rows.push((
                "zeek-client get-nodes end to end, p50".into(),
                ms(p50(times)),
                format!("zeek-client --version alone: {}", ms(startup)),
            ));
        }
    }

    // Many agents with 10 nodes each, deployed at once.
    if !only_get_nodes {
        let s = setup(&tmp.join("many"), many);
        let agents: Vec<(String, SocketAddr)> =
            s.agents.iter().map(|(n, a, _)| (n.clone(), *a)).collect();
        let mut c = Client::connect(s.ws).await;
        // Every agent is dialled and known once get_instances lists it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let v = c.ask("get_instances", vec![]).await;
            if v.to_json().matches("\"address\"").count() >= many {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = rss_kib(s.controller_pid);
        let took = deploy(&mut c, &cluster("many", &agents, 10)).await;
        let during = rss_kib(s.controller_pid);
        // Steady state, once the deployment's copies are gone.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = rss_kib(s.controller_pid);
        rows.push((
            format!("controller resident memory around the deploy of {many} agents"),
            format!("{before} KiB before, {during} KiB at its end"),
            "(one copy of the configuration, encoded for each agent as it leaves)".into(),
        ));
        rows.push((
            format!("deploy of {many} agents x 10 nodes, end to end"),
            ms(took),
            "goal < 2 s for 100 agents".into(),
        ));
        rows.push((
            format!("controller resident memory, {many} agents connected"),
            format!("{rss} KiB"),
            "goal < 20 MiB for 100 agents".into(),
        ));
    }
    let _ = std::fs::remove_dir_all(&tmp);

    println!("| measure | figure | against |");
    println!("| --- | --- | --- |");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}
