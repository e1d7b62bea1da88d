//! The supervisor carrying out its decisions on node processes: install a
//! configuration, drain the old processes, launch in order, record each
//! launch's outcome for the pending deployment, handle exits and revivals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::deploy::{Failure, PendingDeploy};
use super::launch_order::launch_now;
use super::revival::{after_exit, exit_message, with_stderr, AfterExit, RevivalPolicy};
use super::slots::{self, Slot};
use super::{Backend, Draining, NodeSupervisor};
use crate::agent::actors::node::{
    NodeEvent, NodeProcess, NodeReport, NodeTiming, ProcId, StopNode,
};
use crate::agent::channel::{self, Join, Path, Rule};
use crate::agent::process::{self, NodeFile, SpawnSpec};
use crate::agent::{archive, layout};
use crate::api::types::{Configuration, Role, State};

/// The file Zeek loads from a node's working directory.
const LAYOUT_FILE: &str = "cluster-layout.zeek";
/// Lines of a failed node's stdout and stderr quoted in its result.
pub(super) const OUTPUT_TAIL_LINES: usize = 20;

impl NodeSupervisor {
    /// Replaces the running configuration: stops every current process and
    /// creates PENDING slots for the new local nodes (launched once the old
    /// ones have exited).
    pub(super) fn install(&mut self, config: Configuration, ctx: &mut Context<Self>) {
        self.drain_all(ctx);
        self.files = Some(self.config_files(&config));
        for node in config.nodes.iter().filter(|n| n.instance == self.cfg.name) {
            self.slots
                .insert(node.name.clone(), Slot::pending(node.clone()));
        }
        self.config = Some(config);
    }

    /// Stops every process of the current slots and forgets the slots.
    pub(super) fn drain_all(&mut self, ctx: &mut Context<Self>) {
        let writes_logs = |node: &crate::api::types::Node| {
            self.config
                .as_ref()
                .is_some_and(|c| archive::writes_logs(node, c))
        };
        let others_run = self
            .slots
            .values()
            .any(|s| s.proc.is_some() && !writes_logs(&s.node));
        for (_, slot) in std::mem::take(&mut self.slots) {
            if let Some(h) = slot.revival {
                ctx.cancel_future(h);
            }
            match slot.proc {
                Some((id, addr)) => {
                    let later = (others_run && writes_logs(&slot.node)).then(|| addr.clone());
                    if later.is_none() {
                        addr.do_send(StopNode);
                    }
                    self.draining.insert(
                        id,
                        Draining {
                            node: slot.node,
                            later,
                        },
                    );
                }
                None => {
                    let mut node = slot.node;
                    let old = node.state;
                    node.state = State::Stopped;
                    self.notify_change(&node, old);
                }
            }
        }
        self.mark_pids_dirty(ctx);
    }

    /// A receiver answered once every draining process has exited.
    pub(super) fn when_drained(&mut self, ctx: &mut Context<Self>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.after_drain.push(tx);
        self.on_drained(ctx);
        rx
    }

    fn on_drained(&mut self, ctx: &mut Context<Self>) {
        // Only the nodes that write logs left: their turn.
        if self.draining.values().all(|d| d.later.is_some()) {
            for d in self.draining.values_mut() {
                if let Some(addr) = d.later.take() {
                    addr.do_send(StopNode);
                }
            }
        }
        if !self.draining.is_empty() {
            return;
        }
        for tx in std::mem::take(&mut self.after_drain) {
            let _ = tx.send(());
        }
        self.launch_ready(ctx);
    }

    /// Answers the pending deployment and restarts `success: false`:
    /// `by` took their place.
    pub(super) fn supersede_deploy(&mut self, by: &str) {
        self.check_seq += 1;
        if let Some(d) = self.deploy.take() {
            d.supersede(&self.cfg.name, by);
        }
        for r in std::mem::take(&mut self.restarting) {
            r.supersede(&self.cfg.name, by);
        }
    }

    pub(super) fn finish_deploy_if_complete(&mut self) {
        if self.deploy.as_ref().is_some_and(|d| d.is_complete()) {
            if let Some(d) = self.deploy.take() {
                self.notify_log("", d.summary());
                d.respond(&self.cfg.name);
            }
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.restarting)
            .into_iter()
            .partition(PendingDeploy::is_complete);
        self.restarting = waiting;
        for r in done {
            self.notify_log("", r.summary());
            r.respond(&self.cfg.name);
        }
    }

    pub(super) fn record(&mut self, name: &str, outcome: Result<(), Failure>) {
        if let Some(d) = &mut self.deploy {
            d.record(name, outcome.clone());
        }
        for r in &mut self.restarting {
            r.record(name, outcome.clone());
        }
        self.finish_deploy_if_complete();
    }

