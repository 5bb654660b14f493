//! HTTP surface. Every JOB v3 path form lands on one dispatcher:
//! `/api/c/compapi/v2/jobv3/<name>/` (ESB), `/api/v3/<name>` and `/api/v3/system/<name>`
//! (API gateway, also under `/api/bk-job/<stage>`), `/api/job/v3/<service>/<name>` and
//! `/esb/api/v3/<name>` (JOB's own gateway and backend), with or without a trailing slash.
//! Queries answer GET and POST; parameters come from the query string, a JSON body or a
//! form body. Shoal's own extensions live under `/api/shoal/v1/`. The JOB v2 ESB API
//! (`/api/c/compapi/v2/job/<name>/`, bk-job's gateway `/api/job/v2/<module>/<name>`, the
//! backend `/esb/api/v2/<name>`) lands on [`v2`].

pub mod authz;
pub mod envelope;
pub mod idempotency;
pub mod params;
pub mod shoal;
pub mod trust;
pub mod v2;
pub mod v3;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use shoal_core::JobError;
use shoal_proto::code::Lang;

use crate::auth::{self, Caller};
use crate::Shared;
pub use envelope::{ApiResult, Reply};

/// What a handler gets besides its parameters.
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub caller: Caller,
    pub lang: Lang,
    pub request_id: String,
    /// `scheme://host[:port]` the caller reached this server at (URLs handed out are
    /// built on it), when the request named its host.
    pub origin: Option<String>,
}

impl Ctx {
    /// An audit event of this request (who, which app, scope, action, resource); `detail`
    /// gets the request id added.
    pub fn audit_event(&self, scope: &shoal_core::Scope, action: &str, resource: impl ToString, detail: Value) -> shoal_store::AuditEvent {
        let mut detail = if detail.is_object() { detail } else { serde_json::json!({}) };
        detail["request_id"] = Value::String(self.request_id.clone());
        shoal_store::AuditEvent {
            time: shoal_core::time::now_ms(),
            app_code: self.caller.app_code.clone(),
            username: self.caller.username.clone(),
            scope_type: scope.scope_type.clone(),
            scope_id: scope.scope_id.clone(),
            action: action.into(),
            resource_id: resource.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Record an audit event on its own (job creation records its event in the job's
    /// transaction instead).
    pub async fn audit(&self, scope: &shoal_core::Scope, action: &str, resource: impl ToString, detail: Value) -> Result<(), JobError> {
        let e = self.audit_event(scope, action, resource, detail);
        self.shared.store.audit(&e).await.map_err(internal("audit"))
    }
}

/// `ok`, or 503 with what is wrong: the store does not answer, or agents' results cannot be
/// committed (a full disk).
async fn healthz(axum::extract::State(shared): axum::extract::State<Arc<Shared>>) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let probe = tokio::time::timeout(std::time::Duration::from_secs(5), shared.store.count_apps()).await;
    match probe {
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "unhealthy: the store did not answer within 5 s\n".into()),
        Ok(Err(e)) => {
            let why = e.unavailable().map_or_else(|| e.to_string(), str::to_string);
            return (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: the store cannot be read: {why}\n"));
        }
        Ok(Ok(_)) => {}
    }
    match shared.gateway.ingest_fault() {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: agents' results cannot be committed: {why}\n")),
        None => (StatusCode::OK, "ok".into()),
    }
}

/// The Shoal extension API (`/api/shoal/v1/…`) as an OpenAPI 3.1 document, kept beside the
/// code; a test holds it to the routes the server answers.
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.max_body_bytes;
    let timeout = std::time::Duration::from_secs(shared.config.request_timeout_secs);
    Router::new()
        .route("/api/shoal/v1/agent/ws", get(crate::gateway::ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::metrics::serve))
        .route("/api/shoal/v1/openapi.json", get(openapi))
        .route("/", get(crate::console::root))
        .route("/console", get(crate::console::index))
        .route("/console/", get(crate::console::index))
        .route("/console/{*path}", get(crate::console::file))
        .route("/api/shoal/v1/console/login", axum::routing::post(crate::console::session::login))
        .route("/api/shoal/v1/console/session", get(crate::console::session::session))
        .route("/api/shoal/v1/console/logout", axum::routing::post(crate::console::session::logout))
        .route("/api/shoal/v1/jobs/{job_instance_id}/events", get(shoal::job_events::stream))
        .fallback(dispatch)
        .layer(DefaultBodyLimit::max(limit))
        // A request that takes longer is answered 408 and its handler dropped.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        // The console's pages and the API's answers gzip'd for a caller that accepts it (a
        // browser does); event streams, images and answers under 32 bytes go as they are.
        .layer(tower_http::compression::CompressionLayer::new())
        // File content is not held to the API's body limit and request timeout.
        .route("/api/shoal/v1/uploads/{token}", axum::routing::put(crate::files::http::upload))
        .route("/api/shoal/v1/agent/blobs/{sha256}", get(crate::files::http::blob))
        .route("/api/shoal/v1/agent/swarm/{sha256}", get(crate::files::tracker::ask).post(crate::files::tracker::announce))
        .route("/api/shoal/v1/agent/stage/{sha256}", axum::routing::head(crate::files::http::stage_head).put(crate::files::http::stage_put))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), crate::metrics::track))
        .with_state(shared)
}

