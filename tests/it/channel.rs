//! The node channel with real processes: the agent against the Python
//! stand-in (`tests/fixtures/stand-in-zeek.py`), which opens Zeek's
//! WebSocket API as `agent-channel.zeek` would, with a bus on the
//! manager's port standing in for ZeroMQ.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zeek_mgmt_agent::api::events::Notification;
use zeek_mgmt_agent::api::types::{ApiResult, Configuration, NodeStatus, Role, State};
use zeek_mgmt_agent::protocol::to_agent::Connection;

use crate::support::controller::free_port;
use crate::support::*;

pub fn stand_in_zeek() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stand-in-zeek.py")
}

/// An agent with the node channel on (the Python stand-in as Zeek 8.2.2,
/// ZeroMQ), short channel timers, plus `extra`.
pub fn channel_agent(extra: &[&str]) -> Agent {
    channel_agent_env(extra, &[])
}

/// The same, with `env` added to the agent's environment.
pub fn channel_agent_env(extra: &[&str], env: &[(&str, &str)]) -> Agent {
    let stand_in = stand_in_zeek().display().to_string();
    let mut args = vec![
        "--node-channel",
        "auto",
        "--zeek-binary",
        stand_in.as_str(),
        "--channel-join-grace",
        "2",
        "--channel-timeout",
        "4",
        "--channel-slow-ping-interval",
        "0.2",
        "--channel-reconnect-delay",
        "0.2",
    ];
    args.extend_from_slice(extra);
    Agent::start_with_env(&args, env)
}

/// manager (its `$p` hosts the stand-in's bus), proxy-1, worker-1,
/// worker-2, on free ports.
pub fn four_nodes(id: &str) -> Configuration {
    cluster(
        id,
        &[
            ("manager", Role::Manager, Some(free_port())),
            ("proxy-1", Role::Proxy, Some(free_port())),
            ("worker-1", Role::Worker, None),
            ("worker-2", Role::Worker, None),
        ],
    )
}

/// An agent with the channel on (`flags` added) that has deployed
/// `four_nodes(id)` with each `(node, variable, value)` in the node's
/// environment; the deploy must succeed.
async fn deployed(id: &str, flags: &[&str], env: &[(&str, &str, &str)]) -> (Agent, Connection) {
    let (agent, c, r) = deploy_four(id, flags, env).await;
    assert!(r.success, "{r:?}");
    (agent, c)
}

/// The same, with the deploy's result, whatever it is.
async fn deploy_four(
    id: &str,
    flags: &[&str],
    env: &[(&str, &str, &str)],
) -> (Agent, Connection, ApiResult) {
    let agent = channel_agent(flags);
    let c = agent.connect().await;
    let mut config = four_nodes(id);
    for (node, key, value) in env {
        set_env(&mut config, node, key, value);
    }
    let r = set_config(&c, config).await;
    (agent, c, r.result)
}

/// `agent_standby`, answered.
pub async fn standby(c: &Connection) -> ApiResult {
    use zeek_mgmt_agent::api::events::{AgentStandbyRequest, Request};
    let reqid = c.new_reqid();
    c.request(Request::AgentStandby(AgentStandbyRequest { reqid }), LONG)
        .await
        .expect("standby")
        .result
}

/// The per-node result of `node`; every other node's succeeded.
fn only_failure(r: &ApiResult, node: &str) -> ApiResult {
    assert!(!r.success);
    let per = per_node(r);
    for p in per.iter().filter(|p| p.node.as_deref() != Some(node)) {
        assert!(p.success, "{p:?}");
    }
    per.into_iter()
        .find(|p| p.node.as_deref() == Some(node))
        .expect("the node's result")
}

fn set_env(config: &mut Configuration, node: &str, key: &str, value: &str) {
    let n = config
        .nodes
        .iter_mut()
        .find(|n| n.name == node)
        .expect("node");
    n.env.insert(key.into(), value.into());
}

