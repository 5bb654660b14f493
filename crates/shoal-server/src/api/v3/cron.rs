//! Cron jobs through JOB v3 (job-crontab): `save_cron`, `update_cron_status`,
//! `get_cron_list`, `get_cron_detail`, `delete_cron`.
//!
//! A cron runs one of the scope's plans, on a 5-field crontab `expression` or once at
//! `execute_time` (Unix seconds), in `execute_time_zone`, as the principal that created it —
//! or, once another saved or started it, as that one (an edit never borrows the rights of the
//! cron's creator); the scheduler is `engine::cron`. Every save leaves the cron disabled, a
//! new one and an edited one alike, as bk-job's `saveCron` does (`update_cron_status` 1
//! starts it). Answers are bk-job's `EsbCronInfoV3DTO`, times in seconds, `expression` in
//! bk-job's form ([`sched::user_form`]); `status` is 1 for a running cron, and for a paused
//! one 2 in `save_cron`'s answer but 0 in `get_cron_list` and `get_cron_detail`, as bk-job's
//! code writes them. Shoal adds `execute_time`, `missed_policy` (what a fire missed while no
//! server ran does: `run_once`, the default, or `skip`), `next_fire_time`, and in the detail
//! the latest fires (`fire_list`).
//!
//! Each `*_in` function takes parsed parameters and a resolved scope, so other path shapes
//! (JOB v2) can share them.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::limits::page;
use shoal_core::template::VarType;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{Page, ScopeReq};
use shoal_proto::{lenient, ErrorCode};
use shoal_store::{CronActor, CronQuery, CronRow};

use super::job_plan::{plan_vars, var_index, GlobalVarReq};
use super::server::esb_server;
use crate::api::authz::{authorize, Role};
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::auth::Principal;
use crate::engine::cron::{self as sched, MISSED_RUN_ONCE, MISSED_SKIP};
use crate::engine::variables::MASK;

/// Longest cron name (bk-job's `MaxLengthChecker(60)`).
const MAX_NAME_CHARS: usize = 60;
/// Fires shown by `get_cron_detail`.
const FIRES_SHOWN: i64 = 20;

/// `save_cron` parameters (`EsbSaveCronV3Request`, plus Shoal's `missed_policy`).
#[derive(Deserialize, Default, Debug)]
pub struct SaveCronReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub job_plan_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub expression: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub execute_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub execute_time_zone: Option<String>,
    #[serde(default)]
    pub global_var_list: Option<Vec<GlobalVarReq>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub missed_policy: Option<String>,
}

/// `update_cron_status`, `get_cron_detail`, `delete_cron` parameters.
#[derive(Deserialize, Default, Debug)]
pub struct CronIdReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    pub status: Option<i32>,
}

/// `get_cron_list` parameters (`EsbGetCronListV3Request`; times in seconds).
#[derive(Deserialize, Default, Debug)]
pub struct CronListReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    pub status: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub creator: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub last_modify_user: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub create_time_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub create_time_end: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub last_modify_time_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub last_modify_time_end: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub length: Option<i64>,
}

pub async fn save(ctx: &Ctx, params: Value) -> ApiResult {
    let req: SaveCronReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    save_in(ctx, &scope, req).await
}

pub async fn update_status(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CronIdReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    update_status_in(ctx, &scope, req.id, req.status == Some(1)).await
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CronListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    list_in(ctx, &scope, req).await
}

pub async fn detail(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CronIdReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    detail_in(ctx, &scope, req.id).await
}

pub async fn delete(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CronIdReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    delete_in(ctx, &scope, req.id).await
}

/// A cron of the scope; one of another scope does not exist for the caller (1245001).
async fn cron_in_scope(ctx: &Ctx, scope: &Scope, id: Option<i64>) -> Result<CronRow, JobError> {
    let id = id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("id"))?;
    let c = ctx.shared.store.get_cron(id).await.map_err(internal("get cron"))?;
    c.filter(|c| c.scope_type == scope.scope_type && c.scope_id == scope.scope_id)
        .ok_or_else(|| JobError::new(ErrorCode::CRON_JOB_NOT_EXIST))
}

fn reason(field: &str, why: impl Into<String>) -> JobError {
    JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.into(), why.into()])
}

/// How the caller called, so the cron's jobs run as the same principal.
fn actor(ctx: &Ctx) -> CronActor {
    let c = &ctx.caller;
    let (kind, app, name) = match &c.principal {
        Principal::User { name } => ("user", c.app_code.clone(), name.clone()),
        Principal::App { code } => ("app", code.clone(), c.username.clone()),
        Principal::Gateway { app, user, .. } => ("gateway", app.clone(), user.clone()),
    };
    CronActor { kind: kind.into(), app, name }
}

