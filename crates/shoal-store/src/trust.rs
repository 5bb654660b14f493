//! Trust storage: app lifecycle and per-scope grants, dangerous-command rules and their
//! recorded hits, the hash-chained audit trail, and per-agent credentials.
//!
//! The audit chain: each event gets the next `seq` from the single `audit_head` row (updating
//! that row first serialises concurrent appends on both backends), and stores
//! `hash = sha256(prev_hash, seq, canonical content)`. [`verify_chain`] recomputes it, so an
//! edited, inserted or removed row is detected.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{AuditEvent, Result};

/// Roles an app holds in a scope. `Admin` implies the others.
pub const ROLES: [&str; 4] = ["run", "manage", "approve", "admin"];

#[derive(Debug, Clone, PartialEq)]
pub struct AppInfo {
    pub code: String,
    pub description: String,
    pub is_admin: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub app_code: String,
    pub scope_type: String,
    /// `*` for every scope of the type.
    pub scope_id: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountGrant {
    pub app_code: String,
    pub scope_type: String,
    pub scope_id: String,
    /// Account alias, `*` for every account of the scope.
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleRow {
    pub id: i64,
    pub expression: String,
    pub languages: Vec<i32>,
    pub description: String,
    /// 1 scan, 2 intercept.
    pub action: i32,
    /// 0 disabled, 1 enabled.
    pub status: i32,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

/// A rule hit recorded when a job was submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct DangerRecord {
    pub id: i64,
    pub time: i64,
    pub rule_id: i64,
    pub expression: String,
    pub action: i32,
    /// Whether the submission was refused.
    pub blocked: bool,
    pub scope_type: String,
    pub scope_id: String,
    pub app_code: String,
    pub operator: String,
    pub language: i32,
    pub script_sha256: String,
    pub line: i64,
    pub line_content: String,
    pub match_content: String,
}

/// A stored audit event with its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    /// `None` for events written before the chain existed.
    pub seq: Option<i64>,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub time_start: Option<i64>,
    pub time_end: Option<i64>,
    pub username: Option<String>,
    pub app_code: Option<String>,
    pub scope_type: Option<String>,
    pub scope_id: Option<String>,
    pub action: Option<String>,
    /// Events with a chain position greater than this (paging by seq).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// What [`verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Chained events checked.
    pub checked: i64,
    /// Events from before the chain (not covered).
    pub unchained: i64,
    /// First bad event: (seq, reason).
    pub broken: Option<(i64, String)>,
}

impl ChainReport {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// The hash of one event given its predecessor's hash.
pub fn audit_hash(prev_hash: &str, seq: i64, e: &AuditEvent) -> String {
    let canonical =
        serde_json::json!([prev_hash, seq, e.time, e.app_code, e.username, e.scope_type, e.scope_id, e.action, e.resource_id, e.detail]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Recompute the chain over `rows` (in seq order) against the head (`head_seq`, `head_hash`).
pub fn verify_chain(rows: &[AuditRow], head: Option<(i64, String)>) -> ChainReport {
    let mut report = ChainReport { checked: 0, unchained: 0, broken: None };
    let mut prev = String::new();
    let mut expect_seq = 1;
    for r in rows {
        let Some(seq) = r.seq else {
            report.unchained += 1;
            continue;
        };
        let fail = |why: &str| Some((seq, why.to_string()));
        if seq != expect_seq {
            report.broken = fail(&format!("expected event #{expect_seq}, found #{seq} (events removed or inserted)"));
            return report;
        }
        if r.prev_hash != prev {
            report.broken = fail("previous-hash link does not match");
            return report;
        }
        if audit_hash(&prev, seq, &r.event) != r.hash {
            report.broken = fail("content does not match its hash (event edited)");
            return report;
        }
        report.checked += 1;
        prev = r.hash.clone();
        expect_seq += 1;
    }
    if let Some((head_seq, head_hash)) = head {
        if head_seq != expect_seq - 1 || head_hash != prev {
            report.broken = Some((expect_seq, format!("chain ends at #{} but the head records #{head_seq}", expect_seq - 1)));
        }
    }
    report
}

#[async_trait]
pub trait TrustStore: Send + Sync {
    // --- apps ---
    async fn list_apps(&self) -> Result<Vec<AppInfo>>;
    /// Create an app; `Conflict` when the code exists.
    async fn create_app(&self, app: &crate::AppRow, description: &str) -> Result<()>;
    /// Replace the secret of a live app; `NotFound` when missing or revoked.
    async fn rotate_app(&self, code: &str, salt: &str, secret_hash: &str) -> Result<()>;
    /// Revoke: the secret no longer verifies, grants are dropped. `NotFound` when missing.
    async fn revoke_app(&self, code: &str, now: i64) -> Result<()>;
    async fn set_app_admin(&self, code: &str, is_admin: bool) -> Result<()>;

    // --- grants ---
    async fn put_grant(&self, g: &Grant, by: &str, now: i64) -> Result<()>;
    async fn delete_grant(&self, g: &Grant) -> Result<bool>;
    async fn list_grants(&self, app_code: Option<&str>) -> Result<Vec<Grant>>;
    async fn put_account_grant(&self, g: &AccountGrant, by: &str, now: i64) -> Result<()>;
    async fn delete_account_grant(&self, g: &AccountGrant) -> Result<bool>;
    async fn list_account_grants(&self, app_code: Option<&str>) -> Result<Vec<AccountGrant>>;

    // --- dangerous rules ---
    async fn create_rule(&self, r: &RuleRow) -> Result<RuleRow>;
    async fn update_rule(&self, r: &RuleRow) -> Result<RuleRow>;
    async fn set_rule_status(&self, id: i64, status: i32, user: &str, now: i64) -> Result<RuleRow>;
    async fn delete_rule(&self, id: i64) -> Result<RuleRow>;
    async fn get_rule(&self, id: i64) -> Result<Option<RuleRow>>;
    async fn list_rules(&self) -> Result<Vec<RuleRow>>;
    async fn record_danger(&self, hits: &[DangerRecord]) -> Result<()>;
    async fn list_danger_records(&self, since: Option<i64>, limit: i64) -> Result<Vec<DangerRecord>>;

    // --- audit ---
    async fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditRow>>;
    /// Check the whole chain against the head.
    async fn verify_audit(&self) -> Result<ChainReport>;

    // --- agents ---
    /// Enrols an agent: its credential and the audit event `event`, in one transaction.
    /// `Conflict` when the agent id already has one.
    async fn issue_agent_credential(&self, agent_id: &str, salt: &str, secret_hash: &str, now: i64, event: &AuditEvent) -> Result<()>;
    /// `(salt, secret_hash, revoked)` of an agent.
    async fn agent_credential(&self, agent_id: &str) -> Result<Option<(String, String, bool)>>;
    async fn revoke_agent(&self, agent_id: &str, now: i64) -> Result<bool>;
    /// Agent ids registered at an address (to keep one address from being claimed twice).
    async fn agents_at(&self, bk_cloud_id: i64, ip: &str) -> Result<Vec<String>>;
    /// Count of jobs not yet finished: total, for a scope, for an app.
    async fn running_jobs(&self, scope: Option<(&str, &str)>, app_code: Option<&str>) -> Result<i64>;
}

/// Implements [`TrustStore`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` field), in a
/// module `trust_sql` that also holds `insert_chained_audit`, the audit insert both
/// `Store::audit` and job creation use.
macro_rules! impl_trust_store {
    ($store:ty, $db:ty) => {
        pub(crate) mod trust_sql {
            use super::*;
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};

            use crate::trust::*;
            use crate::{AppRow, AuditEvent, DbContext, Result, StoreError};

            type DbRow = <$db as sqlx::Database>::Row;
            type Conn = <$db as sqlx::Database>::Connection;

            const RULE_COLS: &str =
                "id, expression, languages, description, action, status, creator, create_time, last_modify_user, last_modify_time";
            const DANGER_COLS: &str = "id, time, rule_id, expression, action, blocked, scope_type, scope_id, app_code, operator, language, script_sha256, line, line_content, match_content";
            const AUDIT_COLS: &str = "id, seq, time, app_code, username, scope_type, scope_id, action, resource_id, detail, prev_hash, hash";

            /// Append `e` to the chain on `conn` (inside the caller's transaction).
            pub(crate) async fn insert_chained_audit(conn: &mut Conn, e: &AuditEvent) -> Result<()> {
                let row = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                    .fetch_one(&mut *conn)
                    .await
                    .op("advance audit head")?;
                let seq: i64 = row.try_get("seq").op("decode audit head")?;
                let prev: String = row.try_get("hash").op("decode audit head")?;
                let hash = audit_hash(&prev, seq, e);
                sqlx::query(
                    "INSERT INTO audit_events (time, app_code, username, scope_type, scope_id, action, resource_id, detail, seq, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(e.time)
                .bind(&e.app_code)
                .bind(&e.username)
                .bind(&e.scope_type)
                .bind(&e.scope_id)
                .bind(&e.action)
                .bind(&e.resource_id)
                .bind(&e.detail)
                .bind(seq)
                .bind(&prev)
                .bind(&hash)
                .execute(&mut *conn)
                .await
                .op("insert audit event")?;
                sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&hash).execute(&mut *conn).await.op("move audit head")?;
                Ok(())
            }

            fn rule_of(r: &DbRow) -> Result<RuleRow> {
                let langs: String = r.try_get("languages").op("decode rule")?;
                Ok(RuleRow {
                    id: r.try_get("id").op("decode rule")?,
                    expression: r.try_get("expression").op("decode rule")?,
                    languages: serde_json::from_str(&langs).map_err(|e| StoreError::Corrupt(format!("rule languages: {e}")))?,
                    description: r.try_get("description").op("decode rule")?,
                    action: r.try_get::<i64, _>("action").op("decode rule")? as i32,
                    status: r.try_get::<i64, _>("status").op("decode rule")? as i32,
                    creator: r.try_get("creator").op("decode rule")?,
                    create_time: r.try_get("create_time").op("decode rule")?,
                    last_modify_user: r.try_get("last_modify_user").op("decode rule")?,
                    last_modify_time: r.try_get("last_modify_time").op("decode rule")?,
                })
            }

            fn danger_of(r: &DbRow) -> Result<DangerRecord> {
                let d = "decode danger record";
                Ok(DangerRecord {
                    id: r.try_get("id").op(d)?,
                    time: r.try_get("time").op(d)?,
                    rule_id: r.try_get("rule_id").op(d)?,
                    expression: r.try_get("expression").op(d)?,
                    action: r.try_get::<i64, _>("action").op(d)? as i32,
                    blocked: r.try_get::<i64, _>("blocked").op(d)? != 0,
                    scope_type: r.try_get("scope_type").op(d)?,
                    scope_id: r.try_get("scope_id").op(d)?,
                    app_code: r.try_get("app_code").op(d)?,
                    operator: r.try_get("operator").op(d)?,
                    language: r.try_get::<i64, _>("language").op(d)? as i32,
                    script_sha256: r.try_get("script_sha256").op(d)?,
                    line: r.try_get("line").op(d)?,
                    line_content: r.try_get("line_content").op(d)?,
                    match_content: r.try_get("match_content").op(d)?,
                })
            }

            fn audit_of(r: &DbRow) -> Result<AuditRow> {
                let d = "decode audit event";
                Ok(AuditRow {
                    id: r.try_get("id").op(d)?,
                    seq: r.try_get("seq").op(d)?,
                    event: AuditEvent {
                        time: r.try_get("time").op(d)?,
                        app_code: r.try_get("app_code").op(d)?,
                        username: r.try_get("username").op(d)?,
                        scope_type: r.try_get("scope_type").op(d)?,
                        scope_id: r.try_get("scope_id").op(d)?,
                        action: r.try_get("action").op(d)?,
                        resource_id: r.try_get("resource_id").op(d)?,
                        detail: r.try_get("detail").op(d)?,
                    },
                    prev_hash: r.try_get("prev_hash").op(d)?,
                    hash: r.try_get("hash").op(d)?,
                })
            }

            fn grant_of(r: &DbRow) -> Result<Grant> {
                Ok(Grant {
                    app_code: r.try_get("app_code").op("decode grant")?,
                    scope_type: r.try_get("scope_type").op("decode grant")?,
                    scope_id: r.try_get("scope_id").op("decode grant")?,
                    role: r.try_get("role").op("decode grant")?,
                })
            }

            fn account_grant_of(r: &DbRow) -> Result<AccountGrant> {
                Ok(AccountGrant {
                    app_code: r.try_get("app_code").op("decode account grant")?,
                    scope_type: r.try_get("scope_type").op("decode account grant")?,
                    scope_id: r.try_get("scope_id").op("decode account grant")?,
                    alias: r.try_get("alias").op("decode account grant")?,
                })
            }

            #[async_trait]
            impl TrustStore for $store {
                async fn list_apps(&self) -> Result<Vec<AppInfo>> {
                    let rows = sqlx::query("SELECT code, description, is_admin, created_at, revoked_at FROM apps ORDER BY code")
                        .fetch_all(&self.pool)
                        .await
                        .op("list apps")?;
                    rows.iter()
                        .map(|r| {
                            Ok(AppInfo {
                                code: r.try_get("code").op("decode app")?,
                                description: r.try_get("description").op("decode app")?,
                                is_admin: r.try_get::<i64, _>("is_admin").op("decode app")? != 0,
                                created_at: r.try_get("created_at").op("decode app")?,
                                revoked_at: r.try_get("revoked_at").op("decode app")?,
                            })
                        })
                        .collect()
                }

                async fn create_app(&self, app: &AppRow, description: &str) -> Result<()> {
                    let r = sqlx::query(
                        "INSERT INTO apps (code, salt, secret_hash, is_admin, created_at, description) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (code) DO NOTHING",
                    )
                    .bind(&app.code)
                    .bind(&app.salt)
                    .bind(&app.secret_hash)
                    .bind(app.is_admin as i64)
                    .bind(app.created_at)
                    .bind(description)
                    .execute(&self.pool)
                    .await
                    .op("create app")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("app code"));
                    }
                    Ok(())
                }

                async fn rotate_app(&self, code: &str, salt: &str, secret_hash: &str) -> Result<()> {
                    let r = sqlx::query("UPDATE apps SET salt = $1, secret_hash = $2 WHERE code = $3 AND revoked_at IS NULL")
                        .bind(salt)
                        .bind(secret_hash)
                        .bind(code)
                        .execute(&self.pool)
                        .await
                        .op("rotate app")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound("app"));
                    }
                    Ok(())
                }

                async fn revoke_app(&self, code: &str, now: i64) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin revoke app")?;
                    // A value no hex digest equals: the secret can never verify again.
                    let r = sqlx::query("UPDATE apps SET secret_hash = '!revoked', is_admin = 0, revoked_at = $1 WHERE code = $2")
                        .bind(now)
                        .bind(code)
                        .execute(&mut *tx)
                        .await
                        .op("revoke app")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound("app"));
                    }
                    sqlx::query("DELETE FROM app_grants WHERE app_code = $1").bind(code).execute(&mut *tx).await.op("drop grants")?;
                    sqlx::query("DELETE FROM app_account_grants WHERE app_code = $1")
                        .bind(code)
                        .execute(&mut *tx)
                        .await
                        .op("drop account grants")?;
                    tx.commit().await.op("commit revoke app")?;
                    Ok(())
                }

                async fn set_app_admin(&self, code: &str, is_admin: bool) -> Result<()> {
                    let r = sqlx::query("UPDATE apps SET is_admin = $1 WHERE code = $2 AND revoked_at IS NULL")
                        .bind(is_admin as i64)
                        .bind(code)
                        .execute(&self.pool)
                        .await
                        .op("set app admin")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound("app"));
                    }
                    Ok(())
                }

                async fn put_grant(&self, g: &Grant, by: &str, now: i64) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO app_grants (app_code, scope_type, scope_id, role, granted_by, granted_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&g.app_code)
                    .bind(&g.scope_type)
                    .bind(&g.scope_id)
                    .bind(&g.role)
                    .bind(by)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .op("put grant")?;
                    Ok(())
                }

                async fn delete_grant(&self, g: &Grant) -> Result<bool> {
                    let r = sqlx::query("DELETE FROM app_grants WHERE app_code = $1 AND scope_type = $2 AND scope_id = $3 AND role = $4")
                        .bind(&g.app_code)
                        .bind(&g.scope_type)
                        .bind(&g.scope_id)
                        .bind(&g.role)
                        .execute(&self.pool)
                        .await
                        .op("delete grant")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn list_grants(&self, app_code: Option<&str>) -> Result<Vec<Grant>> {
                    let mut q = QueryBuilder::<$db>::new("SELECT app_code, scope_type, scope_id, role FROM app_grants");
                    if let Some(c) = app_code {
                        q.push(" WHERE app_code = ").push_bind(c);
                    }
                    q.push(" ORDER BY app_code, scope_type, scope_id, role");
                    let rows = q.build().fetch_all(&self.pool).await.op("list grants")?;
                    rows.iter().map(grant_of).collect()
                }

                async fn put_account_grant(&self, g: &AccountGrant, by: &str, now: i64) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO app_account_grants (app_code, scope_type, scope_id, alias, granted_by, granted_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&g.app_code)
                    .bind(&g.scope_type)
                    .bind(&g.scope_id)
                    .bind(&g.alias)
                    .bind(by)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .op("put account grant")?;
                    Ok(())
                }

                async fn delete_account_grant(&self, g: &AccountGrant) -> Result<bool> {
                    let r = sqlx::query(
                        "DELETE FROM app_account_grants WHERE app_code = $1 AND scope_type = $2 AND scope_id = $3 AND alias = $4",
                    )
                    .bind(&g.app_code)
                    .bind(&g.scope_type)
                    .bind(&g.scope_id)
                    .bind(&g.alias)
                    .execute(&self.pool)
                    .await
                    .op("delete account grant")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn list_account_grants(&self, app_code: Option<&str>) -> Result<Vec<AccountGrant>> {
                    let mut q = QueryBuilder::<$db>::new("SELECT app_code, scope_type, scope_id, alias FROM app_account_grants");
                    if let Some(c) = app_code {
                        q.push(" WHERE app_code = ").push_bind(c);
                    }
                    q.push(" ORDER BY app_code, scope_type, scope_id, alias");
                    let rows = q.build().fetch_all(&self.pool).await.op("list account grants")?;
                    rows.iter().map(account_grant_of).collect()
                }

                async fn create_rule(&self, r: &RuleRow) -> Result<RuleRow> {
                    let row = sqlx::query(&format!(
                        "INSERT INTO dangerous_rules (expression, languages, description, action, status, creator, create_time, last_modify_user, last_modify_time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {RULE_COLS}"
                    ))
                    .bind(&r.expression)
                    .bind(serde_json::to_string(&r.languages).unwrap_or_else(|_| "[]".into()))
                    .bind(&r.description)
                    .bind(r.action as i64)
                    .bind(r.status as i64)
                    .bind(&r.creator)
                    .bind(r.create_time)
                    .bind(&r.last_modify_user)
                    .bind(r.last_modify_time)
                    .fetch_one(&self.pool)
                    .await
                    .op("create rule")?;
                    rule_of(&row)
                }

                async fn update_rule(&self, r: &RuleRow) -> Result<RuleRow> {
                    let row = sqlx::query(&format!(
                        "UPDATE dangerous_rules SET expression = $1, languages = $2, description = $3, action = $4, last_modify_user = $5, \
                         last_modify_time = $6 WHERE id = $7 RETURNING {RULE_COLS}"
                    ))
                    .bind(&r.expression)
                    .bind(serde_json::to_string(&r.languages).unwrap_or_else(|_| "[]".into()))
                    .bind(&r.description)
                    .bind(r.action as i64)
                    .bind(&r.last_modify_user)
                    .bind(r.last_modify_time)
                    .bind(r.id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("update rule")?;
                    row.as_ref().map(rule_of).transpose()?.ok_or(StoreError::NotFound("rule"))
                }

                async fn set_rule_status(&self, id: i64, status: i32, user: &str, now: i64) -> Result<RuleRow> {
                    let row = sqlx::query(&format!(
                        "UPDATE dangerous_rules SET status = $1, last_modify_user = $2, last_modify_time = $3 WHERE id = $4 RETURNING {RULE_COLS}"
                    ))
                    .bind(status as i64)
                    .bind(user)
                    .bind(now)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("set rule status")?;
                    row.as_ref().map(rule_of).transpose()?.ok_or(StoreError::NotFound("rule"))
                }

                async fn delete_rule(&self, id: i64) -> Result<RuleRow> {
                    let row = sqlx::query(&format!("DELETE FROM dangerous_rules WHERE id = $1 RETURNING {RULE_COLS}"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("delete rule")?;
                    row.as_ref().map(rule_of).transpose()?.ok_or(StoreError::NotFound("rule"))
                }

                async fn get_rule(&self, id: i64) -> Result<Option<RuleRow>> {
                    let row = sqlx::query(&format!("SELECT {RULE_COLS} FROM dangerous_rules WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get rule")?;
                    row.as_ref().map(rule_of).transpose()
                }

                async fn list_rules(&self) -> Result<Vec<RuleRow>> {
                    let rows = sqlx::query(&format!("SELECT {RULE_COLS} FROM dangerous_rules ORDER BY id"))
                        .fetch_all(&self.pool)
                        .await
                        .op("list rules")?;
                    rows.iter().map(rule_of).collect()
                }

                async fn record_danger(&self, hits: &[DangerRecord]) -> Result<()> {
                    if hits.is_empty() {
                        return Ok(());
                    }
                    let mut q = QueryBuilder::<$db>::new(
                        "INSERT INTO danger_records (time, rule_id, expression, action, blocked, scope_type, scope_id, app_code, operator, language, script_sha256, line, line_content, match_content) ",
                    );
                    q.push_values(hits.iter().take(500), |mut b, h| {
                        b.push_bind(h.time)
                            .push_bind(h.rule_id)
                            .push_bind(&h.expression)
                            .push_bind(h.action as i64)
                            .push_bind(h.blocked as i64)
                            .push_bind(&h.scope_type)
                            .push_bind(&h.scope_id)
                            .push_bind(&h.app_code)
                            .push_bind(&h.operator)
                            .push_bind(h.language as i64)
                            .push_bind(&h.script_sha256)
                            .push_bind(h.line)
                            .push_bind(&h.line_content)
                            .push_bind(&h.match_content);
                    });
                    q.build().execute(&self.pool).await.op("record danger")?;
                    Ok(())
                }

                async fn list_danger_records(&self, since: Option<i64>, limit: i64) -> Result<Vec<DangerRecord>> {
                    let rows = sqlx::query(&format!("SELECT {DANGER_COLS} FROM danger_records WHERE time >= $1 ORDER BY id DESC LIMIT $2"))
                        .bind(since.unwrap_or(0))
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                        .op("list danger records")?;
                    rows.iter().map(danger_of).collect()
                }

                async fn audit_events(&self, f: &AuditQuery) -> Result<Vec<AuditRow>> {
                    let mut q = QueryBuilder::<$db>::new(format!("SELECT {AUDIT_COLS} FROM audit_events WHERE 1 = 1"));
                    if let Some(t) = f.time_start {
                        q.push(" AND time >= ").push_bind(t);
                    }
                    if let Some(t) = f.time_end {
                        q.push(" AND time <= ").push_bind(t);
                    }
                    if let Some(u) = &f.username {
                        q.push(" AND username = ").push_bind(u);
                    }
                    if let Some(a) = &f.app_code {
                        q.push(" AND app_code = ").push_bind(a);
                    }
                    if let Some(s) = &f.scope_type {
                        q.push(" AND scope_type = ").push_bind(s);
                    }
                    if let Some(s) = &f.scope_id {
                        q.push(" AND scope_id = ").push_bind(s);
                    }
                    if let Some(a) = &f.action {
                        q.push(" AND action = ").push_bind(a);
                    }
                    if let Some(s) = f.after_seq {
                        q.push(" AND seq > ").push_bind(s);
                    }
                    q.push(" ORDER BY seq, id LIMIT ").push_bind(f.limit);
                    let rows = q.build().fetch_all(&self.pool).await.op("audit events")?;
                    rows.iter().map(audit_of).collect()
                }

                async fn verify_audit(&self) -> Result<ChainReport> {
                    // One read transaction so the head and the rows agree.
                    let mut tx = self.pool.begin().await.op("begin verify audit")?;
                    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await
                        .op("read audit head")?;
                    let head = (head.try_get::<i64, _>("seq").op("decode head")?, head.try_get::<String, _>("hash").op("decode head")?);
                    let rows = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_events ORDER BY seq, id"))
                        .fetch_all(&mut *tx)
                        .await
                        .op("read audit events")?;
                    tx.commit().await.op("end verify audit")?;
                    let rows = rows.iter().map(audit_of).collect::<Result<Vec<_>>>()?;
                    // Pre-chain rows (seq NULL) sort differently per backend; verify_chain skips them.
                    Ok(verify_chain(&rows, Some(head)))
                }

                async fn issue_agent_credential(&self, agent_id: &str, salt: &str, secret_hash: &str, now: i64, event: &AuditEvent) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin enrolment")?;
                    let r = sqlx::query(
                        "INSERT INTO agent_credentials (agent_id, salt, secret_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) DO NOTHING",
                    )
                    .bind(agent_id)
                    .bind(salt)
                    .bind(secret_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .op("issue agent credential")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("agent credential"));
                    }
                    insert_chained_audit(&mut tx, event).await?;
                    tx.commit().await.op("commit enrolment")?;
                    Ok(())
                }

                async fn agent_credential(&self, agent_id: &str) -> Result<Option<(String, String, bool)>> {
                    let row = sqlx::query("SELECT salt, secret_hash, revoked_at FROM agent_credentials WHERE agent_id = $1")
                        .bind(agent_id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("agent credential")?;
                    row.map(|r| {
                        Ok((
                            r.try_get("salt").op("decode agent credential")?,
                            r.try_get("secret_hash").op("decode agent credential")?,
                            r.try_get::<Option<i64>, _>("revoked_at").op("decode agent credential")?.is_some(),
                        ))
                    })
                    .transpose()
                }

                async fn revoke_agent(&self, agent_id: &str, now: i64) -> Result<bool> {
                    // A revoked agent id stays taken: re-enrolling under it is refused too.
                    let r = sqlx::query(
                        "INSERT INTO agent_credentials (agent_id, salt, secret_hash, created_at, revoked_at) VALUES ($1, '', '!revoked', $2, $3) \
                         ON CONFLICT (agent_id) DO UPDATE SET revoked_at = excluded.revoked_at, secret_hash = '!revoked'",
                    )
                    .bind(agent_id)
                    .bind(now)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .op("revoke agent")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn agents_at(&self, bk_cloud_id: i64, ip: &str) -> Result<Vec<String>> {
                    sqlx::query_scalar("SELECT agent_id FROM hosts WHERE bk_cloud_id = $1 AND ip = $2 ORDER BY agent_id")
                        .bind(bk_cloud_id)
                        .bind(ip)
                        .fetch_all(&self.pool)
                        .await
                        .op("agents at address")
                }

                async fn running_jobs(&self, scope: Option<(&str, &str)>, app_code: Option<&str>) -> Result<i64> {
                    let mut q = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM job_instances WHERE status IN (1, 2, 7, 10, 15)");
                    if let Some((t, id)) = scope {
                        q.push(" AND scope_type = ").push_bind(t).push(" AND scope_id = ").push_bind(id);
                    }
                    if let Some(a) = app_code {
                        q.push(" AND app_code = ").push_bind(a);
                    }
                    q.build_query_scalar().fetch_one(&self.pool).await.op("count running jobs")
                }
            }
        }
    };
}

pub(crate) use impl_trust_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str) -> AuditEvent {
        AuditEvent { time: 1, app_code: "a".into(), username: "u".into(), action: action.into(), ..Default::default() }
    }

    fn chain(n: usize) -> Vec<AuditRow> {
        let mut prev = String::new();
        (1..=n as i64)
            .map(|seq| {
                let event = ev(&format!("act{seq}"));
                let hash = audit_hash(&prev, seq, &event);
                let row = AuditRow { id: seq, seq: Some(seq), event, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                row
            })
            .collect()
    }

    #[test]
    fn chain_detects_edits_removals_and_truncation() {
        let rows = chain(4);
        let head = Some((4, rows[3].hash.clone()));
        assert!(verify_chain(&rows, head.clone()).ok());
        let mut edited = rows.clone();
        edited[1].event.username = "mallory".into();
        assert_eq!(verify_chain(&edited, head.clone()).broken.unwrap().0, 2);
        let mut removed = rows.clone();
        removed.remove(2);
        assert_eq!(verify_chain(&removed, head.clone()).broken.unwrap().0, 4);
        assert!(!verify_chain(&rows[..3], head).ok(), "dropping the tail is detected against the head");
    }
}
