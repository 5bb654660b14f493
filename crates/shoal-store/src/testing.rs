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
    let name = format!("shoal_{prefix}_{}", nonce());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create test database");
    admin.close().await;
    let (head, _) = base.rsplit_once('/').expect("database URL has a path");
    Some(format!("{head}/{name}"))
}

/// Unique enough for test database names: process id, time and a counter.
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}{:x}", std::process::id(), t, N.fetch_add(1, Ordering::Relaxed))
}
