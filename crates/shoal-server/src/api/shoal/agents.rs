//! Host identity administration under `/api/shoal/v1/`, platform admins only; every change is
//! an audit event written with it:
//! - `POST agent_tokens {bk_biz_id?, expires_in_secs?, single_use?, pending?, description?}`:
//!   a new enrolment token, answered once (only its hash is kept).
//! - `GET agent_tokens`; `POST agent_tokens/revoke {id}`.
//! - `GET agents/pending`: hosts whose agents wait for acceptance.
//! - `POST agents/accept {bk_host_id | agent_id}`: a pending host becomes a target.
//! - `POST hosts/move {bk_host_id, bk_biz_id?, bk_cloud_id?, ip?, set_id?, module_id?}`: rebind
//!   a host's address, business or topology (its agent must then say the same in its hello).
//! - `POST hosts/remove {bk_host_id, force?}`: take a host out of the registry (no listing, no
//!   target, its address free) and revoke its agent; a host whose agent is connected is
//!   refused unless `force` (its agent is then disconnected).

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::agent::{Reject, ServerMsg};
use shoal_proto::lenient;
use shoal_store::hosts::{AgentTokenRow, BoundHost, HostMove, MoveRefusal, NewAgentToken};

use super::super::authz::authorize_platform;
use super::super::envelope::method_not_allowed;
use super::super::{decode, internal, ApiResult, Ctx};
use crate::gateway::enrol;

const PATHS: [&str; 6] = ["agent_tokens", "agent_tokens/revoke", "agents/pending", "agents/accept", "hosts/move", "hosts/remove"];

/// Whether `path` (under `/api/shoal/v1/`) is served here.
pub fn handles(path: &str) -> bool {
    PATHS.contains(&path.trim_end_matches('/'))
}

/// Whether the answer carries a secret (a new token): never kept for replay.
pub fn returns_secret(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == "agent_tokens"
}

pub async fn call(ctx: &Ctx, method: &Method, path: &str, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    match (path.trim_end_matches('/'), method.clone()) {
        ("agent_tokens", Method::POST) => create_token(ctx, params).await,
        ("agent_tokens", Method::GET) => list_tokens(ctx).await,
        ("agent_tokens/revoke", Method::POST) => revoke_token(ctx, params).await,
        ("agents/pending", Method::GET | Method::POST) => pending(ctx).await,
        ("agents/accept", Method::POST) => accept(ctx, params).await,
        ("hosts/move", Method::POST) => move_host(ctx, params).await,
        ("hosts/remove", Method::POST) => remove_host(ctx, params).await,
        _ => Err(method_not_allowed()),
    }
}

fn platform() -> Scope {
    Scope { scope_type: String::new(), scope_id: String::new() }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_biz_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    expires_in_secs: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    single_use: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    pending: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_string")]
    description: Option<String>,
}

fn token_json(t: &AgentTokenRow) -> Value {
    json!({"id": t.id, "bk_biz_id": t.bk_biz_id, "pending": t.pending, "single_use": t.single_use, "uses": t.uses,
           "expires_at": t.expires_at, "revoked_at": t.revoked_at, "description": t.description,
           "created_by": t.created_by, "created_at": t.created_at})
}

