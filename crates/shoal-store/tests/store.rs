//! One store test suite, run against SQLite and PostgreSQL.

use std::sync::Arc;

use shoal_proto::agent::{HostFacts, TaskKey};
use shoal_store::*;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    (open(&url).await.unwrap(), dir)
}

/// A fresh PostgreSQL database (see `shoal_store::testing`).
async fn postgres() -> Option<(Arc<dyn Store>, shoal_store::testing::TestDb)> {
    let db = shoal_store::testing::fresh_postgres("s").await?;
    Some((open(&db).await.unwrap(), db))
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (s, _dir) = super::sqlite().await;
                super::$name(s).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some((s, _db)) = super::postgres().await {
                    super::$name(s).await;
                }
            }
        }
    )*};
}

suite!(
    hosts_keep_their_id,
    accounts_are_unique_per_scope,
    jobs_tasks_and_logs,
    apply_is_idempotent,
    script_variables_are_kept_with_the_exit,
    the_last_result_ends_step_and_job,
    job_queries,
    callbacks_outbox,
    groups_and_apps,
    quota_is_taken_with_the_creation,
    builtin_toggles_are_stored_and_audited
);

fn facts(ip: &str) -> HostFacts {
    HostFacts { bk_biz_id: 1, bk_cloud_id: 0, ip: ip.into(), ..Default::default() }
}

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

fn new_job(targets: &[(i64, &str)], name: &str, t: i64) -> NewJob {
    NewJob {
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: name.into(),
        operator: "alice".into(),
        app_code: "app".into(),
        task_type: 1,
        launch_mode: 2,
        create_time: t,
        callback_url: None,
        steps: vec![NewStep {
            name: name.into(),
            step_type: 1,
            language: 1,
            script: b"echo hi".to_vec(),
            args: vec!["a b".into(), "c".into()],
            sensitive: false,
            timeout_secs: 60,
            account_id: 1,
            account_user: "root".into(),
            targets: targets.iter().map(|(id, ip)| TargetHost { bk_host_id: *id, ip: ip.to_string(), bk_cloud_id: 0 }).collect(),
            ..Default::default()
        }],
        plan: None,
        audit: audit(),
        quota: Default::default(),
    }
}

async fn hosts_keep_their_id(s: Arc<dyn Store>) {
    let a = s.upsert_host("agent-a", &facts("10.0.0.1"), "1", 10).await.unwrap();
    let b = s.upsert_host("agent-b", &facts("10.0.0.2"), "1", 10).await.unwrap();
    assert_ne!(a, b);
    let mut moved = facts("10.0.0.9");
    moved.labels.insert("env".into(), "prod".into());
    assert_eq!(s.upsert_host("agent-a", &moved, "2", 20).await.unwrap(), a);
    let h = &s.hosts_by_ids(&[a]).await.unwrap()[0];
    assert_eq!((h.ip.as_str(), h.agent_version.as_str(), h.labels.get("env").map(String::as_str)), ("10.0.0.9", "2", Some("prod")));
    s.set_host_alive(a, false, 30).await.unwrap();
    assert!(!s.hosts_by_ids(&[a]).await.unwrap()[0].alive);
    assert_eq!(s.list_hosts(Some(1)).await.unwrap().len(), 2);
    assert_eq!(s.list_hosts(Some(2)).await.unwrap().len(), 0);
    assert_eq!(s.hosts_by_ids(&[a, b, 999]).await.unwrap().len(), 2);
}

