//! Embedded SQLite backend (`sqlite://path/to/shoal.db`), WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;

pub struct SqliteStore {
    pool: sqlx::SqlitePool,
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
    pub async fn open(url: &str) -> crate::Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|_| crate::StoreError::BadUrl(url.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // No checkpoint inside a commit: SQLite's automatic one copies the WAL into the
            // database in whichever connection commits past 1,000 pages — the ingest writer,
            // stalling every agent behind it. A task of its own does it instead.
            .pragma("wal_autocheckpoint", "0")
            // A page cache that holds a whole ingest batch (32 MiB of log chunks): a smaller
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
        Ok(SqliteStore { pool, _checkpointer: checkpointer })
    }
}

crate::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");
crate::trust::impl_trust_store!(SqliteStore, sqlx::Sqlite);
crate::hosts::impl_host_store!(SqliteStore, sqlx::Sqlite);
crate::users::impl_user_store!(SqliteStore, sqlx::Sqlite);
crate::admission::impl_admission_store!(SqliteStore, sqlx::Sqlite, "sqlite");
crate::idempotency::impl_caller_store!(SqliteStore, sqlx::Sqlite);
crate::library::impl_library_store!(SqliteStore, sqlx::Sqlite);
crate::scale::impl_scale_store!(SqliteStore, sqlx::Sqlite, false, crate::scale::no_listen);
crate::scopes::impl_scope_store!(SqliteStore, sqlx::Sqlite);
