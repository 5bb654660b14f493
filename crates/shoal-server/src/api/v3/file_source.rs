//! Credentials and file sources (job-manage's tickets, job-file-gateway's sources):
//! `create_credential`, `update_credential`, `get_credential_detail`, `get_credential_list`,
//! `create_file_source`, `update_file_source`, `get_file_source_detail`,
//! `get_file_source_list`.
//!
//! A credential's secret fields are sealed at rest, bound to its scope and id, and no answer
//! carries them. Writes need the scope's Manage role and are audited (without the secrets);
//! reads need Access.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::limits::page;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::{lenient, ErrorCode};
use shoal_store::{CredentialRow, FileSourceRow, StoreError};

use crate::api::authz::{self, Role};
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::files::sources::{self, Secret, CREDENTIAL_TYPES};

const MAX_NAME_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 1024;

#[derive(Deserialize, Default)]
#[serde(default)]
struct CredentialReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(deserialize_with = "lenient::opt_string")]
    id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::opt_string")]
    kind: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    description: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    credential_access_key: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    credential_secret_key: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    credential_username: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    credential_password: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
}

fn reason(field: &str, why: impl Into<String>) -> JobError {
    JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.to_string(), why.into()])
}

fn nonblank(v: &Option<String>) -> Option<String> {
    v.as_deref().filter(|s| !s.trim().is_empty()).map(String::from)
}

/// The credential type (bk-job's `CredentialTypeEnum`; `ACCESS_KEY_SECRET_KEY` is read as
/// `APP_ID_SECRET_KEY`, as some documentation spells it).
fn credential_type(raw: &str) -> Result<String, JobError> {
    let t = raw.trim().to_ascii_uppercase();
    let t = if t == "ACCESS_KEY_SECRET_KEY" { "APP_ID_SECRET_KEY".to_string() } else { t };
    if !CREDENTIAL_TYPES.contains(&t.as_str()) {
        return Err(reason("type", format!("one of {}", CREDENTIAL_TYPES.join(", "))));
    }
    Ok(t)
}

/// The secret fields `kind` needs, each required.
fn secret_of(kind: &str, req: &CredentialReq) -> Result<Secret, JobError> {
    let need = |v: &Option<String>, field: &str| nonblank(v).ok_or_else(|| reason(field, format!("required by type {kind}")));
    Ok(match kind {
        "APP_ID_SECRET_KEY" => Secret {
            access_key: Some(need(&req.credential_access_key, "credential_access_key")?),
            secret_key: Some(need(&req.credential_secret_key, "credential_secret_key")?),
            ..Default::default()
        },
        "PASSWORD" => Secret { password: Some(need(&req.credential_password, "credential_password")?), ..Default::default() },
        "USERNAME_PASSWORD" => Secret {
            username: Some(need(&req.credential_username, "credential_username")?),
            password: Some(need(&req.credential_password, "credential_password")?),
            ..Default::default()
        },
        _ => Secret { secret_key: Some(need(&req.credential_secret_key, "credential_secret_key")?), ..Default::default() },
    })
}

