//! Job templates and plans through JOB v3 (§8): `get_job_template_list`,
//! `get_job_plan_list`, `get_job_plan_detail`, `execute_job_plan`, and
//! `get_job_instance_global_var_value`. Templates are documents (see
//! `shoal_core::template`); a plan is a template's chosen steps with variable values, and
//! always runs on the template's current (approved) version. Its file steps run as
//! `fast_transfer_file` steps do: uploads by the content pinned when the version was applied,
//! files on source hosts staged by the engine.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_core::limits::{page, DEFAULT_TIMEOUT_SECS};
use shoal_core::template::{self as tpl, Plan, Target, Template, TransferMode, VarType, Variable};
use shoal_core::validate::split_params;
use shoal_core::validate::AccountRef;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{Page, ScopeReq, ServerDto};
use shoal_proto::status::{launch_mode, step_type, task_type, ScriptLanguage};
use shoal_proto::{lenient, ErrorCode};
use shoal_store::library::{PlanRow, TemplateRow};
use shoal_store::PlanLink;

use super::job_in_scope;
use super::server::esb_server;
use crate::api::authz::{self, Role};
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::engine::admission::{self, FileStep, JobRequest, ScriptStep, StepRequest};
use crate::engine::variables::{self, JobVar, MASK};
use crate::files::{HostSource, StepFile, StepTransfer, DEFAULT_MODE};
use shoal_proto::agent::FileHost;

#[derive(Deserialize, Default)]
struct ListReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_template_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_plan_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    creator: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_user: Option<String>,
    /// Time filters, in ms; either end may be given alone.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    create_time_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    create_time_end: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    last_modify_time_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    last_modify_time_end: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn paged<T: serde::Serialize>(items: Vec<T>, start: i64, length: i64) -> Result<Value, JobError> {
    let total = items.len() as i64;
    let data: Vec<T> = items.into_iter().skip(start as usize).take(length as usize).collect();
    serde_json::to_value(Page { start, length, total, data }).map_err(internal("encode page"))
}

fn matches(filter: &Option<String>, value: &str, fuzzy: bool) -> bool {
    match filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        None => true,
        Some(f) if fuzzy => value.contains(f),
        Some(f) => value == f,
    }
}

impl ListReq {
    /// The filters every list shares: name (part of it), creator, last modifier, time ranges.
    fn keeps(&self, name: &str, creator: &str, last_modify_user: &str, create_time: i64, last_modify_time: i64) -> bool {
        let within = |t: i64, from: Option<i64>, to: Option<i64>| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t <= e);
        matches(&self.name, name, true)
            && matches(&self.creator, creator, false)
            && matches(&self.last_modify_user, last_modify_user, false)
            && within(create_time, self.create_time_start, self.create_time_end)
            && within(last_modify_time, self.last_modify_time_start, self.last_modify_time_end)
    }
}

async fn allowed(ctx: &Ctx, scope: &Scope, role: Role) -> Result<(), JobError> {
    crate::api::authz::authorize(ctx, scope, role).await
}

pub async fn template_list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    allowed(ctx, &scope, Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    let rows = ctx.shared.store.list_templates(&scope.scope_type, &scope.scope_id).await.map_err(internal("list templates"))?;
    let items: Vec<Value> = rows
        .iter()
        .filter(|t| t.current_version > 0 && req.keeps(&t.name, &t.creator, &t.last_modify_user, t.create_time, t.last_modify_time))
        .map(|t| {
            json!({"bk_scope_type": t.scope_type, "bk_scope_id": t.scope_id, "id": t.id, "name": t.name, "creator": t.creator,
                   "create_time": t.create_time, "last_modify_user": t.last_modify_user, "last_modify_time": t.last_modify_time,
                   "description": t.description})
        })
        .collect();
    paged(items, start, length)
}

