//! Who is calling: the call's [`Principal`].
//!
//! - A **user** presents `Authorization: Bearer <token>`: a personal API token or a login
//!   session (see [`token`]); the token is checked by its SHA-256, with its user live.
//!   The web console carries its login session in the `shoal_session` cookie instead, which
//!   counts only together with the session's CSRF token ([`crate::console::session`]).
//! - An **app** presents `bk_app_code` + `bk_app_secret`, either in the
//!   `X-Bkapi-Authorization` header (API-gateway style) or in the body / query string (ESB
//!   style), and names a user (`bk_username`; on `/system/` paths `X-Bk-Username` wins). The
//!   name is believed only from a **trusted gateway** app (the bootstrap app, and apps an
//!   admin marked with `shoal app trust`), as BlueKing trusts its ESB / API gateway. Any other
//!   app acts as itself: its calls are made by `app:<code>`, whatever name it sent.
//!   `bk_username` stays required on every app call (JOB answers 1247002 without it, and
//!   callers written for JOB always send it), but from a non-gateway app it is only logged.
//!
//! - An **app** may instead present an `access_token` Shoal issued for it ([`access_token`]),
//!   in the same places; `bk_username` is then optional (without it the app acts as itself).
//! - A BlueKing login ticket (`bk_token`, `bk_ticket`) cannot be verified here: a call that
//!   carries one instead of app credentials is refused (401) with a message naming what to
//!   send instead.
//!
//! Whose grants apply ([`Caller::grantee`]): a user's own (stored under `user:<name>`); an
//! app's own; through a gateway, the named user's when that user exists in Shoal (a disabled
//! one is refused), else the gateway app's (BlueKing's model: the gateway vouches for people
//! Shoal does not know).
//! App secrets are stored as argon2id ([`password`]); rows from before hold salted SHA-256,
//! which still verifies and is replaced by argon2id on the first successful call. Agent
//! credentials (random, 256 bits, never chosen by a person) stay salted SHA-256.

pub mod access_token;
pub mod password;
pub mod token;

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shoal_core::JobError;
use shoal_proto::ErrorCode;
use shoal_store::{AppRow, Store};

/// Who makes a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A Shoal user, by API token or login session.
    User { name: String },
    /// An app acting as itself (not a trusted gateway).
    App { code: String },
    /// A trusted gateway app relaying a user; `known` when the user exists in Shoal.
    Gateway { app: String, user: String, known: bool },
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The app the call came through (audit, idempotency keys, per-app quota); for a user's
    /// own call `user:<name>`, so users never share those with each other or with an app.
    pub app_code: String,
    /// The name the call is made under, unique per principal: a user's name, `app:<code>` for
    /// an app acting as itself. Authors, approvers, confirmers and audit events use it.
    pub username: String,
    /// Platform admin (the principal whose grants apply is an admin app or admin user).
    pub is_admin: bool,
    /// Key of the grants that apply (`app_grants.app_code`).
    grantee: String,
    /// Id of the login session the call was authenticated with (logout, refresh).
    pub session_id: Option<String>,
}

/// The grants key of a user.
pub fn user_grantee(name: &str) -> String {
    format!("user:{name}")
}

/// The name an app acting as itself is known by.
pub fn app_principal_name(code: &str) -> String {
    format!("app:{code}")
}

impl Caller {
    pub fn user(name: &str, is_admin: bool, session_id: Option<String>) -> Caller {
        Caller {
            principal: Principal::User { name: name.into() },
            app_code: user_grantee(name),
            username: name.into(),
            is_admin,
            grantee: user_grantee(name),
            session_id,
        }
    }

    pub fn app(code: &str, is_admin: bool) -> Caller {
        Caller {
            principal: Principal::App { code: code.into() },
            app_code: code.into(),
            username: app_principal_name(code),
            is_admin,
            grantee: code.into(),
            session_id: None,
        }
    }

    /// A gateway relaying `user`: with `shoal_user` (the user exists in Shoal, live), the
    /// user's grants and admin flag apply, else the app's.
    pub fn gateway(app: &AppRow, user: &str, shoal_user: Option<&shoal_store::users::UserRow>) -> Caller {
        let (grantee, is_admin) = match shoal_user {
            Some(u) => (user_grantee(&u.username), u.is_admin),
            None => (app.code.clone(), app.is_admin),
        };
        Caller {
            principal: Principal::Gateway { app: app.code.clone(), user: user.into(), known: shoal_user.is_some() },
            app_code: app.code.clone(),
            username: user.into(),
            is_admin,
            grantee,
            session_id: None,
        }
    }

