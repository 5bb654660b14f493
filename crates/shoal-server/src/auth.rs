//! Who is calling. Apps authenticate with `bk_app_code` + `bk_app_secret`, either in the
//! `X-Bkapi-Authorization` header (API-gateway style) or in the body / query string (ESB
//! style), and act for a user (`bk_username`; on `/system/` paths `X-Bk-Username` wins).
//! App secrets are stored as argon2id ([`password`]); rows from before hold salted SHA-256,
//! which still verifies and is replaced by argon2id on the first successful call. Agent
//! credentials (random, 256 bits, never chosen by a person) stay salted SHA-256.

pub mod password;

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

/// A new app row whose secret is stored as argon2id (the salt is inside the PHC string).
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
pub async fn check_app_secret(store: &dyn shoal_store::Store, app: &AppRow, secret: &str) -> bool {
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

/// Check presented credentials against the app's stored hash ([`check_app_secret`]).
pub async fn verify(store: &dyn shoal_store::Store, p: Presented, app: Option<&AppRow>) -> Result<Caller, JobError> {
    let code = p.app_code.ok_or_else(|| JobError::unauthorized(ErrorCode::MISSING_APP_CODE))?;
    let secret = p.app_secret.ok_or_else(|| JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL))?;
    let app = match app {
        Some(a) if check_app_secret(store, a, &secret).await => a,
        _ => return Err(JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL)),
    };
    let username = p.username.ok_or_else(|| JobError::unauthorized(ErrorCode::MISSING_USER_INFO))?;
    Ok(Caller { app_code: code, username, is_admin: app.is_admin })
}

/// Admit an agent's hello. An agent id with a credential on record must present that
/// credential (the enrolment token alone no longer suffices: that is what stops a holder of
/// the token from taking over an enrolled host); a revoked id is refused for good. A new agent
/// id enrols with the token and its credential, whose hash is recorded, unless its address is
/// already held by another live enrolled agent (revoke that one first).
pub async fn admit_agent(shared: &crate::Shared, hello: &shoal_proto::agent::Hello) -> Result<(), shoal_proto::agent::Reject> {
    use shoal_proto::agent::Reject;
    let refuse = |message: &str| Reject { message: message.into(), retry: false };
    let server_error = |e: shoal_store::StoreError| {
        tracing::error!(error = %e, "checking an agent credential");
        Reject { message: "server error".into(), retry: true }
    };
    let store = &shared.store;
    let (agent_id, ip) = (&hello.agent_id, &hello.facts.ip);
    match store.agent_credential(agent_id).await.map_err(server_error)? {
        Some((_, _, true)) => {
            tracing::warn!(%agent_id, %ip, "revoked agent refused");
            Err(refuse("agent revoked"))
        }
        Some((salt, hash, false)) => match &hello.credential {
            Some(c) if same(&hash, &hash_secret(&salt, c)) => Ok(()),
            _ => {
                tracing::warn!(%agent_id, %ip, "agent id presented without its credential; refused");
                Err(refuse("invalid agent credential"))
            }
        },
        None => {
            if !same(&hello.token, &shared.agent_token) {
                tracing::warn!(%agent_id, %ip, "agent presented a wrong enrolment token");
                return Err(refuse("invalid enrolment token"));
            }
            let Some(credential) = hello.credential.as_deref().filter(|c| (32..=256).contains(&c.len())) else {
                tracing::warn!(%agent_id, %ip, "agent without a credential; refused");
                return Err(refuse("agent credential missing: upgrade the agent"));
            };
            let holders = store.agents_at(hello.facts.bk_cloud_id, ip).await.map_err(server_error)?;
            for holder in holders.iter().filter(|h| *h != agent_id) {
                if matches!(store.agent_credential(holder).await.map_err(server_error)?, Some((_, _, false))) {
                    tracing::warn!(%agent_id, %ip, %holder, "address held by another enrolled agent; refused");
                    return Err(refuse("this address belongs to another enrolled agent; revoke it first"));
                }
            }
            let salt = uuid::Uuid::new_v4().simple().to_string();
            let now = shoal_core::time::now_ms();
            let event = shoal_store::AuditEvent {
                time: now,
                app_code: String::new(),
                username: format!("agent:{agent_id}"),
                scope_type: "biz".into(),
                scope_id: hello.facts.bk_biz_id.to_string(),
                action: "enroll_agent".into(),
                resource_id: agent_id.clone(),
                detail: serde_json::json!({"ip": ip, "bk_cloud_id": hello.facts.bk_cloud_id, "hostname": hello.facts.hostname}).to_string(),
            };
            match store.issue_agent_credential(agent_id, &salt, &hash_secret(&salt, credential), now, &event).await {
                Ok(()) => {
                    tracing::info!(%agent_id, %ip, "agent enrolled");
                    Ok(())
                }
                // Two hellos raced; the loser retries and is checked against the winner.
                Err(shoal_store::StoreError::Conflict(_)) => Err(Reject { message: "enrolment raced; retry".into(), retry: true }),
                Err(e) => Err(server_error(e)),
            }
        }
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

    #[tokio::test]
    async fn verify_codes() {
        let dir = tempfile::tempdir().unwrap();
        let store = shoal_store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let app = new_app("a", "s", false);
        let ok = Presented { app_code: Some("a".into()), app_secret: Some("s".into()), username: Some("u".into()) };
        assert!(verify(store.as_ref(), ok, Some(&app)).await.is_ok());
        let e = verify(store.as_ref(), Presented::default(), Some(&app)).await.unwrap_err();
        assert_eq!((e.code.0, e.http_status), (1247004, 401));
        let wrong = Presented { app_code: Some("a".into()), app_secret: Some("x".into()), username: Some("u".into()) };
        assert_eq!(verify(store.as_ref(), wrong, Some(&app)).await.unwrap_err().http_status, 401);
        let nouser = Presented { app_code: Some("a".into()), app_secret: Some("s".into()), username: None };
        assert_eq!(verify(store.as_ref(), nouser, Some(&app)).await.unwrap_err().code.0, 1247002);
    }
}
