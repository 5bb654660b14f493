//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Counters move where the thing happens: a job started or finished (engine), a host task
//! made final or a batch the store refused (the gateway's ingest writer), an HTTP answer and
//! a store error met by a request (the [`track`] middleware). Gauges are read when scraped:
//! connected agent sessions (of this replica), ingest lag, whether results can be committed.
//! Status labels carry JOB's codes (job status 3 = success, host status 9 = success, …).

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

/// Who met a store error: a request (`api`) or the writer of agents' results (`ingest`).
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
}

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
        Metrics { registry, ..m }
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

    /// The exposition text, with the gauges read now.
    pub fn render(&self, shared: &Shared) -> Result<String, std::fmt::Error> {
        self.connected_agents.set(shared.gateway.connected_set().len() as i64);
        self.ingest_lag_seconds.set(shared.gateway.ingest_lag().as_secs_f64());
        self.ingest_blocked.set(i64::from(shared.gateway.ingest_fault().is_some()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics`.
pub async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    match shared.gateway.metrics.render(&shared) {
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
