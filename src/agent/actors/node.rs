//! `NodeProcess`: one actor per OS process of a node. It spawns the process
//! (from the long-lived spawner thread), tells the supervisor when it has
//! started, when it counts as running and when it has exited, and stops it
//! on request: SIGTERM to its process group, SIGKILL after the grace period.
//! It never restarts anything; the restart policy is the supervisor's.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::agent::channel::actor::{
    ChannelFact, ChannelReport, ChannelSpec, NodeChannel, NodeCommand, NodeCommandError,
};
use crate::agent::channel::{self, Answer, Facts, Join, Path, Rule, Timings, Verdict};
use crate::agent::process::{self, SpawnSpec};

/// Identifies one launch of one node; reports of an older launch are told
/// apart from the current one by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId(pub u64);

/// What happened to a node process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// exec succeeded; the process has this pid (and process group).
    Spawned {
        pid: u32,
        /// Where this launch's lines begin in the output files.
        output_start: process::OutputStart,
    },
    /// The process could not be started (missing or non-executable program…).
    SpawnFailed { error: String },
    /// Up, by `rule` (see `channel::decide`).
    Running { rule: Rule },
    /// The node's own channel on `port` has answered a ping: a route for a
    /// logging sibling can go through it.
    ChannelUp { port: u16 },
    /// A logging node wants a route (none yet, or its route has ended).
    NeedsRoute,
    /// A running node has joined its cluster, or has not (or no longer):
    /// sent at the first verdict and at every change.
    Join(Join),
    /// The process has exited and been reaped. `requested`: after a
    /// `StopNode`; `collided`: it could not bind its channel port.
    Exited {
        status: process::Exit,
        requested: bool,
        collided: bool,
    },
}

/// Sent by a `NodeProcess` to the `NodeSupervisor` for every fact above.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct NodeReport {
    pub node: String,
    pub proc_id: ProcId,
    pub event: NodeEvent,
}

/// Sent by the supervisor: stop the process (SIGTERM, SIGKILL after the
/// grace period). The outcome arrives as `NodeEvent::Exited`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StopNode;

/// Sent by the supervisor to a logging node: reach it through this
/// sibling's server.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RouteVia {
    pub port: u16,
}

/// How a `NodeProcess` decides that its node runs.
#[derive(Debug, Clone)]
pub struct NodeTiming {
    /// Alive this long after exec counts as running (zero: at once).
    pub settle: Duration,
    /// The address that must accept a connection: with port checks on, the
    /// node's own port; for a ZeroMQ logging node, its `$p` always.
    pub port_check: Option<SocketAddr>,
    /// SIGTERM to SIGKILL.
    pub stop_grace: Duration,
    /// How the node can be reached; `Path::None` is the settle-time rule.
    pub path: Path,
    /// The port of the node's own channel server.
    pub channel_port: Option<u16>,
    pub channel: Arc<Timings>,
    /// Largest message taken from a channel.
    pub max_message: usize,
    /// Who the node must see to have joined: the manager's name; empty
    /// for the manager itself.
    pub join_needs: Vec<String>,
    /// Where the node reaches its cluster (the manager's broker, or the
    /// manager), for the operator when it does not.
    pub join_hint: String,
}

impl NodeTiming {
    /// Today's rule alone, no channel.
    pub fn settle_only(
        settle: Duration,
        port_check: Option<SocketAddr>,
        stop_grace: Duration,
    ) -> Self {
        NodeTiming {
            settle,
            port_check,
            stop_grace,
            path: Path::None,
            channel_port: None,
            channel: Arc::new(crate::agent::config::Config::default().channel()),
            max_message: crate::protocol::codec::DEFAULT_MAX_FRAME_BYTES,
            join_needs: Vec::new(),
            join_hint: String::new(),
        }
    }
}

const PORT_POLL: Duration = Duration::from_millis(50);

