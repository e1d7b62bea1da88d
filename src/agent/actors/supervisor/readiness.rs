//! The supervisor's side of the node channel: how each node is reached,
//! the port of its server, routes to ZeroMQ logging nodes through their
//! siblings, relaunches after a port collision, and the readiness
//! deadline of deployments and restarts.

use std::time::Instant;

use actix::prelude::*;

use super::deploy::Failure;
use super::nodes::OUTPUT_TAIL_LINES;
use super::{Backend, NodeSupervisor};
use crate::agent::actors::node::RouteVia;
use crate::agent::channel::{self, Join, Path};
use crate::agent::layout;
use crate::agent::process;
use crate::api::types::{Configuration, Node, NodeOutputs, Role, State};

impl NodeSupervisor {
    /// How `node` is reached: its own server, a route through a sibling
    /// (a ZeroMQ logging node), only its port, or no channel at all.
    pub(super) fn channel_path(
        &self,
        node: &Node,
        config: &Configuration,
        backend: Option<&str>,
    ) -> Path {
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
    /// configuration's ports, the agent's own, the ZeroMQ broker's or
    /// another live launch's.
    pub(super) fn free_channel_port(&self) -> u16 {
        let zeromq = self
            .config
            .as_ref()
            .map(Configuration::zeromq_ports)
            .unwrap_or_default();
        let mut taken: Vec<u16> = vec![zeromq.xpub_port.number, zeromq.xsub_port.number];
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
    pub(super) fn route_logging_nodes(&mut self) {
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

    /// The readiness deadline of a request arriving now (0.9 of the
    /// request timeout, so that per-node detail beats a bare `request
    /// timed out`), with a timer that answers for the nodes still waiting.
    pub(super) fn readiness_deadline(&mut self, ctx: &mut Context<Self>) -> Instant {
        let at = Instant::now() + self.cfg.request_timeout.mul_f64(0.9);
        // One timer at a time, for the earliest deadline: later requests
        // have later deadlines, and the timer re-arms itself for them.
        if !self.readiness_timer {
            self.arm_readiness_timer(at, ctx);
        }
        at
    }

    fn arm_readiness_timer(&mut self, at: Instant, ctx: &mut Context<Self>) {
        self.readiness_timer = true;
        let after = at.saturating_duration_since(Instant::now());
        ctx.run_later(after, |act, ctx| {
            act.readiness_timer = false;
            act.readiness_deadline_passed();
            let next = act
                .deploy
                .iter()
                .chain(&act.restarting)
                .filter_map(|d| d.open_deadline())
                .min();
            if let Some(next) = next {
                act.arm_readiness_timer(next, ctx);
            }
        });
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
            let mut outputs = self.output_tails(&name);
            let slot = self.slots.get(&name);
            let running = slot.is_some_and(|s| s.node.state == State::Running);
            let headline = match slot.and_then(|s| s.join.as_ref()) {
                // Running, not joined: the reason comes first in its stderr,
                // which zeek-client prints.
                Some(Join::NotJoined(why)) if running => why.clone(),
                _ if running => format!(
                    "node {name} runs but has not joined the cluster within {} s",
                    channel::secs(after)
                ),
                _ => format!("node {name} not running within {} s", channel::secs(after)),
            };
            let mut error = headline.clone();
            let tail = outputs.stderr.trim_end_matches('\n');
            if !tail.is_empty() {
                error.push_str("; stderr:\n");
                error.push_str(tail);
            }
            if running {
                outputs.stderr = format!("zeek-mgmt-agent: {headline}\n{}", outputs.stderr);
            }
            tracing::warn!(node = %name, "{error}");
            self.record_overdue(&name, Failure { error, outputs });
        }
    }

    /// The last lines of a node's stdout and stderr that its latest
    /// launch wrote, for its failure.
    pub(super) fn output_tails(&self, name: &str) -> NodeOutputs {
        let dir = self.cfg.cluster_dir.join(name);
        let from = self
            .slots
            .get(name)
            .map(|s| s.output_start)
            .unwrap_or_default();
        NodeOutputs {
            stdout: process::output_tail(&dir.join("stdout"), from.stdout, OUTPUT_TAIL_LINES),
            stderr: process::output_tail(&dir.join("stderr"), from.stderr, OUTPUT_TAIL_LINES),
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

    /// A node that could not bind its channel port is launched again at
    /// once with a new one, still `PENDING` (no crash, no revival used),
    /// up to `port_retries` times in a row.
    pub(super) fn relaunch_after_collision(&mut self, name: &str, ctx: &mut Context<Self>) -> bool {
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
}
