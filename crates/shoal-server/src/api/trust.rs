//! Shoal's trust administration under `/api/shoal/v1/`, admin apps only:
//! - `GET apps`; `POST apps {code, description?, admin?}` (answers the secret, once);
//!   `POST apps/rotate {code}` (a new secret, once); `POST apps/revoke {code}`.
//! - `GET grants[?app_code=]`; `POST grants {app_code, bk_scope_type, bk_scope_id|"*", role}`;
//!   `POST grants/delete {…}`; roles: run, manage, approve, admin.
//! - `GET account_grants[?app_code=]`; `POST account_grants {app_code, bk_scope_type,
//!   bk_scope_id, alias|"*"}` (the alias is resolved to the account's id, which the grant
//!   follows; `bk_scope_id` `*` only with alias `*`); `POST account_grants/delete {…}`.
//! - `GET audit?time_start=&time_end=&username=&app_code=&bk_scope_type=&bk_scope_id=&action=&after_seq=&length=`
//!   (ms timestamps; up to 1000 events in chain order); `GET audit/verify[?expect_head=SEQ:HASH]`
//!   (the chain under the audit key; `head` in the answer is what to keep elsewhere).
//! - `GET danger_records?since=&length=`: recorded dangerous-rule hits, newest first.
//! - `POST agents/revoke {agent_id | bk_host_id}`: the agent is refused from then on.
//!
//! Every change is an audit event.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::JobError;
use shoal_proto::agent::{Reject, ServerMsg};
use shoal_proto::lenient;
use shoal_store::trust::{AccountGrant, AuditQuery, AuditRow, ChainHead, Grant, ALL_ACCOUNTS};
use shoal_store::{AuditEvent, StoreError};

use super::authz::{authorize_platform, Role};
use super::envelope::method_not_allowed;
use super::{decode, internal, ApiResult, Ctx};
use crate::auth;

const PATHS: [&str; 11] = [
    "apps",
    "apps/rotate",
    "apps/revoke",
    "grants",
    "grants/delete",
    "account_grants",
    "account_grants/delete",
    "audit",
    "audit/verify",
    "danger_records",
    "agents/revoke",
];

/// Whether `path` (under `/api/shoal/v1/`) is served here.
pub fn handles(path: &str) -> bool {
    PATHS.contains(&path.trim_end_matches('/'))
}

/// Whether the answer of `path` carries a secret (a new or rotated app secret): such answers
/// must not be kept anywhere, e.g. for replaying a repeated request.
pub fn returns_secret(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "apps" | "apps/rotate")
}

pub async fn call(ctx: &Ctx, method: &Method, path: &str, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    match (path.trim_end_matches('/'), method.clone()) {
        ("apps", Method::GET) => list_apps(ctx).await,
        ("apps", Method::POST) => create_app(ctx, params).await,
        ("apps/rotate", Method::POST) => rotate_app(ctx, params).await,
        ("apps/revoke", Method::POST) => revoke_app(ctx, params).await,
        ("grants", Method::GET) => list_grants(ctx, params).await,
        ("grants", Method::POST) => change_grant(ctx, params, true).await,
        ("grants/delete", Method::POST) => change_grant(ctx, params, false).await,
        ("account_grants", Method::GET) => list_account_grants(ctx, params).await,
        ("account_grants", Method::POST) => change_account_grant(ctx, params, true).await,
        ("account_grants/delete", Method::POST) => change_account_grant(ctx, params, false).await,
        ("audit", Method::GET | Method::POST) => audit_events(ctx, params).await,
        ("audit/verify", Method::GET | Method::POST) => verify(ctx, params).await,
        ("danger_records", Method::GET | Method::POST) => danger_records(ctx, params).await,
        ("agents/revoke", Method::POST) => revoke_agent(ctx, params).await,
        _ => Err(method_not_allowed()),
    }
}