pub struct NodeProcess {
    node: String,
    proc_id: ProcId,
    spec: Option<SpawnSpec>,
    timing: NodeTiming,
    report: Recipient<NodeReport>,
    pid: Option<u32>,
    stop_requested: bool,
    exited: bool,
    /// Length of the stderr file before this launch.
    stderr_start: u64,
    spawned_at: Option<Instant>,
    facts: Facts,
    /// The port check has accepted once.
    port_accepted: bool,
    probing: bool,
    running: bool,
    fallen_back: bool,
    tick: Option<SpawnHandle>,
    channel: Option<Addr<NodeChannel>>,
    route: Option<Addr<NodeChannel>>,
    peers: BTreeSet<String>,
    /// The latest valid ping answer (the first, or a join check's).
    answered_at: Option<Instant>,
    /// The join verdict last reported.
    join: Option<Join>,
    /// A join check's ping is out.
    checking_join: bool,
    /// The working directory.
    dir: Option<std::path::PathBuf>,
}

impl NodeProcess {
    pub fn new(
        node: String,
        proc_id: ProcId,
        spec: SpawnSpec,
        timing: NodeTiming,
        report: Recipient<NodeReport>,
    ) -> Self {
        NodeProcess {
            node,
            proc_id,
            spec: Some(spec),
            timing,
            report,
            pid: None,
            stop_requested: false,
            exited: false,
            stderr_start: 0,
            spawned_at: None,
            facts: Facts::default(),
            port_accepted: false,
            probing: false,
            running: false,
            fallen_back: false,
            tick: None,
            channel: None,
            route: None,
            peers: BTreeSet::new(),
            answered_at: None,
            join: None,
            checking_join: false,
            dir: None,
        }
    }

    fn tell(&self, event: NodeEvent) {
        self.report.do_send(NodeReport {
            node: self.node.clone(),
            proc_id: self.proc_id,
            event,
        });
    }

    fn on_spawned(&mut self, child: process::NodeChild, ctx: &mut Context<Self>) {
        let pid = child.id();
        self.pid = Some(pid);
        let output_start = child.output_start();
        self.stderr_start = output_start.stderr;
        self.spawned_at = Some(Instant::now());
        self.tell(NodeEvent::Spawned { pid, output_start });
        let stderr = self
            .spec_dir()
            .map(|d| d.join("stderr"))
            .unwrap_or_default();
        let (from, port) = (self.stderr_start, self.timing.channel_port);
        ctx.spawn(
            async move {
                let status = process::Exit::from(process::wait_exit(child).await);
                let collided = match (port, &status) {
                    (Some(port), process::Exit::Code(1)) => {
                        tokio::task::spawn_blocking(move || {
                            channel::collided(&process::read_from(&stderr, from), port)
                        })
                        .await
                        .unwrap_or(false)
                    }
                    _ => false,
                };
                (status, collided)
            }
            .into_actor(self)
            .map(|(status, collided), act, ctx| {
                act.exited = true;
                act.close_channels();
                act.tell(NodeEvent::Exited {
                    status,
                    requested: act.stop_requested,
                    collided: collided && !act.running,
                });
                ctx.stop();
            }),
        );
        if self.stop_requested {
            self.terminate(ctx);
            return;
        }
        match self.timing.path {
            Path::None => {
                if self.timing.settle.is_zero() && self.timing.port_check.is_none() {
                    self.set_running(Rule::Settle);
                } else {
                    ctx.run_later(self.timing.settle, |act, ctx| act.check_running(ctx));
                }
            }
            path => {
                if path == Path::Own {
                    self.open_channel(ctx);
                }
                if path == Path::Routed {
                    self.tell(NodeEvent::NeedsRoute);
                }
                let every = self.timing.channel.connect_interval;
                self.tick = Some(ctx.run_interval(every, |act, ctx| act.evaluate(ctx)));
                self.evaluate(ctx);
            }
        }
    }

    fn spec_dir(&self) -> Option<std::path::PathBuf> {
        self.dir.clone()
    }

    fn open_channel(&mut self, ctx: &mut Context<Self>) {
        let (Some(port), Some(pid)) = (self.timing.channel_port, self.pid) else {
            return;
        };
        self.channel = Some(self.start_channel(port, pid, false, ctx));
    }

    fn start_channel(
        &self,
        port: u16,
        pid: u32,
        route: bool,
        ctx: &mut Context<Self>,
    ) -> Addr<NodeChannel> {
        NodeChannel::new(
            ChannelSpec {
                target: self.node.clone(),
                port,
                pid,
                route,
                timings: Arc::clone(&self.timing.channel),
                max_message: self.timing.max_message,
            },
            ctx.address().recipient(),
        )
        .start()
    }

