//! Helpers shared by the benchmark examples: the release binaries, free
//! ports, memory readings, child processes, figures, and a WebSocket client
//! that speaks to the controller as zeek-client does.

#![allow(dead_code, unused_imports)]

// What /proc tells of a process, shared with the integration tests.
#[path = "../../tests/it/support/procfs.rs"]
mod procfs;
pub use procfs::{fds, rss_kib};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zeek_mgmt_agent::api::types::Configuration;
use zeek_mgmt_agent::broker::records;
use zeek_mgmt_agent::broker::Value;
use zeek_mgmt_agent::client::controller::Session;

/// The agent's flags for nodes that only sleep: running once exec'd, no
/// cluster backend, no node channel (so no `--version` to ask either).
pub const SLEEPING_NODES: [&str; 6] = [
    "--settle-time",
    "0",
    "--cluster-backend",
    "none",
    "--node-channel",
    "off",
];

/// Writes `dir/node.sh`, a node program that only sleeps; its path.
pub fn sleeping_node(dir: &Path) -> PathBuf {
    let node = dir.join("node.sh");
    std::fs::write(&node, "#!/bin/sh\nexec sleep 100000\n").expect("node");
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    node
}

pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A child process ended with SIGTERM when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: plain signal delivery to our own child.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// Starts `program` and returns it with the address its ready line names
/// after `marker`.
pub fn start(program: &Path, args: &[String], log: &Path, marker: &str) -> (Proc, String) {
    let (p, line) = start_line(program, args, log);
    let addr = line
        .split_once(marker)
        .map(|(_, a)| a.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_default();
    (p, addr)
}

/// Starts the release controller on free ports with `args`: it, its
/// WebSocket address and its agent port, read from its ready line
/// ("... listening on WS (clients) and AGENTS (agents)").
pub fn start_controller(args: &[String], log: &Path) -> (Proc, SocketAddr, u16) {
    let mut all: Vec<String> = ["--websocket-port", "0", "--listen-port", "0"]
        .map(String::from)
        .to_vec();
    all.extend(args.iter().cloned());
    let (p, line) = start_line(&binary("zeek-mgmt-controller"), &all, log);
    let words: Vec<&str> = line
        .split_once("listening on ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let addr = |i: usize| -> SocketAddr {
        words
            .get(i)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no address in the ready line {line:?}"))
    };
    (p, addr(0), addr(3).port())
}

/// Starts `program` and returns it with its first line of output.
fn start_line(program: &Path, args: &[String], log: &Path) -> (Proc, String) {
    let (p, mut lines) = start_lines(program, args, log, 1);
    (p, lines.swap_remove(0))
}

/// Starts `program` and returns it with its first `n` lines of output.
pub fn start_lines(program: &Path, args: &[String], log: &Path, n: usize) -> (Proc, Vec<String>) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).expect("log")))
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (cargo build --release first)",
                program.display()
            )
        });
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        reader.read_line(&mut line).expect("ready line");
        lines.push(line);
    }
    (Proc(child), lines)
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A WebSocket client that speaks as zeek-client does (the library's
/// `zeek-mgmt-client --controller` session).
pub struct Client(Session);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = Session::connect(&addr.to_string(), None, Duration::from_secs(120))
            .await
            .expect("connect to the controller");
        Client(s)
    }

    /// Sends `<stem>_request(reqid, args...)` and waits for its response;
    /// returns its second argument.
    pub async fn ask(&mut self, stem: &str, args: Vec<Value>) -> Value {
        let answer = self.0.ask(stem, args).await.expect("answer");
        answer.into_iter().next().unwrap_or(Value::None)
    }
}

/// Stages and deploys `config` through the controller; the deploy's time.
pub async fn deploy(c: &mut Client, config: &Configuration) -> Duration {
    let staged = c
        .ask("stage_configuration", vec![records::configuration(config)])
        .await;
    assert!(
        staged.to_json().contains("\"boolean\",\"data\":true"),
        "{}",
        staged.to_json()
    );
    let t = Instant::now();
    let r = c.ask("deploy", vec![]).await;
    let took = t.elapsed();
    assert!(
        !r.to_json().contains("\"boolean\",\"data\":false"),
        "deploy failed: {}",
        r.to_json()
    );
    took
}