/// Record a platform-level change.
pub async fn record(ctx: &Ctx, action: &str, resource_id: &str, detail: Value) -> Result<(), JobError> {
    let mut detail = detail;
    detail["request_id"] = json!(ctx.request_id);
    let e = AuditEvent {
        time: shoal_core::time::now_ms(),
        app_code: ctx.caller.app_code.clone(),
        username: ctx.caller.username.clone(),
        scope_type: String::new(),
        scope_id: String::new(),
        action: action.into(),
        resource_id: resource_id.into(),
        detail: detail.to_string(),
    };
    ctx.shared.store.audit(&e).await.map_err(internal("audit"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AppReq {
    #[serde(deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    description: Option<String>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    admin: Option<bool>,
}

fn valid_code(c: &str) -> bool {
    !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn app_code(req: &AppReq) -> Result<String, JobError> {
    let code = req.code.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| JobError::missing("code"))?;
    if !valid_code(code) {
        return Err(JobError::illegal("code"));
    }
    Ok(code.to_string())
}

/// The bootstrap app (configured, or generated at first start as `shoal-admin`) stays a full
/// admin: it cannot be revoked here.
fn is_bootstrap(ctx: &Ctx, code: &str) -> bool {
    match ctx.shared.config.bootstrap_app.as_deref().and_then(|s| s.split_once(':')) {
        Some((c, _)) => c == code,
        None => code == "shoal-admin",
    }
}

async fn list_apps(ctx: &Ctx) -> ApiResult {
    let apps = ctx.shared.store.list_apps().await.map_err(internal("list apps"))?;
    let data: Vec<Value> = apps
        .iter()
        .map(|a| {
            json!({"code": a.code, "description": a.description, "admin": a.is_admin, "create_time": a.created_at,
                   "revoked": a.revoked_at.is_some(), "revoke_time": a.revoked_at})
        })
        .collect();
    Ok(json!({"total": data.len(), "data": data}))
}

async fn create_app(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AppReq = decode(params)?;
    let code = app_code(&req)?;
    let description = req.description.clone().unwrap_or_default();
    if description.chars().count() > 1024 {
        return Err(JobError::illegal("description"));
    }
    let admin = req.admin.unwrap_or(false);
    let secret = auth::random_secret();
    match ctx.shared.store.create_app(&auth::new_app(&code, &secret, admin), &description).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(JobError::with(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, "code").tap_reason("exists"))
        }
        Err(e) => return Err(internal("create app")(e)),
    }
    record(ctx, "create_app", &code, json!({"admin": admin})).await?;
    tracing::info!(app_code = %code, admin, "app created");
    Ok(json!({"code": code, "secret": secret, "admin": admin, "description": description}))
}

async fn rotate_app(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AppReq = decode(params)?;
    let code = app_code(&req)?;
    let secret = auth::random_secret();
    let row = auth::new_app(&code, &secret, false);
    match ctx.shared.store.rotate_app(&code, &row.salt, &row.secret_hash).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Err(JobError::illegal("code")),
        Err(e) => return Err(internal("rotate app")(e)),
    }
    auth::SECRET_CACHE.forget(&code);
    record(ctx, "rotate_app", &code, json!({})).await?;
    tracing::info!(app_code = %code, "app secret rotated");
    Ok(json!({"code": code, "secret": secret}))
}

async fn revoke_app(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AppReq = decode(params)?;
    let code = app_code(&req)?;
    if is_bootstrap(ctx, &code) || code == ctx.caller.app_code {
        // Revoking the bootstrap app or oneself would lock the platform's admins out.
        return Err(JobError::with(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, "code").tap_reason("cannot revoke this app"));
    }
    match ctx.shared.store.revoke_app(&code, shoal_core::time::now_ms()).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Err(JobError::illegal("code")),
        Err(e) => return Err(internal("revoke app")(e)),
    }
    auth::SECRET_CACHE.forget(&code);
    record(ctx, "revoke_app", &code, json!({})).await?;
    tracing::info!(app_code = %code, "app revoked");
    Ok(json!({"code": code, "revoked": true}))
}

trait Reason {
    fn tap_reason(self, reason: &str) -> Self;
}

