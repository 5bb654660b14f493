//! Crons and their fires on SQLite and PostgreSQL: a due time is claimed once however many
//! claim it at once, a one-shot ends with its fire, a job created for a fire is linked to it
//! in its own transaction, and a claim left without its job is taken over once and creates
//! one job.

use std::sync::Arc;

use shoal_store::*;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    (open(&url).await.unwrap(), dir)
}

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

suite!(
    a_due_time_is_claimed_once,
    a_fire_learns_its_job,
    a_claim_left_without_its_job_is_taken_over_once,
    crons_are_listed_by_their_filters
);

fn audit() -> AuditEvent {
    AuditEvent {
        time: 1,
        app_code: "a".into(),
        username: "u".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        action: "t".into(),
        ..Default::default()
    }
}

fn cron(name: &str, next_fire: Option<i64>) -> CronRow {
    CronRow {
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: name.into(),
        job_plan_id: 1,
        expression: Some("* * * * *".into()),
        time_zone: "UTC".into(),
        variables: "[]".into(),
        enabled: next_fire.is_some(),
        missed_policy: "run_once".into(),
        next_fire,
        creator: "app:a".into(),
        run_as: CronActor { kind: "app".into(), app: "a".into(), name: "app:a".into() },
        create_time: 1_000,
        last_modify_user: "app:a".into(),
        last_modify_time: 1_000,
        ..Default::default()
    }
}

fn claim(cron_id: i64, due_time: i64, next: Option<i64>, claimer: &str) -> FireClaim<'_> {
    FireClaim { cron_id, due_time, next, missed: false, skip: false, claimer, now: due_time + 10 }
}

async fn a_due_time_is_claimed_once(s: Arc<dyn Store>) {
    let id = s.create_cron(&cron("every-minute", Some(60_000)), &audit()).await.unwrap();
    assert_eq!(s.due_crons(59_999).await.unwrap().len(), 0);
    assert_eq!(s.due_crons(60_000).await.unwrap().len(), 1);

    // Eight replicas claim the same due time at once: one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.claim_cron_fire(&claim(id, 60_000, Some(120_000), &format!("r{i}"))).await.unwrap() }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    assert_eq!(won.len(), 1, "{won:?}");
    assert_eq!(s.get_cron(id).await.unwrap().unwrap().next_fire, Some(120_000));
    assert!(s.claim_cron_fire(&claim(id, 60_000, Some(120_000), "late")).await.unwrap().is_none(), "taken already");

    // A due time seen again after a pause and restart is still not fired twice.
    let bob = CronActor { kind: "user".into(), app: "user:bob".into(), name: "bob".into() };
    s.set_cron_enabled(id, Some(60_000), &bob, 2, &audit()).await.unwrap();
    assert_eq!(s.get_cron(id).await.unwrap().unwrap().run_as, bob, "the starter is who its jobs run as");
    assert!(s.claim_cron_fire(&claim(id, 60_000, Some(120_000), "again")).await.unwrap().is_none());
    assert_eq!(s.get_cron(id).await.unwrap().unwrap().next_fire, Some(120_000), "but the cron moves on");

    // A skipped fire is recorded; a refused one keeps its reason.
    let skipped = FireClaim { skip: true, missed: true, ..claim(id, 120_000, Some(180_000), "r0") };
    let f = s.claim_cron_fire(&skipped).await.unwrap().unwrap();
    let refused = s.claim_cron_fire(&claim(id, 180_000, Some(240_000), "r0")).await.unwrap().unwrap();
    s.fail_cron_fire(refused, "9900403: denied").await.unwrap();
    let fires = s.cron_fires(id, 10).await.unwrap();
    let seen: Vec<(i64, &str, bool)> = fires.iter().map(|f| (f.due_time, f.outcome.as_str(), f.missed)).collect();
    assert_eq!(seen, [(180_000, "failed", false), (120_000, "skipped", true), (60_000, "claimed", false)]);
    assert_eq!(fires[0].error.as_deref(), Some("9900403: denied"));
    assert_eq!(fires[1].id, f.fire_id);

    // A one-shot's fire ends it.
    let once =
        s.create_cron(&CronRow { expression: None, execute_time: Some(300), ..cron("once", Some(300_000)) }, &audit()).await.unwrap();
    assert!(s.claim_cron_fire(&claim(once, 300_000, None, "r0")).await.unwrap().is_some());
    let c = s.get_cron(once).await.unwrap().unwrap();
    assert_eq!((c.enabled, c.next_fire), (false, None));
    assert!(s.due_crons(i64::MAX).await.unwrap().iter().all(|c| c.id != once));
}

fn cron_job() -> NewJob {
    NewJob {
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: "from cron".into(),
        operator: "alice".into(),
        app_code: "app".into(),
        task_type: 0,
        launch_mode: 3,
        create_time: 60_010,
        callback_url: None,
        steps: vec![NewStep { name: "confirm".into(), step_type: 3, confirm_message: Some("ok?".into()), ..Default::default() }],
        plan: None,
        audit: audit(),
        quota: Default::default(),
    }
}

