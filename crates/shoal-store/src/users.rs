//! People as principals: users (argon2id password hashes, created by an admin), their
//! personal API tokens and login sessions, the trusted-gateway mark on apps, and apps'
//! access tokens (`access_token`).
//!
//! Tokens are stored by the SHA-256 of the token only (tokens are 256 random bits, so a fast
//! hash is enough); [`UserStore::token_principal`] finds the token and its user in one query.
//! A separate trait (a supertrait of [`crate::Store`]) with its SQL written once in
//! `impl_user_store!` and instantiated per backend.

use async_trait::async_trait;

use crate::Result;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A personal API token (`shoal user token create`): lives until revoked or expired.
    Api,
    /// A password-login session: short-lived, rotated, revocable.
    Session,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Session => "session",
        }
    }

    pub fn parse(s: &str) -> Option<TokenKind> {
        match s {
            "api" => Some(TokenKind::Api),
            "session" => Some(TokenKind::Session),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct UserRow {
    pub username: String,
    /// argon2id PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
    pub is_admin: bool,
    pub created_by: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("is_admin", &self.is_admin)
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

#[derive(Clone, PartialEq)]
pub struct TokenRow {
    /// Public id (listing, revoking); not a secret.
    pub id: String,
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    pub username: String,
    pub kind: TokenKind,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

impl TokenRow {
    /// Whether the token may authenticate at `now` (not revoked, not expired).
    pub fn live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// An app's access token (`access_token`, as BlueKing callers send it): issued for one app,
/// stored by its SHA-256, always with an expiry.
#[derive(Clone, PartialEq)]
pub struct AppTokenRow {
    /// Public id (listing, revoking); not a secret.
    pub id: String,
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    pub app_code: String,
    /// Who issued it (the app itself or an admin).
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for AppTokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokenRow")
            .field("id", &self.id)
            .field("app_code", &self.app_code)
            .field("created_by", &self.created_by)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

impl AppTokenRow {
    /// Whether the token may authenticate at `now` (not revoked, not expired).
    pub fn live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// `Conflict` when the name is taken.
    async fn create_user(&self, u: &UserRow) -> Result<()>;
    async fn get_user(&self, username: &str) -> Result<Option<UserRow>>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    /// New password hash; every session of the user is revoked with it (one transaction).
    /// `NotFound` when there is no such user.
    async fn set_user_password(&self, username: &str, password_hash: &str, now: i64) -> Result<()>;
    /// Disable (`Some(now)`) or enable (`None`) a user; a disabled user's tokens and sessions
    /// stop authenticating. `NotFound` when there is no such user.
    async fn set_user_disabled(&self, username: &str, disabled_at: Option<i64>) -> Result<()>;

    async fn create_token(&self, t: &TokenRow) -> Result<()>;
    /// The token with this hash and its user, live or not (the caller decides).
    async fn token_principal(&self, token_hash: &str) -> Result<Option<(TokenRow, UserRow)>>;
    async fn list_tokens(&self, username: Option<&str>, kind: TokenKind) -> Result<Vec<TokenRow>>;
    /// Revoke a live token by id (of `username` when given); whether one was revoked.
    async fn revoke_token(&self, id: &str, username: Option<&str>, now: i64) -> Result<bool>;

    /// Mark an app as a trusted gateway or not. `NotFound` when missing or revoked.
    async fn set_app_gateway(&self, code: &str, trusted: bool) -> Result<()>;
    /// Codes of the live apps that are trusted gateways.
    async fn list_gateways(&self) -> Result<Vec<String>>;
    /// Whether the app is a trusted gateway (false for unknown apps).
    async fn app_is_gateway(&self, code: &str) -> Result<bool>;
    /// In one query: whether the live app `code` is a trusted gateway, and the user `username`
    /// if one exists (what authenticating an app call needs after its secret is checked).
    async fn gateway_and_user(&self, code: &str, username: &str) -> Result<(bool, Option<UserRow>)>;

    async fn create_app_token(&self, t: &AppTokenRow) -> Result<()>;
    /// The token with this hash of a live (not revoked) app, itself live or not (the caller
    /// decides).
    async fn app_token(&self, token_hash: &str) -> Result<Option<AppTokenRow>>;
    /// Tokens of `app_code` (all apps when `None`), oldest first.
    async fn list_app_tokens(&self, app_code: Option<&str>) -> Result<Vec<AppTokenRow>>;
    /// Revoke a live app token by id (of `app_code` when given); whether one was revoked.
    async fn revoke_app_token(&self, id: &str, app_code: Option<&str>, now: i64) -> Result<bool>;
}

macro_rules! impl_user_store {
    ($store:ty, $db:ty) => {
        pub(crate) mod user_sql {
            use super::*;
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};

            use crate::users::*;
            use crate::{DbContext, Result, StoreError};

            type DbRow = <$db as sqlx::Database>::Row;

            const USER_COLS: &str = "username, password_hash, is_admin, created_by, created_at, disabled_at";
            const TOKEN_COLS: &str = "id, token_hash, kind, name, expires_at, revoked_at";

            fn user_of(r: &DbRow) -> Result<UserRow> {
                let d = "decode user";
                Ok(UserRow {
                    username: r.try_get("username").op(d)?,
                    password_hash: r.try_get("password_hash").op(d)?,
                    is_admin: r.try_get::<i64, _>("is_admin").op(d)? != 0,
                    created_by: r.try_get("created_by").op(d)?,
                    created_at: r.try_get("created_at").op(d)?,
                    disabled_at: r.try_get("disabled_at").op(d)?,
                })
            }

            const APP_TOKEN_COLS: &str = "id, token_hash, app_code, created_by, created_at, expires_at, revoked_at";

            fn app_token_of(r: &DbRow) -> Result<AppTokenRow> {
                let d = "decode app token";
                Ok(AppTokenRow {
                    id: r.try_get("id").op(d)?,
                    token_hash: r.try_get("token_hash").op(d)?,
                    app_code: r.try_get("app_code").op(d)?,
                    created_by: r.try_get("created_by").op(d)?,
                    created_at: r.try_get("created_at").op(d)?,
                    expires_at: r.try_get("expires_at").op(d)?,
                    revoked_at: r.try_get("revoked_at").op(d)?,
                })
            }

            fn token_of(r: &DbRow) -> Result<TokenRow> {
                let d = "decode token";
                let kind: String = r.try_get("kind").op(d)?;
                Ok(TokenRow {
                    id: r.try_get("id").op(d)?,
                    token_hash: r.try_get("token_hash").op(d)?,
                    username: r.try_get("username").op(d)?,
                    kind: TokenKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("token kind {kind:?}")))?,
                    name: r.try_get("name").op(d)?,
                    created_at: r.try_get("t_created_at").op(d)?,
                    expires_at: r.try_get("expires_at").op(d)?,
                    revoked_at: r.try_get("revoked_at").op(d)?,
                })
            }

            #[async_trait]
            impl UserStore for $store {
                async fn create_user(&self, u: &UserRow) -> Result<()> {
                    let r = sqlx::query(
                        "INSERT INTO users (username, password_hash, is_admin, created_by, created_at, disabled_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING",
                    )
                    .bind(&u.username)
                    .bind(&u.password_hash)
                    .bind(u.is_admin as i64)
                    .bind(&u.created_by)
                    .bind(u.created_at)
                    .bind(u.disabled_at)
                    .execute(&self.pool)
                    .await
                    .op("create user")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("username"));
                    }
                    Ok(())
                }

                async fn get_user(&self, username: &str) -> Result<Option<UserRow>> {
                    let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE username = $1"))
                        .bind(username)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get user")?;
                    row.as_ref().map(user_of).transpose()
                }

                async fn list_users(&self) -> Result<Vec<UserRow>> {
                    let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
                        .fetch_all(&self.pool)
                        .await
                        .op("list users")?;
                    rows.iter().map(user_of).collect()
                }

                async fn set_user_password(&self, username: &str, password_hash: &str, now: i64) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin set password")?;
                    let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                        .bind(password_hash)
                        .bind(username)
                        .execute(&mut *tx)
                        .await
                        .op("set password")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound("user"));
                    }
                    sqlx::query("UPDATE user_tokens SET revoked_at = $1 WHERE username = $2 AND kind = 'session' AND revoked_at IS NULL")
                        .bind(now)
                        .bind(username)
                        .execute(&mut *tx)
                        .await
                        .op("revoke sessions")?;
                    tx.commit().await.op("commit set password")?;
                    Ok(())
                }

                async fn set_user_disabled(&self, username: &str, disabled_at: Option<i64>) -> Result<()> {
                    let r = sqlx::query("UPDATE users SET disabled_at = $1 WHERE username = $2")
                        .bind(disabled_at)
                        .bind(username)
                        .execute(&self.pool)
                        .await
                        .op("disable user")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound("user"));
                    }
                    Ok(())
                }

                async fn create_token(&self, t: &TokenRow) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO user_tokens (id, token_hash, username, kind, name, created_at, expires_at, revoked_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&t.id)
                    .bind(&t.token_hash)
                    .bind(&t.username)
                    .bind(t.kind.as_str())
                    .bind(&t.name)
                    .bind(t.created_at)
                    .bind(t.expires_at)
                    .bind(t.revoked_at)
                    .execute(&self.pool)
                    .await
                    .op("create token")?;
                    Ok(())
                }

                async fn token_principal(&self, token_hash: &str) -> Result<Option<(TokenRow, UserRow)>> {
                    let row = sqlx::query(&format!(
                        "SELECT {TOKEN_COLS}, t.created_at AS t_created_at, u.username, u.password_hash, u.is_admin, u.created_by, \
                         u.created_at, u.disabled_at FROM user_tokens t JOIN users u ON u.username = t.username WHERE t.token_hash = $1"
                    ))
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await
                    .op("token principal")?;
                    row.map(|r| Ok((token_of(&r)?, user_of(&r)?))).transpose()
                }

                async fn list_tokens(&self, username: Option<&str>, kind: TokenKind) -> Result<Vec<TokenRow>> {
                    let mut q = QueryBuilder::<$db>::new(format!(
                        "SELECT {TOKEN_COLS}, username, created_at AS t_created_at FROM user_tokens WHERE kind = "
                    ));
                    q.push_bind(kind.as_str());
                    if let Some(u) = username {
                        q.push(" AND username = ").push_bind(u);
                    }
                    q.push(" ORDER BY username, created_at, id");
                    let rows = q.build().fetch_all(&self.pool).await.op("list tokens")?;
                    rows.iter().map(token_of).collect()
                }

                async fn revoke_token(&self, id: &str, username: Option<&str>, now: i64) -> Result<bool> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE user_tokens SET revoked_at = ");
                    q.push_bind(now).push(" WHERE revoked_at IS NULL AND id = ").push_bind(id);
                    if let Some(u) = username {
                        q.push(" AND username = ").push_bind(u);
                    }
                    let r = q.build().execute(&self.pool).await.op("revoke token")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn set_app_gateway(&self, code: &str, trusted: bool) -> Result<()> {
                    let r = sqlx::query("UPDATE apps SET trusted_gateway = $1 WHERE code = $2 AND revoked_at IS NULL")
                        .bind(trusted as i64)
                        .bind(code)
                        .execute(&self.pool)
                        .await
                        .op("set app gateway")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound("app"));
                    }
                    Ok(())
                }

                async fn list_gateways(&self) -> Result<Vec<String>> {
                    sqlx::query_scalar("SELECT code FROM apps WHERE trusted_gateway <> 0 AND revoked_at IS NULL ORDER BY code")
                        .fetch_all(&self.pool)
                        .await
                        .op("list gateways")
                }

                async fn app_is_gateway(&self, code: &str) -> Result<bool> {
                    let v: Option<i64> = sqlx::query_scalar("SELECT trusted_gateway FROM apps WHERE code = $1 AND revoked_at IS NULL")
                        .bind(code)
                        .fetch_optional(&self.pool)
                        .await
                        .op("app gateway")?;
                    Ok(v.unwrap_or(0) != 0)
                }

                async fn gateway_and_user(&self, code: &str, username: &str) -> Result<(bool, Option<UserRow>)> {
                    let row = sqlx::query(&format!(
                        "SELECT a.trusted_gateway, {} FROM apps a LEFT JOIN users u ON u.username = $2 \
                         WHERE a.code = $1 AND a.revoked_at IS NULL",
                        USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
                    ))
                    .bind(code)
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await
                    .op("gateway and user")?;
                    let Some(r) = row else { return Ok((false, None)) };
                    let gateway = r.try_get::<i64, _>("trusted_gateway").op("decode app")? != 0;
                    let user = match r.try_get::<Option<String>, _>("username").op("decode user")? {
                        Some(_) => Some(user_of(&r)?),
                        None => None,
                    };
                    Ok((gateway, user))
                }

                async fn create_app_token(&self, t: &AppTokenRow) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO app_access_tokens (id, token_hash, app_code, created_by, created_at, expires_at, revoked_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&t.id)
                    .bind(&t.token_hash)
                    .bind(&t.app_code)
                    .bind(&t.created_by)
                    .bind(t.created_at)
                    .bind(t.expires_at)
                    .bind(t.revoked_at)
                    .execute(&self.pool)
                    .await
                    .op("create app token")?;
                    Ok(())
                }

                async fn app_token(&self, token_hash: &str) -> Result<Option<AppTokenRow>> {
                    // A revoked app's tokens die with it.
                    let cols = APP_TOKEN_COLS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ");
                    let row = sqlx::query(&format!(
                        "SELECT {cols} FROM app_access_tokens t JOIN apps a ON a.code = t.app_code \
                         WHERE t.token_hash = $1 AND a.revoked_at IS NULL"
                    ))
                        .bind(token_hash)
                        .fetch_optional(&self.pool)
                        .await
                        .op("app token")?;
                    row.as_ref().map(app_token_of).transpose()
                }

                async fn list_app_tokens(&self, app_code: Option<&str>) -> Result<Vec<AppTokenRow>> {
                    let mut q = QueryBuilder::<$db>::new(format!("SELECT {APP_TOKEN_COLS} FROM app_access_tokens"));
                    if let Some(c) = app_code {
                        q.push(" WHERE app_code = ").push_bind(c);
                    }
                    q.push(" ORDER BY created_at, id");
                    let rows = q.build().fetch_all(&self.pool).await.op("list app tokens")?;
                    rows.iter().map(app_token_of).collect()
                }

                async fn revoke_app_token(&self, id: &str, app_code: Option<&str>, now: i64) -> Result<bool> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE app_access_tokens SET revoked_at = ");
                    q.push_bind(now).push(" WHERE revoked_at IS NULL AND id = ").push_bind(id);
                    if let Some(c) = app_code {
                        q.push(" AND app_code = ").push_bind(c);
                    }
                    let r = q.build().execute(&self.pool).await.op("revoke app token")?;
                    Ok(r.rows_affected() > 0)
                }
            }
        }
    };
}

pub(crate) use impl_user_store;
