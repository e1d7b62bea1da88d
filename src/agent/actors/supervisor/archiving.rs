//! The supervisor's side of the log archive: it drives the `LogArchiver`
//! (a sweep every scan interval, expiry and the free-space look once a
//! minute), keeps the figures `get_nodes` shows on the agent's entry, and
//! tells the peers what an operator must know: an archive error (once per
//! new error), the free-space floor crossed (once per crossing).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;

use super::NodeSupervisor;
use crate::agent::actors::archiver::{ArchiverSpec, LogArchiver, Sweep, SweepReport};
use crate::agent::archive::{self, Crossing, Step};
use crate::api::types::ArchiveStatus;

/// The longest the agent waits at exit for the logs its nodes rotated as
/// they stopped; what is left is archived at its next start.
const LAST_SWEEP: Duration = Duration::from_secs(10);

/// Expiry and the free-space look run this often.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

/// Set to `written` or `renamed`, the archiver stops for good after that
/// step of its first file (tests kill the agent there).
pub const STOP_AT_ENV: &str = "ZEEK_MGMT_AGENT_ARCHIVE_STOP_AT";

/// The archive's state in the supervisor.
#[derive(Default)]
pub(super) struct Archiving {
    archiver: Option<Addr<LogArchiver>>,
    sweeping: bool,
    sweeps: u64,
    below_floor: bool,
    pub(super) status: ArchiveStatus,
}

/// `YYYY-MM-DD` (UTC) of `now`.
fn day_of(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    archive::civil(i64::try_from(secs / 86_400).unwrap_or(0))
}

/// The hook of `STOP_AT_ENV`: blocks the archiver's thread for good at
/// that step.
fn stop_at(step: Option<String>) -> Arc<dyn Fn(Step) + Send + Sync> {
    let stop = match step.as_deref() {
        Some("written") => Some(Step::Written),
        Some("renamed") => Some(Step::Renamed),
        _ => None,
    };
    Arc::new(move |s| {
        if Some(s) == stop {
            tracing::warn!("log archive stopped after step {s:?} ({STOP_AT_ENV})");
            loop {
                std::thread::park();
            }
        }
    })
}

impl NodeSupervisor {
    /// Starts the archiver and its timer, unless the site keeps its logs.
    pub(super) fn start_archiving(&mut self, ctx: &mut Context<Self>) {
        if !self.cfg.log_archive {
            return;
        }
        let spec = ArchiverSpec {
            queue: self.cfg.log_queue(),
            archive: self.cfg.archive_dir(),
            level: 6,
            expire_days: self.cfg.archive_expire_days,
            max_bytes: self.cfg.archive_max_bytes,
            free_space: archive::free_percent,
            at_step: stop_at(std::env::var(STOP_AT_ENV).ok()),
        };
        self.archiving.archiver = Some(LogArchiver::start(spec));
        ctx.run_interval(self.cfg.archive_scan_interval, |act, ctx| act.sweep(ctx));
        self.sweep(ctx);
    }

    /// At shutdown, once the nodes have stopped: archive what they rotated
    /// as they stopped (a sweep queued behind any running one), for at most
    /// `LAST_SWEEP`.
    pub(super) fn last_sweep(&self) -> impl std::future::Future<Output = ()> + 'static {
        let archiver = self.archiving.archiver.clone();
        async move {
            if let Some(a) = archiver {
                match tokio::time::timeout(LAST_SWEEP, a.send(Sweep { today: None })).await {
                    Ok(Ok(r)) => {
                        if !r.archived.is_empty() {
                            tracing::info!(files = r.archived.len(), "archived at exit");
                        }
                    }
                    _ => {
                        tracing::warn!("log archive: not done at exit; the rest at the next start")
                    }
                }
            }
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let a = &mut self.archiving;
        let Some(archiver) = a.archiver.clone().filter(|_| !a.sweeping) else {
            return;
        };
        let every = (EXPIRY_EVERY.as_secs_f64() / self.cfg.archive_scan_interval.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        let today = a
            .sweeps
            .is_multiple_of(every)
            .then(|| day_of(SystemTime::now()));
        a.sweeps += 1;
        a.sweeping = true;
        ctx.spawn(
            archiver
                .send(Sweep { today })
                .into_actor(self)
                .map(|res, act, _| {
                    act.archiving.sweeping = false;
                    if let Ok(report) = res {
                        act.on_sweep(report);
                    }
                }),
        );
    }

    fn on_sweep(&mut self, r: SweepReport) {
        if r.leftovers > 0 {
            self.notify_log(
                "",
                format!(
                    "log archive: removed {} unfinished archive file(s) of an earlier run",
                    r.leftovers
                ),
            );
        }
        let status = &mut self.archiving.status;
        status.waiting = r.waiting as u64;
        if !r.archived.is_empty() {
            status.archived_files += r.archived.len() as u64;
            status.archived_bytes += r.archived.iter().map(|a| a.bytes).sum::<u64>();
            status.last_archived = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64());
            status.last_error = None;
            for a in &r.archived {
                tracing::info!(bytes = a.bytes, "archived {}", a.path.display());
            }
        }
        if let Some(free) = r.free {
            status.free_percent = Some(free);
        }
        if r.expired > 0 {
            tracing::info!(files = r.expired, "log archive: expired");
        }
        for e in r.errors {
            let new = self.archiving.status.last_error.as_deref() != Some(e.as_str());
            self.archiving.status.last_error = Some(e.clone());
            if new {
                self.notify_error(
                    "",
                    format!("log archive: {e} (kept in the queue, tried again)"),
                );
            }
        }
        let floor = self.cfg.min_disk_space;
        if let Some(c) = r
            .free
            .and_then(|free| archive::crossing(self.archiving.below_floor, free, floor))
        {
            let dir = self.cfg.archive_dir();
            match c {
                Crossing::Below { free } => {
                    self.archiving.below_floor = true;
                    let msg = format!(
                        "disk space low: {free:.1}% free on the filesystem of {}, below the {floor}% floor",
                        dir.display()
                    );
                    self.notify_error("", msg.clone());
                    self.notify_log("", msg);
                }
                Crossing::Above { free } => {
                    self.archiving.below_floor = false;
                    self.notify_log(
                        "",
                        format!(
                            "disk space back above the {floor}% floor: {free:.1}% free on the filesystem of {}",
                            dir.display()
                        ),
                    );
                }
            }
        }
    }
}
