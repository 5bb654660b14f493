//! Idempotent submission. A mutating call (POST of a non-`get_` JOB API or of a Shoal API)
//! may carry an `Idempotency-Key` header. The key is kept per app: the first request with
//! it reserves the key in the store before doing anything (a `pending` row), runs, and
//! stores its answer; a repeat with the same request gets that answer again (same data,
//! same HTTP status) and starts nothing; a repeat with a different request is refused with
//! 1241010. A concurrent duplicate finds the pending row and waits for the answer.
//!
//! The first request runs in its own task, so a caller that gives up (a client timeout)
//! does not cut it short and leave the key without an answer. Internal errors are not
//! kept: the key is released so a retry can do the work.
//!
//! A server can die while it holds a key. The pending row names its owner (the replica, or
//! the server's boot id), and a job the request creates is recorded on the row in the job's
//! own transaction. A retry that finds the owner dead either finds that job and answers as
//! the first call would have (starting it if the crash came before its start), or finds no
//! job and takes the key over to run the request once — never "in progress" for minutes,
//! never twice.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use shoal_core::JobError;
use shoal_proto::ErrorCode;
use shoal_store::idempotency::{IdemKey, CREATING_FOR};
use shoal_store::{IdemRow, IdemState, Reservation, StoreError};

use super::{ApiResult, Ctx, Route};
use crate::Shared;

pub const HEADER: &str = "idempotency-key";
/// How long a reservation lasts if its request never ends (a server killed mid-request).
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// How long an answer is replayed.
const ANSWER_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long a duplicate waits for the first request's answer.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(60);
/// How often expired keys are dropped.
const PURGE_EVERY_MS: i64 = 10 * 60 * 1000;
/// Credentials and per-call noise that do not make two requests different.
const IGNORED_FIELDS: &[&str] = &["bk_app_code", "bk_app_secret", "bk_token", "access_token", "bk_ticket", "app_code", "app_secret"];

/// A reserved key: the request holding it must end with [`complete`].
pub struct Guard {
    shared: Arc<Shared>,
    app: String,
    key: String,
}

/// This server's name on the keys it holds: its replica id on a shared store, else an id
/// made at boot (one server per embedded store, so any other owner is a previous run).
fn owner(shared: &Shared) -> String {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match shared.gateway.replica_id() {
        Some(id) => id.to_string(),
        None => BOOT.get_or_init(|| format!("boot-{}", uuid::Uuid::new_v4().simple())).clone(),
    }
}

/// Whether the server that holds a pending key is gone.
async fn owner_dead(shared: &Shared, me: &str, holder: &str) -> Result<bool, StoreError> {
    if holder == me {
        return Ok(false);
    }
    if shared.gateway.replica_id().is_none() {
        return Ok(true);
    }
    let alive_after = shoal_core::time::now_ms() - crate::gateway::route::REPLICA_TTL.as_millis() as i64;
    Ok(!shared.store.replica_alive(holder, alive_after).await?)
}

/// The answer the first request would have given for the job it created, starting the job
/// when it asked to and the crash came first.
async fn answer_for_job(ctx: &Ctx, route: &Route, params: &Value, job_id: i64) -> ApiResult {
    let store = &ctx.shared.store;
    let job = store.get_job(job_id).await.map_err(super::internal("get job"))?.ok_or_else(JobError::internal)?;
    let wants_start = !matches!(params.get("start_task"), Some(Value::Bool(false)));
    if wants_start && job.status == shoal_proto::status::RunStatus::Blank as i32 {
        tracing::info!(job_instance_id = job_id, "starting a job whose request was cut short before its start");
        ctx.shared.engine.start_job(job_id).await.map_err(super::internal("start job"))?;
    }
    match route {
        Route::JobV3 { name, .. } if name == "execute_job_plan" => Ok(json!({"job_instance_id": job.id, "job_instance_name": job.name})),
        Route::JobV2 { name } if name == "execute_job" => Ok(json!({"job_instance_id": job.id, "job_instance_name": job.name})),
        _ => {
            let step = store.get_steps(job_id).await.map_err(super::internal("get steps"))?.into_iter().next();
            Ok(json!({"job_instance_id": job.id, "job_instance_name": job.name, "step_instance_id": step.map(|s| s.id)}))
        }
    }
}

fn reject(reason: &str) -> JobError {
    JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec!["Idempotency-Key".into(), reason.into()])
}

fn is_mutation(method: &Method, route: &Route) -> bool {
    *method == Method::POST
        && match route {
            Route::JobV3 { name, .. } | Route::JobV2 { name } => !name.starts_with("get_"),
            Route::Shoal { .. } => true,
        }
}