    /// Key of the grants (roles, execution accounts) that apply to this call.
    pub fn grantee(&self) -> &str {
        &self.grantee
    }

    /// The Shoal user making the call, directly or through a gateway.
    pub fn shoal_user(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { name } => Some(name),
            Principal::Gateway { user, known: true, .. } => Some(user),
            _ => None,
        }
    }
}

pub fn random_secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn hash_secret(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

pub fn new_app(code: &str, secret: &str, is_admin: bool) -> AppRow {
    AppRow {
        code: code.to_string(),
        secret_hash: password::hash(secret),
        salt: String::new(),
        is_admin,
        created_at: shoal_core::time::now_ms(),
    }
}

/// Successful app-secret verifications, so argon2 runs once per app and secret, not per call.
pub static SECRET_CACHE: std::sync::LazyLock<password::VerifyCache> = std::sync::LazyLock::new(password::VerifyCache::default);

/// At most this many argon2 verifications at once: a stream of wrong secrets costs the
/// callers time, not every core of the server.
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Whether `secret` is `app`'s secret: argon2id, or a legacy salted SHA-256 row, which is
/// upgraded to argon2id in `store` on success (only if nobody changed the row meanwhile).
pub async fn check_app_secret(store: &dyn Store, app: &AppRow, secret: &str) -> bool {
    if SECRET_CACHE.hit(&app.code, &app.secret_hash, secret) {
        return true;
    }
    if !password::is_argon2(&app.secret_hash) {
        if !same(&app.secret_hash, &hash_secret(&app.salt, secret)) {
            return false;
        }
        let (code, old, secret) = (app.code.clone(), app.secret_hash.clone(), secret.to_string());
        let Ok(new) = tokio::task::spawn_blocking(move || password::hash(&secret)).await else { return true };
        match store.upgrade_app_secret(&code, &old, &new).await {
            Ok(true) => tracing::info!(app_code = %code, "app secret rehashed with argon2id"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, app_code = %code, "could not rehash a legacy app secret"),
        }
        return true;
    }
    let Ok(_slot) = ARGON2_SLOTS.acquire().await else { return false };
    let (stored, presented) = (app.secret_hash.clone(), secret.to_string());
    let ok = tokio::task::spawn_blocking(move || password::verify(&stored, &presented)).await.unwrap_or(false);
    if ok {
        SECRET_CACHE.remember(&app.code, &app.secret_hash, secret);
    }
    ok
}

/// Compare without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Credentials as presented, before checking them.
#[derive(Default)]
pub struct Presented {
    pub app_code: Option<String>,
    pub app_secret: Option<String>,
    pub username: Option<String>,
    /// An app access token Shoal issued ([`access_token`]).
    pub access_token: Option<String>,
    /// A BlueKing login ticket (`bk_token` / `bk_ticket`) was sent: Shoal cannot verify one.
    pub login_ticket: bool,
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    match v.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

pub fn presented(headers: &HeaderMap, params: &Value, system_path: bool) -> Presented {
    let mut p = Presented::default();
    if let Some(h) = headers.get("x-bkapi-authorization").and_then(|v| v.to_str().ok()) {
        if let Ok(v) = serde_json::from_str::<Value>(h) {
            p.app_code = str_field(&v, "bk_app_code");
            p.app_secret = str_field(&v, "bk_app_secret");
            p.username = str_field(&v, "bk_username");
            p.access_token = str_field(&v, "access_token");
            p.login_ticket = ["bk_token", "bk_ticket"].iter().any(|k| str_field(&v, k).is_some());
        }
    }
    let hdr = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    p.app_code = p.app_code.or_else(|| hdr("x-bk-app-code")).or_else(|| str_field(params, "bk_app_code"));
    p.app_secret = p.app_secret.or_else(|| hdr("x-bk-app-secret")).or_else(|| str_field(params, "bk_app_secret"));
    p.username = p.username.or_else(|| str_field(params, "bk_username"));
    p.access_token = p.access_token.or_else(|| str_field(params, "access_token"));
    p.login_ticket |= ["bk_token", "bk_ticket"].iter().any(|k| str_field(params, k).is_some()) || login_cookie(headers);
    if system_path {
        if let Some(u) = hdr("x-bk-username") {
            p.username = Some(u);
        }
    }
    p
}

/// Whether a `bk_token` / `bk_ticket` cookie was sent (a browser's BlueKing login).
fn login_cookie(headers: &HeaderMap) -> bool {
    headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|c| {
        c.split(';').filter_map(|kv| kv.split_once('=')).any(|(k, v)| matches!(k.trim(), "bk_token" | "bk_ticket") && !v.trim().is_empty())
    })
}

/// The answer to a call that relies on a BlueKing login ticket: for its app (`code`
/// 1240005) or for its user (1247002, app credentials without `bk_username`).
pub fn login_ticket_refused(code: ErrorCode) -> JobError {
    let mut e = JobError::unauthorized(code);
    e.detail = Some(
        "bk_token / bk_ticket (a BlueKing login ticket) is not accepted by Shoal: send bk_app_code + bk_app_secret \
         with bk_username, an access_token issued by Shoal (shoal app token), or Authorization: Bearer <Shoal user token>"
            .into(),
    );
    e
}

/// The bearer token of `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Check presented app credentials against the app's stored hash; answers the app and the
/// user name it asserted (required: 1247002 without one).
pub async fn verify<'a>(store: &dyn Store, p: Presented, app: Option<&'a AppRow>) -> Result<(&'a AppRow, String), JobError> {
    let _code = p.app_code.ok_or_else(|| JobError::unauthorized(ErrorCode::MISSING_APP_CODE))?;
    let secret = p.app_secret.ok_or_else(|| JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL))?;
    let app = match app {
        Some(a) if check_app_secret(store, a, &secret).await => a,
        _ => return Err(JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL)),
    };
    let username = p.username.ok_or_else(|| JobError::unauthorized(ErrorCode::MISSING_USER_INFO))?;
    Ok((app, username))
}

