//! Deployments with real node processes: how nodes are launched, revived,
//! refused and given up.

use zeek_mgmt_agent::api::events::Notification;
use zeek_mgmt_agent::api::types::{Role, State};

use crate::support::*;

fn read(agent: &Agent, node: &str, file: &str) -> String {
    std::fs::read_to_string(agent.node_dir(node).join(file)).unwrap_or_default()
}

#[tokio::test]
async fn deploys_manager_proxy_and_workers_as_zeek_expects() {
    let agent = Agent::start(&[]);
    let c = agent.connect().await;
    let mut cfg = small_cluster("deploy-1");
    cfg.nodes[2].env.insert("SITE".into(), "lab".into());
    cfg.nodes[2].scripts = Some(vec!["site/extra.zeek".into()]);
    cfg.nodes[2].options = Some(vec![zeek_mgmt_agent::api::types::ZeekOption {
        name: "ignore_checksums".into(),
        value: "T".into(),
    }]);
    cfg.nodes[2].cpu_affinity = Some(0);
    let r = set_config(&c, cfg).await;
    assert!(r.result.success, "{:?}", r.result);
    let per = per_node(&r.result);
    let names: Vec<_> = per.iter().filter_map(|p| p.node.clone()).collect();
    assert_eq!(names, ["manager", "proxy-1", "worker-1", "worker-2"]);
    assert!(per.iter().all(|p| p.success && p.instance == AGENT));

    let nodes = wait_nodes(&c, "all running", all_running).await;
    assert_eq!(nodes.len(), 5);
    let names: Vec<_> = nodes.iter().map(|n| n.node.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    let worker = nodes
        .iter()
        .find(|n| n.node == "worker-1")
        .expect("worker-1");
    assert_eq!(worker.cluster_role, Role::Worker);
    assert_eq!(worker.restarts, Some(0));
    // Figures are sampled in the background.
    wait_nodes(&c, "figures", |s| {
        s.iter()
            .all(|n| n.rss_bytes.is_some() && n.cpu_percent.is_some() && n.uptime_secs.is_some())
    })
    .await;

    for node in ["manager", "proxy-1", "worker-1", "worker-2"] {
        let argv: Vec<String> = read(&agent, node, "argv")
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            argv[0], "policy/frameworks/cluster/backend/zeromq",
            "{node}: {argv:?}"
        );
        // The broker's endpoints right after the backend script, by path.
        assert!(argv[1].ends_with("/cluster-backend.zeek"), "{argv:?}");
        assert!(read(&agent, node, "cluster-backend.zeek").contains(
            "redef Cluster::Backend::ZeroMQ::connect_xpub_endpoint = \"tcp://127.0.0.1:5556\";"
        ));
        assert_eq!(argv[2], "local");
        assert!(
            !argv.iter().any(|a| a.contains("cluster-layout")),
            "{argv:?}"
        );
        let env = read(&agent, node, "env");
        assert!(
            env.lines().any(|l| l == format!("CLUSTER_NODE={node}")),
            "{node}"
        );
        let cwd = read(&agent, node, "cwd");
        assert_eq!(
            std::fs::canonicalize(cwd.trim()).expect("cwd"),
            std::fs::canonicalize(agent.node_dir(node)).expect("dir")
        );
        let layout = read(&agent, node, "cluster-layout.zeek");
        assert!(layout.contains(
            "[\"worker-2\"] = [$node_type=Cluster::WORKER, $ip=127.0.0.1, $manager=\"manager\"],"
        ));
        assert!(layout.contains("redef Cluster::manager_is_logger = T;"));
        assert!(read(&agent, node, "stdout").contains("stand-in node"));
    }
    let argv = read(&agent, "worker-1", "argv");
    let backend_settings = std::path::absolute(agent.node_dir("worker-1"))
        .expect("absolute")
        .join("cluster-backend.zeek");
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "policy/frameworks/cluster/backend/zeromq",
            &backend_settings.display().to_string(),
            "local",
            "site/extra.zeek",
            "ignore_checksums=T"
        ]
    );
    assert!(read(&agent, "worker-1", "env")
        .lines()
        .any(|l| l == "SITE=lab"));
    let pid = node_pid(&nodes, "worker-1");
    let affinity = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        affinity
            .lines()
            .any(|l| l.starts_with("Cpus_allowed_list:") && l.trim_end().ends_with('0')),
        "{affinity}"
    );

    // The same configuration again: success at once, nothing restarted.
    let before: Vec<_> = nodes.iter().map(|n| n.pid).collect();
    let mut again = small_cluster("deploy-1");
    again.nodes[2] = nodes_cfg_worker1();
    let r = set_config(&c, again).await;
    assert!(r.result.success, "{:?}", r.result);
    let after: Vec<_> = get_nodes(&c).await.iter().map(|n| n.pid).collect();
    assert_eq!(before, after);
}

