//! Users' bearer tokens: personal API tokens (`shoal_pat_…`) and login sessions
//! (`shoal_ses_…`). A token is 256 random bits shown once; only its SHA-256 is stored, so a
//! fast hash suffices and the per-call check is one indexed lookup (no cache: a revocation,
//! a disabled user or an expiry takes effect on the next call, on every replica).
//!
//! Sessions are server-side records, SSO-ready: a login (password today, an SSO callback
//! later) creates one with a short lifetime; `session/refresh` rotates it (a new token, the
//! old one revoked), `logout` revokes it, a password change revokes all of the user's.

use sha2::{Digest, Sha256};
use shoal_core::JobError;
use shoal_proto::ErrorCode;
use shoal_store::users::{TokenKind, TokenRow};
use shoal_store::Store;

use super::Caller;

/// How long a login session lasts before it must be refreshed or renewed by logging in.
pub const SESSION_TTL_MS: i64 = 8 * 3600 * 1000;

/// SHA-256 (hex) of a presented token: the stored form.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token for `username`: (the token, shown once; its stored row).
pub fn issue(username: &str, kind: TokenKind, name: &str, expires_at: Option<i64>) -> (String, TokenRow) {
    let prefix = match kind {
        TokenKind::Api => "shoal_pat_",
        TokenKind::Session => "shoal_ses_",
    };
    let token = format!("{prefix}{}", super::random_token());
    let row = TokenRow {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        token_hash: token_hash(&token),
        username: username.into(),
        kind,
        name: name.into(),
        created_at: shoal_core::time::now_ms(),
        expires_at,
        revoked_at: None,
    };
    (token, row)
}

/// The caller a bearer token stands for: 401 (1240005) unless the token exists, is neither
/// revoked nor expired, and its user is not disabled.
pub async fn authenticate(store: &dyn Store, token: &str) -> Result<Caller, JobError> {
    let refused = || JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL);
    if token.len() > 256 {
        return Err(refused());
    }
    let found = store.token_principal(&token_hash(token)).await.map_err(|e| {
        tracing::error!(error = %e, "reading a token");
        JobError::internal()
    })?;
    let Some((t, user)) = found else {
        return Err(refused());
    };
    let now = shoal_core::time::now_ms();
    if !t.live(now) || user.disabled_at.is_some() {
        tracing::info!(username = %user.username, token_id = %t.id, kind = t.kind.as_str(), "expired, revoked or disabled credential refused");
        return Err(refused());
    }
    let session = (t.kind == TokenKind::Session).then(|| t.id.clone());
    Ok(Caller::user(&user.username, user.is_admin, session))
}