/// Whether a gateway may assert `name`: no `:` (that is how app principals are named, so a
/// gateway cannot speak as `app:ci`) and at most 128 bytes.
fn assertable(name: &str) -> bool {
    !name.contains(':') && name.len() <= 128
}

fn store_error(e: shoal_store::StoreError) -> JobError {
    tracing::error!(error = %e, "reading credentials");
    JobError::internal()
}

/// Authenticate a request: a bearer token, else the console's session cookie (only with its
/// CSRF token, see [`crate::console::session`]; `key` makes those), else app credentials
/// (see the module doc).
pub async fn authenticate(
    store: &dyn Store,
    key: &crate::secrets::Key,
    headers: &HeaderMap,
    params: &Value,
    system_path: bool,
) -> Result<Caller, JobError> {
    if let Some(t) = bearer(headers) {
        return token::authenticate(store, t).await;
    }
    if crate::console::session::cookie_token(headers).is_some() {
        return crate::console::session::cookie_caller(store, key, headers, true).await;
    }
    let p = presented(headers, params, system_path);
    if let Some(t) = &p.access_token {
        let app = access_token::app_of(store, t, p.app_code.as_deref()).await?;
        return match p.username {
            Some(claimed) => as_app(store, &app, claimed).await,
            None => Ok(Caller::app(&app.code, app.is_admin)),
        };
    }
    if p.login_ticket && (p.app_code.is_none() || p.app_secret.is_none()) {
        return Err(login_ticket_refused(ErrorCode::SERVICE_AUTH_FAIL));
    }
    if p.login_ticket && p.username.is_none() {
        return Err(login_ticket_refused(ErrorCode::MISSING_USER_INFO));
    }
    let row = match &p.app_code {
        Some(code) => store.get_app(code).await.map_err(store_error)?,
        None => None,
    };
    let (app, claimed) = verify(store, p, row.as_ref()).await?;
    as_app(store, app, claimed).await
}

