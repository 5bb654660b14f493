//! Storage of the caller side: idempotency keys of mutating API calls and `shoal check`
//! records. A separate trait ([`CallerStore`], a supertrait of [`crate::Store`]) with its
//! SQL written once in [`impl_caller_store!`] and instantiated per backend.

use async_trait::async_trait;

use crate::Result;

/// The idempotency key (app code, key) of the request running in this task. A job created
/// while it is set records its id on the key's row in the job's own transaction, so after a
/// crash a retry finds the job that was made instead of making another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdemKey {
    pub app_code: String,
    pub key: String,
}

tokio::task_local! {
    pub static CREATING_FOR: IdemKey;
}

/// The key of the request creating a job in this task, if any.
pub fn creating_for() -> Option<IdemKey> {
    CREATING_FOR.try_with(Clone::clone).ok()
}

/// Where a reserved idempotency key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdemState {
    /// The first request with this key is still being handled.
    Pending,
    /// The first request ended; its answer is stored.
    Done,
}

impl IdemState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdemState::Pending => "pending",
            IdemState::Done => "done",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdemRow {
    pub app_code: String,
    pub key: String,
    /// Hash of what the request asked for; the same key with another hash is refused.
    pub request_hash: String,
    pub state: IdemState,
    /// HTTP status of the stored answer (0 while pending).
    pub http_status: i32,
    /// The stored answer (JSON), empty while pending.
    pub answer: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// The server instance (replica id, or the process's boot id) handling the request.
    pub owner: String,
    /// The job the request created, recorded in the job's transaction.
    pub job_instance_id: Option<i64>,
}

/// The outcome of reserving a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// This request holds the key now and must complete or release it.
    Reserved,
    /// Another request holds (or held) the key.
    Existing(IdemRow),
}

/// Status of a check record.
pub mod check_status {
    pub const WAIT: &str = "wait";
    pub const STARTED: &str = "started";
    pub const FINISH: &str = "finish";
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckRow {
    /// Key of (check, sorted hosts).
    pub id: String,
    pub check_name: String,
    pub scope_type: String,
    pub scope_id: String,
    /// JSON array of the sorted host strings.
    pub hosts: String,
    /// Identifies the run holding the record; only it may update the record.
    pub run_id: String,
    /// `wait`, `started` or `finish` ([`check_status`]).
    pub status: String,
    pub app_code: String,
    pub username: String,
    pub job_instance_id: i64,
    pub step_instance_id: i64,
    /// JSON array of info lines.
    pub infos: String,
    /// JSON report, once finished.
    pub report: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
}

/// A change to a check record by the run holding it; `None` fields are left alone.
#[derive(Debug, Clone, Default)]
pub struct CheckUpdate {
    pub id: String,
    pub run_id: String,
    pub status: Option<String>,
    pub job_instance_id: Option<i64>,
    pub step_instance_id: Option<i64>,
    pub infos: Option<String>,
    pub report: Option<String>,
    pub updated_at: i64,
    pub expires_at: i64,
}

#[async_trait]
pub trait CallerStore: Send + Sync {
    /// Reserve `(app_code, key)` for a request: insert a pending row unless a live row
    /// exists (expired rows are replaced). Exactly one of concurrent callers gets `Reserved`.
    async fn reserve_idempotency(
        &self,
        app_code: &str,
        key: &str,
        request_hash: &str,
        owner: &str,
        now: i64,
        pending_until: i64,
    ) -> Result<Reservation>;
    /// Take a pending key over from `dead_owner` when its request made no job; true when
    /// this caller holds it now.
    async fn take_over_idempotency(
        &self,
        app_code: &str,
        key: &str,
        dead_owner: &str,
        owner: &str,
        now: i64,
        pending_until: i64,
    ) -> Result<bool>;
    /// Whether replica `id` has sent a heartbeat after `alive_after`.
    async fn replica_alive(&self, id: &str, alive_after: i64) -> Result<bool>;
    async fn get_idempotency(&self, app_code: &str, key: &str) -> Result<Option<IdemRow>>;
    /// Store the answer of the request holding the key.
    async fn complete_idempotency(&self, app_code: &str, key: &str, http_status: i32, answer: &str, expires_at: i64) -> Result<()>;
    /// Forget a pending key (the request ended without an answer worth replaying).
    async fn release_idempotency(&self, app_code: &str, key: &str) -> Result<()>;
    /// Delete expired keys; returns how many.
    async fn purge_idempotency(&self, now: i64) -> Result<u64>;