/// `need_update`: the plan was last written by a version that is not the one runs use (a
/// change waits for approval, was rejected, or dropped the plan).
fn plan_basic(p: &PlanRow, t: &TemplateRow) -> Value {
    json!({"bk_scope_type": p.scope_type, "bk_scope_id": p.scope_id, "id": p.id, "job_template_id": p.template_id, "name": p.name,
           "creator": p.creator, "create_time": p.create_time, "last_modify_user": p.last_modify_user,
           "last_modify_time": p.last_modify_time, "need_update": p.synced_version != t.current_version})
}

pub async fn plan_list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    allowed(ctx, &scope, Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    let store = &ctx.shared.store;
    let plans = store.list_plans(&scope.scope_type, &scope.scope_id, req.job_template_id).await.map_err(internal("list plans"))?;
    let mut items = Vec::new();
    for p in plans.iter().filter(|p| req.keeps(&p.name, &p.creator, &p.last_modify_user, p.create_time, p.last_modify_time)) {
        if let Some(t) = store.get_template(p.template_id).await.map_err(internal("get template"))? {
            items.push(plan_basic(p, &t));
        }
    }
    paged(items, start, length)
}

/// A plan of the scope, its template, the template's current (approved) document and the
/// plan as that version defines it — its steps and values are part of what was approved.
/// Secrets stay sealed (see [`open_plan_secrets`]).
pub async fn load_plan(ctx: &Ctx, scope: &Scope, id: Option<i64>) -> Result<(PlanRow, TemplateRow, Template, Plan), JobError> {
    let id = id.filter(|i| *i >= 1).ok_or_else(|| JobError::illegal("job_plan_id"))?;
    let store = &ctx.shared.store;
    let plan = store.get_plan(id).await.map_err(internal("get plan"))?;
    let plan = plan
        .filter(|p| p.scope_type == scope.scope_type && p.scope_id == scope.scope_id)
        .ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_NOT_EXIST))?;
    let t = store.get_template(plan.template_id).await.map_err(internal("get template"))?;
    let t = t.ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_NOT_EXIST))?;
    let v = store.get_template_version(t.id, t.current_version).await.map_err(internal("get template version"))?;
    let v = v.ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?;
    let mut doc: Template = serde_json::from_str(&v.spec).map_err(|_| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?;
    let spec = if doc.plans.is_empty() {
        // A version written before plans were part of the document: the plan row, unless a
        // later (possibly unapproved) version wrote it.
        if plan.synced_version > t.current_version {
            return Err(JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL));
        }
        serde_json::from_str(&plan.spec).map_err(|_| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?
    } else {
        // A plan added by a version that is not approved yet does not exist for runs.
        let i = doc.plans.iter().position(|p| p.name == plan.name).ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?;
        doc.plans.swap_remove(i)
    };
    Ok((plan, t, Template { plans: vec![], ..doc }, spec))
}

/// Open the secrets of a loaded plan (template defaults, the plan's values, sensitive
/// parameters), each with the authenticated data of its place.
fn open_plan_secrets(ctx: &Ctx, t: &TemplateRow, doc: Template, spec: Plan) -> Result<(Template, Plan), JobError> {
    let mut both = Template { plans: vec![spec], ..doc };
    crate::api::shoal::templates::open_secrets(&mut both, t, &ctx.shared.config.sealing_key)?;
    let spec = both.plans.pop().unwrap_or_default();
    Ok((Template { plans: vec![], ..both }, spec))
}

/// The library version a script step runs: the one pinned when its template version was
/// applied (a disabled one fails with JOB's code, never falls back to another), or the
/// exact version named; steps of versions applied before pinning run the online version.
async fn step_script(
    ctx: &Ctx,
    scope: &Scope,
    sc: &shoal_core::template::ScriptStep,
) -> Result<(shoal_store::library::ScriptRow, shoal_store::library::ScriptVersionRow), JobError> {
    let (script, version) =
        super::script::executable(ctx, scope, sc.script_id.as_deref(), sc.pinned_version_id.or(sc.script_version_id)).await?;
    if sc.pinned_version_id.is_some() && sc.script_id.as_deref() != Some(version.script_id.as_str()) {
        return Err(JobError::new(ErrorCode::SCRIPT_NOT_EXIST));
    }
    Ok((script, version))
}

