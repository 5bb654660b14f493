//! The script library (§9): business scripts and the `public_` family, with JOB's version
//! states (0 draft, 1 online, 2 offline, 3 disabled) and rules: one online version per
//! script, publishing takes the old one offline, only drafts are editable, disabled is final.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::limits::{page, MAX_SCRIPT_BYTES};
use shoal_core::validate::decode_base64;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{Page, ScopeReq};
use shoal_proto::lenient;
use shoal_proto::status::ScriptLanguage;
use shoal_proto::ErrorCode;
use shoal_store::library::{ScriptQuery, ScriptRow, ScriptVersionRow};
use shoal_store::StoreError;

use crate::api::{decode, internal, ApiResult, Ctx};

pub const DRAFT: i32 = 0;
pub const ONLINE: i32 = 1;
pub const OFFLINE: i32 = 2;
pub const DISABLED: i32 = 3;

/// Business scripts live in a scope; public scripts in the pseudo-scope `public/0`.
pub enum Family {
    Business,
    Public,
}

#[derive(Deserialize, Default)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    script_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    script_version_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    description: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    script_language: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    content: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    version: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    version_desc: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    return_script_content: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
}

fn scope_of(family: &Family, req: &Req) -> Result<Scope, JobError> {
    match family {
        Family::Business => Scope::resolve(&req.scope),
        Family::Public => Ok(Scope { scope_type: "public".into(), scope_id: "0".into() }),
    }
}

fn check_name(name: Option<&str>) -> Result<String, JobError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).ok_or_else(|| JobError::missing("name"))?;
    if name.chars().count() > 60 || name.chars().any(|c| "\\|/:*<>\"?".contains(c)) {
        return Err(JobError::illegal("name"));
    }
    Ok(name.to_string())
}

fn check_version(v: Option<&str>) -> Result<String, JobError> {
    let v = v.map(str::trim).filter(|n| !n.is_empty()).ok_or_else(|| JobError::missing("version"))?;
    if v.len() > 60 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-#@.".contains(&b)) {
        return Err(JobError::illegal("version"));
    }
    Ok(v.to_string())
}

fn check_content(c: Option<&str>) -> Result<Vec<u8>, JobError> {
    let c = c.filter(|c| !c.trim().is_empty()).ok_or_else(|| JobError::missing("content"))?;
    let bytes = decode_base64(c).ok_or_else(|| JobError::illegal("content"))?;
    if bytes.len() > MAX_SCRIPT_BYTES {
        return Err(JobError::bad_request(format!("content must be at most {MAX_SCRIPT_BYTES} bytes")));
    }
    Ok(bytes)
}

/// A new draft version of `script_id`, written by the caller now.
fn draft(ctx: &Ctx, script_id: &str, version: String, content: Vec<u8>, desc: Option<String>, now: i64) -> ScriptVersionRow {
    ScriptVersionRow {
        id: 0,
        script_id: script_id.to_string(),
        version,
        content,
        status: DRAFT,
        version_desc: desc.unwrap_or_default(),
        creator: ctx.caller.username.clone(),
        create_time: now,
        last_modify_user: ctx.caller.username.clone(),
        last_modify_time: now,
    }
}

/// A version string taken already is JOB's 1243036; anything else is internal.
fn version_error(op: &'static str) -> impl FnOnce(StoreError) -> JobError {
    move |e| match e {
        StoreError::Conflict(_) => JobError::new(ErrorCode::SCRIPT_VERSION_NAME_EXIST),
        e => internal(op)(e),
    }
}

/// The scope fields of a script's answers: a public script belongs to no scope, and
/// bk-job's DTOs (`EsbAppScopeDTO`) carry them as null then.
fn scope_fields(out: &mut Value, s: &ScriptRow, public: bool) {
    let (scope_type, scope_id) = if public { (Value::Null, Value::Null) } else { (json!(s.scope_type), json!(s.scope_id)) };
    out["bk_scope_type"] = scope_type;
    out["bk_scope_id"] = scope_id;
}

fn script_json(s: &ScriptRow, public: bool) -> Value {
    let mut v = json!({
        "id": s.id, "name": s.name, "script_language": s.script_language, "online_script_version_id": s.online_version_id,
        "creator": s.creator, "create_time": s.create_time, "last_modify_user": s.last_modify_user,
        "last_modify_time": s.last_modify_time, "description": s.description,
    });
    scope_fields(&mut v, s, public);
    v
}

