//! Hosts for tests and benchmarks of clusters across hosts: network
//! namespaces joined by a bridge on the first, addresses from
//! 198.18.0.0/15 only (the range kept for network tests), each process
//! started inside one of them. Dropping `Hosts` ends every process and
//! removes every namespace, also when a test fails. Needs root and `ip`
//! (iproute2); `Hosts::make` says why not otherwise. Self-contained, so
//! that the benchmarks include it too.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The hub's address; host `i` (from 1) has `198.18.0.{i+1}`.
pub const HUB: &str = "198.18.0.1";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Network namespaces and the processes started in them; dropping it ends
/// every process and removes every namespace, also when a test fails.
pub struct Hosts {
    names: Vec<String>,
    procs: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Hosts {
    /// `n` hosts: the first holds a bridge with the hub address, each
    /// other one a veth pair into it, its end named `eth0`.
    pub fn make(n: usize) -> Result<Hosts, String> {
        let tag = format!(
            "zmt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut hosts = Hosts {
            names: Vec::new(),
            procs: Vec::new(),
        };
        for i in 0..n {
            let name = format!("{tag}h{i}");
            ip(&["netns", "add", &name])?;
            hosts.names.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        let hub = hosts.names[0].clone();
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{HUB}/24"),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, name) in hosts.names.iter().enumerate().skip(1) {
            let port = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            let addr = format!("198.18.0.{}/24", i + 1);
            ip(&["-n", name, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", name, "link", "set", "eth0", "up"])?;
        }
        Ok(hosts)
    }

    /// `n` hosts for `test`, or `None` once it has said on one line why it
    /// is skipped.
    pub fn or_skip(test: &str, n: usize) -> Option<Hosts> {
        match Hosts::make(n) {
            Ok(h) => Some(h),
            Err(why) => {
                // As the tests' `skipped` says it (this file is also an
                // example's).
                eprintln!("SKIPPED {test}: cannot make network namespaces: {why}");
                None
            }
        }
    }

    /// The network namespace of host `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// A command run inside host `i`.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }

    /// Runs `program` with `args` inside host `i`, in `dir`, to its end:
    /// its exit code (-1 for a signal), stdout and stderr.
    pub fn run(
        &self,
        i: usize,
        program: &Path,
        dir: &Path,
        args: &[&str],
    ) -> (i32, String, String) {
        let out = self
            .command(i, program)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `command` (from `command`), kept until the hosts go; its
    /// stdout is a pipe (for a ready line), stderr goes to `log`.
    pub fn start(&mut self, mut command: Command, log: &Path) -> &mut Child {
        let log = std::fs::File::create(log).expect("log file");
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start a process in a namespace");
        self.procs.push(child);
        self.procs.last_mut().expect("just pushed")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Agents first, with SIGTERM, so that they stop their nodes.
        for p in self.procs.iter().rev() {
            // SAFETY: plain signal delivery to our own child.
            unsafe {
                libc::kill(p.id() as i32, libc::SIGTERM);
            }
        }
        for p in &mut self.procs {
            let pid = p.id();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut gone = false;
            while !gone && Instant::now() < deadline {
                gone = matches!(p.try_wait(), Ok(Some(_)));
                std::thread::sleep(Duration::from_millis(20));
            }
            if !gone {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                let _ = p.wait();
            }
        }
        for name in &self.names {
            // Whatever is left inside (nothing, normally) ends with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: a process inside the test's namespace.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = ip(&["netns", "del", name]);
        }
    }
}