    fn close_channels(&mut self) {
        for ch in [self.channel.take(), self.route.take()]
            .into_iter()
            .flatten()
        {
            ch.do_send(crate::agent::channel::actor::CloseChannel);
        }
    }

    /// Applies the readiness decision to what is known now.
    fn evaluate(&mut self, ctx: &mut Context<Self>) {
        if self.exited || self.stop_requested || self.running {
            self.stop_tick(ctx);
            return;
        }
        let Some(spawned) = self.spawned_at else {
            return;
        };
        let path = self.timing.path;
        self.facts.elapsed = spawned.elapsed();
        // The port is probed where it decides: a logging node's `$p`
        // (its accept opens the routed grace), or today's rule after a
        // fallback.
        let probe = match path {
            Path::Routed | Path::PortOnly => !self.port_accepted,
            Path::Own => self.fallen_back && !self.port_accepted,
            Path::None => false,
        };
        if probe {
            self.probe_port(ctx);
        }
        self.facts.settled = self.facts.elapsed >= self.timing.settle
            && (self.timing.port_check.is_none() || self.port_accepted);
        match channel::decide(path, &self.facts, &self.timing.channel) {
            Verdict::Running(rule) => {
                self.set_running(rule);
                if self.reports_join() {
                    self.start_join_checks(ctx);
                }
            }
            Verdict::Wait { fallen_back: true } if !self.fallen_back => {
                self.fallen_back = true;
                tracing::warn!(node = %self.node, "no node channel within {} s", channel::secs(self.timing.channel.channel_timeout));
                self.close_channels();
            }
            Verdict::Wait { .. } => {}
        }
    }

    fn stop_tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.tick.take() {
            ctx.cancel_future(h);
        }
    }

    fn probe_port(&mut self, ctx: &mut Context<Self>) {
        let Some(addr) = self.timing.port_check else {
            return;
        };
        if self.probing {
            return;
        }
        self.probing = true;
        let attempt = tokio::time::timeout(PORT_POLL * 4, tokio::net::TcpStream::connect(addr));
        ctx.spawn(attempt.into_actor(self).map(|res, act, ctx| {
            act.probing = false;
            if matches!(res, Ok(Ok(_))) && !act.port_accepted {
                act.port_accepted = true;
                if act.timing.path == Path::Routed && act.facts.opened.is_none() {
                    act.facts.opened = Some(act.facts.elapsed);
                }
                act.evaluate(ctx);
            }
        }));
    }

    fn set_running(&mut self, rule: Rule) {
        if self.running {
            return;
        }
        if rule == Rule::Fallback {
            // No channel until the next launch.
            self.fallen_back = true;
            self.close_channels();
        }
        self.running = true;
        self.tell(NodeEvent::Running { rule });
    }

    /// The connection requests to the node go over.
    fn via(&self) -> Option<Addr<NodeChannel>> {
        match self.timing.path {
            Path::Own if !self.fallen_back => self.channel.clone(),
            Path::Routed if !self.fallen_back => self.route.clone(),
            _ => None,
        }
    }

    fn check_running(&mut self, ctx: &mut Context<Self>) {
        if self.exited || self.stop_requested {
            return;
        }
        let Some(addr) = self.timing.port_check else {
            self.set_running(Rule::Settle);
            return;
        };
        let attempt = tokio::time::timeout(PORT_POLL * 4, tokio::net::TcpStream::connect(addr));
        ctx.spawn(attempt.into_actor(self).map(|res, act, ctx| {
            if act.exited || act.stop_requested {
                return;
            }
            if matches!(res, Ok(Ok(_))) {
                act.set_running(Rule::Settle);
            } else {
                ctx.run_later(PORT_POLL, |act, ctx| act.check_running(ctx));
            }
        }));
    }

    fn terminate(&mut self, ctx: &mut Context<Self>) {
        let Some(pid) = self.pid else { return };
        process::signal_group(pid, libc::SIGTERM);
        ctx.run_later(self.timing.stop_grace, move |act, _| {
            if !act.exited {
                tracing::warn!(node = %act.node, pid, "node ignored SIGTERM; sending SIGKILL");
                process::signal_group(pid, libc::SIGKILL);
            }
        });
    }

    fn on_peers(&mut self) {
        self.evaluate_join();
    }
}

