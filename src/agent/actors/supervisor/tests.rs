//! The node supervisor through its messages, with the stand-in node program
//! and a probe in place of the notifier.

use std::path::Path;

use std::time::Duration;

use super::*;
use crate::agent::config::ClusterBackend;
use crate::agent::state::Loaded;
use crate::api::types::{Addr as ZeekAddr, Instance};
use crate::testing::{eventually, Probe, Seen};

const NAME: &str = "agent-s";

fn config(dir: &Path) -> Config {
    Config {
        name: NAME.into(),
        cluster_dir: dir.join("cluster"),
        state_dir: dir.join("state"),
        zeek_binary: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stand-in-node.sh"),
        cluster_backend: ClusterBackend::None,
        // The bash stand-in has no node channel.
        node_channel: crate::agent::channel::Mode::Off,
        settle_time: Duration::from_millis(50),
        stop_grace: Duration::from_millis(500),
        revive_delay: Duration::from_millis(20),
        sample_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

fn start(cfg: Config) -> (Addr<NodeSupervisor>, Seen<Notification>) {
    let (probe, seen) = Probe::<Notification>::start();
    (
        NodeSupervisor::new(Arc::new(cfg), Some(2151), probe).start(),
        seen,
    )
}

fn cluster(id: &str, nodes: &[(&str, Role)]) -> Configuration {
    Configuration {
        id: id.into(),
        instances: vec![Instance {
            name: NAME.into(),
            host: ZeekAddr("127.0.0.1".parse().expect("addr")),
            listen_port: None,
        }],
        nodes: nodes
            .iter()
            .map(|(n, role)| {
                let mut node = Node::new(n, NAME, *role);
                if matches!(role, Role::Manager | Role::Logger) {
                    node.p = Some(Port::tcp(30000 + n.len() as u16));
                }
                node
            })
            .collect(),
        zeromq: None,
    }
}

async fn deploy(s: &Addr<NodeSupervisor>, c: Configuration) -> ApiResult {
    s.send(SetConfigurationRequest {
        reqid: "r".into(),
        config: c,
    })
    .await
    .expect("answered")
    .result
}

async fn statuses(s: &Addr<NodeSupervisor>) -> Vec<NodeStatus> {
    match s
        .send(GetNodesRequest { reqid: "g".into() })
        .await
        .expect("answered")
        .result
        .data
    {
        Some(ResultData::NodeStatuses(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn changes(seen: &Seen<Notification>, node: &str) -> Vec<(State, State)> {
    seen.all()
        .into_iter()
        .filter_map(|n| match n {
            Notification::Change(c) if c.node.name == node => Some((c.old, c.new)),
            _ => None,
        })
        .collect()
}

#[actix_rt::test]
async fn deploys_reports_and_answers_get_nodes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, seen) = start(config(dir.path()));
    let r = deploy(
        &s,
        cluster("c1", &[("manager", Role::Manager), ("w1", Role::Worker)]),
    )
    .await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.instance, NAME);
    let Some(ResultData::Results(per)) = &r.data else {
        panic!("{r:?}")
    };
    assert_eq!(
        per.iter()
            .map(|p| p.node.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["manager", "w1"]
    );
    assert_eq!(changes(&seen, "w1"), [(State::Pending, State::Running)]);
    let st = statuses(&s).await;
    assert_eq!(
        st.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        [NAME, "manager", "w1"]
    );
    assert_eq!(st[0].mgmt_role, MgmtRole::Agent);
    assert_eq!(st[0].p, Some(Port::tcp(2151)));
    assert!(st[1..]
        .iter()
        .all(|n| n.state == State::Running && n.pid.is_some()));
    assert!(seen
        .any(|n| matches!(n, Notification::Log(l) if l.msg.contains("applied: 2 nodes running"))));
    // Persisted before acting.
    assert!(
        matches!(StateDir::new(dir.path().join("state")).load_config(), Loaded::Config(c) if c.id == "c1")
    );
    s.send(Shutdown).await.expect("shutdown");
}

#[actix_rt::test]
async fn invalid_configuration_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, seen) = start(config(dir.path()));
    assert!(
        deploy(&s, cluster("ok", &[("w1", Role::Worker)]))
            .await
            .success
    );
    let before = statuses(&s).await;
    let r = deploy(
        &s,
        cluster("bad", &[("x/y", Role::Worker), ("w2", Role::None)]),
    )
    .await;
    assert!(!r.success);
    assert!(
        r.error.starts_with("invalid configuration: "),
        "{}",
        r.error
    );
    assert!(
        r.error.contains("node name \"x/y\" is invalid") && r.error.contains("no cluster role"),
        "{}",
        r.error
    );
    let after = statuses(&s).await;
    assert_eq!(
        before.iter().map(|n| (&n.node, n.pid)).collect::<Vec<_>>(),
        after.iter().map(|n| (&n.node, n.pid)).collect::<Vec<_>>()
    );
    assert!(changes(&seen, "w1")
        .iter()
        .all(|(_, new)| *new == State::Running));
    s.send(Shutdown).await.expect("shutdown");
}

#[actix_rt::test]
async fn a_new_configuration_replaces_the_old_nodes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, seen) = start(config(dir.path()));
    assert!(
        deploy(&s, cluster("one", &[("a", Role::Worker)]))
            .await
            .success
    );
    assert!(
        deploy(&s, cluster("two", &[("b", Role::Worker)]))
            .await
            .success
    );
    assert_eq!(
        changes(&seen, "a"),
        [
            (State::Pending, State::Running),
            (State::Running, State::Stopped)
        ]
    );
    let st = statuses(&s).await;
    assert_eq!(
        st.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        [NAME, "b"]
    );
    s.send(Shutdown).await.expect("shutdown");
}

