//! Check records of `shoal check` under `/api/shoal/v1/checks…`. The caller runs the check
//! (submit, follow, read logs, judge); the server keeps the record so anyone can read it
//! while it runs, and so two runs on the same hosts do not overlap.
//!
//! - `POST checks {bk_scope_type, bk_scope_id, check, hosts: [string], ttl_secs?}`: open a
//!   record keyed by (check, sorted hosts) in state `wait`; answers `{check_id, run_id, …}`.
//!   While another run holds the key (not finished, not expired) → 500006.
//! - `POST checks/<id>/update {run_id, status?, job_instance_id?, step_instance_id?,
//!   infos?: [string], report?}`: the holding run appends info lines, moves the state
//!   (`started`, `finish`) and stores the report; each update pushes the expiry back.
//! - `GET checks/<id>`: the record, readable at any time.
//! - `GET checks?bk_scope_type=&bk_scope_id=&limit=`: latest records of a scope.
//!
//! Records belong to their scope: the key includes it, opening or updating one needs the
//! `run` role there and reading one any role; a finished record is final (a new run opens
//! it again). Opening and finishing a record are audited.

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::{lenient, ErrorCode};
use shoal_store::idempotency::check_status;
use shoal_store::{CheckRow, CheckUpdate};

use crate::api::authz::{authorize, Role};
use crate::api::{decode, internal, ApiResult, Ctx};

fn record_scope(r: &CheckRow) -> Scope {
    Scope { scope_type: r.scope_type.clone(), scope_id: r.scope_id.clone() }
}

/// Records live this long after their last update (the seed's 1800 s) unless asked longer.
const DEFAULT_TTL_SECS: i64 = 1800;
const MAX_TTL_SECS: i64 = 7 * 24 * 3600;
const MAX_INFO_LINES: usize = 20_000;

/// The record key of (scope, check, hosts): order and duplicates of hosts do not matter, and
/// two scopes never share a key.
pub fn record_id(scope: &Scope, check: &str, hosts: &[String]) -> String {
    let mut hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let scope_key = format!("{}:{}", scope.scope_type, scope.scope_id);
    let mut parts = vec![scope_key.as_str(), check];
    parts.extend(hosts);
    format!("check_{}", &hex::encode(Sha256::digest(parts.join("_").as_bytes()))[..32])
}

fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn check_json(r: &CheckRow, now: i64) -> Value {
    let infos: Value = serde_json::from_str(&r.infos).unwrap_or_else(|_| json!([]));
    let hosts: Value = serde_json::from_str(&r.hosts).unwrap_or_else(|_| json!([]));
    let report: Value = r.report.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null);
    json!({
        "check_id": r.id, "check": r.check_name, "bk_scope_type": r.scope_type, "bk_scope_id": r.scope_id,
        "hosts": hosts, "status": r.status, "finished": r.status == check_status::FINISH,
        "expired": r.status != check_status::FINISH && r.expires_at < now,
        "operator": r.username, "app_code": r.app_code,
        "job_instance_id": r.job_instance_id, "step_instance_id": r.step_instance_id,
        "infos": infos, "report": report,
        "create_time": r.created_at, "update_time": r.updated_at, "expire_time": r.expires_at,
    })
}

#[derive(Deserialize)]
struct StartReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    check: Option<String>,
    #[serde(default)]
    hosts: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    ttl_secs: Option<i64>,
}

pub async fn start(ctx: &Ctx, params: Value) -> ApiResult {
    let req: StartReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authorize(ctx, &scope, Role::Run).await?;
    let check = req
        .check
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty() && c.len() <= 128)
        .ok_or_else(|| JobError::missing_or_illegal("check"))?;
    let mut hosts = req.hosts.unwrap_or_default();
    if hosts.is_empty() {
        return Err(JobError::missing("hosts"));
    }
    hosts.sort_unstable();
    hosts.dedup();
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TTL_SECS).clamp(1, MAX_TTL_SECS);
    let now = shoal_core::time::now_ms();
    let row = CheckRow {
        id: record_id(&scope, &check, &hosts),
        check_name: check,
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        hosts: serde_json::to_string(&hosts).map_err(internal("encode hosts"))?,
        run_id: uuid::Uuid::new_v4().simple().to_string(),
        status: check_status::WAIT.into(),
        app_code: ctx.caller.app_code.clone(),
        username: ctx.caller.username.clone(),
        job_instance_id: 0,
        step_instance_id: 0,
        infos: json!(["[info] [init] check queued, waiting to run"]).to_string(),
        report: None,
        created_at: now,
        updated_at: now,
        expires_at: now + ttl * 1000,
    };
    match ctx.shared.store.claim_check(&row, now).await.map_err(internal("claim check"))? {
        None => {
            ctx.audit(&scope, "open_check_record", &row.id, json!({"check": row.check_name, "hosts": hosts})).await?;
            let mut v = check_json(&row, now);
            v["run_id"] = json!(row.run_id);
            Ok(v)
        }
        Some(running) => Err(JobError::with(ErrorCode::LOCK_NOT_ACQUIRED, running.id)),
    }
}

