//! People as principals under `/api/shoal/v1/`:
//! - `POST login {username, password}` (no other credentials): a login session,
//!   `{token, session_id, expires_at}`; use it as `Authorization: Bearer <token>`.
//!   `POST session/refresh` rotates the calling session (a new token; the old one stops
//!   working); `POST logout` revokes it.
//! - Admins: `GET users`; `POST users {username, admin?, password?}` (a generated password is
//!   answered once); `POST users/disable|enable {username}`.
//! - `POST users/passwd {username?, password?, current_password?}`: an admin sets anyone's; a
//!   user sets their own with `current_password`. Every session of the user is revoked.
//! - `GET users/tokens[?username=]`, `POST users/tokens {name?, expires_in?, username?}`
//!   (seconds; the token is answered once), `POST users/tokens/revoke {id, username?}`: a user
//!   manages their own personal API tokens; an admin anyone's (`username`).
//! - Admins: `POST apps/trust {code, trusted}`: whether an app is a trusted gateway (may
//!   assert `bk_username` for someone else); `GET apps/trust`: the trusted gateways.
//!
//! Grants to users go through `grants` / `account_grants` with `app_code = "user:<name>"`.
//! Every change and every login is an audit event. These answers carry secrets or change
//! credentials, so they are never kept for idempotent replay.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::JobError;
use shoal_proto::{lenient, ErrorCode};
use shoal_store::users::{TokenKind, TokenRow, UserRow};
use shoal_store::{AuditEvent, StoreError};

use crate::api::authz::authorize_platform;
use crate::api::envelope::{method_not_allowed, not_found};
use crate::api::trust::record;
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::auth::{self, password, token};
use crate::Shared;

const PATHS: [&str; 11] = [
    "users",
    "users/passwd",
    "users/disable",
    "users/enable",
    "users/tokens",
    "users/tokens/revoke",
    "logout",
    "session/refresh",
    "apps/trust",
    "apps/access_tokens",
    "apps/access_tokens/revoke",
];

/// Whether `path` (under `/api/shoal/v1/`) is served here (besides `login`).
pub fn handles(path: &str) -> bool {
    PATHS.contains(&path.trim_end_matches('/'))
}

pub async fn call(ctx: &Ctx, method: &Method, path: &str, params: Value) -> ApiResult {
    match (path.trim_end_matches('/'), method.clone()) {
        ("users", Method::GET) => list_users(ctx).await,
        ("users", Method::POST) => create_user(ctx, params).await,
        ("users/passwd", Method::POST) => passwd(ctx, params).await,
        ("users/disable", Method::POST) => set_disabled(ctx, params, true).await,
        ("users/enable", Method::POST) => set_disabled(ctx, params, false).await,
        ("users/tokens", Method::GET) => list_tokens(ctx, params).await,
        ("users/tokens", Method::POST) => create_token(ctx, params).await,
        ("users/tokens/revoke", Method::POST) => revoke_token(ctx, params).await,
        ("logout", Method::POST) => logout(ctx).await,
        ("session/refresh", Method::POST) => refresh(ctx).await,
        ("apps/trust", Method::POST) => trust_app(ctx, params).await,
        ("apps/trust", Method::GET) => list_gateways(ctx).await,
        ("apps/access_tokens", Method::POST) => super::app_tokens::issue(ctx, params).await,
        ("apps/access_tokens", Method::GET) => super::app_tokens::list(ctx, params).await,
        ("apps/access_tokens/revoke", Method::POST) => super::app_tokens::revoke(ctx, params).await,
        (p, _) if handles(p) => Err(method_not_allowed()),
        (other, _) => Err(not_found(other)),
    }
}

fn reason(field: &str, why: &str) -> JobError {
    JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.into(), why.into()])
}

