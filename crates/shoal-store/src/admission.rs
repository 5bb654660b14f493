//! Admission storage: the running-job quota taken atomically with a job's creation, and the
//! built-in dangerous-command checks an admin turned off.
//!
//! Quota: [`NewJob::quota`](crate::NewJob) carries the limits; job creation inserts the job,
//! then (holding a lock that serialises creations) counts unfinished jobs including the new
//! one and rolls back with [`StoreError::QuotaExceeded`](crate::StoreError) when a limit is
//! passed. The lock: on SQLite the transaction already holds the database's write lock after
//! its first insert; on PostgreSQL a transaction-scoped advisory lock.

use async_trait::async_trait;

use crate::{AuditEvent, Result};

/// Running-job limits checked when a job is created; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobQuota {
    /// Unfinished jobs in total (1244034).
    pub system: u64,
    /// Unfinished jobs of the job's scope (1244032).
    pub scope: u64,
    /// Unfinished jobs of the job's app (1244033).
    pub app: u64,
}

impl JobQuota {
    pub fn is_limited(&self) -> bool {
        self.system > 0 || self.scope > 0 || self.app > 0
    }
}

/// Which limit a refused creation passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    System,
    Scope,
    App,
}

/// Advisory-lock key serialising quota-limited job creation on PostgreSQL ("shoal-q").
pub const QUOTA_LOCK_KEY: i64 = 0x0073_686f_616c_2d71;

#[async_trait]
pub trait AdmissionStore {
    /// Names of the built-in checks turned off.
    async fn disabled_builtins(&self) -> Result<Vec<String>>;
    /// Turns a built-in off (`disabled`) or on again, with its audit event, in one
    /// transaction. Returns whether anything changed.
    async fn set_builtin_disabled(&self, name: &str, disabled: bool, by: &str, now: i64, event: &AuditEvent) -> Result<bool>;
}

/// Implements [`AdmissionStore`] for `$store`, and `admission_sql::take_quota_slot` used by
/// job creation.
macro_rules! impl_admission_store {
    ($store:ty, $db:ty, $backend:literal) => {
        pub(crate) mod admission_sql {
            use super::*;
            use async_trait::async_trait;

            use crate::admission::*;
            use crate::{AuditEvent, DbContext, NewJob, Result, StoreError};

            type Conn = <$db as sqlx::Database>::Connection;

            /// Called by job creation right after the job's row is inserted, inside its
            /// transaction: counts unfinished jobs (the new one included) under the lock.
            pub(crate) async fn take_quota_slot(conn: &mut Conn, job: &NewJob) -> Result<()> {
                let q = job.quota;
                if !q.is_limited() {
                    return Ok(());
                }
                if $backend == "postgres" {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(QUOTA_LOCK_KEY).execute(&mut *conn).await.op("quota lock")?;
                }
                const RUNNING: &str = "SELECT COUNT(*) FROM job_instances WHERE status IN (1, 2, 7, 10, 15)";
                if q.system > 0 {
                    let n: i64 = sqlx::query_scalar(RUNNING).fetch_one(&mut *conn).await.op("count running jobs")?;
                    if n > q.system as i64 {
                        return Err(StoreError::QuotaExceeded(QuotaKind::System));
                    }
                }
                if q.scope > 0 {
                    let n: i64 = sqlx::query_scalar(&format!("{RUNNING} AND scope_type = $1 AND scope_id = $2"))
                        .bind(&job.scope_type)
                        .bind(&job.scope_id)
                        .fetch_one(&mut *conn)
                        .await
                        .op("count running jobs")?;
                    if n > q.scope as i64 {
                        return Err(StoreError::QuotaExceeded(QuotaKind::Scope));
                    }
                }
                if q.app > 0 {
                    let n: i64 = sqlx::query_scalar(&format!("{RUNNING} AND app_code = $1"))
                        .bind(&job.app_code)
                        .fetch_one(&mut *conn)
                        .await
                        .op("count running jobs")?;
                    if n > q.app as i64 {
                        return Err(StoreError::QuotaExceeded(QuotaKind::App));
                    }
                }
                Ok(())
            }

            #[async_trait]
            impl AdmissionStore for $store {
                async fn disabled_builtins(&self) -> Result<Vec<String>> {
                    sqlx::query_scalar("SELECT name FROM danger_builtins_disabled ORDER BY name")
                        .fetch_all(&self.pool)
                        .await
                        .op("list disabled builtins")
                }

                async fn set_builtin_disabled(&self, name: &str, disabled: bool, by: &str, now: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin builtin toggle")?;
                    let changed = if disabled {
                        sqlx::query(
                            "INSERT INTO danger_builtins_disabled (name, disabled_by, disabled_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                        )
                        .bind(name)
                        .bind(by)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .op("disable builtin")?
                        .rows_affected()
                    } else {
                        sqlx::query("DELETE FROM danger_builtins_disabled WHERE name = $1")
                            .bind(name)
                            .execute(&mut *tx)
                            .await
                            .op("enable builtin")?
                            .rows_affected()
                    };
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit builtin toggle")?;
                    Ok(changed > 0)
                }
            }
        }
    };
}

pub(crate) use impl_admission_store;