impl Actor for NodeProcess {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(spec) = self.spec.take() else {
            return;
        };
        self.dir = Some(spec.cwd.clone());
        tracing::debug!(node = %self.node, ?spec, "spawning");
        ctx.spawn(
            process::spawn(spec)
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(child) => act.on_spawned(child, ctx),
                    Err(error) => {
                        act.exited = true;
                        act.tell(NodeEvent::SpawnFailed {
                            error: error.to_string(),
                        });
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Handler<StopNode> for NodeProcess {
    type Result = ();

    fn handle(&mut self, _: StopNode, ctx: &mut Context<Self>) {
        if self.stop_requested || self.exited {
            return;
        }
        self.stop_requested = true;
        self.stop_tick(ctx);
        self.terminate(ctx);
    }
}

impl Handler<ChannelReport> for NodeProcess {
    type Result = ();

    fn handle(&mut self, msg: ChannelReport, ctx: &mut Context<Self>) {
        if self.exited {
            return;
        }
        match msg.fact {
            ChannelFact::Opened => {
                if !msg.route && self.facts.opened.is_none() {
                    let since = self.spawned_at.map(|t| t.elapsed()).unwrap_or_default();
                    self.facts.opened = Some(since);
                }
            }
            ChannelFact::Acked => {}
            ChannelFact::Answered(ping) => {
                // A sibling whose own pings are answered carries requests:
                // a logging node can be routed through it.
                if !msg.route {
                    self.tell(NodeEvent::ChannelUp { port: msg.port });
                }
                self.facts.answered = true;
                self.answered_at = Some(Instant::now());
                self.peers = ping.peers.into_iter().collect();
                if self.running {
                    tracing::info!(node = %self.node, "node channel answered");
                }
                self.on_peers();
            }
            ChannelFact::PeerUp(p) => {
                self.peers.insert(p);
                self.on_peers();
            }
            ChannelFact::PeerDown(p) => {
                self.peers.remove(&p);
                self.on_peers();
            }
            ChannelFact::Invalid(why) => {
                tracing::error!(node = %self.node, "node {}: {why}", self.node);
            }
            ChannelFact::Closed { reason } => {
                tracing::info!(node = %self.node, route = msg.route, "node channel ended: {reason}");
                if msg.route {
                    self.route = None;
                    if !self.stop_requested {
                        self.tell(NodeEvent::NeedsRoute);
                    }
                } else {
                    self.channel = None;
                    if !self.stop_requested && !self.fallen_back {
                        let delay = self.timing.channel.reconnect_delay;
                        ctx.run_later(delay, |act, ctx| {
                            if !act.exited && !act.stop_requested && act.channel.is_none() {
                                act.open_channel(ctx);
                            }
                        });
                    }
                }
            }
        }
        self.evaluate(ctx);
    }
}

impl Handler<RouteVia> for NodeProcess {
    type Result = ();

    fn handle(&mut self, msg: RouteVia, ctx: &mut Context<Self>) {
        if self.exited || self.stop_requested || self.fallen_back || self.route.is_some() {
            return;
        }
        let Some(pid) = self.pid else { return };
        tracing::debug!(node = %self.node, port = msg.port, "route through a sibling");
        self.route = Some(self.start_channel(msg.port, pid, true, ctx));
    }
}

impl Handler<NodeCommand> for NodeProcess {
    type Result = ResponseFuture<Result<Answer, NodeCommandError>>;

    fn handle(&mut self, msg: NodeCommand, _: &mut Context<Self>) -> Self::Result {
        if !matches!(self.timing.path, Path::Own | Path::Routed) || self.fallen_back {
            return Box::pin(async { Err(NodeCommandError::NoChannel) });
        }
        let via = self.via();
        let timeout = msg.timeout;
        Box::pin(async move {
            let Some(ch) = via else {
                // The connection is being re-established: nothing to wait on.
                tokio::time::sleep(timeout).await;
                return Err(NodeCommandError::TimedOut);
            };
            ch.send(msg).await.unwrap_or(Err(NodeCommandError::Closed))
        })
    }
}

mod join;
#[cfg(test)]
mod tests;