#[derive(Deserialize)]
struct UpdateReq {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    run_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    step_instance_id: Option<i64>,
    #[serde(default)]
    infos: Option<Vec<String>>,
    #[serde(default)]
    report: Option<Value>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    ttl_secs: Option<i64>,
}

pub async fn update(ctx: &Ctx, id: &str, params: Value) -> ApiResult {
    let req: UpdateReq = decode(params)?;
    let run_id = req.run_id.ok_or_else(|| JobError::missing("run_id"))?;
    if let Some(s) = &req.status {
        if ![check_status::WAIT, check_status::STARTED, check_status::FINISH].contains(&s.as_str()) {
            return Err(JobError::illegal("status"));
        }
    }
    let store = &ctx.shared.store;
    let Some(row) = store.get_check(id).await.map_err(internal("get check"))? else {
        return Err(JobError::illegal("check_id"));
    };
    let scope = record_scope(&row);
    authorize(ctx, &scope, Role::Run).await?;
    if row.status == check_status::FINISH {
        return Err(JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec!["check_id".into(), "the record is finished".into()]));
    }
    if row.run_id != run_id {
        return Err(JobError::args(
            ErrorCode::ILLEGAL_PARAM_WITH_REASON,
            vec!["run_id".into(), "the record is held by another run".into()],
        ));
    }
    let infos = match req.infos.filter(|i| !i.is_empty()) {
        Some(new) => {
            let mut all: Vec<String> = serde_json::from_str(&row.infos).unwrap_or_default();
            all.extend(new);
            let excess = all.len().saturating_sub(MAX_INFO_LINES);
            all.drain(..excess);
            Some(serde_json::to_string(&all).map_err(internal("encode infos"))?)
        }
        None => None,
    };
    let now = shoal_core::time::now_ms();
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TTL_SECS).clamp(1, MAX_TTL_SECS);
    let u = CheckUpdate {
        id: id.to_string(),
        run_id,
        status: req.status,
        job_instance_id: req.job_instance_id,
        step_instance_id: req.step_instance_id,
        infos,
        report: req.report.map(|r| r.to_string()),
        updated_at: now,
        expires_at: now + ttl * 1000,
    };
    if !store.update_check(&u).await.map_err(internal("update check"))? {
        return Err(JobError::args(
            ErrorCode::ILLEGAL_PARAM_WITH_REASON,
            vec!["run_id".into(), "the record is held by another run".into()],
        ));
    }
    let row = store.get_check(id).await.map_err(internal("get check"))?.ok_or_else(JobError::internal)?;
    if row.status == check_status::FINISH {
        ctx.audit(&scope, "finish_check_record", &row.id, json!({"check": row.check_name})).await?;
    }
    Ok(check_json(&row, now))
}

pub async fn show(ctx: &Ctx, id: &str) -> ApiResult {
    if !id_ok(id) {
        return Err(JobError::illegal("check_id"));
    }
    match ctx.shared.store.get_check(id).await.map_err(internal("get check"))? {
        Some(r) => {
            authorize(ctx, &record_scope(&r), Role::Access).await?;
            Ok(check_json(&r, shoal_core::time::now_ms()))
        }
        None => Err(JobError::illegal("check_id")),
    }
}

#[derive(Deserialize)]
struct ListReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    limit: Option<i64>,
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authorize(ctx, &scope, Role::Access).await?;
    let limit = req.limit.unwrap_or(20).clamp(1, 500);
    let rows = ctx.shared.store.list_checks(&scope.scope_type, &scope.scope_id, limit).await.map_err(internal("list checks"))?;
    let now = shoal_core::time::now_ms();
    Ok(json!({"total": rows.len(), "data": rows.iter().map(|r| check_json(r, now)).collect::<Vec<_>>()}))
}

/// Routes `checks…` paths (the part after `/api/shoal/v1/`).
pub async fn call(ctx: &Ctx, method: &axum::http::Method, path: &str, params: Value) -> ApiResult {
    use axum::http::Method;
    let rest = path.trim_end_matches('/').strip_prefix("checks").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match (parts.as_slice(), method.clone()) {
        ([], Method::POST) => start(ctx, params).await,
        ([], Method::GET) => list(ctx, params).await,
        ([id], Method::GET | Method::POST) => show(ctx, id).await,
        ([id, "update"], Method::POST) if id_ok(id) => update(ctx, id, params).await,
        ([] | [_] | [_, "update"], _) => Err(crate::api::envelope::method_not_allowed()),
        _ => Err(crate::api::envelope::not_found(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ignores_host_order_and_duplicates() {
        let biz = Scope::biz(2);
        let a = record_id(&biz, "agent", &["0:10.0.0.2:2".into(), "0:10.0.0.1:1".into()]);
        let b = record_id(&biz, "agent", &["0:10.0.0.1:1".into(), "0:10.0.0.2:2".into(), "0:10.0.0.1:1".into()]);
        assert_eq!(a, b);
        assert_ne!(a, record_id(&biz, "other", &["0:10.0.0.1:1".into(), "0:10.0.0.2:2".into()]));
        assert_ne!(a, record_id(&Scope::biz(3), "agent", &["0:10.0.0.1:1".into(), "0:10.0.0.2:2".into()]), "scopes never share a key");
        assert!(id_ok(&a));
    }
}
