//! ZeekControl's node.cfg deployed as it is: with agents, and through the
//! controller, where it stages the same configuration as our INI
//! describing the same cluster.

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
