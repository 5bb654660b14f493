//! Who is calling. Apps authenticate with `bk_app_code` + `bk_app_secret`, either in the
//! `X-Bkapi-Authorization` header (API-gateway style) or in the body / query string (ESB
//! style), and act for a user (`bk_username`; on `/system/` paths `X-Bk-Username` wins).
//! Secrets are stored as salted SHA-256.

use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shoal_core::JobError;
use shoal_proto::ErrorCode;
use shoal_store::AppRow;

#[derive(Debug, Clone)]
pub struct Caller {
    pub app_code: String,
    pub username: String,
    pub is_admin: bool,
}

pub fn random_secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

pub fn hash_secret(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

pub fn new_app(code: &str, secret: &str, is_admin: bool) -> AppRow {
    let salt = uuid::Uuid::new_v4().simple().to_string();
    AppRow { code: code.to_string(), secret_hash: hash_secret(&salt, secret), salt, is_admin, created_at: shoal_core::time::now_ms() }
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
        }
    }
    let hdr = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    p.app_code = p.app_code.or_else(|| hdr("x-bk-app-code")).or_else(|| str_field(params, "bk_app_code"));
    p.app_secret = p.app_secret.or_else(|| hdr("x-bk-app-secret")).or_else(|| str_field(params, "bk_app_secret"));
    p.username = p.username.or_else(|| str_field(params, "bk_username"));
    if system_path {
        if let Some(u) = hdr("x-bk-username") {
            p.username = Some(u);
        }
    }
    p
}

/// Check presented credentials against the app's stored hash.
pub fn verify(p: Presented, app: Option<&AppRow>) -> Result<Caller, JobError> {
    let code = p.app_code.ok_or_else(|| JobError::unauthorized(ErrorCode::MISSING_APP_CODE))?;
    let secret = p.app_secret.ok_or_else(|| JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL))?;
    let app = app.filter(|a| same(&a.secret_hash, &hash_secret(&a.salt, &secret)));
    let app = app.ok_or_else(|| JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL))?;
    let username = p.username.ok_or_else(|| JobError::unauthorized(ErrorCode::MISSING_USER_INFO))?;
    Ok(Caller { app_code: code, username, is_admin: app.is_admin })
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
    fn verify_codes() {
        let app = new_app("a", "s", false);
        let ok = Presented { app_code: Some("a".into()), app_secret: Some("s".into()), username: Some("u".into()) };
        assert!(verify(ok, Some(&app)).is_ok());
        let e = verify(Presented::default(), Some(&app)).unwrap_err();
        assert_eq!((e.code.0, e.http_status), (1247004, 401));
        let wrong = Presented { app_code: Some("a".into()), app_secret: Some("x".into()), username: Some("u".into()) };
        assert_eq!(verify(wrong, Some(&app)).unwrap_err().http_status, 401);
        let nouser = Presented { app_code: Some("a".into()), app_secret: Some("s".into()), username: None };
        assert_eq!(verify(nouser, Some(&app)).unwrap_err().code.0, 1247002);
    }
}