/// The caller of an authenticated app that names `claimed` as its user (see the module doc).
async fn as_app(store: &dyn Store, app: &AppRow, claimed: String) -> Result<Caller, JobError> {
    let (gateway, user) = store.gateway_and_user(&app.code, &claimed).await.map_err(store_error)?;
    if !gateway {
        if claimed != app_principal_name(&app.code) {
            tracing::debug!(app_code = %app.code, claimed = %claimed, "bk_username of a non-gateway app ignored");
        }
        return Ok(Caller::app(&app.code, app.is_admin));
    }
    if !assertable(&claimed) {
        return Err(JobError::unauthorized(ErrorCode::MISSING_USER_INFO));
    }
    match user {
        Some(u) if u.disabled_at.is_some() => {
            tracing::info!(app_code = %app.code, username = %claimed, "gateway call for a disabled user refused");
            Err(JobError::unauthorized(ErrorCode::MISSING_USER_INFO))
        }
        Some(u) => Ok(Caller::gateway(app, &claimed, Some(&u))),
        None => Ok(Caller::gateway(app, &claimed, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_beats_body_and_system_username_header_wins() {
        let mut h = HeaderMap::new();
        h.insert("x-bkapi-authorization", r#"{"bk_app_code":"a","bk_app_secret":"s","bk_username":"u1"}"#.parse().unwrap());
        h.insert("x-bk-username", "u2".parse().unwrap());
        let body = serde_json::json!({"bk_app_code":"b","bk_username":"u3"});
        let p = presented(&h, &body, false);
        assert_eq!((p.app_code.as_deref(), p.username.as_deref()), (Some("a"), Some("u1")));
        let p = presented(&h, &body, true);
        assert_eq!(p.username.as_deref(), Some("u2"));
    }

    #[test]
    fn access_token_and_login_tickets_are_seen_wherever_sent() {
        let mut h = HeaderMap::new();
        h.insert("x-bkapi-authorization", r#"{"access_token":"t1"}"#.parse().unwrap());
        let p = presented(&h, &serde_json::json!({"access_token": "t2"}), false);
        assert_eq!((p.access_token.as_deref(), p.login_ticket), (Some("t1"), false));
        let p = presented(&HeaderMap::new(), &serde_json::json!({"access_token": "t2"}), false);
        assert_eq!(p.access_token.as_deref(), Some("t2"));
        assert!(presented(&HeaderMap::new(), &serde_json::json!({"bk_token": "x"}), false).login_ticket);
        let mut h = HeaderMap::new();
        h.insert("x-bkapi-authorization", r#"{"bk_ticket":"x"}"#.parse().unwrap());
        assert!(presented(&h, &serde_json::json!({}), false).login_ticket);
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; bk_token=abc".parse().unwrap());
        assert!(presented(&h, &serde_json::json!({}), false).login_ticket);
        assert!(!presented(&HeaderMap::new(), &serde_json::json!({"bk_token": ""}), false).login_ticket);
    }

    #[tokio::test]
    async fn verify_codes() {
        let dir = tempfile::tempdir().unwrap();
        let store = shoal_store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let s = store.as_ref();
        let app = new_app("a", "s", false);
        let ok = Presented { app_code: Some("a".into()), app_secret: Some("s".into()), username: Some("u".into()), ..Default::default() };
        assert_eq!(verify(s, ok, Some(&app)).await.unwrap().1, "u");
        let e = verify(s, Presented::default(), Some(&app)).await.unwrap_err();
        assert_eq!((e.code.0, e.http_status), (1247004, 401));
        let wrong =
            Presented { app_code: Some("a".into()), app_secret: Some("x".into()), username: Some("u".into()), ..Default::default() };
        assert_eq!(verify(s, wrong, Some(&app)).await.unwrap_err().http_status, 401);
        let nouser = Presented { app_code: Some("a".into()), app_secret: Some("s".into()), username: None, ..Default::default() };
        assert_eq!(verify(s, nouser, Some(&app)).await.unwrap_err().code.0, 1247002);
    }

    #[test]
    fn principals_name_and_grant_distinctly() {
        let app = new_app("ci", "s", false);
        let c = Caller::app("ci", false);
        assert_eq!((c.username.as_str(), c.grantee(), c.shoal_user()), ("app:ci", "ci", None));
        let g = Caller::gateway(&app, "bob", None);
        assert_eq!((g.username.as_str(), g.app_code.as_str(), g.grantee()), ("bob", "ci", "ci"));
        let u = shoal_store::users::UserRow {
            username: "bob".into(),
            password_hash: String::new(),
            is_admin: false,
            created_by: String::new(),
            created_at: 0,
            disabled_at: None,
        };
        let g = Caller::gateway(&app, "bob", Some(&u));
        assert_eq!((g.grantee(), g.shoal_user()), ("user:bob", Some("bob")));
        let me = Caller::user("bob", false, None);
        assert_eq!((me.username.as_str(), me.app_code.as_str(), me.grantee()), ("bob", "user:bob", "user:bob"));
        assert!(!assertable("app:ci") && assertable("bob"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "bearer shoal_pat_x".parse().unwrap());
        assert_eq!(bearer(&h), Some("shoal_pat_x"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
