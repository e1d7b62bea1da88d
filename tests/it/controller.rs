//! The controller binary driven by the real `zeek-client` 1.5.0 (installed
//! by `.ci/run` into `.ci/venv`), with real agents running the stand-in
//! node program: every output compared with what zeek-client prints
//! against Zeek's own controller (ids and pids normalised).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::controller::{free_port, zeek_client, Controller};
use crate::support::{came_within, eventually, Agent, Later, LONG};

/// The printed id of a deployment or staging.
fn id_of(stdout: &str) -> String {
    let v: Value = serde_json::from_str(stdout).expect("json");
    v["results"]["id"].as_str().expect("an id").to_owned()
}

/// get-nodes' output with every pid set to 0 and the agent's own ports
/// (random in tests) removed.
fn normalised_nodes(stdout: &str) -> Value {
    let mut v: Value = serde_json::from_str(stdout).expect("json");
    if let Some(results) = v["results"].as_object_mut() {
        for nodes in results.values_mut() {
            for (_, n) in nodes.as_object_mut().into_iter().flatten() {
                if n.get("pid").is_some() {
                    n["pid"] = Value::from(0);
                }
                if n["mgmt_role"] == "AGENT" {
                    if let Some(o) = n.as_object_mut() {
                        o.remove("port");
                    }
                }
            }
        }
    }
    v
}