/// Which API a path names, and whether it is an app-state (`/system/`) path.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    JobV3 { name: String, system: bool },
    JobV2 { name: String },
    Shoal { path: String },
}

impl Route {
    /// The API's name (`fast_execute_script`, `apps/rotate`), as audit events name it.
    pub fn api_name(&self) -> &str {
        match self {
            Route::JobV3 { name, .. } | Route::JobV2 { name } => name,
            Route::Shoal { path } => path.trim_end_matches('/'),
        }
    }
}

pub fn route(path: &str) -> Option<Route> {
    let mut p = path.trim_end_matches('/');
    if let Some(rest) = p.strip_prefix("/api/bk-job/") {
        // `/api/bk-job/<stage>/api/v3/...`
        let slash = rest.find('/')?;
        p = &rest[slash..];
    }
    let name_ok = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let v3 = |name: &str, system: bool| name_ok(name).then(|| Route::JobV3 { name: name.to_string(), system });
    if let Some(rest) = p.strip_prefix("/api/c/compapi/v2/jobv3/") {
        return v3(rest, false);
    }
    if let Some(rest) = p.strip_prefix("/api/c/compapi/v2/job/").or_else(|| p.strip_prefix("/esb/api/v2/")) {
        return name_ok(rest).then(|| Route::JobV2 { name: rest.to_string() });
    }
    if let Some(rest) = p.strip_prefix("/api/v3/system/") {
        return v3(rest, true);
    }
    if let Some(rest) = p.strip_prefix("/api/v3/") {
        return v3(rest, false);
    }
    if let Some(rest) = p.strip_prefix("/esb/api/v3/") {
        return v3(rest, false);
    }
    if let Some(rest) = p.strip_prefix("/api/job/v3/") {
        let (_svc, name) = rest.split_once('/')?;
        return v3(name, false);
    }
    if let Some(rest) = p.strip_prefix("/api/job/v2/") {
        // bk-job's gateway: `/api/job/v2/<module>/<name>` → `/esb/api/v2/<name>`.
        let (_module, name) = rest.split_once('/')?;
        return name_ok(name).then(|| Route::JobV2 { name: name.to_string() });
    }
    if let Some(rest) = p.strip_prefix("/api/shoal/v1/") {
        return Some(Route::Shoal { path: rest.to_string() });
    }
    None
}

async fn dispatch(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = headers
        .get("x-bkapi-request-id")
        .or_else(|| headers.get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && !v.is_empty())
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let lang = Lang::from_header(headers.get("blueking-language").and_then(|v| v.to_str().ok()));
    let out = handle(shared, &method, &uri, &headers, &body, lang, &request_id).await;
    envelope::render(out, lang, &request_id)
}

async fn handle(
    shared: Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    lang: Lang,
    request_id: &str,
) -> Result<Reply, JobError> {
    let Some(route) = route(uri.path()) else {
        return Err(envelope::not_found(uri.path()));
    };
    if method != Method::GET && method != Method::POST && method != Method::DELETE {
        return Err(envelope::method_not_allowed());
    }
    let params = params::collect(method, uri, headers, body)?;
    let system = matches!(route, Route::JobV3 { system: true, .. });
    // A password login is the one call made without credentials: it makes them.
    if let Route::Shoal { path } = &route {
        if path.trim_end_matches('/') == "login" {
            return shoal::users::login(&shared, method, params, request_id).await.map(Reply::from);
        }
    }
    let caller = auth::authenticate(shared.store.as_ref(), &shared.config.sealing_key, headers, &params, system).await?;
    let scheme = if shared.config.tls_cert.is_some() { "https" } else { "http" };
    let origin = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(|h| format!("{scheme}://{h}"));
    let ctx = Arc::new(Ctx { shared, caller, lang, request_id: request_id.to_string(), origin });
    let api = route.api_name().to_string();
    let out = answer(ctx.clone(), method, route, headers, params).await;
    // Every refusal of an authenticated caller is evidence too: recorded here, the one door
    // all APIs leave through.
    if let Err(e) = &out {
        authz::record_denial(&ctx, &api, e).await;
    }
    out
}

