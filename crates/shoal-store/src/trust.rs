//! Trust storage: app lifecycle and per-scope grants, dangerous-command rules and their
//! recorded hits, the keyed audit chain, and per-agent credentials.
//!
//! The audit chain: each event gets the next `seq` from the single `audit_head` row (updating
//! that row first serialises concurrent appends on both backends), and stores
//! `hash = HMAC-SHA256(audit key, canonical [prev_hash, seq, content])`. The key lives outside
//! the database (see [`AuditKey`]), so someone who can write the database can neither edit an
//! event nor recompute the chain after one. [`verify_chain`] checks contiguous `seq`s, every
//! link, every MAC, the head, and optionally a head exported earlier (which catches a tail
//! cut off together with a rewritten head).
//!
//! Databases from before the key: their events were hashed with plain SHA-256. They stay
//! verifiable under that rule up to the first keyed event (an `audit_rekey` event appended
//! when a keyed store first opens such a database); from the first keyed event on, only the
//! keyed rule is accepted, and a chain must end in a keyed event — so a chain recomputed
//! without the key never verifies.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{AuditEvent, Result};

/// The audit chain's MAC key: 32 bytes kept outside the database (the server's
/// `data_dir/audit-key` or `audit_key_file`). Never printed.
#[derive(Clone)]
pub struct AuditKey(Arc<[u8; 32]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    pub fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey(Arc::new(bytes))
    }

    /// A random key that lives as long as the process: for tools and tests that open a store
    /// without the server's key (what they append verifies only through that same handle).
    pub fn ephemeral() -> AuditKey {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        AuditKey::from_bytes(bytes)
    }

    fn mac(&self, data: &[u8]) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..]).expect("HMAC takes any key length");
        m.update(data);
        hex::encode(m.finalize().into_bytes())
    }
}

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
    /// The account granted, by id ([`ALL_ACCOUNTS`] for every account of the scope): a grant
    /// follows the account, not its name, so an account deleted and created again under the
    /// same alias starts with no grants.
    pub account_id: i64,
    /// The account's alias when granted (`*` for all), for display.
    pub alias: String,
}

/// `account_id` of a grant covering every account of its scope.
pub const ALL_ACCOUNTS: i64 = 0;

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
    /// Never `None` in an intact database (the column is NOT NULL); kept optional so a row
    /// forged without one is reported by [`verify_chain`] instead of failing to decode.
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

/// A point of the chain kept elsewhere (`SEQ:HASH`), to check the chain still contains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl std::fmt::Display for ChainHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for ChainHead {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ChainHead, String> {
        let (seq, hash) = s.trim().split_once(':').ok_or("expected SEQ:HASH")?;
        let seq = seq.parse::<i64>().map_err(|_| "SEQ must be a number".to_string())?;
        let hash = hash.to_ascii_lowercase();
        if seq < 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("expected SEQ:HASH with a 64-digit hex HASH".into());
        }
        Ok(ChainHead { seq, hash })
    }
}

/// What [`verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked (keyed and legacy).
    pub checked: i64,
    /// Of those, events from before the key, checked under the legacy unkeyed rule.
    pub legacy: i64,
    /// The last event of the chain (what `audit export` hands out to keep elsewhere).
    pub head: Option<ChainHead>,
    /// First bad event: (seq, reason).
    pub broken: Option<(i64, String)>,
}