fn pids(stdout: &str) -> Vec<i64> {
    let v: Value = serde_json::from_str(stdout).expect("json");
    let mut out = Vec::new();
    for nodes in v["results"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, n)| n)
    {
        for (_, n) in nodes.as_object().into_iter().flatten() {
            if n["mgmt_role"].is_null() {
                out.push(n["pid"].as_i64().unwrap_or(0));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn zeek_client_deploys_lists_and_shows_a_cluster_across_two_agents_and_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let (ws_port, agent_port) = (controller.ws.port(), controller.agents);

    // No agent yet.
    let (code, out, _) = controller.client(&["get-instances"]);
    assert_eq!((code, out.as_str()), (0, "{}\n"));
    let (code, out, _) = controller.client(&["get-nodes"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "{\n  \"errors\": [\n    {\n      \"error\": \"no instances connected\",\n      \"source\": null\n    }\n  ],\n  \"results\": {}\n}\n"
    );

    // agent-a dials in; agent-b listens and is dialled by the controller.
    let _a = Agent::start_dialling(controller.agents, &["--name", "agent-a"]);
    let b = Agent::start(&["--name", "agent-b"]);
    let b_port = b.addr.expect("agent-b listens").port();
    std::fs::write(
        dir.join("cluster.ini"),
        format!(
            "[instances]\nagent-a\nagent-b = 127.0.0.1:{b_port}\n\n\
             [manager]\ninstance = agent-a\nrole = manager\n\n\
             [proxy-1]\ninstance = agent-a\nrole = proxy\n\n\
             [worker-1]\ninstance = agent-b\nrole = worker\ninterface = af_packet::lo\n\n\
             [worker-2]\ninstance = agent-b\nrole = worker\ninterface = af_packet::lo\n"
        ),
    )
    .expect("cluster.ini");
    controller.wait_checked_in("agent-a");

    let (code, out, err) = controller.client(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = id_of(&out);
    let node = |name: &str, inst: &str| {
        format!("      \"{name}\": {{\n        \"instance\": \"{inst}\",\n        \"success\": true\n      }}")
    };
    assert_eq!(
        out,
        format!(
            "{{\n  \"errors\": [],\n  \"results\": {{\n    \"id\": \"{id}\",\n    \"nodes\": {{\n{},\n{},\n{},\n{}\n    }}\n  }}\n}}\n",
            node("manager", "agent-a"),
            node("proxy-1", "agent-a"),
            node("worker-1", "agent-b"),
            node("worker-2", "agent-b"),
        )
    );

    let (code, out, _) = controller.client(&["get-instances"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json"),
        serde_json::json!({
            "agent-a": {"host": "127.0.0.1"},
            "agent-b": {"host": "127.0.0.1", "port": b_port},
        })
    );

    let (code, out, _) = controller.client(&["get-nodes"]);
    assert_eq!(code, 0, "{out}");
    let controller_nodes_before = out.clone();
    let status = |role: &str, port: Option<u16>, metrics: u16| {
        let mut m = serde_json::json!({
            "cluster_role": role, "metrics_port": metrics, "mgmt_role": null,
            "pid": 0, "state": "RUNNING"
        });
        if let Some(p) = port {
            m["port"] = Value::from(p);
        }
        m
    };
    let agent = serde_json::json!({"cluster_role": null, "mgmt_role": "AGENT", "pid": 0, "state": "RUNNING"});
    assert_eq!(
        normalised_nodes(&out),
        serde_json::json!({
            "errors": [],
            "results": {
                "agent-a": {
                    "agent-a": agent,
                    "manager": status("MANAGER", Some(2200), 9000),
                    "proxy-1": status("PROXY", Some(2201), 9001),
                },
                "agent-b": {
                    "agent-b": agent,
                    "worker-1": status("WORKER", None, 9002),
                    "worker-2": status("WORKER", None, 9003),
                },
            }
        }),
        "{out}"
    );

    // restart: the named node comes back with a new process, the others
    // keep theirs; an unknown name is an error.
    let (code, out, _) = controller.client(&["restart", "worker-1", "bogus"]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "{\n  \"errors\": [\n    {\n      \"error\": \"unknown cluster node\",\n      \"source\": \"bogus\"\n    }\n  ],\n  \"results\": {\n    \"worker-1\": true\n  }\n}\n"
        )
    );
    let (_, after_restart, _) = controller.client(&["get-nodes"]);
    let node_pid = |out: &str, agent: &str, node: &str| {
        let v: Value = serde_json::from_str(out).expect("json");
        v["results"][agent][node]["pid"].as_i64().expect("a pid")
    };
    assert_ne!(
        node_pid(&after_restart, "agent-b", "worker-1"),
        node_pid(&controller_nodes_before, "agent-b", "worker-1")
    );
    assert_eq!(
        node_pid(&after_restart, "agent-b", "worker-2"),
        node_pid(&controller_nodes_before, "agent-b", "worker-2")
    );
    assert_eq!(
        node_pid(&after_restart, "agent-a", "manager"),
        node_pid(&controller_nodes_before, "agent-a", "manager")
    );
    let before = pids(&after_restart);

    let (code, deployed, _) = controller.client(&["get-config", "--deployed"]);
    assert_eq!(code, 0);
    assert_eq!(
        deployed,
        format!(
            "[instances]\nagent-a\nagent-b = 127.0.0.1:{b_port}\n\n\
             [manager]\ninstance = agent-a\nrole = MANAGER\nport = 2200\nmetrics_port = 9000\n\n\
             [proxy-1]\ninstance = agent-a\nrole = PROXY\nport = 2201\nmetrics_port = 9001\n\n\
             [worker-1]\ninstance = agent-b\nrole = WORKER\ninterface = af_packet::lo\nmetrics_port = 9002\n\n\
             [worker-2]\ninstance = agent-b\nrole = WORKER\ninterface = af_packet::lo\nmetrics_port = 9003\n\n"
        )
    );
    let (code, staged, _) = controller.client(&["get-config", "--staged"]);
    assert_eq!(code, 0);
    assert!(
        !staged.contains("port = 2200"),
        "STAGED is as sent:\n{staged}"
    );

    // A restart of the controller: SIGTERM exits 0, the nodes keep running,
    // and the configurations come back; the agents, redeployed to as they
    // return, restart nothing.
    let status = controller.stop();
    assert!(status.success(), "{status:?}");
    let controller = Controller::start_on(dir, ws_port, agent_port, &[]);
    let (code, again, _) = controller.client(&["get-config", "--deployed"]);
    assert_eq!((code, again.as_str()), (0, deployed.as_str()));
    eventually(
        "the agents never came back",
        Duration::from_secs(15),
        || {
            let (code, out, _) = controller.client(&["get-nodes"]);
            code == 0 && out.contains("agent-a") && out.contains("agent-b")
        },
    );
    let (_, out, _) = controller.client(&["get-nodes"]);
    assert_eq!(pids(&out), before, "nodes were restarted:\n{out}");

    // The same configuration again: every agent answers unchanged, and
    // zeek-client prints only the id.
    let (code, out, err) = controller.client(&["deploy"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!("{{\n  \"errors\": [],\n  \"results\": {{\n    \"id\": \"{id}\"\n  }}\n}}\n")
    );
}

#[test]
fn a_node_that_fails_is_shown_with_its_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let _a = Agent::start_dialling(
        controller.agents,
        &["--name", "agent-a", "--max-revivals", "0"],
    );
    std::fs::write(
        dir.join("fail.ini"),
        "[manager]\ninstance = agent-a\nrole = manager\n\n\
         [worker-1]\ninstance = agent-a\nrole = worker\nenv = STANDIN_FAIL_START=1\n",
    )
    .expect("fail.ini");
    controller.wait_checked_in("agent-a");
    let (code, out, err) = controller.client(&["deploy-config", "fail.ini"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["errors"], serde_json::json!([]));
    assert_eq!(
        v["results"]["nodes"]["manager"],
        serde_json::json!({"instance": "agent-a", "success": true})
    );
    let w = &v["results"]["nodes"]["worker-1"];
    assert_eq!(w["success"], false);
    assert_eq!(w["instance"], "agent-a");
    assert_eq!(w["stderr"], "fatal error: stand-in told to fail at start\n");
    assert!(
        w["stdout"]
            .as_str()
            .is_some_and(|s| s.starts_with("stand-in node worker-1 started with pid ")),
        "{out}"
    );
}

#[test]
fn zeek_client_gets_the_controllers_refusals_word_for_word() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let agent_port = controller.agents;
    let (code, out, _) = controller.client(&["deploy"]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "{\n  \"errors\": [\n    \"no configuration available to deploy\"\n  ],\n  \"results\": {}\n}\n"
        )
    );
    let (code, out, err) = controller.client(&["get-config"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "error: no staged configuration available\n")
    );
    // CONTROLLER.md's bad.ini, with the controller's agent port of this
    // test where the file has the default 2150.
    std::fs::write(
        dir.join("bad.ini"),
        format!(
            "[instances]\nagent-local\nmanager\n\n\
         [manager]\ninstance = agent-local\nrole = manager\nport = {agent_port}\n\n\
         [logger]\ninstance = agent-other\nrole = logger\nport = 2300\n\n\
         [worker-1]\ninstance = agent-local\nrole = worker\nport = 2300\n\n\
         [worker-2]\ninstance = agent-local\nrole = worker\nport = 2300\n"
        ),
    )
    .expect("bad.ini");
    let (code, out, _) = controller.client(&["stage-config", "bad.ini"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!("{{\n  \"errors\": [\n    \"multiple nodes on instance 'agent-local' using port 2300/tcp\",\n    \"node 'logger' has undeclared instance name 'agent-other'\",\n    \"node 'manager' port {agent_port}/tcp conflicts with controller port\",\n    \"node and instance names collide: manager\"\n  ],\n  \"results\": {{}}\n}}\n")
    );
    let (code, out, _) = controller.client(&["restart"]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "{\n  \"errors\": [\n    {\n      \"error\": \"no instances connected\",\n      \"source\": null\n    }\n  ],\n  \"results\": {}\n}\n"
        )
    );
    let (code, out, _) = controller.client(&["get-id-value", "Cluster::node"]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "{\n  \"errors\": [\n    {\n      \"error\": \"no cluster deployed\",\n      \"source\": null\n    }\n  ],\n  \"results\": {}\n}\n"
        )
    );
}

#[test]
fn a_stage_of_ten_thousand_nodes_and_two_clients_deploying_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let mut ini = String::from("[manager]\ninstance = agent-a\nrole = manager\n\n");
    for i in 1..=10_000 {
        ini.push_str(&format!(
            "[worker-{i}]\ninstance = agent-a\nrole = worker\n\n"
        ));
    }
    std::fs::write(dir.join("big.ini"), ini).expect("big.ini");
    let started = std::time::Instant::now();
    let (code, out, err) = controller.client(&["stage-config", "big.ini"]);
    println!(
        "stage-config of 10,001 nodes through zeek-client: {:?}",
        started.elapsed()
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = controller.client(&["get-config", "--as-json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(10_001));

    // Two clients deploy at once: each gets one answer, a success or the
    // other's pending deployment, and the cluster ends deployed.
    std::fs::write(
        dir.join("small.ini"),
        "[manager]\ninstance = agent-b\nrole = manager\n\n[worker-1]\ninstance = agent-b\nrole = worker\n",
    )
    .expect("small.ini");
    let _b = Agent::start_dialling(controller.agents, &["--name", "agent-b"]);
    eventually("agent-b never checked in", Duration::from_secs(10), || {
        controller.client(&["get-instances"]).1.contains("agent-b")
    });
    let (code, _, err) = controller.client(&["stage-config", "small.ini"]);
    assert_eq!(code, 0, "{err}");
    let (first, second) = std::thread::scope(|s| {
        let one = s.spawn(|| controller.client(&["deploy"]));
        let two = s.spawn(|| controller.client(&["deploy"]));
        (one.join().expect("first"), two.join().expect("second"))
    });
    for (code, out, err) in [&first, &second] {
        let ok = *code == 0 && out.contains("\"id\"");
        let refused = *code == 1 && out.contains("still pending");
        assert!(ok || refused, "{code} {out} {err}");
    }
    assert!(first.0 == 0 || second.0 == 0, "{first:?} {second:?}");
    let (code, out, _) = controller.client(&["get-nodes"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("\"RUNNING\"").count(), 3, "{out}");
}

#[test]
fn tls_towards_zeek_client_and_towards_the_agents() {
    use crate::tls::{ca, leaf};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ours = ca("cluster CA");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ours.pem).expect("ca");
    let (server_cert, server_key) = leaf(dir, "controller", &ours, false);
    let (agent_cert, agent_key) = leaf(dir, "agent", &ours, false);
    let (client_cert, client_key) = leaf(dir, "client", &ours, false);
    let p = |p: &std::path::Path| p.display().to_string();
    let controller = Controller::start_with(
        dir,
        &[
            "--websocket-tls-cert",
            &p(&server_cert),
            "--websocket-tls-key",
            &p(&server_key),
            "--tls-cert",
            &p(&server_cert),
            "--tls-key",
            &p(&server_key),
            "--tls-ca",
            &p(&ca_path),
        ],
    );
    // zeek-client's two TLS modes: encrypted without verification, and
    // verifying the controller against the CA.
    let (code, out, err) = controller.client(&["--set", "ssl.enable=true", "get-instances"]);
    assert_eq!((code, out.as_str()), (0, "{}\n"), "{err}");
    let verified = [
        "--set".to_owned(),
        "ssl.enable=true".to_owned(),
        "--set".to_owned(),
        format!("ssl.cafile={}", p(&ca_path)),
        "--set".to_owned(),
        format!("ssl.certificate={}", p(&client_cert)),
        "--set".to_owned(),
        format!("ssl.keyfile={}", p(&client_key)),
    ];
    let mut args: Vec<&str> = verified.iter().map(String::as_str).collect();
    args.push("get-instances");
    // An agent dialling in with mutual TLS, verifying the controller.
    let _a = Agent::start_dialling(
        controller.agents,
        &[
            "--name",
            "agent-tls",
            "--tls-ca",
            &p(&ca_path),
            "--tls-cert",
            &p(&agent_cert),
            "--tls-key",
            &p(&agent_key),
        ],
    );
    eventually(
        "the TLS agent never checked in over TLS, or zeek-client could not verify",
        Duration::from_secs(10),
        || {
            let (code, out, _) = controller.client(&args);
            code == 0 && out.contains("agent-tls")
        },
    );
    // Our client, verifying the controller against the CA: the same.
    let tls = [
        "--tls-ca".to_owned(),
        p(&ca_path),
        "--tls-cert".to_owned(),
        p(&client_cert),
        "--tls-key".to_owned(),
        p(&client_key),
        "get-instances".to_owned(),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    assert_eq!(controller.ours(&tls), controller.client(&args));
}

/// Two agents with the node channel (the Python stand-in): agent-a dials
/// the controller, agent-b listens and is dialled. Writes `cluster.ini`
/// (manager and proxy-1 on agent-a, worker-1 and worker-2 on agent-b, with
/// `worker_extra` in worker-2's section) and waits for agent-a.
pub fn channel_agents(controller: &Controller, dir: &Path, worker_extra: &str) -> (Agent, Agent) {
    let stand_in = crate::channel::stand_in_zeek().display().to_string();
    let channel = ["--node-channel", "auto", "--zeek-binary", stand_in.as_str()];
    let with = |name: &'static str| {
        let mut a = vec!["--name", name];
        a.extend_from_slice(&channel);
        a
    };
    let a = Agent::start_dialling(controller.agents, &with("agent-a"));
    let b = Agent::start(&with("agent-b"));
    let b_port = b.addr.expect("agent-b listens").port();
    let (mp, pp) = (free_port(), free_port());
    // The manager's port hosts the stand-in's bus, which the nodes of both
    // agents reach (ZeroMQ's cluster-wide publish/subscribe).
    std::fs::write(
        dir.join("cluster.ini"),
        format!(
            "[instances]\nagent-a\nagent-b = 127.0.0.1:{b_port}\n\n\
             [manager]\ninstance = agent-a\nrole = manager\nport = {mp}\n\n\
             [proxy-1]\ninstance = agent-a\nrole = proxy\nport = {pp}\n\n\
             [worker-1]\ninstance = agent-b\nrole = worker\n\n\
             [worker-2]\ninstance = agent-b\nrole = worker\n{worker_extra}"
        ),
    )
    .expect("cluster.ini");
    controller.wait_checked_in("agent-a");
    (a, b)
}

#[test]
fn zeek_client_gets_id_values_from_the_nodes_through_their_channels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let _agents = channel_agents(&controller, dir, "");
    let (code, out, err) = controller.client(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");

    // At once after the deploy: every node answers with its own name.
    let (code, out, err) = controller.client(&["get-id-value", "Cluster::node"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "{\n  \"errors\": [],\n  \"results\": {\n    \"manager\": \"manager\",\n    \"proxy-1\": \"proxy-1\",\n    \"worker-1\": \"worker-1\",\n    \"worker-2\": \"worker-2\"\n  }\n}\n"
        ),
        "{err}"
    );
    let (code, out, _) = controller.client(&["get-id-value", "Cluster::node", "worker-2", "nope"]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "{\n  \"errors\": [\n    {\n      \"error\": \"unknown cluster node\",\n      \"source\": \"nope\"\n    }\n  ],\n  \"results\": {\n    \"worker-2\": \"worker-2\"\n  }\n}\n"
        )
    );
    let (code, out, _) = controller.client(&["get-id-value", "No::such_id", "worker-1"]);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "{\n  \"errors\": [\n    {\n      \"error\": \"unknown id\",\n      \"source\": \"worker-1\"\n    }\n  ],\n  \"results\": {}\n}\n"
        )
    );
}

/// The configuration ids in an output replaced by `<id>`: each tool stages
/// its own.
fn without_ids(out: &str) -> String {
    let re_id = |line: &str| match line.split_once("\"id\": \"") {
        Some((head, _)) => format!("{head}\"id\": \"<id>\","),
        None => line.to_owned(),
    };
    out.lines()
        .map(|l| {
            if l.contains("\"id\": \"") {
                let mut r = re_id(l);
                if !l.trim_end().ends_with(',') {
                    r.pop();
                }
                r
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn our_client_prints_what_zeek_client_prints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let agent_port = controller.agents;
    let same = |args: &[&str]| {
        let theirs = controller.client(args);
        let ours = controller.ours(args);
        assert_eq!(
            (ours.0, without_ids(&ours.1), ours.2.clone()),
            (theirs.0, without_ids(&theirs.1), theirs.2.clone()),
            "{args:?}: ours, then zeek-client's"
        );
        theirs
    };
    // Nothing listens: both try for about 10 s (run side by side). The
    // port is held by a socket that never listens, so that no other test
    // takes it meanwhile.
    let held = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
            s
        })
    })
    .join()
    .expect("socket");
    let dead_addr = held.local_addr().expect("addr").to_string();
    let spawn = |program: PathBuf| {
        Command::new(program)
            .args(["--controller", &dead_addr, "get-nodes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("client")
    };
    let theirs = spawn(zeek_client());
    let ours = spawn(PathBuf::from(env!("CARGO_BIN_EXE_zeek-mgmt-client")));
    let outputs = [ours, theirs].map(|c| {
        let o = c.wait_with_output().expect("output");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    });
    assert_eq!(outputs[0], outputs[1], "ours, then zeek-client's");
    assert_eq!(
        outputs[0].2,
        format!("error: websocket connection to {dead_addr} timed out in connect()\n")
    );
    drop(held);

    // Nothing connected, nothing staged.
    same(&["get-instances"]);
    same(&["get-nodes"]);
    same(&["restart"]);
    same(&["get-id-value", "Cluster::node"]);
    same(&["deploy"]);
    same(&["get-config"]);
    same(&["get-config", "--deployed"]);

    let _agents = channel_agents(&controller, dir, "env = A=\"x y\" B=1\n");
    std::fs::write(
        dir.join("bad.ini"),
        format!(
            "[instances]\nagent-a\nmanager\n\n\
         [manager]\ninstance = agent-a\nrole = manager\nport = {agent_port}\n\n\
         [logger]\ninstance = agent-other\nrole = logger\nport = 2300\n\n\
         [worker-1]\ninstance = agent-a\nrole = worker\nport = 2300\n\n\
         [worker-2]\ninstance = agent-a\nrole = worker\nport = 2300\n"
        ),
    )
    .expect("bad.ini");
    same(&["get-instances"]);
    same(&["stage-config", "bad.ini"]);
    // Files refused before any connection: the same words and exit codes.
    for (i, text) in [
        "[manager]\ninstance = agent-a\nrole = manager\n\n[worker-1]\nrole = worker\n",
        "[instances]\nagent-a\n\n[manager]\nrole = manager\n",
        "[manager]\nrole = Supervisor::BOSS\n",
        "[manager]\nrole\nport = 2200\n",
        "[manager]\nrole = manager\nport = 2151/tcp\n",
        "[manager]\nrole = manager\nport = 70000\n",
        "[manager]\nrole = manager\nmetrics_port = 0\n",
        "[w]\nrole = worker\ncpu_affinity = one\n",
        "[w]\nrole = worker\nenv = A=1 B\n",
        "[w]\nrole = worker\nscripts = \"a.zeek\n",
        "[instances]\nagent-a = hostonly\n\n[w]\ninstance = agent-a\nrole = worker\n",
        "[DEFAULT]\ninterface = lo\n\n[instances]\nagent-a\n\n[w]\ninstance = agent-a\nrole = worker\n",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("refused-{i}.ini");
        std::fs::write(dir.join(&name), text).expect("write");
        let (code, out, _) = same(&["stage-config", &name]);
        assert_eq!((code, out.as_str()), (1, ""), "{text:?}");
    }
    same(&["stage-config", "no-such.ini"]);
    // A file with every key zeek-client reads: both stage the same thing.
    std::fs::write(
        dir.join("every-key.ini"),
        "[DEFAULT]\ninterface = lo\n\n\
         [Manager]\nInstance: agent-a\nTYPE = Supervisor::MANAGER\nport = +2_200\n\
         metrics_port = 9100\nscripts = z.zeek \"a b.zeek\"\n  local.zeek\n\
         env = A=\"x y\" B=1=2\nstate = RUNNING\nunknown = 1\n\n\
         [worker-1]\ninstance = agent-b\nrole = worker\ncpu_affinity = 1\n",
    )
    .expect("every-key.ini");
    let staged_after = |(code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{out}{err}");
        let (_, json, _) = controller.client(&["get-config", "--as-json"]);
        without_ids(&json)
    };
    let theirs = staged_after(controller.client(&["stage-config", "every-key.ini"]));
    let ours = staged_after(controller.ours(&["stage-config", "every-key.ini"]));
    assert_eq!(ours, theirs, "ours, then zeek-client's");
    assert!(theirs.contains("a b.zeek"), "{theirs}");
    let (code, _, _) = same(&["stage-config", "cluster.ini"]);
    assert_eq!(code, 0);
    for args in [
        &["get-config"][..],
        &["get-config", "--as-json"],
        &["get-config", "--staged"],
    ] {
        same(args);
    }
    // Each deploys its own staging of the file: the same nodes, new ids.
    let (code, out, _) = same(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}");
    for args in [
        &["get-instances"][..],
        &["get-nodes"],
        &["get-config", "--deployed"],
        &["get-config", "--deployed", "--as-json"],
        &["get-id-value", "Cluster::node"],
        &["get-id-value", "Cluster::node", "worker-2", "nope"],
        &["get-id-value", "No::such_id", "worker-1"],
        &["restart", "worker-1", "bogus"],
        &["deploy"],
        &["test-timeout", "--with-state"],
    ] {
        same(args);
    }
    // --controller with the host left out, as zeek-client allows.
    let short = format!(":{}", controller.ws.port());
    let outputs = [
        zeek_client(),
        PathBuf::from(env!("CARGO_BIN_EXE_zeek-mgmt-client")),
    ]
    .map(|program| {
        let o = Command::new(program)
            .args(["--controller", &short, "get-instances"])
            .output()
            .expect("client");
        (o.status.code(), o.stdout, o.stderr)
    });
    assert_eq!(
        outputs[1], outputs[0],
        "--controller {short}: ours, then zeek-client's"
    );
    assert_eq!(outputs[0].0, Some(0));
    // -f FILE: the same words, and the same file.
    for json in [false, true] {
        let args = |file: &'static str| {
            let mut a = vec!["get-config", "--deployed", "-f", file];
            if json {
                a.push("--as-json");
            }
            a
        };
        let theirs = controller.client(&args("theirs.out"));
        let ours = controller.ours(&args("ours.out"));
        assert_eq!(ours, theirs, "-f, json {json}: ours, then zeek-client's");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("written");
        assert_eq!(
            without_ids(&read("ours.out")),
            without_ids(&read("theirs.out")),
            "-f, json {json}"
        );
    }

    // Our monitor prints the controller's traffic as one JSON line per
    // event, as its agent mode prints notifications.
    let mut monitor = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
        .args(["--controller", &controller.ws.to_string(), "monitor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("monitor");
    let stdout = monitor.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let seen = |event: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // zeek-client's request, then the controller's response.
            controller.client(&["get-instances"]);
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                let v: Value = serde_json::from_str(&line).expect("a JSON line");
                assert!(v["timestamp"].is_f64(), "{line}");
                assert_eq!(v["controller"], controller.ws.to_string());
                if v["event"] == event {
                    return v;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no {event}");
        }
    };
    let request = seen("get_instances_request");
    assert_eq!(request["args"][0]["@data-type"], "string");
    let response = seen("get_instances_response");
    assert_eq!(response["args"].as_array().map(Vec::len), Some(2));
    let _ = monitor.kill();
    let _ = monitor.wait();
}

/// A WebSocket server playing a controller gone wrong: after a client's
/// subscription it sends `first` (if any), and answers each later frame
/// with `reply` (if any). It serves until the test binary ends.
fn misbehaving_controller(first: Option<&'static str>, reply: Option<&'static str>) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let _subscription = ws.next().await;
                    if let Some(f) = first {
                        let _ = ws.send(Message::text(f)).await;
                    }
                    while let Some(Ok(_)) = ws.next().await {
                        if let Some(r) = reply {
                            let _ = ws.send(Message::text(r)).await;
                        }
                    }
                });
            }
        });
    });
    addr
}