/// The plan's variables: template defaults, then the plan's values.
fn plan_variables(doc: &Template, spec: &Plan) -> Vec<Variable> {
    doc.variables
        .iter()
        .map(|v| {
            let mut v = v.clone();
            match spec.variables.get(&v.name) {
                Some(Value::String(s)) => v.value = s.clone(),
                Some(Value::Object(_)) if v.var_type == VarType::HostList => {
                    v.server = serde_json::from_value(spec.variables[&v.name].clone()).ok();
                }
                Some(other) if !other.is_null() => v.value = other.to_string(),
                _ => {}
            }
            v
        })
        .collect()
}

fn shown_value(v: &Variable) -> &str {
    if v.var_type == VarType::Password && !v.value.is_empty() {
        MASK
    } else {
        &v.value
    }
}

fn shown_param(sc: &shoal_core::template::ScriptStep) -> &str {
    if sc.sensitive && !sc.param.is_empty() {
        MASK
    } else {
        &sc.param
    }
}

async fn account_json(ctx: &Ctx, scope: &Scope, alias: &str) -> Value {
    match ctx.shared.store.get_account_by_alias(&scope.scope_type, &scope.scope_id, alias).await {
        Ok(Some(a)) => json!({"id": a.id, "name": a.account, "alias": a.alias}),
        _ => json!({"id": null, "name": null, "alias": alias}),
    }
}

/// A file step as bk-job's `EsbFileStepV3DTO` shows it (speed limits by their code names,
/// `source_speed_limit` / `destination_speed_limit`, in MB/s; null when there is none).
async fn file_info(ctx: &Ctx, scope: &Scope, f: &tpl::FileStep) -> Result<Value, JobError> {
    let mut sources = Vec::with_capacity(f.sources.len());
    for src in &f.sources {
        if let Some(code) = &src.file_source {
            let id = ctx.shared.store.file_source_by_code(&scope.scope_type, &scope.scope_id, code).await.ok().flatten().map(|s| s.id);
            sources.push(json!({"file_list": src.files, "account": null, "server": null, "file_type": 3,
                                "file_source_id": id, "file_source_code": code}));
            continue;
        }
        let mut item = match (&src.upload, &src.account, &src.target) {
            (Some(path), _, _) => json!({"file_list": [path], "account": null, "server": null, "file_type": 2}),
            (None, account, target) => {
                let account = match account {
                    Some(a) => account_json(ctx, scope, a).await,
                    None => Value::Null,
                };
                let server = match target {
                    Some(t) => esb_server(ctx, scope, &t.server, t.variable.as_deref()).await?,
                    None => Value::Null,
                };
                json!({"file_list": src.files, "account": account, "server": server, "file_type": 1})
            }
        };
        item["file_source_id"] = Value::Null;
        item["file_source_code"] = Value::Null;
        sources.push(item);
    }
    let d = &f.destination;
    let limit = |l: Option<i64>| l.filter(|l| *l > 0);
    Ok(json!({
        "file_source_list": sources,
        "file_destination": {"path": d.path, "account": account_json(ctx, scope, &d.account).await,
                             "server": esb_server(ctx, scope, &d.target.server, d.target.variable.as_deref()).await?},
        "timeout": f.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS),
        "source_speed_limit": limit(f.upload_speed_limit), "destination_speed_limit": limit(f.download_speed_limit),
        "transfer_mode": f.mode.code(), "is_ignore_error": f.ignore_error as i32,
    }))
}

