//! `LogArchiver`: the log archive's file work, on a thread of its own at
//! the lowest CPU and I/O priority (a busy sensor must not lose packets to
//! compression). At each `Sweep` from the supervisor it archives every
//! queued log, one file at a time (`archive::archive_file`), and, when
//! asked, applies expiry and reads the free space. It decides nothing
//! about notifications: the supervisor does, from the report.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use crate::agent::archive::{self, Step};

/// What the archiver is given.
#[derive(Clone)]
pub struct ArchiverSpec {
    /// Where logging nodes rotate to.
    pub queue: PathBuf,
    /// Where logs are archived.
    pub archive: PathBuf,
    /// Compression level (gzip's 6).
    pub level: u32,
    pub expire_days: u32,
    pub max_bytes: u64,
    /// Free space of the archive's filesystem, in percent (injectable for
    /// tests).
    pub free_space: fn(&std::path::Path) -> Option<f64>,
    /// Called after each step of archiving a file (tests stop there).
    pub at_step: Arc<dyn Fn(Step) + Send + Sync>,
}

/// Sent by the supervisor every scan interval (never while one is out):
/// archive what is queued; with `today`, expire and read the free space
/// too.
#[derive(Debug, Message)]
#[rtype(result = "SweepReport")]
pub struct Sweep {
    /// `YYYY-MM-DD` by the supervisor's clock, when expiry is due.
    pub today: Option<String>,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SweepReport {
    /// Files archived, with their sizes before compression.
    pub archived: Vec<archive::Archived>,
    /// Files that could not be archived (they stay queued), in words.
    pub errors: Vec<String>,
    /// Files left in the queue.
    pub waiting: usize,
    /// Archived files deleted by expiry.
    pub expired: usize,
    /// Free space, in percent, when expiry ran.
    pub free: Option<f64>,
    /// Temporary files of a crashed run removed (the first sweep).
    pub leftovers: usize,
}

pub struct LogArchiver {
    spec: ArchiverSpec,
    first: bool,
}

impl LogArchiver {
    /// Starts the archiver on a thread of its own.
    pub fn start(spec: ArchiverSpec) -> Addr<LogArchiver> {
        SyncArbiter::start(1, move || LogArchiver {
            spec: spec.clone(),
            first: true,
        })
    }
}

/// Lowers this thread's CPU priority to the lowest (nice 19) and its I/O
/// priority to the idle class; failures only cost speed.
fn lowest_priority() {
    // SAFETY: plain system calls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        // ioprio_set(IOPRIO_WHO_PROCESS, tid, IOPRIO_CLASS_IDLE << 13)
        libc::syscall(libc::SYS_ioprio_set, 1, tid, 3 << 13);
    }
}

impl Actor for LogArchiver {
    type Context = SyncContext<Self>;

    fn started(&mut self, _: &mut SyncContext<Self>) {
        lowest_priority();
    }
}

impl Handler<Sweep> for LogArchiver {
    type Result = MessageResult<Sweep>;

    fn handle(&mut self, msg: Sweep, _: &mut SyncContext<Self>) -> Self::Result {
        let spec = &self.spec;
        let mut report = SweepReport::default();
        if std::mem::take(&mut self.first) {
            let _ = std::fs::create_dir_all(&spec.queue);
            let _ = std::fs::create_dir_all(&spec.archive);
            report.leftovers = archive::remove_leftovers(&spec.archive);
        }
        let queued = archive::queued(&spec.queue);
        let total = queued.len();
        for (i, (path, q)) in queued.into_iter().enumerate() {
            match archive::archive_file(&path, &q, &spec.archive, spec.level, &*spec.at_step) {
                Ok(done) => report.archived.push(done),
                Err(e) => {
                    report.errors.push(e.to_string());
                    // The rest waits for the next sweep: a full disk fails
                    // them all alike.
                    report.waiting = total - i;
                    break;
                }
            }
        }
        if let Some(today) = msg.today {
            let files = archive::kept(&spec.archive);
            for path in archive::expired(&files, &today, spec.expire_days, spec.max_bytes) {
                match std::fs::remove_file(&path) {
                    Ok(()) => report.expired += 1,
                    Err(e) => report
                        .errors
                        .push(format!("cannot expire {}: {e}", path.display())),
                }
            }
            // Day directories left empty go too.
            for day in std::fs::read_dir(&spec.archive)
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(day.path());
            }
            report.free = (spec.free_space)(&spec.archive);
        }
        MessageResult(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, days: u32, max: u64) -> ArchiverSpec {
        ArchiverSpec {
            queue: dir.join("q"),
            archive: dir.join("a"),
            level: 1,
            expire_days: days,
            max_bytes: max,
            free_space: |_| Some(3.5),
            at_step: Arc::new(|_| {}),
        }
    }

    fn put(path: &std::path::Path, bytes: usize) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, vec![b'x'; bytes]).expect("write");
    }

    #[actix_rt::test]
    async fn a_sweep_archives_the_queue_then_expires_by_the_given_day() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        // An archive of three days, and one log queued today.
        put(&dir.join("a/2026-12-01/conn.00:00:00-01:00:00.log.gz"), 100);
        put(&dir.join("a/2026-12-05/conn.00:00:00-01:00:00.log.gz"), 100);
        put(&dir.join("a/2026-12-06/conn.00:00:00-01:00:00.log.gz"), 100);
        put(
            &dir.join("q/dns__2026-12-06-01-00-00__2026-12-06-02-00-00__.log"),
            1000,
        );
        let archiver = LogArchiver::start(spec(dir, 2, 0));
        // Without a day: the queue only.
        let r = archiver.send(Sweep { today: None }).await.expect("report");
        assert_eq!(r.archived.len(), 1);
        assert_eq!((r.waiting, r.expired, r.free), (0, 0, None));
        assert!(dir
            .join("a/2026-12-06/dns.01:00:00-02:00:00.log.gz")
            .exists());
        // Expiry by the day it is told (no clock read): two days kept.
        let r = archiver
            .send(Sweep {
                today: Some("2026-12-06".into()),
            })
            .await
            .expect("report");
        assert_eq!((r.expired, r.free), (1, Some(3.5)));
        assert!(
            !dir.join("a/2026-12-01").exists(),
            "an emptied day goes too"
        );
        assert!(dir
            .join("a/2026-12-05/conn.00:00:00-01:00:00.log.gz")
            .exists());
    }

    #[actix_rt::test]
    async fn a_size_cap_never_touches_the_queue() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        put(&dir.join("a/2026-12-05/old.00:00:00-01:00:00.log.gz"), 500);
        put(&dir.join("a/2026-12-06/new.00:00:00-01:00:00.log.gz"), 500);
        // Not a queued log's name: left alone, never archived or deleted.
        put(&dir.join("q/notes.txt"), 5000);
        let archiver = LogArchiver::start(spec(dir, 0, 600));
        let r = archiver
            .send(Sweep {
                today: Some("2026-12-06".into()),
            })
            .await
            .expect("report");
        assert_eq!(r.expired, 1);
        assert!(!dir.join("a/2026-12-05").exists());
        assert!(dir
            .join("a/2026-12-06/new.00:00:00-01:00:00.log.gz")
            .exists());
        assert!(dir.join("q/notes.txt").exists());
    }
}
