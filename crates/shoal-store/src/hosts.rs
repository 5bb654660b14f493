//! Host identity: enrolment, the facts a host is bound to, admin moves and acceptance, and
//! enrolment tokens.
//!
//! A host's address (`bk_cloud_id`, `ip`), business and topology are written once, when its
//! agent enrols, and change only by an admin act ([`HostStore::move_host`]). Uniqueness of an
//! address is a database constraint (`hosts_address`, over hosts not retired), so two agents
//! enrolling at one address at once cannot both win: the loser's transaction fails on the
//! index and is refused. An agent enrolled with a token that holds new agents is `Pending`:
//! its host is in no listing and no target until an admin accepts it.

use async_trait::async_trait;
use shoal_proto::agent::HostFacts;

use crate::{AuditEvent, HostRow, Result};

/// Where a host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// A target like any other.
    Active,
    /// Enrolled, waiting for an admin to accept it; gets no tasks.
    Pending,
    /// Superseded (its agent was revoked and a new one enrolled at its address).
    Retired,
}

impl HostState {
    pub fn code(self) -> i64 {
        match self {
            HostState::Active => 0,
            HostState::Pending => 1,
            HostState::Retired => 2,
        }
    }

    pub fn from_code(c: i64) -> HostState {
        match c {
            0 => HostState::Active,
            1 => HostState::Pending,
            _ => HostState::Retired,
        }
    }
}

/// A host with the facts it is bound to.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundHost {
    pub host: HostRow,
    pub state: HostState,
    /// The enrolment token that admitted it (`None`: the server's own token).
    pub enrolled_by: Option<i64>,
}

/// Which token an enrolment presents.
#[derive(Debug, Clone, Copy)]
pub enum EnrolToken<'a> {
    /// The server's own token: admits at once, into any business.
    Server,
    /// An issued token, by the SHA-256 (hex) of its text.
    Issued { token_hash: &'a str },
}

/// A first hello, checked by the gateway (credential well formed, facts within limits).
#[derive(Debug, Clone)]
pub struct Enrolment<'a> {
    pub agent_id: &'a str,
    pub salt: &'a str,
    pub secret_hash: &'a str,
    pub facts: &'a HostFacts,
    pub version: &'a str,
    pub token: EnrolToken<'a>,
    pub now: i64,
    /// Recorded with the enrolment; its JSON detail gains `bk_host_id`, `token_id`, `pending`.
    pub event: AuditEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    pub host_id: i64,
    pub pending: bool,
    pub token_id: Option<i64>,
}

/// Why an enrolment is refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrolRefusal {
    TokenUnknown,
    TokenRevoked,
    TokenExpired,
    TokenUsed,
    /// The token is for `token_biz`, the hello claims `claimed`.
    TokenBusiness {
        token_biz: i64,
        claimed: i64,
    },
    /// Another current host holds the address.
    AddressTaken,
    /// The agent id enrolled meanwhile (two hellos of one agent raced).
    AgentIdTaken,
}

impl std::fmt::Display for EnrolRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnrolRefusal::TokenUnknown => f.write_str("invalid enrolment token"),
            EnrolRefusal::TokenRevoked => f.write_str("enrolment token revoked"),
            EnrolRefusal::TokenExpired => f.write_str("enrolment token expired"),
            EnrolRefusal::TokenUsed => f.write_str("single-use enrolment token already used"),
            EnrolRefusal::TokenBusiness { token_biz, claimed } => {
                write!(f, "enrolment token is for business {token_biz}; hello claims business {claimed}")
            }
            EnrolRefusal::AddressTaken => f.write_str("this address belongs to another enrolled agent; revoke it first"),
            EnrolRefusal::AgentIdTaken => f.write_str("enrolment raced; retry"),
        }
    }
}

/// An admin's change of a host's bound facts; `None` keeps a fact.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMove {
    pub bk_biz_id: Option<i64>,
    pub bk_cloud_id: Option<i64>,
    pub ip: Option<String>,
    pub set_id: Option<i64>,
    pub module_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveRefusal {
    NoSuchHost,
    AddressTaken,
}

