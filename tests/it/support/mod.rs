//! Starts the real agent binary on a free port with the stand-in node
//! program, and kills and reaps it when dropped.

pub mod controller;
pub mod procfs;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zeek_mgmt_agent::api::events::{
    GetNodesRequest, Notification, Request, Response, SetConfigurationRequest,
};
use zeek_mgmt_agent::api::types::{
    Addr, ApiResult, Configuration, Instance, Node, NodeStatus, Port, ResultData, Role, State,
};
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

pub const AGENT: &str = "test-agent";
pub const SECOND: Duration = Duration::from_secs(1);
pub const LONG: Duration = Duration::from_secs(15);

pub fn stand_in() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stand-in-node.sh")
}

/// A running agent process in its own temporary directory.
pub struct Agent {
    child: Option<Child>,
    pub addr: Option<SocketAddr>,
    /// Where its metrics are served, with `--metrics-addr`.
    pub metrics: Option<SocketAddr>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// Flags every test agent gets: short timings, the stand-in as zeek.
pub fn base_args(dir: &Path) -> Vec<String> {
    [
        "--name",
        AGENT,
        "--listen-port",
        "0",
        "--settle-time",
        "0.1",
        "--stop-grace",
        "2",
        "--revive-delay",
        "0.1",
        "--request-timeout",
        "8",
        "--sample-interval",
        "0.2",
        // The bash stand-in has no node channel; tests of the channel use
        // the Python stand-in (`channel_args`).
        "--node-channel",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--cluster-dir".to_owned(),
        dir.join("cluster").display().to_string(),
        "--state-dir".to_owned(),
        dir.join("state").display().to_string(),
        "--zeek-binary".to_owned(),
        stand_in().display().to_string(),
    ])
    .collect()
}

impl Agent {
    /// Starts an agent with the base flags plus `extra`.
    pub fn start(extra: &[&str]) -> Agent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut a = Agent::start_in(&dir, extra, &[]);
        a._tmp = Some(tmp);
        a
    }

    /// Starts an agent with the base flags plus `extra`, and `env` added
    /// to its environment.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut a = Agent::start_in(&dir, extra, env);
        a._tmp = Some(tmp);
        a
    }

    /// Starts an agent in `dir` (kept by the caller), e.g. to restart one.
    pub fn start_in(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut args = base_args(dir);
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent"))
            .args(&args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start agent");
        let with_metrics = args.iter().any(|a| a == "--metrics-addr");
        let lines = ready_lines(&mut child, if with_metrics { 2 } else { 1 });
        let line = &lines[0];
        let metrics = lines.get(1).and_then(|l| metrics_address(l));
        let addr = line
            .trim()
            .rsplit_once("listening on ")
            .and_then(|(_, a)| a.parse().ok());
        assert!(
            line.contains("zeek-mgmt-agent"),
            "no ready line from the agent: {line:?}; log:\n{}",
            std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
        );
        Agent {
            child: Some(child),
            addr,
            metrics,
            dir: dir.to_owned(),
            _tmp: None,
        }
    }

    /// Runs an agent in `dir` that is expected to exit on its own (within
    /// 20 s): its exit status and what it wrote to stderr.
    pub fn run_to_exit(dir: &Path, extra: &[&str]) -> (ExitStatus, String) {
        let mut args = base_args(dir);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent"))
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the agent did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        (status, stderr)
    }

    /// Starts an agent in connect mode (not listening) that dials the
    /// controller on 127.0.0.1:`port` and redials every 0.1 s.
    pub fn start_dialling(port: u16, extra: &[&str]) -> Agent {
        let port = port.to_string();
        let mut args = vec![
            "--controller-addr",
            "127.0.0.1",
            "--controller-port",
            &port,
            "--no-listen",
            "--reconnect-interval",
            "0.1",
        ];
        args.extend_from_slice(extra);
        Agent::start(&args)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the log holds `needle` `times` times; the
    /// agent writes its log from a thread of its own, a little later.
    pub fn wait_log(&self, needle: &str, times: usize) -> String {
        eventually(
            Later(|| format!("{needle:?} logged {times} times:\n{}", self.log())),
            LONG,
            || self.log().matches(needle).count() >= times,
        );
        self.log()
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("cluster").join(node)
    }

    pub async fn connect(&self) -> Connection {
        let addr = self.addr.expect("agent listens");
        let mut c = Connection::connect(addr, PeerOptions::default())
            .await
            .expect("connect");
        // The check-in comes first.
        let n = c
            .wait_notification(LONG, |_| true)
            .await
            .expect("notify_agent_hello");
        assert!(matches!(n, Notification::AgentHello(_)), "{n:?}");
        c
    }

    /// Sends `signal` and waits for the agent to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "agent did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn instance(name: &str) -> Instance {
    Instance {
        name: name.into(),
        host: Addr("127.0.0.1".parse().expect("addr")),
        listen_port: None,
    }
}

/// A configuration of `nodes` (name, role, port) on this agent.
pub fn cluster(id: &str, nodes: &[(&str, Role, Option<u16>)]) -> Configuration {
    Configuration {
        id: id.into(),
        instances: vec![instance(AGENT)],
        nodes: nodes
            .iter()
            .map(|(name, role, port)| {
                let mut n = Node::new(name, AGENT, *role);
                n.p = port.map(Port::tcp);
                n
            })
            .collect(),
        zeromq: None,
    }
}

/// manager, proxy-1, worker-1, worker-2.
pub fn small_cluster(id: &str) -> Configuration {
    cluster(
        id,
        &[
            ("manager", Role::Manager, Some(27760)),
            ("proxy-1", Role::Proxy, Some(27761)),
            ("worker-1", Role::Worker, None),
            ("worker-2", Role::Worker, None),
        ],
    )
}

pub async fn set_config(c: &Connection, config: Configuration) -> Response {
    let reqid = c.new_reqid();
    c.request(
        Request::SetConfiguration(SetConfigurationRequest { reqid, config }),
        LONG,
    )
    .await
    .expect("set_configuration response")
}

pub async fn get_nodes(c: &Connection) -> Vec<NodeStatus> {
    let reqid = c.new_reqid();
    let r = c
        .request(Request::GetNodes(GetNodesRequest { reqid }), LONG)
        .await
        .expect("get_nodes response");
    assert!(r.result.success, "{:?}", r.result);
    match r.result.data {
        Some(ResultData::NodeStatuses(s)) => s,
        other => panic!("get_nodes data: {other:?}"),
    }
}

pub fn per_node(result: &ApiResult) -> Vec<ApiResult> {
    match &result.data {
        Some(ResultData::Results(r)) => r.clone(),
        other => panic!("set_configuration data: {other:?}"),
    }
}

/// Polls get_nodes until `f` holds.
pub async fn wait_nodes(
    c: &Connection,
    what: &str,
    f: impl Fn(&[NodeStatus]) -> bool,
) -> Vec<NodeStatus> {
    let deadline = Instant::now() + LONG;
    loop {
        let s = get_nodes(c).await;
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn all_running(s: &[NodeStatus]) -> bool {
    s.iter().all(|n| {
        n.state == State::Running
            && (n.mgmt_role != zeek_mgmt_agent::api::types::MgmtRole::None || n.pid.is_some())
    })
}

pub fn node_pid(s: &[NodeStatus], name: &str) -> i32 {
    s.iter()
        .find(|n| n.node == name)
        .and_then(|n| n.pid)
        .map(|p| p as i32)
        .unwrap_or_else(|| panic!("no pid for {name}: {s:#?}"))
}

pub fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); look at its state too.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.chars().next())
        .unwrap_or(None);
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists && state != Some('Z')
}

