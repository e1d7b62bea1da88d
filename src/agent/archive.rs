//! The log archive, as plain data and file work: the script that makes
//! logging nodes rotate into the agent's queue with zeek-archiver's names,
//! how a queued file is named in the archive, archiving one file
//! atomically, and what expiry and the free-space floor decide. The
//! `LogArchiver` actor runs the file work on a thread of its own.
//!
//! The promise is zeek-archiver's: a compressed copy is written to a
//! temporary name, fsynced, renamed into place, and only then is the queued
//! file removed, so that a kill or a power loss at any point leaves either
//! the queued file (archived again, to the same name) or the archive, never
//! half a file, and no line twice.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::api::types::{Configuration, Node, Role};

/// The queue directory's name in the cluster directory.
pub const QUEUE_DIR: &str = "log-queue";
/// The node script's name in a node's working directory.
pub const SCRIPT_FILE: &str = "agent-logs.zeek";
/// Prefix of an archive file being written.
const TMP_PREFIX: &str = ".tmp.";
/// zeek-archiver's separator of the queued name's parts.
const SEP: &str = "__";

/// The nodes that write logs: the loggers; without one the manager; with
/// neither (no cluster), every node.
pub fn writes_logs(node: &Node, config: &Configuration) -> bool {
    let has = |role| config.nodes.iter().any(|n| n.role == role);
    match node.role {
        Role::Logger => true,
        Role::Manager => !has(Role::Logger),
        _ => !has(Role::Logger) && !has(Role::Manager),
    }
}

/// `agent-logs.zeek` for a logging node of `config`: rotate every
/// `interval_secs` into `queue` with zeek-archiver's names (Zeek's
/// `archiver_rotation_format_func`, with the `log_suffix` metadata when the
/// cluster has several loggers), no post-processor (never ZeekControl's
/// `archive-log`), and leftover logs of a crashed run rotated at the next
/// start.
pub fn node_script(config: &Configuration, queue: &Path, interval_secs: u64) -> String {
    let loggers = config
        .nodes
        .iter()
        .filter(|n| n.role == Role::Logger)
        .count();
    let suffix = if loggers > 1 {
        "\tbase = fmt(\"%slog_suffix=%s__\", base, Cluster::node);\n"
    } else {
        ""
    };
    format!(
        "# Written by zeek-mgmt-agent: logs rotate into its queue with zeek-archiver's\n\
         # names, and the agent archives them (--log-archive=false leaves this to the site).\n\
         module AgentLogs;\n\n\
         function rotation_format(ri: Log::RotationFmtInfo): Log::RotationPath\n\
         \t{{\n\
         \tlocal open_str = strftime(Log::default_rotation_date_format, ri$open);\n\
         \tlocal close_str = strftime(Log::default_rotation_date_format, ri$close);\n\
         \tlocal base = fmt(\"%s__%s__%s__\", ri$path, open_str, close_str);\n\
         {suffix}\
         \treturn Log::RotationPath($file_basename=base);\n\
         \t}}\n\n\
         redef Log::default_rotation_dir = \"{}\";\n\
         redef Log::rotation_format_func = rotation_format;\n\
         redef Log::default_rotation_postprocessor_cmd = \"\";\n\
         redef Log::default_rotation_interval = {interval_secs} secs;\n\
         redef LogAscii::enable_leftover_log_rotation = T;\n",
        queue
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// A queued log, read from its name
/// (`<stream>__<open>__<close>__[<metadata>__]<ext>`, times as
/// `YYYY-MM-DD-HH-MM-SS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub stream: String,
    /// `YYYY-MM-DD` of the opening: the archive's day directory.
    pub day: String,
    pub open: String,
    pub close: String,
    /// The `log_suffix` metadata, if any.
    pub suffix: Option<String>,
    /// `.log`, as it came.
    pub ext: String,
}

/// `YYYY-MM-DD-HH-MM-SS` as (`YYYY-MM-DD`, `HH:MM:SS`).
fn split_time(t: &str) -> Option<(String, String)> {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = b.len() == 19
        && [4, 7, 10, 13, 16].iter().all(|&i| b[i] == b'-')
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(digits);
    ok.then(|| {
        (
            t[..10].to_owned(),
            format!("{}:{}:{}", &t[11..13], &t[14..16], &t[17..19]),
        )
    })
}

/// Reads a queued file's name as zeek-archiver does; `None` for anything
/// else (left alone, as zeek-archiver leaves it).
pub fn parse_queued(name: &str) -> Option<Queued> {
    if name.starts_with('.') {
        return None;
    }
    let parts: Vec<&str> = name.split(SEP).collect();
    let (stream, open, close, meta, ext) = match parts.as_slice() {
        [s, o, c, e] => (*s, *o, *c, None, *e),
        [s, o, c, m, e] => (*s, *o, *c, Some(*m), *e),
        _ => return None,
    };
    if stream.is_empty() || stream.contains('/') {
        return None;
    }
    let (day, open) = split_time(open)?;
    let (_, close) = split_time(close)?;
    let mut suffix = None;
    for entry in meta
        .filter(|m| !m.is_empty())
        .into_iter()
        .flat_map(|m| m.split(','))
    {
        let (k, v) = entry.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || v.contains('=') || v.contains('/') {
            return None;
        }
        if k == "log_suffix" {
            suffix = Some(v.to_owned());
        }
    }
    Some(Queued {
        stream: stream.to_owned(),
        day,
        open,
        close,
        suffix,
        ext: ext.to_owned(),
    })
}

impl Queued {
    /// Its name in the archive's day directory, as zeek-archiver names it:
    /// `<stream>.<HH:MM:SS>-<HH:MM:SS>[-<suffix>]<ext>.gz`.
    pub fn archive_name(&self) -> String {
        let suffix = self
            .suffix
            .as_deref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default();
        format!(
            "{}.{}-{}{suffix}{}.gz",
            self.stream, self.open, self.close, self.ext
        )
    }
}

/// Why a file could not be archived (it stays queued, tried again).
#[derive(Debug, thiserror::Error)]
#[error("cannot archive {}: {what}: {source}", file.display())]
pub struct ArchiveError {
    pub file: PathBuf,
    pub what: &'static str,
    pub source: io::Error,
}

/// The steps of archiving one file, for tests that stop the agent between
/// them (a kill at each must lose and repeat nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The compressed copy is complete under its temporary name.
    Written,
    /// It has its final name; the queued file is still there.
    Renamed,
}