/// A new enrolment token (its text is shown once and never stored).
#[derive(Debug, Clone, Default)]
pub struct NewAgentToken {
    pub token_hash: String,
    pub bk_biz_id: Option<i64>,
    pub pending: bool,
    pub single_use: bool,
    pub expires_at: Option<i64>,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTokenRow {
    pub id: i64,
    pub bk_biz_id: Option<i64>,
    pub pending: bool,
    pub single_use: bool,
    pub uses: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
}

#[async_trait]
pub trait HostStore: Send + Sync {
    /// Enrols an agent in one transaction: consumes a use of the token, records the
    /// credential, inserts the host (retiring the host of a revoked agent at the address) and
    /// the audit event. The outer error is a storage fault; the inner one a refusal.
    async fn enrol_agent(&self, e: &Enrolment<'_>) -> Result<std::result::Result<Enrolled, EnrolRefusal>>;
    /// The current (not retired) host of an agent id.
    async fn bound_host(&self, agent_id: &str) -> Result<Option<BoundHost>>;
    /// What an enrolled agent may still report: labels, hostname, os, version; marks it alive.
    async fn refresh_host(&self, host_id: i64, facts: &HostFacts, version: &str, now: i64) -> Result<()>;
    /// Rebinds a host's address, business or topology, with `event`, in one transaction.
    async fn move_host(&self, host_id: i64, m: &HostMove, event: &AuditEvent) -> Result<std::result::Result<BoundHost, MoveRefusal>>;
    /// Pending → active, with `event`; false when the host is not pending.
    async fn accept_host(&self, host_id: i64, event: &AuditEvent) -> Result<bool>;
    /// Takes a host out of the registry (it becomes `Retired`: in no listing and no target,
    /// its address free for another agent), with `event`. False when there is no such host
    /// or it was retired already.
    async fn remove_host(&self, host_id: i64, event: &AuditEvent) -> Result<bool>;
    /// Hosts waiting for acceptance.
    async fn pending_hosts(&self) -> Result<Vec<BoundHost>>;

    async fn create_agent_token(&self, t: &NewAgentToken, event: &AuditEvent) -> Result<i64>;
    async fn list_agent_tokens(&self) -> Result<Vec<AgentTokenRow>>;
    /// False when there is no such token or it was revoked already.
    async fn revoke_agent_token(&self, id: i64, now: i64, event: &AuditEvent) -> Result<bool>;
}

/// Adds `fields` to the JSON object in `detail` (an event built before its ids were known).
pub(crate) fn with_detail(detail: &str, fields: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(detail).unwrap_or_else(|_| serde_json::json!({}));
    if let (Some(o), Some(add)) = (v.as_object_mut(), fields.as_object()) {
        for (k, x) in add {
            o.insert(k.clone(), x.clone());
        }
    }
    v.to_string()
}

/// Implements [`HostStore`] for `$store`; expects `trust_sql::insert_chained_audit` beside it.
macro_rules! impl_host_store {
    ($store:ty, $db:ty) => {
        pub(crate) mod host_sql {
            use super::*;
            use async_trait::async_trait;
            use shoal_proto::agent::HostFacts;
            use sqlx::Row;

            use crate::hosts::*;
            use crate::{AuditEvent, DbContext, HostRow, Result, StoreError};

            type DbRow = <$db as sqlx::Database>::Row;

            const COLS: &str = "bk_host_id, agent_id, bk_biz_id, bk_cloud_id, ip, set_id, module_id, labels, hostname, os, agent_version, alive, last_seen, state, enrolled_by";
            const TOKEN_COLS: &str = "id, bk_biz_id, pending, single_use, uses, expires_at, revoked_at, description, created_by, created_at";

            fn bound_of(r: &DbRow) -> Result<BoundHost> {
                let labels: String = r.try_get("labels").op("decode host")?;
                Ok(BoundHost {
                    host: HostRow {
                        bk_host_id: r.try_get("bk_host_id").op("decode host")?,
                        agent_id: r.try_get("agent_id").op("decode host")?,
                        bk_biz_id: r.try_get("bk_biz_id").op("decode host")?,
                        bk_cloud_id: r.try_get("bk_cloud_id").op("decode host")?,
                        ip: r.try_get("ip").op("decode host")?,
                        set_id: r.try_get("set_id").op("decode host")?,
                        module_id: r.try_get("module_id").op("decode host")?,
                        labels: serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt(format!("host labels: {e}")))?,
                        hostname: r.try_get("hostname").op("decode host")?,
                        os: r.try_get("os").op("decode host")?,
                        agent_version: r.try_get("agent_version").op("decode host")?,
                        alive: r.try_get::<i64, _>("alive").op("decode host")? != 0,
                        last_seen: r.try_get("last_seen").op("decode host")?,
                    },
                    state: HostState::from_code(r.try_get("state").op("decode host")?),
                    enrolled_by: r.try_get("enrolled_by").op("decode host")?,
                })
            }

            fn token_of(r: &DbRow) -> Result<AgentTokenRow> {
                Ok(AgentTokenRow {
                    id: r.try_get("id").op("decode agent token")?,
                    bk_biz_id: r.try_get("bk_biz_id").op("decode agent token")?,
                    pending: r.try_get::<i64, _>("pending").op("decode agent token")? != 0,
                    single_use: r.try_get::<i64, _>("single_use").op("decode agent token")? != 0,
                    uses: r.try_get("uses").op("decode agent token")?,
                    expires_at: r.try_get("expires_at").op("decode agent token")?,
                    revoked_at: r.try_get("revoked_at").op("decode agent token")?,
                    description: r.try_get("description").op("decode agent token")?,
                    created_by: r.try_get("created_by").op("decode agent token")?,
                    created_at: r.try_get("created_at").op("decode agent token")?,
                })
            }

            fn unique_violation(e: &sqlx::Error) -> bool {
                matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
            }

            /// Why a token did not admit (read after its guarded use found no row).
            async fn token_refusal(conn: &mut <$db as sqlx::Database>::Connection, hash: &str, biz: i64, now: i64) -> Result<EnrolRefusal> {
                let row = sqlx::query("SELECT bk_biz_id, single_use, uses, expires_at, revoked_at FROM agent_tokens WHERE token_hash = $1")
                    .bind(hash)
                    .fetch_optional(&mut *conn)
                    .await
                    .op("read agent token")?;
                let Some(r) = row else { return Ok(EnrolRefusal::TokenUnknown) };
                let token_biz: Option<i64> = r.try_get("bk_biz_id").op("decode agent token")?;
                let expires: Option<i64> = r.try_get("expires_at").op("decode agent token")?;
                let revoked: Option<i64> = r.try_get("revoked_at").op("decode agent token")?;
                Ok(if revoked.is_some() {
                    EnrolRefusal::TokenRevoked
                } else if expires.is_some_and(|t| t <= now) {
                    EnrolRefusal::TokenExpired
                } else if let Some(b) = token_biz.filter(|b| *b != biz) {
                    EnrolRefusal::TokenBusiness { token_biz: b, claimed: biz }
                } else {
                    EnrolRefusal::TokenUsed
                })
            }

            #[async_trait]
            impl HostStore for $store {
                async fn enrol_agent(&self, e: &Enrolment<'_>) -> Result<std::result::Result<Enrolled, EnrolRefusal>> {
                    let f = e.facts;
                    let mut tx = self.pool.begin().await.op("begin enrolment")?;
                    // A write first: on SQLite the transaction then holds the write lock from
                    // its first statement on, and a racing enrolment waits for it.
                    let (token_id, pending) = match e.token {
                        EnrolToken::Server => (None, false),
                        EnrolToken::Issued { token_hash } => {
                            let row = sqlx::query(
                                "UPDATE agent_tokens SET uses = uses + 1 WHERE token_hash = $1 AND revoked_at IS NULL \
                                 AND (expires_at IS NULL OR expires_at > $2) AND (single_use = 0 OR uses = 0) \
                                 AND (bk_biz_id IS NULL OR bk_biz_id = $3) RETURNING id, pending",
                            )
                            .bind(token_hash)
                            .bind(e.now)
                            .bind(f.bk_biz_id)
                            .fetch_optional(&mut *tx)
                            .await
                            .op("use agent token")?;
                            match row {
                                Some(r) => (
                                    Some(r.try_get::<i64, _>("id").op("decode agent token")?),
                                    r.try_get::<i64, _>("pending").op("decode agent token")? != 0,
                                ),
                                None => return Ok(Err(token_refusal(&mut tx, token_hash, f.bk_biz_id, e.now).await?)),
                            }
                        }
                    };
                    let r = sqlx::query(
                        "INSERT INTO agent_credentials (agent_id, salt, secret_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) DO NOTHING",
                    )
                    .bind(e.agent_id)
                    .bind(e.salt)
                    .bind(e.secret_hash)
                    .bind(e.now)
                    .execute(&mut *tx)
                    .await
                    .op("issue agent credential")?;
                    if r.rows_affected() == 0 {
                        return Ok(Err(EnrolRefusal::AgentIdTaken));
                    }
                    // The host of a revoked agent gives its address up to the newcomer.
                    sqlx::query(
                        "UPDATE hosts SET state = 2, alive = 0 WHERE bk_cloud_id = $1 AND ip = $2 AND state <> 2 \
                         AND agent_id IN (SELECT agent_id FROM agent_credentials WHERE revoked_at IS NOT NULL)",
                    )
                    .bind(f.bk_cloud_id)
                    .bind(&f.ip)
                    .execute(&mut *tx)
                    .await
                    .op("retire revoked host")?;
                    let labels = serde_json::to_string(&f.labels).unwrap_or_else(|_| "{}".into());
                    let state = if pending { HostState::Pending } else { HostState::Active };
                    // A host row of this agent id without a credential predates credentials:
                    // enrolling with a token now binds it afresh.
                    let inserted = sqlx::query_scalar::<_, i64>(
                        "INSERT INTO hosts (agent_id, bk_biz_id, bk_cloud_id, ip, set_id, module_id, labels, hostname, os, agent_version, alive, last_seen, state, enrolled_by) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13) \
                         ON CONFLICT (agent_id) DO UPDATE SET bk_biz_id = excluded.bk_biz_id, bk_cloud_id = excluded.bk_cloud_id, ip = excluded.ip, \
                         set_id = excluded.set_id, module_id = excluded.module_id, labels = excluded.labels, hostname = excluded.hostname, \
                         os = excluded.os, agent_version = excluded.agent_version, last_seen = excluded.last_seen, state = excluded.state, \
                         enrolled_by = excluded.enrolled_by \
                         RETURNING bk_host_id",
                    )
                    .bind(e.agent_id)
                    .bind(f.bk_biz_id)
                    .bind(f.bk_cloud_id)
                    .bind(&f.ip)
                    .bind(f.set_id)
                    .bind(f.module_id)
                    .bind(labels)
                    .bind(&f.hostname)
                    .bind(&f.os)
                    .bind(e.version)
                    .bind(e.now)
                    .bind(state.code())
                    .bind(token_id)
                    .fetch_one(&mut *tx)
                    .await;
                    let host_id = match inserted {
                        Ok(id) => id,
                        // The losing racer (or a newcomer at a held address): nothing is kept.
                        Err(err) if unique_violation(&err) => return Ok(Err(EnrolRefusal::AddressTaken)),
                        Err(err) => return Err(StoreError::Db { op: "insert host", source: err }),
                    };
                    let mut event = e.event.clone();
                    event.detail = with_detail(&event.detail, serde_json::json!({"bk_host_id": host_id, "token_id": token_id, "pending": pending}));
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, &event).await?;
                    tx.commit().await.op("commit enrolment")?;
                    Ok(Ok(Enrolled { host_id, pending, token_id }))
                }

                async fn bound_host(&self, agent_id: &str) -> Result<Option<BoundHost>> {
                    let row = sqlx::query(&format!("SELECT {COLS} FROM hosts WHERE agent_id = $1 AND state <> 2"))
                        .bind(agent_id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("bound host")?;
                    row.as_ref().map(bound_of).transpose()
                }

                async fn refresh_host(&self, host_id: i64, f: &HostFacts, version: &str, now: i64) -> Result<()> {
                    let labels = serde_json::to_string(&f.labels).unwrap_or_else(|_| "{}".into());
                    sqlx::query(
                        "UPDATE hosts SET labels = $1, hostname = $2, os = $3, agent_version = $4, alive = 1, last_seen = $5 WHERE bk_host_id = $6",
                    )
                    .bind(labels)
                    .bind(&f.hostname)
                    .bind(&f.os)
                    .bind(version)
                    .bind(now)
                    .bind(host_id)
                    .execute(&self.pool)
                    .await
                    .op("refresh host")?;
                    Ok(())
                }

                async fn move_host(&self, host_id: i64, m: &HostMove, event: &AuditEvent) -> Result<std::result::Result<BoundHost, MoveRefusal>> {
                    let mut tx = self.pool.begin().await.op("begin host move")?;
                    let moved = sqlx::query(&format!(
                        "UPDATE hosts SET bk_biz_id = COALESCE($1, bk_biz_id), bk_cloud_id = COALESCE($2, bk_cloud_id), ip = COALESCE($3, ip), \
                         set_id = COALESCE($4, set_id), module_id = COALESCE($5, module_id) WHERE bk_host_id = $6 AND state <> 2 RETURNING {COLS}"
                    ))
                    .bind(m.bk_biz_id)
                    .bind(m.bk_cloud_id)
                    .bind(m.ip.as_deref())
                    .bind(m.set_id)
                    .bind(m.module_id)
                    .bind(host_id)
                    .fetch_optional(&mut *tx)
                    .await;
                    let host = match moved {
                        Ok(Some(r)) => bound_of(&r)?,
                        Ok(None) => return Ok(Err(MoveRefusal::NoSuchHost)),
                        Err(err) if unique_violation(&err) => return Ok(Err(MoveRefusal::AddressTaken)),
                        Err(err) => return Err(StoreError::Db { op: "move host", source: err }),
                    };
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit host move")?;
                    Ok(Ok(host))
                }

                async fn accept_host(&self, host_id: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin accept")?;
                    let r = sqlx::query("UPDATE hosts SET state = 0 WHERE bk_host_id = $1 AND state = 1")
                        .bind(host_id)
                        .execute(&mut *tx)
                        .await
                        .op("accept host")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit accept")?;
                    Ok(true)
                }

                async fn remove_host(&self, host_id: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin host removal")?;
                    let r = sqlx::query("UPDATE hosts SET state = 2, alive = 0 WHERE bk_host_id = $1 AND state <> 2")
                        .bind(host_id)
                        .execute(&mut *tx)
                        .await
                        .op("remove host")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit host removal")?;
                    Ok(true)
                }

                async fn pending_hosts(&self) -> Result<Vec<BoundHost>> {
                    let rows = sqlx::query(&format!("SELECT {COLS} FROM hosts WHERE state = 1 ORDER BY bk_host_id"))
                        .fetch_all(&self.pool)
                        .await
                        .op("pending hosts")?;
                    rows.iter().map(bound_of).collect()
                }

                async fn create_agent_token(&self, t: &NewAgentToken, event: &AuditEvent) -> Result<i64> {
                    let mut tx = self.pool.begin().await.op("begin agent token")?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO agent_tokens (token_hash, bk_biz_id, pending, single_use, uses, expires_at, description, created_by, created_at) \
                         VALUES ($1, $2, $3, $4, 0, $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(&t.token_hash)
                    .bind(t.bk_biz_id)
                    .bind(t.pending as i64)
                    .bind(t.single_use as i64)
                    .bind(t.expires_at)
                    .bind(&t.description)
                    .bind(&t.created_by)
                    .bind(t.created_at)
                    .fetch_one(&mut *tx)
                    .await
                    .op("insert agent token")?;
                    let mut event = event.clone();
                    event.resource_id = id.to_string();
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, &event).await?;
                    tx.commit().await.op("commit agent token")?;
                    Ok(id)
                }

                async fn list_agent_tokens(&self) -> Result<Vec<AgentTokenRow>> {
                    let rows = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM agent_tokens ORDER BY id"))
                        .fetch_all(&self.pool)
                        .await
                        .op("list agent tokens")?;
                    rows.iter().map(token_of).collect()
                }

                async fn revoke_agent_token(&self, id: i64, now: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin token revoke")?;
                    let r = sqlx::query("UPDATE agent_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .op("revoke agent token")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit token revoke")?;
                    Ok(true)
                }
            }
        }
    };
}

pub(crate) use impl_host_store;
