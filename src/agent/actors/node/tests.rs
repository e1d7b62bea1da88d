use super::*;
use crate::testing::{eventually, Probe};

fn spec(dir: &std::path::Path, script: &str) -> SpawnSpec {
    SpawnSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: dir.to_owned(),
        env: vec![],
        cpu: None,
        unset: vec![],
        files: vec![],
    }
}

fn timing(settle_ms: u64, grace_ms: u64) -> NodeTiming {
    NodeTiming::settle_only(
        Duration::from_millis(settle_ms),
        None,
        Duration::from_millis(grace_ms),
    )
}

fn events(seen: &crate::testing::Seen<NodeReport>) -> Vec<NodeEvent> {
    seen.all().into_iter().map(|r| r.event).collect()
}

#[actix_rt::test]
async fn spawn_settle_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (probe, seen) = Probe::<NodeReport>::start();
    let node = NodeProcess::new(
        "n".into(),
        ProcId(1),
        spec(dir.path(), "exec sleep 30"),
        timing(20, 2000),
        probe,
    )
    .start();
    eventually(
        "events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle })",
        Duration::from_secs(5),
        || events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle }),
    )
    .await;
    assert!(matches!(events(&seen)[0], NodeEvent::Spawned { .. }));
    node.do_send(StopNode);
    eventually("events(&seen).len() == 3", Duration::from_secs(5), || {
        events(&seen).len() == 3
    })
    .await;
    assert_eq!(
        events(&seen)[2],
        NodeEvent::Exited {
            status: process::Exit::Signal(libc::SIGTERM),
            requested: true,
            collided: false,
        }
    );
}

#[actix_rt::test]
async fn sigkill_after_grace_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (probe, seen) = Probe::<NodeReport>::start();
    let node = NodeProcess::new(
        "n".into(),
        ProcId(2),
        spec(
            dir.path(),
            "trap '' TERM; echo up; while :; do sleep 0.05; done",
        ),
        timing(0, 200),
        probe,
    )
    .start();
    eventually(
        "events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle })",
        Duration::from_secs(5),
        || events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle }),
    )
    .await;
    // Let the shell install its trap.
    eventually(
        "process::tail(&dir.path().join(\"stdout\"), 1) == \"up\"",
        Duration::from_secs(5),
        || process::tail(&dir.path().join("stdout"), 1) == "up",
    )
    .await;
    node.do_send(StopNode);
    eventually("events(&seen).len() == 3", Duration::from_secs(5), || {
        events(&seen).len() == 3
    })
    .await;
    assert_eq!(
        events(&seen)[2],
        NodeEvent::Exited {
            status: process::Exit::Signal(libc::SIGKILL),
            requested: true,
            collided: false,
        }
    );
}

#[actix_rt::test]
async fn premature_exit_and_failed_spawn_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (probe, seen) = Probe::<NodeReport>::start();
    NodeProcess::new(
        "n".into(),
        ProcId(3),
        spec(dir.path(), "exit 4"),
        timing(500, 100),
        probe.clone(),
    )
    .start();
    let mut bad = spec(dir.path(), "");
    bad.program = "/nonexistent".into();
    NodeProcess::new("m".into(), ProcId(4), bad, timing(0, 100), probe).start();
    eventually("seen.all().len() == 3", Duration::from_secs(5), || {
        seen.all().len() == 3
    })
    .await;
    let all = seen.all();
    let n: Vec<_> = all
        .iter()
        .filter(|r| r.node == "n")
        .map(|r| r.event.clone())
        .collect();
    assert_eq!(
        n.len(),
        2,
        "no Running for a node that died while settling: {n:?}"
    );
    assert_eq!(
        n[1],
        NodeEvent::Exited {
            status: process::Exit::Code(4),
            requested: false,
            collided: false,
        }
    );
    let m: Vec<_> = all.iter().filter(|r| r.node == "m").collect();
    assert!(matches!(m[0].event, NodeEvent::SpawnFailed { .. }));
}

#[actix_rt::test]
async fn port_check_waits_for_the_port_to_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Reserve a free port, then release it: nothing listens there yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let (probe, seen) = Probe::<NodeReport>::start();
    let node = NodeProcess::new(
        "n".into(),
        ProcId(5),
        spec(dir.path(), "exec sleep 30"),
        NodeTiming::settle_only(
            Duration::from_millis(10),
            Some(addr),
            Duration::from_millis(500),
        ),
        probe,
    )
    .start();
    eventually("!seen.is_empty()", Duration::from_secs(5), || {
        !seen.is_empty()
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle }),
        "running before its port accepts"
    );
    let _listener = std::net::TcpListener::bind(addr).expect("bind the node's port");
    eventually(
        "events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle })",
        Duration::from_secs(5),
        || events(&seen).contains(&NodeEvent::Running { rule: Rule::Settle }),
    )
    .await;
    node.do_send(StopNode);
    eventually("events(&seen).len() == 3", Duration::from_secs(5), || {
        events(&seen).len() == 3
    })
    .await;
}
