//! `fast_execute_script`, `execute_job` and `operate_job_instance` (v2): translated into the
//! v3 requests and handed to the v3 handlers, so admission (grants, accounts, dangerous
//! rules, quotas, audit) is the same door.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{DynamicGroupRef, FastExecuteScriptReq, IpDto, ScopeReq, ServerDto, TopoNode};
use shoal_proto::status::ScriptLanguage;
use shoal_proto::{lenient, ErrorCode};

use crate::api::v3;
use crate::api::{decode, internal, ApiResult, Ctx};

/// A v2 `target_server` (`EsbServerDTO`: `ip_list`, `dynamic_group_id_list`,
/// `topo_node_list`), also taking the v3 keys callers mix in.
#[derive(Deserialize, Default)]
pub(super) struct V2Server {
    #[serde(default)]
    ip_list: Option<Vec<IpDto>>,
    #[serde(default, deserialize_with = "super::opt_string_list")]
    dynamic_group_id_list: Option<Vec<String>>,
    #[serde(default)]
    topo_node_list: Option<Vec<TopoNode>>,
    #[serde(default, deserialize_with = "lenient::opt_i64_list")]
    host_id_list: Option<Vec<i64>>,
    #[serde(default)]
    dynamic_group_list: Option<Vec<DynamicGroupRef>>,
}

/// The hosts a v2 request names: its `target_server` when given, else the top-level
/// `ip_list` and `custom_query_id` (bk-job's `convertToStandardServers`).
pub(super) fn target(server: Option<V2Server>, ip_list: Option<Vec<IpDto>>, custom_query_id: Option<Vec<String>>) -> ServerDto {
    let groups = |ids: Option<Vec<String>>| ids.map(|ids| ids.into_iter().map(|id| DynamicGroupRef { id: Some(id) }).collect::<Vec<_>>());
    match server {
        Some(s) => {
            let mut dynamic = groups(s.dynamic_group_id_list).unwrap_or_default();
            dynamic.extend(s.dynamic_group_list.unwrap_or_default());
            ServerDto {
                host_id_list: s.host_id_list,
                ip_list: s.ip_list,
                dynamic_group_list: (!dynamic.is_empty()).then_some(dynamic),
                topo_node_list: s.topo_node_list,
            }
        }
        None => ServerDto { host_id_list: None, ip_list, dynamic_group_list: groups(custom_query_id), topo_node_list: None },
    }
}

#[derive(Deserialize, Default)]
struct FastScriptReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    task_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    script_content: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    account: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    script_type: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    script_param: Option<String>,
    /// A script *version* id in v2.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    script_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    is_param_sensitive: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    script_timeout: Option<i64>,
    #[serde(default)]
    ip_list: Option<Vec<IpDto>>,
    #[serde(default, deserialize_with = "super::opt_string_list")]
    custom_query_id: Option<Vec<String>>,
    #[serde(default)]
    target_server: Option<V2Server>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    bk_callback_url: Option<String>,
    // v3 names of the same things, which mixed callers send.
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    script_language: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    account_alias: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    callback_url: Option<String>,
}

/// The alias of the OS account `name` names in the scope: an alias, else an OS user's name
/// (v2 callers send either, e.g. `"root"`).
pub(super) async fn account_alias(ctx: &Ctx, scope: &Scope, name: &str) -> Result<String, JobError> {
    let store = &ctx.shared.store;
    let by_alias = store.get_account_by_alias(&scope.scope_type, &scope.scope_id, name).await.map_err(internal("get account"))?;
    if let Some(a) = by_alias.filter(|a| a.category == 1) {
        return Ok(a.alias);
    }
    let all = store.list_accounts(&scope.scope_type, &scope.scope_id).await.map_err(internal("list accounts"))?;
    let mut os_users: Vec<_> = all.into_iter().filter(|a| a.category == 1 && a.account == name).collect();
    os_users.sort_by_key(|a| a.id);
    os_users.into_iter().next().map(|a| a.alias).ok_or_else(|| JobError::with(ErrorCode::ACCOUNT_NOT_EXIST, name))
}

