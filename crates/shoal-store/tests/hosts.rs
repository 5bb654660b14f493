//! Host identity on SQLite and PostgreSQL: one host per address under racing enrolments,
//! enrolment tokens (business, single use, expiry, revocation, pending), admin moves and
//! acceptance, and output refused for finished tasks.

use std::sync::Arc;

use shoal_proto::agent::{HostFacts, TaskKey};
use shoal_store::hosts::*;
use shoal_store::trust::AuditQuery;
use shoal_store::*;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("h.db").display());
    (open(&url).await.unwrap(), dir)
}

async fn postgres() -> Option<(Arc<dyn Store>, shoal_store::testing::TestDb)> {
    let db = shoal_store::testing::fresh_postgres("h").await?;
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
    racing_first_enrolments_of_one_address_one_wins,
    tokens_bind_business_use_and_expiry,
    pending_hosts_are_no_targets_until_accepted,
    moves_keep_addresses_unique,
    a_revoked_agents_address_can_be_enrolled_again,
    chunks_for_finished_or_unknown_tasks_are_not_stored,
);

fn facts(biz: i64, ip: &str) -> HostFacts {
    HostFacts { bk_biz_id: biz, bk_cloud_id: 0, ip: ip.into(), hostname: "h".into(), ..Default::default() }
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        time: 1,
        username: "agent:x".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        action: action.into(),
        detail: "{}".into(),
        ..Default::default()
    }
}

async fn enrol(s: &Arc<dyn Store>, agent: &str, f: &HostFacts, token: EnrolToken<'_>, now: i64) -> Result<Enrolled, EnrolRefusal> {
    let e = Enrolment {
        agent_id: agent,
        salt: "salt",
        secret_hash: "hash",
        facts: f,
        version: "1",
        token,
        now,
        event: AuditEvent { resource_id: agent.into(), ..event("enroll_agent") },
    };
    s.enrol_agent(&e).await.unwrap()
}

async fn token(s: &Arc<dyn Store>, hash: &str, biz: Option<i64>, single_use: bool, pending: bool, expires_at: Option<i64>) -> i64 {
    let t = NewAgentToken {
        token_hash: hash.into(),
        bk_biz_id: biz,
        pending,
        single_use,
        expires_at,
        created_by: "admin".into(),
        created_at: 1,
        ..Default::default()
    };
    s.create_agent_token(&t, &event("create_agent_token")).await.unwrap()
}

async fn enrolments(s: &Arc<dyn Store>) -> usize {
    s.audit_events(&AuditQuery { action: Some("enroll_agent".into()), limit: 100, ..Default::default() }).await.unwrap().len()
}

async fn racing_first_enrolments_of_one_address_one_wins(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { enrol(&s, &format!("racer-{i}"), &facts(1, "10.0.0.5"), EnrolToken::Server, 10).await }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => {
                won += 1;
                assert!(!e.pending);
            }
            Err(r) => assert_eq!(r, EnrolRefusal::AddressTaken),
        }
    }
    assert_eq!(won, 1, "exactly one racer enrols");
    let hosts = s.list_hosts(None).await.unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(enrolments(&s).await, 1, "only the winner is recorded");
    // The losers left no credential behind: their ids are still free.
    let winner = hosts[0].agent_id.clone();
    for i in 0..8 {
        let id = format!("racer-{i}");
        assert_eq!(s.agent_credential(&id).await.unwrap().is_some(), id == winner, "{id}");
    }
    // The winner is bound to its facts.
    let b = s.bound_host(&winner).await.unwrap().unwrap();
    assert_eq!((b.host.bk_biz_id, b.host.ip.as_str(), b.state), (1, "10.0.0.5", HostState::Active));
}