fn check_name_description(name: &str, description: &str) -> Result<(), JobError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(reason("name", format!("at most {MAX_NAME_CHARS} characters")));
    }
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(reason("description", format!("at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    Ok(())
}

fn seal(ctx: &Ctx, c: &CredentialRow, secret: &Secret) -> Result<String, JobError> {
    let plain = serde_json::to_string(secret).map_err(internal("encode credential"))?;
    ctx.shared
        .config
        .sealing_key
        .seal(&plain, &sources::secret_aad(&c.scope_type, &c.scope_id, &c.id))
        .map_err(|e| internal("seal credential")(e))
}

fn credential_json(c: &CredentialRow) -> Value {
    json!({
        "id": c.id, "bk_scope_type": c.scope_type, "bk_scope_id": c.scope_id, "name": c.name, "type": c.kind,
        "description": c.description, "creator": c.creator, "create_time": c.create_time,
        "last_modify_user": c.last_modify_user, "last_modify_time": c.last_modify_time,
    })
}

fn who(ctx: &Ctx) -> String {
    if ctx.caller.username.is_empty() {
        ctx.caller.app_code.clone()
    } else {
        ctx.caller.username.clone()
    }
}

pub async fn create_credential(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CredentialReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Manage).await?;
    let name = nonblank(&req.name).map(|n| n.trim().to_string()).ok_or_else(|| reason("name", "name cannot be null or blank"))?;
    let kind = credential_type(&nonblank(&req.kind).ok_or_else(|| reason("type", "type cannot be null or blank"))?)?;
    let description = req.description.clone().unwrap_or_default();
    check_name_description(&name, &description)?;
    let secret = secret_of(&kind, &req)?;
    let now = shoal_core::time::now_ms();
    let mut row = CredentialRow {
        id: uuid::Uuid::new_v4().simple().to_string(),
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        name,
        kind,
        description,
        secret: String::new(),
        creator: who(ctx),
        create_time: now,
        last_modify_user: who(ctx),
        last_modify_time: now,
    };
    row.secret = seal(ctx, &row, &secret)?;
    ctx.shared.store.create_credential(&row).await.map_err(internal("create credential"))?;
    ctx.audit(&scope, "create_credential", &row.id, json!({"name": row.name, "type": row.kind})).await?;
    Ok(json!({"id": row.id, "name": row.name}))
}

/// A credential of the caller's scope; one of another scope does not exist for them.
async fn credential_in_scope(ctx: &Ctx, scope: &Scope, id: Option<&str>) -> Result<CredentialRow, JobError> {
    let id = id.map(str::trim).filter(|i| !i.is_empty()).ok_or_else(|| JobError::missing("id"))?;
    let found = ctx.shared.store.get_credential(id).await.map_err(internal("get credential"))?;
    found
        .filter(|c| c.scope_type == scope.scope_type && c.scope_id == scope.scope_id)
        .ok_or_else(|| reason("id", format!("credential {id} does not exist")))
}

pub async fn update_credential(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CredentialReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Manage).await?;
    let mut row = credential_in_scope(ctx, &scope, req.id.as_deref()).await?;
    if let Some(n) = nonblank(&req.name) {
        row.name = n.trim().to_string();
    }
    if let Some(d) = &req.description {
        row.description = d.clone();
    }
    check_name_description(&row.name, &row.description)?;
    let kind = match nonblank(&req.kind) {
        Some(k) => credential_type(&k)?,
        None => row.kind.clone(),
    };
    let gives_secret = [&req.credential_access_key, &req.credential_secret_key, &req.credential_username, &req.credential_password]
        .iter()
        .any(|v| nonblank(v).is_some());
    if gives_secret || kind != row.kind {
        let secret = secret_of(&kind, &req)?;
        row.kind = kind;
        row.secret = seal(ctx, &row, &secret)?;
    }
    row.last_modify_user = who(ctx);
    row.last_modify_time = shoal_core::time::now_ms();
    ctx.shared.store.update_credential(&row).await.map_err(internal("update credential"))?;
    ctx.audit(&scope, "update_credential", &row.id, json!({"name": row.name, "type": row.kind, "secret_changed": gives_secret})).await?;
    Ok(json!({"id": row.id, "name": row.name}))
}

pub async fn credential_detail(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CredentialReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let row = credential_in_scope(ctx, &scope, req.id.as_deref()).await?;
    Ok(credential_json(&row))
}

