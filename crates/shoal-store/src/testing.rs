//! Test support shared by the crates' test suites: a fresh PostgreSQL database per test,
//! dropped when the test lets go of it.
//!
//! Conventions that keep test reports honest:
//! - A test that needs PostgreSQL has `postgres` in its name. `scripts/test` filters those out
//!   (the runner reports them as skipped, with the reason printed) when PostgreSQL is not
//!   reachable; [`fresh_postgres`] refuses a test whose name lacks it, with or without
//!   PostgreSQL, so a misnamed test fails instead of passing without having run.
//! - Each database is named after this machine and the process that made it
//!   (`shoal_<prefix>_h<host>_p<pid>_<time>_<n>`): the [`TestDb`] handle drops it, and a
//!   process that died before it could is cleaned up after by a later run on the same
//!   machine, never by one on another machine sharing the server.

use std::time::Duration;

/// The PostgreSQL server tests use: `SHOAL_TEST_DATABASE_URL`, by default the local one.
pub fn base_url() -> String {
    std::env::var("SHOAL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL tests must run (`SHOAL_REQUIRE_POSTGRES=1`, or `CI=true`).
pub fn postgres_required() -> bool {
    std::env::var("SHOAL_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test database, dropped (with whatever connections still use it) when this handle is.
/// It reads as its URL (`&db` where a `&str` is wanted; `db.to_string()`).
#[derive(Debug)]
pub struct TestDb {
    url: String,
    name: String,
}

impl TestDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TestDb {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs where no `.await` is possible, maybe inside the test's runtime: a thread
        // of its own with a runtime of its own does the work, and is waited for.
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let admin = tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&base_url())).await.ok()?.ok()?;
                let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
                admin.close().await;
                dropped.ok()
            })
        })
        .join();
        if !matches!(done, Ok(Some(_))) {
            eprintln!("test database {} was not dropped; a later test run on this machine drops it", self.name);
        }
    }
}

/// Refuses a test that reaches PostgreSQL without `postgres` in its name (see the module
/// notes). The test's name is its thread's (the test harness names each test's thread).
fn check_test_name() {
    if let Some(name) = std::thread::current().name() {
        if let Err(e) = named_for_postgres(name) {
            panic!("{e}");
        }
    }
}

/// `Err` with why, for a test named `name` that would use PostgreSQL. Threads that are no
/// test's (the main thread, a runtime's workers, …) are let through.
fn named_for_postgres(name: &str) -> Result<(), String> {
    let a_test = name != "main" && !name.starts_with("tokio-");
    if !a_test || name.contains("postgres") {
        return Ok(());
    }
    Err(format!(
        "test {name:?} uses PostgreSQL but its name lacks \"postgres\": scripts/test could not skip it when PostgreSQL \
         is absent, and it would pass without having run. Put \"postgres\" in its name."
    ))
}

/// Create an empty database for one test and return its handle; `None` (with a notice) when
/// PostgreSQL is unreachable and not required. When it is required and unreachable, panic:
/// the tests fail loudly rather than skip.
pub async fn fresh_postgres(prefix: &str) -> Option<TestDb> {
    check_test_name();
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
    Some(TestDb { url: format!("{head}/{name}"), name })
}

/// This machine, as a database name can carry it: FNV-1a of its host name, in hex.
fn host_tag() -> String {
    let host = hostname();
    let mut h: u32 = 0x811c_9dc5;
    for b in host.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("h{h:08x}")
}

/// The host name (`/proc/sys/kernel/hostname`, else `HOSTNAME`, else the boot id).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Unique enough for test database names: this machine, process id, time and a counter, as
/// `h<host>_p<pid>_<time>_<n>` (host and process let later runs find databases nobody uses).
fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}_p{}_{:x}_{:x}", host_tag(), std::process::id(), t, N.fetch_add(1, Ordering::Relaxed))
}

/// The machine tag and process that made a test database, from its name (see [`nonce`]).
fn maker(name: &str) -> Option<(&str, u32)> {
    let mut parts = name.rsplit('_');
    let (_n, _t, pid, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let pid = pid.strip_prefix('p')?.parse().ok()?;
    (host.len() == 9 && host.starts_with('h')).then_some((host, pid))
}

/// Whether `name` is a test database this machine made in a process that has ended.
fn is_orphan(name: &str, here: &str, alive: impl Fn(u32) -> bool) -> bool {
    maker(name).is_some_and(|(host, pid)| host == here && !alive(pid))
}

/// Drops test databases made on this machine by processes that have ended (a test killed
/// before its handle could drop its database). Databases of other machines using the same
/// PostgreSQL, and of names in another form, are never touched.
async fn drop_orphans(admin: &sqlx::PgPool) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'shoal\\_%'").fetch_all(admin).await.unwrap_or_default();
    let here = host_tag();
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    for name in names.iter().filter(|n| is_orphan(n, &here, alive)) {
        // Another test process may be dropping it at the same moment: errors are fine.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maker_is_read_back_from_the_name() {
        let name = format!("shoal_full_disk_{}", nonce());
        assert!(name.len() <= 63, "PostgreSQL's limit: {name}");
        assert_eq!(maker(&name), Some((host_tag().as_str(), std::process::id())));
        assert_eq!(maker("shoal_old_1a2b3c"), None);
        assert_eq!(maker("shoal_t_p123_1a2b_0"), None, "the form without a machine");
    }

    #[test]
    fn only_this_machines_dead_processes_leave_orphans() {
        let here = host_tag();
        let dead = |_: u32| false;
        let mine = format!("shoal_t_{here}_p4000000_1a2b_0");
        assert!(is_orphan(&mine, &here, dead));
        assert!(!is_orphan(&mine, &here, |_| true), "its maker still runs");
        let elsewhere = "shoal_t_h0badf00d_p4000000_1a2b_0";
        assert!(!is_orphan(elsewhere, &here, dead), "another machine's database");
        assert!(!is_orphan("shoal_t_p4000000_1a2b_0", &here, dead), "an old name without a machine");
    }

    #[test]
    fn tests_that_use_postgres_say_so_in_their_name() {
        assert!(named_for_postgres("replicas_share_one_swarm").is_err());
        assert!(named_for_postgres("cron::two_replicas_fire_each_due_time_once").unwrap_err().contains("\"postgres\""));
        assert!(named_for_postgres("postgres_replicas_share_one_swarm").is_ok());
        assert!(named_for_postgres("jobs_tasks_and_logs::postgres").is_ok());
        assert!(named_for_postgres("main").is_ok() && named_for_postgres("tokio-runtime-worker").is_ok());
        // The guard runs on the test's own thread.
        let refused = std::thread::Builder::new().name("misnamed_test".into()).spawn(check_test_name).unwrap().join();
        assert!(refused.is_err());
        let allowed = std::thread::Builder::new().name("a_postgres_test".into()).spawn(check_test_name).unwrap().join();
        assert!(allowed.is_ok());
    }
}
