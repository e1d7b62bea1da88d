//! Crash records: every unexpected exit of a node is kept in its directory
//! and listed by `zeek-mgmt-client crashes`, with agents and through the
//! controller; `notify_error` carries the record's summary.

use std::time::Duration;

use serde_json::Value;
use zeek_mgmt_agent::api::events::Notification;
use zeek_mgmt_agent::api::types::State;

use crate::support::controller::Controller;
use crate::support::*;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Whether an aborting process of ours leaves a core file: the kernel
/// writes cores as files (not to a program) and the hard limit allows one.
fn cores_are_files() -> bool {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .and_then(|l| l.split_whitespace().nth(5))
        .unwrap_or("0");
    !pattern.trim().is_empty() && !pattern.starts_with('|') && hard != "0"
}

/// The notify_error of `node`'s next crash.
async fn crash_error(
    c: &mut zeek_mgmt_agent::protocol::to_agent::Connection,
    node: &str,
) -> String {
    let n = c
        .wait_notification(
            LONG,
            |n| matches!(n, Notification::Error(e) if e.node == node),
        )
        .await
        .expect("notify_error");
    match n {
        Notification::Error(e) => e.msg,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_killed_and_an_aborted_node_each_leave_a_record_listed_by_crashes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(tmp.path());
    let agent = Agent::start_dialling(
        controller.agents,
        &["--crash-records", "5", "--no-listen=false"],
    );
    controller.wait_checked_in(AGENT);
    let mut c = agent.connect().await;
    std::fs::write(
        tmp.path().join("cluster.ini"),
        format!(
            "[instances]\n{AGENT}\n\n\
             [manager]\ninstance = {AGENT}\nrole = manager\nport = {}\n\n\
             [worker-1]\ninstance = {AGENT}\nrole = worker\n",
            crate::support::controller::free_port()
        ),
    )
    .expect("cluster.ini");
    let (code, out, err) = controller.ours(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let nodes = wait_nodes(&c, "all running", all_running).await;

    // SIGKILL: the record says so, and notify_error gives its summary.
    let killed = node_pid(&nodes, "worker-1");
    // SAFETY: plain signal delivery to a node process the agent started.
    unsafe {
        libc::kill(killed, libc::SIGKILL);
    }
    let msg = crash_error(&mut c, "worker-1").await;
    assert!(
        msg.starts_with("node worker-1 killed by signal 9 (SIGKILL) after ")
            && msg.contains(" s of running (crash record "),
        "{msg}"
    );
    let running_again = |s: &[zeek_mgmt_agent::api::types::NodeStatus]| {
        s.iter().any(|n| {
            n.node == "worker-1" && n.state == State::Running && n.pid != Some(i64::from(killed))
        })
    };
    let nodes = wait_nodes(&c, "worker-1 revived", running_again).await;

    // An abort (SIGABRT), with a core file allowed.
    let aborted = node_pid(&nodes, "worker-1");
    let dir = agent.dir.join("cluster/worker-1");
    std::fs::write(dir.join("abort-now"), "").expect("abort-now");
    let msg = crash_error(&mut c, "worker-1").await;
    assert!(
        msg.starts_with("node worker-1 killed by signal 6 (SIGABRT) after "),
        "{msg}"
    );
    assert!(
        msg.contains("aborting on request"),
        "the stderr tail: {msg}"
    );

    // With the agent: both records, newest first.
    let addr = agent.addr.expect("the agent listens").to_string();
    let ours = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
            .args(["--agent", &addr])
            .args(args)
            .output()
            .expect("run zeek-mgmt-client");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let mut records = Value::Null;
    eventually("two records of worker-1", Duration::from_secs(10), || {
        let (code, out) = ours(&["crashes"]);
        records = json(&out)["results"]["worker-1"].clone();
        code == 0 && records.as_array().is_some_and(|r| r.len() == 2)
    });
    let (newest, oldest) = (&records[0], &records[1]);
    assert_eq!(
        (newest["signal"].as_i64(), newest["pid"].as_i64()),
        (Some(6), Some(i64::from(aborted))),
        "{newest}"
    );
    assert_eq!(newest["status"], "killed by signal 6 (SIGABRT)");
    assert_eq!(newest["instance"], AGENT);
    assert!(
        newest["stderr"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l == "aborting on request")),
        "{newest}"
    );
    let started = format!("stand-in node worker-1 started with pid {aborted}");
    assert!(
        newest["stdout"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| *l == started)),
        "the launch's own stdout: {newest}"
    );
    // The core the kernel wrote, where it writes cores as files and the
    // stand-in may raise its limit.
    if cores_are_files() {
        let core = newest["core"].as_str().expect("the core file");
        assert!(std::path::Path::new(core).starts_with(&dir), "{core}");
        assert!(std::path::Path::new(core).exists(), "{core}");
    } else {
        skipped(
            "crashes: the core file of an abort",
            "the kernel pipes cores to a program, or core files are limited to 0",
        );
    }
    assert_eq!(
        (oldest["signal"].as_i64(), oldest["pid"].as_i64()),
        (Some(9), Some(i64::from(killed)))
    );
    assert!(oldest["was_running"].as_bool().unwrap_or(false), "{oldest}");
    let file = newest["file"].as_str().expect("the record's file");
    assert!(
        file.starts_with(&dir.join("crashes").display().to_string()),
        "{file}"
    );
    let kept: Value = json(&std::fs::read_to_string(file).expect("record file"));
    assert_eq!(kept["status"], newest["status"]);
    // The manager never crashed: not listed unless named.
    assert!(json(&ours(&["crashes"]).1)["results"]
        .get("manager")
        .is_none());
    assert_eq!(
        json(&ours(&["crashes", "manager"]).1)["results"]["manager"],
        Value::Array(vec![])
    );
    let (code, table) = ours(&["crashes", "--table"]);
    assert_eq!(code, 0, "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].contains("worker-1") && lines[1].contains("SIGABRT"),
        "{table}"
    );
    assert!(lines[2].contains("SIGKILL"), "{table}");

    // Through the controller, the same records.
    let (code, out, err) = controller.ours(&["crashes", "worker-1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["results"]["worker-1"], records, "{out}");
}
