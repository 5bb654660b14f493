//! Test support shared by the crates' test suites: a fresh PostgreSQL database per test.

use std::time::Duration;

/// The PostgreSQL server tests use: `SHOAL_TEST_DATABASE_URL`, by default the local one.
pub fn base_url() -> String {
    std::env::var("SHOAL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL tests must run (`SHOAL_REQUIRE_POSTGRES=1`, or `CI=true`).
pub fn postgres_required() -> bool {
    std::env::var("SHOAL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Create an empty database for one test and return its URL; `None` (with a notice) when
/// PostgreSQL is unreachable and not required. When it is required and unreachable, panic:
/// the tests fail loudly rather than skip.
pub async fn fresh_postgres(prefix: &str) -> Option<String> {
    let base = base_url();
    let admin = match tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&base)).await {
        Ok(Ok(p)) => p,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".into(),
                Ok(Ok(_)) => unreachable!(),
            };
            if postgres_required() {
                panic!("PostgreSQL tests are required but {base} is unreachable: {why}");
            }
            eprintln!("SKIPPING PostgreSQL test: {base} unreachable ({why}); set SHOAL_REQUIRE_POSTGRES=1 to fail instead");
            return None;
        }
    };
    drop_orphans(&admin).await;
    let name = format!("shoal_{prefix}_{}", nonce());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create test database");
    admin.close().await;
    let (head, _) = base.rsplit_once('/').expect("database URL has a path");
    Some(format!("{head}/{name}"))
}

/// Unique enough for test database names: process id, time and a counter, as
/// `p<pid>_<time>_<n>` (the process id lets later runs find databases nobody uses).
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("p{}_{:x}_{:x}", std::process::id(), t, N.fetch_add(1, Ordering::Relaxed))
}

/// The process that made a test database, from its name (see [`nonce`]).
fn maker_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplit('_');
    let (_n, _t, pid) = (parts.next()?, parts.next()?, parts.next()?);
    pid.strip_prefix('p')?.parse().ok()
}

/// Drops test databases whose making process has ended: each test process removes what
/// earlier runs left behind (a test cannot drop its own database while its server still
/// holds connections to it).
async fn drop_orphans(admin: &sqlx::PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'shoal\\_%'").fetch_all(admin).await.unwrap_or_default();
    for name in names {
        let gone = maker_pid(&name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            // Another test process may be dropping it at the same moment: errors are fine.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_maker_is_read_back_from_the_name() {
        let name = format!("shoal_full_disk_{}", super::nonce());
        assert_eq!(super::maker_pid(&name), Some(std::process::id()));
        assert_eq!(super::maker_pid("shoal_old_1a2b3c"), None);
    }
}