    /// Take the record `row.id` for a new run: insert it, or replace it when the previous run
    /// finished or expired. `Some(existing)` when a run still holds it.
    async fn claim_check(&self, row: &CheckRow, now: i64) -> Result<Option<CheckRow>>;
    /// Apply `u` if `u.run_id` still holds the record; false otherwise.
    async fn update_check(&self, u: &CheckUpdate) -> Result<bool>;
    async fn get_check(&self, id: &str) -> Result<Option<CheckRow>>;
    /// Latest records of a scope, newest first.
    async fn list_checks(&self, scope_type: &str, scope_id: &str, limit: i64) -> Result<Vec<CheckRow>>;
}

/// Implements [`CallerStore`] for `$store` (an ident of a struct with a `pool: sqlx::Pool<$db>`
/// field, defined in the invoking module).
macro_rules! impl_caller_store {
    ($store:ident, $db:ty) => {
        mod caller_store_impl {
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};

            use crate::idempotency::{CallerStore, CheckRow, CheckUpdate, IdemRow, IdemState, Reservation};
            use crate::{DbContext, Result, StoreError};

            type DbRow = <$db as sqlx::Database>::Row;

            const IDEM_COLS: &str = "app_code, idem_key, request_hash, state, http_status, answer, created_at, expires_at, owner, job_instance_id";
            const CHECK_COLS: &str = "id, check_name, scope_type, scope_id, hosts, run_id, status, app_code, username, job_instance_id, step_instance_id, infos, report, created_at, updated_at, expires_at";

            fn idem_of(r: &DbRow) -> Result<IdemRow> {
                let state: String = r.try_get("state").op("decode idempotency key")?;
                Ok(IdemRow {
                    app_code: r.try_get("app_code").op("decode idempotency key")?,
                    key: r.try_get("idem_key").op("decode idempotency key")?,
                    request_hash: r.try_get("request_hash").op("decode idempotency key")?,
                    state: match state.as_str() {
                        "pending" => IdemState::Pending,
                        "done" => IdemState::Done,
                        other => return Err(StoreError::Corrupt(format!("idempotency state {other:?}"))),
                    },
                    http_status: r.try_get::<i64, _>("http_status").op("decode idempotency key")? as i32,
                    answer: r.try_get("answer").op("decode idempotency key")?,
                    created_at: r.try_get("created_at").op("decode idempotency key")?,
                    expires_at: r.try_get("expires_at").op("decode idempotency key")?,
                    owner: r.try_get("owner").op("decode idempotency key")?,
                    job_instance_id: r.try_get("job_instance_id").op("decode idempotency key")?,
                })
            }

            fn check_of(r: &DbRow) -> Result<CheckRow> {
                Ok(CheckRow {
                    id: r.try_get("id").op("decode check")?,
                    check_name: r.try_get("check_name").op("decode check")?,
                    scope_type: r.try_get("scope_type").op("decode check")?,
                    scope_id: r.try_get("scope_id").op("decode check")?,
                    hosts: r.try_get("hosts").op("decode check")?,
                    run_id: r.try_get("run_id").op("decode check")?,
                    status: r.try_get("status").op("decode check")?,
                    app_code: r.try_get("app_code").op("decode check")?,
                    username: r.try_get("username").op("decode check")?,
                    job_instance_id: r.try_get("job_instance_id").op("decode check")?,
                    step_instance_id: r.try_get("step_instance_id").op("decode check")?,
                    infos: r.try_get("infos").op("decode check")?,
                    report: r.try_get("report").op("decode check")?,
                    created_at: r.try_get("created_at").op("decode check")?,
                    updated_at: r.try_get("updated_at").op("decode check")?,
                    expires_at: r.try_get("expires_at").op("decode check")?,
                })
            }

            #[async_trait]
            impl CallerStore for super::$store {
                async fn reserve_idempotency(
                    &self,
                    app_code: &str,
                    key: &str,
                    request_hash: &str,
                    owner: &str,
                    now: i64,
                    pending_until: i64,
                ) -> Result<Reservation> {
                    sqlx::query("DELETE FROM idempotency_keys WHERE app_code = $1 AND idem_key = $2 AND expires_at < $3")
                        .bind(app_code)
                        .bind(key)
                        .bind(now)
                        .execute(&self.pool)
                        .await
                        .op("expire idempotency key")?;
                    let inserted = sqlx::query(
                        "INSERT INTO idempotency_keys (app_code, idem_key, request_hash, state, created_at, expires_at, owner) \
                         VALUES ($1, $2, $3, 'pending', $4, $5, $6) ON CONFLICT (app_code, idem_key) DO NOTHING RETURNING idem_key",
                    )
                    .bind(app_code)
                    .bind(key)
                    .bind(request_hash)
                    .bind(now)
                    .bind(pending_until)
                    .bind(owner)
                    .fetch_optional(&self.pool)
                    .await
                    .op("reserve idempotency key")?;
                    if inserted.is_some() {
                        return Ok(Reservation::Reserved);
                    }
                    match self.get_idempotency(app_code, key).await? {
                        Some(row) => Ok(Reservation::Existing(row)),
                        // Released between our insert and read: a retry of the caller will reserve it.
                        None => Err(StoreError::Conflict("idempotency key released concurrently")),
                    }
                }

                async fn take_over_idempotency(
                    &self,
                    app_code: &str,
                    key: &str,
                    dead_owner: &str,
                    owner: &str,
                    now: i64,
                    pending_until: i64,
                ) -> Result<bool> {
                    let r = sqlx::query(
                        "UPDATE idempotency_keys SET owner = $1, created_at = $2, expires_at = $3 \
                         WHERE app_code = $4 AND idem_key = $5 AND state = 'pending' AND owner = $6 AND job_instance_id IS NULL",
                    )
                    .bind(owner)
                    .bind(now)
                    .bind(pending_until)
                    .bind(app_code)
                    .bind(key)
                    .bind(dead_owner)
                    .execute(&self.pool)
                    .await
                    .op("take over idempotency key")?;
                    Ok(r.rows_affected() == 1)
                }

                async fn replica_alive(&self, id: &str, alive_after: i64) -> Result<bool> {
                    let row = sqlx::query("SELECT 1 AS one FROM replicas WHERE id = $1 AND heartbeat > $2")
                        .bind(id)
                        .bind(alive_after)
                        .fetch_optional(&self.pool)
                        .await
                        .op("replica alive")?;
                    Ok(row.is_some())
                }

                async fn get_idempotency(&self, app_code: &str, key: &str) -> Result<Option<IdemRow>> {
                    let row = sqlx::query(&format!("SELECT {IDEM_COLS} FROM idempotency_keys WHERE app_code = $1 AND idem_key = $2"))
                        .bind(app_code)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get idempotency key")?;
                    row.as_ref().map(idem_of).transpose()
                }

                async fn complete_idempotency(&self, app_code: &str, key: &str, http_status: i32, answer: &str, expires_at: i64) -> Result<()> {
                    sqlx::query(
                        "UPDATE idempotency_keys SET state = 'done', http_status = $1, answer = $2, expires_at = $3 \
                         WHERE app_code = $4 AND idem_key = $5 AND state = 'pending'",
                    )
                    .bind(http_status as i64)
                    .bind(answer)
                    .bind(expires_at)
                    .bind(app_code)
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .op("complete idempotency key")?;
                    Ok(())
                }

                async fn release_idempotency(&self, app_code: &str, key: &str) -> Result<()> {
                    sqlx::query("DELETE FROM idempotency_keys WHERE app_code = $1 AND idem_key = $2 AND state = 'pending'")
                        .bind(app_code)
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .op("release idempotency key")?;
                    Ok(())
                }

                async fn purge_idempotency(&self, now: i64) -> Result<u64> {
                    let r = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1")
                        .bind(now)
                        .execute(&self.pool)
                        .await
                        .op("purge idempotency keys")?;
                    Ok(r.rows_affected())
                }

                async fn claim_check(&self, c: &CheckRow, now: i64) -> Result<Option<CheckRow>> {
                    let claimed = sqlx::query(&format!(
                        "INSERT INTO check_records ({CHECK_COLS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                         ON CONFLICT (id) DO UPDATE SET check_name = excluded.check_name, scope_type = excluded.scope_type, \
                         scope_id = excluded.scope_id, hosts = excluded.hosts, run_id = excluded.run_id, status = excluded.status, \
                         app_code = excluded.app_code, username = excluded.username, job_instance_id = excluded.job_instance_id, \
                         step_instance_id = excluded.step_instance_id, infos = excluded.infos, report = excluded.report, \
                         created_at = excluded.created_at, updated_at = excluded.updated_at, expires_at = excluded.expires_at \
                         WHERE check_records.status = 'finish' OR check_records.expires_at < $17 \
                         RETURNING id"
                    ))
                    .bind(&c.id)
                    .bind(&c.check_name)
                    .bind(&c.scope_type)
                    .bind(&c.scope_id)
                    .bind(&c.hosts)
                    .bind(&c.run_id)
                    .bind(&c.status)
                    .bind(&c.app_code)
                    .bind(&c.username)
                    .bind(c.job_instance_id)
                    .bind(c.step_instance_id)
                    .bind(&c.infos)
                    .bind(&c.report)
                    .bind(c.created_at)
                    .bind(c.updated_at)
                    .bind(c.expires_at)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .op("claim check")?;
                    if claimed.is_some() {
                        return Ok(None);
                    }
                    self.get_check(&c.id).await
                }

                async fn update_check(&self, u: &CheckUpdate) -> Result<bool> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE check_records SET updated_at = ");
                    q.push_bind(u.updated_at).push(", expires_at = ").push_bind(u.expires_at);
                    if let Some(s) = &u.status {
                        q.push(", status = ").push_bind(s.clone());
                    }
                    if let Some(j) = u.job_instance_id {
                        q.push(", job_instance_id = ").push_bind(j);
                    }
                    if let Some(s) = u.step_instance_id {
                        q.push(", step_instance_id = ").push_bind(s);
                    }
                    if let Some(i) = &u.infos {
                        q.push(", infos = ").push_bind(i.clone());
                    }
                    if let Some(r) = &u.report {
                        q.push(", report = ").push_bind(r.clone());
                    }
                    q.push(" WHERE id = ").push_bind(u.id.clone()).push(" AND run_id = ").push_bind(u.run_id.clone());
                    let r = q.build().execute(&self.pool).await.op("update check")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn get_check(&self, id: &str) -> Result<Option<CheckRow>> {
                    let row = sqlx::query(&format!("SELECT {CHECK_COLS} FROM check_records WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get check")?;
                    row.as_ref().map(check_of).transpose()
                }

                async fn list_checks(&self, scope_type: &str, scope_id: &str, limit: i64) -> Result<Vec<CheckRow>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {CHECK_COLS} FROM check_records WHERE scope_type = $1 AND scope_id = $2 ORDER BY updated_at DESC, id LIMIT $3"
                    ))
                    .bind(scope_type)
                    .bind(scope_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .op("list checks")?;
                    rows.iter().map(check_of).collect()
                }
            }
        }
    };
}

pub(crate) use impl_caller_store;