/// User names: 1–64 of `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit (never `:`,
/// which names app principals).
pub fn valid_username(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

const MIN_PASSWORD: usize = 10;

fn check_password(p: &str) -> Result<(), JobError> {
    if p.chars().count() < MIN_PASSWORD || p.len() > 1024 {
        return Err(reason("password", "a password has 10 to 1024 characters"));
    }
    Ok(())
}

/// argon2 is CPU work of tens of milliseconds: off the async workers.
async fn hash(p: String) -> Result<String, JobError> {
    tokio::task::spawn_blocking(move || password::hash_password(&p))
        .await
        .map_err(internal("hash password"))?
        .map_err(internal("hash password"))
}

async fn verify(p: String, phc: String) -> Result<bool, JobError> {
    tokio::task::spawn_blocking(move || password::verify_password(&p, &phc)).await.map_err(internal("verify password"))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserReq {
    #[serde(deserialize_with = "lenient::opt_string")]
    username: Option<String>,
    password: Option<String>,
    current_password: Option<String>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    admin: Option<bool>,
    #[serde(deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    expires_in: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_string")]
    id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_bool")]
    trusted: Option<bool>,
}

fn username_of(req: &UserReq) -> Result<String, JobError> {
    let n = req.username.as_deref().map(str::trim).filter(|n| !n.is_empty()).ok_or_else(|| JobError::missing("username"))?;
    if !valid_username(n) {
        return Err(JobError::illegal("username"));
    }
    Ok(n.to_string())
}

fn user_json(u: &UserRow) -> Value {
    json!({"username": u.username, "admin": u.is_admin, "created_by": u.created_by, "create_time": u.created_at,
           "disabled": u.disabled_at.is_some(), "disable_time": u.disabled_at})
}

async fn list_users(ctx: &Ctx) -> ApiResult {
    authorize_platform(ctx)?;
    let users = ctx.shared.store.list_users().await.map_err(internal("list users"))?;
    let data: Vec<Value> = users.iter().map(user_json).collect();
    Ok(json!({"total": data.len(), "data": data}))
}

async fn create_user(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: UserReq = decode(params)?;
    let username = username_of(&req)?;
    let admin = req.admin.unwrap_or(false);
    let (password, generated) = match req.password {
        Some(p) => (p, false),
        None => (auth::random_token()[..32].to_string(), true),
    };
    check_password(&password)?;
    let row = UserRow {
        username: username.clone(),
        password_hash: hash(password.clone()).await?,
        is_admin: admin,
        created_by: ctx.caller.username.clone(),
        created_at: shoal_core::time::now_ms(),
        disabled_at: None,
    };
    match ctx.shared.store.create_user(&row).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(reason("username", "exists")),
        Err(e) => return Err(internal("create user")(e)),
    }
    record(ctx, "create_user", &username, json!({"admin": admin})).await?;
    tracing::info!(username = %username, admin, "user created");
    let mut out = user_json(&row);
    if generated {
        out["password"] = json!(password);
    }
    Ok(out)
}

async fn passwd(ctx: &Ctx, params: Value) -> ApiResult {
    let req: UserReq = decode(params)?;
    let username = match (&req.username, ctx.caller.shoal_user()) {
        (Some(_), _) => username_of(&req)?,
        (None, Some(me)) => me.to_string(),
        (None, None) => return Err(JobError::missing("username")),
    };
    let store = &ctx.shared.store;
    let user = store.get_user(&username).await.map_err(internal("get user"))?;
    if ctx.caller.shoal_user() == Some(username.as_str()) && !ctx.caller.is_admin {
        // One's own password, with the current one: a stolen token alone cannot take the
        // account over.
        let current = req.current_password.clone().ok_or_else(|| JobError::missing("current_password"))?;
        let phc = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_default();
        if !verify(current, phc).await? {
            return Err(reason("current_password", "does not match"));
        }
    } else {
        authorize_platform(ctx)?;
    }
    if user.is_none() {
        return Err(JobError::illegal("username"));
    }
    let (password, generated) = match req.password {
        Some(p) => (p, false),
        None => (auth::random_token()[..32].to_string(), true),
    };
    check_password(&password)?;
    let phc = hash(password.clone()).await?;
    match store.set_user_password(&username, &phc, shoal_core::time::now_ms()).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Err(JobError::illegal("username")),
        Err(e) => return Err(internal("set password")(e)),
    }
    record(ctx, "set_user_password", &username, json!({})).await?;
    let mut out = json!({"username": username});
    if generated {
        out["password"] = json!(password);
    }
    Ok(out)
}

async fn set_disabled(ctx: &Ctx, params: Value, disable: bool) -> ApiResult {
    authorize_platform(ctx)?;
    let req: UserReq = decode(params)?;
    let username = username_of(&req)?;
    if disable && ctx.caller.shoal_user() == Some(username.as_str()) {
        return Err(reason("username", "cannot disable oneself"));
    }
    let at = disable.then(shoal_core::time::now_ms);
    match ctx.shared.store.set_user_disabled(&username, at).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Err(JobError::illegal("username")),
        Err(e) => return Err(internal("disable user")(e)),
    }
    record(ctx, if disable { "disable_user" } else { "enable_user" }, &username, json!({})).await?;
    tracing::info!(username = %username, disable, "user disabled or enabled");
    Ok(json!({"username": username, "disabled": disable}))
}