fn running_by<'a>(s: &'a [NodeStatus], node: &str) -> Option<&'a str> {
    s.iter()
        .find(|n| n.node == node)
        .and_then(|n| n.running_by.as_deref())
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// No node printed the line Zeek prints for a connection closed without
/// an HTTP request.
fn no_http_400(agent: &Agent, nodes: &[&str]) {
    for n in nodes {
        let stderr = read(agent.node_dir(n).join("stderr"));
        assert!(
            !stderr.contains("HTTP status: 400"),
            "{n} saw a bare connection:\n{stderr}"
        );
    }
}

/// Every notification up to and including the first satisfying `f`.
async fn notes_until(
    c: &mut zeek_mgmt_agent::protocol::to_agent::Connection,
    f: impl Fn(&Notification) -> bool,
) -> Vec<Notification> {
    let mut seen = Vec::new();
    loop {
        let n = c
            .wait_notification(LONG, |_| true)
            .await
            .unwrap_or_else(|e| panic!("{e}; seen {seen:#?}"));
        let last = f(&n);
        seen.push(n);
        if last {
            return seen;
        }
    }
}

const ALL: [&str; 4] = ["manager", "proxy-1", "worker-1", "worker-2"];

#[tokio::test]
async fn a_deploy_is_answered_once_every_node_has_answered_its_ping() {
    let agent = channel_agent(&[]);
    let c = agent.connect().await;
    let mut config = four_nodes("ch-1");
    // Zeek's timings of four nodes starting at once, and more for one.
    for n in ALL {
        set_env(&mut config, n, "STANDIN_CHANNEL_DELAY_MS", "500");
    }
    set_env(&mut config, "worker-2", "STANDIN_CHANNEL_DELAY_MS", "1200");
    // The node's own setting of the port variable is overridden.
    set_env(&mut config, "worker-1", "ZEEK_AGENT_CHANNEL_PORT", "1");
    set_env(&mut config, "manager", "ZEEK_AGENT_CHANNEL_PORT", "1");
    let t = Instant::now();
    let r = set_config(&c, config).await;
    let took = t.elapsed();
    assert!(r.result.success, "{:?}", r.result);
    // The settle time is 0.1 s: only the channel can have held the answer
    // back until worker-2's server opened 1.2 s after its start.
    assert!(
        took >= Duration::from_millis(1200),
        "answered after {took:?}"
    );
    let s = get_nodes(&c).await;
    for n in ALL {
        assert_eq!(running_by(&s, n), Some("channel"), "{n}: {s:#?}");
        assert_eq!(
            s.iter().find(|x| x.node == n).map(|x| x.state),
            Some(State::Running)
        );
    }
    // The script by absolute path after `local`, before the node's
    // scripts; the port variable set last on nodes with a server, removed
    // from the logging manager.
    let script = agent.node_dir("worker-1").join("agent-channel.zeek");
    let argv = read(agent.node_dir("worker-1").join("argv"));
    let lines: Vec<&str> = argv.lines().collect();
    let local = lines.iter().position(|l| *l == "local").expect("local");
    assert_eq!(
        Path::new(lines[local + 1]),
        std::path::absolute(&script).expect("absolute")
    );
    assert!(read(script).contains("event zeek_init() &priority=-10000"));
    let env = read(agent.node_dir("worker-1").join("env"));
    let port_lines: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("ZEEK_AGENT_CHANNEL_PORT="))
        .collect();
    assert_eq!(port_lines.len(), 1, "{port_lines:?}");
    assert_ne!(port_lines[0], "ZEEK_AGENT_CHANNEL_PORT=1");
    let env = read(agent.node_dir("manager").join("env"));
    assert!(
        !env.contains("ZEEK_AGENT_CHANNEL_PORT"),
        "the manager is the logger: no port"
    );
    no_http_400(&agent, &ALL);
}