/// A file archived: its final path and its size before compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    pub path: PathBuf,
    pub bytes: u64,
}

/// Archives the queued file `src` (named as `q` says) into `archive`:
/// compress to a temporary name, fsync, rename, fsync the directory, then
/// remove `src`. An archive already under the final name with the same
/// content length was a previous run's that stopped before removing `src`:
/// `src` is removed and nothing written twice. `at` is called after each
/// step (tests stop there).
pub fn archive_file(
    src: &Path,
    q: &Queued,
    archive: &Path,
    level: u32,
    at: &dyn Fn(Step),
) -> Result<Archived, ArchiveError> {
    let fail = |what, source| ArchiveError {
        file: src.to_owned(),
        what,
        source,
    };
    let dir = archive.join(&q.day);
    std::fs::create_dir_all(&dir).map_err(|e| fail("creating its day directory", e))?;
    let bytes = std::fs::metadata(src)
        .map_err(|e| fail("reading it", e))?
        .len();
    let mut dest = dir.join(q.archive_name());
    let mut n = 1;
    while dest.exists() {
        if same_content(&dest, src).map_err(|e| fail("reading it", e))? {
            // Renamed by an earlier run that stopped before the removal.
            std::fs::remove_file(src).map_err(|e| fail("removing it", e))?;
            return Ok(Archived { path: dest, bytes });
        }
        n += 1;
        let name = q.archive_name();
        let stem = name.trim_end_matches(".gz").trim_end_matches(&q.ext);
        dest = dir.join(format!("{stem}-{n}{}.gz", q.ext));
    }
    let file_name = dest
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TMP_PREFIX}{file_name}"));
    let written = compress(src, &tmp, level);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("compressing it", e));
    }
    at(Step::Written);
    std::fs::rename(&tmp, &dest).map_err(|e| fail("renaming the archive into place", e))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("syncing the archive's directory", e))?;
    at(Step::Renamed);
    std::fs::remove_file(src).map_err(|e| fail("removing it", e))?;
    Ok(Archived { path: dest, bytes })
}