/// Whose tokens a request is about: `username` (admins, or oneself), else the calling user.
fn token_owner(ctx: &Ctx, req: &UserReq) -> Result<String, JobError> {
    let me = ctx.caller.shoal_user();
    match &req.username {
        Some(_) => {
            let n = username_of(req)?;
            if me != Some(n.as_str()) {
                authorize_platform(ctx)?;
            }
            Ok(n)
        }
        None => me.map(String::from).ok_or_else(|| reason("username", "the caller is not a Shoal user: name one")),
    }
}

fn token_json(t: &TokenRow) -> Value {
    json!({"id": t.id, "username": t.username, "kind": t.kind.as_str(), "name": t.name, "create_time": t.created_at,
           "expire_time": t.expires_at, "revoked": t.revoked_at.is_some(), "revoke_time": t.revoked_at})
}

async fn list_tokens(ctx: &Ctx, params: Value) -> ApiResult {
    let req: UserReq = decode(params)?;
    let owner = match (&req.username, ctx.caller.shoal_user()) {
        (None, None) => {
            authorize_platform(ctx)?;
            None
        }
        _ => Some(token_owner(ctx, &req)?),
    };
    let rows = ctx.shared.store.list_tokens(owner.as_deref(), TokenKind::Api).await.map_err(internal("list tokens"))?;
    let data: Vec<Value> = rows.iter().map(token_json).collect();
    Ok(json!({"total": data.len(), "data": data}))
}

async fn create_token(ctx: &Ctx, params: Value) -> ApiResult {
    let req: UserReq = decode(params)?;
    let owner = token_owner(ctx, &req)?;
    let store = &ctx.shared.store;
    match store.get_user(&owner).await.map_err(internal("get user"))? {
        Some(u) if u.disabled_at.is_none() => {}
        _ => return Err(JobError::illegal("username")),
    }
    let name = req.name.as_deref().map(str::trim).unwrap_or("").to_string();
    if name.chars().count() > 64 {
        return Err(JobError::illegal("name"));
    }
    let expires_at = match req.expires_in {
        None => None,
        Some(s) if (1..=10 * 365 * 86400).contains(&s) => Some(shoal_core::time::now_ms() + s * 1000),
        Some(_) => return Err(JobError::illegal("expires_in")),
    };
    let (secret, row) = token::issue(&owner, TokenKind::Api, &name, expires_at);
    store.create_token(&row).await.map_err(internal("create token"))?;
    record(ctx, "create_user_token", &owner, json!({"token_id": row.id, "name": name, "expires_at": expires_at})).await?;
    let mut out = token_json(&row);
    out["token"] = json!(secret);
    Ok(out)
}

async fn revoke_token(ctx: &Ctx, params: Value) -> ApiResult {
    let req: UserReq = decode(params)?;
    let id = req.id.as_deref().map(str::trim).filter(|i| !i.is_empty()).ok_or_else(|| JobError::missing("id"))?.to_string();
    // Without `username`, a user revokes among their own tokens; an admin among everyone's.
    let owner = match (&req.username, ctx.caller.shoal_user()) {
        (None, None) => {
            authorize_platform(ctx)?;
            None
        }
        _ => Some(token_owner(ctx, &req)?),
    };
    let done = ctx.shared.store.revoke_token(&id, owner.as_deref(), shoal_core::time::now_ms()).await.map_err(internal("revoke token"))?;
    if !done {
        return Err(JobError::illegal("id"));
    }
    record(ctx, "revoke_user_token", owner.as_deref().unwrap_or(""), json!({"token_id": id})).await?;
    Ok(json!({"id": id, "revoked": true}))
}

async fn logout(ctx: &Ctx) -> ApiResult {
    let id = ctx.caller.session_id.clone().ok_or_else(|| reason("session", "not called with a login session"))?;
    ctx.shared.store.revoke_token(&id, Some(&ctx.caller.username), shoal_core::time::now_ms()).await.map_err(internal("logout"))?;
    record(ctx, "logout", &ctx.caller.username, json!({"session_id": id})).await?;
    Ok(json!({"session_id": id, "revoked": true}))
}

