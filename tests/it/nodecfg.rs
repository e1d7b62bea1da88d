//! ZeekControl's node.cfg deployed as it is: with agents, and through the
//! controller, where it stages the same configuration as our INI
//! describing the same cluster.

use std::time::Duration;

use serde_json::Value;

use crate::support::controller::Controller;
use crate::support::*;

const NODE_CFG: &str = "# A ZeekControl cluster on one host\n\
    [logger-1]\ntype=logger\nhost=localhost\n\n\
    [manager]\ntype=manager\nhost=localhost\n\n\
    [proxy-1]\ntype=proxy\nhost=localhost\n\n\
    [worker-1]\ntype=worker\nhost=localhost\ninterface=eth0\n\
    lb_method=af_packet\nlb_procs=2\npin_cpus=0,1\nenv_vars=TZ=UTC\n";

/// The same cluster in our INI.
fn same_ini(agent: &str) -> String {
    format!(
        "[instances]\n{agent}\n\n\
         [logger-1]\ninstance = {agent}\nrole = logger\nport = 27760\n\n\
         [manager]\ninstance = {agent}\nrole = manager\nport = 27761\n\n\
         [proxy-1]\ninstance = {agent}\nrole = proxy\nport = 27762\n\n\
         [worker-1-1]\ninstance = {agent}\nrole = worker\ninterface = af_packet::eth0\ncpu_affinity = 0\nenv = TZ=UTC\n\n\
         [worker-1-2]\ninstance = {agent}\nrole = worker\ninterface = af_packet::eth0\ncpu_affinity = 1\nenv = TZ=UTC\n"
    )
}

