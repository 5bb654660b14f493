//! Shoal's own API under `/api/shoal/v1/`, in the same envelope as JOB's:
//! - `GET hosts[?bk_biz_id=]`: the host registry (accepted hosts only); `alive` when any live
//!   replica holds the host's agent session.
//! - [`agents`]: enrolment tokens, pending agents, host moves (admins).
//! - `POST dynamic_groups` `{bk_scope_type, bk_scope_id, id?, name, set_ids?, module_ids?, selector?}`:
//!   save a host selector usable as `dynamic_group_list` in targets.
//! - `GET dynamic_groups?bk_scope_type=&bk_scope_id=`, `POST dynamic_groups/delete {…, id}`.
//!   A group is keyed by its scope and id: a call in one scope never reaches another's group.
//! - Business sets (`biz_sets.rs`): which businesses a `biz_set` scope reaches.
//! - `GET topo_names?bk_scope_type=biz&bk_scope_id=`, `POST topo_names {…, kind: set|module,
//!   id, name}`: names of a business's sets and modules (hosts show them beside the ids).
//! - `GET job_confirmation?bk_scope_type=&bk_scope_id=&job_instance_id=`: the job's
//!   confirmation steps waiting for a user, with their message and who may confirm.
//! - [`job_events`]: `GET jobs/{id}/events`, a job live as server-sent events (the console);
//!   `GET job_group_hosts`, every host of one of its groups.

pub mod agents;
pub mod app_tokens;
pub mod biz_sets;
pub mod checks;
pub mod job_events;

pub mod templates;
pub mod users;

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::selector::{GroupSpec, LabelSelector};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::lenient;
use shoal_store::{GroupRow, HostRow};

use super::envelope::{method_not_allowed, not_found};
use super::{decode, internal, ApiResult, Ctx};

pub async fn call(ctx: &Ctx, method: &Method, path: &str, params: Value) -> ApiResult {
    match (path.trim_end_matches('/'), method.clone()) {
        (p, _) if agents::handles(p) => agents::call(ctx, method, p, params).await,
        (p, _) if p == "checks" || p.starts_with("checks/") => checks::call(ctx, method, p, params).await,
        (p, _) if p.starts_with("danger/") => crate::api::v3::dangerous_rule::builtins_call(ctx, method, p, params).await,
        (p, _) if p.starts_with("templates") || p.starts_with("approvals") => templates::call(ctx, method, p, params).await,
        ("hosts", Method::GET | Method::POST) => hosts(ctx, params).await,
        ("dynamic_groups", Method::POST) => create_group(ctx, params).await,
        ("dynamic_groups", Method::GET) => list_groups(ctx, params).await,
        ("dynamic_groups/delete", Method::POST) => delete_group(ctx, params).await,
        ("job_confirmation", Method::GET | Method::POST) => job_confirmation(ctx, params).await,
        ("job_group_hosts", Method::GET | Method::POST) => job_events::group_hosts(ctx, params).await,
        ("topo_names", Method::GET) => list_topo_names(ctx, params).await,
        ("topo_names", Method::POST) => put_topo_name(ctx, params).await,
        (p, _) if p == "biz_sets" || p.starts_with("biz_sets/") => biz_sets::call(ctx, method, p, params).await,
        ("hosts" | "dynamic_groups" | "dynamic_groups/delete" | "topo_names", _) => Err(method_not_allowed()),
        (other, _) => Err(not_found(other)),
    }
}

pub fn host_json(h: &HostRow) -> Value {
    json!({
        "bk_host_id": h.bk_host_id, "bk_biz_id": h.bk_biz_id, "bk_cloud_id": h.bk_cloud_id, "ip": h.ip,
        "set_id": h.set_id, "module_id": h.module_id, "labels": h.labels, "hostname": h.hostname,
        "os": h.os, "agent_version": h.agent_version, "alive": h.alive as i32, "last_seen": h.last_seen,
    })
}

#[derive(Deserialize)]
struct HostsReq {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    bk_biz_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    selector: Option<String>,
}

async fn hosts(ctx: &Ctx, params: Value) -> ApiResult {
    let req: HostsReq = decode(params)?;
    let sel = LabelSelector::parse(req.selector.as_deref().unwrap_or(""))?;
    crate::api::authz::authorize_hosts(ctx, req.bk_biz_id).await?;
    let mut rows = ctx.shared.store.list_hosts(req.bk_biz_id).await.map_err(internal("list hosts"))?;
    rows.retain(|h| sel.matches(&h.labels));
    // Alive: held by any live replica, not only the one answering.
    let alive = ctx.shared.gateway.reachable_set().await;
    let names = ctx.shared.store.list_topo_names(req.bk_biz_id).await.map_err(internal("list topology names"))?;
    let name = |biz: i64, kind: &str, id: Option<i64>| {
        id.and_then(|id| names.iter().find(|n| n.bk_biz_id == biz && n.kind == kind && n.id == id)).map(|n| n.name.clone())
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|h| {
            let mut v = host_json(h);
            v["alive"] = json!(alive.contains(&h.bk_host_id) as i32);
            v["set_name"] = json!(name(h.bk_biz_id, "set", h.set_id));
            v["module_name"] = json!(name(h.bk_biz_id, "module", h.module_id));
            v
        })
        .collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize)]
struct GroupReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64_list")]
    set_ids: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "lenient::opt_i64_list")]
    module_ids: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    selector: Option<String>,
}

fn group_json(g: &GroupRow) -> Value {
    let spec: Value = serde_json::from_str(&g.spec).unwrap_or(Value::Null);
    json!({"id": g.id, "bk_scope_type": g.scope_type, "bk_scope_id": g.scope_id, "name": g.name,
           "set_ids": spec["set_ids"], "module_ids": spec["module_ids"], "selector": spec["selector"],
           "creator": g.creator, "create_time": g.create_time})
}