/// A new session for `username`, stored; the answer carries its token.
async fn new_session(shared: &Shared, username: &str) -> Result<(Value, TokenRow), JobError> {
    let expires_at = shoal_core::time::now_ms() + token::SESSION_TTL_MS;
    let (secret, row) = token::issue(username, TokenKind::Session, "login", Some(expires_at));
    shared.store.create_token(&row).await.map_err(internal("create session"))?;
    Ok((json!({"username": username, "token": secret, "session_id": row.id, "expires_at": expires_at}), row))
}

/// Rotation: the new session is stored before the old one is revoked, so a failure in
/// between leaves the caller logged in rather than locked out.
async fn refresh(ctx: &Ctx) -> ApiResult {
    let old = ctx.caller.session_id.clone().ok_or_else(|| reason("session", "not called with a login session"))?;
    let (answer, row) = new_session(&ctx.shared, &ctx.caller.username).await?;
    if !ctx.shared.store.revoke_token(&old, Some(&ctx.caller.username), shoal_core::time::now_ms()).await.map_err(internal("refresh"))? {
        // Refreshed concurrently by someone else holding the same token: only one rotation wins.
        ctx.shared.store.revoke_token(&row.id, None, shoal_core::time::now_ms()).await.map_err(internal("refresh"))?;
        return Err(JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL));
    }
    record(ctx, "refresh_session", &ctx.caller.username, json!({"session_id": row.id, "previous": old})).await?;
    Ok(answer)
}

async fn list_gateways(ctx: &Ctx) -> ApiResult {
    authorize_platform(ctx)?;
    let codes = ctx.shared.store.list_gateways().await.map_err(internal("list gateways"))?;
    Ok(json!({"total": codes.len(), "data": codes}))
}

async fn trust_app(ctx: &Ctx, params: Value) -> ApiResult {
    authorize_platform(ctx)?;
    let req: UserReq = decode(params)?;
    let code = req.code.as_deref().map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| JobError::missing("code"))?.to_string();
    let trusted = req.trusted.unwrap_or(true);
    match ctx.shared.store.set_app_gateway(&code, trusted).await {
        Ok(()) => {}
        Err(StoreError::NotFound(_)) => return Err(JobError::illegal("code")),
        Err(e) => return Err(internal("trust app")(e)),
    }
    record(ctx, if trusted { "trust_app" } else { "untrust_app" }, &code, json!({})).await?;
    tracing::info!(app_code = %code, trusted, "app gateway trust changed");
    Ok(json!({"code": code, "trusted_gateway": trusted}))
}

/// `POST login {username, password}`: the password is checked with argon2 (against a decoy
/// hash for an unknown user, so the time does not tell which names exist); a disabled user or
/// a wrong password answers 401 (1240005) without saying which. Each attempt is audited.
pub async fn login(shared: &std::sync::Arc<Shared>, method: &Method, params: Value, request_id: &str) -> ApiResult {
    if method != Method::POST {
        return Err(method_not_allowed());
    }
    let req: UserReq = decode(params)?;
    let username =
        req.username.as_deref().map(str::trim).filter(|n| !n.is_empty()).ok_or_else(|| JobError::missing("username"))?.to_string();
    let given = req.password.clone().ok_or_else(|| JobError::missing("password"))?;
    if !valid_username(&username) || given.len() > 1024 {
        return Err(JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL));
    }
    let user = shared.store.get_user(&username).await.map_err(internal("get user"))?;
    let phc = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| password::decoy_hash().to_string());
    let matches = verify(given, phc).await?;
    let ok = matches && user.as_ref().is_some_and(|u| u.disabled_at.is_none());
    let mut event = AuditEvent {
        time: shoal_core::time::now_ms(),
        app_code: String::new(),
        username: username.clone(),
        scope_type: String::new(),
        scope_id: String::new(),
        action: if ok { "login".into() } else { "login_failed".into() },
        resource_id: username.clone(),
        detail: json!({"request_id": request_id}).to_string(),
    };
    if !ok {
        shared.store.audit(&event).await.map_err(internal("audit"))?;
        tracing::info!(username = %username, "login refused");
        return Err(JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL));
    }
    let (answer, row) = new_session(shared, &username).await?;
    event.detail = json!({"request_id": request_id, "session_id": row.id}).to_string();
    shared.store.audit(&event).await.map_err(internal("audit"))?;
    tracing::info!(username = %username, session_id = %row.id, "logged in");
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert!(valid_username("alice") && valid_username("a.b-c_d@corp"));
        assert!(!valid_username("app:ci") && !valid_username("") && !valid_username("-x") && !valid_username(&"a".repeat(65)));
    }
}