impl ChainReport {
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

fn canonical(prev_hash: &str, seq: i64, e: &AuditEvent) -> String {
    serde_json::json!([prev_hash, seq, e.time, e.app_code, e.username, e.scope_type, e.scope_id, e.action, e.resource_id, e.detail])
        .to_string()
}

/// The MAC of one event given its predecessor's hash.
pub fn audit_hash(key: &AuditKey, prev_hash: &str, seq: i64, e: &AuditEvent) -> String {
    key.mac(canonical(prev_hash, seq, e).as_bytes())
}

/// The unkeyed hash events had before the audit key existed (kept to verify those).
pub fn legacy_audit_hash(prev_hash: &str, seq: i64, e: &AuditEvent) -> String {
    hex::encode(Sha256::digest(canonical(prev_hash, seq, e).as_bytes()))
}

/// Check the chain `rows` (in seq order) under `key` against the stored head and, when
/// given, a head exported earlier (`expect`). Fails on a missing or NULL `seq`, a gap, a
/// broken link, a MAC that does not match (edited, or recomputed without the key), a legacy
/// event after a keyed one, a chain that does not end in a keyed event, a stored head that
/// is not the last event, and an `expect` the chain no longer contains.
pub fn verify_chain(key: &AuditKey, rows: &[AuditRow], head: Option<ChainHead>, expect: Option<&ChainHead>) -> ChainReport {
    let mut report = ChainReport { checked: 0, legacy: 0, head: None, broken: None };
    let mut prev = String::new();
    let mut keyed_seen = false;
    let mut expect_found = false;
    for r in rows {
        let at = report.checked + 1;
        let Some(seq) = r.seq else {
            report.broken = Some((at, format!("event id {} has no chain position (inserted outside the chain)", r.id)));
            return report;
        };
        let fail = |why: String| Some((seq, why));
        if seq != at {
            report.broken = fail(format!("expected event #{at}, found #{seq} (events removed, inserted or reordered)"));
            return report;
        }
        if r.prev_hash != prev {
            report.broken = fail("previous-hash link does not match (events removed, inserted or reordered)".into());
            return report;
        }
        if audit_hash(key, &prev, seq, &r.event) == r.hash {
            keyed_seen = true;
        } else if !keyed_seen && legacy_audit_hash(&prev, seq, &r.event) == r.hash {
            report.legacy += 1;
        } else {
            report.broken = fail("content does not match its MAC (event edited, or hashed without the audit key)".into());
            return report;
        }
        if let Some(x) = expect.filter(|x| x.seq == seq) {
            if x.hash != r.hash {
                report.broken = fail(format!("the chain no longer holds the expected head {x} (events rewritten)"));
                return report;
            }
            expect_found = true;
        }
        report.checked += 1;
        prev = r.hash.clone();
    }
    let last = rows.last().and_then(|r| r.seq.map(|seq| ChainHead { seq, hash: r.hash.clone() }));
    if last.is_some() && !keyed_seen {
        report.broken =
            Some((report.checked, "the chain does not end in a keyed event (recomputed without the audit key, or never sealed)".into()));
        return report;
    }
    if let Some(h) = head {
        if Some(&h) != last.as_ref() && !(h.seq == 0 && last.is_none()) {
            report.broken = Some((report.checked + 1, format!("chain ends at #{} but the head records #{}", report.checked, h.seq)));
            return report;
        }
    }
    if let Some(x) = expect.filter(|x| x.seq > 0 && !expect_found) {
        report.broken = Some((x.seq, format!("the chain ends at #{} before the expected head {x} (events removed)", report.checked)));
        return report;
    }
    report.head = last;
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
    /// Replace a live app's secret hash by `new_hash` (salt cleared: argon2 keeps its own)
    /// only if it is still `old_hash`: rehashing a legacy secret never undoes a rotation
    /// that happened meanwhile. Whether it replaced it.
    async fn upgrade_app_secret(&self, code: &str, old_hash: &str, new_hash: &str) -> Result<bool>;
    /// Revoke: the secret no longer verifies, grants are dropped. `NotFound` when missing.
    async fn revoke_app(&self, code: &str, now: i64) -> Result<()>;
    async fn set_app_admin(&self, code: &str, is_admin: bool) -> Result<()>;

    // --- grants ---
    async fn put_grant(&self, g: &Grant, by: &str, now: i64) -> Result<()>;
    async fn delete_grant(&self, g: &Grant) -> Result<bool>;
    async fn list_grants(&self, app_code: Option<&str>) -> Result<Vec<Grant>>;
    /// Grant the account `g.account_id` (resolved from an alias by the caller). Grants of
    /// accounts since deleted are never listed.
    async fn put_account_grant(&self, g: &AccountGrant, by: &str, now: i64) -> Result<()>;
    /// Delete by app, scope and `account_id` (the alias is not compared).
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
    /// Check the whole chain under the store's audit key against the head and, when given, a
    /// head exported earlier.
    async fn verify_audit(&self, expect: Option<&ChainHead>) -> Result<ChainReport>;
    /// If the chain ends in an event from before the audit key (a database from an older
    /// version), append an `audit_rekey` event under the key, which closes the legacy part:
    /// from it on only keyed events verify. Returns its seq when one was appended.
    async fn seal_legacy_audit(&self, now: i64) -> Result<Option<i64>>;

    // --- agents ---
    /// Enrols an agent: its credential and the audit event `event`, in one transaction.
    /// `Conflict` when the agent id already has one.
    async fn issue_agent_credential(&self, agent_id: &str, salt: &str, secret_hash: &str, now: i64, event: &AuditEvent) -> Result<()>;
    /// `(salt, secret_hash, revoked)` of an agent.
    async fn agent_credential(&self, agent_id: &str) -> Result<Option<(String, String, bool)>>;
    /// Revokes an agent's credential for good and retires its host (as `remove_host` does,
    /// without the audit event, which the caller writes).
    async fn revoke_agent(&self, agent_id: &str, now: i64) -> Result<bool>;
    /// Agent ids registered at an address (to keep one address from being claimed twice).
    async fn agents_at(&self, bk_cloud_id: i64, ip: &str) -> Result<Vec<String>>;
    /// Count of jobs not yet finished: total, for a scope, for an app.
    async fn running_jobs(&self, scope: Option<(&str, &str)>, app_code: Option<&str>) -> Result<i64>;
}

/// Implements [`TrustStore`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` and an
/// `audit_key: AuditKey` field), in a module `trust_sql` that also holds
/// `insert_chained_audit`, the audit insert both `Store::audit` and job creation use.
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

