//! What `set_configuration` answers: the decision before anything changes,
//! and the bookkeeping of a deployment until every local node runs or has
//! failed. Functions of plain data; the actor only carries them out.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::agent::validate::{self, HostFacts};
use crate::api::types::{ApiResult, Configuration, NodeOutputs, ReqId, ResultData};

/// What to do with a configuration that arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Answer `success: false` with this error; nothing changes.
    Refuse(String),
    /// The running configuration again, every node running: answer success
    /// at once, restart nothing.
    Unchanged(Configuration),
    /// Persist it, then stop the old nodes and launch the new ones.
    Apply(Configuration),
}

/// What the running agent looks like to `plan`.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    pub config: Option<&'a Configuration>,
    /// No process draining, no deployment pending, every node running.
    pub settled: bool,
    pub shutting_down: bool,
}

/// Decides on a configuration: validation (every problem listed), an id
/// for one that has none (the running one's when the content is the same),
/// and whether anything has to change.
pub fn plan(mut config: Configuration, running: Running<'_>, host: &HostFacts) -> Plan {
    if let Err(problems) = validate::validate(&config, host) {
        return Plan::Refuse(format!("invalid configuration: {}", problems.join("; ")));
    }
    if running.shutting_down {
        return Plan::Refuse("agent is shutting down".to_owned());
    }
    if config.id.is_empty() {
        config.id = match running.config {
            Some(r) if same_content(&config, r) => r.id.clone(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
    }
    let unchanged = running.settled && running.config.is_some_and(|r| r.same_cluster(&config));
    if unchanged {
        Plan::Unchanged(config)
    } else {
        Plan::Apply(config)
    }
}

fn same_content(config: &Configuration, running: &Configuration) -> bool {
    let mut probe = config.clone();
    probe.id = running.id.clone();
    probe.same_cluster(running)
}

/// Why a node did not come up: what `notify_error` said of it, and the
/// tails of its output files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    pub error: String,
    pub outputs: NodeOutputs,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure {
            error,
            outputs: NodeOutputs::default(),
        }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Self {
        Failure::from(error.to_owned())
    }
}

/// What the nodes are brought up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deploy,
    /// The running configuration again: nothing was restarted.
    Unchanged,
    /// `restart_request`.
    Restart,
}

/// A `set_configuration` or a `restart` waiting for its nodes (or the
/// persisted configuration being brought back at start, with nobody to
/// answer).
pub struct PendingDeploy {
    reqid: Option<ReqId>,
    pub config_id: String,
    responder: Option<oneshot::Sender<ApiResult>>,
    /// One entry per node concerned: `None` until it runs or has failed.
    results: BTreeMap<String, Option<Result<(), Failure>>>,
    kind: Kind,
    /// Nodes still without an outcome then are answered as not running.
    deadline: Option<Instant>,
}