async fn a_fire_learns_its_job(s: Arc<dyn Store>) {
    let id = s.create_cron(&cron("c", Some(60_000)), &audit()).await.unwrap();
    let fire = s.claim_cron_fire(&claim(id, 60_000, Some(120_000), "r0")).await.unwrap().unwrap();
    let job = cron_job();
    let (job_id, _) = cron::FIRING.scope(fire, s.create_job(&job)).await.unwrap();
    // A job created outside a fire is no cron's.
    let (other, _) = s.create_job(&job).await.unwrap();
    let f = &s.cron_fires(id, 1).await.unwrap()[0];
    assert_eq!((f.outcome.as_str(), f.job_instance_id), ("started", Some(job_id)));
    let q = JobQuery { scope_type: "biz".into(), scope_id: "1".into(), cron_id: Some(id), length: 10, ..Default::default() };
    let (total, jobs) = s.list_jobs(&q).await.unwrap();
    assert_eq!((total, jobs[0].job.id, jobs[0].job.launch_mode), (1, job_id, 3));
    assert_ne!(job_id, other);
}

async fn a_claim_left_without_its_job_is_taken_over_once(s: Arc<dyn Store>) {
    let id = s.create_cron(&cron("c", Some(60_000)), &audit()).await.unwrap();
    // Claimed at 60_010 by a server that then stopped.
    let first = s.claim_cron_fire(&claim(id, 60_000, Some(120_000), "gone")).await.unwrap().unwrap();
    assert_eq!(first.attempt, 0);
    assert!(s.stale_cron_fires(60_010, 10).await.unwrap().is_empty(), "only claims made before the bound");
    let stale = s.stale_cron_fires(70_000, 10).await.unwrap();
    assert_eq!(stale.iter().map(|f| (f.id, f.attempt)).collect::<Vec<_>>(), [(first.fire_id, 0)]);

    // Eight replicas take it over at once: one does.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, f) = (s.clone(), stale[0].clone());
        tasks.push(tokio::spawn(async move { s.take_over_cron_fire(&f, &format!("r{i}"), 70_000).await.unwrap() }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    assert_eq!(won, [FireLease { fire_id: first.fire_id, attempt: 1 }]);
    let taken = won[0];

    // The first claimer, only slow after all, can neither create the job nor fail the fire.
    let job = cron_job();
    let q = JobQuery { scope_type: "biz".into(), scope_id: "1".into(), length: 10, ..Default::default() };
    let err = cron::FIRING.scope(first, s.create_job(&job)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.list_jobs(&q).await.unwrap().0, 0, "nothing was created");
    s.fail_cron_fire(first, "late").await.unwrap();
    assert_eq!(s.cron_fires(id, 1).await.unwrap()[0].outcome, "claimed");

    // Both run at once under their leases: the current one creates the job, once.
    let (a, b) = tokio::join!(cron::FIRING.scope(taken, s.create_job(&job)), cron::FIRING.scope(taken, s.create_job(&job)));
    let created: Vec<i64> = [a, b].into_iter().filter_map(|r| r.ok().map(|(j, _)| j)).collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let f = &s.cron_fires(id, 1).await.unwrap()[0];
    assert_eq!((f.outcome.as_str(), f.job_instance_id, f.attempt), ("started", Some(created[0]), 1));
    assert!(f.claimed_by.starts_with('r'), "{f:?}");
    assert_eq!(s.list_jobs(&q).await.unwrap().0, 1);
    assert!(s.stale_cron_fires(i64::MAX, 10).await.unwrap().is_empty(), "a fire with its job is not left");
    assert!(s.take_over_cron_fire(&stale[0], "late", 80_000).await.unwrap().is_none());
}

async fn crons_are_listed_by_their_filters(s: Arc<dyn Store>) {
    let a = s.create_cron(&cron("nightly backup", None), &audit()).await.unwrap();
    let b = s.create_cron(&CronRow { creator: "bob".into(), create_time: 5_000, ..cron("hourly_sync", Some(1)) }, &audit()).await.unwrap();
    s.create_cron(&CronRow { scope_id: "2".into(), ..cron("other scope", None) }, &audit()).await.unwrap();
    let q = |f: CronQuery| {
        let s = s.clone();
        async move {
            let (total, rows) = s.list_crons(&CronQuery { scope_type: "biz".into(), scope_id: "1".into(), length: 10, ..f }).await.unwrap();
            (total, rows.iter().map(|c| c.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(q(CronQuery::default()).await, (2, vec![b, a]));
    assert_eq!(q(CronQuery { name: Some("backup".into()), ..Default::default() }).await, (1, vec![a]));
    assert_eq!(q(CronQuery { name: Some("_".into()), ..Default::default() }).await, (1, vec![b]), "LIKE wildcards are literal");
    assert_eq!(q(CronQuery { enabled: Some(true), ..Default::default() }).await, (1, vec![b]));
    assert_eq!(q(CronQuery { creator: Some("bob".into()), ..Default::default() }).await, (1, vec![b]));
    assert_eq!(q(CronQuery { create_time: Some((4_000, 6_000)), ..Default::default() }).await, (1, vec![b]));
    assert_eq!(q(CronQuery { start: 1, length: 1, ..Default::default() }).await, (2, vec![a]));
    assert!(s.delete_cron(a, &audit()).await.unwrap());
    assert!(!s.delete_cron(a, &audit()).await.unwrap());
    assert!(s.get_cron(a).await.unwrap().is_none());
}
