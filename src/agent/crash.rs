//! Crash records: what the agent keeps of every unexpected exit of a node,
//! as plain data and file work. A record is one JSON file in the node's
//! directory, `crashes/<UTC time>-<pid>.json`: when, the exit status or
//! signal, how long the launch ran, the tails of that launch's stdout and
//! stderr, the tail of the node's `reporter.log`, and the core file the
//! kernel wrote, if any. The newest records are kept, the oldest deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::agent::process::{self, Exit};

/// The folder of a node's records, in its directory.
pub const DIR: &str = "crashes";

/// Lines of `reporter.log` a record quotes.
const REPORTER_LINES: usize = 20;

/// One unexpected exit of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashRecord {
    pub node: String,
    /// When the agent saw the exit, seconds since the epoch (UTC).
    pub time: f64,
    /// The same, as `2026-12-06T17:40:03Z`.
    pub when: String,
    pub pid: Option<u32>,
    /// "exited with code 3", "killed by signal 6 (SIGABRT)".
    pub status: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// How long the launch ran, in seconds.
    pub uptime_secs: f64,
    /// Whether it had counted as running before it exited.
    pub was_running: bool,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    /// The tail of the node's `reporter.log`, when it writes one.
    pub reporter: Vec<String>,
    /// The core file the kernel wrote for this process, if any.
    pub core: Option<PathBuf>,
    /// The record's own file.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// What a record is made of, from the supervisor.
pub struct Crash<'a> {
    pub node: &'a str,
    pub dir: &'a Path,
    pub pid: Option<u32>,
    pub status: &'a Exit,
    pub ran: Duration,
    pub was_running: bool,
    pub stdout: &'a str,
    pub stderr: &'a str,
}

impl CrashRecord {
    /// Reads what is known of a crash at the time it is seen (its core
    /// file, its reporter.log).
    pub fn new(c: &Crash<'_>, now: SystemTime) -> CrashRecord {
        let time = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (code, signal) = match c.status {
            Exit::Code(code) => (Some(*code), None),
            Exit::Signal(sig) => (None, Some(*sig)),
            Exit::Lost(_) => (None, None),
        };
        let lines = |text: &str| -> Vec<String> { text.lines().map(str::to_owned).collect() };
        CrashRecord {
            node: c.node.to_owned(),
            time: time.as_secs_f64(),
            when: utc(time.as_secs()),
            pid: c.pid,
            status: c.status.to_string(),
            code,
            signal,
            uptime_secs: (c.ran.as_secs_f64() * 1000.0).round() / 1000.0,
            was_running: c.was_running,
            stdout: lines(c.stdout),
            stderr: lines(c.stderr),
            reporter: lines(&process::tail(&c.dir.join("reporter.log"), REPORTER_LINES)),
            core: c.pid.and_then(|pid| find_core(c.dir, pid, now - c.ran)),
            file: None,
        }
    }

    /// One line: "node worker-1 killed by signal 9 (SIGKILL) after 12.3 s
    /// of running (crash record /…/crashes/….json)".
    pub fn summary(&self) -> String {
        let mut s = format!(
            "node {} {} after {:.1} s{}",
            self.node,
            self.status,
            self.uptime_secs,
            if self.was_running {
                " of running"
            } else {
                " while starting"
            }
        );
        if let Some(core) = &self.core {
            s.push_str(&format!(", core file {}", core.display()));
        }
        if let Some(f) = &self.file {
            s.push_str(&format!(" (crash record {})", f.display()));
        }
        s
    }

    /// The record's file name: its UTC time (sortable) and the pid.
    fn file_name(&self) -> String {
        let ms = (self.time * 1000.0) as u64;
        let stamp = utc(ms / 1000).replace(['-', ':'], "");
        format!("{stamp}.{:03}-{}.json", ms % 1000, self.pid.unwrap_or(0))
    }

    /// Where the record goes in the node's directory `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(DIR).join(self.file_name())
    }

    /// Writes the record into `dir/crashes/` and deletes the oldest beyond
    /// `keep`; returns the file.
    pub fn save(&mut self, dir: &Path, keep: usize) -> std::io::Result<PathBuf> {
        let folder = dir.join(DIR);
        std::fs::create_dir_all(&folder)?;
        let path = self.path_in(dir);
        self.file = Some(path.clone());
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = folder.join(format!(".{}.tmp", self.file_name()));
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, &path)?;
        let files = record_files(dir);
        for old in files.iter().take(files.len().saturating_sub(keep)) {
            let _ = std::fs::remove_file(old);
        }
        Ok(path)
    }
}

