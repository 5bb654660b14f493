//! Apps' access tokens (`access_token`, see `auth::access_token`):
//! - `POST apps/access_tokens {app_code?, expires_in?}`: issue one (answered once). An app
//!   issues for itself (the default); a platform admin for any live app. `expires_in` is in
//!   seconds: 1 day by default, at most 90 days.
//! - `GET apps/access_tokens[?app_code=]`: the tokens (never the tokens themselves) of the
//!   caller's app, or of any app for an admin.
//! - `POST apps/access_tokens/revoke {id}`: the token stops working at once.
//!
//! Every issue and revocation is an audit event.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::JobError;
use shoal_proto::lenient;
use shoal_store::users::AppTokenRow;

use crate::api::authz::authorize_platform;
use crate::api::trust::record;
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::auth::{access_token, Principal};

#[derive(Deserialize, Default)]
struct Req {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    app_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    id: Option<String>,
}

/// The app a call comes from, when an app makes it (directly or as a gateway).
fn own_app(ctx: &Ctx) -> Option<&str> {
    match &ctx.caller.principal {
        Principal::App { code } | Principal::Gateway { app: code, .. } => Some(code),
        Principal::User { .. } => None,
    }
}

/// The app whose tokens the call is about: the named one (its own, or any for an admin), else
/// the caller's own app.
fn target_app(ctx: &Ctx, named: Option<&str>) -> Result<String, JobError> {
    let named = named.map(str::trim).filter(|c| !c.is_empty());
    match (named, own_app(ctx)) {
        (Some(n), Some(own)) if n == own => Ok(n.to_string()),
        (Some(n), _) => authorize_platform(ctx).map(|()| n.to_string()),
        (None, Some(own)) => Ok(own.to_string()),
        (None, None) => Err(JobError::missing("app_code")),
    }
}

fn token_json(t: &AppTokenRow) -> Value {
    json!({"id": t.id, "app_code": t.app_code, "created_by": t.created_by, "created_at": t.created_at,
           "expires_at": t.expires_at, "revoked_at": t.revoked_at})
}

pub async fn issue(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let app = target_app(ctx, req.app_code.as_deref())?;
    let ttl = req.expires_in.unwrap_or(access_token::DEFAULT_TTL_SECS);
    if !(1..=access_token::MAX_TTL_SECS).contains(&ttl) {
        return Err(JobError::illegal("expires_in"));
    }
    let store = &ctx.shared.store;
    let live = store.list_apps().await.map_err(internal("list apps"))?.iter().any(|a| a.code == app && a.revoked_at.is_none());
    if !live {
        return Err(JobError::illegal("app_code"));
    }
    let (token, row) = access_token::issue(&app, &ctx.caller.username, ttl);
    store.create_app_token(&row).await.map_err(internal("create app token"))?;
    record(ctx, "create_app_access_token", &app, json!({"token_id": row.id, "expires_at": row.expires_at})).await?;
    let mut out = token_json(&row);
    out["access_token"] = json!(token);
    out["expires_in"] = json!(ttl);
    Ok(out)
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let app = match (req.app_code.as_deref().map(str::trim).filter(|c| !c.is_empty()), own_app(ctx)) {
        (None, None) => {
            authorize_platform(ctx)?;
            None
        }
        (named, _) => Some(target_app(ctx, named)?),
    };
    let rows = ctx.shared.store.list_app_tokens(app.as_deref()).await.map_err(internal("list app tokens"))?;
    Ok(json!(rows.iter().map(token_json).collect::<Vec<_>>()))
}

pub async fn revoke(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let id = req.id.as_deref().map(str::trim).filter(|i| !i.is_empty()).ok_or_else(|| JobError::missing("id"))?.to_string();
    // An admin revokes any app's token; an app only its own.
    let app = if ctx.caller.is_admin { None } else { Some(target_app(ctx, None)?) };
    let done =
        ctx.shared.store.revoke_app_token(&id, app.as_deref(), shoal_core::time::now_ms()).await.map_err(internal("revoke app token"))?;
    if !done {
        return Err(JobError::illegal("id"));
    }
    record(ctx, "revoke_app_access_token", app.as_deref().unwrap_or(""), json!({"token_id": id})).await?;
    Ok(json!({"id": id}))
}
