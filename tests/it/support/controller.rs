//! A controller for the tests: the real `zeek-mgmt-controller` binary with
//! short timings, and the clients that drive it (Zeek's zeek-client and
//! ours).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, metrics_address, ready_lines, Later};

/// The zeek-client program: `$ZEEK_CLIENT`, else the one `.ci/run`
/// installs, else the one on PATH.
pub fn zeek_client() -> PathBuf {
    if let Some(p) = std::env::var_os("ZEEK_CLIENT") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/zeek-client");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("zeek-client")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The addresses of a controller's ready line, "zeek-mgmt-controller NAME
/// listening on ADDR (clients) and ADDR (agents)", each `None` when off.
pub fn ready_addresses(line: &str) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let rest = line
        .split_once(" listening on ")
        .unwrap_or_else(|| panic!("no ready line: {line:?}"))
        .1;
    let (clients, agents) = rest
        .trim()
        .strip_suffix(" (agents)")
        .and_then(|r| r.split_once(" (clients) and "))
        .unwrap_or_else(|| panic!("no ready line: {line:?}"));
    let addr = |a: &str| (a != "off").then(|| a.parse().expect("an address"));
    (addr(clients), addr(agents))
}

/// A running controller.
pub struct Controller {
    child: Child,
    pub ws: SocketAddr,
    pub agents: u16,
    /// Where its metrics are served, with `--metrics-addr`.
    pub metrics: Option<SocketAddr>,
    dir: PathBuf,
}

impl Controller {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A controller on free ports, read from its ready line.
    pub fn start(dir: &Path) -> Controller {
        Controller::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str]) -> Controller {
        Controller::start_on(dir, 0, 0, extra)
    }

    /// A controller on these ports (0: a free one), as a restarted
    /// controller takes its predecessor's.
    pub fn start_on(dir: &Path, ws_port: u16, agent_port: u16, extra: &[&str]) -> Controller {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("controller.log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-controller"))
            .args([
                "--websocket-port",
                &ws_port.to_string(),
                "--listen-port",
                &agent_port.to_string(),
                "--state-dir",
                &dir.join("controller-state").display().to_string(),
                "--request-timeout",
                "8s",
                "--dial-interval",
                "0.1",
            ])
            .args(extra)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the controller");
        let with_metrics = extra.contains(&"--metrics-addr");
        let lines = ready_lines(&mut child, if with_metrics { 2 } else { 1 });
        let line = &lines[0];
        let (ws, agents) = ready_addresses(line);
        Controller {
            child,
            ws: ws.unwrap_or_else(|| panic!("no client address in {line:?}")),
            agents: agents.map_or(0, |a| a.port()),
            metrics: lines.get(1).and_then(|l| metrics_address(l)),
            dir: dir.to_owned(),
        }
    }

    /// Runs zeek-client against this controller: (exit code, stdout,
    /// stderr).
    pub fn client(&self, args: &[&str]) -> (i32, String, String) {
        let program = zeek_client();
        let out = Command::new(&program)
            .arg("--controller")
            .arg(self.ws.to_string())
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install it with `python3 -m venv .ci/venv && .ci/venv/bin/pip install zeek-client==1.5.0` (.ci/run does)",
                    program.display()
                )
            });
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs zeek-mgmt-client --controller against this controller: (exit
    /// code, stdout, stderr).
    pub fn ours(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
            .arg("--controller")
            .arg(self.ws.to_string())
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run zeek-mgmt-client");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits (at most 10 s) until get-instances lists `agent`.
    pub fn wait_checked_in(&self, agent: &str) {
        eventually(
            Later(|| format!("{agent} never checked in")),
            Duration::from_secs(10),
            || self.client(&["get-instances"]).1.contains(agent),
        );
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: plain signal delivery to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
