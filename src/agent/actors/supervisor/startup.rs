//! The supervisor's first start (the persisted configuration, leftovers of
//! an earlier run, the cluster backend) and the pids file.

use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;

use super::deploy::PendingDeploy;
use super::slots;
use super::{Backend, NodeSupervisor};
use crate::agent::actors::state_writer::SavePids;
use crate::agent::channel;
use crate::agent::config::ClusterBackend;
use crate::agent::layout;
use crate::agent::state::{self, Loaded};
use crate::agent::validate;

/// Delay before the pids file is rewritten after a change (batches launches).
const PIDS_FLUSH_DELAY: Duration = Duration::from_millis(100);

impl NodeSupervisor {
    /// First start: end leftovers of an earlier run, find the backend, then
    /// launch whatever configuration is installed by then.
    pub(super) fn prepare(&mut self, ctx: &mut Context<Self>) {
        // A configuration persisted by an earlier run (or another version)
        // is checked like one that arrives: an invalid one is kept aside.
        let loaded = match self.state.load_config() {
            Loaded::Config(c) => match validate::validate(&c, &self.host_facts()) {
                Ok(()) => Loaded::Config(c),
                Err(problems) => Loaded::Corrupt {
                    error: format!("invalid here: {}", problems.join("; ")),
                    kept_as: self.state.keep_config_aside(),
                },
            },
            other => other,
        };
        match loaded {
            Loaded::None => {}
            Loaded::Config(c) => {
                tracing::info!(id = %c.id, "bringing back the persisted configuration");
                self.deploy = Some(PendingDeploy::new(&c, &self.cfg.name, None, None));
                self.install(c, ctx);
            }
            Loaded::Corrupt { error, kept_as } => {
                let msg = format!(
                    "persisted configuration is unusable ({error}); kept as {}; running with no configuration",
                    kept_as.display()
                );
                tracing::error!("{msg}");
                self.notify_error("", msg);
            }
        }
        let leftovers = self.state.load_pids();
        let grace = self.cfg.stop_grace;
        let setting = self.cfg.cluster_backend;
        let mode = self.cfg.node_channel;
        let check = self.cfg.check_scripts;
        let binary = self.cfg.zeek_binary.clone();
        let timeout = self.cfg.version_timeout;
        let work = async move {
            let ended = if leftovers.is_empty() {
                Vec::new()
            } else {
                tokio::task::spawn_blocking(move || state::end_leftovers(&leftovers, grace))
                    .await
                    .unwrap_or_default()
            };
            (ended, detect(setting, mode, check, binary, timeout).await)
        };
        ctx.spawn(work.into_actor(self).map(
            |(ended, (backend, channel_on, is_zeek)), act, ctx| {
                for r in ended {
                    act.notify_log(
                        &r.node,
                        format!("ended leftover process {} of node {}", r.pid, r.node),
                    );
                }
                tracing::info!(
                    backend = backend.unwrap_or("none"),
                    channel = channel_on,
                    "cluster backend and node channel"
                );
                act.backend = Backend::Known(backend);
                act.channel_on = channel_on;
                act.is_zeek = is_zeek;
                act.finish_deploy_if_complete();
                act.launch_ready(ctx);
            },
        ));
    }

    /// The pids file is rewritten a moment after a change (launches come
    /// in batches).
    pub(super) fn mark_pids_dirty(&mut self, ctx: &mut Context<Self>) {
        if self.pids_dirty {
            return;
        }
        self.pids_dirty = true;
        ctx.run_later(PIDS_FLUSH_DELAY, |act, _| {
            let pids = act.pids_now();
            act.writer.do_send(pids);
        });
    }

    /// The pids file's records as of now, for the writer.
    pub(super) fn pids_now(&mut self) -> SavePids {
        self.pids_dirty = false;
        let program = self.cfg.zeek_binary.to_string_lossy();
        SavePids(slots::pid_records(&self.slots, &program))
    }
}

pub(super) fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1)
}

/// The backend script for the configured setting, whether nodes get the
/// node channel, and whether the program is Zeek (its scripts can be
/// checked); `auto` (of either) or the check asks `<zeek-binary>
/// --version` (with a timeout, killed when it passes).
async fn detect(
    setting: ClusterBackend,
    mode: channel::Mode,
    check: bool,
    binary: PathBuf,
    timeout: Duration,
) -> (Option<&'static str>, bool, bool) {
    let version = if setting == ClusterBackend::Auto || mode == channel::Mode::Auto || check {
        probe_version(&binary, timeout).await
    } else {
        None
    };
    let backend = match setting {
        ClusterBackend::Zeromq => Some(layout::ZEROMQ_BACKEND),
        ClusterBackend::Broker => Some(layout::BROKER_BACKEND),
        ClusterBackend::None => None,
        ClusterBackend::Auto => version
            .filter(|v| *v >= (8, 1))
            .map(|_| layout::ZEROMQ_BACKEND),
    };
    let channel_on = mode == channel::Mode::Auto && version.is_some_and(|v| v >= (8, 0));
    (backend, channel_on, version.is_some())
}

/// Zeek's version from `<zeek-binary> --version`, if it answers as Zeek.
async fn probe_version(binary: &PathBuf, timeout: Duration) -> Option<(u32, u32)> {
    let out = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, out).await {
        Ok(Ok(o)) => layout::zeek_version(&String::from_utf8_lossy(&o.stdout)),
        Ok(Err(e)) => {
            tracing::warn!(binary = %binary.display(), "cannot run --version: {e}");
            None
        }
        Err(_) => {
            tracing::warn!(binary = %binary.display(), "--version timed out");
            None
        }
    }
}
