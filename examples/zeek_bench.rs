//! Real Zeek, one host against three: the figures of `docs/benchmarks.md`,
//! "Real Zeek across hosts".
//!
//! ```sh
//! cargo build --release && sudo target/release/examples/zeek_bench [--rounds N]
//! ```
//!
//! Needs root (each host is a network namespace, 198.18.0.0/15 only) and
//! Zeek (`$ZEEK_BINARY`, else `../shared/zeek/bin/zeek`). The same four
//! nodes (manager, proxy-1, worker-1, worker-2, the workers sniffing) are
//! deployed with `zeek-mgmt-client --controller`, first all on one host,
//! then across three (the controller, the manager and the proxy on the
//! first, a worker on each other), and on one host again without the check
//! of the scripts before the deploy (`--check-scripts=false`). For each
//! round it prints:
//!
//! - `answer`: from the deploy's start to its answer, which comes once
//!   every node runs and has joined;
//! - `last join`: from the deploy's start to the last `got hello` in the
//!   manager's `cluster.log`, by the lines' own timestamps (the file
//!   reaches the disk a second or two later);
//! - `revival`: from a SIGKILL of worker-1 until get-nodes shows its new
//!   process running and joined (no error).
//!
//! It prints figures and never asserts on them.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/it/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{binary, ms};
use netns::{Hosts, HUB};

const NODES: [&str; 4] = ["manager", "proxy-1", "worker-1", "worker-2"];

fn zeek() -> Option<PathBuf> {
    let path = std::env::var_os("ZEEK_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/zeek/bin/zeek"));
    let path = std::path::absolute(&path).unwrap_or(path);
    let ok = Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(path)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `zeek-mgmt-client --controller` inside the first host: (exit code,
/// stdout).
fn client(hosts: &Hosts, dir: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["--controller", "127.0.0.1:2149"];
    all.extend_from_slice(args);
    let (code, out, _) = hosts.run(0, &binary("zeek-mgmt-client"), dir, &all);
    (code, out)
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The latest timestamp of the manager's `got hello` lines after `since`,
/// once there is one from each other node.
fn last_hello(manager_dir: &Path, since: f64) -> Option<f64> {
    let mut seen: Vec<(String, f64)> = Vec::new();
    for entry in std::fs::read_dir(manager_dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("cluster.") && name.ends_with(".log")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let mut f = line.split('\t');
            let (Some(ts), Some("manager"), Some(msg)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Ok(ts), Some(from)) = (ts.parse::<f64>(), msg.strip_prefix("got hello from "))
            else {
                continue;
            };
            if ts > since {
                let node = from.split(' ').next().unwrap_or("").to_owned();
                seen.push((node, ts));
            }
        }
    }
    let all = NODES[1..].iter().all(|n| seen.iter().any(|(s, _)| s == n));
    all.then(|| seen.iter().map(|(_, t)| *t).fold(0.0, f64::max))
}

fn worker_pid(out: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(out).ok()?;
    v["results"]
        .as_object()?
        .values()
        .find_map(|nodes| nodes["worker-1"]["pid"].as_i64())
}

struct Round {
    answer: Duration,
    last_join: Duration,
    revival: Duration,
}

/// One scenario: `n` hosts (1: everything on the first), `rounds` deploys
/// of the same four nodes, each followed by a SIGKILL of worker-1.
fn scenario(n: usize, rounds: usize, zeek: &Path, check: bool) -> Result<Vec<Round>, String> {
    let mut hosts = Hosts::make(n)?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let mut c = hosts.command(0, &binary("zeek-mgmt-controller"));
    c.args(["--listen-addr", HUB, "--state-dir"])
        .arg(dir.join("controller-state"))
        .current_dir(dir);
    let ready = |hosts: &mut Hosts, c: Command, log: PathBuf| {
        let child = hosts.start(c, &log);
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
        }
    };
    ready(&mut hosts, c, dir.join("controller.log"));
    let agents: Vec<String> = (0..n).map(|i| format!("agent-{i}")).collect();
    for (i, name) in agents.iter().enumerate() {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let mut c = hosts.command(i, &binary("zeek-mgmt-agent"));
        c.args(["--name", name, "--controller-addr", HUB, "--no-listen"])
            .arg(format!("--check-scripts={check}"))
            .arg("--zeek-binary")
            .arg(zeek)
            .current_dir(&home);
        ready(&mut hosts, c, home.join("agent.log"));
    }
    let checked_in = wait(Duration::from_secs(10), || {
        let out = client(&hosts, dir, &["get-instances"]).1;
        agents.iter().all(|a| out.contains(a.as_str()))
    });
    if !checked_in {
        return Err("the agents never checked in".into());
    }
    let checksums = dir.join("ignore-checksums.zeek");
    std::fs::write(&checksums, "redef ignore_checksums = T;\n").map_err(|e| e.to_string())?;
    let (iface, w1, w2) = if n == 1 {
        ("br0", &agents[0], &agents[0])
    } else {
        ("eth0", &agents[1], &agents[2])
    };
    let ini = dir.join("cluster.ini");
    let worker = |name: &str, inst: &str| {
        format!(
            "[{name}]\ninstance = {inst}\nrole = worker\ninterface = {iface}\nscripts = {}\n\n",
            checksums.display()
        )
    };
    let instances: String = agents.iter().map(|a| format!("{a}\n")).collect();
    let text = format!(
        "[instances]\n{instances}\n[manager]\ninstance = {a}\nrole = manager\n\n\
         [proxy-1]\ninstance = {a}\nrole = proxy\n\n{}{}",
        worker("worker-1", w1),
        worker("worker-2", w2),
        a = agents[0],
    );
    std::fs::write(&ini, text).map_err(|e| e.to_string())?;
    let ini = ini.display().to_string();
    let manager_dir = dir.join(&agents[0]).join("cluster/manager");

    let mut out = Vec::new();
    for _ in 0..rounds {
        let (t0, start) = (now(), Instant::now());
        let (code, deployed) = client(&hosts, dir, &["deploy-config", &ini]);
        let answer = start.elapsed();
        if code != 0 {
            return Err(format!("deploy failed: {deployed}"));
        }
        let mut last = None;
        wait(Duration::from_secs(15), || {
            last = last_hello(&manager_dir, t0);
            last.is_some()
        });
        let last = last.ok_or("no hellos at the manager")?;
        let old = worker_pid(&client(&hosts, dir, &["get-nodes"]).1).ok_or("no worker-1 pid")?;
        let killed = Instant::now();
        // SAFETY: a Zeek process this benchmark's agent started.
        unsafe {
            libc::kill(old as i32, libc::SIGKILL);
        }
        let back = wait(Duration::from_secs(30), || {
            let (code, out) = client(&hosts, dir, &["get-nodes"]);
            code == 0 && worker_pid(&out).is_some_and(|p| p != old) && !out.contains("PENDING")
        });
        if !back {
            return Err("worker-1 never came back".into());
        }
        out.push(Round {
            answer,
            last_join: Duration::from_secs_f64((last - t0).max(0.0)),
            revival: killed.elapsed(),
        });
    }
    Ok(out)
}

