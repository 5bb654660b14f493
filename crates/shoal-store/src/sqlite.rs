//! Embedded SQLite backend (`sqlite://path/to/shoal.db`), WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> crate::Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|_| crate::StoreError::BadUrl(url.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|source| crate::StoreError::Db { op: "open sqlite", source })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

crate::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");
crate::trust::impl_trust_store!(SqliteStore, sqlx::Sqlite);
crate::idempotency::impl_caller_store!(SqliteStore, sqlx::Sqlite);
crate::library::impl_library_store!(SqliteStore, sqlx::Sqlite);
crate::scale::impl_scale_store!(SqliteStore, sqlx::Sqlite, false, crate::scale::no_listen);