fn nodes_cfg_worker1() -> zeek_mgmt_agent::api::types::Node {
    let mut n = small_cluster("x").nodes[2].clone();
    n.env.insert("SITE".into(), "lab".into());
    n.scripts = Some(vec!["site/extra.zeek".into()]);
    n.options = Some(vec![zeek_mgmt_agent::api::types::ZeekOption {
        name: "ignore_checksums".into(),
        value: "T".into(),
    }]);
    n.cpu_affinity = Some(0);
    n
}

#[tokio::test]
async fn backend_follows_the_zeek_version() {
    let agent = Agent::start_in(
        tempfile::tempdir().expect("tmp").keep().as_path(),
        &[],
        &[("STANDIN_VERSION", "7.2.1")],
    );
    let c = agent.connect().await;
    let r = set_config(&c, cluster("old-zeek", &[("w", Role::Worker, None)])).await;
    assert!(r.result.success, "{:?}", r.result);
    // No backend script; a node without a cluster writes its own logs,
    // rotated by the agent's script.
    let logs = std::path::absolute(agent.node_dir("w").join("agent-logs.zeek")).expect("path");
    assert_eq!(
        read(&agent, "w", "argv").lines().collect::<Vec<_>>(),
        ["local", &logs.display().to_string()]
    );
    let _ = std::fs::remove_dir_all(&agent.dir);
}

#[tokio::test]
async fn killed_node_is_reported_and_revived() {
    let agent = Agent::start(&[]);
    let mut c = agent.connect().await;
    let r = set_config(&c, small_cluster("revive")).await;
    assert!(r.result.success, "{:?}", r.result);
    let nodes = wait_nodes(&c, "all running", all_running).await;
    let pid = node_pid(&nodes, "worker-2");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let n = c
        .wait_notification(
            LONG,
            |n| matches!(n, Notification::Change(ch) if ch.new == State::Crashed),
        )
        .await
        .expect("notify_change to CRASHED");
    let Notification::Change(ch) = n else {
        unreachable!()
    };
    assert_eq!(
        (ch.node.name.as_str(), ch.old, ch.node.state),
        ("worker-2", State::Running, State::Crashed)
    );
    let n = c
        .wait_notification(LONG, |n| matches!(n, Notification::Error(_)))
        .await
        .expect("notify_error");
    let Notification::Error(e) = n else {
        unreachable!()
    };
    assert_eq!(e.node, "worker-2");
    assert!(e.msg.contains("killed by signal 9"), "{}", e.msg);
    c.wait_notification(LONG, |n| matches!(n, Notification::Change(ch) if ch.new == State::Running && ch.node.name == "worker-2"))
        .await
        .expect("revived");
    let nodes = wait_nodes(&c, "revived", all_running).await;
    let w = nodes
        .iter()
        .find(|n| n.node == "worker-2")
        .expect("worker-2");
    assert_ne!(w.pid, Some(i64::from(pid)));
    assert_eq!(w.restarts, Some(1));
    assert!(wait_gone(pid, SECOND), "the killed process was reaped");
}

