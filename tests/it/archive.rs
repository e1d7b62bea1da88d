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
        eventually(
            Later(|| format!("{step}: never archived:\n{}", agent.log())),
            LONG,
            || !queue.join(QUEUED).exists(),
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
    eventually("the queued file archived", LONG, || {
        !queue.join(QUEUED).exists()
    });
    assert_eq!(gunzip(&dir.join("logs").join(ARCHIVED)), "x\n");
}

#[tokio::test]
async fn real_zeek_logs_land_in_the_archive_whole_under_zeek_archivers_names() {
    use zeek_mgmt_agent::api::types::{Port, Role, ZeromqPorts};
    const TEST: &str =
        "archive::real_zeek_logs_land_in_the_archive_whole_under_zeek_archivers_names";
    let zeek = crate::require_zeek!(TEST);
    let agent = crate::realzeek::zeek_agent_with(
        &zeek,
        &[
            "--log-rotation-interval",
            "2s",
            "--archive-scan-interval",
            "0.2",
        ],
    );
    let c = agent.connect().await;
    let free = crate::support::controller::free_port;
    let mut config = cluster(
        "archive",
        &[
            ("manager", Role::Manager, Some(free())),
            ("worker-1", Role::Worker, None),
        ],
    );
    config.zeromq = Some(ZeromqPorts {
        xpub_port: Port::tcp(free()),
        xsub_port: Port::tcp(free()),
    });
    // The manager writes a log of its own, numbered lines 1..=LINES, a
    // line every 10 ms: across several rotations.
    const LINES: usize = 400;
    let script = agent.dir.join("counted.zeek");
    std::fs::write(
        &script,
        format!(
            "module Counted;\n\
             export {{ redef enum Log::ID += {{ LOG }}; type Info: record {{ n: count &log; }}; }}\n\
             global n = 0;\n\
             event tick() {{ ++n; Log::write(LOG, [$n=n]); if ( n < {LINES} ) schedule 10msec {{ tick() }}; }}\n\
             event zeek_init() {{ Log::create_stream(LOG, [$columns=Info, $path=\"counted\"]); schedule 10msec {{ tick() }}; }}\n"
        ),
    )
    .expect("script");
    config.nodes[0].scripts = Some(vec![script.display().to_string()]);
    let r = set_config(&c, config).await;
    assert!(r.result.success, "{:?}", r.result);

    let archive = agent.dir.join("logs");
    // Each line of `counted` in the archive, by number.
    let archived_lines = || -> Vec<usize> {
        let mut out: Vec<usize> = files(&archive)
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("counted."))
            })
            .flat_map(|p| {
                gunzip(p)
                    .lines()
                    .filter_map(|l| l.parse::<usize>().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    };
    // Rotated every 2 s while it runs: the lines reach the archive, in
    // several files.
    eventually(
        Later(|| {
            format!(
                "{} of {LINES} lines archived: {:?}",
                archived_lines().len(),
                files(&archive)
            )
        }),
        Duration::from_secs(60),
        || archived_lines().len() >= LINES,
    );
    let counted = files(&archive)
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("counted."))
        })
        .count();
    assert!(counted >= 2, "one rotation only: {:?}", files(&archive));
    // Stopped (the workers first, the manager last): the last logs rotate
    // into the queue and are archived too. What the manager writes after
    // its final rotation (its own stats at exit) stays as a leftover, which
    // Zeek rotates at the node's next start.
    let r = crate::channel::standby(&c).await;
    assert!(r.success, "{r:?}");
    let queue = agent.dir.join("cluster/log-queue");
    eventually(Later(|| format!("{:?}", files(&queue))), LONG, || {
        files(&queue).is_empty()
    });
    let manager = agent.node_dir("manager");
    let shadows = |dir: &Path| -> Vec<PathBuf> {
        files(dir)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".shadow."))
            })
            .collect()
    };
    let leftovers = shadows(&manager);
    for n in ["manager", "worker-1"] {
        let stderr = std::fs::read_to_string(agent.node_dir(n).join("stderr")).unwrap_or_default();
        assert!(!stderr.contains("archive-log"), "{n}: {stderr}");
    }
    let mut again = cluster("archive-again", &[("manager", Role::Manager, Some(free()))]);
    again.zeromq = Some(ZeromqPorts {
        xpub_port: Port::tcp(free()),
        xsub_port: Port::tcp(free()),
    });
    let r = set_config(&c, again).await;
    assert!(r.result.success, "{:?}", r.result);
    eventually(
        Later(|| {
            format!(
                "leftovers {leftovers:?} never rotated; queue {:?}",
                files(&queue)
            )
        }),
        LONG,
        || leftovers.iter().all(|p| !p.exists()) && files(&queue).is_empty(),
    );
    let name = regex_like();
    for f in files(&archive) {
        let rel = f.strip_prefix(&archive).expect("under the archive");
        let rel = rel.display().to_string();
        assert!(name(&rel), "not zeek-archiver's name: {rel}");
        // Whole: gzip-valid, from Zeek's header to its closing line.
        let text = gunzip(&f);
        assert!(text.starts_with("#separator"), "{rel}");
        assert!(
            text.lines().last().is_some_and(|l| l.starts_with("#close")),
            "{rel}"
        );
    }
    // Every line Zeek wrote, exactly once.
    assert_eq!(archived_lines(), (1..=LINES).collect::<Vec<_>>());
}

/// `YYYY-MM-DD/<stream>.HH:MM:SS-HH:MM:SS[-N].log.gz` (`-N` for a second
/// file under a name already archived, which zeek-archiver would replace).
fn regex_like() -> impl Fn(&str) -> bool {
    |rel: &str| {
        let Some((day, file)) = rel.split_once('/') else {
            return false;
        };
        let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
        let day_ok = day.len() == 10 && day.split('-').all(digits);
        let Some(rest) = file.strip_suffix(".log.gz") else {
            return false;
        };
        let Some((stream, times)) = rest.split_once('.') else {
            return false;
        };
        let time = |t: &str| t.len() == 8 && t.split(':').all(digits);
        let mut parts = times.split('-');
        let (open, close, n) = (parts.next(), parts.next(), parts.next());
        day_ok
            && !stream.is_empty()
            && open.is_some_and(time)
            && close.is_some_and(time)
            && n.is_none_or(|n| !n.is_empty() && digits(n))
            && parts.next().is_none()
    }
}

#[test]
fn what_the_nodes_rotate_as_they_stop_is_archived_before_the_agent_exits() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    // No scan while it runs: only the sweeps at start and at exit.
    let mut agent = Agent::start_in(dir, &["--archive-scan-interval", "1h"], &[]);
    let queue = dir.join("cluster/log-queue");
    eventually("no queue", LONG, || queue.is_dir());
    // Lets the start's sweep end first, so that the file is the exit's to
    // archive (were it the start's, this would pass without proving it).
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(queue.join(QUEUED), "rotated at stop\n").expect("queued");
    assert!(agent.signal_and_wait(libc::SIGTERM).success());
    assert!(!queue.join(QUEUED).exists(), "{}", agent.log());
    assert_eq!(
        gunzip(&dir.join("logs").join(ARCHIVED)),
        "rotated at stop\n"
    );
}
