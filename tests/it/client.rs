//! `zeek-mgmt-client` against real agent processes over TCP.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::support::*;

fn client(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"));
    c.args(args)
        .env_remove("ZEEK_MGMT_AGENTS")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    client(args).output().expect("run client")
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("}\n"), "a trailing newline: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Three agents named agent-0..2 on their own ports.
fn three_agents() -> Vec<Agent> {
    (0..3)
        .map(|i| Agent::start(&["--name", &format!("agent-{i}")]))
        .collect()
}

fn addr(a: &Agent) -> String {
    a.addr.expect("listens").to_string()
}

fn cluster_ini(agents: &[Agent]) -> String {
    format!(
        "[instances]\nagent-0 = {}\nagent-1 = {}\nagent-2 = {}\n\n\
         [manager]\ninstance = agent-0\nrole = manager\nport = 27760\n\n\
         [proxy-1]\ninstance = agent-1\nrole = proxy\nport = 27761\n\n\
         [worker-1]\ninstance = agent-1\nrole = worker\nenv = MODE=\"fast path\"\n\n\
         [worker-2]\ninstance = agent-2\nrole = worker\n",
        addr(&agents[0]),
        addr(&agents[1]),
        addr(&agents[2])
    )
}

#[test]
fn deploys_across_three_agents_and_lists_their_nodes() {
    let agents = three_agents();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("cluster.ini");
    std::fs::write(&file, cluster_ini(&agents)).expect("write");

    let out = run(&["deploy", file.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["errors"], Value::Array(vec![]));
    let nodes = &j["results"]["nodes"];
    for (node, inst) in [
        ("manager", "agent-0"),
        ("proxy-1", "agent-1"),
        ("worker-1", "agent-1"),
        ("worker-2", "agent-2"),
    ] {
        assert_eq!(nodes[node]["instance"], inst, "{j}");
        assert_eq!(nodes[node]["success"], true, "{j}");
    }
    assert!(!j["results"]["id"].as_str().unwrap_or_default().is_empty());
    let env = std::fs::read_to_string(agents[1].node_dir("worker-1").join("env")).expect("env");
    assert!(env.lines().any(|l| l == "MODE=fast path"));

    let mut args = vec!["get-nodes"];
    let addrs: Vec<String> = agents.iter().map(addr).collect();
    for a in &addrs {
        args.push("--agent");
        args.push(a);
    }
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("{\n  \"errors\": [],\n  \"results\": {\n    \"agent-0\": {"),
        "{text}"
    );
    let j = json(&out);
    let w = &j["results"]["agent-2"]["worker-2"];
    assert_eq!(w["cluster_role"], "WORKER");
    assert_eq!(w["mgmt_role"], Value::Null);
    assert_eq!(w["state"], "RUNNING");
    assert!(w["pid"].as_i64().is_some_and(|p| p > 1));
    assert!(
        w.get("port").is_none(),
        "no port key for a node without a port"
    );
    let keys: Vec<&String> = w.as_object().expect("object").keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(j["results"]["agent-0"]["manager"]["port"], 27760);
    let me = &j["results"]["agent-1"]["agent-1"];
    assert_eq!(
        (me["mgmt_role"].as_str(), &me["cluster_role"]),
        (Some("AGENT"), &Value::Null)
    );

    // The table form.
    args.push("--table");
    let out = run(&args);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .next()
            .unwrap_or_default()
            .starts_with("instance  node"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent-2   worker-2  WORKER")),
        "{table}"
    );

    // Standby everywhere, through ZEEK_MGMT_AGENTS this time.
    let out = client(&["standby"])
        .env("ZEEK_MGMT_AGENTS", addrs.join(","))
        .output()
        .expect("standby");
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    for a in ["agent-0", "agent-1", "agent-2"] {
        assert_eq!(j["results"][a]["success"], true, "{j}");
    }
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let agent = Agent::start(&["--name", "agent-x"]);
    let a = addr(&agent);
    // Welcome: 0.
    let out = run(&["--agent", &a, "welcome"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["results"]["agent-x"]["success"], true);
    // Nobody at that address: 2, with advice on stderr.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .to_string();
    let out = run(&["--agent", &dead, "get-nodes", "--timeout", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["errors"][0]["source"], dead.as_str());
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be reached"));
    // A configuration the agent refuses: 1, the reason in "errors".
    let bad =
        format!("[instances]\nagent-x = {a}\n[manager]\ninstance = agent-x\nrole = manager\n");
    let mut child = client(&["deploy", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bad.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert!(
        j["errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("needs a port"),
        "{j}"
    );
    // A file that does not parse: 2, with the file, section and key.
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("bad.ini");
    std::fs::write(&f, "[w]\nrole = wizard\n").expect("write");
    let out = run(&["--agent", &a, "deploy", f.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.ini:2: section [w], key \"role\""),
        "{err}"
    );
    // Usage errors: 2.
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        run(&["--timeout", "-1", "get-nodes"]).status.code(),
        Some(2)
    );
}

#[test]
fn monitor_reports_a_killed_node_and_reconnects() {
    let agent = Agent::start(&["--name", "agent-m"]);
    let a = addr(&agent);
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("one.ini");
    std::fs::write(
        &f,
        format!("[instances]\nagent-m = {a}\n[w]\ninstance = agent-m\nrole = worker\n"),
    )
    .expect("write");
    assert_eq!(
        run(&["deploy", f.to_str().expect("utf-8")]).status.code(),
        Some(0)
    );

    let mut mon = client(&["--agent", &a, "monitor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("monitor");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = mon.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let wait_for = |pred: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = rx.recv_timeout(left).expect("monitor line in time");
            if pred(&v) {
                return v;
            }
        }
    };
    wait_for(&|v| v["event"] == "notify_agent_hello");
    let pid: i32 = std::fs::read_to_string(agent.node_dir("w").join("pids"))
        .expect("pids")
        .lines()
        .last()
        .and_then(|l| l.parse().ok())
        .expect("pid");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let v = wait_for(&|v| v["event"] == "notify_change" && v["args"]["new"] == "CRASHED");
    assert_eq!(v["agent"], "agent-m");
    assert_eq!(v["args"]["old"], "RUNNING");
    assert_eq!(v["args"]["node"]["name"], "w");
    assert!(v["timestamp"].as_f64().is_some());
    wait_for(&|v| v["event"] == "notify_change" && v["args"]["new"] == "RUNNING");

    // The agent goes away and comes back: the monitor says so and resumes.
    let state = agent.dir.clone();
    let port = a.rsplit_once(':').map(|(_, p)| p.to_owned()).expect("port");
    let mut agent = agent;
    agent.signal_and_wait(libc::SIGTERM);
    let again = Agent::start_in(&state, &["--name", "agent-m", "--listen-port", &port], &[]);
    wait_for(&|v| v["event"] == "notify_agent_hello");
    let _ = mon.kill();
    let out = mon.wait_with_output().expect("monitor output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("went away; reconnecting"), "{err}");
    drop(again);
}

#[test]
fn mistakes_get_a_clear_word_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    // An empty cluster file deploys nothing: refused, naming the file.
    for (name, text) in [
        ("empty.ini", ""),
        ("comments.ini", "# nothing\n\n"),
        (
            "empty.json",
            "{\"id\": \"x\", \"instances\": [], \"nodes\": []}",
        ),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).expect("write");
        let f = f.to_str().expect("utf-8");
        let out = run(&["--agent", "127.0.0.1:9", "deploy", f]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(f) && err.contains("no nodes"), "{name}: {err}");
        assert!(out.stdout.is_empty(), "nothing dialled: {name}");
    }
    // A host without a port.
    for bad in ["localhost", "127.0.0.1", "::1", "host:http", ":2151"] {
        let out = run(&["--agent", bad, "get-nodes"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("expected HOST:PORT"), "{bad}: {err}");
        assert!(!err.contains("invalid socket address"), "{err}");
    }
    // A server that never sends a hello: given up after the hello deadline,
    // not the (here long) answer timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let holder = std::thread::spawn(move || {
        let conn = silent.accept().map(|(s, _)| s);
        std::thread::sleep(std::time::Duration::from_secs(30));
        drop(conn);
    });
    let out = run(&["--agent", &addr, "--timeout", "120", "get-nodes"]);
    assert_eq!(out.status.code(), Some(2));
    let j = json(&out);
    let error = j["errors"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not speak the zeek-mgmt-agent protocol"),
        "{j}"
    );
    drop(holder);
}

#[test]
fn deploy_gives_every_agent_the_zeromq_ports_it_is_told() {
    let agent = Agent::start(&["--name", "agent-0"]);
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("cluster.ini");
    std::fs::write(
        &file,
        format!(
            "[instances]\nagent-0 = {}\n\n[manager]\ninstance = agent-0\nrole = manager\nport = 27760\n\n\
             [worker-1]\ninstance = agent-0\nrole = worker\n",
            addr(&agent)
        ),
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let agent_addr = addr(&agent);
    let out = run(&[
        "--agent",
        &agent_addr,
        "deploy",
        path,
        "--zeromq-xpub-port",
        "6001",
        "--zeromq-xsub-port",
        "6002",
    ]);
    assert!(out.status.success(), "{out:?}");
    let settings = std::fs::read_to_string(agent.node_dir("worker-1").join("cluster-backend.zeek"))
        .expect("settings");
    assert!(
        settings.contains("connect_xsub_endpoint = \"tcp://127.0.0.1:6001\";")
            && settings.contains("connect_xpub_endpoint = \"tcp://127.0.0.1:6002\";"),
        "{settings}"
    );
    // The manager's port may not be one of them.
    let out = run(&[
        "--agent",
        &agent_addr,
        "deploy",
        path,
        "--zeromq-xpub-port",
        "27760",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "node \\\"manager\\\" uses port 27760/tcp, a port of the manager's ZeroMQ broker"
        ),
        "{out:?}"
    );
    // With a controller, the ports are the controller's.
    let out = run(&[
        "--controller",
        "127.0.0.1:1",
        "deploy",
        "--zeromq-xpub-port",
        "6001",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn an_unchanged_file_deployed_twice_restarts_nothing() {
    let agents = three_agents();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("cluster.ini");
    std::fs::write(&file, cluster_ini(&agents)).expect("write");
    let path = file.to_str().expect("utf-8");
    let addrs: Vec<String> = agents.iter().map(addr).collect();
    let pids = || {
        let mut args = vec!["get-nodes"];
        for a in &addrs {
            args.push("--agent");
            args.push(a);
        }
        let j = json(&run(&args));
        let mut out = Vec::new();
        for nodes in j["results"].as_object().expect("results").values() {
            for (name, n) in nodes.as_object().expect("nodes") {
                if n["mgmt_role"].is_null() {
                    out.push((name.clone(), n["pid"].as_i64().unwrap_or(0)));
                }
            }
        }
        out.sort();
        out
    };
    let first = run(&["deploy", path]);
    assert!(first.status.success(), "{first:?}");
    let before = pids();
    let again = run(&["deploy", path]);
    assert!(again.status.success(), "{again:?}");
    // The same id (of the content), answered unchanged by every agent.
    assert_eq!(json(&again)["results"]["id"], json(&first)["results"]["id"]);
    for a in &agents {
        a.wait_log("configuration unchanged; nothing restarted", 1);
    }
    assert_eq!(pids(), before);
    // Another file is another id, and a redeploy.
    std::fs::write(
        &file,
        cluster_ini(&agents).replace("fast path", "slow path"),
    )
    .expect("write");
    let changed = run(&["deploy", path]);
    assert!(changed.status.success(), "{changed:?}");
    assert_ne!(
        json(&changed)["results"]["id"],
        json(&first)["results"]["id"]
    );
}

#[test]
fn check_runs_every_nodes_check_and_deploys_nothing() {
    let agent = Agent::start(&["--name", "agent-0"]);
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("cluster.ini");
    let ini = |worker_env: &str| {
        format!(
            "[instances]\nagent-0 = {}\n\n[manager]\ninstance = agent-0\nrole = manager\nport = 27760\n\n\
             [worker-1]\ninstance = agent-0\nrole = worker\n{worker_env}",
            addr(&agent)
        )
    };
    let path = file.to_str().expect("utf-8");
    // Good: every node passes; nothing runs.
    std::fs::write(&file, ini("")).expect("write");
    let out = run(&["check", path]);
    assert!(out.status.success(), "{out:?}");
    let j = json(&out);
    assert_eq!(j["results"]["nodes"]["manager"]["success"], true, "{j}");
    assert_eq!(j["results"]["nodes"]["worker-1"]["success"], true, "{j}");
    // Bad: the failing node with Zeek's words, exit 1.
    std::fs::write(
        &file,
        ini("env = STANDIN_PARSE_ERROR=\"error in ./x.zeek, line 1: syntax error, at end of file\"\n"),
    )
    .expect("write");
    let out = run(&["check", path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let j = json(&out);
    let w = &j["results"]["nodes"]["worker-1"];
    assert_eq!(w["success"], false, "{j}");
    assert!(
        w["error"]
            .as_str()
            .is_some_and(|e| e.contains("error in ./x.zeek, line 1: syntax error, at end of file")),
        "{j}"
    );
    assert!(j["results"]["nodes"].get("manager").is_none(), "{j}");
    // Nothing was deployed either time.
    let agent_addr = addr(&agent);
    let j = json(&run(&["--agent", &agent_addr, "get-nodes"]));
    assert_eq!(
        j["results"]["agent-0"].as_object().map(|m| m.len()),
        Some(1),
        "only the agent itself: {j}"
    );
    assert!(!agent.node_dir("manager").join("pids").exists());
}
