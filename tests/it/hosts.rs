//! A cluster across hosts, with real Zeek: each host a network namespace
//! made (and removed) by the test, joined by a bridge on the first one,
//! addresses from 198.18.0.0/15 only. The controller and the manager's
//! agent run on the first host, one worker's agent on each of the others;
//! every agent dials the controller, and zeek-client deploys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::netns::{Hosts, HUB};
use crate::support::controller::zeek_client;
use crate::support::{eventually, first_line, skipped, Later};

/// zeek-client inside the first host: (exit code, stdout, stderr).
fn client(hosts: &Hosts, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--controller", "127.0.0.1:2149"];
    all.extend_from_slice(args);
    hosts.run(0, &zeek_client(), dir, &all)
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Every `.log` of a kind in `dir`, the live one and the rotated ones.
fn logs(dir: &Path, stream: &str) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{stream}.")) && name.ends_with(".log") {
            text += &std::fs::read_to_string(entry.path()).unwrap_or_default();
        }
    }
    text
}

/// Starts the agent `name` on host `i`, dialling the controller, its nodes
/// on the cluster backend `backend` (`auto`: ZeroMQ for Zeek 8.2).
fn agent(hosts: &mut Hosts, i: usize, name: &str, dir: &Path, zeek: &Path, backend: &str) {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).expect("agent dir");
    let mut c = hosts.command(i, Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent")));
    c.args(["--name", name, "--controller-addr", HUB, "--no-listen"])
        .args(["--revive-delay", "0.2", "--stop-grace", "5"])
        .args(["--channel-join-grace", "2", "--cluster-backend", backend])
        .arg("--zeek-binary")
        .arg(zeek)
        .current_dir(&home);
    let child = hosts.start(c, &home.join("agent.log"));
    let line = first_line(child);
    assert!(line.contains("zeek-mgmt-agent"), "no ready line: {line:?}");
}

fn cluster_file(dir: &Path) -> PathBuf {
    // Packets on a veth carry checksums left to the hardware.
    let checksums = dir.join("ignore-checksums.zeek");
    std::fs::write(&checksums, "redef ignore_checksums = T;\n").expect("script");
    let ini = dir.join("cluster.ini");
    let worker = |name: &str, instance: &str| {
        format!(
            "[{name}]\ninstance = {instance}\nrole = worker\ninterface = eth0\nscripts = {}\n\n",
            checksums.display()
        )
    };
    let text = format!(
        "[instances]\nagent-a\nagent-b\nagent-c\n\n\
         [manager]\ninstance = agent-a\nrole = manager\n\n\
         [proxy-1]\ninstance = agent-a\nrole = proxy\n\n{}{}",
        worker("worker-1", "agent-b"),
        worker("worker-2", "agent-c"),
    );
    std::fs::write(&ini, text).expect("cluster file");
    ini
}

