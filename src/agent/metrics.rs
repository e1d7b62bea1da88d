//! The agent's figures at each scrape, read off its supervisor's
//! `get_nodes` answer: each node's state, restarts, cpu, resident memory
//! and uptime, and the log archive's figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::Addr;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::agent::actors::supervisor::NodeSupervisor;
use crate::api::events::GetNodesRequest;
use crate::api::types::{MgmtRole, NodeStatus, ReqId, ResultData, State};
use crate::metrics::{Pending, Scrape};

/// Every state a node can be in, each a series of `zeek_node_state`.
const STATES: [State; 6] = [
    State::Pending,
    State::Running,
    State::Stopped,
    State::Failed,
    State::Crashed,
    State::Unknown,
];

/// A counter set from an absolute value read off its source, which may
/// start again from 0 (a node's restarts under a new configuration): a
/// drop is a counter reset.
struct Absolute {
    counter: IntCounterVec,
    last: Mutex<HashMap<Vec<String>, u64>>,
}

impl Absolute {
    fn new(
        registry: &Registry,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<Self> {
        let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(counter.clone()))?;
        Ok(Absolute {
            counter,
            last: Mutex::new(HashMap::new()),
        })
    }

    /// The series of `labels` now stands at `value`.
    fn set(&self, labels: &[&str], value: u64) {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let before = last.insert(key, value).unwrap_or(0);
        if value < before {
            let _ = self.counter.remove_label_values(labels);
            self.counter.with_label_values(labels).inc_by(value);
        } else {
            self.counter
                .with_label_values(labels)
                .inc_by(value - before);
        }
    }

    /// Drops the series not in `keep` (nodes no longer configured).
    fn keep_only(&self, keep: &[Vec<String>]) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        last.retain(|labels, _| {
            let kept = keep.contains(labels);
            if !kept {
                let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                let _ = self.counter.remove_label_values(&refs);
            }
            kept
        });
    }
}

/// The agent's scrape: asks its supervisor for the nodes, then sets the
/// series.
pub struct AgentScrape {
    supervisor: Addr<NodeSupervisor>,
    state: IntGaugeVec,
    restarts: Absolute,
    cpu: GaugeVec,
    rss: IntGaugeVec,
    uptime: GaugeVec,
    archived_files: Absolute,
    archived_bytes: Absolute,
    archive_waiting: IntGaugeVec,
    archive_free: GaugeVec,
}

impl AgentScrape {
    /// Registers the agent's series in `registry`.
    pub fn new(registry: &Registry, supervisor: Addr<NodeSupervisor>) -> prometheus::Result<Self> {
        let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<GaugeVec> {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let int_gauge =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        Ok(AgentScrape {
            supervisor,
            state: int_gauge(
                "zeek_node_state",
                "1 for the state each node of this agent is in, 0 for the others.",
                &["node", "role", "state"],
            )?,
            restarts: Absolute::new(
                registry,
                "zeek_node_restarts_total",
                "Revivals of each node since its configuration was applied.",
                &["node"],
            )?,
            cpu: gauge(
                "zeek_node_cpu_percent",
                "CPU use of each node in percent of one core, at the last sample.",
                &["node"],
            )?,
            rss: int_gauge(
                "zeek_node_resident_memory_bytes",
                "Resident memory of each node, at the last sample.",
                &["node"],
            )?,
            uptime: gauge(
                "zeek_node_uptime_seconds",
                "How long each node's process has run, at the last sample.",
                &["node"],
            )?,
            archived_files: Absolute::new(
                registry,
                "zeek_mgmt_agent_archived_files_total",
                "Log files the agent archived since it started.",
                &[],
            )?,
            archived_bytes: Absolute::new(
                registry,
                "zeek_mgmt_agent_archived_bytes_total",
                "Bytes of the log files archived since the agent started, before compression.",
                &[],
            )?,
            archive_waiting: int_gauge(
                "zeek_mgmt_agent_archive_waiting_files",
                "Rotated log files waiting in the archive's queue.",
                &[],
            )?,
            archive_free: gauge(
                "zeek_mgmt_agent_archive_free_percent",
                "Free space of the archive's filesystem, in percent, at the last look.",
                &[],
            )?,
        })
    }

    fn set(&self, statuses: &[NodeStatus]) {
        // Nodes gone from the configuration leave no series behind.
        self.state.reset();
        self.cpu.reset();
        self.uptime.reset();
        self.rss.reset();
        let mut kept = Vec::new();
        for s in statuses {
            if s.mgmt_role == MgmtRole::Agent {
                if let Some(a) = &s.archive {
                    self.archived_files.set(&[], a.archived_files);
                    self.archived_bytes.set(&[], a.archived_bytes);
                    self.archive_waiting
                        .with_label_values::<&str>(&[])
                        .set(i64::try_from(a.waiting).unwrap_or(i64::MAX));
                    if let Some(free) = a.free_percent {
                        self.archive_free.with_label_values::<&str>(&[]).set(free);
                    }
                }
                continue;
            }
            let node = s.node.as_str();
            let role = s
                .cluster_role
                .zeek_node_type()
                .trim_start_matches("Cluster::");
            for state in STATES {
                self.state
                    .with_label_values(&[node, role, &state.to_string()])
                    .set(i64::from(s.state == state));
            }
            self.restarts.set(&[node], s.restarts.unwrap_or(0));
            kept.push(vec![node.to_owned()]);
            if let Some(cpu) = s.cpu_percent {
                self.cpu.with_label_values(&[node]).set(cpu);
            }
            if let Some(rss) = s.rss_bytes {
                self.rss
                    .with_label_values(&[node])
                    .set(i64::try_from(rss).unwrap_or(i64::MAX));
            }
            if let Some(up) = s.uptime_secs {
                self.uptime.with_label_values(&[node]).set(up);
            }
        }
        self.restarts.keep_only(&kept);
    }
}

impl Scrape for Arc<AgentScrape> {
    fn refresh(&self) -> Pending<()> {
        let me = Arc::clone(self);
        Box::pin(async move {
            let asked = me
                .supervisor
                .send(GetNodesRequest {
                    reqid: ReqId("metrics".to_owned()),
                })
                .await;
            match asked.map(|r| r.result.data) {
                Ok(Some(ResultData::NodeStatuses(list))) => me.set(&list),
                Ok(_) => {}
                Err(e) => tracing::warn!("metrics: the supervisor did not answer: {e}"),
            }
        })
    }
}
