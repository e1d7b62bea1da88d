//! The table of local nodes: one `Slot` per node of the running
//! configuration, and what is read off it (the status table, the pids
//! file's records, the launch candidates).

use std::collections::BTreeMap;
use std::time::Instant;

use actix::prelude::*;

use super::launch_order::Candidate;
use crate::agent::actors::node::{NodeProcess, ProcId};
use crate::agent::channel::{Join, Rule};
use crate::agent::layout;
use crate::agent::process::Sample;
use crate::agent::state::PidRecord;
use crate::api::types::{MgmtRole, Node, NodeStatus, State};

/// One local node of the running configuration.
pub struct Slot {
    /// The node's record; its `state` is the current state.
    pub node: Node,
    pub proc: Option<(ProcId, Addr<NodeProcess>)>,
    pub pid: Option<u32>,
    pub started_at: Option<Instant>,
    /// Revivals in a row without a long enough run.
    pub attempts: u32,
    /// Revivals since the configuration was applied.
    pub restarts: u64,
    pub revival: Option<SpawnHandle>,
    /// Set once this launch counted as running.
    pub has_run: bool,
    /// The rule that made this launch running.
    pub rule: Option<Rule>,
    /// This launch's node channel port (its own server's).
    pub channel_port: Option<u16>,
    /// Set once this launch's own channel has answered a ping: a logging
    /// sibling can be routed through it.
    pub acked_port: Option<u16>,
    /// A logging node waiting for a route.
    pub needs_route: bool,
    /// This launch reports whether it has joined its cluster (it has a
    /// channel and must see the manager): its deployment waits for that.
    pub reports_join: bool,
    /// Its latest join verdict.
    pub join: Option<Join>,
    /// Where the latest launch's lines begin in its output files: what it
    /// is quoted by (never its predecessor's lines).
    pub output_start: crate::agent::process::OutputStart,
    /// Channel-port collisions in a row.
    pub collisions: u32,
    /// The last background sample, with the pid it was taken of (a
    /// revived node's new process has none until the next one).
    pub sample: Option<(u32, Sample)>,
}

impl Slot {
    /// A node about to be launched: `PENDING`, no process yet.
    pub fn pending(mut node: Node) -> Slot {
        node.state = State::Pending;
        Slot {
            node,
            proc: None,
            pid: None,
            started_at: None,
            attempts: 0,
            restarts: 0,
            revival: None,
            has_run: false,
            rule: None,
            channel_port: None,
            acked_port: None,
            needs_route: false,
            reports_join: false,
            join: None,
            output_start: Default::default(),
            collisions: 0,
            sample: None,
        }
    }

    /// This slot's current process is `id`.
    pub fn runs(&self, id: ProcId) -> bool {
        self.proc.as_ref().is_some_and(|(p, _)| *p == id)
    }

    /// The sample of the current process, if one was taken of it.
    fn current_sample(&self) -> Option<&Sample> {
        match (self.pid, &self.sample) {
            (Some(pid), Some((of, s))) if pid == *of => Some(s),
            _ => None,
        }
    }
}

pub type Slots = BTreeMap<String, Slot>;

/// `get_nodes`' table: one status per slot, sorted by name, with the
/// agent's own entry in its place. Uptimes are as of the last sample, so
/// that the table stays the same between samples.
pub fn status_table(
    slots: &Slots,
    agent: NodeStatus,
    sampled_at: Option<Instant>,
) -> Vec<NodeStatus> {
    let uptime = |since: Instant| {
        sampled_at
            .and_then(|at| at.checked_duration_since(since))
            .map(|d| d.as_secs_f64())
    };
    let mut out = Vec::with_capacity(slots.len() + 1);
    for slot in slots.values() {
        let sample = slot.current_sample();
        out.push(NodeStatus {
            node: slot.node.name.clone(),
            state: slot.node.state,
            mgmt_role: MgmtRole::None,
            cluster_role: slot.node.role,
            pid: slot.pid.map(i64::from),
            p: slot.node.p,
            metrics_port: slot.node.metrics_port,
            cpu_affinity: slot.node.cpu_affinity,
            cpu_percent: sample.map(|s| s.cpu_percent),
            rss_bytes: sample.map(|s| s.rss_bytes),
            restarts: Some(slot.restarts),
            uptime_secs: slot.started_at.and_then(uptime),
            running_by: slot
                .rule
                .filter(|_| slot.node.state == State::Running)
                .map(|r| r.as_str().to_owned()),
            joined: slot
                .join
                .as_ref()
                .filter(|_| slot.node.state == State::Running)
                .map(|j| *j == Join::Joined),
            join_error: match (&slot.join, slot.node.state) {
                (Some(Join::NotJoined(why)), State::Running) => Some(why.clone()),
                _ => None,
            },
            archive: None,
        });
    }
    // The slots come sorted by name; only the agent's own entry needs its
    // place.
    let at = out.partition_point(|n| n.node < agent.node);
    out.insert(at, agent);
    out
}