impl Reason for JobError {
    fn tap_reason(mut self, reason: &str) -> Self {
        self.args.push(reason.into());
        self
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GrantReq {
    #[serde(deserialize_with = "lenient::opt_string")]
    app_code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    bk_scope_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    bk_scope_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    role: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    alias: Option<String>,
}

/// `(app_code, scope_type, scope_id)` of a grant request; the app must exist and be live.
async fn grant_target(ctx: &Ctx, req: &GrantReq) -> Result<(String, String, String), JobError> {
    let code = req.app_code.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| JobError::missing("app_code"))?;
    let ty = req.bk_scope_type.as_deref().map(str::trim).ok_or_else(|| JobError::missing("bk_scope_type"))?;
    if !matches!(ty, "biz" | "biz_set" | "tenant_set") {
        return Err(JobError::illegal("bk_scope_type"));
    }
    let id = req.bk_scope_id.as_deref().map(str::trim).ok_or_else(|| JobError::missing("bk_scope_id"))?;
    if id != "*" && id.parse::<i64>().is_err() {
        return Err(JobError::illegal("bk_scope_id"));
    }
    // `user:<name>` grants to a Shoal user (see `api/shoal/users.rs`).
    let live = match code.strip_prefix("user:") {
        Some(name) => ctx.shared.store.get_user(name).await.map_err(internal("get user"))?.is_some(),
        None => ctx.shared.store.list_apps().await.map_err(internal("list apps"))?.iter().any(|a| a.code == code && a.revoked_at.is_none()),
    };
    if !live {
        return Err(JobError::illegal("app_code"));
    }
    Ok((code.to_string(), ty.to_string(), id.to_string()))
}

async fn change_grant(ctx: &Ctx, params: Value, add: bool) -> ApiResult {
    let req: GrantReq = decode(params)?;
    let role = req.role.as_deref().map(str::trim).ok_or_else(|| JobError::missing("role"))?;
    let role = Role::parse(role).and_then(Role::name).ok_or_else(|| JobError::illegal("role"))?;
    let (app_code, scope_type, scope_id) = grant_target(ctx, &req).await?;
    let g = Grant { app_code, scope_type, scope_id, role: role.into() };
    let store = &ctx.shared.store;
    let now = shoal_core::time::now_ms();
    if add {
        store.put_grant(&g, &ctx.caller.username, now).await.map_err(internal("put grant"))?;
    } else if !store.delete_grant(&g).await.map_err(internal("delete grant"))? {
        return Err(JobError::illegal("role"));
    }
    let action = if add { "grant_role" } else { "revoke_role" };
    record(ctx, action, &g.app_code, json!({"bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "role": g.role})).await?;
    Ok(json!({"app_code": g.app_code, "bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "role": g.role}))
}

/// The account an account-grant request names: `*` (every account of the scope), or the
/// account with that alias in that one scope, by id — so the grant stays with the account and
/// does not pass to another one created later under the same alias.
async fn granted_account(ctx: &Ctx, scope_type: &str, scope_id: &str, alias: &str) -> Result<(i64, String), JobError> {
    if alias == "*" {
        return Ok((ALL_ACCOUNTS, "*".into()));
    }
    if scope_id == "*" {
        return Err(JobError::with(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, "alias")
            .tap_reason("a named account belongs to one scope: give bk_scope_id, or alias *"));
    }
    let account = ctx.shared.store.get_account_by_alias(scope_type, scope_id, alias).await.map_err(internal("get account"))?;
    let account = account.ok_or_else(|| {
        JobError::with(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, "alias").tap_reason("no such account in this scope")
    })?;
    Ok((account.id, account.alias))
}

async fn change_account_grant(ctx: &Ctx, params: Value, add: bool) -> ApiResult {
    let req: GrantReq = decode(params)?;
    let alias = req.alias.as_deref().map(str::trim).filter(|a| !a.is_empty()).ok_or_else(|| JobError::missing("alias"))?;
    if alias.chars().count() > 255 {
        return Err(JobError::illegal("alias"));
    }
    let (app_code, scope_type, scope_id) = grant_target(ctx, &req).await?;
    let (account_id, alias) = granted_account(ctx, &scope_type, &scope_id, alias).await?;
    let g = AccountGrant { app_code, scope_type, scope_id, account_id, alias };
    let store = &ctx.shared.store;
    if add {
        store.put_account_grant(&g, &ctx.caller.username, shoal_core::time::now_ms()).await.map_err(internal("put account grant"))?;
    } else if !store.delete_account_grant(&g).await.map_err(internal("delete account grant"))? {
        return Err(JobError::illegal("alias"));
    }
    let action = if add { "grant_account" } else { "revoke_account" };
    let detail = json!({"bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "alias": g.alias, "account_id": g.account_id});
    record(ctx, action, &g.app_code, detail).await?;
    Ok(
        json!({"app_code": g.app_code, "bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "alias": g.alias, "account_id": g.account_id}),
    )
}

async fn list_grants(ctx: &Ctx, params: Value) -> ApiResult {
    let req: GrantReq = decode(params)?;
    let rows = ctx.shared.store.list_grants(req.app_code.as_deref()).await.map_err(internal("list grants"))?;
    let data: Vec<Value> = rows
        .iter()
        .map(|g| json!({"app_code": g.app_code, "bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "role": g.role}))
        .collect();
    Ok(json!({"total": data.len(), "data": data}))
}

async fn list_account_grants(ctx: &Ctx, params: Value) -> ApiResult {
    let req: GrantReq = decode(params)?;
    let rows = ctx.shared.store.list_account_grants(req.app_code.as_deref()).await.map_err(internal("list account grants"))?;
    let data: Vec<Value> = rows
        .iter()
        .map(|g| json!({"app_code": g.app_code, "bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "alias": g.alias, "account_id": g.account_id}))
        .collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    time_start: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    time_end: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    username: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    app_code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    bk_scope_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    bk_scope_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    action: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    after_seq: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    since: Option<i64>,
}

pub fn audit_json(r: &AuditRow) -> Value {
    let detail: Value = serde_json::from_str(&r.event.detail).unwrap_or(Value::Null);
    json!({
        "seq": r.seq, "time": r.event.time, "app_code": r.event.app_code, "username": r.event.username,
        "bk_scope_type": r.event.scope_type, "bk_scope_id": r.event.scope_id, "action": r.event.action,
        "resource_id": r.event.resource_id, "detail": detail, "prev_hash": r.prev_hash, "hash": r.hash,
    })
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty())
}

async fn audit_events(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AuditReq = decode(params)?;
    let limit = req.length.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(JobError::illegal("length"));
    }
    let q = AuditQuery {
        time_start: req.time_start,
        time_end: req.time_end,
        username: nonempty(req.username),
        app_code: nonempty(req.app_code),
        scope_type: nonempty(req.bk_scope_type),
        scope_id: nonempty(req.bk_scope_id),
        action: nonempty(req.action),
        after_seq: req.after_seq,
        limit,
    };
    let rows = ctx.shared.store.audit_events(&q).await.map_err(internal("audit events"))?;
    let data: Vec<Value> = rows.iter().map(audit_json).collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VerifyReq {
    /// `SEQ:HASH` exported earlier: the chain must still contain it.
    #[serde(deserialize_with = "lenient::opt_string")]
    expect_head: Option<String>,
}

async fn verify(ctx: &Ctx, params: Value) -> ApiResult {
    let req: VerifyReq = decode(params)?;
    let expect = match nonempty(req.expect_head) {
        Some(h) => Some(
            h.parse::<ChainHead>()
                .map_err(|why| JobError::with(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, "expect_head").tap_reason(&why))?,
        ),
        None => None,
    };
    let r = ctx.shared.store.verify_audit(expect.as_ref()).await.map_err(internal("verify audit"))?;
    if let Some((seq, why)) = &r.broken {
        tracing::error!(seq, reason = %why, "audit chain broken");
    }
    Ok(json!({
        "ok": r.ok(), "checked": r.checked, "legacy": r.legacy,
        "head": r.head.as_ref().map(|h| h.to_string()),
        "broken_at": r.broken.as_ref().map(|b| b.0), "reason": r.broken.as_ref().map(|b| b.1.clone()),
    }))
}

async fn danger_records(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AuditReq = decode(params)?;
    let limit = req.length.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(JobError::illegal("length"));
    }
    let rows = ctx.shared.store.list_danger_records(req.since, limit).await.map_err(internal("danger records"))?;
    let data: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({"id": d.id, "time": d.time, "rule_id": d.rule_id, "expression": d.expression, "action": d.action,
                   "blocked": d.blocked, "bk_scope_type": d.scope_type, "bk_scope_id": d.scope_id, "app_code": d.app_code,
                   "operator": d.operator, "script_language": d.language, "script_sha256": d.script_sha256,
                   "line": d.line, "line_content": d.line_content, "match_content": d.match_content})
        })
        .collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AgentReq {
    #[serde(deserialize_with = "lenient::opt_string")]
    agent_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_host_id: Option<i64>,
}

async fn revoke_agent(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AgentReq = decode(params)?;
    let store = &ctx.shared.store;
    let (agent_id, host_id) = match (nonempty(req.agent_id), req.bk_host_id) {
        (Some(a), _) => {
            let host = store.list_hosts(None).await.map_err(internal("list hosts"))?.into_iter().find(|h| h.agent_id == a);
            (a, host.map(|h| h.bk_host_id))
        }
        (None, Some(id)) => {
            let host = store.hosts_by_ids(&[id]).await.map_err(internal("hosts by ids"))?.into_iter().next();
            let host = host.ok_or_else(|| JobError::illegal("bk_host_id"))?;
            (host.agent_id, Some(id))
        }
        (None, None) => return Err(JobError::missing("agent_id")),
    };
    if agent_id.len() > 128 {
        return Err(JobError::illegal("agent_id"));
    }
    store.revoke_agent(&agent_id, shoal_core::time::now_ms()).await.map_err(internal("revoke agent"))?;
    if let Some(h) = host_id {
        // The session forwards the refusal and closes; the agent stops retrying.
        let bye = Reject { message: "agent revoked".into(), retry: false };
        ctx.shared.gateway.send(h, ServerMsg::Reject(bye)).await;
    }
    record(ctx, "revoke_agent", &agent_id, json!({"bk_host_id": host_id})).await?;
    tracing::info!(agent_id = %agent_id, host_id, "agent revoked");
    Ok(json!({"agent_id": agent_id, "bk_host_id": host_id, "revoked": true}))
}