pub async fn fast_execute_script(ctx: &Ctx, params: Value) -> ApiResult {
    let req: FastScriptReq = decode(params)?;
    let language = req.script_type.or(req.script_language);
    // bk-job's `checkFastExecuteScriptRequest`, in its order.
    if let Some(id) = req.script_id {
        if id < 1 {
            return Err(JobError::illegal("script_id"));
        }
    } else {
        if language.and_then(ScriptLanguage::from_i32).is_none() {
            return Err(JobError::illegal("script_type"));
        }
        if req.script_content.as_deref().is_none_or(|c| c.trim().is_empty()) {
            return Err(JobError::illegal("script_content"));
        }
    }
    let server = target(req.target_server, req.ip_list, req.custom_query_id);
    if server.is_empty() {
        return Err(JobError::missing_or_illegal("ip_list|custom_query_id|target_server"));
    }
    let account = req.account.or(req.account_alias).ok_or_else(|| JobError::missing("account"))?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Run).await?;
    let alias = account_alias(ctx, &scope, &account).await?;
    let versioned = req.script_id.is_some();
    let v3_req = FastExecuteScriptReq {
        scope: req.scope,
        script_version_id: req.script_id,
        script_id: None,
        script_content: if versioned { None } else { req.script_content },
        script_language: if versioned { None } else { language },
        script_param: req.script_param,
        is_param_sensitive: req.is_param_sensitive,
        timeout: req.script_timeout.or(req.timeout),
        account_id: None,
        account_alias: Some(alias),
        target_server: Some(server),
        task_name: req.task_name,
        callback_url: req.bk_callback_url.or(req.callback_url),
        start_task: None,
        rolling_config: None,
    };
    let params = serde_json::to_value(v3_req).map_err(internal("encode request"))?;
    v3::fast_execute_script::handle(ctx, params).await
}

/// A v2 `global_vars` element (`EsbGlobalVarDTO`).
#[derive(Deserialize, Default)]
struct GlobalVar {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    value: Option<String>,
    #[serde(default)]
    ip_list: Option<Vec<IpDto>>,
    #[serde(default, deserialize_with = "super::opt_string_list")]
    custom_query_id: Option<Vec<String>>,
    #[serde(default)]
    target_server: Option<V2Server>,
}

#[derive(Deserialize, Default)]
struct ExecuteJobReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    bk_job_id: Option<i64>,
    #[serde(default)]
    global_vars: Option<Vec<GlobalVar>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    bk_callback_url: Option<String>,
}

pub async fn execute_job(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ExecuteJobReq = decode(params)?;
    let plan_id = req.bk_job_id.filter(|id| *id > 0).ok_or_else(|| JobError::illegal("bk_job_id"))?;
    let mut vars = Vec::new();
    for g in req.global_vars.unwrap_or_default() {
        if g.id.is_none_or(|id| id <= 0) && g.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(JobError::illegal("global_vars.id|global_vars.name"));
        }
        let hosts_given = g.ip_list.is_some() || g.custom_query_id.is_some() || g.target_server.is_some();
        let mut v = json!({"id": g.id, "name": g.name});
        if hosts_given && g.value.as_deref().is_none_or(str::is_empty) {
            v["server"] = serde_json::to_value(target(g.target_server, g.ip_list, g.custom_query_id)).map_err(internal("encode server"))?;
        } else {
            v["value"] = json!(g.value);
        }
        vars.push(v);
    }
    let mut params = serde_json::to_value(&req.scope).map_err(internal("encode scope"))?;
    params["job_plan_id"] = json!(plan_id);
    params["global_var_list"] = json!(vars);
    if let Some(u) = req.bk_callback_url {
        params["callback_url"] = json!(u);
    }
    let out = v3::job_plan::execute(ctx, params).await?;
    Ok(json!({"job_instance_id": out["job_instance_id"], "job_instance_name": out["job_instance_name"]}))
}

pub async fn operate_job_instance(ctx: &Ctx, params: Value) -> ApiResult {
    // Same fields as v3 (`job_instance_id`, `operation_code`); the answer is `{job_instance_id}`.
    v3::operate_job_instance::handle(ctx, params).await
}
