//! The agent's own life: connect mode, shutdown, being killed, restarts,
//! persisted state.

use std::time::Duration;

use tokio::net::TcpListener;
use zeek_mgmt_agent::api::events::Notification;
use zeek_mgmt_agent::api::types::{Role, State};
use zeek_mgmt_agent::protocol::to_agent::{Connection, LinkError, PeerOptions};

use crate::support::*;

#[tokio::test]
async fn connect_mode_dials_and_redials() {
    let controller = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = controller.local_addr().expect("addr").port();
    let agent = Agent::start_dialling(port, &[]);
    assert_eq!(agent.addr, None, "--no-listen");
    let mut c = tokio::time::timeout(
        LONG,
        Connection::accept(&controller, PeerOptions::default()),
    )
    .await
    .expect("dialled in time")
    .expect("hello");
    assert_eq!(c.agent().endpoint, AGENT);
    let hello = c.wait_notification(LONG, |_| true).await.expect("check-in");
    assert!(matches!(hello, Notification::AgentHello(h) if h.host.to_string() == "127.0.0.1"));
    assert_eq!(get_nodes(&c).await.len(), 1);
    drop(c);
    // The agent dials again after the controller drops it.
    let mut c = tokio::time::timeout(
        LONG,
        Connection::accept(&controller, PeerOptions::default()),
    )
    .await
    .expect("redialled in time")
    .expect("hello");
    assert!(matches!(
        c.wait_notification(LONG, |_| true).await,
        Ok(Notification::AgentHello(_))
    ));
    assert_eq!(get_nodes(&c).await.len(), 1);
}

#[tokio::test]
async fn connect_mode_keeps_trying_while_the_controller_is_down() {
    // Reserve a port, then close it: the first dials fail.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let agent = Agent::start(&[
        "--controller-addr",
        "127.0.0.1",
        "--controller-port",
        &port.to_string(),
        "--reconnect-interval",
        "0.1",
    ]);
    assert!(agent.addr.is_some(), "listens in connect mode by default");
    // The first dial fails: nothing listens yet.
    agent.wait_log("cannot reach the controller", 1);
    let controller = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    let c = tokio::time::timeout(
        LONG,
        Connection::accept(&controller, PeerOptions::default()),
    )
    .await
    .expect("dialled once the controller is up")
    .expect("hello");
    assert_eq!(c.agent().endpoint, AGENT);
}

#[tokio::test]
async fn sigterm_stops_every_node_and_exits_zero() {
    let mut agent = Agent::start(&["--stop-grace", "0.5"]);
    let c = agent.connect().await;
    let mut cfg = small_cluster("term");
    cfg.nodes[3]
        .env
        .insert("STANDIN_IGNORE_TERM".into(), "1".into());
    assert!(set_config(&c, cfg).await.result.success);
    let nodes = wait_nodes(&c, "all running", all_running).await;
    let pids: Vec<i32> = nodes
        .iter()
        .filter(|n| n.node != AGENT)
        .map(|n| n.pid.expect("pid") as i32)
        .collect();
    assert_eq!(pids.len(), 4);
    let status = agent.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    for pid in pids {
        assert!(!alive(pid), "node {pid} outlived the agent");
    }
    for node in ["manager", "proxy-1", "worker-1", "worker-2"] {
        assert!(
            node_processes(&agent.node_dir(node), node).is_empty(),
            "{node}"
        );
    }
    assert!(agent.log().contains("SIGTERM received"));
}

#[tokio::test]
async fn sigkill_then_restart_brings_the_same_nodes_back_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut agent = Agent::start_in(tmp.path(), &[], &[]);
    let c = agent.connect().await;
    assert!(
        set_config(&c, small_cluster("persist"))
            .await
            .result
            .success
    );
    let nodes = wait_nodes(&c, "all running", all_running).await;
    let old: Vec<i32> = nodes
        .iter()
        .filter(|n| n.node != AGENT)
        .map(|n| n.pid.expect("pid") as i32)
        .collect();
    drop(c);
    let status = agent.signal_and_wait(libc::SIGKILL);
    assert_eq!(status.code(), None);
    // No orphans: every node dies with the agent.
    for pid in &old {
        assert!(
            wait_gone(*pid, Duration::from_secs(5)),
            "node {pid} outlived a killed agent"
        );
    }
    drop(agent);

    let agent = Agent::start_in(tmp.path(), &[], &[]);
    let c = agent.connect().await;
    let nodes = wait_nodes(&c, "back and running", |s| s.len() == 5 && all_running(s)).await;
    for node in ["manager", "proxy-1", "worker-1", "worker-2"] {
        let pid = node_pid(&nodes, node);
        assert!(!old.contains(&pid));
        let procs = node_processes(&agent.node_dir(node), node);
        assert_eq!(procs, vec![pid], "exactly one process for {node}");
    }
}