/// The values given for the plan's variables, resolved against it (1241005 for one it does
/// not have) and kept by name; password values sealed. A password given as the mask
/// `get_cron_detail` shows keeps the value `before` (the cron's stored variables) holds, so
/// a caller can send back what it read with only other values changed.
async fn resolve_vars(ctx: &Ctx, scope: &Scope, job_plan_id: i64, given: &[GlobalVarReq], before: &str) -> Result<String, JobError> {
    let (_, vars) = plan_vars(ctx, scope, Some(job_plan_id)).await?;
    let before: Vec<GlobalVarReq> = serde_json::from_str(before).unwrap_or_default();
    let mut out: Vec<GlobalVarReq> = Vec::with_capacity(given.len());
    for g in given {
        let v = &vars[var_index(&vars, g)?];
        let mut kept = GlobalVarReq { id: None, name: Some(v.name.clone()), value: None, server: None };
        if v.var_type == VarType::HostList {
            kept.server = g.server.clone().filter(|s| !s.is_empty());
        } else if v.var_type == VarType::Password && g.value.as_deref() == Some(MASK) {
            kept.value = before.iter().find(|b| b.name.as_ref() == Some(&v.name)).and_then(|b| b.value.clone());
        } else if let Some(value) = &g.value {
            kept.value = Some(if v.var_type == VarType::Password && !value.is_empty() {
                let aad = sched::value_aad(scope, &v.name);
                ctx.shared.config.sealing_key.seal(value, &aad).map_err(internal("seal cron variable"))?
            } else {
                value.clone()
            });
        }
        // The last value given for a variable wins, as in `execute_job_plan`.
        out.retain(|o| o.name != kept.name);
        out.push(kept);
    }
    serde_json::to_string(&out).map_err(internal("encode cron variables"))
}

/// `save_cron`: create or update (`id`) a cron; either way it is left disabled.
pub async fn save_in(ctx: &Ctx, scope: &Scope, req: SaveCronReq) -> ApiResult {
    authorize(ctx, scope, Role::Manage).await?;
    let updating = req.id.is_some_and(|i| i > 0);
    if req.id.is_some_and(|i| i < 1) {
        return Err(JobError::illegal("id"));
    }
    let name = req.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if let Some(n) = name {
        if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
            return Err(JobError::illegal("name"));
        }
    }
    if req.job_plan_id.is_some_and(|p| p < 1) {
        return Err(JobError::illegal("job_plan_id"));
    }
    if req.execute_time.is_some_and(|t| t < 1) {
        return Err(JobError::illegal("execute_time"));
    }
    let expression = req.expression.as_deref().map(str::trim).filter(|e| !e.is_empty());
    if let Some(e) = expression {
        sched::parse_expression(e).map_err(|why| reason("expression", why))?;
    }
    let policy = match req.missed_policy.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) if p == MISSED_RUN_ONCE || p == MISSED_SKIP => Some(p.to_string()),
        Some(_) => return Err(JobError::illegal("missed_policy")),
    };
    let now = shoal_core::time::now_ms();
    let me = actor(ctx);
    let mut c = if updating {
        cron_in_scope(ctx, scope, req.id).await?
    } else {
        let job_plan_id = req.job_plan_id.ok_or_else(|| JobError::missing("job_plan_id"))?;
        let name = name.ok_or_else(|| JobError::missing("name"))?;
        if expression.is_none() && req.execute_time.is_none() {
            return Err(JobError::missing_or_illegal("expression|execute_time"));
        }
        CronRow {
            scope_type: scope.scope_type.clone(),
            scope_id: scope.scope_id.clone(),
            name: name.to_string(),
            job_plan_id,
            variables: "[]".into(),
            missed_policy: MISSED_RUN_ONCE.into(),
            creator: me.name.clone(),
            create_time: now,
            ..CronRow::default()
        }
    };
    if let Some(n) = name {
        c.name = n.to_string();
    }
    let plan_changed = req.job_plan_id.is_some_and(|p| p != c.job_plan_id);
    if let Some(p) = req.job_plan_id {
        c.job_plan_id = p;
    }
    // One of the two schedules: a new one replaces the other.
    if let Some(e) = expression {
        c.expression = Some(e.to_string());
        c.execute_time = None;
    } else if let Some(t) = req.execute_time {
        c.execute_time = Some(t);
        c.expression = None;
    }
    if req.execute_time_zone.is_some() || !updating {
        c.time_zone = sched::time_zone(req.execute_time_zone.as_deref(), &ctx.shared.config)?;
    }
    if let Some(p) = policy {
        c.missed_policy = p;
    }
    match &req.global_var_list {
        Some(given) => {
            let before = if plan_changed { "[]".to_string() } else { c.variables.clone() };
            c.variables = resolve_vars(ctx, scope, c.job_plan_id, given, &before).await?
        }
        // The plan exists in the scope (and its values would not fit another plan).
        None if plan_changed || !updating => {
            plan_vars(ctx, scope, Some(c.job_plan_id)).await?;
            if plan_changed {
                c.variables = "[]".into();
            }
        }
        None => {}
    }
    if c.execute_time.is_some_and(|t| t.saturating_mul(1000) <= now) {
        return Err(JobError::new(ErrorCode::CRON_JOB_TIME_PASSED));
    }
    // Its jobs run as whoever saved it last: an edit never borrows the rights of another.
    c.last_modify_user = me.name.clone();
    c.last_modify_time = now;
    c.run_as = me;
    // An edit pauses a running cron, as bk-job's saveCron does: starting it again is a
    // separate decision (and needs the right to run jobs).
    c.enabled = false;
    c.next_fire = None;
    let store = &ctx.shared.store;
    let id = if updating {
        let event = ctx.audit_event(scope, "save_cron", c.id, json!({"update": true, "job_plan_id": c.job_plan_id}));
        if !store.update_cron(&c, &event).await.map_err(internal("update cron"))? {
            return Err(JobError::new(ErrorCode::CRON_JOB_NOT_EXIST));
        }
        c.id
    } else {
        let event = ctx.audit_event(scope, "save_cron", "", json!({"job_plan_id": c.job_plan_id}));
        store.create_cron(&c, &event).await.map_err(internal("create cron"))?
    };
    tracing::info!(cron_id = id, job_plan_id = c.job_plan_id, updating, "cron saved");
    let saved = store.get_cron(id).await.map_err(internal("get cron"))?.ok_or_else(|| JobError::new(ErrorCode::UPDATE_CRON_JOB_FAILED))?;
    cron_info(ctx, scope, &saved, Shape::Saved).await
}

