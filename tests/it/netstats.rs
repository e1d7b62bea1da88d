//! Packet statistics: `zeek-mgmt-client netstats` with agents and through a
//! controller (the stand-in's fixed counters), and from real Zeek workers
//! sniffing the loopback of a host of their own, against the packets the
//! test sends.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::controller::channel_agents;
use crate::netns::Hosts;
use crate::support::controller::{free_port, Controller};
use crate::support::*;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn netstats_lists_each_sniffing_worker_with_agents_and_through_the_controller() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let (_a, b) = channel_agents(&controller, dir, "interface = stand0\n");
    let (code, out, err) = controller.client(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");

    // Through the controller: the workers, and of them the one that sniffs.
    let (code, out, err) = controller.ours(&["netstats"]);
    assert_eq!(code, 0, "{out}{err}");
    let v = json(&out);
    let w2 = &v["results"]["worker-2"];
    assert_eq!(w2["instance"], "agent-b", "{out}");
    assert_eq!(w2["interface"], "stand0", "{out}");
    assert_eq!(
        (
            w2["received"].as_u64(),
            w2["dropped"].as_u64(),
            w2["link"].as_u64()
        ),
        (Some(990), Some(10), Some(1000)),
        "{out}"
    );
    assert_eq!(w2["drop_percent"].as_f64(), Some(1.0), "{out}");
    let listed: Vec<&String> = v["results"].as_object().expect("results").keys().collect();
    assert_eq!(listed, ["worker-2"], "{out}");
    // A node named is listed whatever it reads; a table for people.
    let (code, out, _) = controller.ours(&["netstats", "manager", "--table"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("node") && lines[0].contains("drop%"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("manager") && lines[1].contains("agent-a"),
        "{out}"
    );
    let (code, out, _) = controller.ours(&["netstats", "worker-7"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown cluster node"), "{out}");

    // With the agent itself: the same counters, and get-nodes' table shows
    // the worker's drop rate.
    let agent = b.addr.expect("agent-b listens").to_string();
    let ours = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
            .args(["--agent", &agent])
            .args(args)
            .output()
            .expect("run zeek-mgmt-client");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = ours(&["netstats"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["results"]["worker-2"], *w2, "{out}");
    let (code, out) = ours(&["get-nodes", "--table"]);
    assert_eq!(code, 0, "{out}");
    let row = |node: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(node))
            .unwrap_or_else(|| panic!("no {node} in {out}"))
            .to_owned()
    };
    assert!(
        out.lines().next().is_some_and(|h| h.ends_with("drop%")),
        "{out}"
    );
    assert!(row("worker-2").ends_with("1.00"), "{out}");
    assert!(row("worker-1").ends_with('-'), "{out}");
}

/// Sends `n` UDP datagrams to 127.0.0.1:9 inside host 0.
fn send_udp(hosts: &Hosts, dir: &Path, n: usize) {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range({n}):\n    s.sendto(b'x' * 64, ('127.0.0.1', 9))\n"
    );
    let (code, _, err) = hosts.run(0, Path::new("python3"), dir, &["-c", &script]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn netstats_of_a_real_worker_counts_the_packets_sent_on_its_interface() {
    let test = "netstats::netstats_of_a_real_worker_counts_the_packets_sent_on_its_interface";
    let zeek = crate::require_zeek!(test);
    let Some(mut hosts) = Hosts::or_skip(test, 1) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut c = hosts.command(0, Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent")));
    c.args(["--name", "agent-a", "--listen-port", "2151"])
        .args(["--stop-grace", "5", "--max-revivals", "0"])
        .arg("--zeek-binary")
        .arg(&zeek)
        .current_dir(dir);
    let line = first_line(hosts.start(c, &dir.join("agent.log")));
    assert!(line.contains("zeek-mgmt-agent"), "no ready line: {line:?}");
    // The host's loopback is its own: only the test and the cluster use it.
    std::fs::write(
        dir.join("cluster.ini"),
        format!(
            "[instances]\nagent-a = 127.0.0.1:2151\n\n\
             [manager]\ninstance = agent-a\nrole = manager\nport = {}\n\n\
             [worker-1]\ninstance = agent-a\nrole = worker\ninterface = lo\n",
            free_port()
        ),
    )
    .expect("cluster.ini");
    let client = Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"));
    let agent = ["--agent", "127.0.0.1:2151", "--timeout", "30s"];
    let run = |args: &[&str]| {
        let all: Vec<&str> = agent.iter().chain(args).copied().collect();
        hosts.run(0, client, dir, &all)
    };
    let (code, out, err) = run(&["deploy", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let received = || -> Option<(u64, Value)> {
        let (code, out, _) = run(&["netstats"]);
        let v: Value = serde_json::from_str(&out).ok()?;
        let w = v["results"]["worker-1"].clone();
        (code == 0).then_some(())?;
        Some((w["received"].as_u64()?, w))
    };
    let mut before = None;
    eventually("worker-1's first netstats", Duration::from_secs(20), || {
        before = received();
        before.is_some()
    });
    let (before, first) = before.expect("counters");
    assert_eq!(first["interface"], "lo", "{first}");
    assert_eq!(first["instance"], "agent-a", "{first}");
    const SENT: u64 = 500;
    send_udp(&hosts, dir, SENT as usize);
    let last = std::cell::RefCell::new(Value::Null);
    eventually(
        Later(|| {
            format!(
                "worker-1 counting {SENT} more packets than {before}: {}",
                last.borrow()
            )
        }),
        Duration::from_secs(20),
        || match received() {
            Some((now, w)) => {
                *last.borrow_mut() = w;
                now >= before + SENT
            }
            None => false,
        },
    );
    let last = last.into_inner();
    // The drop rate is the worker's own, from the same counters.
    let (dropped, got) = (last["dropped"].as_u64(), last["received"].as_u64());
    let (dropped, got) = (dropped.expect("dropped"), got.expect("received"));
    let rate = last["drop_percent"]
        .as_f64()
        .expect("a rate once packets came");
    assert!((rate - dropped as f64 * 100.0 / (got + dropped) as f64).abs() < 1e-9);
    // get-nodes' table shows it.
    let (code, out, err) = run(&["get-nodes", "--table"]);
    assert_eq!(code, 0, "{out}{err}");
    let worker = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("worker-1"))
        .unwrap_or_else(|| panic!("no worker-1 in {out}"));
    assert!(worker.ends_with(&format!("{rate:.2}")), "{out}");
}
