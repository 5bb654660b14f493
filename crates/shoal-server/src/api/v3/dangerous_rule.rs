//! Dangerous-statement rules (§11): `create_dangerous_rule`, `update_dangerous_rule`,
//! `delete_dangerous_rule`, `enable_dangerous_rule`, `disable_dangerous_rule`,
//! `get_dangerous_rule_list`, `check_script`; and [`enforce`], the check every script step
//! passes on its final text before a job is created.
//!
//! Rules are platform-wide: managing them needs an admin app; `check_script` is open to any
//! authenticated app. At execution time an enabled intercept rule or an enabled built-in
//! shell check ([`danger::BUILTINS`], each can be turned off by an admin through
//! [`builtins_call`]) that matches answers 1244019 and nothing is created or started; scan
//! rules are only recorded.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_core::danger::{self, CompiledRule, Finding, Rule, RuleAction};
use shoal_core::{JobError, Scope};
use shoal_proto::lenient;
use shoal_proto::status::ScriptLanguage;
use shoal_store::trust::{DangerRecord, RuleRow};
use shoal_store::{AuditEvent, StoreError};

use crate::api::authz::authorize_platform;
use crate::api::envelope::{method_not_allowed, not_found};
use crate::api::trust::record;
use crate::api::{decode, internal, ApiResult, Ctx};

const MAX_DESCRIPTION_CHARS: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuleReq {
    #[serde(deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    expression: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64_list")]
    script_language_list: Option<Vec<i64>>,
    #[serde(deserialize_with = "lenient::opt_string")]
    description: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i32")]
    action: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckReq {
    #[serde(deserialize_with = "lenient::opt_i32")]
    script_language: Option<i32>,
    #[serde(deserialize_with = "lenient::opt_string")]
    content: Option<String>,
}

fn rule_json(r: &RuleRow) -> Value {
    json!({
        "id": r.id, "expression": r.expression, "script_language_list": r.languages, "description": r.description,
        "action": r.action, "status": r.status, "creator": r.creator, "create_time": r.create_time,
        "last_modify_user": r.last_modify_user, "last_modify_time": r.last_modify_time,
    })
}

fn core_rule(r: &RuleRow) -> Option<Rule> {
    Some(Rule {
        id: r.id,
        expression: r.expression.clone(),
        script_languages: r.languages.clone(),
        description: r.description.clone(),
        action: RuleAction::from_i32(r.action)?,
        enabled: r.status == 1,
    })
}

/// Validate the fields of a create or update; the expression must compile.
fn fields(req: &RuleReq) -> Result<(String, Vec<i32>, String, i32), JobError> {
    let expression = req.expression.clone().filter(|e| !e.trim().is_empty()).ok_or_else(|| JobError::missing("expression"))?;
    let langs = req.script_language_list.clone().filter(|l| !l.is_empty()).ok_or_else(|| JobError::missing("script_language_list"))?;
    let mut languages: Vec<i32> = Vec::with_capacity(langs.len());
    for l in langs {
        let l = i32::try_from(l)
            .ok()
            .filter(|l| ScriptLanguage::from_i32(*l).is_some())
            .ok_or_else(|| JobError::illegal("script_language_list"))?;
        if !languages.contains(&l) {
            languages.push(l);
        }
    }
    let description = req.description.clone().unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(JobError::illegal("description"));
    }
    let action = req.action.ok_or_else(|| JobError::missing("action"))?;
    let parsed = RuleAction::from_i32(action).ok_or_else(|| JobError::illegal("action"))?;
    danger::compile(&Rule {
        id: 0,
        expression: expression.clone(),
        script_languages: languages.clone(),
        description: description.clone(),
        action: parsed,
        enabled: true,
    })?;
    Ok((expression, languages, description, action))
}

fn rule_id(req: &RuleReq) -> Result<i64, JobError> {
    req.id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("id"))
}