/// `update_cron_status`: start (with its first due time) or pause a cron. Starting needs
/// the right to run jobs in the scope as well: the cron's jobs then run as the starter.
pub async fn update_status_in(ctx: &Ctx, scope: &Scope, id: Option<i64>, start: bool) -> ApiResult {
    authorize(ctx, scope, Role::Manage).await?;
    if start {
        authorize(ctx, scope, Role::Run).await?;
    }
    let c = cron_in_scope(ctx, scope, id).await?;
    let now = shoal_core::time::now_ms();
    let next = if start { Some(sched::first_due(&c, now)?) } else { None };
    let event = ctx.audit_event(scope, "update_cron_status", c.id, json!({"status": if start { 1 } else { 2 }}));
    if !ctx.shared.store.set_cron_enabled(c.id, next, &actor(ctx), now, &event).await.map_err(internal("set cron status"))? {
        return Err(JobError::new(ErrorCode::UPDATE_CRON_JOB_FAILED));
    }
    tracing::info!(cron_id = c.id, start, next_fire = next, "cron status changed");
    // bk-job answers an `EsbCronInfoV3DTO` holding only the id.
    Ok(json!({"bk_scope_type": null, "bk_scope_id": null, "job_plan_id": null, "id": c.id, "name": null, "status": null,
              "expression": null, "global_var_list": null, "creator": null, "create_time": null, "last_modify_user": null,
              "last_modify_time": null}))
}