fn summary(v: Vec<Duration>) -> String {
    let mut v = v;
    v.sort();
    format!(
        "median {} (min {}, max {})",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1])
    )
}

fn main() {
    let mut rounds = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args.next().and_then(|r| r.parse().ok()).unwrap_or(rounds);
        }
    }
    let Some(zeek) = zeek() else {
        println!("no Zeek: set ZEEK_BINARY (or keep ../shared/zeek beside the checkout)");
        return;
    };
    println!(
        "real Zeek ({}), {rounds} rounds per scenario, 4 nodes",
        zeek.display()
    );
    for (n, label, check) in [
        (1, "one host", true),
        (1, "one host, no check before the deploy", false),
        (3, "three hosts", true),
    ] {
        match scenario(n, rounds, &zeek, check) {
            Ok(r) => {
                println!("{label}:");
                for (i, x) in r.iter().enumerate() {
                    println!(
                        "  round {}: answer {}, last join {}, revival {}",
                        i + 1,
                        ms(x.answer),
                        ms(x.last_join),
                        ms(x.revival)
                    );
                }
                println!(
                    "  answer     {}",
                    summary(r.iter().map(|x| x.answer).collect())
                );
                println!(
                    "  last join  {}",
                    summary(r.iter().map(|x| x.last_join).collect())
                );
                println!(
                    "  revival    {}",
                    summary(r.iter().map(|x| x.revival).collect())
                );
            }
            Err(e) => println!("{label}: not measured: {e}"),
        }
    }
}