/// A node's record files, oldest first.
fn record_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// A node's records, newest first; unreadable ones are passed over.
pub fn read_all(dir: &Path) -> Vec<CrashRecord> {
    let mut records: Vec<CrashRecord> = record_files(dir)
        .iter()
        .rev()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            serde_json::from_str(&text).ok()
        })
        .collect();
    records.sort_by(|a, b| b.time.total_cmp(&a.time));
    records
}

/// The core file of process `pid`, written since `since`: where the
/// kernel's `core_pattern` puts it (a file pattern, relative to the
/// node's directory), or a `core` / `core.PID` in the node's directory. A
/// pattern that pipes to a program (systemd-coredump, apport) leaves none
/// here.
pub fn find_core(dir: &Path, pid: u32, since: SystemTime) -> Option<PathBuf> {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let mut candidates = vec![dir.join(format!("core.{pid}")), dir.join("core")];
    let pattern = pattern.trim();
    if !pattern.is_empty() && !pattern.starts_with('|') {
        let named = pattern.replace("%p", &pid.to_string()).replace("%%", "%");
        if !named.contains('%') {
            let p = Path::new(&named);
            candidates.insert(
                0,
                if p.is_absolute() {
                    p.to_owned()
                } else {
                    dir.join(p)
                },
            );
            candidates.insert(1, dir.join(format!("{named}.{pid}")));
        }
    }
    candidates.into_iter().find(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    })
}

/// `2026-12-06T17:40:03Z` of seconds since the epoch.
fn utc(secs: u64) -> String {
    let text = crate::logging::date_text(secs);
    format!("{}Z", String::from_utf8_lossy(&text[..19]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash<'a>(dir: &'a Path, status: &'a Exit) -> Crash<'a> {
        Crash {
            node: "worker-1",
            dir,
            pid: Some(4242),
            status,
            ran: Duration::from_millis(12_345),
            was_running: true,
            stdout: "up\n",
            stderr: "listening on eth0\nfatal error: boom\n",
        }
    }

    #[test]
    fn a_record_keeps_the_status_tails_and_reporter_log_and_the_newest_are_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("reporter.log"),
            "#fields\tts\n1.0\tReporter::ERROR\tx\n",
        )
        .expect("reporter.log");
        let killed = Exit::Signal(9);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let mut files = Vec::new();
        for i in 0..4 {
            let mut r = CrashRecord::new(&crash(dir.path(), &killed), t0 + Duration::from_secs(i));
            files.push(r.save(dir.path(), 3).expect("saved"));
        }
        let all = read_all(dir.path());
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0].file.as_ref(), Some(&files[3]), "newest first");
        assert!(!files[0].exists(), "the oldest is deleted");
        let r = &all[0];
        assert_eq!((r.signal, r.code, r.pid), (Some(9), None, Some(4242)));
        assert_eq!(r.status, "killed by signal 9 (SIGKILL)");
        assert_eq!(r.stderr, ["listening on eth0", "fatal error: boom"]);
        assert_eq!(r.stdout, ["up"]);
        assert_eq!(
            r.reporter.last().map(String::as_str),
            Some("1.0\tReporter::ERROR\tx")
        );
        assert_eq!(r.when, "2026-11-30T00:53:23Z");
        assert!(
            r.summary().starts_with(
                "node worker-1 killed by signal 9 (SIGKILL) after 12.3 s of running (crash record "
            ),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn a_core_file_of_the_process_written_since_its_launch_is_found() {
        let dir = tempfile::tempdir().expect("tmp");
        let since = SystemTime::now() - Duration::from_secs(5);
        assert_eq!(find_core(dir.path(), 77, since), None);
        std::fs::write(dir.path().join("core.77"), b"ELF").expect("core");
        assert_eq!(
            find_core(dir.path(), 77, since),
            Some(dir.path().join("core.77"))
        );
        // One older than the launch is another crash's.
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(find_core(dir.path(), 77, later), None);
    }
}