#[tokio::test]
async fn a_node_that_dies_while_loading_fails_the_deploy_with_its_stderr() {
    let (_agent, _c, r) =
        deploy_four("ch-2", &[], &[("worker-1", "STANDIN_FAIL_START", "1")]).await;
    let w = only_failure(&r, "worker-1");
    assert!(!w.success);
    assert!(
        w.error
            .contains("while starting; stderr:\nfatal error: stand-in told to fail at start"),
        "{}",
        w.error
    );
}

#[tokio::test]
async fn a_node_that_never_opens_its_port_falls_back_after_the_channel_timeout() {
    let (agent, c) = deployed("ch-3", &[], &[("worker-2", "STANDIN_CHANNEL", "never")]).await;
    let s = get_nodes(&c).await;
    assert_eq!(running_by(&s, "worker-2"), Some("fallback"));
    assert_eq!(running_by(&s, "worker-1"), Some("channel"));
    agent.wait_log(
        "node worker-2 counted running without a channel: none within 4.0 s",
        1,
    );
    no_http_400(&agent, &ALL);
}

#[tokio::test]
async fn a_routed_node_with_no_route_in_time_falls_back_to_its_port() {
    // The logging manager is reached only by a route through a sibling, and
    // its $p (the bus, ZeroMQ's proxy) opens only after the channel timeout
    // (4 s): neither an answer nor a $p accept in time, so the manager falls
    // back to the $p rule, and is RUNNING once $p accepts.
    let (agent, c) = deployed(
        "ch-r",
        &["--request-timeout", "30"],
        &[("manager", "STANDIN_BUS_DELAY_MS", "5000")],
    )
    .await;
    let s = get_nodes(&c).await;
    assert_eq!(running_by(&s, "manager"), Some("fallback"), "{s:#?}");
    agent.wait_log(
        "node manager counted running without a channel: none within 4.0 s",
        1,
    );
    // It has no channel until its next launch; its siblings answer once
    // the bus is up.
    let r = dispatch(&c, &["get_id_value", "Cluster::node"], &["manager"]).await;
    assert_eq!(
        answers(&r),
        [row(
            "manager",
            false,
            "",
            "cluster node manager has no node channel"
        )]
    );
    no_http_400(&agent, &ALL);
}

#[tokio::test]
async fn without_the_manager_nodes_run_degraded_then_answer_once_it_is_up() {
    // The manager's bus (ZeroMQ's proxy) comes 3 s late: no acks before.
    let (agent, c) = deployed("ch-4", &[], &[("manager", "STANDIN_BUS_DELAY_MS", "3000")]).await;
    let s = get_nodes(&c).await;
    assert_eq!(running_by(&s, "worker-1"), Some("degraded"), "{s:#?}");
    agent.wait_log(
        "node worker-1 counted running without a channel answer after 2.0 s",
        1,
    );
    // Once the manager is up, the slow pings are answered, and the
    // deployment was answered once every node had joined.
    agent.wait_log("node channel answered", 3);
    for node in ["proxy-1", "worker-1", "worker-2"] {
        let n = s.iter().find(|n| n.node == node).expect(node);
        assert_eq!(
            (n.joined, n.join_error.as_deref()),
            (Some(true), None),
            "{n:?}"
        );
        agent.wait_log(&format!("node {node} has not joined the cluster: "), 1);
        agent.wait_log(&format!("node {node} joined the cluster"), 1);
    }
    // The manager is the hub: it reports no join.
    let m = s.iter().find(|n| n.node == "manager").expect("manager");
    assert_eq!(m.joined, None);
}

