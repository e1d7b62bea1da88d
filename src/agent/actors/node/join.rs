//! A running node's place in its cluster: the `NodeProcess` asks it every
//! slow ping interval, over its channel or route, and reports
//! `channel::join_verdict` when it changes.

use std::time::Instant;

use actix::prelude::*;

use super::{NodeEvent, NodeProcess};
use crate::agent::channel::actor::NodeCommand;
use crate::agent::channel::{self, Join, JoinFacts, Path};

impl NodeProcess {
    /// Whether this launch reports its join: a node with a channel that
    /// must see the manager.
    pub(super) fn reports_join(&self) -> bool {
        !self.timing.join_needs.is_empty()
            && matches!(self.timing.path, Path::Own | Path::Routed)
            && !self.fallen_back
    }

    /// Checks the join every slow ping interval for as long as the node
    /// runs: a ping through its channel, whose answer crosses the cluster
    /// backend and names the node's peers.
    pub(super) fn start_join_checks(&mut self, ctx: &mut Context<Self>) {
        let every = self.timing.channel.slow_ping_interval;
        ctx.run_interval(every, |act, ctx| act.check_join(ctx));
        self.evaluate_join();
    }

    fn check_join(&mut self, ctx: &mut Context<Self>) {
        if self.exited || self.stop_requested || !self.reports_join() {
            return;
        }
        self.evaluate_join();
        let (Some(via), Some(pid), false) = (self.via(), self.pid, self.checking_join) else {
            return;
        };
        self.checking_join = true;
        let ping = via.send(NodeCommand {
            action: vec!["ping".to_owned()],
            timeout: self.timing.channel.slow_ping_interval,
        });
        ctx.spawn(ping.into_actor(self).map(move |res, act, _| {
            act.checking_join = false;
            if let Ok(Ok(answer)) = res {
                if let Ok(ping) = channel::check_ping(&answer, &act.node, pid) {
                    act.answered_at = Some(Instant::now());
                    act.peers = ping.peers.into_iter().collect();
                }
            }
            act.evaluate_join();
        }));
    }

    /// Reports the join verdict when it changes (`Joined` against
    /// `NotJoined`; a new reason alone is no change).
    pub(super) fn evaluate_join(&mut self) {
        if !self.running || self.exited || !self.reports_join() {
            return;
        }
        let (Some(spawned), Some(opened)) = (self.spawned_at, self.facts.opened) else {
            return;
        };
        let facts = JoinFacts {
            needs: &self.timing.join_needs,
            peers: &self.peers,
            since_answer: self.answered_at.map(|t| t.elapsed()),
            since_open: spawned.elapsed().saturating_sub(opened),
        };
        let Some(verdict) = channel::join_verdict(&facts, self.timing.channel.join_grace) else {
            return;
        };
        let same = matches!(
            (&self.join, &verdict),
            (Some(Join::Joined), Join::Joined) | (Some(Join::NotJoined(_)), Join::NotJoined(_))
        );
        if same {
            return;
        }
        let verdict = match verdict {
            Join::NotJoined(cause) => Join::NotJoined(format!(
                "node {} has not joined the cluster: {cause}; check that the manager runs and that this host reaches {}",
                self.node, self.timing.join_hint
            )),
            joined => joined,
        };
        match &verdict {
            Join::Joined => tracing::info!(node = %self.node, "joined"),
            Join::NotJoined(why) => tracing::warn!(node = %self.node, "{why}"),
        }
        self.join = Some(verdict.clone());
        self.tell(NodeEvent::Join(verdict));
    }
}