async fn create_token(ctx: &Ctx, params: Value) -> ApiResult {
    let req: TokenReq = decode(params)?;
    if req.bk_biz_id.is_some_and(|b| b <= 0) {
        return Err(JobError::illegal("bk_biz_id"));
    }
    if req.expires_in_secs.is_some_and(|s| s <= 0 || s > 10 * 365 * 86_400) {
        return Err(JobError::illegal("expires_in_secs"));
    }
    let description = req.description.unwrap_or_default();
    if description.len() > 255 {
        return Err(JobError::illegal("description"));
    }
    let now = shoal_core::time::now_ms();
    let token = enrol::new_token();
    let t = NewAgentToken {
        token_hash: enrol::token_hash(&token),
        bk_biz_id: req.bk_biz_id,
        pending: req.pending.unwrap_or(false),
        single_use: req.single_use.unwrap_or(false),
        expires_at: req.expires_in_secs.map(|s| now + s * 1000),
        description,
        created_by: ctx.caller.username.clone(),
        created_at: now,
    };
    let detail = json!({"bk_biz_id": t.bk_biz_id, "pending": t.pending, "single_use": t.single_use, "expires_at": t.expires_at});
    let event = ctx.audit_event(&platform(), "create_agent_token", "", detail);
    let id = ctx.shared.store.create_agent_token(&t, &event).await.map_err(internal("create agent token"))?;
    tracing::info!(token_id = id, bk_biz_id = t.bk_biz_id, pending = t.pending, single_use = t.single_use, "enrolment token created");
    Ok(
        json!({"id": id, "token": token, "bk_biz_id": t.bk_biz_id, "pending": t.pending, "single_use": t.single_use, "expires_at": t.expires_at}),
    )
}

async fn list_tokens(ctx: &Ctx) -> ApiResult {
    let rows = ctx.shared.store.list_agent_tokens().await.map_err(internal("list agent tokens"))?;
    let data: Vec<Value> = rows.iter().map(token_json).collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IdReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
}

async fn revoke_token(ctx: &Ctx, params: Value) -> ApiResult {
    let req: IdReq = decode(params)?;
    let id = req.id.ok_or_else(|| JobError::missing("id"))?;
    let event = ctx.audit_event(&platform(), "revoke_agent_token", id, json!({}));
    if !ctx.shared.store.revoke_agent_token(id, shoal_core::time::now_ms(), &event).await.map_err(internal("revoke agent token"))? {
        return Err(JobError::bad_request(format!("no enrolment token {id} to revoke (unknown, or revoked already)")));
    }
    Ok(json!({"id": id, "revoked": true}))
}

fn bound_json(b: &BoundHost) -> Value {
    let mut v = super::host_json(&b.host);
    v["agent_id"] = json!(b.host.agent_id);
    v["enrolled_by"] = json!(b.enrolled_by);
    v
}

async fn pending(ctx: &Ctx) -> ApiResult {
    let rows = ctx.shared.store.pending_hosts().await.map_err(internal("pending hosts"))?;
    let data: Vec<Value> = rows.iter().map(bound_json).collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AcceptReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_host_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    agent_id: Option<String>,
}