pub async fn plan_detail(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    allowed(ctx, &scope, Role::Access).await?;
    let (plan, t, doc, spec) = load_plan(ctx, &scope, req.job_plan_id).await?;
    let vars = plan_variables(&doc, &spec);
    let chosen = |name: &str| spec.steps.is_empty() || spec.steps.iter().any(|s| s == name);
    let used = |name: &str| {
        let steps = || doc.steps.iter().filter(|s| chosen(&s.name));
        steps().filter_map(|s| s.script.as_ref()).any(|sc| {
            sc.target.variable.as_deref() == Some(name)
                || sc.content.as_deref().is_some_and(|c| c.contains(&format!("${name}")) || c.contains(&format!("${{{name}")))
        }) || steps().filter_map(|s| s.file.as_ref()).any(|f| f.variables().any(|v| v == name))
    };
    let mut global_var_list = Vec::with_capacity(vars.len());
    let ids = shoal_core::template::variable_ids(&vars);
    for (v, id) in vars.iter().zip(ids) {
        // A host variable's hosts are in `server`, its `value` is null (bk-job's `EsbGlobalVarV3DTO`).
        let (value, server) = match (&v.server, v.var_type) {
            (Some(s), VarType::HostList) => (Value::Null, esb_server(ctx, &scope, s, None).await?),
            (None, VarType::HostList) => (Value::Null, Value::Null),
            _ => (json!(shown_value(v)), Value::Null),
        };
        global_var_list.push(json!({"id": id, "name": v.name, "description": v.description, "type": v.var_type.code(),
                                    "required": v.required as i32, "value": value, "server": server, "used": used(&v.name)}));
    }
    let mut step_list = Vec::new();
    for (i, s) in doc.steps.iter().enumerate().filter(|(_, s)| chosen(&s.name)) {
        // bk-job's `EsbStepV3DTO` writes all three infos, null where they do not apply.
        let mut item = json!({"id": i + 1, "name": s.name, "script_info": null, "file_info": null, "approval_info": null});
        if let Some(c) = &s.confirm {
            item["type"] = json!(step_type::CONFIRM);
            item["approval_info"] = json!({"approval_type": 1, "approval_user": {"user_list": c.users, "role_list": []},
                                           "approval_message": c.message, "notify_channel": []});
        } else if let Some(f) = &s.file {
            item["type"] = json!(step_type::FILE);
            item["file_info"] = file_info(ctx, &scope, f).await?;
        } else if let Some(sc) = &s.script {
            item["type"] = json!(step_type::SCRIPT);
            let (script_type, language, content) = if let Some(c) = &sc.content {
                let lang = ScriptLanguage::from_name(sc.language.as_deref().unwrap_or("shell")).map_or(1, |l| l as i32);
                (1, json!(lang), json!(b64(c)))
            } else {
                let public = match &sc.script_id {
                    Some(id) => ctx.shared.store.get_script(id).await.ok().flatten().is_some_and(|s| s.scope_type == "public"),
                    None => false,
                };
                (if public { 3 } else { 2 }, Value::Null, Value::Null)
            };
            let server = esb_server(ctx, &scope, &sc.target.server, sc.target.variable.as_deref()).await?;
            item["script_info"] = json!({
                "script_type": script_type, "script_id": sc.script_id,
                "script_version_id": sc.pinned_version_id.or(sc.script_version_id),
                "script_content": content, "script_language": language, "script_param": b64(shown_param(sc)),
                "script_timeout": sc.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS), "account": account_json(ctx, &scope, &sc.account).await,
                "server": server, "is_param_sensitive": sc.sensitive as i32, "is_ignore_error": sc.ignore_error as i32,
            });
        }
        step_list.push(item);
    }
    let mut out = plan_basic(&plan, &t);
    out["global_var_list"] = json!(global_var_list);
    out["step_list"] = json!(step_list);
    Ok(out)
}

/// A value given for one of a plan's global variables (`global_var_list[]`): by `id` (its
/// stable id, as `get_job_plan_detail` shows it) or `name`; `value`, or `server` for a host-list variable.
#[derive(Deserialize, Serialize, Default, Clone, Debug)]
pub struct GlobalVarReq {
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerDto>,
}

/// The variable of `vars` a given value names (1241005 when none).
pub fn var_index(vars: &[Variable], o: &GlobalVarReq) -> Result<usize, JobError> {
    let idx = match (o.id.filter(|i| *i >= 1), o.name.as_deref()) {
        (Some(id), _) => shoal_core::template::variable_ids(vars).iter().position(|i| *i == id),
        (None, Some(n)) => vars.iter().position(|v| v.name == n),
        (None, None) => None,
    };
    idx.ok_or_else(|| JobError::illegal("global_var.id|global_var.name"))
}