#[tokio::test]
async fn a_second_agent_on_the_same_state_directory_touches_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let first = Agent::start_in(tmp.path(), &[], &[]);
    let c = first.connect().await;
    assert!(set_config(&c, small_cluster("held")).await.result.success);
    let before = wait_nodes(&c, "all running", all_running).await;
    // The pids file is written a moment after the launches.
    let pids_file = tmp.path().join("state/nodes.pids");
    let recorded = recorded_pids(&pids_file, 4);
    assert_eq!(recorded.lines().count(), 4, "{recorded}");

    let (status, stderr) = Agent::run_to_exit(tmp.path(), &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let state_dir = tmp.path().join("state").display().to_string();
    assert!(stderr.contains(&state_dir), "names the directory: {stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "names the holder: {stderr}"
    );
    assert!(!stderr.contains("ended leftover"), "{stderr}");

    // The first agent's nodes and files are as they were.
    assert_eq!(std::fs::read_to_string(&pids_file).expect("pids"), recorded);
    let after = get_nodes(&c).await;
    let view = |s: &[zeek_mgmt_agent::api::types::NodeStatus]| {
        s.iter()
            .map(|n| (n.node.clone(), n.pid, n.state, n.restarts))
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&before), view(&after));
    for n in before.iter().filter(|n| n.node != AGENT) {
        assert!(alive(n.pid.expect("pid") as i32), "{} alive", n.node);
    }
    assert!(!first.log().contains("ended leftover"));
}

#[tokio::test]
async fn helpers_of_nodes_left_by_a_killed_agent_are_ended_at_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut agent = Agent::start_in(tmp.path(), &[], &[]);
    let c = agent.connect().await;
    let mut config = cluster("helpers", &[("w", Role::Worker, None)]);
    config.nodes[0]
        .env
        .insert("STANDIN_HELPER".into(), "1".into());
    assert!(set_config(&c, config).await.result.success);
    let nodes = wait_nodes(&c, "running", all_running).await;
    let node = node_pid(&nodes, "w");
    let helper_file = agent.node_dir("w").join("helper");
    let deadline = std::time::Instant::now() + LONG;
    let helper: i32 = loop {
        if let Some(p) = std::fs::read_to_string(&helper_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "no helper started");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Once the pids file names the node, kill the agent outright.
    let recorded = recorded_pids(&tmp.path().join("state/nodes.pids"), 1);
    assert!(recorded.starts_with(&format!("{node}\t")), "{recorded}");
    drop(c);
    agent.signal_and_wait(libc::SIGKILL);
    drop(agent);
    assert!(
        wait_gone(node, Duration::from_secs(5)),
        "the node died with the agent"
    );
    assert!(
        alive(helper),
        "the helper outlives the node (parent-death signal reaches only the node)"
    );

    let agent = Agent::start_in(tmp.path(), &[], &[]);
    assert!(
        wait_gone(helper, LONG),
        "helper {helper} of the earlier run was not ended:\n{}",
        agent.log()
    );
    agent.wait_log(&format!("ended leftover process {helper} of node w"), 1);
}

#[tokio::test]
async fn leftovers_of_an_earlier_run_are_ended() {
    // A node process the agent did not start, recorded as if it had.
    let tmp = tempfile::tempdir().expect("tmp");
    let node_dir = tmp.path().join("cluster/old");
    std::fs::create_dir_all(&node_dir).expect("dir");
    std::fs::create_dir_all(tmp.path().join("state")).expect("state");
    let mut stray = std::process::Command::new(stand_in())
        .current_dir(&node_dir)
        .env("CLUSTER_NODE", "old")
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("stray");
    let pid = stray.id();
    // Recorded once it runs as the node program (the stand-in writes its
    // pid then); before, it may still be `env` on its way to bash.
    let deadline = std::time::Instant::now() + LONG;
    while !node_dir.join("pids").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stray never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(
        tmp.path().join("state/nodes.pids"),
        format!("{pid}\told\t{}\n", stand_in().display()),
    )
    .expect("pids");
    let agent = Agent::start_in(tmp.path(), &[], &[]);
    let deadline = std::time::Instant::now() + LONG;
    while stray.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "leftover not ended:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while !agent.log().contains("ended leftover process") {
        assert!(
            std::time::Instant::now() < deadline,
            "not logged:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

use std::os::unix::process::CommandExt as _;

/// The pids file once it lists `nodes` processes (bounded wait).
fn recorded_pids(path: &std::path::Path, nodes: usize) -> String {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() == nodes {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pids file never listed {nodes} processes: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Persisted configurations kept aside in the state directory under `dir`.
fn kept_aside(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("state"))
        .expect("ls")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("configuration.cbor.bad-")
        })
        .count()
}

#[tokio::test]
async fn corrupt_persisted_configuration_is_kept_aside() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(tmp.path().join("state")).expect("state");
    std::fs::write(tmp.path().join("state/configuration.cbor"), b"\xa2\x62id").expect("write");
    let agent = Agent::start_in(tmp.path(), &[], &[]);
    let c = agent.connect().await;
    assert_eq!(get_nodes(&c).await.len(), 1, "runs with no configuration");
    assert_eq!(kept_aside(tmp.path()), 1);
    agent.wait_log("persisted configuration is unusable", 1);
}