#[tokio::test]
async fn invalid_configuration_is_refused_whole_and_nodes_keep_running() {
    let agent = Agent::start(&[]);
    let c = agent.connect().await;
    let r = set_config(&c, small_cluster("good")).await;
    assert!(r.result.success);
    let before = wait_nodes(&c, "all running", all_running).await;

    let mut bad = small_cluster("bad");
    bad.nodes[0].p = None; // manager without a port
    bad.nodes[1].name = "../x".into(); // escapes the cluster directory
    bad.nodes[3].name = "worker-1".into(); // duplicate
    bad.nodes[2].env.insert("A=B".into(), "c".into());
    let r = set_config(&c, bad).await;
    assert!(!r.result.success);
    let err = &r.result.error;
    for expect in [
        "node \"manager\" is a manager and needs a port",
        "node name \"../x\" is invalid",
        "duplicate node name \"worker-1\"",
        "env key \"A=B\"",
    ] {
        assert!(err.contains(expect), "missing {expect:?} in {err}");
    }
    assert!(!agent.dir.join("x").exists() && !agent.dir.join("cluster/../x").exists());
    let after = get_nodes(&c).await;
    assert_eq!(
        before.iter().map(|n| (&n.node, n.pid)).collect::<Vec<_>>(),
        after.iter().map(|n| (&n.node, n.pid)).collect::<Vec<_>>()
    );
    assert!(all_running(&after));
}

#[tokio::test]
async fn failed_launches_are_reported_per_node() {
    let agent = Agent::start(&["--max-revivals", "2"]);
    let mut c = agent.connect().await;
    let mut cfg = cluster(
        "fail",
        &[
            ("good", Role::Worker, None),
            ("broken", Role::Worker, None),
            ("loop", Role::Worker, None),
        ],
    );
    cfg.nodes[1]
        .env
        .insert("STANDIN_FAIL_START".into(), "1".into());
    cfg.nodes[2]
        .env
        .insert("STANDIN_CRASH_AFTER".into(), "0".into());
    let r = set_config(&c, cfg).await;
    assert!(!r.result.success);
    let per = per_node(&r.result);
    let by = |n: &str| {
        per.iter()
            .find(|p| p.node.as_deref() == Some(n))
            .expect("result")
            .clone()
    };
    assert!(by("good").success);
    let broken = by("broken");
    assert!(!broken.success);
    assert!(
        broken.error.contains("exited with code 1"),
        "{}",
        broken.error
    );
    assert!(
        broken
            .error
            .contains("fatal error: stand-in told to fail at start"),
        "{}",
        broken.error
    );
    assert!(!by("loop").success);

    // Crashing in a loop: revived twice, then given up.
    c.wait_notification(
        LONG,
        |n| matches!(n, Notification::Error(e) if e.node == "loop" && e.msg.contains("given up")),
    )
    .await
    .expect("given up");
    let nodes = wait_nodes(&c, "loop failed", |s| {
        s.iter()
            .any(|n| n.node == "loop" && n.state == State::Failed)
    })
    .await;
    let lp = nodes.iter().find(|n| n.node == "loop").expect("loop");
    assert_eq!(lp.restarts, Some(2));
    assert_eq!(lp.pid, None);
    let good = nodes.iter().find(|n| n.node == "good").expect("good");
    assert_eq!(good.state, State::Running);
}

#[tokio::test]
async fn missing_node_program_fails_that_node_only() {
    let agent = Agent::start(&["--zeek-binary", "/nonexistent/zeek"]);
    let c = agent.connect().await;
    let r = set_config(&c, cluster("nobin", &[("w", Role::Worker, None)])).await;
    assert!(!r.result.success);
    let per = per_node(&r.result);
    assert!(per[0].error.contains("No such file"), "{}", per[0].error);
    let nodes = get_nodes(&c).await;
    assert_eq!(
        nodes.iter().find(|n| n.node == "w").map(|n| n.state),
        Some(State::Failed)
    );
}