/// Objects with sorted keys, so the hash does not depend on the order fields were sent in.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// What the request asks for: the API and its parameters, without credentials, as an HMAC
/// under the server's key — a request may carry a secret (a credential's password), and a
/// plain hash kept in the database would let anyone reading it test guesses of that secret.
fn request_hash(key: &crate::secrets::Key, route: &Route, username: &str, params: &Value) -> String {
    let mut p = params.clone();
    if let Some(m) = p.as_object_mut() {
        for f in IGNORED_FIELDS {
            m.remove(*f);
        }
    }
    let api = match route {
        Route::JobV3 { name, .. } => format!("jobv3/{name}"),
        Route::JobV2 { name } => format!("jobv2/{name}"),
        Route::Shoal { path } => format!("shoal/{}", path.trim_end_matches('/')),
    };
    let mut pairs = vec![("api", json!(api)), ("user", json!(username)), ("params", canonical(&p))];
    pairs.sort_by_key(|(k, _)| *k);
    let text = serde_json::to_string(&pairs).unwrap_or_default();
    key.mac("idempotent request", &text).unwrap_or_else(|| hex::encode(Sha256::digest(text.as_bytes())))
}

fn encode(out: &ApiResult) -> (i32, String) {
    match out {
        Ok(data) => (200, json!({"ok": data}).to_string()),
        Err(e) => (
            e.http_status as i32,
            json!({"err": {"code": e.code.0, "args": e.args, "detail": e.detail, "http_status": e.http_status}}).to_string(),
        ),
    }
}

fn replay(row: &IdemRow) -> ApiResult {
    let v: Value = serde_json::from_str(&row.answer).map_err(super::internal("decode idempotent answer"))?;
    if let Some(data) = v.get("ok") {
        return Ok(data.clone());
    }
    let e = &v["err"];
    Err(JobError {
        code: ErrorCode(e["code"].as_i64().unwrap_or(ErrorCode::INTERNAL_ERROR.0 as i64) as i32),
        args: e["args"].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default(),
        detail: e["detail"].as_str().map(String::from),
        http_status: e["http_status"].as_u64().unwrap_or(200) as u16,
    })
}

/// Reserve the request's key. `Ok(None)`: no key (or not a mutation), run as usual;
/// `Ok(Some)`: this request holds the key; `Err(answer)`: answer this at once (a replay or
/// a refusal).
pub async fn begin(ctx: &Ctx, method: &Method, route: &Route, headers: &HeaderMap, params: &Value) -> Result<Option<Guard>, ApiResult> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(None);
    };
    if !is_mutation(method, route) {
        return Ok(None);
    }
    let key = match raw.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_string(),
        _ => return Err(Err(reject("must be 1 to 255 printable ASCII characters"))),
    };
    let app = ctx.caller.app_code.clone();
    let hash = request_hash(&ctx.shared.config.sealing_key, route, &ctx.caller.username, params);
    purge_now_and_then(&ctx.shared);
    let store = &ctx.shared.store;
    let me = owner(&ctx.shared);
    let until = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    let mut pause = Duration::from_millis(10);
    loop {
        let now = shoal_core::time::now_ms();
        let found = match store.reserve_idempotency(&app, &key, &hash, &me, now, now + PENDING_TTL_MS).await {
            Ok(Reservation::Reserved) => {
                return Ok(Some(Guard { shared: ctx.shared.clone(), app, key }));
            }
            Ok(Reservation::Existing(row)) => Some(row),
            Err(StoreError::Conflict(_)) => None,
            Err(e) => return Err(Err(super::internal("reserve idempotency key")(e))),
        };
        if let Some(row) = found {
            if row.request_hash != hash {
                return Err(Err(reject("reused with a different request")));
            }
            if row.state == IdemState::Done {
                tracing::debug!(app = %app, key = %key, "replaying an idempotent answer");
                return Err(replay(&row));
            }
            if owner_dead(&ctx.shared, &me, &row.owner).await.map_err(|e| Err(super::internal("idempotency owner")(e)))? {
                if let Some(job_id) = row.job_instance_id {
                    tracing::info!(app = %app, key = %key, job_instance_id = job_id, "answering a retry with the job its first request made");
                    let out = answer_for_job(ctx, route, params, job_id).await;
                    if out.is_ok() {
                        let (status, answer) = encode(&out);
                        let expires = shoal_core::time::now_ms() + ANSWER_TTL_MS;
                        store
                            .complete_idempotency(&app, &key, status, &answer, expires)
                            .await
                            .map_err(|e| Err(super::internal("complete idempotency key")(e)))?;
                    }
                    return Err(out);
                }
                match store.take_over_idempotency(&app, &key, &row.owner, &me, now, now + PENDING_TTL_MS).await {
                    Ok(true) => {
                        tracing::info!(app = %app, key = %key, dead_owner = %row.owner, "took over a key whose request died before making anything");
                        return Ok(Some(Guard { shared: ctx.shared.clone(), app, key }));
                    }
                    Ok(false) => {} // another retry took it, or the job appeared: look again
                    Err(e) => return Err(Err(super::internal("take over idempotency key")(e))),
                }
            }
        }
        // The first request is still running: wait for its answer.
        if tokio::time::Instant::now() > until {
            return Err(Err(reject("a request with this key is still in progress; retry later")));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Drop expired keys at most once per [`PURGE_EVERY_MS`], in the background (an expired key
/// is also replaced when it is used again).
fn purge_now_and_then(shared: &Arc<Shared>) {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = shoal_core::time::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if now - last < PURGE_EVERY_MS || LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return;
    }
    let store = shared.store.clone();
    tokio::spawn(async move {
        match store.purge_idempotency(now).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired idempotency keys"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging idempotency keys"),
        }
    });
}