#[tokio::test]
async fn an_invalid_persisted_configuration_is_not_installed() {
    // Written by an earlier run on a host with more CPUs, say: a CPU beyond
    // any CPU set, and two managers.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut config = cluster(
        "from-elsewhere",
        &[
            ("manager", Role::Manager, Some(27760)),
            ("manager-2", Role::Manager, Some(27761)),
            ("worker-1", Role::Worker, None),
        ],
    );
    config.nodes[2].cpu_affinity = Some(5000);
    zeek_mgmt_agent::agent::state::StateDir::new(tmp.path().join("state"))
        .save_config(&config)
        .expect("persist");
    let agent = Agent::start_in(tmp.path(), &[], &[]);
    let c = agent.connect().await;
    let log = agent.wait_log("persisted configuration is unusable", 1);
    assert!(log.contains("cpu_affinity 5000"), "{log}");
    assert!(log.contains("2 managers"), "{log}");
    let nodes = get_nodes(&c).await;
    assert_eq!(nodes.len(), 1, "runs with no configuration: {nodes:?}");
    assert!(!agent.node_dir("worker-1").exists(), "nothing was launched");
    assert_eq!(kept_aside(tmp.path()), 1, "kept aside, not lost");
}

#[tokio::test]
async fn unwritable_state_directory_refuses_and_keeps_running() {
    // Root writes anywhere, so make the state "directory" a file instead of
    // taking its permissions away.
    let tmp = tempfile::tempdir().expect("tmp");
    let agent = Agent::start_in(tmp.path(), &[], &[]);
    let c = agent.connect().await;
    assert!(
        set_config(&c, cluster("one", &[("w", Role::Worker, None)]))
            .await
            .result
            .success
    );
    let before = wait_nodes(&c, "running", all_running).await;
    // Replace the state directory by a file: nothing can be persisted.
    // (The agent may be rewriting its pids file meanwhile: try again.)
    let state = tmp.path().join("state");
    let mut removed = std::fs::remove_dir_all(&state);
    for _ in 0..50 {
        if removed.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        removed = std::fs::remove_dir_all(&state);
    }
    removed.expect("rm");
    std::fs::write(tmp.path().join("state"), b"not a directory").expect("file");
    let r = set_config(&c, cluster("two", &[("v", Role::Worker, None)])).await;
    assert!(!r.result.success);
    assert!(
        r.result.error.contains("cannot persist"),
        "{}",
        r.result.error
    );
    let after = get_nodes(&c).await;
    assert_eq!(
        before
            .iter()
            .map(|n| (&n.node, n.pid, n.state))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|n| (&n.node, n.pid, n.state))
            .collect::<Vec<_>>()
    );
    assert!(after.iter().all(|n| n.state == State::Running));
}

#[tokio::test]
async fn a_vanished_peer_does_not_disturb_others() {
    let agent = Agent::start(&["--settle-time", "0.5"]);
    let a = agent.connect().await;
    let b = agent.connect().await;
    let rx = a
        .start_request(zeek_mgmt_agent::api::events::Request::SetConfiguration(
            zeek_mgmt_agent::api::events::SetConfigurationRequest {
                reqid: "gone".into(),
                config: cluster("v", &[("w", Role::Worker, None)]),
            },
        ))
        .expect("send");
    drop(a);
    assert!(rx.await.is_err());
    // Half a frame, then silence, from a third peer.
    let mut half = Connection::connect(agent.addr.expect("addr"), PeerOptions::default())
        .await
        .expect("connect");
    half.send_raw(vec![0, 0, 0, 50, 0xa1]).expect("send");
    let nodes = wait_nodes(&b, "w running", |s| s.len() == 2 && all_running(s)).await;
    assert_eq!(nodes[1].node, "w");
    assert!(matches!(
        half.next_event(Duration::from_millis(100)).await,
        Ok(_) | Err(LinkError::Timeout(_))
    ));
}
