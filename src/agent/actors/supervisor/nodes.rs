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
use super::revival::{after_exit, exit_message, AfterExit, RevivalPolicy};
use super::slots::{self, Slot};
use super::{Backend, Draining, NodeSupervisor};
use crate::agent::actors::node::{
    NodeEvent, NodeProcess, NodeReport, NodeTiming, ProcId, RouteVia, StopNode,
};
use crate::agent::channel::{self, Path, Rule};
use crate::agent::layout;
use crate::agent::process::{self, NodeFile, SpawnSpec};
use crate::api::types::{Configuration, Node, NodeOutputs, Role, State};

/// The file Zeek loads from a node's working directory.
const LAYOUT_FILE: &str = "cluster-layout.zeek";
/// Lines of a failed node's stdout and stderr quoted in its result.
const OUTPUT_TAIL_LINES: usize = 20;

impl NodeSupervisor {
    /// Replaces the running configuration: stops every current process and
    /// creates PENDING slots for the new local nodes (launched once the old
    /// ones have exited).
    pub(super) fn install(&mut self, config: Configuration, ctx: &mut Context<Self>) {
        self.drain_all(ctx);
        self.layout = Some(NodeFile::new(
            LAYOUT_FILE,
            &self.cfg.state_dir,
            Arc::from(layout::cluster_layout(&config)),
        ));
        for node in config.nodes.iter().filter(|n| n.instance == self.cfg.name) {
            self.slots
                .insert(node.name.clone(), Slot::pending(node.clone()));
        }
        self.config = Some(config);
    }