fn not_found_as_illegal(op: &'static str) -> impl FnOnce(StoreError) -> JobError {
    move |e| match e {
        StoreError::NotFound(_) => JobError::illegal("id"),
        e => internal(op)(e),
    }
}

pub async fn create(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: RuleReq = decode(params)?;
    let (expression, languages, description, action) = fields(&req)?;
    let now = shoal_core::time::now_ms();
    let row = RuleRow {
        id: 0,
        expression,
        languages,
        description,
        action,
        status: 0,
        creator: ctx.caller.username.clone(),
        create_time: now,
        last_modify_user: ctx.caller.username.clone(),
        last_modify_time: now,
    };
    let created = ctx.shared.store.create_rule(&row).await.map_err(internal("create rule"))?;
    record(ctx, "create_dangerous_rule", &created.id.to_string(), rule_json(&created)).await?;
    Ok(rule_json(&created))
}

pub async fn update(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: RuleReq = decode(params)?;
    let id = rule_id(&req)?;
    let (expression, languages, description, action) = fields(&req)?;
    let now = shoal_core::time::now_ms();
    let row = RuleRow {
        id,
        expression,
        languages,
        description,
        action,
        status: 0,
        creator: String::new(),
        create_time: 0,
        last_modify_user: ctx.caller.username.clone(),
        last_modify_time: now,
    };
    let updated = ctx.shared.store.update_rule(&row).await.map_err(not_found_as_illegal("update rule"))?;
    record(ctx, "update_dangerous_rule", &id.to_string(), rule_json(&updated)).await?;
    Ok(rule_json(&updated))
}

pub async fn delete(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: RuleReq = decode(params)?;
    let id = rule_id(&req)?;
    let deleted = ctx.shared.store.delete_rule(id).await.map_err(not_found_as_illegal("delete rule"))?;
    record(ctx, "delete_dangerous_rule", &id.to_string(), rule_json(&deleted)).await?;
    Ok(rule_json(&deleted))
}

pub async fn set_status(ctx: &Ctx, params: Value, enable: bool) -> ApiResult {
    authorize_platform(ctx)?;
    let req: RuleReq = decode(params)?;
    let id = rule_id(&req)?;
    let now = shoal_core::time::now_ms();
    let row = ctx
        .shared
        .store
        .set_rule_status(id, enable as i32, &ctx.caller.username, now)
        .await
        .map_err(not_found_as_illegal("rule status"))?;
    let action = if enable { "enable_dangerous_rule" } else { "disable_dangerous_rule" };
    record(ctx, action, &id.to_string(), json!({})).await?;
    Ok(rule_json(&row))
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: RuleReq = decode(params)?;
    let rows = ctx.shared.store.list_rules().await.map_err(internal("list rules"))?;
    let langs: Vec<i32> = req.script_language_list.unwrap_or_default().into_iter().filter_map(|l| i32::try_from(l).ok()).collect();
    let data: Vec<Value> = rows
        .iter()
        .filter(|r| req.expression.as_deref().is_none_or(|e| e.is_empty() || r.expression.contains(e)))
        .filter(|r| req.description.as_deref().is_none_or(|d| d.is_empty() || r.description.contains(d)))
        .filter(|r| req.action.is_none_or(|a| r.action == a))
        .filter(|r| langs.is_empty() || langs.iter().any(|l| r.languages.contains(l)))
        .map(rule_json)
        .collect();
    Ok(Value::Array(data))
}

/// Enabled custom rules, compiled; a stored rule that no longer compiles is skipped, logged.
async fn compiled_rules(ctx: &Ctx) -> Result<Vec<CompiledRule>, JobError> {
    let rows = ctx.shared.store.list_rules().await.map_err(internal("list rules"))?;
    Ok(rows
        .iter()
        .filter(|r| r.status == 1)
        .filter_map(|r| match core_rule(r).map(|rule| danger::compile(&rule)) {
            Some(Ok(c)) => Some(c),
            _ => {
                tracing::warn!(rule_id = r.id, "dangerous rule does not compile; skipped");
                None
            }
        })
        .collect())
}