/// A plan's variables as it runs now (template defaults, then the plan's values; secrets
/// still sealed), for checking values given for them.
pub async fn plan_vars(ctx: &Ctx, scope: &Scope, job_plan_id: Option<i64>) -> Result<(PlanRow, Vec<Variable>), JobError> {
    let (plan, _, doc, spec) = load_plan(ctx, scope, job_plan_id).await?;
    let vars = plan_variables(&doc, &spec);
    Ok((plan, vars))
}

#[derive(Deserialize, Default)]
struct ExecuteReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_plan_id: Option<i64>,
    #[serde(default)]
    global_var_list: Option<Vec<GlobalVarReq>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    callback_url: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    start_task: Option<bool>,
}

pub async fn execute(ctx: &Ctx, params: Value) -> ApiResult {
    let req: ExecuteReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    allowed(ctx, &scope, Role::Run).await?;
    let callback_url = req.callback_url.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(u) = &callback_url {
        ctx.shared.engine.callback_policy.check(u)?;
    }
    let run = PlanRun {
        job_plan_id: req.job_plan_id,
        global_vars: req.global_var_list.as_deref().unwrap_or_default(),
        callback_url,
        start: req.start_task.unwrap_or(true),
        launch_mode: launch_mode::API,
        audit_action: "execute_job_plan",
        audit_extra: json!({}),
    };
    let (job_id, name) = run_plan(ctx, &scope, run).await?;
    Ok(json!({"job_instance_id": job_id, "job_instance_name": name}))
}

/// A plan run as asked by `execute_job_plan`, or by a cron's fire.
pub struct PlanRun<'a> {
    pub job_plan_id: Option<i64>,
    pub global_vars: &'a [GlobalVarReq],
    pub callback_url: Option<String>,
    pub start: bool,
    pub launch_mode: i32,
    pub audit_action: &'static str,
    /// Added to the audit event's detail (an object).
    pub audit_extra: Value,
}

