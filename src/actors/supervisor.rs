//! `NodeSupervisor`: owns the running configuration and the desired state of
//! every local node. It validates and applies configurations, starts one
//! `NodeProcess` per launch, applies the restart policy (backoff, giving up),
//! answers `get_nodes` from what it already knows (figures are sampled in the
//! background), and emits every notification about nodes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::actors::node::{NodeEvent, NodeProcess, NodeReport, NodeTiming, ProcId, StopNode};
use crate::api::events::{
    AgentStandbyRequest, AgentStandbyResponse, AgentWelcomeRequest, AgentWelcomeResponse,
    GetNodesRequest, GetNodesResponse, Notification, NotifyChange, NotifyError, NotifyLog,
    SetConfigurationRequest, SetConfigurationResponse,
};
use crate::api::types::{
    ApiResult, Configuration, MgmtRole, Node, NodeStatus, Port, ReqId, ResultData, Role, State,
};
use crate::config::{ClusterBackend, Config};
use crate::layout;
use crate::process::{self, Sample, SpawnSpec};
use crate::state::{self, Loaded, PidRecord, StateDir, StateLock};
use crate::validate::{self, HostFacts};

/// The file Zeek loads from a node's working directory.
const LAYOUT_FILE: &str = "cluster-layout.zeek";
/// The configuration's layout, kept in the state directory (no node
/// directory can collide with it there) and linked into every node's.
const SHARED_LAYOUT_FILE: &str = "cluster-layout.zeek";
/// Lines of a failed node's stderr quoted in its result.
const STDERR_TAIL_LINES: usize = 20;
/// Requests queued before senders wait (the tracker's `send`s).
const MAILBOX_CAPACITY: usize = 1 << 16;
/// Delay before the pids file is rewritten after a change (batches launches).
const PIDS_FLUSH_DELAY: Duration = Duration::from_millis(100);

/// Sent by the agent on shutdown: stop every node (the persisted
/// configuration stays) and answer once they have all exited.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// One local node of the running configuration.
struct Slot {
    /// The node's record; its `state` is the current state.
    node: Node,
    proc: Option<(ProcId, Addr<NodeProcess>)>,
    pid: Option<u32>,
    started_at: Option<Instant>,
    /// Revivals in a row without a long enough run.
    attempts: u32,
    /// Revivals since the configuration was applied.
    restarts: u64,
    revival: Option<SpawnHandle>,
    /// Set once this launch counted as running.
    has_run: bool,
    /// The last background sample, with the pid it was taken of (a
    /// revived node's new process has none until the next one).
    sample: Option<(u32, Sample)>,
}

/// A process of an earlier configuration, being stopped.
struct Draining {
    node: Node,
}

/// What to do once every draining process has exited.
enum AfterDrain {
    Answer(oneshot::Sender<()>),
}

/// A `set_configuration` waiting for its nodes.
struct PendingDeploy {
    reqid: Option<ReqId>,
    config_id: String,
    responder: Option<oneshot::Sender<ApiResult>>,
    results: BTreeMap<String, Option<Result<(), String>>>,
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
    config: Option<Configuration>,
    layout: Arc<str>,
    slots: BTreeMap<String, Slot>,
    draining: HashMap<ProcId, Draining>,
    after_drain: Vec<AfterDrain>,
    deploy: Option<PendingDeploy>,
    backend: Backend,
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
    /// The state directory's lock, held for the supervisor's life.
    _lock: Option<StateLock>,
}

impl NodeSupervisor {
    pub fn new(
        cfg: Arc<Config>,
        listen_port: Option<u16>,
        notifier: Recipient<Notification>,
    ) -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpus = cpus.max(online_cpus());
        NodeSupervisor {
            state: StateDir::new(cfg.state_dir.clone()),
            cfg,
            listen_port,
            notifier,
            config: None,
            layout: Arc::from(""),
            slots: BTreeMap::new(),
            draining: HashMap::new(),
            after_drain: Vec::new(),
            deploy: None,
            backend: Backend::Detecting,
            next_proc: 0,
            own_sample: None,
            sampled_at: None,
            started_at: Instant::now(),
            welcomed: false,
            shutting_down: false,
            pids_dirty: false,
            cpus,
            own_pid: std::process::id(),
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
        tracing::error!(node, "{msg}");
        self.notify(Notification::Error(NotifyError {
            instance: self.name().to_owned(),
            msg,
            node: node.to_owned(),
        }));
    }