async fn tokens_bind_business_use_and_expiry(s: Arc<dyn Store>) {
    let biz2 = token(&s, "h-biz2", Some(2), false, false, None).await;
    let once = token(&s, "h-once", None, true, false, None).await;
    token(&s, "h-expired", None, false, false, Some(100)).await;
    let revoked = token(&s, "h-revoked", None, false, false, None).await;
    assert!(s.revoke_agent_token(revoked, 5, &event("revoke_agent_token")).await.unwrap());
    assert!(!s.revoke_agent_token(revoked, 6, &event("revoke_agent_token")).await.unwrap(), "revoked once");

    let issued = |h: &'static str| EnrolToken::Issued { token_hash: h };
    assert_eq!(
        enrol(&s, "a1", &facts(3, "10.0.1.1"), issued("h-biz2"), 10).await,
        Err(EnrolRefusal::TokenBusiness { token_biz: 2, claimed: 3 }),
        "a business-2 token cannot enrol into business 3"
    );
    let ok = enrol(&s, "a1", &facts(2, "10.0.1.1"), issued("h-biz2"), 10).await.unwrap();
    assert_eq!(ok.token_id, Some(biz2));
    // Multi-use: a second host.
    enrol(&s, "a2", &facts(2, "10.0.1.2"), issued("h-biz2"), 10).await.unwrap();

    assert_eq!(enrol(&s, "b1", &facts(5, "10.0.2.1"), issued("h-once"), 10).await.unwrap().token_id, Some(once));
    assert_eq!(enrol(&s, "b2", &facts(5, "10.0.2.2"), issued("h-once"), 10).await, Err(EnrolRefusal::TokenUsed), "single use");
    assert_eq!(enrol(&s, "c1", &facts(1, "10.0.3.1"), issued("h-expired"), 100).await, Err(EnrolRefusal::TokenExpired));
    assert_eq!(enrol(&s, "c2", &facts(1, "10.0.3.2"), issued("h-revoked"), 10).await, Err(EnrolRefusal::TokenRevoked));
    assert_eq!(enrol(&s, "c3", &facts(1, "10.0.3.3"), issued("h-nope"), 10).await, Err(EnrolRefusal::TokenUnknown));
    for refused in ["b2", "c1", "c2", "c3"] {
        assert!(s.agent_credential(refused).await.unwrap().is_none(), "{refused} left nothing behind");
    }

    let list = s.list_agent_tokens().await.unwrap();
    let row = |id: i64| list.iter().find(|t| t.id == id).unwrap().clone();
    assert_eq!((row(biz2).uses, row(biz2).bk_biz_id), (2, Some(2)));
    assert_eq!((row(once).uses, row(once).single_use), (1, true));
    assert!(row(revoked).revoked_at.is_some());
    assert_eq!(enrolments(&s).await, 3);
}

