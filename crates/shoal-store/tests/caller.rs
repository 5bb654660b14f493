//! Caller-side storage (idempotency keys, check records) on SQLite and PostgreSQL.

use std::sync::Arc;

use shoal_store::idempotency::check_status;
use shoal_store::*;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    (open(&url).await.unwrap(), dir)
}

/// A fresh PostgreSQL database, or `None` when unreachable and not required
/// (`SHOAL_REQUIRE_POSTGRES=1` / `CI=true` turn that into a failure).
async fn postgres() -> Option<(Arc<dyn Store>, shoal_store::testing::TestDb)> {
    let db = shoal_store::testing::fresh_postgres("c").await?;
    Some((open(&db).await.unwrap(), db))
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let (s, _dir) = super::sqlite().await;
                super::$name(s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some((s, _db)) = super::postgres().await {
                    super::$name(s).await;
                }
            }
        }
    )*};
}

suite!(idempotency_keys_reserve_then_answer, idempotency_keys_reserve_once_under_contention, check_records_lock_their_key);

async fn idempotency_keys_reserve_then_answer(s: Arc<dyn Store>) {
    assert_eq!(s.reserve_idempotency("app", "k1", "h1", "me", 100, 1_000).await.unwrap(), Reservation::Reserved);
    // Another app may use the same key.
    assert_eq!(s.reserve_idempotency("other", "k1", "h9", "me", 100, 1_000).await.unwrap(), Reservation::Reserved);
    let Reservation::Existing(row) = s.reserve_idempotency("app", "k1", "h2", "me", 101, 1_000).await.unwrap() else {
        panic!("a reserved key was reserved twice");
    };
    assert_eq!((row.state, row.request_hash.as_str(), row.answer.as_str()), (IdemState::Pending, "h1", ""));

    s.complete_idempotency("app", "k1", 200, "{\"ok\":1}", 5_000).await.unwrap();
    let row = s.get_idempotency("app", "k1").await.unwrap().unwrap();
    assert_eq!((row.state, row.http_status, row.answer.as_str(), row.expires_at), (IdemState::Done, 200, "{\"ok\":1}", 5_000));
    // A done key is never released, and an answer is written once.
    s.release_idempotency("app", "k1").await.unwrap();
    s.complete_idempotency("app", "k1", 401, "{\"err\":1}", 9_000).await.unwrap();
    let row = s.get_idempotency("app", "k1").await.unwrap().unwrap();
    assert_eq!((row.http_status, row.answer.as_str()), (200, "{\"ok\":1}"));

    // A pending key released can be reserved again.
    s.release_idempotency("other", "k1").await.unwrap();
    assert_eq!(s.get_idempotency("other", "k1").await.unwrap(), None);
    assert_eq!(s.reserve_idempotency("other", "k1", "h9", "me", 200, 10_000).await.unwrap(), Reservation::Reserved);

    // Past its expiry a key is free again; purge drops what expired.
    assert_eq!(s.reserve_idempotency("app", "k1", "h3", "me", 6_000, 7_000).await.unwrap(), Reservation::Reserved);
    assert_eq!(s.purge_idempotency(7_500).await.unwrap(), 1, "only app/k1 (expires 7000) is past 7500");
    assert_eq!(s.get_idempotency("app", "k1").await.unwrap(), None);
}

async fn idempotency_keys_reserve_once_under_contention(s: Arc<dyn Store>) {
    let mut tasks = vec![];
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.reserve_idempotency("app", "race", "h", "me", 10, 1_000).await.unwrap() }));
    }
    let mut reserved = 0;
    for t in tasks {
        if t.await.unwrap() == Reservation::Reserved {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 1);
}

fn record(id: &str, run: &str, now: i64, ttl: i64) -> CheckRow {
    CheckRow {
        id: id.into(),
        check_name: "shoal-agent".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        hosts: "[\"0:10.0.0.1:1\"]".into(),
        run_id: run.into(),
        status: check_status::WAIT.into(),
        app_code: "app".into(),
        username: "alice".into(),
        infos: "[]".into(),
        created_at: now,
        updated_at: now,
        expires_at: now + ttl,
        ..Default::default()
    }
}

async fn check_records_lock_their_key(s: Arc<dyn Store>) {
    assert_eq!(s.claim_check(&record("c1", "run-a", 100, 1_000), 100).await.unwrap(), None);
    // Running: a second claim is refused and sees the holder.
    let held = s.claim_check(&record("c1", "run-b", 200, 1_000), 200).await.unwrap().expect("c1 is held");
    assert_eq!(held.run_id, "run-a");

    let upd = |run: &str, status: Option<&str>, now: i64| CheckUpdate {
        id: "c1".into(),
        run_id: run.into(),
        status: status.map(String::from),
        job_instance_id: Some(7),
        step_instance_id: Some(8),
        infos: Some("[\"[info] started\"]".into()),
        report: None,
        updated_at: now,
        expires_at: now + 1_000,
    };
    assert!(!s.update_check(&upd("run-b", Some(check_status::STARTED), 300)).await.unwrap(), "only the holder updates");
    assert!(s.update_check(&upd("run-a", Some(check_status::STARTED), 300)).await.unwrap());
    let r = s.get_check("c1").await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.job_instance_id, r.step_instance_id, r.expires_at), ("started", 7, 8, 1_300));
    assert!(s.claim_check(&record("c1", "run-b", 400, 1_000), 400).await.unwrap().is_some());

    // Finished: the next run takes the record over, fresh.
    let mut fin = upd("run-a", Some(check_status::FINISH), 500);
    fin.report = Some("{\"ok\":true}".into());
    assert!(s.update_check(&fin).await.unwrap());
    assert_eq!(s.get_check("c1").await.unwrap().unwrap().report.as_deref(), Some("{\"ok\":true}"));
    assert_eq!(s.claim_check(&record("c1", "run-b", 600, 1_000), 600).await.unwrap(), None);
    let r = s.get_check("c1").await.unwrap().unwrap();
    assert_eq!((r.run_id.as_str(), r.status.as_str(), r.job_instance_id, r.report), ("run-b", "wait", 0, None));

    // A run that died: once its record expires, another run may take it.
    assert!(s.claim_check(&record("c1", "run-c", 1_500, 1_000), 1_500).await.unwrap().is_some());
    assert_eq!(s.claim_check(&record("c1", "run-c", 1_601, 1_000), 1_601).await.unwrap(), None);

    assert_eq!(s.claim_check(&record("c2", "run-x", 1_700, 1_000), 1_700).await.unwrap(), None);
    let ids: Vec<String> = s.list_checks("biz", "1", 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec!["c2".to_string(), "c1".to_string()]);
    assert!(s.list_checks("biz", "2", 10).await.unwrap().is_empty());
    assert_eq!(s.get_check("nope").await.unwrap(), None);
}
