//! The launch of a process: what the child is given and what it is not.

use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};

use super::*;

struct Launched {
    child: NodeChild,
    dir: tempfile::TempDir,
}

impl Launched {
    fn out(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("out")).unwrap_or_default()
    }

    /// A line of `/proc/PID/status`.
    fn status(&self, key: &str) -> String {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    }

    fn kill(mut self) {
        // SAFETY: plain signal to our own child.
        unsafe {
            libc::kill(self.child.pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn start(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    cpu: Option<usize>,
) -> io::Result<Launched> {
    let dir = tempfile::tempdir().expect("tempdir");
    let null = OwnedFd::from(File::open("/dev/null").expect("null"));
    let out = OwnedFd::from(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("out"))
            .expect("out"),
    );
    let err = out.try_clone().expect("err");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let child = launch(
        Path::new(program),
        &args,
        dir.path(),
        &env,
        &[],
        [&null, &out, &err],
        cpu,
    )?;
    Ok(Launched { child, dir })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_child_gets_its_arguments_directory_environment_and_output_files() {
    let mut l = start(
        "sh",
        &[
            "-c",
            "echo \"$1 $(pwd) $NODE_X ${HOME:+home}\"; echo oops >&2; exit 3",
            "sh",
            "arg one",
        ],
        &[("NODE_X", "x=1")],
        None,
    )
    .expect("launch");
    let status = l.child.wait().expect("wait");
    assert_eq!(status.code(), Some(3));
    let dir = l.dir.path().canonicalize().expect("dir");
    assert_eq!(
        l.out(),
        format!("arg one {} x=1 home\noops\n", dir.display()),
        "the agent's environment (HOME) is kept, NODE_X added"
    );
}

#[test]
fn the_child_leads_its_own_group_with_default_signals_and_no_blocked_ones() {
    let l = start("/bin/sleep", &["30"], &[], Some(0)).expect("launch");
    let pid = l.child.id();
    wait_for("exec", || l.status("Name:") == "sleep");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let pgrp: u32 = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("pgrp");
    assert_eq!(pgrp, pid);
    // Rust ignores SIGPIPE in the agent; the node gets the default.
    let ignored = u64::from_str_radix(&l.status("SigIgn:"), 16).expect("SigIgn");
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored");
    assert_eq!(
        l.status("SigBlk:").trim_start_matches('0'),
        "",
        "signals blocked"
    );
    assert_eq!(l.status("Cpus_allowed_list:"), "0");
    l.kill();
}

#[test]
fn the_child_dies_with_the_thread_that_launched_it() {
    let pid = std::thread::spawn(|| {
        let l = start("/bin/sleep", &["30"], &[], None).expect("launch");
        wait_for("exec", || l.status("Name:") == "sleep");
        l.child.pid
    })
    .join()
    .expect("thread");
    // The launching thread has ended: the parent-death signal kills the
    // child (left a zombie until reaped here).
    let mut child = NodeChild {
        pid,
        output_start: OutputStart::default(),
    };
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn failures_are_reported_with_their_cause() {
    let kind = |r: io::Result<Launched>| r.map(|_| ()).expect_err("must fail").kind();
    assert_eq!(
        kind(start("/nonexistent/zeek", &[], &[], None)),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        kind(start("no-such-program-here", &[], &[], None)),
        io::ErrorKind::NotFound
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("not-a-program");
    std::fs::write(&plain, "#!/bin/sh\n").expect("write");
    let plain = plain.to_str().expect("utf-8");
    assert_eq!(
        kind(start(plain, &[], &[], None)),
        io::ErrorKind::PermissionDenied
    );
    assert_eq!(
        kind(start("sh", &["-c", "true"], &[("BAD", "a\0b")], None)),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn a_cpu_beyond_the_cpu_set_is_refused_before_the_clone() {
    // libc's CPU_SET does not check its index: the child must never see one
    // beyond the set.
    for cpu in [libc::CPU_SETSIZE as usize, 1024, 5000, usize::MAX] {
        let err = start("sh", &["-c", "true"], &[], Some(cpu))
            .map(|_| ())
            .expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{cpu}: {err}");
        assert!(err.to_string().contains(&cpu.to_string()), "{err}");
    }
}