#[actix_rt::test]
async fn standby_stops_every_node_and_clears_the_configuration() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, seen) = start(config(dir.path()));
    assert!(
        deploy(
            &s,
            cluster("c", &[("w1", Role::Worker), ("w2", Role::Worker)])
        )
        .await
        .success
    );
    let pids: Vec<i64> = statuses(&s)
        .await
        .iter()
        .skip(1)
        .filter_map(|n| n.pid)
        .collect();
    let r = s
        .send(AgentStandbyRequest { reqid: "s".into() })
        .await
        .expect("answered")
        .result;
    assert!(r.success, "{r:?}");
    for pid in pids {
        // SAFETY: existence check only.
        let gone = unsafe { libc::kill(pid as i32, 0) } != 0;
        assert!(gone, "node {pid} still running after standby answered");
    }
    assert_eq!(
        changes(&seen, "w1").last(),
        Some(&(State::Running, State::Stopped))
    );
    assert_eq!(statuses(&s).await.len(), 1);
    assert!(matches!(
        StateDir::new(dir.path().join("state")).load_config(),
        Loaded::None
    ));
}

#[actix_rt::test]
async fn crash_loop_is_revived_with_backoff_then_given_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(dir.path());
    cfg.max_revivals = 3;
    let (s, seen) = start(cfg);
    let mut c = cluster("loop", &[("w", Role::Worker)]);
    c.nodes[0]
        .env
        .insert("STANDIN_CRASH_AFTER".into(), "0".into());
    let r = deploy(&s, c).await;
    assert!(!r.success);
    eventually(
        "seen.any(|n| matches!(n, Notification::Error(e) if e.msg.contains(\"given up\")))",
        Duration::from_secs(10),
        || seen.any(|n| matches!(n, Notification::Error(e) if e.msg.contains("given up"))),
    )
    .await;
    let st = statuses(&s).await;
    assert_eq!((st[1].state, st[1].restarts), (State::Failed, Some(3)));
    let crashes = changes(&seen, "w")
        .iter()
        .filter(|(_, n)| *n == State::Crashed)
        .count();
    assert_eq!(crashes, 4, "the first launch and three revivals");
    assert_eq!(
        changes(&seen, "w").last(),
        Some(&(State::Crashed, State::Failed))
    );
}

