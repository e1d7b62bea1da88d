//! Benchmarks of the two ways to reach a one-host cluster, each beside its
//! baseline in the same run. Prints a table; asserts nothing.
//!
//! ```text
//! cargo build --release && cargo run --release --example client_bench [-- --quick]
//! ```
//! - our client (`zeek-mgmt-client --controller`) against zeek-client, end
//!   to end, a new process each time, same controller: `get-nodes` and
//!   `deploy-config` (zeek-client from `$ZEEK_CLIENT` or
//!   `.ci/venv/bin/zeek-client`; without it, our client alone);
//! - `get_nodes` through a controller whose agent is embedded
//!   (`--local-agent`) against one whose agent runs on its own, on this
//!   host, taken in turn.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::*;

fn zeek_client() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ZEEK_CLIENT") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/zeek-client");
    venv.exists().then_some(venv)
}

/// A controller on free ports, with `extra` flags; its WebSocket address.
fn controller(dir: &Path, extra: &[String]) -> (Proc, SocketAddr, u16) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut args: Vec<String> = vec![
        "--state-dir".into(),
        dir.join("controller-state").display().to_string(),
        "--dial-interval".into(),
        "0.05".into(),
    ];
    args.extend_from_slice(extra);
    start_controller(&args, &dir.join("controller.log"))
}

/// The agent's flags for nodes that only sleep.
fn agent_flags(dir: &Path, node: &Path, name: &str) -> Vec<String> {
    [
        "--name",
        name,
        "--cluster-dir",
        &dir.join("cluster").display().to_string(),
        "--state-dir",
        &dir.join("state").display().to_string(),
        "--zeek-binary",
        &node.display().to_string(),
    ]
    .iter()
    .chain(&SLEEPING_NODES)
    .map(|s| s.to_string())
    .collect()
}

fn ini(dir: &Path, agent: &str, agent_addr: Option<SocketAddr>) -> PathBuf {
    let instances = match agent_addr {
        Some(a) => format!("[instances]\n{agent} = {a}\n\n"),
        None => format!("[instances]\n{agent}\n\n"),
    };
    let mut text = instances;
    for (name, role) in [
        ("manager", "manager"),
        ("proxy-1", "proxy"),
        ("worker-1", "worker"),
        ("worker-2", "worker"),
    ] {
        text.push_str(&format!("[{name}]\ninstance = {agent}\nrole = {role}\n\n"));
    }
    let path = dir.join("cluster.ini");
    std::fs::write(&path, text).expect("cluster.ini");
    path
}

/// Runs a client process to its end: its time, and whether it succeeded.
fn run(program: &Path, prefix: &[&str], args: &[&str]) -> (Duration, bool) {
    let t = Instant::now();
    let out = Command::new(program)
        .args(prefix)
        .args(args)
        .output()
        .expect("client");
    (t.elapsed(), out.status.success())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 5 } else { 20 };
    let tmp = std::env::temp_dir().join(format!("zeek-mgmt-clbench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let node = sleeping_node(&tmp);
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // A controller with its agent embedded.
    let one = tmp.join("one");
    let mut flags = vec!["--local-agent".to_owned(), "--".to_owned()];
    flags.extend(agent_flags(&one, &node, "agent-local"));
    let (_c1, ws1, _) = controller(&one, &flags);
    // A controller with an agent of its own, which it dials.
    let two = tmp.join("two");
    let (_c2, ws2, _) = controller(&two, &[]);
    let mut args = agent_flags(&two, &node, "agent-own");
    args.extend(["--listen-port".into(), "0".into()]);
    let (_agent, agent_addr) = start(
        &binary("zeek-mgmt-agent"),
        &args,
        &two.join("agent.log"),
        "listening on ",
    );
    let agent_addr: SocketAddr = agent_addr.parse().expect("agent address");

    let ours = binary("zeek-mgmt-client");
    let ws1_text = ws1.to_string();
    let ours_prefix = ["--controller", ws1_text.as_str()];
    let ini1 = ini(&one, "agent-local", None);
    let ini1_text = ini1.display().to_string();
    let (t, ok) = run(&ours, &ours_prefix, &["deploy-config", &ini1_text]);
    assert!(ok, "deploy through our client");
    let _ = t;
    let ini2 = ini(&two, "agent-own", Some(agent_addr));
    let mut c2 = Client::connect(ws2).await;
    let staged =
        zeek_mgmt_agent::client::controller::cluster_file::read(&ini2.display().to_string())
            .expect("parse");
    let config =
        zeek_mgmt_agent::client::controller::staged_configuration(&staged).expect("config");
    deploy(&mut c2, &config).await;

    // get_nodes through each controller, taken in turn.
    let mut c1 = Client::connect(ws1).await;
    let (mut embedded, mut own) = (Vec::new(), Vec::new());
    for _ in 0..rounds * 50 {
        let t = Instant::now();
        c1.ask("get_nodes", vec![]).await;
        embedded.push(t.elapsed());
        let t = Instant::now();
        c2.ask("get_nodes", vec![]).await;
        own.push(t.elapsed());
    }
    let (embedded, own) = (p50(embedded), p50(own));
    rows.push((
        format!("get_nodes through the controller, p50 of {}", rounds * 50),
        format!("{} with the agent embedded", ms(embedded)),
        format!("{} with the agent in its own process", ms(own)),
    ));

    // End to end, a new client process each time.
    let theirs = zeek_client();
    for cmd in [&["get-nodes"][..], &["deploy-config", ini1_text.as_str()]] {
        let (mut ours_t, mut theirs_t) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (t, ok) = run(&ours, &ours_prefix, cmd);
            assert!(ok, "our client {cmd:?}");
            ours_t.push(t);
            if let Some(zc) = &theirs {
                let (t, ok) = run(zc, &["--controller", ws1_text.as_str()], cmd);
                assert!(ok, "zeek-client {cmd:?}");
                theirs_t.push(t);
            }
        }
        let against = if theirs_t.is_empty() {
            "zeek-client not found ($ZEEK_CLIENT or .ci/venv)".to_owned()
        } else {
            let t = p50(theirs_t);
            format!(
                "zeek-client {} ({:.1}x ours)",
                ms(t),
                t.as_secs_f64() / p50(ours_t.clone()).as_secs_f64().max(1e-9)
            )
        };
        rows.push((
            format!("{} end to end, p50 of {rounds}", cmd[0]),
            format!("{} zeek-mgmt-client", ms(p50(ours_t))),
            against,
        ));
    }
    if let Some(zc) = &theirs {
        let (mut t_help, mut ours_help) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            t_help.push(run(zc, &[], &["--help"]).0);
            ours_help.push(run(&ours, &[], &["--help"]).0);
        }
        rows.push((
            format!("--help alone (start-up), p50 of {rounds}"),
            format!("{} zeek-mgmt-client", ms(p50(ours_help))),
            format!("zeek-client {}", ms(p50(t_help))),
        ));
    }
    let _ = std::fs::remove_dir_all(&tmp);

    println!("| measure | figure | against |");
    println!("| --- | --- | --- |");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}
