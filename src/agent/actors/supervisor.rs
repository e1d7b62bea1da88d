//! `NodeSupervisor`: owns the running configuration and the desired state of
//! every local node. Its handlers are thin; the decisions are functions of
//! plain data in files of their own:
//!
//! - `deploy.rs`: what `set_configuration` answers, and the bookkeeping of a
//!   deployment until every local node runs or has failed;
//! - `launch_order.rs`: which nodes launch now;
//! - `revival.rs`: what happens when a node exits on its own;
//! - `slots.rs`: the table of local nodes and what is read off it;
//! - `nodes.rs`: the actor carrying those decisions out (launch, drain,
//!   exits, revivals);
//! - `startup.rs`: the first start (persisted configuration, leftovers of an
//!   earlier run, the cluster backend), and the pids file.
//!
//! Blocking file work runs elsewhere: the configuration and the pids file
//! on the `StateWriter`'s thread, the nodes' directories on the spawner
//! thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::agent::actors::node::{NodeProcess, NodeReport, ProcId};
use crate::agent::actors::state_writer::{ClearConfig, SaveConfig, StateWriter};
use crate::agent::config::Config;
use crate::agent::process::{NodeFile, Sample};
use crate::agent::state::{StateDir, StateLock};
use crate::agent::validate::HostFacts;
use crate::api::events::{
    AgentStandbyRequest, AgentStandbyResponse, AgentWelcomeRequest, AgentWelcomeResponse,
    GetNodesRequest, GetNodesResponse, Notification, NotifyChange, NotifyError, NotifyLog,
    RestartRequest, RestartResponse, SetConfigurationRequest, SetConfigurationResponse,
};
use crate::api::types::{
    ApiResult, Configuration, MgmtRole, Node, NodeStatus, Port, ReqId, ResultData, Role, State,
};

mod archiving;
mod check;
mod crashes;
mod deploy;
mod dispatch;
mod launch_order;
mod nodes;
mod readiness;
mod revival;
mod slots;
mod startup;

use deploy::{PendingDeploy, Plan, Running};
pub use revival::revival_delay;
use slots::Slots;

/// Requests queued before senders wait (the tracker's `send`s).
const MAILBOX_CAPACITY: usize = 1 << 16;

/// Sent by the agent on shutdown: stop every node (the persisted
/// configuration stays) and answer once they have all exited.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A process of an earlier configuration, being stopped.
struct Draining {
    node: Node,
    /// A node that writes logs, stopped once every other draining process
    /// has exited (as ZeekControl stops the loggers and the manager last),
    /// so that it takes the others' last log writes before it rotates its
    /// logs at exit.
    later: Option<Addr<NodeProcess>>,
}

enum Backend {
    Detecting,
    Known(Option<&'static str>),
}

pub struct NodeSupervisor {
    cfg: Arc<Config>,
    /// The port the agent listens on, if it listens.
    listen_port: Option<u16>,
    notifier: Recipient<Notification>,
    state: StateDir,
    writer: Addr<StateWriter>,
    config: Option<Configuration>,
    /// The configuration's files for the node directories.
    files: Option<nodes::ConfigFiles>,
    slots: Slots,
    draining: HashMap<ProcId, Draining>,
    /// Answered once every draining process has exited.
    after_drain: Vec<oneshot::Sender<()>>,
    deploy: Option<PendingDeploy>,
    /// `restart_request`s waiting for their nodes.
    restarting: Vec<PendingDeploy>,
    backend: Backend,
    /// Nodes get the node channel (Zeek 8.0 or later, `--node-channel auto`).
    channel_on: bool,
    /// The program answered `--version` as Zeek: its scripts can be
    /// checked before a deployment.
    is_zeek: bool,
    /// Bumped by every configuration, standby and shutdown: a check that
    /// finishes after one was superseded.
    check_seq: u64,
    /// The node channel's script, for every node directory.
    script: NodeFile,
    /// The node channel's timers, shared with every launch.
    channel_timings: Arc<crate::agent::channel::Timings>,
    /// A readiness-deadline timer is armed (one at a time).
    readiness_timer: bool,
    next_proc: u64,
    /// The agent's own last sample; the nodes' are in their slots.
    own_sample: Option<Sample>,
    /// When the last sample came in: uptimes are as of then, so that a
    /// status table stays the same (and its encoding reusable) between
    /// samples.
    sampled_at: Option<Instant>,
    started_at: Instant,
    welcomed: bool,
    shutting_down: bool,
    pids_dirty: bool,
    cpus: usize,
    own_pid: u32,
    /// The log archive: its actor, figures and what was last told.
    archiving: archiving::Archiving,
    /// The state directory's lock, held for the supervisor's life.
    _lock: Option<StateLock>,
}

impl NodeSupervisor {
    /// Must be called from within a running actix system (it starts the
    /// state writer's thread).
    pub fn new(
        cfg: Arc<Config>,
        listen_port: Option<u16>,
        notifier: Recipient<Notification>,
    ) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpus = cpus.max(startup::online_cpus());
        let state = StateDir::new(cfg.state_dir.clone());
        let script = NodeFile::new(
            crate::agent::channel::SCRIPT_FILE,
            &cfg.state_dir,
            Arc::from(crate::agent::channel::SCRIPT),
        );
        let channel_timings = Arc::new(cfg.channel());
        NodeSupervisor {
            writer: StateWriter::start(state.clone()),
            state,
            cfg,
            listen_port,
            notifier,
            config: None,
            files: None,
            slots: Slots::new(),
            draining: HashMap::new(),
            after_drain: Vec::new(),
            deploy: None,
            restarting: Vec::new(),
            backend: Backend::Detecting,
            channel_on: false,
            is_zeek: false,
            check_seq: 0,
            script,
            channel_timings,
            readiness_timer: false,
            next_proc: 0,
            own_sample: None,
            sampled_at: None,
            started_at: Instant::now(),
            welcomed: false,
            shutting_down: false,
            pids_dirty: false,
            cpus,
            own_pid: std::process::id(),
            archiving: archiving::Archiving::default(),
            _lock: None,
        }
    }