#[test]
fn the_first_revival_is_at_once_then_delays_double_every_third_attempt() {
    let s = Duration::from_secs(1);
    let got: Vec<u64> = (1..=11)
        .map(|a| revival_delay(a, s, Duration::from_secs(60)).as_secs())
        .collect();
    assert_eq!(got, [0, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8]);
    assert_eq!(revival_delay(1, s, Duration::from_secs(60)), Duration::ZERO);
    assert_eq!(
        revival_delay(40, s, Duration::from_secs(60)),
        Duration::from_secs(60)
    );
    assert_eq!(
        revival_delay(u32::MAX, s, Duration::from_secs(60)),
        Duration::from_secs(60)
    );
}

#[actix_rt::test]
async fn shutdown_keeps_the_configuration_and_a_restart_brings_it_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, _) = start(config(dir.path()));
    assert!(
        deploy(&s, cluster("keep", &[("w1", Role::Worker)]))
            .await
            .success
    );
    s.send(Shutdown).await.expect("shutdown");
    assert_eq!(statuses(&s).await.len(), 1);
    let (s2, seen2) = start(config(dir.path()));
    eventually(
        "changes(&seen2, \"w1\").contains(&(State::Pending, State::Running))",
        Duration::from_secs(10),
        || changes(&seen2, "w1").contains(&(State::Pending, State::Running)),
    )
    .await;
    assert!(seen2.any(|n| matches!(n, Notification::Log(l) if l.msg.contains("\"keep\" applied"))));
    s2.send(Shutdown).await.expect("shutdown");
}

#[actix_rt::test]
async fn welcome_is_answered_and_remembered() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, _) = start(config(dir.path()));
    let r = s
        .send(AgentWelcomeRequest { reqid: "w".into() })
        .await
        .expect("answered");
    assert!(r.result.success);
    assert_eq!(r.reqid.0, "w");
}

#[actix_rt::test]
async fn with_zeromq_port_checks_wait_only_for_the_manager() {
    // The manager's log endpoint listens (here: the test does); the proxy's
    // port is never bound with ZeroMQ, so it must not be waited for.
    let dir = tempfile::tempdir().expect("tmp");
    let manager_port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let unbound = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_port = unbound.local_addr().expect("addr").port();
    drop(unbound);
    let mut c = cluster(
        "zmq",
        &[
            ("manager", Role::Manager),
            ("proxy-1", Role::Proxy),
            ("worker-1", Role::Worker),
        ],
    );
    c.nodes[0].p = Some(Port::tcp(manager_port.local_addr().expect("addr").port()));
    c.nodes[1].p = Some(Port::tcp(proxy_port));
    let (s, _) = start(Config {
        port_checks: true,
        cluster_backend: ClusterBackend::Zeromq,
        ..config(dir.path())
    });
    let r = tokio::time::timeout(Duration::from_secs(20), deploy(&s, c))
        .await
        .expect("the deploy does not wait for the proxy's port");
    assert!(r.success, "{r:?}");
    let st = statuses(&s).await;
    assert!(st.iter().all(|n| n.state == State::Running), "{st:?}");
}

fn pid_of(list: &[NodeStatus], node: &str) -> Option<i64> {
    list.iter().find(|s| s.node == node).and_then(|s| s.pid)
}

async fn restart(s: &Addr<NodeSupervisor>, nodes: &[&str]) -> ApiResult {
    s.send(RestartRequest {
        reqid: "x".into(),
        nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
    })
    .await
    .expect("answered")
    .result
}

