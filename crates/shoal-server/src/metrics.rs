//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters and histograms move where the thing happens: a job started or finished, a task
//! handed to its agent (dispatch latency) and a store error met (engine, cron scheduler,
//! callback sender), a host task made final, an agent's result committed (ingest latency)
//! or a batch the store refused (the gateway's ingest writer), an HTTP answer and a store
//! error met by a request (the [`track`] middleware). Gauges are read when scraped: connected
//! agent sessions (of this replica), ingest lag, whether results can be committed, the
//! queues, and the jobs running (from the store: every replica's). Status labels carry JOB's
//! codes (job status 3 = success, host status 9 = success, …). docs/operating.md lists them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::Shared;

/// A job's or a host task's status, as JOB's code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: i32,
}

/// An HTTP answer's status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

/// Who met a store error: a request (`api`), the writer of agents' results (`ingest`), the
/// engine (`engine`), the cron scheduler (`cron`), the callback sender (`callback`) or a
/// scrape of these metrics (`metrics`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

/// This server's metrics; one per server (tests run several in one process).
pub struct Metrics {
    registry: Registry,
    jobs_started: Counter,
    jobs_finished: Family<StatusLabel, Counter>,
    host_tasks_finished: Family<StatusLabel, Counter>,
    http_requests: Family<CodeLabel, Counter>,
    store_errors: Family<SourceLabel, Counter>,
    connected_agents: Gauge,
    ingest_lag_seconds: Gauge<f64, AtomicU64>,
    ingest_blocked: Gauge,
    blob_bytes_served: Counter,
    dispatch_latency: Histogram,
    ingest_latency: Histogram,
    jobs_running: Gauge,
    ingest_queue_depth: Gauge,
    ingest_queue_bytes: Gauge,
    dispatch_queue_depth: Gauge,
    callback_queue_depth: Gauge,
    staging_queue_depth: Gauge,
}

/// Latency buckets: 1 ms to about 33 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