    /// Stops the local node `name` (its process drains like an old
    /// configuration's) and makes it PENDING, to be launched again once
    /// nothing drains.
    pub(super) fn restart_slot(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if let Some(h) = slot.revival.take() {
            ctx.cancel_future(h);
        }
        if let Some((id, addr)) = slot.proc.take() {
            addr.do_send(StopNode);
            self.draining.insert(
                id,
                Draining {
                    node: slot.node.clone(),
                    later: None,
                },
            );
        }
        slot.pid = None;
        slot.started_at = None;
        slot.attempts = 0;
        slot.has_run = false;
        slot.acked_port = None;
        self.set_state(name, State::Pending);
        self.mark_pids_dirty(ctx);
    }

    /// Launches what `launch_order` says launches now (nothing while old
    /// processes drain, the backend is unknown, or the agent shuts down).
    pub(super) fn launch_ready(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || !self.draining.is_empty() {
            return;
        }
        let Backend::Known(backend) = self.backend else {
            return;
        };
        let now: Vec<String> = launch_now(
            &slots::candidates(&self.slots, backend),
            self.cfg.port_checks,
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        for name in now {
            self.launch(&name, backend, ctx);
        }
    }

    pub(super) fn launch(
        &mut self,
        name: &str,
        backend: Option<&'static str>,
        ctx: &mut Context<Self>,
    ) {
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let node = &slot.node;
        let Some(config) = self.config.as_ref() else {
            return;
        };
        let host = config
            .instances
            .iter()
            .find(|i| i.name == node.instance)
            .map(|i| i.host.0);
        let path = self.channel_path(node, config, backend);
        let channel_port = (path == Path::Own).then(|| self.free_channel_port());
        let Some(files) = self.files.as_ref() else {
            return;
        };
        let spec = self.node_spec(
            files,
            config,
            NodeLaunch {
                node,
                backend,
                path,
                channel_port,
                dir: self.cfg.cluster_dir.join(name),
            },
        );
        let own_port = |p: Option<crate::api::types::Port>| match (p, host) {
            (Some(p), Some(h)) => Some(SocketAddr::new(h, p.number)),
            _ => None,
        };
        let port_check = match path {
            Path::Routed | Path::PortOnly => own_port(node.p),
            _ if self.cfg.port_checks && layout::binds_port(node, backend) => own_port(node.p),
            _ => None,
        };
        let manager = config
            .nodes
            .iter()
            .find(|n| n.role == Role::Manager)
            .map(|n| n.name.clone());
        // The manager is the cluster's hub: the others join it.
        let join_needs: Vec<String> = match node.role {
            Role::Manager => Vec::new(),
            _ => manager.into_iter().collect(),
        };
        let reports_join = !join_needs.is_empty() && matches!(path, Path::Own | Path::Routed);
        let timing = NodeTiming {
            settle: self.cfg.settle_time,
            port_check,
            stop_grace: self.cfg.stop_grace,
            path,
            channel_port,
            channel: Arc::clone(&self.channel_timings),
            max_message: self.cfg.max_frame_bytes,
            join_needs,
            join_hint: channel::join_hint(config, backend),
        };
        self.next_proc += 1;
        let id = ProcId(self.next_proc);
        let addr =
            NodeProcess::new(name.to_owned(), id, spec, timing, ctx.address().recipient()).start();
        if let Some(slot) = self.slots.get_mut(name) {
            slot.proc = Some((id, addr));
            slot.pid = None;
            slot.started_at = None;
            slot.has_run = false;
            slot.rule = None;
            slot.channel_port = channel_port;
            slot.acked_port = None;
            slot.needs_route = false;
            slot.reports_join = reports_join;
            slot.join = None;
        }
        self.set_state(name, State::Pending);
    }

    /// The files every node of `config` gets in its directory.
    pub(super) fn config_files(&self, config: &Configuration) -> ConfigFiles {
        let file = |name, text: String| NodeFile::new(name, &self.cfg.state_dir, Arc::from(text));
        let interval = self.cfg.log_rotation_interval.as_secs().max(1);
        ConfigFiles {
            layout: file(LAYOUT_FILE, layout::cluster_layout(config)),
            zeromq: file(layout::ZEROMQ_FILE, layout::zeromq_settings(config)),
            logs: self.cfg.log_archive.then(|| {
                let script = archive::node_script(config, &self.cfg.log_queue(), interval);
                file(archive::SCRIPT_FILE, script)
            }),
            fanout: layout::fanout_ids(config, &self.cfg.name),
        }
    }

    /// How `l.node` of `config` is started: its directory's files, its
    /// environment, its command line.
    pub(super) fn node_spec(
        &self,
        files: &ConfigFiles,
        config: &Configuration,
        l: NodeLaunch<'_>,
    ) -> SpawnSpec {
        let NodeLaunch {
            node,
            backend,
            path,
            channel_port,
            dir,
        } = l;
        let in_dir = |file: &str| {
            std::path::absolute(dir.join(file))
                .unwrap_or_else(|_| dir.join(file))
                .to_string_lossy()
                .into_owned()
        };
        let script_path = (path != Path::None).then(|| in_dir(channel::SCRIPT_FILE));
        let zeromq_file = Some(&files.zeromq).filter(|_| backend == Some(layout::ZEROMQ_BACKEND));
        let zeromq_path = zeromq_file.map(|_| in_dir(layout::ZEROMQ_FILE));
        let logs_file = files
            .logs
            .as_ref()
            .filter(|_| archive::writes_logs(node, config));
        let logs_path = logs_file.map(|_| in_dir(archive::SCRIPT_FILE));
        let mut env: Vec<(String, String)> = node
            .env
            .iter()
            .filter(|(k, _)| path == Path::None || k.as_str() != channel::PORT_ENV)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("CLUSTER_NODE".to_owned(), node.name.clone()));
        let mut unset = Vec::new();
        match channel_port {
            Some(port) => env.push((channel::PORT_ENV.to_owned(), port.to_string())),
            None if path != Path::None => unset.push(channel::PORT_ENV.to_owned()),
            None => {}
        }
        let mut placed = vec![files.layout.clone()];
        placed.extend(zeromq_file.cloned());
        placed.extend(logs_file.cloned());
        if path != Path::None {
            placed.push(self.script.clone());
        }
        SpawnSpec {
            program: self.cfg.zeek_binary.clone(),
            args: layout::node_args(
                node,
                backend,
                layout::AgentScripts {
                    backend_settings: zeromq_path.as_deref(),
                    channel: script_path.as_deref(),
                    logs: logs_path.as_deref(),
                    fanout_id: node
                        .interface
                        .as_ref()
                        .and_then(|i| files.fanout.get(i).copied()),
                },
            ),
            cwd: dir,
            env,
            unset,
            cpu: node.cpu_affinity.and_then(|c| usize::try_from(c).ok()),
            files: placed,
        }
    }