    fn notify_log(&self, node: &str, msg: String) {
        tracing::info!(node, "{msg}");
        self.notify(Notification::Log(NotifyLog {
            instance: self.name().to_owned(),
            msg,
            node: node.to_owned(),
        }));
    }

    fn notify_change(&self, node: &Node, old: State) {
        if old == node.state {
            return;
        }
        tracing::info!(node = %node.name, old = %old, new = %node.state, "node state");
        self.notify(Notification::Change(NotifyChange {
            instance: self.name().to_owned(),
            node: node.clone(),
            old,
            new: node.state,
        }));
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
        }
    }

    /// Replaces the running configuration: stops every current process and
    /// creates PENDING slots for the new local nodes (launched once the old
    /// ones have exited).
    fn install(&mut self, config: Configuration, ctx: &mut Context<Self>) {
        self.drain_all(ctx);
        self.layout = Arc::from(layout::cluster_layout(&config));
        self.write_shared_layout();
        for node in config.nodes.iter().filter(|n| n.instance == self.cfg.name) {
            let mut node = node.clone();
            node.state = State::Pending;
            self.slots.insert(
                node.name.clone(),
                Slot {
                    node,
                    proc: None,
                    pid: None,
                    started_at: None,
                    attempts: 0,
                    restarts: 0,
                    revival: None,
                    has_run: false,
                    sample: None,
                },
            );
        }
        self.config = Some(config);
    }

    /// Stops every process of the current slots and forgets the slots.
    fn drain_all(&mut self, ctx: &mut Context<Self>) {
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

    fn supersede_deploy(&mut self, by: &str) {
        if let Some(d) = self.deploy.take() {
            if let (Some(tx), Some(reqid)) = (d.responder, d.reqid) {
                let _ = tx.send(ApiResult::failure(
                    reqid,
                    &self.cfg.name,
                    format!("configuration {:?} was superseded by {by}", d.config_id),
                ));
            }
        }
    }

    fn launch_ready(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || !self.draining.is_empty() {
            return;
        }
        let Backend::Known(backend) = self.backend else {
            return;
        };
        let mut order: Vec<(u8, String)> = self
            .slots
            .values()
            .map(|s| (s.node.role.launch_rank(), s.node.name.clone()))
            .collect();
        order.sort();
        let mut blocking_rank = None;
        for (rank, name) in order {
            if blocking_rank.is_some_and(|r| r < rank) {
                break;
            }
            let Some(slot) = self.slots.get(&name) else {
                continue;
            };
            let waiting = slot.node.state == State::Pending;
            if waiting && slot.proc.is_none() && slot.revival.is_none() {
                self.launch(&name, backend, ctx);
            }
            if self.cfg.port_checks
                && waiting
                && self
                    .slots
                    .get(&name)
                    .is_some_and(|s| layout::binds_port(&s.node, backend))
            {
                blocking_rank = Some(rank);
            }
        }
    }

    fn launch(&mut self, name: &str, backend: Option<&'static str>, ctx: &mut Context<Self>) {
        let dir = self.cfg.cluster_dir.join(name);
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let node = slot.node.clone();
        let host = self
            .config
            .as_ref()
            .and_then(|c| c.instances.iter().find(|i| i.name == node.instance))
            .map(|i| i.host.0);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| self.place_layout(&dir)) {
            self.launch_failed(name, format!("cannot prepare {}: {e}", dir.display()));
            return;
        }
        let mut env: Vec<(String, String)> = node
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("CLUSTER_NODE".to_owned(), node.name.clone()));
        let spec = SpawnSpec {
            program: self.cfg.zeek_binary.clone(),
            args: layout::node_args(&node, backend),
            cwd: dir,
            env,
            cpu: node.cpu_affinity.and_then(|c| usize::try_from(c).ok()),
        };
        let timing = NodeTiming {
            settle: self.cfg.settle_time,
            port_check: match (self.cfg.port_checks, node.p, host) {
                (true, Some(p), Some(h)) if layout::binds_port(&node, backend) => {
                    Some(SocketAddr::new(h, p.number))
                }
                _ => None,
            },
            stop_grace: self.cfg.stop_grace,
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
        }
        self.set_state(name, State::Pending);
    }

    /// Puts the configuration's `cluster-layout.zeek` into a node's
    /// directory: a hard link to the one written for the configuration
    /// (1000 nodes would otherwise write 1000 copies of a large file), or a
    /// copy where links are not possible.
    fn place_layout(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let target = dir.join(LAYOUT_FILE);
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let shared = self.cfg.state_dir.join(SHARED_LAYOUT_FILE);
        if std::fs::hard_link(&shared, &target).is_ok() {
            return Ok(());
        }
        std::fs::write(&target, self.layout.as_bytes())
    }

    /// Writes the configuration's layout once, for `place_layout` to link.
    fn write_shared_layout(&self) {
        let shared = self.cfg.state_dir.join(SHARED_LAYOUT_FILE);
        let tmp = self
            .cfg
            .state_dir
            .join(format!(".{SHARED_LAYOUT_FILE}.tmp"));
        let written = std::fs::create_dir_all(&self.cfg.state_dir)
            .and_then(|()| std::fs::write(&tmp, self.layout.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &shared));
        if let Err(e) = written {
            // Each node then gets a copy of its own.
            tracing::warn!("cannot write {}: {e}", shared.display());
            let _ = std::fs::remove_file(&shared);
        }
    }

    fn launch_failed(&mut self, name: &str, error: String) {
        if let Some(slot) = self.slots.get_mut(name) {
            slot.proc = None;
            slot.pid = None;
        }
        self.set_state(name, State::Failed);
        self.notify_error(name, format!("node {name} failed to launch: {error}"));
        self.record(name, Err(error));
    }

    fn record(&mut self, name: &str, outcome: Result<(), String>) {
        let Some(d) = &mut self.deploy else { return };
        if let Some(r @ None) = d.results.get_mut(name) {
            *r = Some(outcome);
        }
        if d.results.values().all(Option::is_some) {
            self.finish_deploy();
        }
    }

    fn finish_deploy(&mut self) {
        let Some(d) = self.deploy.take() else { return };
        let failed: Vec<&String> = d
            .results
            .iter()
            .filter(|(_, r)| !matches!(r, Some(Ok(()))))
            .map(|(n, _)| n)
            .collect();
        let summary = if failed.is_empty() {
            format!(
                "configuration {:?} applied: {} nodes running",
                d.config_id,
                d.results.len()
            )
        } else {
            format!(
                "configuration {:?} applied: {} of {} nodes failed to launch ({})",
                d.config_id,
                failed.len(),
                d.results.len(),
                failed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let error = if failed.is_empty() {
            String::new()
        } else {
            summary.clone()
        };
        self.notify_log("", summary);
        let (Some(tx), Some(reqid)) = (d.responder, d.reqid) else {
            return;
        };
        let per_node = d
            .results
            .into_iter()
            .map(|(node, r)| {
                let mut res = match r {
                    Some(Ok(())) => ApiResult::ok(reqid.clone(), &self.cfg.name),
                    Some(Err(e)) => ApiResult::failure(reqid.clone(), &self.cfg.name, e),
                    None => ApiResult::failure(reqid.clone(), &self.cfg.name, "no outcome"),
                };
                res.node = Some(node);
                res
            })
            .collect();
        let mut result = ApiResult::ok(reqid, &self.cfg.name);
        result.success = error.is_empty();
        result.error = error;
        result.data = Some(ResultData::Results(per_node));
        let _ = tx.send(result);
    }

    fn on_drained(&mut self, ctx: &mut Context<Self>) {
        if !self.draining.is_empty() {
            return;
        }
        for a in std::mem::take(&mut self.after_drain) {
            match a {
                AfterDrain::Answer(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        self.launch_ready(ctx);
    }

    fn on_exit(&mut self, name: &str, id: ProcId, status: String, ctx: &mut Context<Self>) {
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
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if slot.proc.as_ref().map(|(p, _)| *p) != Some(id) {
            return;
        }
        let ran = slot.started_at.map(|t| t.elapsed()).unwrap_or_default();
        let was_running = slot.has_run;
        slot.proc = None;
        slot.pid = None;
        slot.started_at = None;
        self.mark_pids_dirty(ctx);
        let tail = process::tail(
            &self.cfg.cluster_dir.join(name).join("stderr"),
            STDERR_TAIL_LINES,
        );
        let mut msg = format!("node {name} {status}");
        if !was_running {
            msg.push_str(" while starting");
        }
        if !tail.is_empty() {
            msg.push_str(&format!("; stderr:\n{tail}"));
        }
        self.set_state(name, State::Crashed);
        self.notify_error(name, msg.clone());
        self.record(name, Err(msg));
        if self.shutting_down {
            return;
        }
        let (max, base, cap, reset) = (
            self.cfg.max_revivals,
            self.cfg.revive_delay,
            self.cfg.revive_max_delay,
            self.cfg.revive_reset_after,
        );
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if ran >= reset {
            slot.attempts = 0;
        }
        if slot.attempts >= max {
            self.set_state(name, State::Failed);
            self.notify_error(
                name,
                format!("node {name} given up after {max} failed revivals in a row"),
            );
            return;
        }
        slot.attempts += 1;
        let delay = revival_delay(slot.attempts, base, cap);
        let owned = name.to_owned();
        slot.revival = Some(ctx.run_later(delay, move |act, ctx| act.revive(&owned, ctx)));
        tracing::info!(
            node = name,
            attempt = slot.attempts,
            ?delay,
            "revival scheduled"
        );
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

    fn mark_pids_dirty(&mut self, ctx: &mut Context<Self>) {
        if self.pids_dirty {
            return;
        }
        self.pids_dirty = true;
        ctx.run_later(PIDS_FLUSH_DELAY, |act, _| act.flush_pids());
    }

    fn flush_pids(&mut self) {
        self.pids_dirty = false;
        let program = self.cfg.zeek_binary.to_string_lossy().into_owned();
        let records: Vec<PidRecord> = self
            .slots
            .values()
            .filter_map(|s| {
                let pid = i32::try_from(s.pid?).ok()?;
                Some(PidRecord {
                    pid,
                    node: s.node.name.clone(),
                    program: program.clone(),
                })
            })
            .collect();
        if let Err(e) = self.state.save_pids(&records) {
            tracing::warn!("cannot record node pids: {e}");
        }
    }

    fn statuses(&self) -> Vec<NodeStatus> {
        let me = self.own_pid;
        let own = self.own_sample.as_ref();
        // As of the last sample; a process started since has none yet.
        let uptime = |since: Instant| {
            self.sampled_at
                .and_then(|at| at.checked_duration_since(since))
                .map(|d| d.as_secs_f64())
        };
        let agent = NodeStatus {
            node: self.cfg.name.clone(),
            state: State::Running,
            mgmt_role: MgmtRole::Agent,
            cluster_role: Role::None,
            pid: Some(i64::from(me)),
            p: self.listen_port.map(Port::tcp),
            cpu_percent: own.map(|s| s.cpu_percent),
            rss_bytes: own.map(|s| s.rss_bytes),
            restarts: None,
            uptime_secs: uptime(self.started_at),
        };
        let mut out = Vec::with_capacity(self.slots.len() + 1);
        for slot in self.slots.values() {
            let sample = match (slot.pid, &slot.sample) {
                (Some(pid), Some((of, s))) if pid == *of => Some(s),
                _ => None,
            };
            out.push(NodeStatus {
                node: slot.node.name.clone(),
                state: slot.node.state,
                mgmt_role: MgmtRole::None,
                cluster_role: slot.node.role,
                pid: slot.pid.map(i64::from),
                p: slot.node.p,
                cpu_percent: sample.map(|s| s.cpu_percent),
                rss_bytes: sample.map(|s| s.rss_bytes),
                restarts: Some(slot.restarts),
                uptime_secs: slot.started_at.and_then(uptime),
            });
        }
        // The slots come sorted by name; only the agent's own entry, first,
        // needs its place.
        let at = out.partition_point(|n| n.node < agent.node);
        out.insert(at, agent);
        out
    }

    fn sample(&mut self, ctx: &mut Context<Self>) {
        let mut pids: Vec<u32> = self.slots.values().filter_map(|s| s.pid).collect();
        pids.push(std::process::id());
        ctx.spawn(
            process::sample(pids)
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

    /// First start: end leftovers of an earlier run, find the backend, then
    /// launch whatever configuration is installed by then.
    fn prepare(&mut self, ctx: &mut Context<Self>) {
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
                self.deploy = Some(pending_for(&c, &self.cfg.name, None, None));
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
        let binary = self.cfg.zeek_binary.clone();
        let timeout = self.cfg.version_timeout;
        let work = async move {
            let ended = if leftovers.is_empty() {
                Vec::new()
            } else {
                run_blocking(move || state::end_leftovers(&leftovers, grace))
                    .await
                    .unwrap_or_default()
            };
            (ended, detect_backend(setting, binary, timeout).await)
        };
        ctx.spawn(work.into_actor(self).map(|(ended, backend), act, ctx| {
            for r in ended {
                act.notify_log(
                    &r.node,
                    format!("ended leftover process {} of node {}", r.pid, r.node),
                );
            }
            tracing::info!(backend = backend.unwrap_or("none"), "cluster backend");
            act.backend = Backend::Known(backend);
            if act.deploy.as_ref().is_some_and(|d| d.results.is_empty()) {
                act.finish_deploy();
            }
            act.launch_ready(ctx);
        }));
    }
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1)
}

fn pending_for(
    config: &Configuration,
    agent: &str,
    reqid: Option<ReqId>,
    responder: Option<oneshot::Sender<ApiResult>>,
) -> PendingDeploy {
    PendingDeploy {
        reqid,
        config_id: config.id.clone(),
        responder,
        results: config
            .nodes
            .iter()
            .filter(|n| n.instance == agent)
            .map(|n| (n.name.clone(), None))
            .collect(),
    }
}

/// The delay before revival number `attempt` (1-based): none for the first
/// (as Zeek's Supervisor restarts a first crash at once), then the base
/// delay, doubled every third attempt (0, 1, 1, 2, 2, 2, 4, …), capped.
pub fn revival_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let Some(later) = attempt.checked_sub(2) else {
        return Duration::ZERO;
    };
    let doublings = ((later + 1) / 3).min(30);
    base.saturating_mul(1 << doublings).min(cap)
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.ok()
}

/// The backend script for the configured setting; `auto` asks
/// `<zeek-binary> --version` (with a timeout, killed when it passes).
async fn detect_backend(
    setting: ClusterBackend,
    binary: PathBuf,
    timeout: Duration,
) -> Option<&'static str> {
    match setting {
        ClusterBackend::Zeromq => Some(layout::ZEROMQ_BACKEND),
        ClusterBackend::Broker => Some(layout::BROKER_BACKEND),
        ClusterBackend::None => None,
        ClusterBackend::Auto => {
            let out = tokio::process::Command::new(&binary)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(timeout, out).await {
                Ok(Ok(o)) => layout::backend_for_version(&String::from_utf8_lossy(&o.stdout)),
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
    }
}

impl Actor for NodeSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Requests arrive with `send` from the tracker: many may be pending.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.sample(ctx);
        ctx.run_interval(self.cfg.sample_interval, |act, ctx| act.sample(ctx));
        self.prepare(ctx);
    }
}

impl Handler<SetConfigurationRequest> for NodeSupervisor {
    type Result = ResponseFuture<SetConfigurationResponse>;

    fn handle(&mut self, req: SetConfigurationRequest, ctx: &mut Context<Self>) -> Self::Result {
        let SetConfigurationRequest { reqid, mut config } = req;
        let name = self.cfg.name.clone();
        let answer = |result: ApiResult| -> Self::Result {
            let reqid = result.reqid.clone();
            Box::pin(async move { SetConfigurationResponse { reqid, result } })
        };
        if let Err(problems) = validate::validate(&config, &self.host_facts()) {
            let msg = format!("invalid configuration: {}", problems.join("; "));
            return answer(ApiResult::failure(reqid, &name, msg));
        }
        if self.shutting_down {
            return answer(ApiResult::failure(reqid, &name, "agent is shutting down"));
        }
        if config.id.is_empty() {
            let same_content = self.config.as_ref().is_some_and(|running| {
                let mut probe = config.clone();
                probe.id = running.id.clone();
                probe.same_cluster(running)
            });
            config.id = match (&self.config, same_content) {
                (Some(running), true) => running.id.clone(),
                _ => uuid::Uuid::new_v4().to_string(),
            };
        }
        let unchanged = self
            .config
            .as_ref()
            .is_some_and(|c| c.same_cluster(&config))
            && self.draining.is_empty()
            && self.deploy.is_none()
            && self.slots.values().all(|s| s.node.state == State::Running);
        if unchanged {
            tracing::info!(id = %config.id, "configuration unchanged; nothing restarted");
            let mut d = pending_for(&config, &name, Some(reqid.clone()), None);
            for r in d.results.values_mut() {
                *r = Some(Ok(()));
            }
            let (tx, rx) = oneshot::channel();
            d.responder = Some(tx);
            self.deploy = Some(d);
            self.finish_deploy();
            return Box::pin(async move {
                let result = rx.await.unwrap_or_else(|_| {
                    ApiResult::failure(reqid.clone(), &name, "agent is shutting down")
                });
                SetConfigurationResponse { reqid, result }
            });
        }
        if let Err(e) = self.state.save_config(&config) {
            let msg = format!("cannot persist the configuration, nothing changed: {e}");
            tracing::error!("{msg}");
            return answer(ApiResult::failure(reqid, &name, msg));
        }
        self.supersede_deploy(&format!("configuration {:?}", config.id));
        let (tx, rx) = oneshot::channel();
        self.deploy = Some(pending_for(&config, &name, Some(reqid.clone()), Some(tx)));
        tracing::info!(id = %config.id, nodes = config.nodes.len(), "applying configuration");
        self.install(config, ctx);
        if self.deploy.as_ref().is_some_and(|d| d.results.is_empty()) {
            self.finish_deploy();
        }
        self.launch_ready(ctx);
        Box::pin(async move {
            let result = rx.await.unwrap_or_else(|_| {
                ApiResult::failure(reqid.clone(), &name, "agent is shutting down")
            });
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
        let cleared = self.state.clear_config();
        let (tx, rx) = oneshot::channel();
        self.after_drain.push(AfterDrain::Answer(tx));
        self.notify_log(
            "",
            "standing by: every node stopped, configuration cleared".to_owned(),
        );
        self.on_drained(ctx);
        let reqid = req.reqid;
        Box::pin(async move {
            let result = match (rx.await, cleared) {
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

impl Handler<Shutdown> for NodeSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        self.supersede_deploy("agent shutdown");
        self.drain_all(ctx);
        self.flush_pids();
        let (tx, rx) = oneshot::channel();
        self.after_drain.push(AfterDrain::Answer(tx));
        self.on_drained(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<NodeReport> for NodeSupervisor {
    type Result = ();

    fn handle(&mut self, report: NodeReport, ctx: &mut Context<Self>) {
        let NodeReport {
            node,
            proc_id,
            event,
        } = report;
        let current = self
            .slots
            .get(&node)
            .and_then(|s| s.proc.as_ref())
            .is_some_and(|(p, _)| *p == proc_id);
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
            NodeEvent::Running => {
                if !current {
                    return;
                }
                let revived = self.slots.get_mut(&node).map(|s| {
                    s.has_run = true;
                    s.restarts > 0
                });
                self.set_state(&node, State::Running);
                if revived == Some(true) {
                    self.notify_log(&node, format!("node {node} revived"));
                }
                self.record(&node, Ok(()));
                if self.cfg.port_checks {
                    self.launch_ready(ctx);
                }
            }
            NodeEvent::Exited { status, .. } => self.on_exit(&node, proc_id, status, ctx),
        }
    }
}

#[cfg(test)]
mod tests;
