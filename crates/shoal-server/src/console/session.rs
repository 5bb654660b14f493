//! Console sessions: the login session of [`crate::auth::token`], carried in a cookie.
//!
//! - `POST /api/shoal/v1/console/login {username, password}` (JSON only, so no other site's
//!   form can log a browser in as someone else): the password login (argon2,
//!   audited `login` / `login_failed`); the session token goes into `Set-Cookie:
//!   shoal_session=…; HttpOnly; SameSite=Strict; Path=/` (+ `Secure` behind TLS), never into
//!   the answer, which is `{csrf_token, username, is_admin, expires_at}`.
//! - `GET /api/shoal/v1/console/session`: who the cookie belongs to, with the CSRF token, so a
//!   reloaded page keeps working. Same-origin only: no CORS header is ever sent, so another
//!   site cannot read the answer.
//! - `POST /api/shoal/v1/console/logout`: revokes the session and clears the cookie.
//!
//! Every other call made with the cookie must carry `X-Shoal-Csrf: <csrf_token>` (checked in
//! [`crate::auth::authenticate`]). The CSRF token is an HMAC of the session id under the
//! server's key ([`crate::secrets::Key::mac`]), so nothing new is stored and it dies with
//! the session.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use shoal_core::JobError;
use shoal_proto::code::Lang;
use shoal_proto::ErrorCode;

use crate::api::{envelope, params, Ctx, Reply};
use crate::auth::{self, Caller};
use crate::Shared;

/// The cookie's name.
pub const COOKIE: &str = "shoal_session";
/// The header a cookie-authenticated call carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-shoal-csrf";
const CSRF_PURPOSE: &str = "console csrf";

/// The CSRF token of a session.
pub fn csrf_token(key: &crate::secrets::Key, session_id: &str) -> Option<String> {
    key.mac(CSRF_PURPOSE, session_id)
}

/// The session token in the request's `shoal_session` cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        c.split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, v)| k.trim() == COOKIE && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
    })
}

/// Compare without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a cookie, which must come with its session's CSRF token (`csrf: true`), or
/// without it (`csrf: false`, only for `console/session`, whose answer another site cannot
/// read). A cookie that is not a live login session, or a missing or wrong token, is 401.
pub async fn cookie_caller(
    store: &dyn shoal_store::Store,
    key: &crate::secrets::Key,
    headers: &HeaderMap,
    csrf: bool,
) -> Result<Caller, JobError> {
    let refused = || JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL);
    let token = cookie_token(headers).ok_or_else(refused)?;
    let caller = auth::token::authenticate(store, &token).await?;
    let session = caller.session_id.clone().ok_or_else(refused)?;
    if csrf {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let want = csrf_token(key, &session).ok_or_else(refused)?;
        if !same(sent.trim(), &want) {
            tracing::info!(username = %caller.username, session_id = %session, "console call without its CSRF token refused");
            return Err(refused());
        }
    }
    Ok(caller)
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn lang(headers: &HeaderMap) -> Lang {
    Lang::from_header(headers.get("blueking-language").and_then(|v| v.to_str().ok()))
}

fn set_cookie(resp: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn cookie_attrs(shared: &Shared) -> &'static str {
    if shared.config.tls_cert.is_some() {
        "HttpOnly; SameSite=Strict; Path=/; Secure"
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    }
}

async fn who(shared: &Shared, caller: &Caller, expires_at: Option<i64>) -> Result<Value, JobError> {
    let session = caller.session_id.clone().ok_or_else(|| JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL))?;
    let csrf = csrf_token(&shared.config.sealing_key, &session).ok_or_else(JobError::internal)?;
    Ok(json!({"username": caller.username, "is_admin": caller.is_admin, "csrf_token": csrf, "expires_at": expires_at}))
}

/// `POST console/login`.
pub async fn login(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let rid = request_id();
    let out = async {
        // JSON only: a page of another site can post a form here (login CSRF: the victim
        // logged in as the attacker) but cannot send this content type without a CORS
        // preflight, which is never granted.
        let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("application/json"));
        if !json {
            let mut e = JobError::new(ErrorCode::BODY_FORMAT_ERROR);
            e.detail = Some("console login takes a JSON body (Content-Type: application/json)".into());
            return Err(e);
        }
        let params = params::collect(&method, &uri, &headers, &body)?;
        let answer = crate::api::shoal::users::login(&shared, &method, params, &rid).await?;
        let token = answer["token"].as_str().unwrap_or_default().to_string();
        let caller = auth::token::authenticate(shared.store.as_ref(), &token).await?;
        let data = who(&shared, &caller, answer["expires_at"].as_i64()).await?;
        Ok::<_, JobError>((data, token))
    }
    .await;
    match out {
        Ok((data, token)) => {
            let mut resp = envelope::render(Ok(Reply::Value(data)), lang(&headers), &rid);
            // The cookie lasts as long as the session it carries.
            let max_age = auth::token::SESSION_TTL_MS / 1000;
            set_cookie(&mut resp, &format!("{COOKIE}={token}; Max-Age={max_age}; {}", cookie_attrs(&shared)));
            resp
        }
        Err(e) => envelope::render(Err(e), lang(&headers), &rid),
    }
}

/// `GET console/session`.
pub async fn session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let rid = request_id();
    let out = async {
        let caller = cookie_caller(shared.store.as_ref(), &shared.config.sealing_key, &headers, false).await?;
        who(&shared, &caller, None).await
    }
    .await;
    let mut resp = envelope::render(out.map(Reply::Value), lang(&headers), &rid);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `POST console/logout`: the session is revoked (audited `logout`); the cookie is cleared
/// whatever the outcome.
pub async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let rid = request_id();
    let lang = lang(&headers);
    let out = async {
        let caller = cookie_caller(shared.store.as_ref(), &shared.config.sealing_key, &headers, true).await?;
        let ctx = Ctx { shared: shared.clone(), caller, lang, request_id: rid.clone(), origin: None };
        crate::api::shoal::users::call(&ctx, &Method::POST, "logout", json!({})).await
    }
    .await;
    let mut resp = envelope::render(out.map(Reply::Value), lang, &rid);
    set_cookie(&mut resp, &format!("{COOKIE}=; Max-Age=0; {}", cookie_attrs(&shared)));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; shoal_session=shoal_ses_x ; b=2".parse().unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some("shoal_ses_x"));
        h.insert(header::COOKIE, "shoal_session=".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_key() {
        let k = crate::secrets::Key::from_bytes(&[1; 32]);
        let a = csrf_token(&k, "s1").unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, csrf_token(&k, "s2").unwrap());
        assert_ne!(a, csrf_token(&crate::secrets::Key::from_bytes(&[2; 32]), "s1").unwrap());
        assert_eq!(csrf_token(&crate::secrets::Key::default(), "s1"), None);
    }
}