pub async fn credential_list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CredentialReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    let all = ctx.shared.store.list_credentials(&scope.scope_type, &scope.scope_id).await.map_err(internal("list credentials"))?;
    let kind = nonblank(&req.kind).map(|k| credential_type(&k)).transpose()?;
    let name = nonblank(&req.name);
    let rows: Vec<&CredentialRow> = all
        .iter()
        .filter(|c| kind.as_deref().is_none_or(|k| c.kind == k))
        .filter(|c| name.as_deref().is_none_or(|n| c.name.contains(n)))
        .collect();
    let data: Vec<Value> = rows.iter().skip(start as usize).take(length as usize).map(|c| credential_json(c)).collect();
    Ok(json!({"start": start, "length": length, "total": rows.len(), "data": data}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SourceReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    alias: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient::opt_string")]
    kind: Option<String>,
    access_params: Option<Value>,
    #[serde(deserialize_with = "lenient::opt_string")]
    credential_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    file_prefix: Option<String>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    enable: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
}

/// bk-job's rule: a letter, then letters, digits and `_`, 32 at most.
fn valid_code(c: &str) -> bool {
    let mut chars = c.chars();
    chars.next().is_some_and(|f| f.is_ascii_alphabetic()) && c.len() <= 32 && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn source_json(s: &FileSourceRow) -> Value {
    json!({
        "id": s.id, "bk_scope_type": s.scope_type, "bk_scope_id": s.scope_id, "code": s.code, "alias": s.alias,
        "type": s.kind, "access_params": serde_json::from_str::<Value>(&s.access_params).unwrap_or_else(|_| json!({})),
        "credential_id": s.credential_id, "file_prefix": s.file_prefix, "enable": s.enable, "public": false,
        "creator": s.creator, "create_time": s.create_time,
        "last_modify_user": s.last_modify_user, "last_modify_time": s.last_modify_time,
    })
}

/// Checks the type, access parameters and credential of a create or update.
async fn check_source(ctx: &Ctx, scope: &Scope, s: &FileSourceRow) -> Result<(), JobError> {
    if ![sources::ARTIFACTORY, sources::S3].contains(&s.kind.as_str()) {
        return Err(reason("type", format!("one of {}, {}", sources::ARTIFACTORY, sources::S3)));
    }
    let params: Value = serde_json::from_str(&s.access_params).unwrap_or_default();
    let field = if s.kind == sources::S3 { "access_params.endpoint" } else { "access_params.base_url" };
    let base = sources::base_url(&s.kind, &params).ok_or_else(|| JobError::missing(field))?;
    ctx.shared.engine.source_policy.check(&base).map_err(|why| reason(field, why))?;
    if s.alias.chars().count() > MAX_NAME_CHARS {
        return Err(reason("alias", format!("at most {MAX_NAME_CHARS} characters")));
    }
    // The prefix starts each file name placed on the targets: it cannot name a directory.
    if s.file_prefix.contains(['/', '\\', '\0']) || s.file_prefix == "." || s.file_prefix == ".." || s.file_prefix.len() > 200 {
        return Err(reason("file_prefix", "a file name prefix: no / or \\, at most 200 bytes"));
    }
    let credential = credential_in_scope(ctx, scope, Some(&s.credential_id)).await.map_err(|_| JobError::illegal("credential_id"))?;
    if s.kind == sources::S3 && credential.kind != "APP_ID_SECRET_KEY" {
        return Err(reason("credential_id", "an S3 source needs an APP_ID_SECRET_KEY credential (access key and secret key)"));
    }
    let others = ctx.shared.store.list_file_sources(&scope.scope_type, &scope.scope_id).await.map_err(internal("list file sources"))?;
    if others.iter().any(|o| o.alias == s.alias && o.code != s.code) {
        return Err(JobError::with(ErrorCode::FILE_SOURCE_ALIAS_ALREADY_EXISTS, s.alias.clone()));
    }
    Ok(())
}

fn access_params_of(v: &Option<Value>) -> Result<Option<String>, JobError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            // Secrets belong in credentials: a source's parameters are returned as they are.
            if m.keys().any(|k| ["password", "secret_key", "access_key", "token"].contains(&k.as_str())) {
                return Err(reason("access_params", "secrets go into a credential (credential_id)"));
            }
            Ok(Some(Value::Object(m.clone()).to_string()))
        }
        Some(_) => Err(JobError::illegal("access_params")),
    }
}

pub async fn create_file_source(ctx: &Ctx, params: Value) -> ApiResult {
    let req: SourceReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Manage).await?;
    let code = nonblank(&req.code).map(|c| c.trim().to_string()).ok_or_else(|| JobError::missing("code"))?;
    if !valid_code(&code) {
        return Err(reason("code", "a letter, then letters, digits and _ (32 at most)"));
    }
    let alias = nonblank(&req.alias).map(|a| a.trim().to_string()).ok_or_else(|| JobError::missing("alias"))?;
    let kind = nonblank(&req.kind).map(|k| k.trim().to_ascii_uppercase()).ok_or_else(|| JobError::missing("type"))?;
    let access_params = access_params_of(&req.access_params)?.ok_or_else(|| JobError::missing("access_params"))?;
    let credential_id = nonblank(&req.credential_id).map(|c| c.trim().to_string()).ok_or_else(|| JobError::missing("credential_id"))?;
    if ctx.shared.store.file_source_by_code(&scope.scope_type, &scope.scope_id, &code).await.map_err(internal("get file source"))?.is_some()
    {
        return Err(JobError::with(ErrorCode::FILE_SOURCE_CODE_ALREADY_EXISTS, code));
    }
    let now = shoal_core::time::now_ms();
    let mut row = FileSourceRow {
        id: 0,
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        code,
        alias,
        kind,
        access_params,
        credential_id,
        file_prefix: req.file_prefix.clone().unwrap_or_default(),
        enable: req.enable.unwrap_or(true),
        creator: who(ctx),
        create_time: now,
        last_modify_user: who(ctx),
        last_modify_time: now,
    };
    check_source(ctx, &scope, &row).await?;
    row.id = match ctx.shared.store.create_file_source(&row).await {
        Ok(id) => id,
        Err(StoreError::Conflict(_)) => return Err(JobError::with(ErrorCode::FILE_SOURCE_CODE_ALREADY_EXISTS, row.code)),
        Err(e) => return Err(internal("create file source")(e)),
    };
    ctx.audit(&scope, "create_file_source", row.id, json!({"code": row.code, "type": row.kind, "access_params": row.access_params}))
        .await?;
    Ok(json!({"id": row.id}))
}