fn compress(src: &Path, tmp: &Path, level: u32) -> io::Result<()> {
    let mut input = BufReader::with_capacity(256 * 1024, File::open(src)?);
    let out = File::create(tmp)?;
    let mut gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(256 * 1024, out),
        flate2::Compression::new(level),
    );
    io::copy(&mut input, &mut gz)?;
    let out = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()
}

/// Whether the gzip file `archived` holds `src`: its trailer's CRC-32 and
/// length (modulo 2^32) against `src`'s. Only read when an archive of the
/// same name exists, which is rare.
fn same_content(archived: &Path, src: &Path) -> io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(archived)?;
    let mut trailer = [0u8; 8];
    if f.seek(SeekFrom::End(-8)).is_err() || f.read_exact(&mut trailer).is_err() {
        return Ok(false);
    }
    let mut crc = flate2::Crc::new();
    let mut input = BufReader::with_capacity(256 * 1024, File::open(src)?);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
    }
    let want = [crc.sum().to_le_bytes(), crc.amount().to_le_bytes()].concat();
    Ok(trailer[..] == want[..])
}

/// Removes what a crash left under a temporary name in the archive's day
/// directories; how many.
pub fn remove_leftovers(archive: &Path) -> usize {
    let mut removed = 0;
    for day in std::fs::read_dir(archive).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                && std::fs::remove_file(f.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// The queued files to archive now, oldest first (by name: the stream,
/// then the opening time).
pub fn queued(queue: &Path) -> Vec<(PathBuf, Queued)> {
    let mut out: Vec<(PathBuf, Queued)> = std::fs::read_dir(queue)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let q = parse_queued(&e.file_name().to_string_lossy())?;
            Some((e.path(), q))
        })
        .collect();
    out.sort_by(|a, b| (&a.1.day, &a.1.open, &a.0).cmp(&(&b.1.day, &b.1.open, &b.0)));
    out
}

/// One archived file, as expiry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// Every archived file, oldest day first.
pub fn kept(archive: &Path) -> Vec<Kept> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(archive).into_iter().flatten().flatten() {
        let name = day.file_name().to_string_lossy().into_owned();
        if split_time(&format!("{name}-00-00-00")).is_none() {
            continue;
        }
        for f in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Kept {
                day: name.clone(),
                path: f.path(),
                bytes,
            });
        }
    }
    out.sort_by(|a, b| (&a.day, &a.path).cmp(&(&b.day, &b.path)));
    out
}

/// What expiry deletes: every file of a day older than `keep_days` before
/// `today` (0: keep every day), then, oldest first, as many as bring the
/// total under `max_bytes` (0: no cap). Only archived files are ever
/// considered: the queue is not the archive.
pub fn expired(files: &[Kept], today: &str, keep_days: u32, max_bytes: u64) -> Vec<PathBuf> {
    let oldest_kept = (keep_days > 0).then(|| days_before(today, keep_days - 1));
    let mut out = Vec::new();
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    for f in files {
        let too_old = oldest_kept.as_deref().is_some_and(|o| f.day.as_str() < o);
        let too_big = max_bytes > 0 && total > max_bytes;
        if too_old || too_big {
            total = total.saturating_sub(f.bytes);
            out.push(f.path.clone());
        }
    }
    out
}

/// The day `n` days before `day` (`YYYY-MM-DD`), by the civil calendar.
pub fn days_before(day: &str, n: u32) -> String {
    let parse = |r: std::ops::Range<usize>| day.get(r).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (parse(0..4), parse(5..7), parse(8..10)) else {
        return day.to_owned();
    };
    civil(days_from_civil(y, m, d) - i64::from(n))
}

/// Days since 1970-01-01 of a civil date (the proleptic Gregorian
/// calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Free space of the filesystem holding `path`, in percent.
pub fn free_percent(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `st` a plain struct the call
    // fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    Some(st.f_bavail as f64 * 100.0 / st.f_blocks as f64)
}

/// The free-space floor crossed, one way or the other: said once per
/// crossing, not at every look.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Crossing {
    Below { free: f64 },
    Above { free: f64 },
}

/// Whether `free` percent crosses the `floor` given where it was
/// (`below`).
pub fn crossing(below: bool, free: f64, floor: f64) -> Option<Crossing> {
    match (below, free < floor) {
        (false, true) => Some(Crossing::Below { free }),
        (true, false) => Some(Crossing::Above { free }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
