//! Embedded SQLite backend (`sqlite://path/to/shoal.db`), WAL mode. The database, its WAL
//! and shared-memory files are owner-only (0600): they hold every job's output and the
//! secret hashes.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;

pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// MACs the audit chain (see `crate::trust`).
    audit_key: crate::trust::AuditKey,
    /// The background checkpointer; stopped with the store.
    _checkpointer: Checkpointer,
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Aborts the checkpoint task when the store is dropped.
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SqliteStore {
    pub async fn open(url: &str, audit_key: crate::trust::AuditKey) -> crate::Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url).map_err(|_| crate::StoreError::BadUrl(url.to_string()))?;
        let file = opts.get_filename().to_path_buf();
        let in_memory = file.as_os_str().is_empty() || file.to_str().is_some_and(|f| f.starts_with(':'));
        if !in_memory {
            create_private(&file)?;
        }
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // No checkpoint inside a commit: SQLite's automatic one copies the WAL into the
            // database in whichever connection commits past 1,000 pages — the ingest writer,
            // stalling every agent behind it. A task of its own does it instead.
            .pragma("wal_autocheckpoint", "0")
            // A page cache that holds a whole ingest batch (4 MiB of log chunks): a smaller
            // one spills dirty pages to the WAL one frame at a time in mid-transaction.
            .pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A connection whose COMMIT failed (a full disk) may still be inside a transaction,
            // holding the write lock, with sqlx counting it as open: a later "transaction" on it
            // would be a savepoint that commits nothing. Such a connection is closed (which rolls
            // back) instead of going back to the pool.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::TransactionManager;
                    // Let a queued rollback of the failed transaction run first.
                    conn.ping().await?;
                    let depth = <sqlx::Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth(conn);
                    if depth > 0 {
                        tracing::warn!(depth, "closing a store connection left inside a transaction");
                    }
                    Ok(depth == 0)
                })
            })
            .connect_with(opts.clone())
            .await
            .map_err(|source| crate::StoreError::Db { op: "open sqlite", source })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        if !in_memory {
            // SQLite gives the -wal and -shm files the database's mode, but they may predate
            // this version (or a looser umask): tighten all three.
            for suffix in ["", "-wal", "-shm"] {
                let mut name = file.clone().into_os_string();
                name.push(suffix);
                make_private(Path::new(&name))?;
            }
        }
        let mut conn = SqliteConnection::connect_with(&opts).await.map_err(|source| crate::StoreError::Db { op: "open sqlite", source })?;
        let checkpointer = Checkpointer(tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // PASSIVE: copies what no reader still needs, never waits for or blocks writers.
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                    tracing::warn!(error = %e, "sqlite checkpoint failed");
                }
            }
        }));
        Ok(SqliteStore { pool, audit_key, _checkpointer: checkpointer })
    }
}

fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> crate::StoreError {
    crate::StoreError::Io { op, path: path.to_path_buf(), source: e }
}

/// Create the database file owner-only before SQLite does (it would use 0644 & ~umask).
fn create_private(path: &Path) -> crate::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A missing directory is reported by SQLite itself, as before.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("create database file", path, e)),
    }
}

/// Make `path` owner-only (0600) if it exists and is wider; logs when it changed a mode.
pub fn make_private(path: &Path) -> crate::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("stat database file", path, e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| io_error("chmod database file", path, e))?;
        tracing::warn!(path = %path.display(), old_mode = format!("{mode:o}"), "tightened a database file to 0600");
    }
    Ok(())
}

crate::finalize::impl_finalize!(sqlx::Sqlite);
crate::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");
crate::trust::impl_trust_store!(SqliteStore, sqlx::Sqlite);
crate::hosts::impl_host_store!(SqliteStore, sqlx::Sqlite);
crate::users::impl_user_store!(SqliteStore, sqlx::Sqlite);
crate::admission::impl_admission_store!(SqliteStore, sqlx::Sqlite, "sqlite");
crate::idempotency::impl_caller_store!(SqliteStore, sqlx::Sqlite);
crate::files::impl_file_store!(SqliteStore, sqlx::Sqlite);
crate::library::impl_library_store!(SqliteStore, sqlx::Sqlite);
crate::scale::impl_scale_store!(SqliteStore, sqlx::Sqlite, false, crate::scale::no_listen);
crate::scopes::impl_scope_store!(SqliteStore, sqlx::Sqlite);
crate::cron::impl_cron_store!(SqliteStore, sqlx::Sqlite);