pub fn version_json(s: &ScriptRow, v: &ScriptVersionRow, with_content: bool) -> Value {
    let public = s.scope_type == "public";
    let mut out = json!({
        "id": v.id, "script_id": s.id, "name": s.name, "version": v.version,
        "content": if with_content { Value::String(String::from_utf8_lossy(&v.content).into_owned()) } else { Value::Null },
        "status": v.status, "version_desc": v.version_desc, "creator": v.creator, "create_time": v.create_time,
        "last_modify_user": v.last_modify_user, "last_modify_time": v.last_modify_time,
        "script_language": s.script_language, "description": s.description, "public_script": public,
    });
    scope_fields(&mut out, s, public);
    out
}

/// The script named by `script_id`, which must belong to `scope`.
async fn script_in(ctx: &Ctx, scope: &Scope, id: Option<&str>) -> Result<ScriptRow, JobError> {
    let id = id.map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| JobError::missing("script_id"))?;
    let s = ctx.shared.store.get_script(id).await.map_err(internal("get script"))?;
    let s = s.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_NOT_EXIST))?;
    if s.scope_type != scope.scope_type || s.scope_id != scope.scope_id {
        return Err(JobError::new(ErrorCode::SCRIPT_NOT_IN_APP));
    }
    Ok(s)
}

/// A version of `script`.
async fn version_of(ctx: &Ctx, script: &ScriptRow, id: Option<i64>) -> Result<ScriptVersionRow, JobError> {
    let id = id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("script_version_id"))?;
    let v = ctx.shared.store.get_script_version(id).await.map_err(internal("get script version"))?;
    v.filter(|v| v.script_id == script.id).ok_or_else(|| JobError::new(ErrorCode::SCRIPT_NOT_EXIST))
}