    /// Holds the state directory's lock for as long as this supervisor
    /// lives (the agent's life).
    pub fn holding(mut self, lock: StateLock) -> Self {
        self._lock = Some(lock);
        self
    }

    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn notify(&self, n: Notification) {
        self.notifier.do_send(n);
    }

    fn notify_error(&self, node: &str, msg: String) {
        let n = Notification::Error(NotifyError {
            instance: self.name().to_owned(),
            msg,
            node: node.to_owned(),
        });
        tracing::error!("{n}");
        self.notify(n);
    }

    fn notify_log(&self, node: &str, msg: String) {
        let n = Notification::Log(NotifyLog {
            instance: self.name().to_owned(),
            msg,
            node: node.to_owned(),
        });
        tracing::info!("{n}");
        self.notify(n);
    }

    fn notify_change(&self, node: &Node, old: State) {
        if old == node.state {
            return;
        }
        let n = Notification::Change(NotifyChange {
            instance: self.name().to_owned(),
            node: node.clone(),
            old,
            new: node.state,
        });
        tracing::info!("{n}");
        self.notify(n);
    }

    fn set_state(&mut self, name: &str, new: State) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let old = slot.node.state;
        slot.node.state = new;
        let node = slot.node.clone();
        self.notify_change(&node, old);
    }

    fn host_facts(&self) -> HostFacts {
        HostFacts {
            agent_name: self.cfg.name.clone(),
            agent_port: self.listen_port,
            cpus: self.cpus,
            zeromq: !matches!(
                self.backend,
                Backend::Known(b) if b != Some(crate::agent::layout::ZEROMQ_BACKEND)
            ),
        }
    }

    /// What `plan` needs to know of the running agent.
    fn running(&self) -> Running<'_> {
        Running {
            config: self.config.as_ref(),
            settled: self.draining.is_empty()
                && self.deploy.is_none()
                && self.slots.values().all(|s| s.node.state == State::Running),
            shutting_down: self.shutting_down,
        }
    }

    /// Persists `config` on the writer's thread, then installs and launches
    /// it; no other message is handled meanwhile, so configurations apply in
    /// the order they came.
    /// Checks `config`'s nodes (off the actor's thread; other requests go
    /// on meanwhile), then applies it, unless a check failed (refused,
    /// nothing changed) or a configuration, standby or shutdown came since
    /// (superseded).
    fn check_then_apply(
        &mut self,
        config: Configuration,
        reqid: ReqId,
        tx: oneshot::Sender<ApiResult>,
        ctx: &mut Context<Self>,
    ) {
        self.check_seq += 1;
        let seq = self.check_seq;
        let specs = self.check_specs(&config);
        // The check may take the request's own time, no more.
        let timeout = self.cfg.request_timeout.mul_f64(0.5);
        let started = Instant::now();
        let checks = check::run_checks(specs, self.cpus, timeout);
        ctx.spawn(checks.into_actor(self).map(move |failures, act, ctx| {
            tracing::info!(id = %config.id, failed = failures.len(), took = ?started.elapsed(), "configuration checked");
            if act.shutting_down {
                let _ = tx.send(ApiResult::failure(reqid, act.name(), "agent is shutting down"));
            } else if act.check_seq != seq {
                let msg = format!("configuration {:?} was superseded while it was checked", config.id);
                let _ = tx.send(ApiResult::failure(reqid, act.name(), msg));
            } else if failures.is_empty() {
                act.apply(config, reqid, tx, ctx);
            } else {
                let r = check::refusal(&reqid, act.name(), &failures);
                act.notify_log("", r.error.clone());
                let _ = tx.send(r);
            }
        }));
    }

    fn apply(
        &mut self,
        config: Configuration,
        reqid: ReqId,
        tx: oneshot::Sender<ApiResult>,
        ctx: &mut Context<Self>,
    ) {
        for warning in crate::agent::validate::warnings(&config, &self.host_facts()) {
            self.notify_log("", warning);
        }
        let save = self.writer.send(SaveConfig(config.clone()));
        ctx.wait(save.into_actor(self).map(move |saved, act, ctx| {
            let saved = saved.unwrap_or_else(|e| Err(e.to_string()));
            if let Err(e) = saved {
                let msg = format!("cannot persist the configuration, nothing changed: {e}");
                tracing::error!("{msg}");
                let _ = tx.send(ApiResult::failure(reqid, act.name(), msg));
                return;
            }
            act.supersede_deploy(&format!("configuration {:?}", config.id));
            let deadline = act.readiness_deadline(ctx);
            act.deploy = Some(
                PendingDeploy::new(&config, act.name(), Some(reqid), Some(tx))
                    .with_deadline(deadline),
            );
            tracing::info!(id = %config.id, nodes = config.nodes.len(), "applying configuration");
            act.install(config, ctx);
            act.finish_deploy_if_complete();
            act.launch_ready(ctx);
        }));
    }

    fn statuses(&self) -> Vec<NodeStatus> {
        let own = self.own_sample.as_ref();
        let agent = NodeStatus {
            node: self.cfg.name.clone(),
            state: State::Running,
            mgmt_role: MgmtRole::Agent,
            cluster_role: Role::None,
            pid: Some(i64::from(self.own_pid)),
            p: self.listen_port.map(Port::tcp),
            metrics_port: None,
            cpu_affinity: None,
            cpu_percent: own.map(|s| s.cpu_percent),
            rss_bytes: own.map(|s| s.rss_bytes),
            restarts: None,
            uptime_secs: self
                .sampled_at
                .and_then(|at| at.checked_duration_since(self.started_at))
                .map(|d| d.as_secs_f64()),
            running_by: None,
            joined: None,
            join_error: None,
            archive: self.cfg.log_archive.then(|| self.archiving.status.clone()),
        };
        slots::status_table(&self.slots, agent, self.sampled_at)
    }

    fn sample(&mut self, ctx: &mut Context<Self>) {
        let mut pids: Vec<u32> = self.slots.values().filter_map(|s| s.pid).collect();
        pids.push(self.own_pid);
        ctx.spawn(
            crate::agent::process::sample(pids)
                .into_actor(self)
                .map(|samples, act, _| {
                    act.sampled_at = Some(Instant::now());
                    act.own_sample = samples.get(&act.own_pid).copied();
                    for slot in act.slots.values_mut() {
                        slot.sample = slot.pid.and_then(|p| samples.get(&p).map(|s| (p, *s)));
                    }
                }),
        );
    }
}

