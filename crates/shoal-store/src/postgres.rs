//! PostgreSQL backend (`postgres://…`): the scale-out store several servers share.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

pub struct PgStore {
    pool: sqlx::PgPool,
    /// MACs the audit chain (see `crate::trust`); replicas share it.
    audit_key: crate::trust::AuditKey,
}

impl PgStore {
    pub async fn open(url: &str, audit_key: crate::trust::AuditKey) -> crate::Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| crate::StoreError::Db { op: "connect postgres", source })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool, audit_key })
    }
}

crate::finalize::impl_finalize!(sqlx::Postgres);
crate::sql::impl_sql_store!(PgStore, sqlx::Postgres, "postgres");
crate::trust::impl_trust_store!(PgStore, sqlx::Postgres);
crate::hosts::impl_host_store!(PgStore, sqlx::Postgres);
crate::users::impl_user_store!(PgStore, sqlx::Postgres);
crate::admission::impl_admission_store!(PgStore, sqlx::Postgres, "postgres");
crate::idempotency::impl_caller_store!(PgStore, sqlx::Postgres);
crate::files::impl_file_store!(PgStore, sqlx::Postgres);
crate::library::impl_library_store!(PgStore, sqlx::Postgres);
crate::scale::impl_scale_store!(PgStore, sqlx::Postgres, true, crate::scale::pg_listen);
crate::scopes::impl_scope_store!(PgStore, sqlx::Postgres);
crate::cron::impl_cron_store!(PgStore, sqlx::Postgres);