async fn accept(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AcceptReq = decode(params)?;
    let store = &ctx.shared.store;
    let pending = store.pending_hosts().await.map_err(internal("pending hosts"))?;
    let found = match (req.agent_id.filter(|a| !a.trim().is_empty()), req.bk_host_id) {
        (Some(a), _) => pending.into_iter().find(|b| b.host.agent_id == a.trim()),
        (None, Some(id)) => pending.into_iter().find(|b| b.host.bk_host_id == id),
        (None, None) => return Err(JobError::missing("bk_host_id")),
    };
    let Some(b) = found else {
        return Err(JobError::bad_request("no pending agent with that host id or agent id"));
    };
    let host_id = b.host.bk_host_id;
    let detail = json!({"agent_id": b.host.agent_id, "bk_biz_id": b.host.bk_biz_id, "bk_cloud_id": b.host.bk_cloud_id, "ip": b.host.ip});
    let event = ctx.audit_event(&Scope::biz(b.host.bk_biz_id), "accept_agent", host_id, detail);
    if !store.accept_host(host_id, &event).await.map_err(internal("accept host"))? {
        return Err(JobError::bad_request(format!("host {host_id} is not pending")));
    }
    tracing::info!(host_id, agent_id = %b.host.agent_id, "agent accepted");
    Ok(json!({"bk_host_id": host_id, "agent_id": b.host.agent_id, "accepted": true}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MoveReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_host_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_biz_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_cloud_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    ip: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    set_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    module_id: Option<i64>,
}

async fn move_host(ctx: &Ctx, params: Value) -> ApiResult {
    let req: MoveReq = decode(params)?;
    let host_id = req.bk_host_id.ok_or_else(|| JobError::missing("bk_host_id"))?;
    if let Some(ip) = &req.ip {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(JobError::illegal("ip"));
        }
    }
    if req.bk_biz_id.is_some_and(|b| b <= 0) {
        return Err(JobError::illegal("bk_biz_id"));
    }
    let m = HostMove { bk_biz_id: req.bk_biz_id, bk_cloud_id: req.bk_cloud_id, ip: req.ip, set_id: req.set_id, module_id: req.module_id };
    if m == HostMove::default() {
        return Err(JobError::bad_request("nothing to move: give bk_biz_id, bk_cloud_id, ip, set_id or module_id"));
    }
    let store = &ctx.shared.store;
    let before = store.hosts_by_ids(&[host_id]).await.map_err(internal("hosts by ids"))?.into_iter().next();
    let from = before
        .as_ref()
        .map(|h| json!({"bk_biz_id": h.bk_biz_id, "bk_cloud_id": h.bk_cloud_id, "ip": h.ip, "set_id": h.set_id, "module_id": h.module_id}));
    let to = json!({"bk_biz_id": m.bk_biz_id, "bk_cloud_id": m.bk_cloud_id, "ip": m.ip, "set_id": m.set_id, "module_id": m.module_id});
    let scope = Scope::biz(before.as_ref().map_or(0, |h| h.bk_biz_id));
    let event = ctx.audit_event(&scope, "move_host", host_id, json!({"from": from, "to": to}));
    match store.move_host(host_id, &m, &event).await.map_err(internal("move host"))? {
        Ok(b) => {
            tracing::info!(host_id, bk_biz_id = b.host.bk_biz_id, ip = %b.host.ip, "host moved");
            Ok(bound_json(&b))
        }
        Err(MoveRefusal::NoSuchHost) => Err(JobError::bad_request(format!("no host {host_id}"))),
        Err(MoveRefusal::AddressTaken) => Err(JobError::bad_request("that address belongs to another host")),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RemoveReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    bk_host_id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    force: Option<bool>,
}

/// Removes a host from the registry: its agent is revoked (and disconnected when it is
/// connected, which takes `force`), the host retired.
async fn remove_host(ctx: &Ctx, params: Value) -> ApiResult {
    let req: RemoveReq = decode(params)?;
    let host_id = req.bk_host_id.ok_or_else(|| JobError::missing("bk_host_id"))?;
    let store = &ctx.shared.store;
    let host = store.hosts_by_ids(&[host_id]).await.map_err(internal("hosts by ids"))?.into_iter().next();
    let host = host.ok_or_else(|| JobError::bad_request(format!("no host {host_id}")))?;
    let alive = ctx.shared.gateway.reachable_set().await.contains(&host_id);
    if alive && !req.force.unwrap_or(false) {
        return Err(JobError::bad_request(format!(
            "host {host_id} ({}:{}) is connected: stop its agent first, or remove it with force",
            host.bk_cloud_id, host.ip
        )));
    }
    let event = ctx.audit_event(
        &Scope::biz(host.bk_biz_id),
        "remove_host",
        host_id,
        json!({"bk_cloud_id": host.bk_cloud_id, "ip": host.ip, "agent_id": host.agent_id, "was_connected": alive}),
    );
    // Retired first (with its audit event), then its agent revoked (which would retire it too).
    if !store.remove_host(host_id, &event).await.map_err(internal("remove host"))? {
        return Err(JobError::bad_request(format!("no host {host_id}")));
    }
    if !host.agent_id.is_empty() {
        store.revoke_agent(&host.agent_id, shoal_core::time::now_ms()).await.map_err(internal("revoke agent"))?;
    }
    if alive {
        let bye = Reject { message: "host removed from the registry".into(), retry: false };
        ctx.shared.gateway.send(host_id, ServerMsg::Reject(bye)).await;
    }
    tracing::info!(host_id, ip = %host.ip, was_connected = alive, "host removed");
    Ok(json!({"bk_host_id": host_id, "bk_biz_id": host.bk_biz_id, "bk_cloud_id": host.bk_cloud_id, "ip": host.ip,
              "removed": true, "was_connected": alive}))
}