/// The staged configuration as JSON, without its id.
fn staged(c: &Controller, file: &str) -> Value {
    let (code, out, err) = c.ours(&["stage-config", file]);
    assert_eq!(code, 0, "{file}: {out}{err}");
    let (code, out, err) = c.ours(&["get-config", "--as-json"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut v: Value = serde_json::from_str(&out).expect("json");
    v.as_object_mut().map(|o| o.remove("id"));
    v
}

#[test]
fn node_cfg_stages_what_our_ini_of_the_same_cluster_stages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let agent = zeek_mgmt_agent::agent::config::default_name();
    std::fs::write(dir.join("node.cfg"), NODE_CFG).expect("node.cfg");
    std::fs::write(dir.join("cluster.ini"), same_ini(&agent)).expect("cluster.ini");
    let c = Controller::start(dir);
    let from_node_cfg = staged(&c, "node.cfg");
    assert_eq!(from_node_cfg, staged(&c, "cluster.ini"));
    assert_eq!(from_node_cfg["nodes"].as_array().map(Vec::len), Some(5));
    // convert prints it, and its INI stages the same too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
        .args(["convert", "node.cfg"])
        .current_dir(dir)
        .output()
        .expect("convert");
    assert!(out.status.success(), "{out:?}");
    std::fs::write(dir.join("converted.ini"), &out.stdout).expect("converted.ini");
    assert_eq!(staged(&c, "converted.ini"), from_node_cfg);
    // A refusal in ZeekControl's words.
    std::fs::write(dir.join("bad.cfg"), "[m]\ntype=manager\nhost=localhost\n").expect("bad.cfg");
    let (code, _, err) = c.ours(&["stage-config", "bad.cfg"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no proxy defined in node config"), "{err}");
}

#[tokio::test]
async fn node_cfg_deploys_straight_to_the_agent_of_its_host() {
    let name = zeek_mgmt_agent::agent::config::default_name();
    let agent = Agent::start(&["--name", &name]);
    std::fs::write(agent.dir.join("node.cfg"), NODE_CFG).expect("node.cfg");
    let addr = agent.addr.expect("the agent listens").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
        .args(["--agent", &addr, "deploy", "node.cfg"])
        .current_dir(&agent.dir)
        .output()
        .expect("deploy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let c = agent.connect().await;
    let nodes = wait_nodes(&c, "all running", all_running).await;
    let mut names: Vec<&str> = nodes
        .iter()
        .filter(|n| n.mgmt_role == zeek_mgmt_agent::api::types::MgmtRole::None)
        .map(|n| n.node.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["logger-1", "manager", "proxy-1", "worker-1-1", "worker-1-2"]
    );
    // get-nodes shows where each worker is pinned.
    let pinned: Vec<(String, Option<i64>)> = nodes
        .iter()
        .filter(|n| n.node.starts_with("worker"))
        .map(|n| (n.node.clone(), n.cpu_affinity))
        .collect();
    assert_eq!(
        pinned,
        [
            ("worker-1-1".to_owned(), Some(0)),
            ("worker-1-2".to_owned(), Some(1))
        ]
    );
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
        .args(["--agent", &addr, "get-nodes", "--table"])
        .output()
        .expect("get-nodes");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let at = header
        .iter()
        .position(|h| *h == "pinned")
        .expect("a pinned column");
    let row = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("worker-1-2"))
        .unwrap_or_default();
    assert_eq!(row.split_whitespace().nth(at), Some("1"), "{table}");
    // Each worker with its environment and its interface.
    for w in ["worker-1-1", "worker-1-2"] {
        let env =
            std::fs::read_to_string(agent.dir.join("cluster").join(w).join("env")).expect("env");
        assert!(env.lines().any(|l| l == "TZ=UTC"), "{w}: {env}");
        let argv =
            std::fs::read_to_string(agent.dir.join("cluster").join(w).join("argv")).expect("argv");
        assert!(argv.lines().any(|l| l == "af_packet::eth0"), "{w}: {argv}");
    }
}

/// A TCP server on each `ADDR` (accepts, reads, answers, closes), in the
/// background until killed.
const SERVER: &str = r#"
import socket, sys, threading
def serve(addr):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 8080))
    s.listen(512)
    while True:
        c, _ = s.accept()
        c.recv(64)
        c.sendall(b"ok")
        c.close()
for a in sys.argv[1:]:
    threading.Thread(target=serve, args=(a,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// `N` TCP connections to each `ADDR`, one after another, each closed.
const CLIENT: &str = r#"
import socket, sys
n = int(sys.argv[1])
for a in sys.argv[2:]:
    for i in range(n):
        c = socket.create_connection((a, 8080), timeout=5)
        c.sendall(b"hello")
        c.recv(64)
        c.close()
"#;

#[test]
fn lb_procs_workers_on_two_af_packet_links_log_each_connection_once_and_share_them() {
    use crate::netns::{self, Hosts};
    let test =
        "nodecfg::lb_procs_workers_on_two_af_packet_links_log_each_connection_once_and_share_them";
    let zeek = crate::require_zeek!(test);
    let Some(mut hosts) = Hosts::or_skip(test, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Two links from the sensor (host 0) to a peer (host 1).
    let peer = hosts.name(1).to_owned();
    let ip = std::path::Path::new("ip");
    for (link, net) in [("fanA", 1), ("fanB", 2)] {
        let far = format!("{link}-p");
        for (i, args) in [
            (
                0,
                vec![
                    "link", "add", link, "type", "veth", "peer", "name", &far, "netns", &peer,
                ],
            ),
            (
                0,
                vec!["addr", "add", &format!("198.18.{net}.1/24"), "dev", link],
            ),
            (0, vec!["link", "set", link, "up"]),
            (
                1,
                vec!["addr", "add", &format!("198.18.{net}.2/24"), "dev", &far],
            ),
            (1, vec!["link", "set", &far, "up"]),
        ] {
            let (code, _, err) = hosts.run(i, ip, dir, &args);
            assert_eq!(code, 0, "ip {args:?}: {err}");
        }
    }
    let mut server = hosts.command(1, std::path::Path::new("python3"));
    server.args(["-c", SERVER, "198.18.1.2", "198.18.2.2"]);
    let line = first_line(hosts.start(server, &dir.join("server.log")));
    assert_eq!(line.trim(), "ready");

    let mut agent = hosts.command(
        0,
        std::path::Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent")),
    );
    agent
        .args(["--listen-addr", netns::HUB, "--listen-port", "2151"])
        .args(["--log-archive=false", "--max-revivals", "0"])
        .args(["--request-timeout", "60s", "--stop-grace", "10"])
        .arg("--zeek-binary")
        .arg(&zeek)
        .current_dir(dir);
    let line = first_line(hosts.start(agent, &dir.join("agent.log")));
    assert!(line.contains("zeek-mgmt-agent"), "no ready line: {line:?}");
    // The packets of the sensor's own stack carry checksums left to the
    // device: Zeek is told not to check them.
    std::fs::write(dir.join("nocsum.zeek"), "redef ignore_checksums = T;\n").expect("script");
    let aux = dir.join("nocsum.zeek").display().to_string();
    std::fs::write(
        dir.join("node.cfg"),
        format!(
            "[logger-1]\ntype=logger\nhost={h}\n\n\
             [manager]\ntype=manager\nhost={h}\n\n\
             [proxy-1]\ntype=proxy\nhost={h}\n\n\
             [wa]\ntype=worker\nhost={h}\ninterface=fanA\nlb_method=af_packet\nlb_procs=4\naux_scripts={aux}\n\n\
             [wb]\ntype=worker\nhost={h}\ninterface=fanB\nlb_method=af_packet\nlb_procs=2\naux_scripts={aux}\n",
            h = netns::HUB
        ),
    )
    .expect("node.cfg");
    let client = std::path::Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"));
    // The hosts are the sensor's address: its instance is the agent that
    // answers there, whatever its name.
    let agent_at = format!("{}:2151", netns::HUB);
    let to_agent = ["--agent", agent_at.as_str(), "--timeout", "90s"];
    let run = |args: &[&str]| {
        let all: Vec<&str> = to_agent.iter().chain(args).copied().collect();
        hosts.run(0, client, dir, &all)
    };
    let (code, out, err) = run(&["deploy", "node.cfg"]);
    assert_eq!(code, 0, "{out}{err}");

    const N: usize = 40;
    let (code, _, err) = hosts.run(
        0,
        std::path::Path::new("python3"),
        dir,
        &["-c", CLIENT, &N.to_string(), "198.18.1.2", "198.18.2.2"],
    );
    assert_eq!(code, 0, "{err}");

    // Every connection in conn.log once.
    let conn_log = dir.join("cluster/logger-1/conn.log");
    let tuples = || -> Vec<String> {
        let text = std::fs::read_to_string(&conn_log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() > 6 && f[5] == "8080")
                    .then(|| format!("{} {} {} {}", f[2], f[3], f[4], f[5]))
            })
            .collect()
    };
    eventually(
        Later(|| format!("{} connections in conn.log: {:?}", 2 * N, tuples().len())),
        Duration::from_secs(60),
        || tuples().len() >= 2 * N,
    );
    let logged = tuples();
    let unique: std::collections::BTreeSet<&String> = logged.iter().collect();
    assert_eq!(
        (logged.len(), unique.len()),
        (2 * N, 2 * N),
        "each connection exactly once"
    );

    // Each interface's connections spread over its workers.
    let (code, out, err) = run(&["netstats"]);
    assert_eq!(code, 0, "{out}{err}");
    let stats: Value = serde_json::from_str(&out).expect("netstats");
    for w in ["wa-1", "wa-2", "wa-3", "wa-4", "wb-1", "wb-2"] {
        let got = stats["results"][w]["received"].as_u64().unwrap_or(0);
        assert!(got > 0, "{w} saw no packet: {out}");
    }
    // Zeek names the packet source without its af_packet:: prefix.
    assert_eq!(stats["results"]["wa-1"]["interface"], "fanA", "{out}");
    assert_eq!(stats["results"]["wb-2"]["interface"], "fanB", "{out}");
}