async fn accounts_are_unique_per_scope(s: Arc<dyn Store>) {
    let row = AccountRow {
        id: 0,
        scope_type: "biz".into(),
        scope_id: "1".into(),
        account: "root".into(),
        alias: "root".into(),
        category: 1,
        account_type: 1,
        description: None,
        creator: "u".into(),
        create_time: 1,
        last_modify_user: "u".into(),
        last_modify_time: 1,
    };
    let a = s.create_account(&row).await.unwrap();
    assert!(a.id > 0);
    assert!(matches!(s.create_account(&row).await, Err(StoreError::Conflict(_))));
    let other = AccountRow { scope_id: "2".into(), ..row.clone() };
    s.create_account(&other).await.unwrap();
    assert_eq!(s.get_account_by_alias("biz", "1", "root").await.unwrap().unwrap().id, a.id);
    s.delete_account(a.id).await.unwrap();
    assert!(s.get_account(a.id).await.unwrap().is_none());
}

async fn jobs_tasks_and_logs(s: Arc<dyn Store>) {
    let (job, step) = s.create_job(&new_job(&[(1, "10.0.0.1"), (2, "10.0.0.2")], "j", 100)).await.map(|(j, st)| (j, st[0])).unwrap();
    let j = s.get_job(job).await.unwrap().unwrap();
    assert_eq!((j.status, j.operator.as_str()), (1, "alice"));
    let steps = s.get_steps(job).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].args, vec!["a b", "c"]);
    assert_eq!(steps[0].script, b"echo hi");
    let tasks = s.host_tasks(step, 0).await.unwrap();
    assert_eq!(tasks.iter().map(|t| (t.bk_host_id, t.status)).collect::<Vec<_>>(), vec![(1, 5), (2, 5)]);
    // Pending tasks only show for running steps.
    assert!(s.pending_tasks_for_host(1).await.unwrap().is_empty());
    s.update_step(&StepUpdate { id: step, status: Some(2), start_time: Some(101), end_time: None }).await.unwrap();
    let k1 = TaskKey::new(step, 0, 1);
    let k2 = TaskKey::new(step, 0, 2);
    assert_eq!(s.pending_tasks_for_host(1).await.unwrap(), vec![k1]);
    let finals = s
        .apply(
            &[
                TaskChange::Started { key: k1, at: 102 },
                TaskChange::Log { key: k1, seq: 1, data: b"world\n".to_vec() },
                TaskChange::Log { key: k1, seq: 0, data: b"hello ".to_vec() },
                TaskChange::Finished {
                    key: k1,
                    status: 9,
                    exit_code: 0,
                    error_code: 0,
                    start_time: None,
                    end_time: 110,
                    dropped_bytes: 0,
                    vars: Default::default(),
                },
            ],
            u64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(finals.finals, vec![k1]);
    assert!(s.any_unfinished(step, 0).await.unwrap());
    // A whole-run start moves the waiting task only; the finished one stays as it is.
    s.apply(&[TaskChange::RunStarted { step_instance_id: step, execute_count: 0, batch: Some(1), at: 103 }], u64::MAX).await.unwrap();
    assert_eq!(s.host_tasks(step, 0).await.unwrap()[1].status, 5, "another batch's start leaves it waiting");
    s.apply(&[TaskChange::RunStarted { step_instance_id: step, execute_count: 0, batch: None, at: 103 }], u64::MAX).await.unwrap();
    let tasks = s.host_tasks(step, 0).await.unwrap();
    assert_eq!(
        tasks.iter().map(|t| (t.bk_host_id, t.status, t.start_time)).collect::<Vec<_>>(),
        vec![(1, 9, Some(102)), (2, 7, Some(103))]
    );
    let t = &s.host_tasks(step, 0).await.unwrap()[0];
    assert_eq!((t.status, t.start_time, t.end_time), (9, Some(102), Some(110)));
    let logs = s.read_logs(step, 0, &[1, 2]).await.unwrap();
    assert_eq!(logs, vec![(1, b"hello world\n".to_vec())]);
    s.apply(
        &[TaskChange::Finished {
            key: k2,
            status: 104,
            exit_code: 3,
            error_code: 0,
            start_time: Some(103),
            end_time: 111,
            dropped_bytes: 5,
            vars: Default::default(),
        }],
        u64::MAX,
    )
    .await
    .unwrap();
    assert!(!s.any_unfinished(step, 0).await.unwrap());
    let t2 = &s.host_tasks(step, 0).await.unwrap()[1];
    assert_eq!((t2.status, t2.exit_code, t2.dropped_bytes, t2.start_time), (104, 3, 5, Some(103)));
}