#[tokio::test]
async fn a_wrong_pid_is_never_taken_for_the_node_and_retries_are_normal() {
    let (agent, c, r) = deploy_four(
        "ch-5",
        &[],
        &[
            ("worker-1", "STANDIN_PING_PID", "1"),
            ("worker-2", "STANDIN_DROP_REQUESTS", "2"),
        ],
    )
    .await;
    // worker-1 never answers as itself: it runs, and its deployment says
    // that it has not joined, and why.
    let failed = only_failure(&r, "worker-1");
    assert!(
        failed.error.starts_with(
            "node worker-1 has not joined the cluster: no answer through its cluster backend for 2.0 s; check that the manager runs and that this host reaches the manager's ZeroMQ broker at 127.0.0.1 (tcp ports 5555 and 5556)"
        ),
        "{failed:?}"
    );
    let s = get_nodes(&c).await;
    assert_eq!(running_by(&s, "worker-1"), Some("degraded"));
    assert_eq!(running_by(&s, "worker-2"), Some("channel"));
    let log = agent.wait_log("channel answered by pid 1, expected", 1);
    assert_eq!(
        log.matches("channel answered by pid 1, expected").count(),
        1,
        "logged once per launch"
    );
}

#[tokio::test]
async fn a_channel_port_collision_relaunches_at_once_without_a_crash() {
    let (agent, mut c) = deployed("ch-6", &[], &[("worker-1", "STANDIN_COLLIDE", "1")]).await;
    let notes = notes_until(&mut c, |n| {
        matches!(n, Notification::Log(l) if l.msg.starts_with("configuration \"ch-6\" applied"))
    })
    .await;
    assert!(
        notes.iter().any(|n| matches!(n, Notification::Log(l)
            if l.msg.starts_with("node worker-1 relaunched: channel port "))),
        "{notes:#?}"
    );
    assert!(
        !notes.iter().any(|n| matches!(n, Notification::Change(ch)
            if ch.node.name == "worker-1" && ch.new == State::Crashed)),
        "{notes:#?}"
    );
    assert!(!notes.iter().any(|n| matches!(n, Notification::Error(_))));
    let pids = read(agent.node_dir("worker-1").join("pids"));
    assert_eq!(pids.lines().count(), 2, "two launches: {pids}");
    let s = get_nodes(&c).await;
    assert_eq!(running_by(&s, "worker-1"), Some("channel"));
}

#[tokio::test]
async fn a_lone_logging_manager_runs_by_its_port() {
    let agent = channel_agent(&[]);
    let c = agent.connect().await;
    let config = cluster("ch-7", &[("manager", Role::Manager, Some(free_port()))]);
    let r = set_config(&c, config).await;
    assert!(r.result.success, "{:?}", r.result);
    let s = get_nodes(&c).await;
    assert_eq!(running_by(&s, "manager"), Some("port"));
}

#[tokio::test]
async fn nodes_stop_within_the_grace_and_close_their_channels() {
    // A logging manager that would hang once a WebSocket client left: the
    // agent never opens one to it, so it stops on SIGTERM.
    let (agent, c) = deployed(
        "ch-8",
        &[],
        &[("manager", "STANDIN_HANG_AFTER_CLIENT", "1")],
    )
    .await;
    let r = standby(&c).await;
    assert!(r.success, "{r:?}");
    for n in ALL {
        let stderr = read(agent.node_dir(n).join("stderr"));
        assert!(
            stderr.contains("received termination signal"),
            "{n} did not stop on SIGTERM:\n{stderr}"
        );
    }
    agent.wait_log("node channel ended: closed 1001 Terminating", 3);
    no_http_400(&agent, &ALL);
}