impl Actor for NodeSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Requests arrive with `send` from the tracker: many may be pending.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.sample(ctx);
        ctx.run_interval(self.cfg.sample_interval, |act, ctx| act.sample(ctx));
        self.start_archiving(ctx);
        self.prepare(ctx);
    }
}

/// The answer of a request that the actor finishes later, through `rx`.
fn answered_later<R>(
    rx: oneshot::Receiver<ApiResult>,
    reqid: ReqId,
    instance: String,
    response: impl FnOnce(ReqId, ApiResult) -> R + 'static,
) -> ResponseFuture<R> {
    Box::pin(async move {
        let result = rx.await.unwrap_or_else(|_| {
            ApiResult::failure(reqid.clone(), &instance, "agent is shutting down")
        });
        response(reqid, result)
    })
}

impl Handler<SetConfigurationRequest> for NodeSupervisor {
    type Result = ResponseFuture<SetConfigurationResponse>;

    fn handle(&mut self, req: SetConfigurationRequest, ctx: &mut Context<Self>) -> Self::Result {
        let SetConfigurationRequest { reqid, config } = req;
        let (tx, rx) = oneshot::channel();
        match deploy::plan(config, self.running(), &self.host_facts()) {
            Plan::Refuse(error) => {
                let mut r = ApiResult::failure(reqid.clone(), self.name(), error);
                r.refused = true;
                let _ = tx.send(r);
            }
            Plan::Unchanged(config) => {
                // A configuration being checked is no longer wanted.
                self.check_seq += 1;
                tracing::info!(id = %config.id, "configuration unchanged; nothing restarted");
                let d = PendingDeploy::new(&config, self.name(), Some(reqid.clone()), Some(tx));
                self.deploy = Some(d.all_running());
                self.finish_deploy_if_complete();
            }
            Plan::Apply(config) if self.checks() => {
                self.check_then_apply(config, reqid.clone(), tx, ctx)
            }
            Plan::Apply(config) => self.apply(config, reqid.clone(), tx, ctx),
        }
        answered_later(rx, reqid, self.cfg.name.clone(), |reqid, result| {
            SetConfigurationResponse { reqid, result }
        })
    }
}