/// Runs a plan of `scope` with the given variable values, through [`admission::admit`] as
/// `ctx`'s caller; the job's id and name.
pub async fn run_plan(ctx: &Ctx, scope: &Scope, run: PlanRun<'_>) -> Result<(i64, String), JobError> {
    let scope = scope.clone();
    let (plan, t, doc, spec) = load_plan(ctx, &scope, run.job_plan_id).await?;
    let (doc, spec) = open_plan_secrets(ctx, &t, doc, spec)?;
    let mut vars = plan_variables(&doc, &spec);
    for o in run.global_vars {
        let i = var_index(&vars, o)?;
        let v = &mut vars[i];
        if v.var_type == VarType::HostList {
            if let Some(s) = o.server.clone().filter(|s| !s.is_empty()) {
                v.server = Some(s);
            }
        } else if let Some(val) = &o.value {
            v.value = val.clone();
        }
    }
    for v in &vars {
        let empty = match v.var_type {
            VarType::HostList => v.server.as_ref().is_none_or(ServerDto::is_empty),
            _ => v.value.is_empty(),
        };
        if v.required && empty {
            return Err(JobError::missing(&format!("global_var.{}", v.name)));
        }
    }
    let by_name: BTreeMap<&str, &Variable> = vars.iter().map(|v| (v.name.as_str(), v)).collect();
    let chosen = |name: &str| spec.steps.is_empty() || spec.steps.iter().any(|s| s == name);
    let mut steps = Vec::new();
    let mut digest = Sha256::new();
    for s in doc.steps.iter().filter(|s| chosen(&s.name)) {
        if let Some(c) = &s.confirm {
            steps.push(StepRequest::Confirm { name: s.name.clone(), message: c.message.clone(), users: c.users.clone() });
            continue;
        }
        if let Some(f) = &s.file {
            steps.push(StepRequest::File(file_request(ctx, &scope, &s.name, f, &by_name).await?));
            continue;
        }
        let Some(sc) = &s.script else { return Err(JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL)) };
        let (language, script) = match &sc.content {
            Some(c) => {
                let l = ScriptLanguage::from_name(sc.language.as_deref().unwrap_or("shell"))
                    .ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?;
                (l, c.clone().into_bytes())
            }
            None => {
                let (script, version) = step_script(ctx, &scope, sc).await?;
                let l =
                    ScriptLanguage::from_i32(script.script_language).ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?;
                (l, version.content)
            }
        };
        digest.update(&script);
        let server = target_hosts(&sc.target, &by_name)?;
        steps.push(StepRequest::Script(ScriptStep {
            name: s.name.clone(),
            language,
            script,
            params: split_params(&sc.param)?,
            sensitive: sc.sensitive,
            timeout_secs: sc.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS),
            account: AccountRef::Alias(sc.account.clone()),
            target: server,
            rolling: None,
            ignore_error: sc.ignore_error,
        }));
    }
    // Dangerous-command rules see the final text the host will run, variables included.
    let shell_vars: Vec<(String, VarType, String)> =
        vars.iter().filter(|v| v.var_type != VarType::HostList).map(|v| (v.name.clone(), v.var_type, v.value.clone())).collect();
    let mut job_vars: Vec<JobVar> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| JobVar {
            id: i as i64 + 1,
            name: v.name.clone(),
            var_type: v.var_type.code(),
            value: v.value.clone(),
            server: v.server.clone(),
        })
        .collect();
    variables::seal(&mut job_vars, &ctx.shared.config.sealing_key).map_err(internal("seal variables"))?;
    let mut audit_detail =
        json!({"job_plan_id": plan.id, "template_version": t.current_version, "script_sha256": hex::encode(digest.finalize())});
    for (k, v) in run.audit_extra.as_object().into_iter().flatten() {
        audit_detail[k] = v.clone();
    }
    let request = JobRequest {
        scope: scope.clone(),
        name: plan.name.clone(),
        task_type: task_type::PLAN,
        launch_mode: run.launch_mode,
        callback_url: run.callback_url,
        start: run.start,
        steps,
        shell_vars,
        plan: Some(PlanLink {
            template_id: t.id,
            plan_id: plan.id,
            template_version: t.current_version,
            variables: serde_json::to_string(&job_vars).map_err(internal("encode variables"))?,
        }),
        audit_action: run.audit_action,
        audit_detail,
    };
    let job_id = admission::admit(ctx, request).await?.job_id;
    tracing::info!(job_instance_id = job_id, job_plan_id = plan.id, launch_mode = run.launch_mode, "plan job created");
    Ok((job_id, plan.name))
}

/// The hosts a step's target names: its host-list variable's value in this run, or the
/// hosts given directly.
fn target_hosts(target: &Target, by_name: &BTreeMap<&str, &Variable>) -> Result<ServerDto, JobError> {
    match &target.variable {
        Some(name) => by_name
            .get(name.as_str())
            .and_then(|v| v.server.clone())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| JobError::with(ErrorCode::HOST_VAR_NOT_EXIST, name.clone())),
        None => Ok(target.server.clone()),
    }
}

