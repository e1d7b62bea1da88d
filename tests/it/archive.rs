//! The log archive with the real agent binary: a kill at each step of
//! archiving a file loses and repeats nothing; and, with real Zeek, what
//! the nodes rotate lands in the archive under zeek-archiver's names,
//! whole.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

const QUEUED: &str = "conn__2026-12-06-09-49-25__2026-12-06-10-00-00__.log";
const ARCHIVED: &str = "2026-12-06/conn.09:49:25-10:00:00.log.gz";

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).expect("archive"))
        .read_to_string(&mut s)
        .unwrap_or_else(|e| panic!("{} is no gzip: {e}", path.display()));
    s
}

/// Every file under `dir`, by path.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn a_kill_at_any_step_of_archiving_loses_and_repeats_nothing() {
    let text: String = (0..5000)
        .map(|i| format!("line {i}\tof a conn log\n"))
        .collect();
    for step in ["written", "renamed"] {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        let queue = dir.join("cluster/log-queue");
        std::fs::create_dir_all(&queue).expect("queue");
        std::fs::write(queue.join(QUEUED), &text).expect("queued");
        // The archiver stops for good after `step`; the agent is killed
        // there, as a power loss would.
        let mut agent = Agent::start_in(dir, &[], &[("ZEEK_MGMT_AGENT_ARCHIVE_STOP_AT", step)]);
        agent.wait_log("log archive stopped after step", 1);
        agent.signal_and_wait(libc::SIGKILL);
        drop(agent);
        let archive = dir.join("logs");
        match step {
            "written" => {
                assert!(queue.join(QUEUED).exists(), "{step}");
                assert!(!archive.join(ARCHIVED).exists(), "{step}");
            }
            _ => {
                assert!(queue.join(QUEUED).exists(), "{step}");
                assert!(archive.join(ARCHIVED).exists(), "{step}");
            }
        }
        // Started again: archived once, nothing left behind.
        let agent = Agent::start_in(dir, &[], &[]);
        assert!(
            eventually(LONG, || !queue.join(QUEUED).exists()),
            "{step}: never archived:\n{}",
            agent.log()
        );
        assert_eq!(files(&archive), [archive.join(ARCHIVED)], "{step}");
        assert_eq!(gunzip(&archive.join(ARCHIVED)), text, "{step}");
        assert!(files(&queue).is_empty(), "{step}");
        if step == "written" {
            agent.wait_log("removed 1 unfinished archive file(s) of an earlier run", 1);
        }
    }
}

#[test]
fn an_archive_error_is_told_and_the_file_waits_for_the_next_try() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let queue = dir.join("cluster/log-queue");
    std::fs::create_dir_all(&queue).expect("queue");
    std::fs::write(queue.join(QUEUED), "x\n").expect("queued");
    // The archive's day directory cannot be made: a file is in its way.
    std::fs::create_dir_all(dir.join("logs")).expect("archive");
    std::fs::write(dir.join("logs/2026-12-06"), "in the way").expect("file");
    let agent = Agent::start_in(dir, &["--archive-scan-interval", "0.1"], &[]);
    let log = agent.wait_log("log archive: cannot archive ", 1);
    assert!(log.contains("creating its day directory"), "{log}");
    // Told once, though tried every scan.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        agent.log().matches("log archive: cannot archive ").count(),
        1
    );
    assert!(queue.join(QUEUED).exists());
    // Cleared: archived at the next try.
    std::fs::remove_file(dir.join("logs/2026-12-06")).expect("rm");
    assert!(eventually(LONG, || !queue.join(QUEUED).exists()));
    assert_eq!(gunzip(&dir.join("logs").join(ARCHIVED)), "x\n");
}