/// Waits until `pid` has exited.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    came_within(limit, || !alive(pid))
}

/// Pids of live processes whose environment holds `CLUSTER_NODE=node` and
/// whose working directory is `dir`.
pub fn node_processes(dir: &Path, node: &str) -> Vec<i32> {
    let marker = format!("CLUSTER_NODE={node}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if cwd != dir {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("stand-in-node.sh") {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|kv| kv == marker.as_bytes()) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The first line a daemon writes on its stdout (its ready line), or an
/// empty string if none comes within 20 s.
pub fn first_line(child: &mut std::process::Child) -> String {
    ready_lines(child, 1).swap_remove(0)
}

/// The first `n` lines of a child's stdout (empty ones for those that did
/// not come within 20 s).
pub fn ready_lines(child: &mut std::process::Child, n: usize) -> Vec<String> {
    let mut lines = vec![String::new(); n];
    let Some(stdout) = child.stdout.take() else {
        return lines;
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        for _ in 0..n {
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    for slot in &mut lines {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => *slot = line,
            Err(_) => break,
        }
    }
    lines
}

/// The address of a ready line's `http://ADDR/metrics`.
pub fn metrics_address(line: &str) -> Option<SocketAddr> {
    line.split_once("http://")?
        .1
        .split_once('/')?
        .0
        .parse()
        .ok()
}

/// The real Zeek the tests run: `$ZEEK_BINARY`, else the Zeek 8.2.2 kept
/// beside the checkout (`../shared/zeek/bin/zeek`), if it answers
/// `--version` as Zeek does; otherwise why not. A `$ZEEK_BINARY` that does
/// not run is a failure (whoever set it wants real Zeek), not a skip.
pub fn real_zeek() -> Result<PathBuf, String> {
    let (path, required) = match std::env::var_os("ZEEK_BINARY") {
        Some(p) => (PathBuf::from(p), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/zeek/bin/zeek"),
            false,
        ),
    };
    let found = probe_zeek(path);
    if let (Err(why), true) = (&found, required) {
        panic!("ZEEK_BINARY is set, but {why}");
    }
    found
}

fn probe_zeek(path: PathBuf) -> Result<PathBuf, String> {
    let path = std::path::absolute(&path).unwrap_or(path);
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("no Zeek at {} ({e}); set ZEEK_BINARY", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(" version ") {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{} does not run as Zeek: {}",
            path.display(),
            err.lines().next().unwrap_or("no version line")
        ));
    }
    Ok(path)
}

/// Says, on one line that the test harness does not swallow, that `test`
/// was skipped and why.
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The real Zeek, or the test says it is skipped and returns.
#[macro_export]
macro_rules! require_zeek {
    ($test:expr) => {
        match $crate::support::real_zeek() {
            Ok(z) => z,
            Err(why) => {
                $crate::support::skipped($test, &why);
                return;
            }
        }
    };
}

/// The one way the tests wait: until `check` holds, polling every 50 ms,
/// at most `limit`; then the test fails, saying `what` it waited for (a
/// [`Later`] says it with the state at that moment).
pub fn eventually(what: impl std::fmt::Display, limit: Duration, check: impl FnMut() -> bool) {
    if !came_within(limit, check) {
        panic!("gave up after {limit:?} waiting for {what}");
    }
}

/// Whether `check` came to hold within `limit` (polling every 50 ms), for
/// the few waits whose outcome the test looks at itself.
pub fn came_within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A description made when it is shown: the state when a wait gave up.
pub struct Later<F: Fn() -> String>(pub F);

impl<F: Fn() -> String> std::fmt::Display for Later<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}
