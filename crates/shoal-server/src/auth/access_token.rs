//! Apps' access tokens: the `access_token` BlueKing callers send (in the body, the query string
//! or the `X-Bkapi-Authorization` header) instead of `bk_app_code` + `bk_app_secret`.
//!
//! A token stands for one app. It is issued by Shoal (`POST /api/shoal/v1/apps/access_tokens`,
//! `shoal app token`), 256 random bits shown once, stored by its SHA-256, and always expires;
//! it dies with a revocation of the token or of its app. The check is one indexed lookup per
//! call, so a revocation takes effect on the next call, on every replica.

use shoal_core::JobError;
use shoal_proto::ErrorCode;
use shoal_store::users::AppTokenRow;
use shoal_store::{AppRow, Store};

use super::token::token_hash;

/// Lifetime of a token issued without `expires_in`.
pub const DEFAULT_TTL_SECS: i64 = 24 * 3600;
/// The longest lifetime a token may be issued with.
pub const MAX_TTL_SECS: i64 = 90 * 24 * 3600;

/// A new token for `app_code`, issued by `created_by`: (the token, shown once; its stored row).
pub fn issue(app_code: &str, created_by: &str, ttl_secs: i64) -> (String, AppTokenRow) {
    let token = format!("shoal_at_{}", super::random_token());
    let now = shoal_core::time::now_ms();
    let row = AppTokenRow {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        token_hash: token_hash(&token),
        app_code: app_code.into(),
        created_by: created_by.into(),
        created_at: now,
        expires_at: now + ttl_secs * 1000,
        revoked_at: None,
    };
    (token, row)
}

/// The app an access token stands for: 401 (1240005) unless the token exists, is neither
/// revoked nor expired, its app is live, and a `bk_app_code` sent with it names that app.
pub async fn app_of(store: &dyn Store, token: &str, claimed_code: Option<&str>) -> Result<AppRow, JobError> {
    let refused = || JobError::unauthorized(ErrorCode::SERVICE_AUTH_FAIL);
    if token.len() > 256 {
        return Err(refused());
    }
    let read = |e: shoal_store::StoreError| {
        tracing::error!(error = %e, "reading an access token");
        JobError::internal()
    };
    let Some(t) = store.app_token(&token_hash(token)).await.map_err(read)? else {
        return Err(refused());
    };
    if !t.live(shoal_core::time::now_ms()) {
        tracing::info!(app_code = %t.app_code, token_id = %t.id, "expired or revoked access token refused");
        return Err(refused());
    }
    if claimed_code.is_some_and(|c| c != t.app_code) {
        tracing::info!(app_code = %t.app_code, token_id = %t.id, "access token sent with another app's code refused");
        return Err(refused());
    }
    store.get_app(&t.app_code).await.map_err(read)?.ok_or_else(refused)
}