/// The source a request names: by `id` (wins) or by `code`.
async fn source_in_scope(ctx: &Ctx, scope: &Scope, id: Option<i64>, code: Option<&str>) -> Result<FileSourceRow, JobError> {
    let store = &ctx.shared.store;
    match (id.filter(|i| *i >= 1), code.map(str::trim).filter(|c| !c.is_empty())) {
        (Some(id), _) => store
            .get_file_source(id)
            .await
            .map_err(internal("get file source"))?
            .filter(|s| s.scope_type == scope.scope_type && s.scope_id == scope.scope_id)
            .ok_or_else(|| JobError::with(ErrorCode::FILE_SOURCE_NOT_EXIST, id.to_string())),
        (None, Some(code)) => store
            .file_source_by_code(&scope.scope_type, &scope.scope_id, code)
            .await
            .map_err(internal("get file source"))?
            .ok_or_else(|| JobError::with(ErrorCode::FAIL_TO_FIND_FILE_SOURCE_BY_CODE, code.to_string())),
        (None, None) => Err(JobError::new(ErrorCode::ID_AND_CODE_AT_LEAST_ONE)),
    }
}

/// The file source `fast_transfer_file` names (`file_source_id` wins over the code).
pub(crate) async fn resolve(ctx: &Ctx, scope: &Scope, id: Option<i64>, code: Option<&str>) -> Result<FileSourceRow, JobError> {
    source_in_scope(ctx, scope, id, code).await
}

pub async fn update_file_source(ctx: &Ctx, params: Value) -> ApiResult {
    let req: SourceReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Manage).await?;
    // bk-job finds the source to update by its code (which never changes).
    let code = nonblank(&req.code).ok_or_else(|| JobError::missing("code"))?;
    let mut row = source_in_scope(ctx, &scope, None, Some(&code)).await?;
    if let Some(a) = nonblank(&req.alias) {
        row.alias = a.trim().to_string();
    }
    if let Some(k) = nonblank(&req.kind) {
        row.kind = k.trim().to_ascii_uppercase();
    }
    if let Some(p) = access_params_of(&req.access_params)? {
        row.access_params = p;
    }
    if let Some(c) = nonblank(&req.credential_id) {
        row.credential_id = c.trim().to_string();
    }
    if let Some(p) = &req.file_prefix {
        row.file_prefix = p.clone();
    }
    if let Some(e) = req.enable {
        row.enable = e;
    }
    check_source(ctx, &scope, &row).await?;
    row.last_modify_user = who(ctx);
    row.last_modify_time = shoal_core::time::now_ms();
    ctx.shared.store.update_file_source(&row).await.map_err(internal("update file source"))?;
    ctx.audit(&scope, "update_file_source", row.id, json!({"code": row.code, "type": row.kind, "access_params": row.access_params}))
        .await?;
    Ok(json!({"id": row.id}))
}

pub async fn file_source_detail(ctx: &Ctx, params: Value) -> ApiResult {
    let req: SourceReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let row = source_in_scope(ctx, &scope, req.id, req.code.as_deref()).await?;
    Ok(source_json(&row))
}

pub async fn file_source_list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: SourceReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    let all = ctx.shared.store.list_file_sources(&scope.scope_type, &scope.scope_id).await.map_err(internal("list file sources"))?;
    let alias = nonblank(&req.alias);
    let kind = nonblank(&req.kind).map(|k| k.trim().to_ascii_uppercase());
    let rows: Vec<&FileSourceRow> = all
        .iter()
        .filter(|s| alias.as_deref().is_none_or(|a| s.alias.contains(a)))
        .filter(|s| kind.as_deref().is_none_or(|k| s.kind == k))
        .filter(|s| nonblank(&req.code).is_none_or(|c| s.code == c))
        .collect();
    let data: Vec<Value> = rows.iter().skip(start as usize).take(length as usize).map(|s| source_json(s)).collect();
    Ok(json!({"start": start, "length": length, "total": rows.len(), "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_bk_jobs_rule() {
        for good in ["a", "NODEMAN_bkrepo", "x1_2"] {
            assert!(valid_code(good), "{good}");
        }
        for bad in ["", "1abc", "_a", "a-b", "a b", &"a".repeat(33)] {
            assert!(!valid_code(bad), "{bad}");
        }
    }

    #[test]
    fn each_type_needs_its_secret_fields() {
        let req = CredentialReq { credential_username: Some("u".into()), ..Default::default() };
        assert!(secret_of("USERNAME_PASSWORD", &req).is_err());
        let req = CredentialReq { credential_username: Some("u".into()), credential_password: Some("p".into()), ..Default::default() };
        let s = secret_of("USERNAME_PASSWORD", &req).unwrap();
        assert_eq!((s.username.as_deref(), s.password.as_deref(), s.access_key), (Some("u"), Some("p"), None));
        assert_eq!(credential_type("access_key_secret_key").unwrap(), "APP_ID_SECRET_KEY");
        assert!(credential_type("TOKEN").is_err());
    }
}