pub async fn dispatch(
    c: &zeek_mgmt_agent::protocol::to_agent::Connection,
    action: &[&str],
    nodes: &[&str],
) -> zeek_mgmt_agent::api::types::ApiResult {
    use zeek_mgmt_agent::api::events::{NodeDispatchRequest, Request};
    let reqid = c.new_reqid();
    c.request(
        Request::NodeDispatch(NodeDispatchRequest {
            reqid,
            action: action.iter().map(|s| s.to_string()).collect(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
        }),
        LONG,
    )
    .await
    .expect("node_dispatch response")
    .result
}

/// (node, success, data as text, error) of each per-node result.
pub fn answers(r: &zeek_mgmt_agent::api::types::ApiResult) -> Vec<(String, bool, String, String)> {
    use zeek_mgmt_agent::api::types::ResultData;
    per_node(r)
        .into_iter()
        .map(|p| {
            assert_eq!(p.instance, AGENT);
            let data = match p.data {
                Some(ResultData::Text(t)) => t,
                None => String::new(),
                other => panic!("data: {other:?}"),
            };
            (p.node.unwrap_or_default(), p.success, data, p.error)
        })
        .collect()
}

fn row(node: &str, ok: bool, data: &str, error: &str) -> (String, bool, String, String) {
    (node.into(), ok, data.into(), error.into())
}

#[tokio::test]
async fn node_dispatch_answers_from_each_node_with_zeeks_errors() {
    let agent = channel_agent(&["--channel-command-timeout", "0.5", "--max-revivals", "0"]);
    let c = agent.connect().await;
    let mut config = cluster(
        "ch-9",
        &[
            ("manager", Role::Manager, Some(free_port())),
            ("proxy-1", Role::Proxy, Some(free_port())),
            ("worker-1", Role::Worker, None),
            ("worker-2", Role::Worker, None),
            ("worker-3", Role::Worker, None),
            ("worker-4", Role::Worker, None),
        ],
    );
    config.nodes[2].options = Some(vec![zeek_mgmt_agent::api::types::ZeekOption {
        name: "Pcap::bufsize".into(),
        value: "128".into(),
    }]);
    set_env(&mut config, "worker-2", "STANDIN_CHANNEL", "never");
    set_env(&mut config, "worker-3", "STANDIN_DROP_REQUESTS", "100000");
    set_env(&mut config, "worker-4", "STANDIN_FAIL_START", "1");
    let r = set_config(&c, config).await;
    assert!(!r.result.success, "worker-4 fails");

    let r = dispatch(&c, &["get_id_value", "Cluster::node"], &[]).await;
    assert!(!r.success);
    // worker-3 never answers: it has not joined, and its timeout says so.
    let not_joined = "request timed out: node worker-3 has not joined the cluster: no answer through its cluster backend for 2.0 s; check that the manager runs and that this host reaches the manager's ZeroMQ broker at 127.0.0.1 (tcp ports 5555 and 5556)";
    assert_eq!(
        r.error,
        format!(
            "3 of 6 nodes failed: worker-2: cluster node worker-2 has no node channel; worker-3: {not_joined}; worker-4: cluster node worker-4 not in running state"
        )
    );
    assert_eq!(
        answers(&r),
        [
            row("manager", true, "\"manager\"", ""),
            row("proxy-1", true, "\"proxy-1\"", ""),
            row("worker-1", true, "\"worker-1\"", ""),
            row(
                "worker-2",
                false,
                "",
                "cluster node worker-2 has no node channel"
            ),
            row("worker-3", false, "", not_joined),
            row(
                "worker-4",
                false,
                "",
                "cluster node worker-4 not in running state"
            ),
        ]
    );
    let r = dispatch(
        &c,
        &["get_id_value", "Pcap::bufsize"],
        &["worker-1", "elsewhere"],
    )
    .await;
    assert!(r.success);
    assert_eq!(answers(&r), [row("worker-1", true, "128", "")]);
    for (action, error) in [
        (&[][..], "no dispatch arguments provided"),
        (
            &["get_id_value"][..],
            "get_id_value expects name of global identifier",
        ),
        (&["get_id_value", "No::such_id"][..], "unknown id"),
        (&["get_id_value", "StandIn::no_value"][..], "no ID value"),
        (&["frob", "x"][..], "dispatch frob unknown"),
    ] {
        let r = dispatch(&c, action, &["manager", "worker-1"]).await;
        assert!(!r.success);
        assert_eq!(
            answers(&r),
            [
                row("manager", false, "", error),
                row("worker-1", false, "", error)
            ],
            "{action:?}"
        );
    }
    // Names this agent does not run are ignored; none left is a success.
    let r = dispatch(&c, &["get_id_value", "Cluster::node"], &["elsewhere"]).await;
    assert!(r.success);
    // An empty list, which reads as any list type.
    assert!(
        matches!(
            &r.data,
            Some(zeek_mgmt_agent::api::types::ResultData::Results(v)) if v.is_empty()
        ) || matches!(
            &r.data,
            Some(zeek_mgmt_agent::api::types::ResultData::NodeStatuses(v)) if v.is_empty()
        ),
        "{:?}",
        r.data
    );
}

fn pid_of(s: &[NodeStatus], node: &str) -> Option<i64> {
    s.iter().find(|n| n.node == node).and_then(|n| n.pid)
}

fn channel_port(agent: &Agent, node: &str) -> String {
    read(agent.node_dir(node).join("env"))
        .lines()
        .find_map(|l| l.strip_prefix("ZEEK_AGENT_CHANNEL_PORT="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_revival_gets_a_new_port_and_runs_once_its_new_process_answers() {
    let agent = channel_agent(&[]);
    let c = agent.connect().await;
    let r = set_config(&c, four_nodes("ch-10")).await;
    assert!(r.result.success, "{:?}", r.result);
    let before = get_nodes(&c).await;
    let (old_pid, old_port) = (
        pid_of(&before, "worker-1"),
        channel_port(&agent, "worker-1"),
    );
    std::fs::write(agent.node_dir("worker-1").join("crash-now"), "").expect("crash-now");
    let after = wait_nodes(&c, "worker-1 revived", |s| {
        pid_of(s, "worker-1") != old_pid
            && s.iter()
                .any(|n| n.node == "worker-1" && n.state == State::Running)
    })
    .await;
    assert_eq!(running_by(&after, "worker-1"), Some("channel"));
    assert_ne!(channel_port(&agent, "worker-1"), old_port, "a fresh port");
    // Its siblings were not disturbed.
    for n in ["manager", "proxy-1", "worker-2"] {
        assert_eq!(pid_of(&after, n), pid_of(&before, n), "{n}");
    }
    let r = dispatch(&c, &["get_id_value", "Cluster::node"], &["worker-1"]).await;
    assert_eq!(answers(&r), [row("worker-1", true, "\"worker-1\"", "")]);
}

#[tokio::test]
async fn a_restarted_logging_manager_is_reached_again_through_its_route() {
    use zeek_mgmt_agent::api::events::{Request, RestartRequest};
    let (_agent, c) = deployed("ch-11", &["--channel-command-timeout", "0.5"], &[]).await;
    let before = get_nodes(&c).await;
    let reqid = c.new_reqid();
    let r = c
        .request(
            Request::Restart(RestartRequest {
                reqid,
                nodes: vec!["manager".into()],
            }),
            LONG,
        )
        .await
        .expect("restart response");
    assert!(r.result.success, "{:?}", r.result);
    // Answered once the new manager answered through a sibling's server.
    let after = get_nodes(&c).await;
    assert_ne!(pid_of(&after, "manager"), pid_of(&before, "manager"));
    assert_eq!(running_by(&after, "manager"), Some("channel"));
    // The others stay RUNNING through the manager's restart.
    for n in ["proxy-1", "worker-1", "worker-2"] {
        assert_eq!(pid_of(&after, n), pid_of(&before, n), "{n}");
        assert_eq!(running_by(&after, n), Some("channel"), "{n}");
    }
    // The others' old connections answer again once their ZeroMQ side has
    // reached the new manager (requests sent before that vanish, as with
    // Zeek).
    let deadline = Instant::now() + LONG;
    loop {
        let r = dispatch(&c, &["get_id_value", "Cluster::node"], &[]).await;
        if r.success {
            assert_eq!(answers(&r).len(), 4);
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}");
    }
}

#[tokio::test]
async fn zeek_before_8_0_another_program_or_off_run_by_the_settle_time() {
    for (version, extra) in [("7.2.1", None), ("none", None), ("8.2.2", Some("off"))] {
        let mut flags = vec!["--cluster-backend", "broker"];
        if let Some(mode) = extra {
            flags.extend(["--node-channel", mode]);
        }
        // The agent asks the program's version with its own environment;
        // the nodes inherit it.
        let agent = channel_agent_env(&flags, &[("STANDIN_VERSION", version)]);
        let c = agent.connect().await;
        let r = set_config(&c, four_nodes(&format!("ch-v-{version}"))).await;
        assert!(r.result.success, "{version}: {:?}", r.result);
        let s = get_nodes(&c).await;
        for n in ALL {
            assert_eq!(
                running_by(&s, n),
                Some("settle"),
                "{version} {extra:?}: {n}"
            );
            let argv = read(agent.node_dir(n).join("argv"));
            assert!(!argv.contains("agent-channel.zeek"), "{argv}");
        }
    }
}

#[tokio::test]
async fn a_node_never_ready_fails_at_the_readiness_deadline_with_its_stderr() {
    let (_agent, _c, r) = deploy_four(
        "ch-12",
        &["--request-timeout", "2", "--channel-timeout", "30"],
        &[
            ("worker-1", "STANDIN_CHANNEL_DELAY_MS", "60000"),
            ("worker-1", "STANDIN_STDERR", "loading 4000 scripts"),
        ],
    )
    .await;
    let w = only_failure(&r, "worker-1");
    assert_eq!(
        w.error,
        "node worker-1 not running within 1.8 s; stderr:\nloading 4000 scripts"
    );
    match &w.data {
        Some(zeek_mgmt_agent::api::types::ResultData::Outputs(o)) => {
            assert_eq!(o.stderr, "loading 4000 scripts\n")
        }
        other => panic!("outputs: {other:?}"),
    }
}

#[tokio::test]
async fn collisions_beyond_the_port_retries_are_a_crash_while_starting() {
    let (agent, _c, r) = deploy_four(
        "ch-13",
        &["--channel-port-retries", "1", "--max-revivals", "0"],
        &[("worker-1", "STANDIN_COLLIDE", "10")],
    )
    .await;
    let w = only_failure(&r, "worker-1");
    assert!(
        w.error
            .starts_with("node worker-1 exited with code 1 while starting; stderr:"),
        "{}",
        w.error
    );
    assert!(w
        .error
        .contains("WebSocket: Unable to listen on 127.0.0.1:"));
    let pids = read(agent.node_dir("worker-1").join("pids"));
    assert_eq!(
        pids.lines().count(),
        2,
        "one relaunch, then the crash: {pids}"
    );
}

#[tokio::test]
async fn a_hung_node_is_killed_after_the_stop_grace() {
    let (agent, c) = deployed(
        "ch-14",
        &[],
        &[("worker-1", "STANDIN_HANG_AFTER_CLIENT", "1")],
    )
    .await;
    // A client of its own comes and goes: the node hangs, as a ZeroMQ
    // logging node does in Zeek 8.2.2, answering nothing and ignoring
    // SIGTERM.
    let port = channel_port(&agent, "worker-1");
    let addr = format!("127.0.0.1:{port}");
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/v1/messages/json"), tcp)
        .await
        .expect("upgrade");
    ws.close(None).await.expect("close");
    // Its close answer comes once it has left (and hung).
    while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
    drop(ws);
    let t = Instant::now();
    let r = standby(&c).await;
    assert!(r.success, "{r:?}");
    // The stop grace of the tests is 2 s.
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    agent.wait_log("node ignored SIGTERM; sending SIGKILL", 1);
    let stderr = read(agent.node_dir("worker-1").join("stderr"));
    assert!(!stderr.contains("received termination signal"), "{stderr}");
}