async fn apply_is_idempotent(s: Arc<dyn Store>) {
    let (_, step) = s.create_job(&new_job(&[(1, "10.0.0.1")], "j", 1)).await.map(|(j, st)| (j, st[0])).unwrap();
    let k = TaskKey::new(step, 0, 1);
    let batch = vec![
        TaskChange::Log { key: k, seq: 0, data: b"once\n".to_vec() },
        TaskChange::Finished {
            key: k,
            status: 9,
            exit_code: 0,
            error_code: 0,
            start_time: Some(1),
            end_time: 2,
            dropped_bytes: 0,
            vars: Default::default(),
        },
    ];
    assert_eq!(s.apply(&batch, u64::MAX).await.unwrap().finals, vec![k]);
    // The same messages resent after a reconnect change nothing.
    assert!(s.apply(&batch, u64::MAX).await.unwrap().finals.is_empty());
    // A later, different final (e.g. agent-lost) does not overwrite the first.
    let lost = TaskChange::Finished {
        key: k,
        status: 310,
        exit_code: 0,
        error_code: -1,
        start_time: None,
        end_time: 9,
        dropped_bytes: 0,
        vars: Default::default(),
    };
    assert!(s.apply(&[lost], u64::MAX).await.unwrap().finals.is_empty());
    assert_eq!(s.host_tasks(step, 0).await.unwrap()[0].status, 9);
    assert_eq!(s.read_logs(step, 0, &[1]).await.unwrap(), vec![(1, b"once\n".to_vec())]);
    // A big batch of chunks in one call.
    let (_, step2) = s.create_job(&new_job(&[(1, "10.0.0.1")], "j2", 2)).await.map(|(j, st)| (j, st[0])).unwrap();
    let k2 = TaskKey::new(step2, 0, 1);
    let many: Vec<TaskChange> = (0..1200).map(|i| TaskChange::Log { key: k2, seq: i, data: format!("{i}\n").into_bytes() }).collect();
    s.apply(&many, u64::MAX).await.unwrap();
    let text = String::from_utf8(s.read_logs(step2, 0, &[1]).await.unwrap().remove(0).1).unwrap();
    assert_eq!(text.lines().count(), 1200);
    assert!(text.starts_with("0\n1\n2\n") && text.ends_with("1199\n"));
}

