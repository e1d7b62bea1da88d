//! The agent with real Zeek nodes on one host (the Zeek 8.2.2 beside the
//! checkout, or `$ZEEK_BINARY`; each test says on one line that it was
//! skipped when there is none). Every cluster gets ZeroMQ broker ports of
//! its own, so that the tests' clusters run side by side on this host.

use std::path::Path;
use std::time::Duration;

use zeek_mgmt_agent::api::events::{CheckConfigurationRequest, Request, RestartRequest};
use zeek_mgmt_agent::api::types::{Configuration, NodeStatus, Port, Role, State, ZeromqPorts};
use zeek_mgmt_agent::protocol::to_agent::Connection;

use crate::channel::{answers, dispatch, standby};
use crate::support::controller::{free_port, Controller};
use crate::support::*;

/// An agent running `zeek` with the node channel, a request timeout that
/// leaves real Zeek room on a busy machine, and short revivals.
fn zeek_agent(zeek: &Path) -> Agent {
    zeek_agent_with(zeek, &[])
}

/// The same, with `extra` flags.
pub fn zeek_agent_with(zeek: &Path, extra: &[&str]) -> Agent {
    let zeek = zeek.display().to_string();
    let mut args = vec![
        "--node-channel",
        "auto",
        "--zeek-binary",
        &zeek,
        "--request-timeout",
        "30",
        "--settle-time",
        "0.25",
    ];
    args.extend_from_slice(extra);
    Agent::start(&args)
}

/// ZeroMQ broker ports of their own, so that clusters do not meet.
fn own_broker_ports() -> ZeromqPorts {
    ZeromqPorts {
        xpub_port: Port::tcp(free_port()),
        xsub_port: Port::tcp(free_port()),
    }
}

/// manager, proxy-1, worker-1, worker-2 (workers without an interface:
/// sniffing is the many-hosts test's part).
fn four_real_nodes(id: &str) -> Configuration {
    let mut c = cluster(
        id,
        &[
            ("manager", Role::Manager, Some(free_port())),
            ("proxy-1", Role::Proxy, None),
            ("worker-1", Role::Worker, None),
            ("worker-2", Role::Worker, None),
        ],
    );
    c.zeromq = Some(own_broker_ports());
    c
}

fn status<'a>(s: &'a [NodeStatus], node: &str) -> &'a NodeStatus {
    s.iter()
        .find(|n| n.node == node)
        .unwrap_or_else(|| panic!("no {node}: {s:#?}"))
}

/// Every node `RUNNING` by its channel, the proxy and workers joined.
fn formed(s: &[NodeStatus]) -> bool {
    ["manager", "proxy-1", "worker-1", "worker-2"]
        .iter()
        .all(|n| {
            let st = status(s, n);
            st.state == State::Running
                && st.running_by.as_deref() == Some("channel")
                && (st.cluster_role == Role::Manager || st.joined == Some(true))
        })
}

async fn restart(c: &Connection, node: &str) {
    let reqid = c.new_reqid();
    let r = c
        .request(
            Request::Restart(RestartRequest {
                reqid,
                nodes: vec![node.into()],
            }),
            LONG * 2,
        )
        .await
        .expect("restart response");
    assert!(r.result.success, "{:?}", r.result);
}