fn finding_json(f: &Finding) -> Value {
    json!({"line": f.line, "line_content": f.line_content, "match_content": f.match_content, "level": f.level, "description": f.description})
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BuiltinReq {
    #[serde(deserialize_with = "lenient::opt_string")]
    name: Option<String>,
}

/// Shoal's built-in checks under `/api/shoal/v1/danger/`, admin apps only:
/// `GET danger/builtins` (name, description, enabled), `POST danger/builtins/disable {name}`,
/// `POST danger/builtins/enable {name}`. Each change is audited with the change.
pub async fn builtins_call(ctx: &Ctx, method: &Method, path: &str, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    match (path, method.clone()) {
        ("danger/builtins", Method::GET | Method::POST) => {
            let disabled = ctx.shared.store.disabled_builtins().await.map_err(internal("disabled builtins"))?;
            let data: Vec<Value> = danger::BUILTINS
                .iter()
                .map(|b| json!({"name": b.name, "description": b.description, "enabled": !disabled.iter().any(|d| d == b.name)}))
                .collect();
            Ok(Value::Array(data))
        }
        ("danger/builtins/disable", Method::POST) => set_builtin(ctx, params, true).await,
        ("danger/builtins/enable", Method::POST) => set_builtin(ctx, params, false).await,
        ("danger/builtins" | "danger/builtins/disable" | "danger/builtins/enable", _) => Err(method_not_allowed()),
        (other, _) => Err(not_found(other)),
    }
}

async fn set_builtin(ctx: &Ctx, params: Value, disable: bool) -> ApiResult {
    let req: BuiltinReq = decode(params)?;
    let name = req.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| JobError::missing("name"))?;
    let builtin = danger::builtin(name.trim()).ok_or_else(|| JobError::illegal("name"))?;
    let action = if disable { "disable_danger_builtin" } else { "enable_danger_builtin" };
    let event = AuditEvent {
        time: shoal_core::time::now_ms(),
        app_code: ctx.caller.app_code.clone(),
        username: ctx.caller.username.clone(),
        scope_type: String::new(),
        scope_id: String::new(),
        action: action.into(),
        resource_id: builtin.name.into(),
        detail: json!({"request_id": ctx.request_id}).to_string(),
    };
    let now = shoal_core::time::now_ms();
    let changed = ctx
        .shared
        .store
        .set_builtin_disabled(builtin.name, disable, &ctx.caller.username, now, &event)
        .await
        .map_err(internal("builtin toggle"))?;
    tracing::info!(app_code = %ctx.caller.app_code, builtin = builtin.name, disable, changed, "built-in dangerous check toggled");
    Ok(json!({"name": builtin.name, "description": builtin.description, "enabled": !disable, "changed": changed}))
}

pub async fn check_script(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CheckReq = decode(params)?;
    let language = req.script_language.ok_or_else(|| JobError::missing("script_language"))?;
    if ScriptLanguage::from_i32(language).is_none() {
        return Err(JobError::illegal("script_language"));
    }
    let content = req.content.filter(|c| !c.is_empty()).ok_or_else(|| JobError::missing("content"))?;
    let bytes = shoal_core::validate::decode_base64(&content).ok_or_else(|| JobError::illegal("content"))?;
    if bytes.len() > shoal_core::limits::MAX_SCRIPT_BYTES {
        return Err(JobError::illegal("content"));
    }
    let rules = compiled_rules(ctx).await?;
    let disabled = ctx.shared.store.disabled_builtins().await.map_err(internal("disabled builtins"))?;
    let script = String::from_utf8_lossy(&bytes);
    let findings = danger::check(language, &script, &[], &rules, &disabled);
    Ok(Value::Array(findings.iter().map(finding_json).collect()))
}