async fn answer(ctx: Arc<Ctx>, method: &Method, route: Route, headers: &HeaderMap, params: Value) -> Result<Reply, JobError> {
    // Answers written piece by piece are queries: never kept for replay either.
    if let Route::JobV3 { name, .. } = &route {
        if v3::streams(name) {
            return v3::call_streamed(&ctx, method, name, params).await;
        }
        // Queries whose answer is kept encoded.
        if v3::answers_encoded(name) {
            return v3::call_encoded(&ctx, method, name, params).await.map(Reply::Encoded);
        }
    }
    // Answers carrying a fresh secret (app secret, password, token) are never kept for replay
    // (it is shown once).
    if let Route::Shoal { path } = &route {
        if trust::returns_secret(path) {
            return trust::call(&ctx, method, path, params).await.map(Reply::from);
        }
        if shoal::agents::returns_secret(method, path) {
            return shoal::agents::call(&ctx, method, path, params).await.map(Reply::from);
        }
        if shoal::users::handles(path) {
            return shoal::users::call(&ctx, method, path, params).await.map(Reply::from);
        }
    }
    let guard = match idempotency::begin(&ctx, method, &route, headers, &params).await {
        Ok(guard) => guard,
        Err(answer) => return answer.map(Reply::from),
    };
    let method = method.clone();
    idempotency::complete(guard, async move {
        match route {
            Route::JobV3 { name, .. } => v3::call(&ctx, &method, &name, params).await,
            Route::JobV2 { name } => v2::call(&ctx, &method, &name, params).await,
            Route::Shoal { path } if trust::handles(&path) => trust::call(&ctx, &method, &path, params).await,
            Route::Shoal { path } => shoal::call(&ctx, &method, &path, params).await,
        }
    })
    .await
    .map(Reply::from)
}

/// Decode a request DTO, naming the offending field in a 1240003 answer.
pub fn decode<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, JobError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        JobError::bad_request(format!("{path}: {}", e.inner()))
    })
}

/// Internal errors are logged with their cause; the caller sees JOB's internal error code.
pub fn internal<E: std::fmt::Display + 'static>(op: &'static str) -> impl FnOnce(E) -> JobError {
    move |e| {
        tracing::error!(error = %e, op, "internal error");
        // A store that cannot serve anyone (a full disk, a lost database) is said as such.
        let store_error = (&e as &dyn std::any::Any).downcast_ref::<shoal_store::StoreError>();
        crate::metrics::note_store_error(store_error);
        match store_error.and_then(shoal_store::StoreError::unavailable) {
            Some(why) => JobError::unavailable(why),
            None => JobError::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(name: &str, system: bool) -> Option<Route> {
        Some(Route::JobV3 { name: name.into(), system })
    }

    #[test]
    fn every_path_form_routes() {
        assert_eq!(route("/api/c/compapi/v2/jobv3/fast_execute_script/"), v3("fast_execute_script", false));
        assert_eq!(route("/api/v3/get_job_instance_status"), v3("get_job_instance_status", false));
        assert_eq!(route("/api/v3/system/fast_execute_script/"), v3("fast_execute_script", true));
        assert_eq!(route("/api/bk-job/prod/api/v3/system/batch_get_job_instance_ip_log/"), v3("batch_get_job_instance_ip_log", true));
        assert_eq!(route("/api/bk-job/stag/api/v3/get_account_list"), v3("get_account_list", false));
        assert_eq!(route("/api/job/v3/job-execute/fast_execute_script"), v3("fast_execute_script", false));
        assert_eq!(route("/esb/api/v3/get_job_instance_list"), v3("get_job_instance_list", false));
        assert_eq!(route("/api/shoal/v1/hosts"), Some(Route::Shoal { path: "hosts".into() }));
        let v2 = |name: &str| Some(Route::JobV2 { name: name.into() });
        assert_eq!(route("/api/c/compapi/v2/job/get_job_instance_log/"), v2("get_job_instance_log"));
        assert_eq!(route("/esb/api/v2/fast_execute_script"), v2("fast_execute_script"));
        assert_eq!(route("/api/job/v2/job-execute/get_job_instance_log"), v2("get_job_instance_log"));
        assert_eq!(route("/api/job/v2/job-crontab/save_cron/"), v2("save_cron"));
        assert_eq!(route("/api/job/v2/get_job_instance_log"), None);
        assert_eq!(route("/api/c/compapi/v2/job/../x"), None);
        assert_eq!(route("/api/v3/../etc"), None);
        assert_eq!(route("/nothing"), None);
    }
}