            /// Append `e` to the chain on `conn` (inside the caller's transaction), MACed with `key`.
            pub(crate) async fn insert_chained_audit(conn: &mut Conn, key: &AuditKey, e: &AuditEvent) -> Result<()> {
                let row = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                    .fetch_one(&mut *conn)
                    .await
                    .op("advance audit head")?;
                let seq: i64 = row.try_get("seq").op("decode audit head")?;
                let prev: String = row.try_get("hash").op("decode audit head")?;
                let hash = audit_hash(key, &prev, seq, e);
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
                    account_id: r.try_get("account_id").op("decode account grant")?,
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

                async fn upgrade_app_secret(&self, code: &str, old_hash: &str, new_hash: &str) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE apps SET salt = '', secret_hash = $1 WHERE code = $2 AND secret_hash = $3 AND revoked_at IS NULL",
                    )
                    .bind(new_hash)
                    .bind(code)
                    .bind(old_hash)
                    .execute(&self.pool)
                    .await
                    .op("upgrade app secret")?;
                    Ok(r.rows_affected() > 0)
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
                        "INSERT INTO app_account_grants (app_code, scope_type, scope_id, account_id, alias, granted_by, granted_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(&g.app_code)
                    .bind(&g.scope_type)
                    .bind(&g.scope_id)
                    .bind(g.account_id)
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
                        "DELETE FROM app_account_grants WHERE app_code = $1 AND scope_type = $2 AND scope_id = $3 AND account_id = $4",
                    )
                    .bind(&g.app_code)
                    .bind(&g.scope_type)
                    .bind(&g.scope_id)
                    .bind(g.account_id)
                    .execute(&self.pool)
                    .await
                    .op("delete account grant")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn list_account_grants(&self, app_code: Option<&str>) -> Result<Vec<AccountGrant>> {
                    // A grant whose account is gone grants nothing (ids are never reused) and is
                    // not listed either.
                    let mut q = QueryBuilder::<$db>::new(
                        "SELECT g.app_code, g.scope_type, g.scope_id, g.account_id, COALESCE(a.alias, g.alias) AS alias \
                         FROM app_account_grants g LEFT JOIN accounts a ON a.id = g.account_id \
                         WHERE (g.account_id = 0 OR a.id IS NOT NULL)",
                    );
                    if let Some(c) = app_code {
                        q.push(" AND g.app_code = ").push_bind(c);
                    }
                    q.push(" ORDER BY g.app_code, g.scope_type, g.scope_id, g.account_id");
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

                async fn verify_audit(&self, expect: Option<&ChainHead>) -> Result<ChainReport> {
                    // One read transaction so the head and the rows agree.
                    let mut tx = self.pool.begin().await.op("begin verify audit")?;
                    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await
                        .op("read audit head")?;
                    let head = ChainHead { seq: head.try_get("seq").op("decode head")?, hash: head.try_get("hash").op("decode head")? };
                    // NULL seqs (only in a tampered database) sort first on one backend and last
                    // on the other; verify_chain fails on them either way.
                    let rows = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_events ORDER BY seq, id"))
                        .fetch_all(&mut *tx)
                        .await
                        .op("read audit events")?;
                    tx.commit().await.op("end verify audit")?;
                    let rows = rows.iter().map(audit_of).collect::<Result<Vec<_>>>()?;
                    Ok(verify_chain(&self.audit_key, &rows, Some(head), expect))
                }

                async fn seal_legacy_audit(&self, now: i64) -> Result<Option<i64>> {
                    let mut tx = self.pool.begin().await.op("begin seal audit")?;
                    // Taking the head first serialises this with appends (and other replicas).
                    let head = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                        .fetch_one(&mut *tx)
                        .await
                        .op("lock audit head")?;
                    let (head_seq, head_hash): (i64, String) =
                        (head.try_get("seq").op("decode head")?, head.try_get("hash").op("decode head")?);
                    let last = sqlx::query(&format!("SELECT {AUDIT_COLS} FROM audit_events WHERE seq = $1"))
                        .bind(head_seq)
                        .fetch_optional(&mut *tx)
                        .await
                        .op("read last audit event")?;
                    let Some(last) = last.as_ref().map(audit_of).transpose()? else { return Ok(None) };
                    if last.hash != head_hash || audit_hash(&self.audit_key, &last.prev_hash, head_seq, &last.event) == last.hash {
                        return Ok(None);
                    }
                    if legacy_audit_hash(&last.prev_hash, head_seq, &last.event) != last.hash {
                        // Neither rule: a wrong key or a tampered chain. Verification says which
                        // event; appending would only hide it.
                        tracing::error!(seq = head_seq, "the last audit event verifies under neither the audit key nor the legacy rule");
                        return Ok(None);
                    }
                    let e = AuditEvent {
                        time: now,
                        username: "shoal".into(),
                        action: "audit_rekey".into(),
                        resource_id: head_seq.to_string(),
                        detail: serde_json::json!({"legacy_until": head_seq, "legacy_head": head_hash}).to_string(),
                        ..Default::default()
                    };
                    insert_chained_audit(&mut tx, &self.audit_key, &e).await?;
                    tx.commit().await.op("commit seal audit")?;
                    tracing::warn!(legacy_until = head_seq, "audit events from before the audit key sealed by an audit_rekey event");
                    Ok(Some(head_seq + 1))
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
                    insert_chained_audit(&mut tx, &self.audit_key, event).await?;
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
                    let mut tx = self.pool.begin().await.op("begin agent revocation")?;
                    // A revoked agent id stays taken: re-enrolling under it is refused too.
                    let r = sqlx::query(
                        "INSERT INTO agent_credentials (agent_id, salt, secret_hash, created_at, revoked_at) VALUES ($1, '', '!revoked', $2, $3) \
                         ON CONFLICT (agent_id) DO UPDATE SET revoked_at = excluded.revoked_at, secret_hash = '!revoked'",
                    )
                    .bind(agent_id)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .op("revoke agent")?;
                    // Its host leaves the fleet with it (no listing, no target, its address free).
                    sqlx::query("UPDATE hosts SET state = 2, alive = 0 WHERE agent_id = $1 AND state <> 2")
                        .bind(agent_id)
                        .execute(&mut *tx)
                        .await
                        .op("retire revoked agent's host")?;
                    tx.commit().await.op("commit agent revocation")?;
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

    /// A chain of `n` events, the first `legacy` of them hashed the unkeyed way.
    fn chain(key: &AuditKey, n: usize, legacy: usize) -> Vec<AuditRow> {
        let mut prev = String::new();
        (1..=n as i64)
            .map(|seq| {
                let event = ev(&format!("act{seq}"));
                let hash =
                    if (seq as usize) <= legacy { legacy_audit_hash(&prev, seq, &event) } else { audit_hash(key, &prev, seq, &event) };
                let row = AuditRow { id: seq, seq: Some(seq), event, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                row
            })
            .collect()
    }

    fn head(rows: &[AuditRow]) -> Option<ChainHead> {
        rows.last().map(|r| ChainHead { seq: r.seq.unwrap(), hash: r.hash.clone() })
    }

    #[test]
    fn chain_detects_edits_removals_and_truncation() {
        let key = AuditKey::from_bytes([1; 32]);
        let rows = chain(&key, 4, 0);
        let h = head(&rows);
        let report = verify_chain(&key, &rows, h.clone(), None);
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.head, h);
        let mut edited = rows.clone();
        edited[1].event.username = "mallory".into();
        assert_eq!(verify_chain(&key, &edited, h.clone(), None).broken.unwrap().0, 2);
        let mut removed = rows.clone();
        removed.remove(2);
        assert_eq!(verify_chain(&key, &removed, h.clone(), None).broken.unwrap().0, 4);
        assert!(!verify_chain(&key, &rows[..3], h.clone(), None).ok(), "dropping the tail is detected against the head");
        let cut = head(&rows[..3]);
        assert!(verify_chain(&key, &rows[..3], cut.clone(), None).ok(), "a consistent cut alone looks whole...");
        assert!(!verify_chain(&key, &rows[..3], cut, h.as_ref()).ok(), "...but not against the exported head");
        let mut nulled = rows.clone();
        nulled[3].seq = None;
        assert!(!verify_chain(&key, &nulled, h.clone(), None).ok());
    }

    #[test]
    fn a_chain_recomputed_without_the_key_fails() {
        let key = AuditKey::from_bytes([1; 32]);
        let plain = chain(&key, 3, 3);
        assert!(!verify_chain(&key, &plain, head(&plain), None).ok(), "plain SHA-256 all the way");
        let other = chain(&AuditKey::from_bytes([2; 32]), 3, 0);
        assert!(!verify_chain(&key, &other, head(&other), None).ok(), "another key");
    }

    #[test]
    fn legacy_events_verify_only_before_the_first_keyed_one() {
        let key = AuditKey::from_bytes([1; 32]);
        let rows = chain(&key, 5, 3);
        let report = verify_chain(&key, &rows, head(&rows), None);
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.checked, report.legacy), (5, 3));
        // A legacy-hashed event after a keyed one is refused.
        let mut late = rows.clone();
        late[4].hash = legacy_audit_hash(&late[4].prev_hash, 5, &late[4].event);
        assert_eq!(verify_chain(&key, &late, head(&late), None).broken.unwrap().0, 5);
    }

    #[test]
    fn chain_heads_parse() {
        let h: ChainHead = format!("12:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(h.seq, 12);
        assert_eq!(h.to_string().parse::<ChainHead>().unwrap(), h);
        assert!("12".parse::<ChainHead>().is_err() && "x:ab".parse::<ChainHead>().is_err() && "1:abc".parse::<ChainHead>().is_err());
    }
}