/// The pids file's records: every node process running now.
pub fn pid_records(slots: &Slots, program: &str) -> Vec<PidRecord> {
    slots
        .values()
        .filter_map(|s| {
            Some(PidRecord {
                pid: i32::try_from(s.pid?).ok()?,
                node: s.node.name.clone(),
                program: program.to_owned(),
            })
        })
        .collect()
}

/// What the launch order needs of each slot.
pub fn candidates<'a>(slots: &'a Slots, backend: Option<&str>) -> Vec<Candidate<'a>> {
    slots
        .values()
        .map(|s| Candidate {
            name: &s.node.name,
            rank: s.node.role.launch_rank(),
            pending: s.node.state == State::Pending,
            idle: s.proc.is_none() && s.revival.is_none(),
            binds_port: layout::binds_port(&s.node, backend),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::types::{Port, Role};

    fn slots() -> Slots {
        let mut m = Node::new("manager", "a", Role::Manager);
        m.p = Some(Port::tcp(27760));
        [m, Node::new("worker-1", "a", Role::Worker)]
            .into_iter()
            .map(|n| (n.name.clone(), Slot::pending(n)))
            .collect()
    }

    fn agent(name: &str) -> NodeStatus {
        NodeStatus {
            node: name.into(),
            state: State::Running,
            mgmt_role: MgmtRole::Agent,
            cluster_role: Role::None,
            pid: Some(1),
            p: None,
            metrics_port: None,
            cpu_affinity: None,
            cpu_percent: None,
            rss_bytes: None,
            restarts: None,
            joined: None,
            join_error: None,
            archive: None,
            uptime_secs: None,
            running_by: None,
        }
    }

    #[test]
    fn the_table_is_sorted_with_the_agent_in_its_place_and_samples_of_the_current_process() {
        let mut s = slots();
        let start = Instant::now();
        let w = s.get_mut("worker-1").expect("slot");
        w.pid = Some(42);
        w.started_at = Some(start);
        w.sample = Some((
            41,
            Sample {
                cpu_percent: 9.0,
                rss_bytes: 9,
            },
        ));
        let m = s.get_mut("manager").expect("slot");
        m.pid = Some(7);
        m.sample = Some((
            7,
            Sample {
                cpu_percent: 1.5,
                rss_bytes: 100,
            },
        ));
        let table = status_table(&s, agent("agent-m"), Some(start + Duration::from_secs(2)));
        let names: Vec<&str> = table.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["agent-m", "manager", "worker-1"]);
        assert_eq!(table[1].rss_bytes, Some(100));
        assert_eq!(table[2].rss_bytes, None, "a sample of an earlier process");
        assert_eq!(table[2].uptime_secs, Some(2.0));
        assert_eq!(table[1].uptime_secs, None, "not started");
    }

    #[test]
    fn only_running_processes_are_recorded() {
        let mut s = slots();
        s.get_mut("manager").expect("slot").pid = Some(7);
        assert_eq!(
            pid_records(&s, "zeek"),
            [PidRecord {
                pid: 7,
                node: "manager".into(),
                program: "zeek".into()
            }]
        );
    }

    #[test]
    fn candidates_say_what_the_launch_order_needs() {
        let s = slots();
        let c = candidates(&s, Some(layout::ZEROMQ_BACKEND));
        assert_eq!(c.len(), 2);
        assert!(c[0].binds_port && !c[1].binds_port);
        assert!(c.iter().all(|c| c.pending && c.idle));
    }
}