/// How long a store read made for a scrape may take before the scrape answers without it.
const SCRAPE_READ: std::time::Duration = std::time::Duration::from_secs(2);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shoal");
        let m = Metrics {
            registry: Registry::default(),
            jobs_started: Counter::default(),
            jobs_finished: Family::default(),
            host_tasks_finished: Family::default(),
            http_requests: Family::default(),
            store_errors: Family::default(),
            connected_agents: Gauge::default(),
            ingest_lag_seconds: Gauge::default(),
            ingest_blocked: Gauge::default(),
            blob_bytes_served: Counter::default(),
            dispatch_latency: Histogram::new(latency_buckets()),
            ingest_latency: Histogram::new(latency_buckets()),
            jobs_running: Gauge::default(),
            ingest_queue_depth: Gauge::default(),
            ingest_queue_bytes: Gauge::default(),
            dispatch_queue_depth: Gauge::default(),
            callback_queue_depth: Gauge::default(),
            staging_queue_depth: Gauge::default(),
        };
        registry.register("jobs_started", "Jobs started", m.jobs_started.clone());
        registry.register("jobs_finished", "Jobs finished, by final status (JOB's code)", m.jobs_finished.clone());
        registry.register("host_tasks_finished", "Host tasks made final, by host status (JOB's code)", m.host_tasks_finished.clone());
        registry.register("http_requests", "HTTP requests answered, by status code", m.http_requests.clone());
        registry.register("store_errors", "Store operations that failed, by who met the failure", m.store_errors.clone());
        registry.register("connected_agents", "Agent sessions held by this server", m.connected_agents.clone());
        registry.register(
            "ingest_lag_seconds",
            "How long the oldest agent result not yet committed has waited",
            m.ingest_lag_seconds.clone(),
        );
        registry.register(
            "ingest_blocked",
            "1 while agents' results cannot be committed (the store refuses them)",
            m.ingest_blocked.clone(),
        );
        registry.register(
            "blob_bytes_served",
            "File content this server sent to target agents (what peers serve one another is not counted)",
            m.blob_bytes_served.clone(),
        );
        registry.register(
            "dispatch_latency_seconds",
            "From a task becoming due (its job accepted and started; for later steps, retries and rolling batches, their start) to its task handed to the agent's session",
            m.dispatch_latency.clone(),
        );
        registry.register(
            "ingest_latency_seconds",
            "From an agent's result (output or exit) received to it committed to the store",
            m.ingest_latency.clone(),
        );
        registry.register(
            "jobs_running",
            "Jobs started and not ended (running, waiting for a person or a batch, stopping), on every replica",
            m.jobs_running.clone(),
        );
        registry.register("ingest_queue_depth", "Host-task changes queued for the store's writer", m.ingest_queue_depth.clone());
        registry.register(
            "ingest_queue_bytes",
            "Output bytes queued for the store's writer or being committed",
            m.ingest_queue_bytes.clone(),
        );
        registry.register(
            "dispatch_queue_depth",
            "Messages (tasks, cancels, acknowledgements) queued to this server's agent sessions, not yet written to their sockets",
            m.dispatch_queue_depth.clone(),
        );
        registry.register("callback_queue_depth", "Job callbacks not yet delivered (every replica's)", m.callback_queue_depth.clone());
        registry.register(
            "staging_queue_depth",
            "File steps waiting for their source hosts to stage files (this server's)",
            m.staging_queue_depth.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A task was handed to its agent `seconds` after it became due.
    pub fn dispatched(&self, seconds: f64) {
        self.dispatch_latency.observe(seconds.max(0.0));
    }

    /// An agent's result was committed `seconds` after it was received.
    pub fn ingested(&self, seconds: f64) {
        self.ingest_latency.observe(seconds);
    }

    pub fn job_started(&self) {
        self.jobs_started.inc();
    }

    pub fn job_finished(&self, status: i32) {
        self.jobs_finished.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn host_task_finished(&self, status: i32) {
        self.host_tasks_finished.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn blob_bytes_served(&self, n: u64) {
        self.blob_bytes_served.inc_by(n);
    }

    pub fn store_error(&self, source: &'static str) {
        self.store_errors.get_or_create(&SourceLabel { source }).inc();
    }

    /// The exposition text, with the gauges read now. A gauge the store cannot give within
    /// [`SCRAPE_READ`] keeps its last value (and the failure is counted).
    pub async fn render(&self, shared: &Shared) -> Result<String, std::fmt::Error> {
        let g = &shared.gateway;
        self.connected_agents.set(g.connected_set().len() as i64);
        self.ingest_lag_seconds.set(g.ingest_lag().as_secs_f64());
        self.ingest_blocked.set(i64::from(g.ingest_fault().is_some()));
        self.ingest_queue_depth.set(g.ingest_queue_depth() as i64);
        self.ingest_queue_bytes.set(g.ingest_queue_bytes() as i64);
        self.dispatch_queue_depth.set(g.dispatch_queue_depth() as i64);
        self.staging_queue_depth.set(shared.engine.staging_waiting() as i64);
        let (running, callbacks) = tokio::join!(
            tokio::time::timeout(SCRAPE_READ, shared.store.active_job_count()),
            tokio::time::timeout(SCRAPE_READ, shared.store.pending_callbacks())
        );
        for (read, gauge, what) in
            [(running, &self.jobs_running, "jobs running"), (callbacks, &self.callback_queue_depth, "queued callbacks")]
        {
            match read {
                Ok(Ok(n)) => {
                    gauge.set(n);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metrics: reading {what}");
                    self.store_error("metrics");
                }
                Err(_) => {
                    tracing::warn!("metrics: reading {what} timed out");
                    self.store_error("metrics");
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics`.
pub async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    match shared.gateway.metrics.render(&shared).await {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

tokio::task_local! {
    /// Store errors met while answering the current request.
    static REQUEST_STORE_ERRORS: AtomicU64;
}

/// A request met a store error (called where API errors are made from store errors).
/// Answers that are not faults — not found, a conflict, a quota — are not counted.
pub fn note_store_error(e: Option<&shoal_store::StoreError>) {
    use shoal_store::StoreError as E;
    if e.is_some_and(|e| !matches!(e, E::NotFound(_) | E::Conflict(_) | E::QuotaExceeded(_))) {
        let _ = REQUEST_STORE_ERRORS.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
    }
}

/// Middleware: counts every answer by status code, and the store errors its request met.
pub async fn track(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (response, errors) = REQUEST_STORE_ERRORS
        .scope(AtomicU64::new(0), async {
            let response = next.run(req).await;
            (response, REQUEST_STORE_ERRORS.with(|n| n.load(Ordering::Relaxed)))
        })
        .await;
    let m = &shared.gateway.metrics;
    m.http_requests.get_or_create(&CodeLabel { code: response.status().as_u16() }).inc();
    if errors > 0 {
        m.store_errors.get_or_create(&SourceLabel { source: "api" }).inc_by(errors);
    }
    response
}