async fn pending_hosts_are_no_targets_until_accepted(s: Arc<dyn Store>) {
    token(&s, "h-hold", Some(1), false, true, None).await;
    let e = enrol(&s, "p1", &facts(1, "10.0.4.1"), EnrolToken::Issued { token_hash: "h-hold" }, 10).await.unwrap();
    assert!(e.pending);
    assert!(s.list_hosts(Some(1)).await.unwrap().is_empty(), "a pending host is not in the registry");
    assert!(s.hosts_by_ids(&[e.host_id]).await.unwrap().is_empty(), "nor a target by id");
    let pending = s.pending_hosts().await.unwrap();
    assert_eq!(pending.iter().map(|b| b.host.bk_host_id).collect::<Vec<_>>(), vec![e.host_id]);
    assert_eq!(s.bound_host("p1").await.unwrap().unwrap().state, HostState::Pending);
    // Its address is held all the same.
    assert_eq!(enrol(&s, "p2", &facts(1, "10.0.4.1"), EnrolToken::Server, 10).await, Err(EnrolRefusal::AddressTaken));

    assert!(s.accept_host(e.host_id, &event("accept_agent")).await.unwrap());
    assert!(!s.accept_host(e.host_id, &event("accept_agent")).await.unwrap(), "accepted once");
    assert_eq!(s.hosts_by_ids(&[e.host_id]).await.unwrap().len(), 1);
    assert!(s.pending_hosts().await.unwrap().is_empty());
    let accepted = s.audit_events(&AuditQuery { action: Some("accept_agent".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(accepted.len(), 1);
}

async fn moves_keep_addresses_unique(s: Arc<dyn Store>) {
    let a = enrol(&s, "m1", &facts(1, "10.0.5.1"), EnrolToken::Server, 10).await.unwrap().host_id;
    enrol(&s, "m2", &facts(1, "10.0.5.2"), EnrolToken::Server, 10).await.unwrap();
    let onto_b = HostMove { ip: Some("10.0.5.2".into()), ..Default::default() };
    assert_eq!(s.move_host(a, &onto_b, &event("move_host")).await.unwrap(), Err(MoveRefusal::AddressTaken));
    assert_eq!(s.move_host(9999, &HostMove::default(), &event("move_host")).await.unwrap(), Err(MoveRefusal::NoSuchHost));
    let m = HostMove { bk_biz_id: Some(7), set_id: Some(70), module_id: Some(700), ip: Some("10.0.5.9".into()), ..Default::default() };
    let moved = s.move_host(a, &m, &event("move_host")).await.unwrap().unwrap();
    assert_eq!(
        (moved.host.bk_biz_id, moved.host.set_id, moved.host.module_id, moved.host.ip.as_str()),
        (7, Some(70), Some(700), "10.0.5.9")
    );
    let b = s.bound_host("m1").await.unwrap().unwrap();
    assert_eq!((b.host.bk_biz_id, b.host.ip.as_str()), (7, "10.0.5.9"));
    // Refreshing what the agent may report leaves the bound facts alone.
    let mut claim = facts(1, "10.0.5.1");
    claim.labels.insert("env".into(), "prod".into());
    s.refresh_host(a, &claim, "2", 20).await.unwrap();
    let h = &s.hosts_by_ids(&[a]).await.unwrap()[0];
    assert_eq!(
        (h.bk_biz_id, h.ip.as_str(), h.labels.get("env").map(String::as_str), h.agent_version.as_str()),
        (7, "10.0.5.9", Some("prod"), "2")
    );
    let moves = s.audit_events(&AuditQuery { action: Some("move_host".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(moves.len(), 1, "only the move that happened is recorded");
}

async fn a_revoked_agents_address_can_be_enrolled_again(s: Arc<dyn Store>) {
    let old = enrol(&s, "r1", &facts(1, "10.0.6.1"), EnrolToken::Server, 10).await.unwrap().host_id;
    assert_eq!(enrol(&s, "r2", &facts(1, "10.0.6.1"), EnrolToken::Server, 10).await, Err(EnrolRefusal::AddressTaken));
    s.revoke_agent("r1", 11).await.unwrap();
    let new = enrol(&s, "r2", &facts(1, "10.0.6.1"), EnrolToken::Server, 12).await.unwrap().host_id;
    assert_ne!(old, new, "a new identity, not the old host's");
    assert!(s.hosts_by_ids(&[old]).await.unwrap().is_empty(), "the revoked agent's host is retired");
    assert!(s.bound_host("r1").await.unwrap().is_none());
}

async fn chunks_for_finished_or_unknown_tasks_are_not_stored(s: Arc<dyn Store>) {
    let job = NewJob {
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: "j".into(),
        operator: "alice".into(),
        app_code: "app".into(),
        task_type: 1,
        launch_mode: 2,
        create_time: 1,
        callback_url: None,
        steps: vec![NewStep {
            name: "s".into(),
            step_type: 1,
            language: 1,
            script: b"echo hi".to_vec(),
            timeout_secs: 60,
            account_id: 1,
            account_user: "root".into(),
            targets: vec![TargetHost { bk_host_id: 1, ip: "10.0.0.1".into(), bk_cloud_id: 0 }],
            ..Default::default()
        }],
        plan: None,
        audit: event("create_job"),
        quota: Default::default(),
    };
    let (_, steps) = s.create_job(&job).await.unwrap();
    let k = TaskKey::new(steps[0], 0, 1);
    let log = |seq: u64, text: &str| TaskChange::Log { key: k, seq, data: text.as_bytes().to_vec() };
    let fin = TaskChange::Finished {
        key: k,
        status: 9,
        exit_code: 0,
        error_code: 0,
        start_time: Some(1),
        end_time: 2,
        dropped_bytes: 0,
        vars: Default::default(),
    };
    // Output that arrives with the exit, before it, is kept.
    s.apply(&[log(0, "before\n"), fin], u64::MAX).await.unwrap();
    s.apply(&[log(1, "after\n")], u64::MAX).await.unwrap();
    assert_eq!(s.read_logs(k.step_instance_id, 0, &[1]).await.unwrap(), vec![(1, b"before\n".to_vec())]);
    // A task that does not exist gets nothing stored either.
    let ghost = TaskKey::new(k.step_instance_id + 1000, 0, 1);
    s.apply(&[TaskChange::Log { key: ghost, seq: 0, data: b"ghost".to_vec() }], u64::MAX).await.unwrap();
    assert!(s.read_logs(ghost.step_instance_id, 0, &[1]).await.unwrap().is_empty());
}