/// Whether any template of the scope refers to this script (or one of its versions).
async fn referenced(ctx: &Ctx, scope: &Scope, script_id: &str, version_id: Option<i64>) -> Result<bool, JobError> {
    let store = &ctx.shared.store;
    for t in store.list_templates(&scope.scope_type, &scope.scope_id).await.map_err(internal("list templates"))? {
        if let Some(v) = store.get_template_version(t.id, t.current_version).await.map_err(internal("template version"))? {
            let spec: Value = serde_json::from_str(&v.spec).unwrap_or(Value::Null);
            for step in spec["steps"].as_array().into_iter().flatten() {
                let s = &step["script"];
                let same_script = s["script_id"].as_str() == Some(script_id);
                let same_version = version_id.is_some_and(|id| s["script_version_id"].as_i64() == Some(id));
                if (version_id.is_none() && same_script) || same_version {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Business scripts: queries need access to the scope, changes the manage role. Public
/// scripts: anyone may read them, only platform admins change them.
async fn authorize(ctx: &Ctx, family: &Family, op: &str, params: &Value) -> Result<(), JobError> {
    use crate::api::authz::{self, Role};
    let query = op.starts_with("get_");
    match family {
        Family::Public if query => Ok(()),
        Family::Public => authz::authorize_platform(ctx),
        Family::Business => {
            let scope: ScopeReq = decode(params.clone())?;
            authz::authorize(ctx, &Scope::resolve(&scope)?, if query { Role::Access } else { Role::Manage }).await
        }
    }
}

pub async fn call(ctx: &Ctx, family: Family, op: &str, params: Value) -> Option<ApiResult> {
    const OPS: [&str; 11] = [
        "create_script",
        "create_script_version",
        "update_script_version",
        "update_script_basic",
        "publish_script_version",
        "disable_script_version",
        "delete_script_version",
        "delete_script",
        "get_script_list",
        "get_script_version_list",
        "get_script_version_detail",
    ];
    if !OPS.contains(&op) {
        return None;
    }
    if let Err(e) = authorize(ctx, &family, op, &params).await {
        return Some(Err(e));
    }
    Some(match op {
        "create_script" => create(ctx, family, params).await,
        "create_script_version" => create_version(ctx, family, params).await,
        "update_script_version" => update_version(ctx, family, params).await,
        "update_script_basic" => update_basic(ctx, family, params).await,
        "publish_script_version" => set_status(ctx, family, params, ONLINE).await,
        "disable_script_version" => set_status(ctx, family, params, DISABLED).await,
        "delete_script_version" => delete_version(ctx, family, params).await,
        "delete_script" => delete(ctx, family, params).await,
        "get_script_list" => list(ctx, family, params).await,
        "get_script_version_list" => list_versions(ctx, family, params).await,
        "get_script_version_detail" => detail(ctx, family, params).await,
        _ => return None,
    })
}

async fn create(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let name = check_name(req.name.as_deref())?;
    let lang = req.script_language.ok_or_else(|| JobError::missing("script_language"))?;
    ScriptLanguage::from_i32(lang).ok_or_else(|| JobError::illegal("script_language"))?;
    let content = check_content(req.content.as_deref())?;
    let version = check_version(req.version.as_deref())?;
    let now = shoal_core::time::now_ms();
    let user = ctx.caller.username.clone();
    let script = ScriptRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        name,
        script_language: lang,
        description: req.description.unwrap_or_default(),
        creator: user.clone(),
        create_time: now,
        last_modify_user: user.clone(),
        last_modify_time: now,
        online_version_id: None,
    };
    let mut v = draft(ctx, &script.id, version, content, req.version_desc, now);
    v.id = match ctx.shared.store.create_script(&script, &v).await {
        Ok(id) => id,
        Err(StoreError::Conflict(_)) => return Err(JobError::new(ErrorCode::SCRIPT_NAME_DUPLICATE)),
        Err(e) => return Err(internal("create script")(e)),
    };
    ctx.audit(&scope, "create_script", &script.id, json!({})).await?;
    Ok(version_json(&script, &v, true))
}

async fn create_version(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    let content = check_content(req.content.as_deref())?;
    let version = check_version(req.version.as_deref())?;
    let now = shoal_core::time::now_ms();
    let mut v = draft(ctx, &script.id, version, content, req.version_desc, now);
    v.id = ctx.shared.store.create_script_version(&v).await.map_err(version_error("create script version"))?;
    ctx.audit(&scope, "create_script_version", &v.id.to_string(), json!({})).await?;
    Ok(version_json(&script, &v, true))
}

async fn update_version(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    let mut v = version_of(ctx, &script, req.script_version_id).await?;
    if v.status != DRAFT {
        return Err(JobError::new(ErrorCode::UNSUPPORTED_OPERATION));
    }
    if req.content.is_some() {
        v.content = check_content(req.content.as_deref())?;
    }
    if req.version.is_some() {
        v.version = check_version(req.version.as_deref())?;
    }
    if let Some(d) = req.version_desc {
        v.version_desc = d;
    }
    v.last_modify_user = ctx.caller.username.clone();
    v.last_modify_time = shoal_core::time::now_ms();
    ctx.shared.store.update_script_version(&v).await.map_err(version_error("update script version"))?;
    ctx.audit(&scope, "update_script_version", &v.id.to_string(), json!({})).await?;
    Ok(version_json(&script, &v, true))
}

async fn update_basic(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let mut script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    if req.name.is_some() {
        script.name = check_name(req.name.as_deref())?;
    }
    if let Some(d) = req.description {
        script.description = d;
    }
    let now = shoal_core::time::now_ms();
    match ctx.shared.store.update_script_basic(&script.id, &script.name, &script.description, &ctx.caller.username, now).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(JobError::new(ErrorCode::SCRIPT_NAME_DUPLICATE)),
        Err(e) => return Err(internal("update script")(e)),
    }
    script.last_modify_user = ctx.caller.username.clone();
    script.last_modify_time = now;
    ctx.audit(&scope, "update_script_basic", &script.id, json!({})).await?;
    Ok(script_json(&script, matches!(family, Family::Public)))
}

async fn set_status(ctx: &Ctx, family: Family, params: Value, to: i32) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    let v = version_of(ctx, &script, req.script_version_id).await?;
    let store = &ctx.shared.store;
    let now = shoal_core::time::now_ms();
    let user = &ctx.caller.username;
    match to {
        ONLINE => {
            if v.status == DISABLED {
                return Err(JobError::new(ErrorCode::UNSUPPORTED_OPERATION));
            }
            store.publish_script_version(&script.id, v.id, user, now).await.map_err(internal("publish"))?;
            ctx.audit(&scope, "publish_script_version", &v.id.to_string(), json!({})).await?;
        }
        _ => {
            if v.status != ONLINE && v.status != OFFLINE {
                return Err(JobError::new(ErrorCode::UNSUPPORTED_OPERATION));
            }
            store.set_script_version_status(v.id, DISABLED, user, now).await.map_err(internal("disable"))?;
            ctx.audit(&scope, "disable_script_version", &v.id.to_string(), json!({})).await?;
        }
    }
    Ok(json!({"id": v.id, "script_id": script.id, "status": to}))
}

async fn delete_version(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    let v = version_of(ctx, &script, req.script_version_id).await?;
    if referenced(ctx, &scope, &script.id, Some(v.id)).await? {
        return Err(JobError::new(ErrorCode::DELETE_REF_SCRIPT_FAIL));
    }
    let store = &ctx.shared.store;
    store.delete_script_version(v.id).await.map_err(internal("delete version"))?;
    // Deleting the last version deletes the script.
    if store.list_script_versions(&script.id).await.map_err(internal("list versions"))?.is_empty() {
        store.delete_script(&script.id).await.map_err(internal("delete script"))?;
    }
    ctx.audit(&scope, "delete_script_version", &v.id.to_string(), json!({})).await?;
    Ok(json!({"id": v.id, "script_id": script.id}))
}

async fn delete(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    if referenced(ctx, &scope, &script.id, None).await? {
        return Err(JobError::new(ErrorCode::DELETE_REF_SCRIPT_FAIL));
    }
    ctx.shared.store.delete_script(&script.id).await.map_err(internal("delete script"))?;
    ctx.audit(&scope, "delete_script", &script.id, json!({})).await?;
    Ok(json!({"id": script.id}))
}

async fn list(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let (start, length) = page(req.start, req.length);
    let language = match req.script_language {
        None | Some(0) => None,
        Some(l) => Some(ScriptLanguage::from_i32(l).ok_or_else(|| JobError::illegal("script_language"))? as i32),
    };
    let q = ScriptQuery {
        scope_type: scope.scope_type,
        scope_id: scope.scope_id,
        name: req.name.filter(|n| !n.trim().is_empty()),
        language,
        start,
        length,
    };
    let (total, rows) = ctx.shared.store.list_scripts(&q).await.map_err(internal("list scripts"))?;
    let public = matches!(family, Family::Public);
    let data = rows.iter().map(|s| script_json(s, public)).collect();
    serde_json::to_value(Page { start, length, total, data }).map_err(internal("encode"))
}

async fn list_versions(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let script = script_in(ctx, &scope, req.script_id.as_deref()).await?;
    let (start, length) = page(req.start, req.length);
    let all = ctx.shared.store.list_script_versions(&script.id).await.map_err(internal("list versions"))?;
    let with_content = req.return_script_content.unwrap_or(false);
    let data: Vec<Value> = all.iter().skip(start as usize).take(length as usize).map(|v| version_json(&script, v, with_content)).collect();
    serde_json::to_value(Page { start, length, total: all.len() as i64, data }).map_err(internal("encode"))
}

async fn detail(ctx: &Ctx, family: Family, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = scope_of(&family, &req)?;
    let store = &ctx.shared.store;
    let (script, v) = if let Some(id) = req.id.filter(|i| *i >= 1) {
        let v = store.get_script_version(id).await.map_err(internal("get version"))?;
        let v = v.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_VERSION_NOT_EXIST))?;
        let s = script_in(ctx, &scope, Some(&v.script_id)).await?;
        (s, v)
    } else {
        let s = script_in(ctx, &scope, req.script_id.as_deref()).await?;
        let name = req.version.as_deref().ok_or_else(|| JobError::missing("id|script_id+version"))?;
        let v = store.get_script_version_by_name(&s.id, name).await.map_err(internal("get version"))?;
        (s, v.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_VERSION_NOT_EXIST))?)
    };
    Ok(version_json(&script, &v, true))
}