#[tokio::test]
async fn crash_loop_follows_the_revival_policy_then_fails() {
    // The first revival at once, then 0.2 s doubling every third attempt:
    // 0, 0.2, 0.2, 0.4.
    let agent = Agent::start(&["--revive-delay", "0.2", "--max-revivals", "4"]);
    let mut c = agent.connect().await;
    let mut cfg = cluster("loop", &[("w", Role::Worker, None)]);
    cfg.nodes[0]
        .env
        .insert("STANDIN_CRASH_AFTER".into(), "0".into());
    let rx = c
        .start_request(zeek_mgmt_agent::api::events::Request::SetConfiguration(
            zeek_mgmt_agent::api::events::SetConfigurationRequest {
                reqid: "loop".into(),
                config: cfg,
            },
        ))
        .expect("send");
    let mut crashed_at = Vec::new();
    let mut gaps = Vec::new();
    loop {
        let n = c
            .wait_notification(LONG, |n| {
                matches!(n, Notification::Change(_) | Notification::Error(_))
            })
            .await
            .expect("notification");
        let now = std::time::Instant::now();
        match n {
            Notification::Change(ch) if ch.new == State::Crashed => crashed_at.push(now),
            Notification::Change(ch) if ch.new == State::Pending && ch.old == State::Crashed => {
                gaps.push(now - *crashed_at.last().expect("crashed first"));
            }
            Notification::Change(ch) if ch.new == State::Failed => break,
            _ => {}
        }
    }
    assert!(!rx.await.expect("response").result.success);
    assert_eq!(crashed_at.len(), 5, "the launch and four revivals crashed");
    let expected = [0, 200, 200, 400];
    assert_eq!(gaps.len(), expected.len());
    // Measured where the notifications arrive, so allow a little jitter
    // between the two: a quarter of the delay.
    for (gap, ms) in gaps.iter().zip(expected) {
        assert!(
            gap.as_millis() >= ms * 3 / 4,
            "revival after {gap:?}, policy says {ms} ms: {gaps:?}"
        );
    }
    assert!(
        gaps[3] > gaps[1] * 3 / 2,
        "the delay doubles at the fourth attempt: {gaps:?}"
    );
    // The error follows the change to FAILED.
    let n = c
        .wait_notification(LONG, |n| matches!(n, Notification::Error(_)))
        .await
        .expect("notify_error");
    assert!(
        matches!(n, Notification::Error(e) if e.msg.contains("given up after 4 failed revivals"))
    );
    let nodes = get_nodes(&c).await;
    assert_eq!(nodes[1].state, State::Failed);
}

#[tokio::test]
async fn a_node_ignoring_sigterm_is_killed_after_the_grace_period() {
    let agent = Agent::start(&["--stop-grace", "0.5"]);
    let mut c = agent.connect().await;
    let mut cfg = cluster("stubborn", &[("w", Role::Worker, None)]);
    cfg.nodes[0]
        .env
        .insert("STANDIN_IGNORE_TERM".into(), "1".into());
    assert!(set_config(&c, cfg).await.result.success);
    let nodes = wait_nodes(&c, "running", all_running).await;
    let pid = node_pid(&nodes, "w");
    // The stand-in's trap is in place before we stop it.
    let trapped = agent.node_dir("w").join("ignoring-term");
    eventually("the stand-in's SIGTERM trap", LONG, || trapped.exists());
    let started = std::time::Instant::now();
    let r = c
        .request(
            zeek_mgmt_agent::api::events::Request::AgentStandby(
                zeek_mgmt_agent::api::events::AgentStandbyRequest { reqid: "s".into() },
            ),
            LONG,
        )
        .await
        .expect("standby");
    assert!(r.result.success);
    assert!(
        started.elapsed().as_millis() >= 500,
        "answered before the grace period ended"
    );
    c.wait_notification(LONG, |n| matches!(n, Notification::Change(ch) if ch.node.name == "w" && ch.new == State::Stopped))
        .await
        .expect("the stop is reported");
    assert!(!alive(pid));
    agent.wait_log("node ignored SIGTERM; sending SIGKILL", 1);
}