    fn launch_failed(&mut self, name: &str, error: String) {
        if let Some(slot) = self.slots.get_mut(name) {
            slot.proc = None;
            slot.pid = None;
        }
        self.set_state(name, State::Failed);
        self.notify_error(name, format!("node {name} failed to launch: {error}"));
        self.record(name, Err(Failure::from(error)));
    }

    /// A fact from a node process: decided on by the process's id, so that
    /// a report of an older process never disturbs a newer one.
    pub(super) fn on_report(&mut self, report: NodeReport, ctx: &mut Context<Self>) {
        let NodeReport {
            node,
            proc_id,
            event,
        } = report;
        let current = self.slots.get(&node).is_some_and(|s| s.runs(proc_id));
        match event {
            NodeEvent::Spawned { pid, output_start } => {
                if let Some(slot) = self.slots.get_mut(&node).filter(|_| current) {
                    slot.pid = Some(pid);
                    slot.output_start = output_start;
                    slot.started_at = Some(Instant::now());
                    self.mark_pids_dirty(ctx);
                }
            }
            NodeEvent::SpawnFailed { error } => {
                if self.draining.remove(&proc_id).is_some() {
                    self.on_drained(ctx);
                } else if current {
                    self.launch_failed(&node, error);
                }
            }
            NodeEvent::Running { rule } => {
                if !current {
                    return;
                }
                let mut awaits_join = false;
                let revived = self.slots.get_mut(&node).map(|s| {
                    s.has_run = true;
                    s.rule = Some(rule);
                    s.collisions = 0;
                    awaits_join = s.reports_join && rule != Rule::Fallback;
                    s.restarts > 0
                });
                self.set_state(&node, State::Running);
                let t = &self.channel_timings;
                match rule {
                    Rule::Degraded => self.notify_log(
                        &node,
                        format!(
                            "node {node} counted running without a channel answer after {} s",
                            channel::secs(t.join_grace)
                        ),
                    ),
                    Rule::Fallback => self.notify_log(
                        &node,
                        format!(
                            "node {node} counted running without a channel: none within {} s",
                            channel::secs(t.channel_timeout)
                        ),
                    ),
                    _ => {}
                }
                if revived == Some(true) {
                    self.notify_log(&node, format!("node {node} revived"));
                }
                // A node that reports its join counts for its deployment
                // once it has joined, or has not.
                if !awaits_join {
                    self.record(&node, Ok(()));
                }
                if self.cfg.port_checks {
                    self.launch_ready(ctx);
                }
            }
            NodeEvent::ChannelUp { port } => {
                if let Some(slot) = self.slots.get_mut(&node).filter(|_| current) {
                    slot.acked_port = Some(port);
                    self.route_logging_nodes();
                }
            }
            NodeEvent::NeedsRoute => {
                if let Some(slot) = self.slots.get_mut(&node).filter(|_| current) {
                    slot.needs_route = true;
                    self.route_logging_nodes();
                }
            }
            NodeEvent::Join(join) => {
                if current {
                    self.on_join(&node, join);
                }
            }
            NodeEvent::Exited {
                status, collided, ..
            } => {
                if collided && current && self.relaunch_after_collision(&node, ctx) {
                    return;
                }
                self.on_exit(&node, proc_id, status, ctx)
            }
        }
    }

