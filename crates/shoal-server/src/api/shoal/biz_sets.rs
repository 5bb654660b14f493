//! Business sets under `/api/shoal/v1/biz_sets` (platform admins only): which businesses a
//! `biz_set` scope reaches. A set that is not defined reaches no host, so a grant or a call
//! on an arbitrary `biz_set` id never spans the fleet.
//!
//! - `POST biz_sets {id, name?, members: [bk_biz_id]}`: create or replace a set.
//! - `GET biz_sets`: every set with its members.
//! - `POST biz_sets/delete {id}`.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::limits::BIZ_SET_ID_RANGE;
use shoal_core::{JobError, Scope};
use shoal_proto::lenient;
use shoal_store::BizSetRow;

use crate::api::authz::authorize_platform;
use crate::api::envelope::{method_not_allowed, not_found};
use crate::api::{decode, internal, ApiResult, Ctx};

/// Most member businesses of one set.
const MAX_MEMBERS: usize = 10_000;

#[derive(Deserialize)]
struct SetReq {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64_list")]
    members: Option<Vec<i64>>,
}

fn set_json(s: &BizSetRow) -> Value {
    json!({"id": s.id, "name": s.name, "members": s.members, "updated_by": s.updated_by, "updated_at": s.updated_at})
}

fn set_scope(id: i64) -> Scope {
    Scope { scope_type: "biz_set".into(), scope_id: id.to_string() }
}

fn set_id(req: &SetReq) -> Result<i64, JobError> {
    let id = req.id.ok_or_else(|| JobError::missing("id"))?;
    if !BIZ_SET_ID_RANGE.contains(&id) {
        return Err(JobError::bad_request(format!(
            "id {id} is not a business set id ({}..={})",
            BIZ_SET_ID_RANGE.start(),
            BIZ_SET_ID_RANGE.end()
        )));
    }
    Ok(id)
}

async fn put(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: SetReq = decode(params)?;
    let id = set_id(&req)?;
    let mut members = req.members.ok_or_else(|| JobError::missing("members"))?;
    members.sort_unstable();
    members.dedup();
    if members.len() > MAX_MEMBERS || members.iter().any(|b| *b < 1 || BIZ_SET_ID_RANGE.contains(b)) {
        return Err(JobError::illegal("members"));
    }
    let row = BizSetRow {
        id,
        name: req.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| id.to_string()),
        members,
        updated_by: ctx.caller.username.clone(),
        updated_at: shoal_core::time::now_ms(),
    };
    let event = ctx.audit_event(&set_scope(id), "save_biz_set", id, json!({"name": row.name, "members": row.members}));
    ctx.shared.store.put_biz_set(&row, &event).await.map_err(internal("put business set"))?;
    Ok(set_json(&row))
}

async fn list(ctx: &Ctx) -> ApiResult {
    authorize_platform(ctx)?;
    let rows = ctx.shared.store.list_biz_sets().await.map_err(internal("list business sets"))?;
    Ok(json!({"total": rows.len(), "data": rows.iter().map(set_json).collect::<Vec<_>>()}))
}

async fn delete(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: SetReq = decode(params)?;
    let id = set_id(&req)?;
    let event = ctx.audit_event(&set_scope(id), "delete_biz_set", id, json!({}));
    match ctx.shared.store.delete_biz_set(id, &event).await.map_err(internal("delete business set"))? {
        true => Ok(json!({"id": id})),
        false => Err(JobError::illegal("id")),
    }
}

/// Routes `biz_sets…` paths (the part after `/api/shoal/v1/`).
pub async fn call(ctx: &Ctx, method: &axum::http::Method, path: &str, params: Value) -> ApiResult {
    use axum::http::Method;
    match (path, method.clone()) {
        ("biz_sets", Method::POST) => put(ctx, params).await,
        ("biz_sets", Method::GET) => list(ctx).await,
        ("biz_sets/delete", Method::POST) => delete(ctx, params).await,
        ("biz_sets" | "biz_sets/delete", _) => Err(method_not_allowed()),
        (other, _) => Err(not_found(other)),
    }
}