/// The variables a script changed are stored with its host's final status, once; a step's
/// output of a variable is the lowest host's value.
async fn script_variables_are_kept_with_the_exit(s: Arc<dyn Store>) {
    let hosts = [(1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.3")];
    let (job, steps) = s.create_job(&new_job(&hosts, "vars", 1)).await.unwrap();
    let (other_job, other_steps) = s.create_job(&new_job(&hosts[..1], "other", 2)).await.unwrap();
    let step = steps[0];
    let fin = |step_instance_id, execute_count, host_id, vars: &[(&str, &str)]| TaskChange::Finished {
        key: TaskKey::new(step_instance_id, execute_count, host_id),
        status: 9,
        exit_code: 0,
        error_code: 0,
        start_time: Some(1),
        end_time: 2,
        dropped_bytes: 0,
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let outputs = |job| {
        let s = s.clone();
        async move { s.step_var_outputs(job).await.unwrap().into_iter().map(|o| (o.step_instance_id, o.name, o.value)).collect::<Vec<_>>() }
    };
    let out = |step: i64, pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (step, n.to_string(), v.to_string())).collect::<Vec<_>>();
    assert!(outputs(job).await.is_empty());
    s.apply(&[fin(step, 0, 3, &[("V", "three")]), fin(step, 0, 2, &[("V", "two"), ("W", "w")])], u64::MAX).await.unwrap();
    s.apply(&[fin(other_steps[0], 0, 1, &[("V", "elsewhere")])], u64::MAX).await.unwrap();
    assert_eq!(outputs(job).await, out(step, &[("V", "two"), ("W", "w")]), "the lowest host that set it");
    // A resent exit, or another final status for a task already final, changes nothing.
    let resent = s.apply(&[fin(step, 0, 2, &[("V", "resent"), ("X", "new")])], u64::MAX).await.unwrap();
    assert!(resent.finals.is_empty());
    assert_eq!(outputs(job).await, out(step, &[("V", "two"), ("W", "w")]));
    // The lowest host reports last: its value is the step's.
    s.apply(&[fin(step, 0, 1, &[("V", "one")])], u64::MAX).await.unwrap();
    assert_eq!(outputs(job).await, out(step, &[("V", "one"), ("W", "w")]));
    // A retried step's later run replaces its hosts' values.
    let again = [(TargetHost { bk_host_id: 1, ip: "10.0.0.1".into(), bk_cloud_id: 0 }, 5)];
    s.restart_step(step, 1, &again).await.unwrap();
    s.apply(&[fin(step, 1, 1, &[("V", "retried")])], u64::MAX).await.unwrap();
    assert_eq!(outputs(job).await, out(step, &[("V", "retried"), ("W", "w")]));
    assert_eq!(outputs(other_job).await, out(other_steps[0], &[("V", "elsewhere")]));
}

/// The commit of a step's last host result ends the step, and the job with its callback.
async fn the_last_result_ends_step_and_job(s: Arc<dyn Store>) {
    let mut job = new_job(&[(1, "10.0.0.1"), (2, "10.0.0.2")], "ends", 1);
    job.callback_url = Some("http://cb.example/done".into());
    let (job_id, steps) = s.create_job(&job).await.unwrap();
    let step = steps[0];
    s.update_job(&JobUpdate { id: job_id, status: Some(2), start_time: Some(2), ..Default::default() }).await.unwrap();
    s.update_step(&StepUpdate { id: step, status: Some(2), start_time: Some(2), end_time: None }).await.unwrap();
    let fin = |host_id, status| TaskChange::Finished {
        key: TaskKey::new(step, 0, host_id),
        status,
        exit_code: 0,
        error_code: 0,
        start_time: Some(3),
        end_time: 4,
        dropped_bytes: 0,
        vars: Default::default(),
    };
    let first = s.apply(&[fin(1, 9)], u64::MAX).await.unwrap();
    assert_eq!((first.finals.len(), first.ended.len(), first.left.len()), (1, 0, 0), "one host is still running");
    let last = s.apply(&[fin(2, 104)], u64::MAX).await.unwrap();
    assert_eq!(last.ended.len(), 1);
    let e = &last.ended[0];
    assert_eq!((e.step_instance_id, e.job_instance_id, e.status, e.hosts), (step, job_id, 4, 2));
    assert_eq!((e.job_status, e.callback), (Some(4), true));
    let (j, st) = (s.get_job(job_id).await.unwrap().unwrap(), s.get_step(step).await.unwrap().unwrap());
    assert_eq!((j.status, st.status), (4, 4));
    assert!(j.end_time.is_some() && st.end_time.is_some());
    let cb = s.claim_callbacks("t", 10, 0, 10).await.unwrap();
    assert_eq!(cb.len(), 1);
    assert!(cb[0].body.contains(&format!("\"step_instance_id\":{step}")));
    // A resent result ends nothing twice.
    assert!(s.apply(&[fin(2, 104)], u64::MAX).await.unwrap().ended.is_empty());
}

async fn job_queries(s: Arc<dyn Store>) {
    for i in 0..5 {
        s.create_job(&new_job(&[(1, "10.0.0.1")], &format!("deploy-{i}"), 100 + i)).await.unwrap();
    }
    let id = s.create_job(&new_job(&[(2, "10.0.0.2")], "check_50%", 200)).await.unwrap().0;
    let q = |f: fn(&mut JobQuery)| {
        let mut q = JobQuery { scope_type: "biz".into(), scope_id: "1".into(), start: 0, length: 20, ..Default::default() };
        f(&mut q);
        q
    };
    let (total, rows) = s.list_jobs(&q(|_| {})).await.unwrap();
    assert_eq!((total, rows.len(), rows[0].job.id, rows[0].job_plan_id), (6, 6, id, None));
    assert_eq!(s.list_jobs(&q(|q| q.name = Some("deploy".into()))).await.unwrap().0, 5);
    assert_eq!(s.list_jobs(&q(|q| q.name = Some("50%".into()))).await.unwrap().0, 1);
    assert_eq!(s.list_jobs(&q(|q| q.ip = Some("10.0.0.2".into()))).await.unwrap().0, 1);
    assert_eq!(s.list_jobs(&q(|q| q.create_time_start = Some(102))).await.unwrap().0, 4);
    let (total, page) = s
        .list_jobs(&q(|q| {
            q.start = 4;
            q.length = 10;
        }))
        .await
        .unwrap();
    assert_eq!((total, page.len()), (6, 2));
    assert_eq!(s.list_jobs(&q(|q| q.scope_id = "2".into())).await.unwrap().0, 0);
    // Status changes, guarded by the expected status.
    s.update_job(&JobUpdate { id, status: Some(2), start_time: Some(5), expect_status: vec![1], ..Default::default() }).await.unwrap();
    assert!(matches!(
        s.update_job(&JobUpdate { id, status: Some(2), expect_status: vec![1], ..Default::default() }).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.active_jobs().await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
}

async fn callbacks_outbox(s: Arc<dyn Store>) {
    let id = s.create_job(&new_job(&[(1, "10.0.0.1")], "j", 1)).await.unwrap().0;
    s.update_job(&JobUpdate { id, status: Some(2), ..Default::default() }).await.unwrap();
    s.update_job(&JobUpdate {
        id,
        status: Some(3),
        end_time: Some(9),
        callback: Some(("http://x/cb".into(), "{\"a\":1}".into())),
        ..Default::default()
    })
    .await
    .unwrap();
    let pending = s.claim_callbacks("r1", 100, 40, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].job_instance_id, pending[0].url.as_str()), (id, "http://x/cb"));
    // Claimed: another replica does not get it while the claim is fresh...
    assert!(s.claim_callbacks("r2", 110, 50, 10).await.unwrap().is_empty());
    // ...but does once it is stale (its sender died mid-send).
    let again = s.claim_callbacks("r2", 200, 150, 10).await.unwrap();
    assert_eq!(again.iter().map(|c| c.id).collect::<Vec<_>>(), vec![pending[0].id]);
    s.finish_callback(pending[0].id, 2).await.unwrap();
    assert!(s.claim_callbacks("r3", 1000, 999, 10).await.unwrap().is_empty(), "a sent callback is never claimed again");
}

async fn groups_and_apps(s: Arc<dyn Store>) {
    let g = GroupRow {
        id: "web".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: "web".into(),
        spec: "{}".into(),
        creator: "u".into(),
        create_time: 1,
    };
    s.put_group(&g, &audit()).await.unwrap();
    assert_eq!(s.get_group("biz", "1", "web").await.unwrap().unwrap(), g);
    // The same id in another scope is another group: saving it leaves the first alone.
    let other = GroupRow { scope_id: "2".into(), spec: r#"{"selector":"x=y"}"#.into(), ..g.clone() };
    s.put_group(&other, &audit()).await.unwrap();
    assert_eq!(s.get_group("biz", "1", "web").await.unwrap().unwrap(), g);
    assert_eq!(s.get_group("biz", "2", "web").await.unwrap().unwrap(), other);
    assert_eq!(s.list_groups("biz", "1").await.unwrap().len(), 1);
    assert!(!s.delete_group("biz", "3", "web", &audit()).await.unwrap(), "no group of that id in biz 3");
    assert!(s.delete_group("biz", "1", "web", &audit()).await.unwrap());
    assert!(!s.delete_group("biz", "1", "web", &audit()).await.unwrap());
    assert!(s.get_group("biz", "2", "web").await.unwrap().is_some());
    // Business sets: undefined until an admin defines them.
    assert!(s.get_biz_set(8_000_001).await.unwrap().is_none());
    let set = shoal_store::BizSetRow { id: 8_000_001, name: "prod".into(), members: vec![1, 2], updated_by: "u".into(), updated_at: 1 };
    s.put_biz_set(&set, &audit()).await.unwrap();
    assert_eq!(s.get_biz_set(8_000_001).await.unwrap().unwrap(), set);
    assert_eq!(s.list_biz_sets().await.unwrap(), vec![set]);
    assert!(s.delete_biz_set(8_000_001, &audit()).await.unwrap());
    assert!(s.get_biz_set(8_000_001).await.unwrap().is_none());
    assert_eq!(s.count_apps().await.unwrap(), 0);
    let app = AppRow { code: "c".into(), salt: "s".into(), secret_hash: "h".into(), is_admin: true, created_at: 1 };
    s.put_app(&app).await.unwrap();
    assert_eq!(s.get_app("c").await.unwrap().unwrap(), app);
    s.audit(&audit()).await.unwrap();
}

/// 20 creations racing for an app limit of 5: exactly 5 jobs exist afterwards, the others are
/// refused with the app quota, and the per-scope and total limits answer likewise.
async fn quota_is_taken_with_the_creation(s: Arc<dyn Store>) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = s.clone();
        set.spawn(async move {
            let mut job = new_job(&[], &format!("q{i}"), i);
            job.quota = JobQuota { system: 0, scope: 0, app: 5 };
            s.create_job(&job).await
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::QuotaExceeded(QuotaKind::App)) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, refused), (5, 15));
    assert_eq!(s.running_jobs(None, Some("app")).await.unwrap(), 5);
    let mut job = new_job(&[], "scope", 99);
    job.quota = JobQuota { system: 0, scope: 5, app: 0 };
    assert!(matches!(s.create_job(&job).await, Err(StoreError::QuotaExceeded(QuotaKind::Scope))));
    job.quota = JobQuota { system: 5, scope: 0, app: 0 };
    assert!(matches!(s.create_job(&job).await, Err(StoreError::QuotaExceeded(QuotaKind::System))));
    // Another app is not held by this app's limit; no limit at all always creates.
    job.app_code = "other".into();
    job.quota = JobQuota { system: 0, scope: 0, app: 5 };
    s.create_job(&job).await.unwrap();
    job.quota = JobQuota::default();
    s.create_job(&job).await.unwrap();
    assert_eq!(s.running_jobs(None, None).await.unwrap(), 7);
}

async fn builtin_toggles_are_stored_and_audited(s: Arc<dyn Store>) {
    assert!(s.disabled_builtins().await.unwrap().is_empty());
    let ev = |action: &str| AuditEvent { action: action.into(), ..audit() };
    assert!(s.set_builtin_disabled("rm-root", true, "admin", 5, &ev("disable_danger_builtin")).await.unwrap());
    assert!(!s.set_builtin_disabled("rm-root", true, "admin", 6, &ev("disable_danger_builtin")).await.unwrap());
    assert_eq!(s.disabled_builtins().await.unwrap(), vec!["rm-root".to_string()]);
    assert!(s.set_builtin_disabled("rm-root", false, "admin", 7, &ev("enable_danger_builtin")).await.unwrap());
    assert!(s.disabled_builtins().await.unwrap().is_empty());
    let events = s
        .audit_events(&shoal_store::trust::AuditQuery { action: Some("disable_danger_builtin".into()), limit: 100, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
}