/// What a dangerous-command check is about: the step's final text and its parameters.
pub struct Checked<'a> {
    pub language: i32,
    /// The text the host will run (variables included).
    pub script: &'a [u8],
    /// The positional parameters, opened.
    pub params: &'a [String],
    /// Whether the parameters are sensitive: then they are masked in what is recorded.
    pub sensitive: bool,
    pub step_name: &'a str,
    /// `admission`, `start` or `retry`: where the decision is taken (audit detail).
    pub stage: &'static str,
    pub job_instance_id: Option<i64>,
}

/// The execution-time check of one script step's final text and parameters, run by the
/// admission door (`engine::admission`) at creation, deferred start and retry. Every hit is
/// recorded; an enabled intercept rule or an enabled built-in that matches refuses with
/// 1244019, after recording and auditing the refusal.
pub async fn enforce(ctx: &Ctx, scope: &Scope, c: &Checked<'_>) -> Result<(), JobError> {
    let rules = compiled_rules(ctx).await?;
    let disabled = ctx.shared.store.disabled_builtins().await.map_err(internal("disabled builtins"))?;
    let text = String::from_utf8_lossy(c.script);
    let findings = danger::check(c.language, &text, c.params, &rules, &disabled);
    let blocked = danger::blocks(&findings);
    let hits: Vec<&Finding> = findings.iter().filter(|f| f.action.is_some()).collect();
    if hits.is_empty() {
        return Ok(());
    }
    let now = shoal_core::time::now_ms();
    let sha = hex::encode(Sha256::digest(c.script));
    let secrets: Vec<String> = if c.sensitive { c.params.iter().filter(|p| !p.is_empty()).cloned().collect() } else { vec![] };
    let shown = |text: &str| crate::engine::variables::mask(text, &secrets).chars().take(1024).collect::<String>();
    let expr_of = |id: i64| rules.iter().find(|r| r.rule().id == id).map(|r| r.rule().expression.clone()).unwrap_or_default();
    let records: Vec<DangerRecord> = hits
        .iter()
        .map(|f| DangerRecord {
            id: 0,
            time: now,
            rule_id: f.rule_id.unwrap_or(0),
            expression: f.rule_id.map(expr_of).unwrap_or_else(|| format!("builtin {}: {}", f.builtin.unwrap_or(""), f.description)),
            action: f.action.map(RuleAction::code).unwrap_or(1),
            blocked,
            scope_type: scope.scope_type.clone(),
            scope_id: scope.scope_id.clone(),
            app_code: ctx.caller.app_code.clone(),
            operator: ctx.caller.username.clone(),
            language: c.language,
            script_sha256: sha.clone(),
            line: f.line as i64,
            line_content: shown(&f.line_content),
            match_content: shown(&f.match_content),
        })
        .collect();
    ctx.shared.store.record_danger(&records).await.map_err(internal("record danger"))?;
    if !blocked {
        return Ok(());
    }
    let first = findings.iter().find(|f| f.action == Some(RuleAction::Intercept));
    tracing::info!(app_code = %ctx.caller.app_code, username = %ctx.caller.username, step = c.step_name, stage = c.stage,
        job_instance_id = c.job_instance_id, rule_id = first.and_then(|f| f.rule_id), builtin = first.and_then(|f| f.builtin),
        line = first.map(|f| f.line), "dangerous script refused");
    let event = AuditEvent {
        time: now,
        app_code: ctx.caller.app_code.clone(),
        username: ctx.caller.username.clone(),
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        action: "dangerous_script_blocked".into(),
        resource_id: c.job_instance_id.map(|id| id.to_string()).unwrap_or_default(),
        detail: json!({"script_sha256": sha, "step": c.step_name, "stage": c.stage, "rule_id": first.and_then(|f| f.rule_id),
                       "builtin": first.and_then(|f| f.builtin), "line": first.map(|f| f.line), "outcome": "refused",
                       "request_id": ctx.request_id})
        .to_string(),
    };
    ctx.shared.store.audit(&event).await.map_err(internal("audit"))?;
    Err(danger::forbidden())
}
