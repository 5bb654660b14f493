//! Shoal storage: one [`Store`] trait, two backends chosen by URL scheme.
//!
//! # Layout
//! - [`cron`]: cron jobs and their fires, each due time claimed once across replicas.
//! - [`hosts`]: host identity — enrolment, bound facts, admin moves, enrolment tokens.
//! - [`model`]: the rows the rest of Shoal reads and writes.
//! - [`finalize`]: steps and jobs ended in the commit of their last host result.
//! - `sql`: the SQL shared by both backends, written once as a macro instantiated per backend
//!   (both accept `$n` placeholders and `INSERT … RETURNING`).
//! - [`sqlite`]: embedded default (`sqlite://path`), WAL; migrations in `migrations/sqlite`.
//! - [`postgres`]: scale-out backend (`postgres://…`); migrations in `migrations/postgres`.
//!
//! Host-task updates and log chunks are written in batches ([`Store::apply`]): one
//! transaction per batch, not per message.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cron;
pub mod files;
pub mod finalize;
pub mod hosts;
pub mod idempotency;
pub mod library;
pub mod model;
pub mod postgres;
pub mod scale;
pub mod scopes;
mod sql;
pub mod sqlite;
#[doc(hidden)]
pub mod testing;
pub mod trust;
pub mod users;

use std::sync::Arc;

use async_trait::async_trait;
use shoal_proto::agent::{HostFacts, TaskKey};

pub use admission::{AdmissionStore, JobQuota, QuotaKind};
pub use cron::{CronActor, CronFireRow, CronQuery, CronRow, CronStore, FireClaim, FireLease};
pub use files::{CredentialRow, FileSourceRow, FileStore, UploadRow};
pub use hosts::HostStore;
pub use idempotency::{CallerStore, CheckRow, CheckUpdate, IdemRow, IdemState, Reservation};
pub use library::LibraryStore;
pub use model::*;
pub use scale::{RoutedMessage, ScaleStore};
pub use scopes::{BizSetRow, ScopeStore, TopoNameRow};
pub use trust::TrustStore;
pub use users::UserStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error("database error during {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite:// or postgres://")]
    BadUrl(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A running-job limit would be passed (nothing was created).
    #[error("running-job quota exceeded: {0:?}")]
    QuotaExceeded(admission::QuotaKind),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Why the database cannot serve anyone right now (a full disk, a lost or refused
    /// connection, an exhausted pool), as opposed to a fault of this one request.
    pub fn unavailable(&self) -> Option<&'static str> {
        let StoreError::Db { source, .. } = self else { return None };
        match source {
            sqlx::Error::Io(_) => Some("the database connection failed"),
            sqlx::Error::PoolTimedOut => Some("no database connection became free in time"),
            sqlx::Error::PoolClosed => Some("the database is shutting down"),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // SQLite: full, I/O error, can't open, read-only, busy/locked.
                Some("13") => Some("the database or its disk is full"),
                Some("10") | Some("14") | Some("8") => Some("the database file cannot be written"),
                Some("5") | Some("6") => Some("the database is locked"),
                // PostgreSQL: insufficient resources, operator intervention, connection exception.
                Some(c) if c.starts_with("53") => Some("the database server is out of resources (disk or memory)"),
                Some(c) if c.starts_with("57P") || c.starts_with("08") => Some("the database server is unavailable"),
                _ => None,
            },
            _ => None,
        }
    }
}

pub(crate) trait DbContext<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, sqlx::Error> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|source| match source {
            sqlx::Error::RowNotFound => StoreError::NotFound(op),
            source => StoreError::Db { op, source },
        })
    }
}