#[tokio::test]
async fn a_program_that_becomes_unusable_fails_only_the_nodes_it_touches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let zeek = tmp.path().join("zeek");
    std::fs::copy(stand_in(), &zeek).expect("copy");
    let agent = Agent::start_in(
        tmp.path(),
        &["--zeek-binary", zeek.to_str().expect("utf-8")],
        &[],
    );
    let mut c = agent.connect().await;
    assert!(
        set_config(
            &c,
            cluster(
                "two",
                &[("a", Role::Worker, None), ("b", Role::Worker, None)]
            )
        )
        .await
        .result
        .success
    );
    let nodes = wait_nodes(&c, "running", all_running).await;
    // The program loses its execute bit (say, a botched upgrade), then
    // node a crashes: its revival cannot start, node b runs on.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&zeek, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    unsafe {
        libc::kill(node_pid(&nodes, "a"), libc::SIGKILL);
    }
    let n = c
        .wait_notification(
            LONG,
            |n| matches!(n, Notification::Error(e) if e.msg.contains("failed to launch")),
        )
        .await
        .expect("notify_error");
    let Notification::Error(e) = n else {
        unreachable!()
    };
    assert_eq!(e.node, "a");
    assert!(e.msg.contains("Permission denied"), "{}", e.msg);
    let after = get_nodes(&c).await;
    let state = |name: &str| after.iter().find(|n| n.node == name).map(|n| n.state);
    assert_eq!(state("a"), Some(State::Failed));
    assert_eq!(state("b"), Some(State::Running));
    assert_eq!(node_pid(&after, "b"), node_pid(&nodes, "b"));
    std::fs::remove_dir_all(agent.dir.join("cluster")).ok();
}

#[tokio::test]
async fn a_relative_program_path_means_the_agents_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::copy(stand_in(), tmp.path().join("zeek")).expect("copy");
    let agent = Agent::start_in(tmp.path(), &["--zeek-binary", "./zeek"], &[]);
    let c = agent.connect().await;
    let r = set_config(&c, cluster("rel", &[("w", Role::Worker, None)])).await;
    assert!(r.result.success, "{:?}", r.result);
}

#[tokio::test]
async fn without_pidfd_nodes_run_and_are_revived() {
    // As on a kernel or container without pidfd_open: a thread per node
    // waits for its exit.
    let tmp = tempfile::tempdir().expect("tmp");
    let agent = Agent::start_in(
        tmp.path(),
        &[],
        &[(zeek_mgmt_agent::agent::process::NO_PIDFD_ENV, "1")],
    );
    let mut c = agent.connect().await;
    let r = set_config(&c, small_cluster("no-pidfd")).await;
    assert!(r.result.success, "{:?}", r.result);
    let nodes = wait_nodes(&c, "all running", all_running).await;
    // Still the first processes, never killed and revived.
    assert!(
        nodes.iter().all(|n| n.restarts.unwrap_or(0) == 0),
        "{nodes:#?}"
    );
    for node in ["manager", "proxy-1", "worker-1", "worker-2"] {
        let pid = node_pid(&nodes, node);
        assert!(alive(pid), "{node} is alive");
        let launches = std::fs::read_to_string(agent.node_dir(node).join("pids"))
            .expect("pids")
            .lines()
            .count();
        assert_eq!(launches, 1, "{node} was launched once");
    }
    let pid = node_pid(&nodes, "worker-1");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    c.wait_notification(LONG, |n| {
        matches!(n, Notification::Change(ch) if ch.new == State::Crashed && ch.node.name == "worker-1")
    })
    .await
    .expect("CRASHED");
    c.wait_notification(LONG, |n| {
        matches!(n, Notification::Change(ch) if ch.new == State::Running && ch.node.name == "worker-1")
    })
    .await
    .expect("revived");
    assert!(wait_gone(pid, SECOND), "the killed process was reaped");
}