    /// Stops every process of the current slots and forgets the slots.
    pub(super) fn drain_all(&mut self, ctx: &mut Context<Self>) {
        for (_, slot) in std::mem::take(&mut self.slots) {
            if let Some(h) = slot.revival {
                ctx.cancel_future(h);
            }
            match slot.proc {
                Some((id, addr)) => {
                    addr.do_send(StopNode);
                    self.draining.insert(id, Draining { node: slot.node });
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

    /// The readiness deadline of a request arriving now (0.9 of the
    /// request timeout, so that per-node detail beats a bare `request
    /// timed out`), with a timer that answers for the nodes still waiting.
    pub(super) fn readiness_deadline(&mut self, ctx: &mut Context<Self>) -> Instant {
        let after = self.cfg.request_timeout.mul_f64(0.9);
        ctx.run_later(after, |act, _| act.readiness_deadline_passed());
        Instant::now() + after
    }

    fn readiness_deadline_passed(&mut self) {
        let now = Instant::now();
        let mut overdue: Vec<String> = self
            .deploy
            .iter()
            .chain(&self.restarting)
            .flat_map(|d| d.overdue(now))
            .collect();
        overdue.sort();
        overdue.dedup();
        let after = self.cfg.request_timeout.mul_f64(0.9);
        for name in overdue {
            let dir = self.cfg.cluster_dir.join(&name);
            let outputs = NodeOutputs {
                stdout: process::output_tail(&dir.join("stdout"), OUTPUT_TAIL_LINES),
                stderr: process::output_tail(&dir.join("stderr"), OUTPUT_TAIL_LINES),
            };
            let mut error = format!("node {name} not running within {} s", channel::secs(after));
            let tail = outputs.stderr.trim_end_matches('\n');
            if !tail.is_empty() {
                error.push_str("; stderr:\n");
                error.push_str(tail);
            }
            tracing::warn!(node = %name, "{error}");
            self.record_overdue(&name, Failure { error, outputs });
        }
    }

    fn record_overdue(&mut self, name: &str, failure: Failure) {
        let now = Instant::now();
        if let Some(d) = self
            .deploy
            .as_mut()
            .filter(|d| d.overdue(now).iter().any(|n| n == name))
        {
            d.record(name, Err(failure.clone()));
        }
        for r in &mut self.restarting {
            if r.overdue(now).iter().any(|n| n == name) {
                r.record(name, Err(failure.clone()));
            }
        }
        self.finish_deploy_if_complete();
    }

    fn record(&mut self, name: &str, outcome: Result<(), Failure>) {
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

    fn launch(&mut self, name: &str, backend: Option<&'static str>, ctx: &mut Context<Self>) {
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
        let dir = self.cfg.cluster_dir.join(name);
        let script_path = (path != Path::None).then(|| {
            std::path::absolute(dir.join(channel::SCRIPT_FILE))
                .unwrap_or_else(|_| dir.join(channel::SCRIPT_FILE))
                .to_string_lossy()
                .into_owned()
        });
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
        let mut files: Vec<NodeFile> = self.layout.iter().cloned().collect();
        if path != Path::None {
            files.push(self.script.clone());
        }
        let spec = SpawnSpec {
            program: self.cfg.zeek_binary.clone(),
            args: layout::node_args(node, backend, script_path.as_deref()),
            cwd: dir,
            env,
            unset,
            cpu: node.cpu_affinity.and_then(|c| usize::try_from(c).ok()),
            files,
        };
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
        let join_needs = match node.role {
            Role::Manager => config
                .nodes
                .iter()
                .filter(|n| n.name != node.name)
                .map(|n| n.name.clone())
                .collect(),
            _ => manager.into_iter().collect(),
        };
        let timing = NodeTiming {
            settle: self.cfg.settle_time,
            port_check,
            stop_grace: self.cfg.stop_grace,
            path,
            channel_port,
            channel: Arc::clone(&self.channel_timings),
            max_message: self.cfg.max_frame_bytes,
            join_needs,
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
        }
        self.set_state(name, State::Pending);
    }

    /// How `node` is reached: its own server, a route through a sibling
    /// (a ZeroMQ logging node), only its port, or no channel at all.
    fn channel_path(&self, node: &Node, config: &Configuration, backend: Option<&str>) -> Path {
        if !self.channel_on {
            return Path::None;
        }
        if !layout::is_logging_node(node, config, backend) {
            return Path::Own;
        }
        let sibling = self.slots.values().any(|s| {
            s.node.name != node.name && !layout::is_logging_node(&s.node, config, backend)
        });
        if sibling {
            Path::Routed
        } else {
            Path::PortOnly
        }
    }

    /// A free loopback port for a node's channel: none of the
    /// configuration's ports, the agent's own, ZeroMQ's defaults or
    /// another live launch's.
    fn free_channel_port(&self) -> u16 {
        let mut taken: Vec<u16> = vec![5555, 5556];
        taken.extend(self.listen_port);
        if let Some(c) = &self.config {
            for n in &c.nodes {
                taken.extend(n.p.map(|p| p.number));
                taken.extend(n.metrics_port.map(|p| p.number));
            }
            taken.extend(
                c.instances
                    .iter()
                    .filter_map(|i| i.listen_port.map(|p| p.number)),
            );
        }
        taken.extend(self.slots.values().filter_map(|s| s.channel_port));
        for _ in 0..64 {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port());
            match port {
                Ok(p) if !taken.contains(&p) => return p,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("cannot pick a node channel port: {e}");
                    break;
                }
            }
        }
        // The kernel keeps handing out taken ports: any high port will do,
        // a collision is handled by a relaunch.
        49152 + u16::try_from(self.next_proc % 16_000).unwrap_or(0)
    }

    /// Gives every logging node waiting for a route one through an answering
    /// sibling: proxies first, then a manager that is not the logger, then
    /// workers, by name.
    fn route_logging_nodes(&mut self) {
        let mut siblings: Vec<(u8, String, u16)> = self
            .slots
            .values()
            .filter_map(|s| {
                let rank = match s.node.role {
                    Role::Proxy => 0,
                    Role::Manager => 1,
                    Role::Worker => 2,
                    _ => 3,
                };
                Some((rank, s.node.name.clone(), s.acked_port?))
            })
            .collect();
        siblings.sort();
        let Some((_, via, port)) = siblings.into_iter().next() else {
            return;
        };
        for slot in self.slots.values_mut().filter(|s| s.needs_route) {
            if let Some((_, addr)) = &slot.proc {
                tracing::debug!(node = %slot.node.name, %via, "route");
                addr.do_send(RouteVia { port });
                slot.needs_route = false;
            }
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
            NodeEvent::Spawned { pid } => {
                if let Some(slot) = self.slots.get_mut(&node).filter(|_| current) {
                    slot.pid = Some(pid);
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
                let revived = self.slots.get_mut(&node).map(|s| {
                    s.has_run = true;
                    s.rule = Some(rule);
                    s.collisions = 0;
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
                self.record(&node, Ok(()));
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

    /// A node that could not bind its channel port is launched again at
    /// once with a new one, still `PENDING` (no crash, no revival used),
    /// up to `port_retries` times in a row.
    fn relaunch_after_collision(&mut self, name: &str, ctx: &mut Context<Self>) -> bool {
        let Backend::Known(backend) = self.backend else {
            return false;
        };
        let retries = self.channel_timings.port_retries;
        let Some(slot) = self.slots.get_mut(name) else {
            return false;
        };
        if slot.collisions >= retries || self.shutting_down {
            return false;
        }
        slot.collisions += 1;
        let port = slot.channel_port.unwrap_or(0);
        slot.proc = None;
        slot.pid = None;
        slot.started_at = None;
        self.mark_pids_dirty(ctx);
        self.notify_log(
            name,
            format!("node {name} relaunched: channel port {port} was in use"),
        );
        self.launch(name, backend, ctx);
        true
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
        slot.proc = None;
        slot.pid = None;
        slot.started_at = None;
        self.mark_pids_dirty(ctx);
        let dir = self.cfg.cluster_dir.join(name);
        let outputs = NodeOutputs {
            stdout: process::output_tail(&dir.join("stdout"), OUTPUT_TAIL_LINES),
            stderr: process::output_tail(&dir.join("stderr"), OUTPUT_TAIL_LINES),
        };
        let msg = exit_message(
            name,
            &status,
            was_running,
            outputs.stderr.trim_end_matches('\n'),
        );
        self.set_state(name, State::Crashed);
        self.notify_error(name, msg.clone());
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