/// What `fast_execute_script` and plan steps run when they name a library script: the
/// exact version (`script_version_id`) or the online version (`script_id`); drafts and
/// disabled versions do not run.
pub async fn executable(
    ctx: &Ctx,
    scope: &Scope,
    script_id: Option<&str>,
    version_id: Option<i64>,
) -> Result<(ScriptRow, ScriptVersionRow), JobError> {
    let store = &ctx.shared.store;
    let in_scope = |s: &ScriptRow| s.scope_type == "public" || (s.scope_type == scope.scope_type && s.scope_id == scope.scope_id);
    let (script, v) = if let Some(vid) = version_id {
        let v = store.get_script_version(vid).await.map_err(internal("get version"))?;
        let v = v.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_NOT_EXIST))?;
        let s = store.get_script(&v.script_id).await.map_err(internal("get script"))?;
        (s.filter(in_scope).ok_or_else(|| JobError::new(ErrorCode::SCRIPT_NOT_EXIST))?, v)
    } else {
        let id = script_id.ok_or_else(|| JobError::missing("script_id"))?;
        let s = store.get_script(id).await.map_err(internal("get script"))?;
        let s = s.filter(in_scope).ok_or_else(|| JobError::new(ErrorCode::SCRIPT_NOT_EXIST))?;
        let online = s.online_version_id.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_VERSION_ILLEGAL))?;
        let v = store.get_script_version(online).await.map_err(internal("get version"))?;
        (s, v.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_VERSION_ILLEGAL))?)
    };
    match v.status {
        ONLINE | OFFLINE => Ok((script, v)),
        other => Err(JobError::with(ErrorCode::SCRIPT_NOT_EXECUTABLE_STATUS, other.to_string())),
    }
}
