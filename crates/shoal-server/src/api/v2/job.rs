//! `get_job_list` and `get_job_detail` (v2): a v2 "job" is a plan (`bk_job_id` is the plan
//! id, what v2 `execute_job` takes). The detail is v3's plan detail in bk-job's v2 shape
//! (`EsbJobDetailDTO`): `steps[{step_id, name, type, script_id (a version id), script_content
//! and script_param as text, account (alias), account_id, ip_list, …}]`, `global_vars[{id,
//! name, category, value, description, ip_list, custom_query_id}]`.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::lenient;

use super::{library_time, scope_fields, v2_page};
use crate::api::authz::{self, Role};
use crate::api::v3;
use crate::api::{decode, internal, ApiResult, Ctx};

#[derive(Deserialize, Default)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    creator: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_user: Option<String>,
    /// `yyyy-MM-dd` dates.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    create_time_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    create_time_end: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_time_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_time_end: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    bk_job_id: Option<i64>,
}

fn given(filter: &Option<String>) -> Option<&str> {
    filter.as_deref().map(str::trim).filter(|f| !f.is_empty())
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let bound = |field: &str, v: &Option<String>, end: bool| super::date_bound(field, v, end);
    let created = (bound("create_time_start", &req.create_time_start, false)?, bound("create_time_end", &req.create_time_end, true)?);
    let modified = (
        bound("last_modify_time_start", &req.last_modify_time_start, false)?,
        bound("last_modify_time_end", &req.last_modify_time_end, true)?,
    );
    let within = |t: i64, (from, to): (Option<i64>, Option<i64>)| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t <= e);
    let plans = ctx.shared.store.list_plans(&scope.scope_type, &scope.scope_id, None).await.map_err(internal("list plans"))?;
    let rows: Vec<Value> = plans
        .iter()
        .filter(|p| given(&req.name).is_none_or(|n| p.name.contains(n)))
        .filter(|p| given(&req.creator).is_none_or(|c| p.creator == c))
        .filter(|p| given(&req.last_modify_user).is_none_or(|u| p.last_modify_user == u))
        .filter(|p| within(p.create_time, created) && within(p.last_modify_time, modified))
        .map(|p| {
            let mut v = json!({});
            scope_fields(&mut v, &p.scope_type, &p.scope_id);
            let fields = json!({"bk_job_id": p.id, "name": p.name, "creator": p.creator, "create_time": library_time(p.create_time),
                                "last_modify_user": p.last_modify_user, "last_modify_time": library_time(p.last_modify_time)});
            if let (Some(o), Some(f)) = (v.as_object_mut(), fields.as_object()) {
                o.extend(f.clone());
            }
            v
        })
        .collect();
    Ok(v2_page(rows, req.start, req.length))
}

/// Text of a base64 field of v3's plan detail.
fn unb64(v: &Value) -> Value {
    match v.as_str().map(|s| base64::engine::general_purpose::STANDARD.decode(s)) {
        Some(Ok(bytes)) => json!(String::from_utf8_lossy(&bytes)),
        _ => Value::Null,
    }
}

/// v2's `custom_query_id` of a v3 `server`.
fn group_ids(server: &Value) -> Value {
    match server["dynamic_group_list"].as_array() {
        Some(groups) if !groups.is_empty() => json!(groups.iter().map(|g| g["id"].clone()).collect::<Vec<_>>()),
        _ => Value::Null,
    }
}

pub async fn detail(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let plan_id = req.bk_job_id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("bk_job_id"))?;
    let mut v3_params = serde_json::to_value(&req.scope).map_err(internal("encode scope"))?;
    v3_params["job_plan_id"] = json!(plan_id);
    let plan = v3::job_plan::plan_detail(ctx, v3_params).await?;
    let steps: Vec<Value> = plan["step_list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut step = json!({"step_id": s["id"], "name": s["name"], "type": s["type"]});
            let sc = &s["script_info"];
            if sc.is_object() {
                // bk-job writes the script's source (1 inline, 2 library, 3 public) as `type`.
                step["type"] = sc["script_type"].clone();
                step["script_id"] = sc["script_version_id"].clone();
                step["script_content"] = unb64(&sc["script_content"]);
                step["script_param"] = unb64(&sc["script_param"]);
                step["script_timeout"] = sc["script_timeout"].clone();
                step["is_param_sensitive"] = sc["is_param_sensitive"].clone();
                step["account"] = sc["account"]["alias"].clone();
                step["account_id"] = sc["account"]["id"].clone();
                step["ip_list"] = sc["server"]["ip_list"].clone();
                step["custom_query_id"] = group_ids(&sc["server"]);
            }
            if let Some(msg) = s["approval_info"]["approval_message"].as_str() {
                step["confirm_message"] = json!(msg);
            }
            step
        })
        .collect();
    let vars: Vec<Value> = plan["global_var_list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            json!({"category": g["type"], "id": g["id"], "name": g["name"], "value": g["value"], "description": g["description"],
                   "ip_list": g["server"]["ip_list"], "custom_query_id": group_ids(&g["server"])})
        })
        .collect();
    let mut out = json!({});
    scope_fields(&mut out, plan["bk_scope_type"].as_str().unwrap_or(""), plan["bk_scope_id"].as_str().unwrap_or(""));
    let times = |k: &str| plan[k].as_i64().map_or(Value::Null, library_time);
    let fields = json!({
        "bk_job_id": plan["id"], "template_id": plan["job_template_id"], "name": plan["name"], "creator": plan["creator"],
        "create_time": times("create_time"), "last_modify_user": plan["last_modify_user"],
        "last_modify_time": times("last_modify_time"), "steps": steps, "global_vars": vars,
    });
    if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    Ok(out)
}