/// A plan's file step as a request: uploads by the content pinned when the template version
/// was applied; files on source hosts read as their account, which the caller must be
/// allowed to use (as `fast_transfer_file` asks).
async fn file_request(
    ctx: &Ctx,
    scope: &Scope,
    name: &str,
    f: &tpl::FileStep,
    by_name: &BTreeMap<&str, &Variable>,
) -> Result<FileStep, JobError> {
    let mut files = Vec::new();
    let mut sources = Vec::new();
    let mut remote = Vec::new();
    for src in &f.sources {
        if let Some(code) = &src.file_source {
            let source = super::file_source::resolve(ctx, scope, None, Some(code)).await?;
            let paths = src.files.iter().map(|p| p.trim().trim_start_matches('/').to_string()).collect();
            remote.push(crate::files::sources::RemoteSource { source_id: source.id, code: source.code, paths });
            continue;
        }
        if let Some(path) = &src.upload {
            // Every applied version pins its uploads; a document without the pin is not one.
            let pin = src.pinned.as_ref().ok_or_else(|| JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL))?;
            files.push(StepFile {
                sha256: pin.sha256.clone(),
                size: pin.size,
                name: pin.name.clone(),
                mode: Some(DEFAULT_MODE),
                src_path: path.clone(),
                src_host: None,
            });
            continue;
        }
        let (Some(alias), Some(target)) = (&src.account, &src.target) else {
            return Err(JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL));
        };
        let account = admission::resolve_account(ctx, scope, &AccountRef::Alias(alias.clone())).await?;
        authz::authorize_account(ctx, scope, &account).await?;
        let server = target_hosts(target, by_name)?;
        let hosts =
            crate::engine::targets::resolve(ctx.shared.store.as_ref(), scope, &server, ctx.shared.config.max_targets_per_step).await?;
        let paths: Vec<String> = src.files.iter().map(|p| p.trim().to_string()).collect();
        for h in hosts {
            sources.push(HostSource {
                host: FileHost { bk_host_id: h.bk_host_id, bk_cloud_id: h.bk_cloud_id, ip: h.ip.clone() },
                user: account.account.clone(),
                paths: paths.clone(),
            });
        }
    }
    let speed_limit = super::file::speed_limit;
    let transfer = StepTransfer {
        target_dir: f.destination.path.trim().to_string(),
        create_dirs: f.mode == TransferMode::Force,
        download_limit: speed_limit(f.download_speed_limit),
        files,
        sources,
        remote,
        upload_limit: speed_limit(f.upload_speed_limit),
        target_name: None,
        file_batches: vec![],
    };
    Ok(FileStep {
        name: name.to_string(),
        transfer,
        timeout_secs: f.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS),
        account: AccountRef::Alias(f.destination.account.clone()),
        target: target_hosts(&f.destination.target, by_name)?,
        rolling: None,
        ignore_error: f.ignore_error,
    })
}

#[derive(Deserialize, Default)]
struct VarValueReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_instance_id: Option<i64>,
}

/// As bk-job's `computeOutputVariableValuesForAllStep` answers: one entry per script step
/// (bk-job's code skips the others), each with the string variables only, as
/// `{name, value, type}`, valued as they stood after that step — a script may have changed
/// them (see `engine::variables`). bk-sops copies every entry whose type is not 2 into its
/// node outputs. `global_var_list` is null when the job has none of the kinds bk-job lists
/// (namespace variables alone); there is no entry at all when the job has no variables.
pub async fn global_var_value(ctx: &Ctx, params: Value) -> ApiResult {
    let req: VarValueReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    allowed(ctx, &scope, Role::Access).await?;
    let job = job_in_scope(ctx, &scope, req.job_instance_id).await?;
    let store = &ctx.shared.store;
    let vars = match store.job_plan_link(job.id).await.map_err(internal("job plan link"))? {
        Some(link) => variables::parse(&link.variables),
        None => vec![],
    };
    if vars.is_empty() {
        return Ok(json!({"job_instance_id": job.id, "step_instance_var_list": []}));
    }
    let listed = vars.iter().any(|v| v.var_type != VarType::Namespace.code());
    // Plan values, then each step's changes in step order.
    let mut current: Vec<(String, VarType, String)> =
        vars.into_iter().filter(|v| v.var_type == VarType::String.code()).map(|v| (v.name, VarType::String, v.value)).collect();
    let outputs = variables::outputs_by_step(store.step_var_outputs(job.id).await.map_err(internal("step variables"))?);
    let mut steps = store.get_steps(job.id).await.map_err(internal("get steps"))?;
    steps.sort_by_key(|s| s.step_order);
    let mut list = Vec::new();
    for s in &steps {
        variables::apply_outputs(&mut current, outputs.get(&s.id));
        if s.step_type != step_type::SCRIPT {
            continue;
        }
        let strings: Option<Vec<Value>> =
            listed.then(|| current.iter().map(|(name, ty, value)| json!({"name": name, "value": value, "type": ty.code()})).collect());
        list.push(json!({"step_instance_id": s.id, "global_var_list": strings}));
    }
    Ok(json!({"job_instance_id": job.id, "step_instance_var_list": list}))
}
