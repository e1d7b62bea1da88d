//! What the core tells the metrics: its agents and deployed configuration
//! at each scrape (`Figures`), each client request's kind, result and
//! latency as it is answered, and each deployment's end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::Core;
use crate::api::types::{Configuration, ReqId};
use crate::broker::records::BrokerResult;
use crate::controller::requests::Stem;

/// Deployment durations, in seconds: from a handful of nodes on one host to
/// a hundred agents waiting for their nodes.
const DEPLOY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

/// What the core counts as it works: client requests (in the daemon's
/// registry) and deployments.
pub struct CoreMetrics {
    pub requests: Arc<crate::metrics::Metrics>,
    pub deployments: Deployments,
}

/// Deployments by result, with their duration.
pub struct Deployments {
    total: IntCounterVec,
    duration: HistogramVec,
}

impl Deployments {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let total = IntCounterVec::new(
            Opts::new(
                "zeek_mgmt_controller_deployments_total",
                "Deployments by result: success, failure (a node or an agent failed), refused (an agent refused the configuration, nothing changed), timed_out.",
            ),
            &["result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "zeek_mgmt_controller_deployment_duration_seconds",
                "Time from a deployment's start to its answer, by result.",
            )
            .buckets(DEPLOY_BUCKETS.to_vec()),
            &["result"],
        )?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Deployments { total, duration })
    }

    /// A deployment ended with `result` after `took`.
    pub fn ended(&self, result: &str, took: Duration) {
        self.total.with_label_values(&[result]).inc();
        self.duration
            .with_label_values(&[result])
            .observe(took.as_secs_f64());
    }
}

/// Asks the core for its figures.
#[derive(Message)]
#[rtype(result = "CoreFigures")]
pub struct Figures;

/// The core's figures at one moment.
#[derive(MessageResponse)]
pub struct CoreFigures {
    pub connected: usize,
    pub configured: usize,
    pub deployed: Option<Arc<Configuration>>,
}

impl Handler<Figures> for Core {
    type Result = CoreFigures;

    fn handle(&mut self, _: Figures, _: &mut Context<Self>) -> CoreFigures {
        CoreFigures {
            connected: self.known.len(),
            configured: self.configured.len(),
            deployed: self.deployed.clone().map(Arc::new),
        }
    }
}

impl Core {
    /// A client request arrived.
    pub(super) fn arrived(&mut self, reqid: &ReqId) {
        if self.metrics.is_some() {
            self.arrivals.insert(reqid.clone(), Instant::now());
        }
    }

    /// A client request is answered with `results`.
    pub(super) fn answered(&mut self, stem: Stem, reqid: &ReqId, results: &[BrokerResult]) {
        let Some(m) = &self.metrics else { return };
        if let Some(at) = self.arrivals.remove(reqid) {
            let ok = results.iter().all(|r| r.success);
            m.requests.request(stem.name(), ok, at.elapsed());
        }
    }

    /// A deployment ended with `result` (`success`, `failure`, `refused`,
    /// `timed_out`), started at `since`.
    pub(super) fn deployment_ended(&self, result: &str, since: Instant) {
        if let Some(m) = &self.metrics {
            m.deployments.ended(result, since.elapsed());
        }
    }
}