impl Handler<GetNodesRequest> for NodeSupervisor {
    type Result = MessageResult<GetNodesRequest>;

    fn handle(&mut self, req: GetNodesRequest, _: &mut Context<Self>) -> Self::Result {
        let mut result = ApiResult::ok(req.reqid.clone(), &self.cfg.name);
        result.data = Some(ResultData::NodeStatuses(self.statuses()));
        MessageResult(GetNodesResponse {
            reqid: req.reqid,
            result,
        })
    }
}

impl Handler<AgentWelcomeRequest> for NodeSupervisor {
    type Result = MessageResult<AgentWelcomeRequest>;

    fn handle(&mut self, req: AgentWelcomeRequest, _: &mut Context<Self>) -> Self::Result {
        if !self.welcomed {
            tracing::info!("welcomed by a controller");
        }
        self.welcomed = true;
        MessageResult(AgentWelcomeResponse {
            result: ApiResult::ok(req.reqid.clone(), &self.cfg.name),
            reqid: req.reqid,
        })
    }
}

impl Handler<AgentStandbyRequest> for NodeSupervisor {
    type Result = ResponseFuture<AgentStandbyResponse>;

    fn handle(&mut self, req: AgentStandbyRequest, ctx: &mut Context<Self>) -> Self::Result {
        let name = self.cfg.name.clone();
        self.supersede_deploy("agent_standby");
        self.drain_all(ctx);
        self.config = None;
        let cleared = self.writer.send(ClearConfig);
        let drained = self.when_drained(ctx);
        self.notify_log(
            "",
            "standing by: every node stopped, configuration cleared".to_owned(),
        );
        let reqid = req.reqid;
        Box::pin(async move {
            let cleared = cleared.await.unwrap_or_else(|e| Err(e.to_string()));
            let result = match (drained.await, cleared) {
                (Ok(()), Ok(())) => ApiResult::ok(reqid.clone(), &name),
                (Ok(()), Err(e)) => ApiResult::failure(
                    reqid.clone(),
                    &name,
                    format!("nodes stopped, but the persisted configuration stays: {e}"),
                ),
                (Err(_), _) => ApiResult::failure(reqid.clone(), &name, "agent is shutting down"),
            };
            AgentStandbyResponse { reqid, result }
        })
    }
}

impl Handler<RestartRequest> for NodeSupervisor {
    type Result = ResponseFuture<RestartResponse>;

    fn handle(&mut self, req: RestartRequest, ctx: &mut Context<Self>) -> Self::Result {
        let RestartRequest { reqid, nodes } = req;
        let (tx, rx) = oneshot::channel();
        // Names this agent does not run are ignored; none means all.
        let names: Vec<String> = self
            .slots
            .keys()
            .filter(|n| nodes.is_empty() || nodes.contains(n))
            .cloned()
            .collect();
        if self.shutting_down {
            let _ = tx.send(ApiResult::failure(
                reqid.clone(),
                self.name(),
                "agent is shutting down",
            ));
        } else if names.is_empty() {
            let mut result = ApiResult::ok(reqid.clone(), self.name());
            result.data = Some(ResultData::Results(Vec::new()));
            let _ = tx.send(result);
        } else {
            tracing::info!(nodes = ?names, "restarting");
            let id = self
                .config
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            let deadline = self.readiness_deadline(ctx);
            self.restarting.push(
                PendingDeploy::restart(&names, &id, reqid.clone(), tx).with_deadline(deadline),
            );
            for name in &names {
                self.restart_slot(name, ctx);
            }
            self.launch_ready(ctx);
        }
        answered_later(rx, reqid, self.cfg.name.clone(), |reqid, result| {
            RestartResponse { reqid, result }
        })
    }
}

impl Handler<Shutdown> for NodeSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        self.supersede_deploy("agent shutdown");
        self.drain_all(ctx);
        let records = self.pids_now();
        let pids = self.writer.send(records);
        let drained = self.when_drained(ctx);
        let last_sweep = self.last_sweep();
        Box::pin(async move {
            let _ = drained.await;
            let _ = pids.await;
            last_sweep.await;
        })
    }
}

impl Handler<NodeReport> for NodeSupervisor {
    type Result = ();

    fn handle(&mut self, report: NodeReport, ctx: &mut Context<Self>) {
        self.on_report(report, ctx);
    }
}

#[cfg(test)]
mod tests;