/// `get_cron_list`: one page of the scope's crons (without their variables, as bk-job).
pub async fn list_in(ctx: &Ctx, scope: &Scope, req: CronListReq) -> ApiResult {
    authorize(ctx, scope, Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    if let Some(id) = req.id.filter(|i| *i > 0) {
        let c = cron_in_scope(ctx, scope, Some(id)).await?;
        let data = if start == 0 { vec![cron_info(ctx, scope, &c, Shape::Listed).await?] } else { vec![] };
        return serde_json::to_value(Page { start, length, total: 1, data }).map_err(internal("encode cron page"));
    }
    let both = |a: Option<i64>, b: Option<i64>| a.zip(b).map(|(a, b)| (a.saturating_mul(1000), b.saturating_mul(1000)));
    let nonblank = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let q = CronQuery {
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        name: nonblank(req.name),
        enabled: req.status.map(|s| s == 1),
        creator: nonblank(req.creator),
        last_modify_user: nonblank(req.last_modify_user),
        create_time: both(req.create_time_start, req.create_time_end),
        last_modify_time: both(req.last_modify_time_start, req.last_modify_time_end),
        start,
        length,
    };
    let (total, rows) = ctx.shared.store.list_crons(&q).await.map_err(internal("list crons"))?;
    let mut data = Vec::with_capacity(rows.len());
    for c in &rows {
        data.push(cron_info(ctx, scope, c, Shape::Listed).await?);
    }
    serde_json::to_value(Page { start, length, total, data }).map_err(internal("encode cron page"))
}

/// `get_cron_detail`: the cron with its variables and its latest fires.
pub async fn detail_in(ctx: &Ctx, scope: &Scope, id: Option<i64>) -> ApiResult {
    authorize(ctx, scope, Role::Access).await?;
    if id.is_none_or(|i| i < 1) {
        return Err(JobError::new(ErrorCode::ILLEGAL_PARAM));
    }
    let c = cron_in_scope(ctx, scope, id).await?;
    let mut out = cron_info(ctx, scope, &c, Shape::Detail).await?;
    let fires = ctx.shared.store.cron_fires(c.id, FIRES_SHOWN).await.map_err(internal("cron fires"))?;
    out["fire_list"] = fires
        .iter()
        .map(|f| {
            json!({"due_time": f.due_time / 1000, "missed": f.missed, "outcome": f.outcome, "job_instance_id": f.job_instance_id,
                   "error": f.error, "claimed_by": f.claimed_by, "claimed_at": f.claimed_at / 1000})
        })
        .collect();
    Ok(out)
}

/// `delete_cron`: the cron goes (its fires and jobs stay as history); data is null.
pub async fn delete_in(ctx: &Ctx, scope: &Scope, id: Option<i64>) -> ApiResult {
    authorize(ctx, scope, Role::Manage).await?;
    let c = cron_in_scope(ctx, scope, id).await?;
    let event = ctx.audit_event(scope, "delete_cron", c.id, json!({"name": c.name}));
    if !ctx.shared.store.delete_cron(c.id, &event).await.map_err(internal("delete cron"))? {
        return Err(JobError::new(ErrorCode::CRON_JOB_NOT_EXIST));
    }
    tracing::info!(cron_id = c.id, "cron deleted");
    Ok(Value::Null)
}

/// Which of bk-job's two writers of `EsbCronInfoV3DTO` an answer follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `save_cron` (`toEsbCronInfoV3Response`): a paused cron's status is 2.
    Saved,
    /// `get_cron_list` (`toEsbCronInfoV3` with the variables left out): paused is 0.
    Listed,
    /// `get_cron_detail` (`toEsbCronInfoV3`): paused is 0.
    Detail,
}

/// `EsbCronInfoV3DTO` (times in seconds) in the `shape` bk-job writes it.
async fn cron_info(ctx: &Ctx, scope: &Scope, c: &CronRow, shape: Shape) -> ApiResult {
    let global_var_list = if shape == Shape::Listed { Value::Null } else { vars_json(ctx, scope, c).await? };
    let status = match (c.enabled, shape) {
        (true, _) => 1,
        (false, Shape::Saved) => 2,
        (false, _) => 0,
    };
    Ok(json!({
        "bk_scope_type": c.scope_type, "bk_scope_id": c.scope_id, "id": c.id, "name": c.name,
        "status": status, "job_plan_id": c.job_plan_id, "expression": c.expression.as_deref().map(sched::user_form),
        "execute_time": c.execute_time, "execute_time_zone": c.time_zone, "global_var_list": global_var_list,
        "creator": c.creator, "create_time": c.create_time / 1000, "last_modify_user": c.last_modify_user,
        "last_modify_time": c.last_modify_time / 1000, "missed_policy": c.missed_policy,
        "next_fire_time": c.next_fire.map(|t| t / 1000),
    }))
}

/// The cron's variable values as `{id, name, value, type, server}`; ids and types from the
/// plan as it is now (null when the plan no longer has the variable); passwords masked.
async fn vars_json(ctx: &Ctx, scope: &Scope, c: &CronRow) -> ApiResult {
    let given: Vec<GlobalVarReq> = serde_json::from_str(&c.variables).map_err(internal("decode cron variables"))?;
    if given.is_empty() {
        return Ok(Value::Null);
    }
    let plan_vars = plan_vars(ctx, scope, Some(c.job_plan_id)).await.map(|(_, v)| v).unwrap_or_default();
    let ids = shoal_core::template::variable_ids(&plan_vars);
    let mut out = Vec::with_capacity(given.len());
    for g in &given {
        let found = plan_vars.iter().position(|v| Some(&v.name) == g.name.as_ref());
        let var = found.map(|i| &plan_vars[i]);
        let password = var.is_some_and(|v| v.var_type == VarType::Password);
        let value = match &g.value {
            Some(v) if password && !v.is_empty() => json!(MASK),
            Some(v) => json!(v),
            None => Value::Null,
        };
        let server = match &g.server {
            Some(s) => esb_server(ctx, scope, s, None).await?,
            None => Value::Null,
        };
        out.push(
            json!({"id": found.map(|i| ids[i]), "name": g.name, "value": value, "type": var.map(|v| v.var_type.code()), "server": server}),
        );
    }
    Ok(json!(out))
}