async fn create_group(ctx: &Ctx, params: Value) -> ApiResult {
    let req: GroupReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Manage).await?;
    let name = req.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| JobError::missing("name"))?;
    let selector = req.selector.unwrap_or_default();
    LabelSelector::parse(&selector)?;
    let spec = GroupSpec { set_ids: req.set_ids.unwrap_or_default(), module_ids: req.module_ids.unwrap_or_default(), selector };
    let id = match req.id.filter(|s| !s.trim().is_empty()) {
        Some(id) if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => id,
        Some(_) => return Err(JobError::illegal("id")),
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let row = GroupRow {
        id,
        scope_type: scope.scope_type,
        scope_id: scope.scope_id,
        name,
        spec: serde_json::to_string(&spec).map_err(internal("encode group"))?,
        creator: ctx.caller.username.clone(),
        create_time: shoal_core::time::now_ms(),
    };
    let event = ctx.audit_event(
        &Scope { scope_type: row.scope_type.clone(), scope_id: row.scope_id.clone() },
        "save_dynamic_group",
        &row.id,
        json!({"name": row.name, "spec": spec}),
    );
    ctx.shared.store.put_group(&row, &event).await.map_err(internal("put group"))?;
    Ok(group_json(&row))
}

async fn list_groups(ctx: &Ctx, params: Value) -> ApiResult {
    let req: GroupReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let rows = ctx.shared.store.list_groups(&scope.scope_type, &scope.scope_id).await.map_err(internal("list groups"))?;
    Ok(json!({"total": rows.len(), "data": rows.iter().map(group_json).collect::<Vec<_>>()}))
}

async fn delete_group(ctx: &Ctx, params: Value) -> ApiResult {
    let req: GroupReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Manage).await?;
    let id = req.id.ok_or_else(|| JobError::missing("id"))?;
    let event = ctx.audit_event(&scope, "delete_dynamic_group", &id, json!({}));
    match ctx.shared.store.delete_group(&scope.scope_type, &scope.scope_id, &id, &event).await.map_err(internal("delete group"))? {
        true => Ok(json!({"id": id})),
        false => Err(JobError::illegal("id")),
    }
}

#[derive(Deserialize)]
struct TopoNameReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
}

/// A business scope's id (sets and modules belong to one business).
fn biz_of(scope: &Scope) -> Result<i64, JobError> {
    match (scope.scope_type.as_str(), scope.scope_id.parse::<i64>()) {
        ("biz", Ok(id)) => Ok(id),
        _ => Err(JobError::illegal("bk_scope_type")),
    }
}

/// `POST topo_names {scope, kind: set|module, id, name}`: name a set or module of the
/// business (an empty name removes it); Manage role, audited.
async fn put_topo_name(ctx: &Ctx, params: Value) -> ApiResult {
    let req: TopoNameReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let bk_biz_id = biz_of(&scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Manage).await?;
    let kind = req.kind.filter(|k| k == "set" || k == "module").ok_or_else(|| JobError::missing_or_illegal("kind"))?;
    let id = req.id.filter(|i| *i >= 0).ok_or_else(|| JobError::missing_or_illegal("id"))?;
    let name = req.name.unwrap_or_default().trim().to_string();
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(JobError::illegal("name"));
    }
    let row = shoal_store::TopoNameRow { bk_biz_id, kind, id, name };
    let event = ctx.audit_event(&scope, "name_topology", format!("{}:{}", row.kind, row.id), json!({"name": row.name}));
    ctx.shared.store.put_topo_name(&row, &event).await.map_err(internal("name topology"))?;
    Ok(json!({"bk_biz_id": row.bk_biz_id, "kind": row.kind, "id": row.id, "name": (!row.name.is_empty()).then_some(&row.name)}))
}

/// `GET topo_names?scope`: the business's named sets and modules.
async fn list_topo_names(ctx: &Ctx, params: Value) -> ApiResult {
    let req: TopoNameReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let bk_biz_id = biz_of(&scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let rows = ctx.shared.store.list_topo_names(Some(bk_biz_id)).await.map_err(internal("list topology names"))?;
    let data: Vec<Value> = rows.iter().map(|n| json!({"kind": n.kind, "id": n.id, "name": n.name})).collect();
    Ok(json!({"total": data.len(), "data": data}))
}

#[derive(Deserialize)]
struct ConfirmationReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_instance_id: Option<i64>,
}

/// The job's confirmation steps waiting for a user: name, message, and the users who may
/// confirm (`anyone` when the step names none: whoever may operate the job's scope).
async fn job_confirmation(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ConfirmationReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let job = crate::api::v3::job_in_scope(ctx, &scope, req.job_instance_id).await?;
    let steps = ctx.shared.store.get_steps(job.id).await.map_err(internal("get steps"))?;
    let mut data = vec![];
    for s in steps {
        let waiting = s.status == shoal_proto::status::RunStatus::WaitingUser as i32;
        if s.step_type != shoal_proto::status::step_type::CONFIRM || !waiting {
            continue;
        }
        let extras = ctx.shared.store.step_extras(s.id).await.map_err(internal("step extras"))?;
        data.push(json!({"step_instance_id": s.id, "name": s.name, "message": extras.confirm_message.unwrap_or_default(),
                         "users": extras.confirm_users, "anyone": extras.confirm_users.is_empty()}));
    }
    Ok(json!({"job_instance_id": job.id, "status": job.status, "data": data}))
}