#[tokio::test]
async fn a_real_four_node_cluster_forms_revives_restarts_and_stands_by() {
    let zeek = crate::require_zeek!(
        "realzeek::a_real_four_node_cluster_forms_revives_restarts_and_stands_by"
    );
    let agent = zeek_agent(&zeek);
    let c = agent.connect().await;

    // Answered only once every node has answered on its channel.
    let r = set_config(&c, four_real_nodes("real-4")).await;
    assert!(r.result.success, "{:?}", r.result);
    let s = get_nodes(&c).await;
    assert!(formed(&s), "{s:#?}");
    let dir = agent.node_dir("manager");
    let backend = std::fs::read_to_string(dir.join("cluster-backend.zeek")).expect("settings");
    assert!(
        backend.contains("listen_xpub_endpoint = \"tcp://127.0.0.1:"),
        "{backend}"
    );

    // SIGKILL of a worker: revived, and RUNNING by its channel again.
    let old = node_pid(&s, "worker-1");
    // SAFETY: a process the test's agent started.
    unsafe {
        libc::kill(old, libc::SIGKILL);
    }
    let s = wait_nodes(&c, "worker-1 revived", |s| {
        let w = status(s, "worker-1");
        w.pid.is_some_and(|p| p as i32 != old) && formed(s)
    })
    .await;
    assert_eq!(status(&s, "worker-1").restarts, Some(1));

    // A restart: a new process, RUNNING by its channel when answered.
    let old = node_pid(&s, "worker-2");
    restart(&c, "worker-2").await;
    let s = get_nodes(&c).await;
    assert_ne!(node_pid(&s, "worker-2"), old);
    assert!(formed(&s), "{s:#?}");

    // Every node answers for itself.
    let r = dispatch(&c, &["get_id_value", "Cluster::node"], &[]).await;
    let got: Vec<(String, bool, String)> = answers(&r)
        .into_iter()
        .map(|(n, ok, data, _)| (n, ok, data))
        .collect();
    let want: Vec<(String, bool, String)> = ["manager", "proxy-1", "worker-1", "worker-2"]
        .iter()
        .map(|n| (n.to_string(), true, format!("\"{n}\"")))
        .collect();
    assert_eq!(got, want);

    // Standby: no Zeek process is left.
    let pids: Vec<i32> = s
        .iter()
        .filter(|n| n.cluster_role != Role::None)
        .map(|n| n.pid.expect("pid") as i32)
        .collect();
    let r = standby(&c).await;
    assert!(r.success, "{r:?}");
    for pid in pids {
        assert!(!alive(pid), "node pid {pid} still runs after standby");
    }
    for n in ["manager", "proxy-1", "worker-1", "worker-2"] {
        assert!(
            node_processes(&agent.dir.join("cluster").join(n), n).is_empty(),
            "{n}"
        );
    }
}

#[tokio::test]
async fn a_node_whose_script_is_missing_fails_the_deploy_with_zeeks_words() {
    let zeek = crate::require_zeek!(
        "realzeek::a_node_whose_script_is_missing_fails_the_deploy_with_zeeks_words"
    );
    let agent = zeek_agent(&zeek);
    let c = agent.connect().await;
    let mut config = cluster("real-bad", &[("manager", Role::Manager, Some(free_port()))]);
    config.zeromq = Some(own_broker_ports());
    config.nodes[0].scripts = Some(vec!["no-such-script.zeek".into()]);
    let r = set_config(&c, config).await;
    assert!(!r.result.success, "{:?}", r.result);
    let node = &per_node(&r.result)[0];
    assert!(!node.success);
    assert!(
        node.error.contains("can't find no-such-script.zeek"),
        "{:?}",
        node.error
    );
}

#[tokio::test]
async fn two_real_clusters_run_on_one_host_each_on_its_own_broker_ports() {
    let zeek = crate::require_zeek!(
        "realzeek::two_real_clusters_run_on_one_host_each_on_its_own_broker_ports"
    );
    let (a, b) = (zeek_agent(&zeek), zeek_agent(&zeek));
    let (ca, cb) = (a.connect().await, b.connect().await);
    let two = |id: &str| {
        let mut c = cluster(
            id,
            &[
                ("manager", Role::Manager, Some(free_port())),
                ("worker-1", Role::Worker, None),
            ],
        );
        c.zeromq = Some(own_broker_ports());
        c
    };
    let (ra, rb) = tokio::join!(set_config(&ca, two("one")), set_config(&cb, two("two")));
    assert!(ra.result.success, "{:?}", ra.result);
    assert!(rb.result.success, "{:?}", rb.result);
    for (c, agent) in [(&ca, &a), (&cb, &b)] {
        let s = get_nodes(c).await;
        assert_eq!(status(&s, "worker-1").joined, Some(true), "{s:#?}");
        // Each worker's manager is its own cluster's: the pid it reports.
        let r = dispatch(c, &["get_id_value", "Cluster::node"], &["worker-1"]).await;
        assert_eq!(answers(&r)[0].2, "\"worker-1\"");
        let layout =
            std::fs::read_to_string(agent.node_dir("worker-1").join("cluster-backend.zeek"))
                .expect("settings");
        assert!(layout.contains("connect_xsub_endpoint"), "{layout}");
    }
}

