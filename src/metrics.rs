//! Prometheus metrics for both daemons: an HTTP server (actix-web) on the
//! `--metrics-addr` serving `/metrics` in Prometheus' text format, and
//! whatever else a daemon adds (the controller's service discovery); the
//! figures every daemon has (requests by kind with their latency, the
//! process's own) in a registry of the `prometheus` crate; a daemon's
//! scrape-time figures (its nodes, its agents) are set just before each
//! rendering by its [`Scrape`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// A future answered by a daemon's scrape.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a daemon serves besides its registry's figures.
pub trait Scrape: Send + Sync + 'static {
    /// Sets the scrape-time figures (the daemon's own registry is
    /// rendered after it).
    fn refresh(&self) -> Pending<()>;
    /// Prometheus' HTTP service discovery (JSON), if the daemon serves it.
    fn service_discovery(&self) -> Option<Pending<String>> {
        None
    }
}

/// The figures a daemon keeps from its start, and its registry.
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

/// Latency buckets of requests, in seconds: from a local answer (well
/// under a millisecond) to a deployment that waits for its nodes.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// A registry with the request figures and the process's own under
    /// `prefix` (`zeek_mgmt_agent`, `zeek_mgmt_controller`).
    pub fn new(prefix: &str) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_requests_total"),
                "Requests answered, by kind and result.",
            ),
            &["request", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}_request_duration_seconds"),
                "Time from a request's arrival to its answer, by kind.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["request"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
        })
    }

    /// One request of `kind` answered after `took`.
    pub fn request(&self, kind: &str, success: bool, took: Duration) {
        let result = if success { "success" } else { "failure" };
        self.requests.with_label_values(&[kind, result]).inc();
        self.latency
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    /// Every figure of the registry, in the text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::warn!("cannot render the metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The running metrics server: its address, and the handle that stops it.
pub struct MetricsServer {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl MetricsServer {
    /// Stops accepting scrapes.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

struct State {
    metrics: Arc<Metrics>,
    scrape: Arc<dyn Scrape>,
    /// One rendering at a time: a scrape's figures are set, then rendered.
    lock: tokio::sync::Mutex<()>,
}

async fn serve_metrics(state: actix_web::web::Data<State>) -> actix_web::HttpResponse {
    let _one = state.lock.lock().await;
    state.scrape.refresh().await;
    actix_web::HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(state.metrics.render())
}

async fn serve_sd(state: actix_web::web::Data<State>) -> actix_web::HttpResponse {
    match state.scrape.service_discovery() {
        Some(json) => actix_web::HttpResponse::Ok()
            .content_type("application/json")
            .body(json.await),
        None => actix_web::HttpResponse::NotFound().body("no service discovery here\n"),
    }
}

/// Serves `/metrics` (and `/sd`, Prometheus' HTTP service discovery) on
/// `addr` (port 0: a free one), on one worker thread of its own.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    scrape: Arc<dyn Scrape>,
) -> std::io::Result<MetricsServer> {
    let state = actix_web::web::Data::new(State {
        metrics,
        scrape,
        lock: tokio::sync::Mutex::new(()),
    });
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .route("/metrics", actix_web::web::get().to(serve_metrics))
            .route("/sd", actix_web::web::get().to(serve_sd))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(addr)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other(format!("nothing bound on {addr}")))?;
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    Ok(MetricsServer {
        addr: bound,
        handle,
    })
}