#[actix_rt::test]
async fn restart_relaunches_only_the_named_nodes_and_ignores_others() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, _seen) = start(config(dir.path()));
    let c = cluster("c1", &[("w1", Role::Worker), ("w2", Role::Worker)]);
    assert!(deploy(&s, c.clone()).await.success);
    let before = statuses(&s).await;
    let r = restart(&s, &["w1", "elsewhere"]).await;
    assert!(r.success, "{r:?}");
    let Some(ResultData::Results(per)) = &r.data else {
        panic!("{r:?}")
    };
    assert_eq!(per.len(), 1);
    assert_eq!(per[0].node.as_deref(), Some("w1"));
    let after = statuses(&s).await;
    assert_ne!(pid_of(&after, "w1"), pid_of(&before, "w1"));
    assert!(pid_of(&after, "w1").is_some());
    assert_eq!(pid_of(&after, "w2"), pid_of(&before, "w2"));
    assert!(after.iter().all(|n| n.state == State::Running), "{after:?}");
    // Nobody here: success, no results.
    let none = restart(&s, &["elsewhere"]).await;
    assert!(none.success);
    assert_eq!(none.data, Some(ResultData::Results(vec![])));
    // The same configuration again: unchanged, nothing restarted.
    let again = deploy(&s, c).await;
    assert!(again.success && again.unchanged, "{again:?}");
    assert_eq!(pid_of(&statuses(&s).await, "w1"), pid_of(&after, "w1"));
}

#[actix_rt::test]
async fn a_node_that_fails_is_answered_with_its_output_tails() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, _seen) = start(Config {
        max_revivals: 0,
        ..config(dir.path())
    });
    let mut c = cluster("c1", &[("w1", Role::Worker)]);
    c.nodes[0]
        .env
        .insert("STANDIN_FAIL_START".into(), "1".into());
    let r = deploy(&s, c).await;
    assert!(!r.success && !r.unchanged, "{r:?}");
    let Some(ResultData::Results(per)) = &r.data else {
        panic!("{r:?}")
    };
    let Some(ResultData::Outputs(o)) = &per[0].data else {
        panic!("no outputs: {:?}", per[0])
    };
    assert_eq!(o.stderr, "fatal error: stand-in told to fail at start\n");
    assert!(
        o.stdout.starts_with("stand-in node w1 started with pid "),
        "{o:?}"
    );
    // A restart of a node that fails again says so.
    let r = restart(&s, &[]).await;
    assert!(!r.success);
    let Some(ResultData::Results(per)) = &r.data else {
        panic!("{r:?}")
    };
    assert!(
        per[0]
            .error
            .starts_with("could not restart node w1: node w1 exited with code 1 while starting"),
        "{}",
        per[0].error
    );
}

#[actix_rt::test]
async fn a_failure_quotes_only_its_own_launchs_output() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, _seen) = start(Config {
        max_revivals: 0,
        ..config(dir.path())
    });
    let failing = |id: &str| {
        let mut c = cluster(id, &[("w1", Role::Worker)]);
        c.nodes[0]
            .env
            .insert("STANDIN_FAIL_START".into(), "1".into());
        c
    };
    let outputs = |r: &ApiResult| match &r.data {
        Some(ResultData::Results(per)) => match &per[0].data {
            Some(ResultData::Outputs(o)) => o.clone(),
            other => panic!("no outputs: {other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let first = outputs(&deploy(&s, failing("c1")).await);
    let second = outputs(&deploy(&s, failing("c2")).await);
    // The files keep both launches; the answer quotes the second alone.
    let stderr = std::fs::read_to_string(dir.path().join("cluster/w1/stderr")).expect("stderr");
    assert_eq!(stderr.matches("fatal error").count(), 2, "{stderr}");
    assert_eq!(
        second.stderr,
        "fatal error: stand-in told to fail at start\n"
    );
    assert_eq!(second.stdout.lines().count(), 1, "{second:?}");
    assert_ne!(second.stdout, first.stdout, "another pid");
}

#[actix_rt::test]
async fn nodes_pinned_to_one_cpu_are_deployed_and_warned_about() {
    let dir = tempfile::tempdir().expect("tmp");
    let (s, seen) = start(config(dir.path()));
    let mut c = cluster("pinned", &[("w1", Role::Worker), ("w2", Role::Worker)]);
    for n in &mut c.nodes {
        n.cpu_affinity = Some(0);
    }
    let r = deploy(&s, c).await;
    assert!(r.success, "{r:?}");
    assert!(seen.any(|n| matches!(n, Notification::Log(l)
        if l.msg == "nodes w1, w2 are all pinned to CPU 0 (cpu_affinity) and share it")));
    s.send(Shutdown).await.expect("shutdown");
}