/// Three hosts: the controller, agent-a (manager, proxy-1) on the first,
/// agent-b (worker-1) and agent-c (worker-2) on the others, the workers
/// sniffing; deployed by zeek-client, every node a success. `None` (the
/// test said it was skipped) without Zeek or namespaces.
fn deployed_across_three_hosts(test: &str, backend: &str) -> Option<(Hosts, tempfile::TempDir)> {
    let zeek = match crate::support::real_zeek() {
        Ok(z) => z,
        Err(why) => {
            skipped(test, &why);
            return None;
        }
    };
    let mut hosts = match Hosts::make(3) {
        Ok(h) => h,
        Err(why) => {
            skipped(test, &format!("cannot make network namespaces: {why}"));
            return None;
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    let mut c = hosts.command(0, Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-controller")));
    c.args(["--listen-addr", HUB, "--state-dir"])
        .arg(dir.join("controller-state"))
        .current_dir(dir);
    let child = hosts.start(c, &dir.join("controller.log"));
    let line = first_line(child);
    assert!(
        line.contains("zeek-mgmt-controller"),
        "no ready line: {line:?}"
    );
    for (i, name) in ["agent-a", "agent-b", "agent-c"].iter().enumerate() {
        agent(&mut hosts, i, name, dir, &zeek, backend);
    }
    eventually(
        "the agents never checked in",
        Duration::from_secs(10),
        || {
            let out = client(&hosts, dir, &["get-instances"]).1;
            ["agent-a", "agent-b", "agent-c"]
                .iter()
                .all(|a| out.contains(a))
        },
    );

    // The deploy: every node on every host, each running and joined.
    let ini = cluster_file(dir);
    let (code, out, err) = client(&hosts, dir, &["deploy-config", &ini.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let nodes = &json(&out)["results"]["nodes"];
    for n in ["manager", "proxy-1", "worker-1", "worker-2"] {
        assert_eq!(nodes[n]["success"], true, "{n}: {out}");
    }
    Some((hosts, tmp))
}

/// Waits until the manager's `cluster.log` (which reaches the disk a second
/// or two late) has a hello from every other node.
fn every_hello_at_the_manager(dir: &Path) {
    let manager_dir = dir.join("agent-a/cluster/manager");
    eventually(
        Later(|| format!("hellos at the manager:\n{}", logs(&manager_dir, "cluster"))),
        Duration::from_secs(20),
        || {
            let log = logs(&manager_dir, "cluster");
            ["proxy-1", "worker-1", "worker-2"]
                .iter()
                .all(|n| log.contains(&format!("manager\tgot hello from {n} (")))
        },
    );
}

/// Every node answers get-id-value `Cluster::node`, on whichever host.
fn every_node_answers(hosts: &Hosts, dir: &Path) {
    let (code, out, err) = client(hosts, dir, &["get-id-value", "Cluster::node"]);
    assert_eq!(code, 0, "{out}{err}");
    let values = &json(&out)["results"];
    for n in ["manager", "proxy-1", "worker-1", "worker-2"] {
        assert_eq!(values[n], n, "{out}");
    }
}

#[test]
fn a_broker_cluster_across_three_hosts_forms() {
    // With Broker, nodes reach each other by $ip and $p.
    let Some((hosts, tmp)) =
        deployed_across_three_hosts("hosts::a_broker_cluster_across_three_hosts_forms", "broker")
    else {
        return;
    };
    let dir = tmp.path();
    let layout = std::fs::read_to_string(dir.join("agent-b/cluster/worker-1/cluster-layout.zeek"))
        .expect("worker-1's layout");
    assert!(
        layout.contains(&format!("$ip={HUB}, $p=2200/tcp")),
        "{layout}"
    );
    assert!(!dir
        .join("agent-b/cluster/worker-1/cluster-backend.zeek")
        .exists());
    every_hello_at_the_manager(dir);
    every_node_answers(&hosts, dir);
    let (code, out, err) = client(&hosts, dir, &["get-nodes"]);
    assert_eq!(
        (code, &json(&out)["errors"]),
        (0, &serde_json::json!([])),
        "{out}{err}"
    );
}

#[test]
fn a_cluster_across_three_hosts_forms_and_its_workers_logs_reach_the_manager() {
    let Some((hosts, tmp)) = deployed_across_three_hosts(
        "hosts::a_cluster_across_three_hosts_forms_and_its_workers_logs_reach_the_manager",
        "auto",
    ) else {
        return;
    };
    let dir = tmp.path();
    // Each node is told where the manager's broker is.
    let layout = std::fs::read_to_string(dir.join("agent-b/cluster/worker-1/cluster-backend.zeek"))
        .expect("worker-1's backend settings");
    assert!(
        layout.contains(&format!("connect_xpub_endpoint = \"tcp://{HUB}:5556\"")),
        "{layout}"
    );

    every_hello_at_the_manager(dir);
    every_node_answers(&hosts, dir);
    let manager_dir = dir.join("agent-a/cluster/manager");

    // A TCP connection from host c to host b: worker-1 sniffs b's link, and
    // the connection lands in the manager's conn.log.
    let server = "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                  s.bind(('198.18.0.2',8765))\ns.listen(1)\nc,_=s.accept()\nc.sendall(c.recv(100))\nc.close()\n";
    let mut listen = hosts
        .command(1, Path::new("python3"))
        .args(["-c", server])
        .spawn()
        .expect("a listener on host b");
    let client_code = "import socket,time\n\
                       for _ in range(50):\n  try:\n    c=socket.create_connection(('198.18.0.2',8765),timeout=2); break\n  except OSError: time.sleep(0.1)\n\
                       c.sendall(b'across hosts'); print(c.recv(100)); c.close()\n";
    let echoed = hosts
        .command(2, Path::new("python3"))
        .args(["-c", client_code])
        .output()
        .expect("a connection from host c");
    let _ = listen.wait();
    assert!(
        String::from_utf8_lossy(&echoed.stdout).contains("across hosts"),
        "{echoed:?}"
    );
    eventually(
        Later(|| {
            format!(
                "no connection 198.18.0.3 -> 198.18.0.2:8765 in the manager's conn.log:\n{}",
                logs(&manager_dir, "conn")
            )
        }),
        Duration::from_secs(40),
        || {
            logs(&manager_dir, "conn")
                .lines()
                .any(|l| l.contains("198.18.0.3") && l.contains("198.18.0.2\t8765\ttcp"))
        },
    );

    // Every node has joined: get-nodes has no error.
    let (code, out, err) = client(&hosts, dir, &["get-nodes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["errors"], serde_json::json!([]), "{out}");

    // The manager frozen: its broker carries nothing, and the workers on
    // the other hosts are reported not joined, with where they must reach.
    let manager_pid = json(&out)["results"]["agent-a"]["manager"]["pid"]
        .as_i64()
        .expect("the manager's pid") as i32;
    // SAFETY: a Zeek process the test's agent started.
    unsafe {
        libc::kill(manager_pid, libc::SIGSTOP);
    }
    let not_joined = |node: &str, agent: &str, out: &str| {
        json(out)["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|e| {
                e["source"] == agent
                    && e["error"].as_str().is_some_and(|t| {
                        t.starts_with(&format!("node {node} has not joined the cluster: "))
                        && t.ends_with(
                            "the manager's ZeroMQ broker at 198.18.0.1 (tcp ports 5555 and 5556)",
                        )
                    })
            })
        })
    };
    let last = std::cell::RefCell::new(String::new());
    eventually(
        Later(|| {
            format!(
                "the workers were never reported not joined:\n{}",
                last.borrow()
            )
        }),
        Duration::from_secs(20),
        || {
            let (code, out, _) = client(&hosts, dir, &["get-nodes"]);
            *last.borrow_mut() = out;
            let last = last.borrow();
            code == 1
                && not_joined("worker-1", "agent-b", &last)
                && not_joined("worker-2", "agent-c", &last)
        },
    );
    // Killed, the manager is revived, and the workers join again.
    // SAFETY: as above.
    unsafe {
        libc::kill(manager_pid, libc::SIGKILL);
    }
    eventually(
        Later(|| format!("the workers never joined again:\n{}", last.borrow())),
        Duration::from_secs(30),
        || {
            let (code, out, _) = client(&hosts, dir, &["get-nodes"]);
            *last.borrow_mut() = out;
            code == 0
        },
    );
    let last = last.into_inner();
    assert_ne!(
        json(&last)["results"]["agent-a"]["manager"]["pid"].as_i64(),
        Some(i64::from(manager_pid))
    );
    // Told in passing (the agents write their logs every 50 ms).
    for (agent, node) in [("agent-b", "worker-1"), ("agent-c", "worker-2")] {
        let log = || std::fs::read_to_string(dir.join(agent).join("agent.log")).unwrap_or_default();
        eventually(
            Later(|| format!("{agent}'s log:\n{}", log())),
            Duration::from_secs(2),
            || log().contains(&format!("node {node} joined the cluster")),
        );
    }
}

#[test]
fn workers_on_two_af_packet_interfaces_of_one_host_each_get_their_fanout_group() {
    let test = "hosts::workers_on_two_af_packet_interfaces_of_one_host_each_get_their_fanout_group";
    let zeek = crate::require_zeek!(test);
    let Some(mut hosts) = Hosts::or_skip(test, 1) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Two devices on the one host (veth pairs; a fanout group belongs to
    // one device).
    for link in ["fanA", "fanB"] {
        let peer = format!("{link}-peer");
        for args in [
            vec![
                "link",
                "add",
                link,
                "type",
                "veth",
                "peer",
                "name",
                peer.as_str(),
            ],
            vec!["link", "set", link, "up"],
            vec!["link", "set", peer.as_str(), "up"],
        ] {
            let (code, _, err) = hosts.run(0, Path::new("ip"), dir, &args);
            assert_eq!(code, 0, "ip {args:?}: {err}");
        }
    }
    let mut c = hosts.command(0, Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent")));
    c.args(["--name", "agent-a", "--listen-port", "2151"])
        .args([
            "--revive-delay",
            "0.2",
            "--stop-grace",
            "5",
            "--max-revivals",
            "0",
        ])
        .arg("--zeek-binary")
        .arg(&zeek)
        .current_dir(dir);
    let line = first_line(hosts.start(c, &dir.join("agent.log")));
    assert!(line.contains("zeek-mgmt-agent"), "no ready line: {line:?}");
    let ini = dir.join("cluster.ini");
    std::fs::write(
        &ini,
        "[instances]\nagent-a = 127.0.0.1:2151\n\n\
         [manager]\ninstance = agent-a\nrole = manager\nport = 27760\n\n\
         [worker-1]\ninstance = agent-a\nrole = worker\ninterface = af_packet::fanA\n\n\
         [worker-2]\ninstance = agent-a\nrole = worker\ninterface = af_packet::fanB\n",
    )
    .expect("cluster.ini");
    let client = Path::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"));
    let args = [
        "--agent",
        "127.0.0.1:2151",
        "--timeout",
        "30s",
        "deploy",
        "cluster.ini",
    ];
    let (code, out, err) = hosts.run(0, client, dir, &args);
    assert_eq!(code, 0, "{out}{err}");
    // Both workers run, each in its interface's group.
    let (code, out, err) = hosts.run(0, client, dir, &["--agent", "127.0.0.1:2151", "get-nodes"]);
    assert_eq!(code, 0, "{out}{err}");
    let nodes = &json(&out)["results"]["agent-a"];
    for w in ["worker-1", "worker-2"] {
        assert_eq!(nodes[w]["state"], "RUNNING", "{w}: {out}");
    }
}