impl PendingDeploy {
    /// The deployment of `config`'s nodes on the agent `agent`.
    pub fn new(
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
            kind: Kind::Deploy,
            deadline: None,
        }
    }

    /// The restart of the local nodes `names` of the running
    /// configuration `config_id`.
    pub fn restart(
        names: &[String],
        config_id: &str,
        reqid: ReqId,
        responder: oneshot::Sender<ApiResult>,
    ) -> PendingDeploy {
        PendingDeploy {
            reqid: Some(reqid),
            config_id: config_id.to_owned(),
            responder: Some(responder),
            results: names.iter().map(|n| (n.clone(), None)).collect(),
            kind: Kind::Restart,
            deadline: None,
        }
    }

    /// Answers by `at` at the latest: nodes still waiting then fail.
    pub fn with_deadline(mut self, at: Instant) -> Self {
        self.deadline = Some(at);
        self
    }

    /// When it answers at the latest, while some node has no outcome.
    pub fn open_deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.is_complete())
    }

    /// The nodes without an outcome, once the deadline has passed.
    pub fn overdue(&self, now: Instant) -> Vec<String> {
        if self.deadline.is_none_or(|d| d > now) {
            return Vec::new();
        }
        self.results
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every node's outcome is known.
    pub fn is_complete(&self) -> bool {
        self.results.values().all(Option::is_some)
    }

    /// Records a node's first outcome (a later one, a revival's, does not
    /// change it); returns whether the deployment is now complete.
    pub fn record(&mut self, node: &str, outcome: Result<(), Failure>) -> bool {
        if let Some(r @ None) = self.results.get_mut(node) {
            *r = Some(outcome);
        }
        self.is_complete()
    }

    /// Marks every node running (an unchanged configuration).
    pub fn all_running(mut self) -> Self {
        for r in self.results.values_mut() {
            *r = Some(Ok(()));
        }
        self.kind = Kind::Unchanged;
        self
    }

    fn failed(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, r)| !matches!(r, Some(Ok(()))))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The `notify_log` line of a finished deployment.
    pub fn summary(&self) -> String {
        let failed = self.failed();
        if self.kind == Kind::Restart {
            return if failed.is_empty() {
                format!(
                    "restarted {}",
                    crate::logging::count(self.results.len(), "node")
                )
            } else {
                format!(
                    "{} of {} nodes failed to restart ({})",
                    failed.len(),
                    self.results.len(),
                    failed.join(", ")
                )
            };
        }
        if failed.is_empty() {
            format!(
                "configuration {:?} applied: {} running",
                self.config_id,
                crate::logging::count(self.results.len(), "node")
            )
        } else {
            format!(
                "configuration {:?} applied: {} of {} nodes failed to launch ({})",
                self.config_id,
                failed.len(),
                self.results.len(),
                failed.join(", ")
            )
        }
    }

    /// The response of a finished deployment: one Result per local node,
    /// success only when all run.
    pub fn answer(&self, reqid: ReqId, instance: &str) -> ApiResult {
        let per_node = self
            .results
            .iter()
            .map(|(node, r)| {
                let failure = match r {
                    Some(Ok(())) => None,
                    Some(Err(f)) => Some(f.clone()),
                    None => Some(Failure::from("no outcome")),
                };
                let mut res = match failure {
                    None => ApiResult::ok(reqid.clone(), instance),
                    Some(f) => {
                        let error = match self.kind {
                            Kind::Restart => format!("could not restart node {node}: {}", f.error),
                            _ => f.error,
                        };
                        let mut res = ApiResult::failure(reqid.clone(), instance, error);
                        if f.outputs != NodeOutputs::default() {
                            res.data = Some(ResultData::Outputs(f.outputs));
                        }
                        res
                    }
                };
                res.node = Some(node.clone());
                res
            })
            .collect();
        let mut result = ApiResult::ok(reqid, instance);
        if !self.failed().is_empty() {
            result.success = false;
            result.error = self.summary();
        }
        result.data = Some(ResultData::Results(per_node));
        result.unchanged = self.kind == Kind::Unchanged;
        result
    }

    /// Sends the answer to whoever waits for it.
    pub fn respond(mut self, instance: &str) {
        if let (Some(tx), Some(reqid)) = (self.responder.take(), self.reqid.clone()) {
            let _ = tx.send(self.answer(reqid, instance));
        }
    }

    /// Answers `success: false`: another configuration (or a standby, or
    /// the shutdown) took its place.
    pub fn supersede(mut self, instance: &str, by: &str) {
        if let (Some(tx), Some(reqid)) = (self.responder.take(), self.reqid.take()) {
            let what = match self.kind {
                Kind::Restart => "the restart".to_owned(),
                _ => format!("configuration {:?}", self.config_id),
            };
            let _ = tx.send(ApiResult::failure(
                reqid,
                instance,
                format!("{what} was superseded by {by}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::validate::tests::{host, inst};
    use crate::api::types::{Node, Port, Role};

    fn config(id: &str) -> Configuration {
        let mut m = Node::new("manager", "a", Role::Manager);
        m.p = Some(Port::tcp(27760));
        Configuration {
            id: id.into(),
            instances: vec![inst("a"), inst("b")],
            nodes: vec![
                m,
                Node::new("worker-1", "a", Role::Worker),
                Node::new("worker-2", "b", Role::Worker),
            ],
            zeromq: None,
        }
    }

    const IDLE: Running<'static> = Running {
        config: None,
        settled: true,
        shutting_down: false,
    };

    #[test]
    fn an_invalid_configuration_is_refused_with_every_problem() {
        let mut c = config("x");
        c.nodes[0].p = None;
        c.nodes[1].name = "../w".into();
        match plan(c, IDLE, &host()) {
            Plan::Refuse(e) => {
                assert!(e.starts_with("invalid configuration: "), "{e}");
                assert!(e.contains("needs a port") && e.contains("\"../w\""), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let shutting = Running {
            shutting_down: true,
            ..IDLE
        };
        assert_eq!(
            plan(config("x"), shutting, &host()),
            Plan::Refuse("agent is shutting down".into())
        );
    }

    #[test]
    fn the_same_configuration_changes_nothing_and_keeps_its_id() {
        let running = config("r1");
        let now = Running {
            config: Some(&running),
            settled: true,
            shutting_down: false,
        };
        assert_eq!(
            plan(config("r1"), now, &host()),
            Plan::Unchanged(running.clone())
        );
        // Without an id: the running one's, since the content is the same.
        assert_eq!(
            plan(config(""), now, &host()),
            Plan::Unchanged(running.clone())
        );
        // Not settled (a node crashed, say): applied again.
        let unsettled = Running {
            settled: false,
            ..now
        };
        assert_eq!(
            plan(config("r1"), unsettled, &host()),
            Plan::Apply(running.clone())
        );
        // Other content without an id: a new one.
        let mut other = config("");
        other.nodes.pop();
        match plan(other, now, &host()) {
            Plan::Apply(c) => assert!(!c.id.is_empty() && c.id != "r1"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn a_deployment_answers_once_every_local_node_is_known() {
        let (tx, mut rx) = oneshot::channel();
        let mut d = PendingDeploy::new(&config("d"), "a", Some(ReqId("r".into())), Some(tx));
        assert!(!d.record("manager", Ok(())));
        assert!(!d.record("worker-2", Ok(())), "not a local node");
        assert!(d.record("worker-1", Err("boom".into())));
        assert!(!d.record("worker-1", Ok(())) || d.is_complete());
        assert_eq!(
            d.summary(),
            "configuration \"d\" applied: 1 of 2 nodes failed to launch (worker-1)"
        );
        d.respond("a");
        let r = rx.try_recv().expect("answered");
        assert!(!r.success);
        let Some(ResultData::Results(per_node)) = r.data else {
            panic!("per-node results")
        };
        let view: Vec<_> = per_node
            .iter()
            .map(|r| {
                (
                    r.node.clone().unwrap_or_default(),
                    r.success,
                    r.error.clone(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("manager".to_owned(), true, String::new()),
                ("worker-1".to_owned(), false, "boom".to_owned())
            ]
        );
    }

    #[test]
    fn a_superseded_deployment_says_by_what() {
        let (tx, mut rx) = oneshot::channel();
        let d = PendingDeploy::new(&config("old"), "a", Some(ReqId("r".into())), Some(tx));
        d.supersede("a", "agent_standby");
        let r = rx.try_recv().expect("answered");
        assert_eq!(
            r.error,
            "configuration \"old\" was superseded by agent_standby"
        );
        let done = PendingDeploy::new(&config("x"), "a", None, None).all_running();
        assert!(done.is_complete());
        assert_eq!(
            done.summary(),
            "configuration \"x\" applied: 2 nodes running"
        );
    }
}