#[test]
fn both_clients_name_a_misbehaving_controller_alike() {
    let ack = r#"{"type": "ack", "endpoint": "x", "version": "8.2.2"}"#;
    let cases = [
        // Never acks: both give up after their ten tries.
        (None, None),
        (Some("hello"), None),
        (
            Some(r#"{"type": "error", "code": "x", "context": "y"}"#),
            None,
        ),
        (Some(ack), Some("not json")),
        (Some(ack), Some(r#"{"type": "data-message", "topic": "#)),
    ];
    // All at once: the ten tries of the first case set the test's length.
    let runs: Vec<_> = cases
        .iter()
        .map(|(first, reply)| {
            let addr = misbehaving_controller(*first, *reply);
            [
                zeek_client(),
                PathBuf::from(env!("CARGO_BIN_EXE_zeek-mgmt-client")),
            ]
            .map(|program| {
                Command::new(program)
                    .args(["--controller", &addr, "get-nodes"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("client")
            })
        })
        .collect();
    for (case, clients) in cases.iter().zip(runs) {
        let [theirs, ours] = clients.map(|c| {
            let o = c.wait_with_output().expect("output");
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        });
        assert_eq!(ours, theirs, "{case:?}: ours, then zeek-client's");
        assert_eq!(theirs.0, Some(1), "{case:?}");
    }
}

/// The established TCP connections of process `pid`: (local, remote), as
/// the kernel lists them (hex `addr:port`).
fn tcp_connections(pid: u32) -> Vec<(String, String)> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local, remote, state (01: established), ..., inode
            if f.len() > 9 && f[3] == "01" && inodes.contains(f[9]) {
                out.push((f[1].to_owned(), f[2].to_owned()));
            }
        }
    }
    out
}

#[test]
fn one_process_runs_the_controller_and_its_hosts_agent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let stand_in = crate::channel::stand_in_zeek().display().to_string();
    let local_dir = dir.join("local");
    let local_flags: Vec<String> = vec![
        "--local-agent".into(),
        "--".into(),
        "--name".into(),
        "agent-local".into(),
        "--zeek-binary".into(),
        stand_in.clone(),
        "--cluster-dir".into(),
        local_dir.join("cluster").display().to_string(),
        "--state-dir".into(),
        local_dir.join("state").display().to_string(),
        "--revive-delay".into(),
        "0.1".into(),
    ];
    let flags: Vec<&str> = local_flags.iter().map(String::as_str).collect();
    let controller = Controller::start_with(dir, &flags);
    let (ws_port, agent_port) = (controller.ws.port(), controller.agents);
    let b = Agent::start(&[
        "--name",
        "agent-b",
        "--node-channel",
        "auto",
        "--zeek-binary",
        &stand_in,
    ]);
    let b_port = b.addr.expect("agent-b listens").port();
    let (mp, pp) = (free_port(), free_port());
    std::fs::write(
        dir.join("cluster.ini"),
        format!(
            "[instances]\nagent-local\nagent-b = 127.0.0.1:{b_port}\n\n\
             [manager]\ninstance = agent-local\nrole = manager\nport = {mp}\n\n\
             [proxy-1]\ninstance = agent-local\nrole = proxy\nport = {pp}\n\n\
             [worker-1]\ninstance = agent-b\nrole = worker\n\n\
             [worker-2]\ninstance = agent-b\nrole = worker\n"
        ),
    )
    .expect("cluster.ini");
    controller.wait_checked_in("agent-local");
    let (code, out, err) = controller.client(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    // Both tools see the embedded agent as any other instance.
    for args in [
        &["get-instances"][..],
        &["get-nodes"],
        &["get-id-value", "Cluster::node"],
    ] {
        let theirs = controller.client(args);
        assert_eq!(theirs.0, 0, "{args:?}: {theirs:?}");
        assert_eq!(controller.ours(args), theirs, "{args:?}");
    }
    let (_, out, _) = controller.client(&["get-instances"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["agent-local"], serde_json::json!({"host": "127.0.0.1"}));
    // The embedded agent shares the controller's process: its pid.
    let (_, out, _) = controller.client(&["get-nodes"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["results"]["agent-local"]["agent-local"]["pid"].as_i64(),
        Some(i64::from(controller.pid()))
    );
    // No TCP connection inside the process: none between the controller
    // and its agent (the nodes' channels and agent-b's connection go out).
    let conns = tcp_connections(controller.pid());
    for (local, remote) in &conns {
        assert!(
            !conns.contains(&(remote.clone(), local.clone())),
            "a connection within the process: {local} <-> {remote}"
        );
    }

    // A node that crashes is revived on the embedded agent as on agent-b.
    let pid_of = |out: &str, agent: &str, node: &str| {
        let v: Value = serde_json::from_str(out).expect("json");
        v["results"][agent][node]["pid"].as_i64().unwrap_or(0)
    };
    let (_, before, _) = controller.client(&["get-nodes"]);
    for (agent, node, dir) in [
        ("agent-local", "proxy-1", local_dir.join("cluster/proxy-1")),
        ("agent-b", "worker-1", b.node_dir("worker-1")),
    ] {
        std::fs::write(dir.join("crash-now"), "").expect("crash-now");
        eventually(
            Later(|| format!("{node} on {agent} was not revived")),
            LONG,
            || {
                let (_, now, _) = controller.client(&["get-nodes"]);
                let v: Value = serde_json::from_str(&now).unwrap_or_default();
                pid_of(&now, agent, node) != pid_of(&before, agent, node)
                    && v["results"][agent][node]["state"] == "RUNNING"
            },
        );
    }

    // SIGTERM: the embedded agent stops its nodes, as an agent stopping
    // would, and keeps its configuration; started again, it brings them
    // back and the controller's redeploy changes nothing.
    let status = controller.stop();
    assert!(status.success(), "{status:?}");
    let stderr =
        std::fs::read_to_string(local_dir.join("cluster/manager/stderr")).unwrap_or_default();
    assert!(stderr.contains("received termination signal"), "{stderr}");
    let controller = Controller::start_on(dir, ws_port, agent_port, &flags);
    eventually("the cluster did not come back", LONG, || {
        let (code, out, _) = controller.client(&["get-nodes"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_default();
        code == 0
            && ["manager", "proxy-1"]
                .iter()
                .all(|n| v["results"]["agent-local"][n]["state"] == "RUNNING")
            && ["worker-1", "worker-2"]
                .iter()
                .all(|n| v["results"]["agent-b"][n]["state"] == "RUNNING")
    });
}

#[test]
fn a_node_that_has_not_joined_fails_the_deploy_with_the_address_to_reach() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Room for the agents' readiness deadline (0.9 of their 8 s).
    let controller = Controller::start_with(dir, &["--request-timeout", "20s"]);
    // worker-2 answers as another process (another cluster on the same
    // broker would): its pings are never its own, so it never joins.
    let _agents = channel_agents(&controller, dir, "env = STANDIN_PING_PID=1\n");
    let (code, out, err) = controller.client(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let worker = &v["results"]["nodes"]["worker-2"];
    assert_eq!(worker["success"], false, "{out}");
    let why = "node worker-2 has not joined the cluster: no answer through its cluster backend for 5.0 s; check that the manager runs and that this host reaches the manager's ZeroMQ broker at 127.0.0.1 (tcp ports 5555 and 5556)";
    assert!(
        worker["stderr"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("zeek-mgmt-agent: {why}\n"))),
        "{out}"
    );
    for n in ["manager", "proxy-1", "worker-1"] {
        assert_eq!(v["results"]["nodes"][n]["success"], true, "{n}: {out}");
    }
    // get-nodes says so too, from worker-2's agent, in both clients.
    let (code, out, err) = controller.client(&["get-nodes"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["errors"],
        serde_json::json!([{"error": why, "source": "agent-b"}]),
        "{out}"
    );
    assert_eq!(v["results"]["agent-b"]["worker-2"]["state"], "RUNNING");
    let ours = controller.ours(&["get-nodes"]);
    assert_eq!(
        (ours.0, normalised_nodes(&ours.1)),
        (code, normalised_nodes(&out))
    );
}

#[test]
fn check_through_the_controller_gives_each_nodes_verdict_and_deploys_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let a = Agent::start_dialling(controller.agents, &["--name", "agent-a"]);
    controller.wait_checked_in("agent-a");
    let ini = |worker: &str| {
        format!(
            "[instances]\nagent-a\n\n\
             [manager]\ninstance = agent-a\nrole = manager\n\n\
             [worker-1]\ninstance = agent-a\nrole = worker\n{worker}"
        )
    };
    std::fs::write(dir.join("good.ini"), ini("")).expect("good.ini");
    let (code, out, err) = controller.ours(&["check", "good.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["errors"], serde_json::json!([]), "{out}");
    for n in ["manager", "worker-1"] {
        assert_eq!(v["results"]["nodes"][n]["success"], true, "{n}: {out}");
        assert_eq!(v["results"]["nodes"][n]["instance"], "agent-a", "{out}");
    }

    let words = "error in ./x.zeek, line 1: syntax error, at end of file";
    std::fs::write(
        dir.join("bad.ini"),
        ini(&format!("env = STANDIN_PARSE_ERROR=\"{words}\"\n")),
    )
    .expect("bad.ini");
    let (code, out, err) = controller.ours(&["check", "bad.ini"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let w = &v["results"]["nodes"]["worker-1"];
    assert_eq!(w["success"], false, "{out}");
    assert!(
        w["stderr"].as_str().is_some_and(|s| s.contains(words)),
        "{out}"
    );
    assert!(v["results"]["nodes"].get("manager").is_none(), "{out}");

    // An agent the controller has not met, and one it would dial: each
    // named with why it was not asked.
    std::fs::write(
        dir.join("absent.ini"),
        "[instances]\nagent-a\nagent-b\nagent-c = 127.0.0.1:2\n\n\
         [manager]\ninstance = agent-a\nrole = manager\n\n\
         [worker-1]\ninstance = agent-b\nrole = worker\n\n\
         [worker-2]\ninstance = agent-c\nrole = worker\n",
    )
    .expect("absent.ini");
    let (code, out, err) = controller.ours(&["check", "absent.ini"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["errors"],
        serde_json::json!([
            "agent agent-b is not connected",
            "agent agent-c is not connected: the controller dials it (127.0.0.1:2) once a configuration naming it is deployed",
        ]),
        "{out}"
    );
    assert_eq!(v["results"]["nodes"]["manager"]["success"], true, "{out}");

    // Nothing was staged, deployed or started.
    let (code, out, _) = controller.client(&["get-config", "--deployed"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = controller.client(&["get-config"]);
    assert_eq!(code, 1, "{out}");
    assert!(!a.node_dir("manager").join("pids").exists());
}

#[test]
fn a_deploy_that_times_out_names_each_agent_it_waited_for_and_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start_with(dir, &["--request-timeout", "2s"]);
    let _a = Agent::start_dialling(controller.agents, &["--name", "agent-a"]);
    controller.wait_checked_in("agent-a");
    // agent-b listens somewhere, but the file gives the controller no
    // address to dial; agent-c's address answers nothing.
    let dead = free_port();
    std::fs::write(
        dir.join("cluster.ini"),
        format!(
            "[instances]\nagent-a\nagent-b\nagent-c = 127.0.0.1:{dead}\n\n\
             [manager]\ninstance = agent-a\nrole = manager\n\n\
             [worker-1]\ninstance = agent-b\nrole = worker\n\n\
             [worker-2]\ninstance = agent-c\nrole = worker\n"
        ),
    )
    .expect("cluster.ini");
    let (code, out, err) = controller.client(&["deploy-config", "cluster.ini"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["errors"],
        serde_json::json!([
            "agent agent-b is not connected, and has no address to dial: it must dial the controller, or [instances] must give its address",
            format!("agent agent-c is not connected (the controller dials 127.0.0.1:{dead} and got no hello)"),
            "request timed out",
        ]),
        "{out}"
    );
    let log = std::fs::read_to_string(dir.join("controller.log")).expect("log");
    assert!(
        log.contains("timed out: agent agent-b is not connected"),
        "{log}"
    );
}

/// Runs a controller that is expected not to start: (exit code, stderr).
fn failed_start(state_dir: &Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-controller"))
        .args(["--no-websocket", "--no-listen", "--state-dir"])
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the controller");
    let exited = came_within(LONG, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("its output");
    assert!(exited, "the controller started and ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_controller_on_the_same_state_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let first = Controller::start(dir);
    let state = dir.join("controller-state");
    let (code, err) = failed_start(&state);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "state directory {} is in use by another controller (pid {}); one controller per state directory",
            state.display(),
            first.pid()
        )),
        "{err}"
    );
    // The first still serves.
    let (code, out, _) = first.client(&["get-instances"]);
    assert_eq!((code, out.as_str()), (0, "{}\n"));
}

/// A read-only bind mount of a directory, undone when dropped (root), or
/// the directory made read-only (others).
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn make(dir: &Path) -> ReadOnly {
        let run = |args: &[&str]| {
            let ok = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount {args:?}");
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            run(&["--bind"]);
            run(&["-o", "remount,bind,ro"]);
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        }
        ReadOnly(dir.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
}

#[test]
fn an_unwritable_state_directory_is_found_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    let _ro = ReadOnly::make(&state);
    let (code, err) = failed_start(&state);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "state directory {} cannot be used (it must be a directory the controller can write): ",
            state.display()
        )),
        "{err}"
    );
}

#[test]
fn a_damaged_state_file_is_kept_aside_and_the_controller_starts_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let state = dir.join("controller-state");
    std::fs::create_dir(&state).expect("state dir");
    let mut bytes = b"{\"version\": 1, \"staged\": ".to_vec();
    bytes.extend([0xff, 0xfe, 0xfd]);
    bytes.extend(b"null, \"ready\": null, \"deployed\": null}");
    std::fs::write(state.join("controller.json"), &bytes).expect("damaged file");
    let controller = Controller::start(dir);
    assert_eq!(
        std::fs::read(state.join("controller.json.bad")).expect("kept aside"),
        bytes
    );
    std::fs::write(
        dir.join("c.ini"),
        "[instances]\nagent-a\n\n[manager]\ninstance = agent-a\nrole = manager\n",
    )
    .expect("c.ini");
    let (code, out, err) = controller.client(&["stage-config", "c.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    // The staging wrote a new file; the damaged one is still kept.
    assert!(state.join("controller.json").exists());
    assert_eq!(
        std::fs::read(state.join("controller.json.bad")).expect("still kept"),
        bytes
    );
}

#[test]
fn a_deployment_cut_short_by_the_controllers_death_is_finished_without_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let first = Controller::start(dir);
    let agent_port = first.agents;
    let a = Agent::start_dialling(agent_port, &["--name", "agent-a"]);
    // agent-b counts a node as running only after 2 s: the deployment is
    // still waiting on it when the controller dies.
    let b = Agent::start(&["--name", "agent-b", "--settle-time", "2"]);
    let b_port = b.addr.expect("agent-b listens").port();
    first.wait_checked_in("agent-a");
    let ini = |env: &str| {
        format!(
            "[instances]\nagent-a\nagent-b = 127.0.0.1:{b_port}\n\n\
             [manager]\ninstance = agent-a\nrole = manager\n{env}\n\
             [worker-1]\ninstance = agent-b\nrole = worker\n{env}"
        )
    };
    std::fs::write(dir.join("old.ini"), ini("")).expect("old.ini");
    std::fs::write(dir.join("new.ini"), ini("env = RELEASE=2\n")).expect("new.ini");
    let (code, out, err) = first.client(&["deploy-config", "old.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = first.client(&["stage-config", "new.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let new_id = id_of(&out);
    let mut deploy = Command::new(zeek_client())
        .args(["--controller", &first.ws.to_string(), "deploy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("zeek-client deploy");
    a.wait_log(&format!("configuration \"{new_id}\" applied"), 1);
    drop(first);
    let _ = deploy.wait();
    b.wait_log(&format!("configuration \"{new_id}\" applied"), 1);
    let launches = |agent: &Agent, node: &str| {
        std::fs::read_to_string(agent.node_dir(node).join("pids"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert_eq!((launches(&a, "manager"), launches(&b, "worker-1")), (2, 2));

    // The restarted controller finds the deployment unfinished: it sends
    // the new configuration, which every agent already runs.
    let second = Controller::start_on(dir, 0, agent_port, &[]);
    eventually(
        Later(|| {
            format!(
                "the new configuration never counted as deployed: {:?}",
                second.client(&["get-config", "--deployed", "--as-json"])
            )
        }),
        Duration::from_secs(15),
        || {
            let (code, out, _) = second.client(&["get-config", "--deployed", "--as-json"]);
            code == 0 && out.contains(&new_id)
        },
    );
    assert_eq!(
        (launches(&a, "manager"), launches(&b, "worker-1")),
        (2, 2),
        "nodes were restarted"
    );
}

#[test]
fn a_second_live_agent_with_a_name_in_use_is_refused_and_a_reconnect_is_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let first = Agent::start_dialling(controller.agents, &["--name", "agent-a"]);
    controller.wait_checked_in("agent-a");
    std::fs::write(
        dir.join("c.ini"),
        "[instances]\nagent-a\n\n[manager]\ninstance = agent-a\nrole = manager\n",
    )
    .expect("c.ini");
    let (code, out, err) = controller.client(&["deploy-config", "c.ini"]);
    assert_eq!(code, 0, "{out}{err}");
    let launches = |agent: &Agent| {
        std::fs::read_to_string(agent.node_dir("manager").join("pids"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert_eq!(launches(&first), 1);

    // Another agent process under the same name: refused while the first
    // answers, again at each of its redials, and said so.
    let second = Agent::start_dialling(controller.agents, &["--name", "agent-a"]);
    let log = || std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();
    eventually(
        Later(|| format!("three refusals in the log:\n{}", log())),
        LONG,
        || {
            log()
                .matches("two running agents are named agent-a")
                .count()
                >= 3
        },
    );
    let (code, out, _) = controller.client(&["get-nodes"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let error = v["errors"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("two running agents are named agent-a: the one at 127.0.0.1:")
            && error.ends_with("was refused; give each agent its own name (--name)"),
        "{out}"
    );
    assert_eq!(
        v["results"]["agent-a"]["manager"]["state"], "RUNNING",
        "{out}"
    );
    assert_eq!((launches(&first), launches(&second)), (1, 0));

    // The first goes: the second takes the name at its next dial and is
    // given the cluster.
    drop(first);
    eventually(
        Later(|| format!("the second agent never took over:\n{}", log())),
        LONG,
        || launches(&second) == 1,
    );
}

#[test]
fn each_side_recognises_a_client_on_the_wrong_port_and_names_the_right_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let controller = Controller::start(tmp.path());
    let agent = Agent::start(&["--name", "agent-a"]);
    // zeek-client at an agent's port: an HTTP 400 that says where to go.
    let out = Command::new(zeek_client())
        .arg("--controller")
        .arg(agent.addr.expect("listens").to_string())
        .arg("get-instances")
        .output()
        .expect("zeek-client");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("400 Bad Request")
            && err.contains("Point zeek-client at a controller's WebSocket port"),
        "{err}"
    );
    agent.wait_log(
        "sent an HTTP GET request (zeek-client pointed at an agent?)",
        1,
    );
    // Our client, for agents, at the controller's port for agents.
    let out = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
        .args([
            "--agent",
            &format!("127.0.0.1:{}", controller.agents),
            "get-nodes",
        ])
        .output()
        .expect("zeek-mgmt-client");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("this is a controller's port for agents")
            && said.contains("--controller HOST:PORT (its WebSocket port, 2149 by default)"),
        "{said}"
    );
}

#[test]
fn zeek_clients_own_options_work_as_in_zeek_client() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let controller = Controller::start(dir);
    let port = controller.ws.port().to_string();
    std::fs::write(
        dir.join("zc.ini"),
        "[client]\nrequest_timeout_secs = 2\n\n[extra]\nfoo = bar\n",
    )
    .expect("zc.ini");
    // Each client run as zeek-client would be, with the same environment.
    let run = |program: &Path, args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("ZEEK_MGMT_CONTROLLER")
            .current_dir(dir)
            .output()
            .expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"));
    let theirs = zeek_client();
    let set_port = format!("controller.port={port}");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        // Every layer, shown.
        (
            vec![
                "-c",
                "zc.ini",
                "--set",
                "controller.host=10.0.0.1",
                "--controller",
                ":9999",
                "show-settings",
            ],
            vec![(
                "ZEEK_CLIENT_CONFIG_SETTINGS",
                "ssl.cafile=/x 'client.pretty_json=false' bogus",
            )],
        ),
        (
            vec!["show-settings"],
            vec![("ZEEK_CLIENT_CONFIG_FILE", "zc.ini")],
        ),
        // The controller found by settings alone, JSON on one line.
        (
            vec![
                "--set",
                &set_port,
                "--set",
                "client.pretty_json=false",
                "get-nodes",
            ],
            vec![],
        ),
        // The request timeout of the config file: test-timeout gives up
        // after 2 s, as zeek-client does.
        (
            vec!["-c", "zc.ini", "--set", &set_port, "test-timeout"],
            vec![],
        ),
    ];
    for (args, env) in cases {
        let expected = run(&theirs, &args, &env);
        assert_eq!(run(ours, &args, &env), expected, "{args:?} {env:?}");
    }
}