#[async_trait]
pub trait Store:
    LibraryStore
    + TrustStore
    + CallerStore
    + FileStore
    + ScaleStore
    + ScopeStore
    + UserStore
    + HostStore
    + AdmissionStore
    + CronStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> &'static str;

    // --- apps ---
    async fn put_app(&self, app: &AppRow) -> Result<()>;
    async fn get_app(&self, code: &str) -> Result<Option<AppRow>>;
    async fn count_apps(&self) -> Result<i64>;

    // --- hosts ---
    /// Register or refresh the host an agent runs on; the id is stable per agent id.
    async fn upsert_host(&self, agent_id: &str, facts: &HostFacts, version: &str, now: i64) -> Result<i64>;
    async fn set_host_alive(&self, host_id: i64, alive: bool, now: i64) -> Result<()>;
    async fn list_hosts(&self, bk_biz_id: Option<i64>) -> Result<Vec<HostRow>>;
    async fn hosts_by_ids(&self, ids: &[i64]) -> Result<Vec<HostRow>>;

    // --- accounts ---
    async fn create_account(&self, a: &AccountRow) -> Result<AccountRow>;
    async fn list_accounts(&self, scope_type: &str, scope_id: &str) -> Result<Vec<AccountRow>>;
    async fn get_account(&self, id: i64) -> Result<Option<AccountRow>>;
    async fn get_account_by_alias(&self, scope_type: &str, scope_id: &str, alias: &str) -> Result<Option<AccountRow>>;
    async fn delete_account(&self, id: i64) -> Result<()>;

    // --- jobs ---
    /// Job instance, its steps, one host task per target of each script step and the audit
    /// event, in one transaction. Returns the job id and the step ids in order.
    async fn create_job(&self, job: &NewJob) -> Result<(i64, Vec<i64>)>;
    async fn get_job(&self, id: i64) -> Result<Option<JobRow>>;
    async fn list_jobs(&self, q: &JobQuery) -> Result<(i64, Vec<JobListing>)>;
    async fn get_steps(&self, job_id: i64) -> Result<Vec<StepRow>>;
    async fn get_step(&self, step_id: i64) -> Result<Option<StepRow>>;
    async fn host_tasks(&self, step_id: i64, execute_count: i32) -> Result<Vec<HostTaskRow>>;
    /// Jobs neither finished nor still blank: what the engine resumes after a restart.
    async fn active_jobs(&self) -> Result<Vec<JobRow>>;
    /// Non-final host tasks of running steps on one host: what an agent should be running.
    async fn pending_tasks_for_host(&self, host_id: i64) -> Result<Vec<TaskKey>>;
    async fn update_job(&self, u: &JobUpdate) -> Result<()>;
    async fn update_step(&self, u: &StepUpdate) -> Result<()>;
    /// Apply a batch of host-task changes and log chunks in one transaction. Final results
    /// only replace non-final ones, and a chunk already stored is ignored, so a resent
    /// message is never applied twice. A step (not rolling in batches) whose last task
    /// became final ends with it, and its job too when that step was its end (see
    /// [`finalize`]): finalization never waits behind other work. At most `log_cap` bytes of
    /// output (plus room for the agent's drop marker,
    /// [`shoal_proto::agent::OUTPUT_MARKER_ROOM`]) are kept per host task, whatever its agent
    /// sends. A final status's variables ([`TaskChange::Finished`]) are stored in the same
    /// transaction, when that status is. Returns what became final.
    async fn apply(&self, batch: &[TaskChange], log_cap: u64) -> Result<Applied>;
    /// The global variables the scripts of a job's steps changed: per step and name, the
    /// value set by the host with the lowest `bk_host_id` (ordered by step, then name).
    async fn step_var_outputs(&self, job_id: i64) -> Result<Vec<StepVarOutput>>;
    /// Whether a host task of this step run is still waiting or running.
    async fn any_unfinished(&self, step_id: i64, execute_count: i32) -> Result<bool>;
    /// Output of host tasks of one step, concatenated in order.
    async fn read_logs(&self, step_id: i64, execute_count: i32, host_ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>>;

    // --- callbacks outbox ---
    /// Claims up to `limit` callbacks not yet sent for `claimer` (a replica): unclaimed ones,
    /// and ones whose claim is older than `stale_before` (their sender died). Two replicas
    /// claiming at once never get the same callback.
    async fn claim_callbacks(&self, claimer: &str, now: i64, stale_before: i64, limit: i64) -> Result<Vec<CallbackRow>>;
    async fn finish_callback(&self, id: i64, attempts: i64) -> Result<()>;
    /// Callbacks not yet delivered (claimed or not).
    async fn pending_callbacks(&self) -> Result<i64>;
    /// Jobs started and not ended: running, waiting for a person or a batch, stopping.
    async fn active_job_count(&self) -> Result<i64>;

    // --- audit ---
    async fn audit(&self, e: &AuditEvent) -> Result<()>;
}

/// Open the store named by `url` (`sqlite://path`, created if missing, or `postgres://…`)
/// with a throwaway audit key: for tools and tests. What it appends to the audit chain
/// verifies only through this handle; a server uses [`open_keyed`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, trust::AuditKey::ephemeral()).await
}

/// Open the store with the server's audit key, and seal the events of an older version's
/// unkeyed chain ([`TrustStore::seal_legacy_audit`]).
pub async fn open_keyed(url: &str, audit_key: trust::AuditKey) -> Result<Arc<dyn Store>> {
    let store = open_with(url, audit_key).await?;
    store.seal_legacy_audit(shoal_core::time::now_ms()).await?;
    Ok(store)
}

async fn open_with(url: &str, audit_key: trust::AuditKey) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url, audit_key).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::open(url, audit_key).await?))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}