    /// A running node has joined its cluster, or has not. A deployment
    /// waiting for it counts it once joined; one that has not joined by
    /// the readiness deadline fails with the reason (`readiness.rs`), so
    /// that the nodes of other hosts have until then to come up. A change
    /// is told to the peers.
    fn on_join(&mut self, name: &str, join: Join) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let before = slot.join.replace(join.clone());
        match join {
            Join::Joined => {
                if matches!(before, Some(Join::NotJoined(_))) {
                    self.notify_log(name, format!("node {name} joined the cluster"));
                }
                self.record(name, Ok(()));
            }
            Join::NotJoined(why) => self.notify_error(name, why),
        }
    }

    fn on_exit(&mut self, name: &str, id: ProcId, status: process::Exit, ctx: &mut Context<Self>) {
        if let Some(d) = self.draining.remove(&id) {
            let mut node = d.node;
            let old = node.state;
            node.state = State::Stopped;
            tracing::info!(node = %node.name, "stopped: {status}");
            self.notify_change(&node, old);
            self.mark_pids_dirty(ctx);
            self.on_drained(ctx);
            return;
        }
        let Some(slot) = self.slots.get_mut(name).filter(|s| s.runs(id)) else {
            return;
        };
        let ran = slot.started_at.map(|t| t.elapsed()).unwrap_or_default();
        slot.acked_port = None;
        slot.channel_port = None;
        let was_running = slot.has_run;
        let attempts = slot.attempts;
        let pid = slot.pid;
        slot.proc = None;
        slot.pid = None;
        slot.started_at = None;
        self.mark_pids_dirty(ctx);
        let outputs = self.output_tails(name);
        let msg = exit_message(
            name,
            &status,
            was_running,
            outputs.stderr.trim_end_matches('\n'),
        );
        let summary = self.keep_crash_record(name, pid, &status, (ran, was_running), &outputs);
        self.set_state(name, State::Crashed);
        self.notify_error(name, with_stderr(summary, &outputs.stderr));
        self.record(
            name,
            Err(Failure {
                error: msg,
                outputs,
            }),
        );
        let policy = RevivalPolicy::of(&self.cfg);
        match after_exit(&policy, attempts, ran, self.shutting_down) {
            AfterExit::Leave => {}
            AfterExit::GiveUp { after } => {
                self.set_state(name, State::Failed);
                self.notify_error(
                    name,
                    format!("node {name} given up after {after} failed revivals in a row"),
                );
            }
            AfterExit::Revive { attempt, delay } => {
                let Some(slot) = self.slots.get_mut(name) else {
                    return;
                };
                slot.attempts = attempt;
                let owned = name.to_owned();
                slot.revival = Some(ctx.run_later(delay, move |act, ctx| act.revive(&owned, ctx)));
                tracing::info!(node = name, attempt, ?delay, "revival scheduled");
            }
        }
    }

    fn revive(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Backend::Known(backend) = self.backend else {
            return;
        };
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.revival = None;
        if slot.proc.is_some() || slot.node.state != State::Crashed || self.shutting_down {
            return;
        }
        slot.restarts += 1;
        self.launch(name, backend, ctx);
    }
}

/// The files of one configuration that its nodes get in their directories.
pub(super) struct ConfigFiles {
    layout: NodeFile,
    /// `cluster-backend.zeek`, for ZeroMQ.
    zeromq: NodeFile,
    /// `agent-logs.zeek`, for the nodes that write logs (none when the site
    /// keeps rotation).
    logs: Option<NodeFile>,
    /// This host's AF_PACKET fanout group per interface.
    fanout: std::collections::BTreeMap<String, u16>,
}

/// One launch (or check) of a node, as `node_spec` takes it.
pub(super) struct NodeLaunch<'a> {
    pub node: &'a crate::api::types::Node,
    pub backend: Option<&'static str>,
    pub path: Path,
    pub channel_port: Option<u16>,
    pub dir: std::path::PathBuf,
}