/// Run the request; with a reserved key, in its own task, then store (or release) the key.
pub async fn complete<F>(guard: Option<Guard>, call: F) -> ApiResult
where
    F: Future<Output = ApiResult> + Send + 'static,
{
    let Some(g) = guard else {
        return call.await;
    };
    let store = g.shared.store.clone();
    let creating_for = IdemKey { app_code: g.app.clone(), key: g.key.clone() };
    let task = tokio::spawn(async move {
        let out = CREATING_FOR.scope(creating_for, call).await;
        let internal = matches!(&out, Err(e) if e.code == ErrorCode::INTERNAL_ERROR);
        let saved = if internal {
            store.release_idempotency(&g.app, &g.key).await
        } else {
            let (status, answer) = encode(&out);
            store.complete_idempotency(&g.app, &g.key, status, &answer, shoal_core::time::now_ms() + ANSWER_TTL_MS).await
        };
        if let Err(e) = saved {
            tracing::error!(error = %e, app = %g.app, "storing an idempotent answer");
        }
        out
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "request task failed");
        Err(JobError::internal())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_field_order_and_credentials() {
        let k = crate::secrets::Key::from_bytes(&[7; 32]);
        let r = Route::JobV3 { name: "fast_execute_script".into(), system: false };
        let a = request_hash(&k, &r, "u", &json!({"a": 1, "b": {"x": 1, "y": 2}, "bk_app_secret": "s1"}));
        let b = request_hash(&k, &r, "u", &json!({"b": {"y": 2, "x": 1}, "a": 1, "bk_app_secret": "s2"}));
        assert_eq!(a, b);
        assert_ne!(a, request_hash(&k, &r, "u", &json!({"a": 2, "b": {"x": 1, "y": 2}})));
        assert_ne!(a, request_hash(&k, &r, "v", &json!({"a": 1, "b": {"x": 1, "y": 2}})));
    }

    /// A secret in a request cannot be guessed from the stored hash without the server's key.
    #[test]
    fn the_hash_is_keyed() {
        let r = Route::JobV3 { name: "create_credential".into(), system: false };
        let p = json!({"type": "PASSWORD", "credential_password": "hunter2"});
        let keyed = request_hash(&crate::secrets::Key::from_bytes(&[7; 32]), &r, "u", &p);
        assert_ne!(keyed, request_hash(&crate::secrets::Key::from_bytes(&[8; 32]), &r, "u", &p));
        let text = serde_json::to_string(&vec![("api", json!("jobv3/create_credential")), ("params", canonical(&p)), ("user", json!("u"))])
            .unwrap();
        assert_ne!(keyed, hex::encode(Sha256::digest(text.as_bytes())));
    }

    #[test]
    fn answers_round_trip() {
        let row = |out: &ApiResult| {
            let (status, answer) = encode(out);
            IdemRow {
                app_code: "a".into(),
                key: "k".into(),
                request_hash: "h".into(),
                state: IdemState::Done,
                http_status: status,
                answer,
                created_at: 0,
                expires_at: 0,
                owner: String::new(),
                job_instance_id: None,
            }
        };
        let ok: ApiResult = Ok(json!({"job_instance_id": 7}));
        assert_eq!(replay(&row(&ok)), ok);
        let err: ApiResult = Err(JobError::missing("target_server"));
        assert_eq!(replay(&row(&err)), err);
    }
}