#[test]
fn zeek_client_reads_values_out_of_real_nodes_through_the_controller() {
    let zeek = crate::require_zeek!(
        "realzeek::zeek_client_reads_values_out_of_real_nodes_through_the_controller"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (xpub, xsub) = (free_port().to_string(), free_port().to_string());
    let controller = Controller::start_with(
        dir,
        &["--zeromq-xpub-port", &xpub, "--zeromq-xsub-port", &xsub],
    );
    let zeek = zeek.display().to_string();
    let port_text = controller.agents.to_string();
    let _agent = Agent::start(&[
        "--name",
        "agent-real",
        "--node-channel",
        "auto",
        "--zeek-binary",
        &zeek,
        "--request-timeout",
        "30",
        "--controller-addr",
        "127.0.0.1",
        "--controller-port",
        &port_text,
    ]);
    let ini = dir.join("cluster.ini");
    std::fs::write(
        &ini,
        "[instances]\nagent-real\n\n[manager]\ninstance = agent-real\nrole = manager\n\n\
         [proxy-1]\ninstance = agent-real\nrole = proxy\n\n\
         [worker-1]\ninstance = agent-real\nrole = worker\n",
    )
    .expect("cluster file");
    eventually(
        "the agent never checked in",
        Duration::from_secs(10),
        || {
            controller
                .client(&["get-instances"])
                .1
                .contains("agent-real")
        },
    );
    let (code, out, err) = controller.client(&["deploy-config", &ini.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = controller.client(&["get-id-value", "Cluster::node"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    for n in ["manager", "proxy-1", "worker-1"] {
        assert_eq!(v["results"][n], n, "{out}");
    }
    // A bad script: zeek-client's deploy shows Zeek's words for the node,
    // and nothing stopped.
    let (_, before, _) = controller.client(&["get-nodes"]);
    let deployed = || {
        controller
            .client(&["get-config", "--deployed", "--as-json"])
            .1
    };
    let deployed_before = deployed();
    let bad = dir.join("bad.ini");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&ini).expect("ini").replace(
            "role = worker\n",
            "role = worker\nscripts = no-such-script.zeek\n",
        ),
    )
    .expect("bad file");
    let (code, out, err) = controller.client(&["deploy-config", &bad.display().to_string()]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["results"]["nodes"]["worker-1"]["success"], false, "{out}");
    assert!(
        v["results"]["nodes"]["worker-1"]["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("can't find no-such-script.zeek")),
        "{out}"
    );
    let (_, after, _) = controller.client(&["get-nodes"]);
    assert_eq!(after, before);
    // The controller's deployed configuration stays the one that runs.
    assert_eq!(deployed(), deployed_before);
    // The broker's ports are the controller's.
    let (_, out, _) = controller.client(&[
        "get-id-value",
        "Cluster::Backend::ZeroMQ::connect_xpub_endpoint",
        "worker-1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["results"]["worker-1"],
        format!("tcp://127.0.0.1:{xsub}"),
        "{out}"
    );
}

#[tokio::test]
async fn a_bad_script_is_refused_before_anything_stops() {
    let zeek = crate::require_zeek!("realzeek::a_bad_script_is_refused_before_anything_stops");
    let agent = zeek_agent(&zeek);
    let c = agent.connect().await;
    // Metrics ports: the running nodes hold them while the next
    // configuration is checked.
    let mut good = four_real_nodes("good");
    for n in &mut good.nodes {
        n.metrics_port = Some(Port::tcp(free_port()));
    }
    let r = set_config(&c, good.clone()).await;
    assert!(r.result.success, "{:?}", r.result);
    let pids = |s: &[NodeStatus]| -> Vec<(String, Option<i64>)> {
        s.iter().map(|n| (n.node.clone(), n.pid)).collect()
    };
    let before = pids(&get_nodes(&c).await);

    let syntax = agent.dir.join("syntax-error.zeek");
    std::fs::write(&syntax, "event zeek_init() { print 1\n").expect("script");
    let redef = agent.dir.join("unknown-redef.zeek");
    std::fs::write(&redef, "redef No::such_option = 1;\n").expect("script");
    // Zeek's error first, then more warnings than a tail holds.
    let warned = agent.dir.join("error-then-warnings.zeek");
    let mut text = "redef No::such_option = 1;\n".to_owned();
    for i in 0..25 {
        text.push_str(&format!("global g{i}: count = 0 &deprecated=\"old\";\n"));
        text.push_str(&format!("event zeek_init() {{ print g{i}; }}\n"));
    }
    std::fs::write(&warned, text).expect("script");
    let cases = [
        (
            "missing",
            "worker-1",
            "no-such-script.zeek".to_owned(),
            "can't find no-such-script.zeek",
        ),
        (
            "syntax",
            "proxy-1",
            syntax.display().to_string(),
            "syntax error",
        ),
        (
            "redef",
            "manager",
            redef.display().to_string(),
            "\"redef\" used but not previously defined",
        ),
        (
            "warned",
            "worker-2",
            warned.display().to_string(),
            "\"redef\" used but not previously defined (No::such_option)",
        ),
    ];
    for (id, node, script, words) in cases {
        let mut bad = good.clone();
        bad.id = format!("bad-{id}");
        let n = bad.nodes.iter_mut().find(|n| n.name == node).expect(node);
        n.scripts = Some(vec![script]);
        let t = std::time::Instant::now();
        let r = set_config(&c, bad).await;
        assert!(!r.result.success, "{id}: {:?}", r.result);
        assert!(
            r.result
                .error
                .starts_with("configuration check failed, nothing changed: node "),
            "{id}: {}",
            r.result.error
        );
        let per = per_node(&r.result);
        assert_eq!(per.len(), 1, "{id}: only {node} failed: {per:?}");
        assert_eq!(per[0].node.as_deref(), Some(node), "{id}");
        assert!(per[0].error.contains(words), "{id}: {}", per[0].error);
        // Nothing stopped: the same processes run.
        let s = get_nodes(&c).await;
        assert_eq!(pids(&s), before, "{id}");
        assert!(formed(&s), "{id}: {s:#?}");
        eprintln!("check of {id} refused in {:?}", t.elapsed());
    }
    // The dry run: a bad file is found, a good one passes; neither stops
    // anything.
    let dry_run = |config: Configuration| {
        let c = &c;
        async move {
            let reqid = c.new_reqid();
            c.request(
                Request::CheckConfiguration(CheckConfigurationRequest { reqid, config }),
                LONG * 2,
            )
            .await
            .expect("check response")
            .result
        }
    };
    let mut bad = good.clone();
    bad.nodes[3].scripts = Some(vec!["no-such-script.zeek".into()]);
    let r = dry_run(bad).await;
    assert!(!r.success && !r.refused, "{r:?}");
    assert!(
        r.error.contains("can't find no-such-script.zeek"),
        "{}",
        r.error
    );
    let r = dry_run(good.clone()).await;
    assert!(r.success, "{r:?}");
    assert_eq!(per_node(&r).len(), 4, "{r:?}");
    assert_eq!(pids(&get_nodes(&c).await), before);

    // A good configuration passes its check while the nodes run, and
    // replaces them.
    let mut next = good.clone();
    next.id = "good-again".into();
    let r = set_config(&c, next).await;
    assert!(r.result.success, "{:?}", r.result);
    let s = get_nodes(&c).await;
    assert!(formed(&s), "{s:#?}");
    assert_ne!(pids(&s), before);
}
