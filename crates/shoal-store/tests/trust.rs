//! Trust storage on SQLite and PostgreSQL: grants, app revocation, dangerous rules and their
//! records, agent credentials, and the audit chain detecting an edited row.

use std::sync::Arc;

use shoal_store::trust::*;
use shoal_store::*;

/// A store and a raw pool on the same database (to tamper with rows as an attacker would).
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Raw::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }
}

async fn sqlite() -> (Arc<dyn Store>, Raw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = open(&url).await.unwrap();
    let raw = Raw::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap());
    (store, raw, dir)
}

async fn postgres() -> Option<(Arc<dyn Store>, Raw)> {
    let url = shoal_store::testing::fresh_postgres("tr").await?;
    let store = open(&url).await.unwrap();
    Some((store, Raw::Pg(sqlx::PgPool::connect(&url).await.unwrap())))
}

macro_rules! both {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (s, raw, _dir) = super::sqlite().await;
                super::$name(s, raw).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some((s, raw)) = super::postgres().await {
                    super::$name(s, raw).await;
                }
            }
        }
    )*};
}

both!(grants_and_app_lifecycle, rules_and_records, audit_chain_detects_tampering, agent_credentials, concurrent_audit_appends_stay_chained);

fn app(code: &str) -> AppRow {
    AppRow { code: code.into(), salt: "s".into(), secret_hash: "h".into(), is_admin: false, created_at: 1 }
}

async fn grants_and_app_lifecycle(s: Arc<dyn Store>, _raw: Raw) {
    s.create_app(&app("ci"), "the CI").await.unwrap();
    assert!(matches!(s.create_app(&app("ci"), "").await, Err(StoreError::Conflict(_))));
    let g = Grant { app_code: "ci".into(), scope_type: "biz".into(), scope_id: "1".into(), role: "run".into() };
    s.put_grant(&g, "root", 5).await.unwrap();
    s.put_grant(&g, "root", 6).await.unwrap(); // idempotent
    let ag = AccountGrant { app_code: "ci".into(), scope_type: "biz".into(), scope_id: "1".into(), alias: "deploy".into() };
    s.put_account_grant(&ag, "root", 5).await.unwrap();
    assert_eq!(s.list_grants(Some("ci")).await.unwrap(), vec![g.clone()]);
    assert_eq!(s.list_account_grants(None).await.unwrap(), vec![ag.clone()]);
    s.rotate_app("ci", "s2", "h2").await.unwrap();
    assert_eq!(s.get_app("ci").await.unwrap().unwrap().secret_hash, "h2");

    s.revoke_app("ci", 9).await.unwrap();
    let info = s.list_apps().await.unwrap().into_iter().find(|a| a.code == "ci").unwrap();
    assert_eq!((info.revoked_at, info.description.as_str()), (Some(9), "the CI"));
    assert_eq!(s.get_app("ci").await.unwrap().unwrap().secret_hash, "!revoked");
    assert!(s.list_grants(Some("ci")).await.unwrap().is_empty(), "revocation drops grants");
    assert!(s.list_account_grants(Some("ci")).await.unwrap().is_empty());
    assert!(matches!(s.rotate_app("ci", "s3", "h3").await, Err(StoreError::NotFound(_))), "a revoked app cannot be rotated back");
    assert!(matches!(s.revoke_app("nobody", 1).await, Err(StoreError::NotFound(_))));
}

async fn rules_and_records(s: Arc<dyn Store>, _raw: Raw) {
    let r = RuleRow {
        id: 0,
        expression: "rm\\s+-rf".into(),
        languages: vec![1, 4],
        description: "no rm".into(),
        action: 2,
        status: 0,
        creator: "u".into(),
        create_time: 1,
        last_modify_user: "u".into(),
        last_modify_time: 1,
    };
    let created = s.create_rule(&r).await.unwrap();
    assert!(created.id > 0);
    assert_eq!(created.languages, vec![1, 4]);
    let on = s.set_rule_status(created.id, 1, "v", 2).await.unwrap();
    assert_eq!((on.status, on.last_modify_user.as_str()), (1, "v"));
    let mut up = on.clone();
    up.expression = "mkfs".into();
    up.action = 1;
    let up = s.update_rule(&up).await.unwrap();
    assert_eq!((up.expression.as_str(), up.action, up.status), ("mkfs", 1, 1));
    assert_eq!(s.list_rules().await.unwrap().len(), 1);
    let hit = DangerRecord {
        id: 0,
        time: 10,
        rule_id: up.id,
        expression: up.expression.clone(),
        action: 1,
        blocked: false,
        scope_type: "biz".into(),
        scope_id: "1".into(),
        app_code: "a".into(),
        operator: "u".into(),
        language: 1,
        script_sha256: "abc".into(),
        line: 2,
        line_content: "mkfs /dev/sda".into(),
        match_content: "mkfs".into(),
    };
    s.record_danger(std::slice::from_ref(&hit)).await.unwrap();
    let got = s.list_danger_records(None, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].line, got[0].match_content.as_str(), got[0].blocked), (2, "mkfs", false));
    assert!(s.list_danger_records(Some(11), 10).await.unwrap().is_empty());
    s.delete_rule(up.id).await.unwrap();
    assert!(s.get_rule(up.id).await.unwrap().is_none());
    assert!(matches!(s.delete_rule(up.id).await, Err(StoreError::NotFound(_))));
}

fn event(action: &str, user: &str, scope: &str) -> AuditEvent {
    AuditEvent {
        time: shoal_core::time::now_ms(),
        app_code: "app".into(),
        username: user.into(),
        scope_type: "biz".into(),
        scope_id: scope.into(),
        action: action.into(),
        resource_id: "7".into(),
        detail: "{}".into(),
    }
}

async fn audit_chain_detects_tampering(s: Arc<dyn Store>, raw: Raw) {
    s.audit(&event("create_account", "alice", "1")).await.unwrap();
    s.audit(&event("delete_account", "bob", "2")).await.unwrap();
    s.audit(&event("create_account", "alice", "2")).await.unwrap();
    let report = s.verify_audit().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 3);

    let q = AuditQuery { username: Some("alice".into()), limit: 100, ..Default::default() };
    assert_eq!(s.audit_events(&q).await.unwrap().len(), 2);
    let q = AuditQuery { scope_id: Some("2".into()), action: Some("delete_account".into()), limit: 100, ..Default::default() };
    let rows = s.audit_events(&q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].seq, Some(2));

    // Someone with database access rewrites who did it.
    raw.exec("UPDATE audit_events SET username = 'mallory' WHERE seq = 2").await;
    let report = s.verify_audit().await.unwrap();
    assert_eq!(report.broken.as_ref().map(|b| b.0), Some(2), "{report:?}");
    raw.exec("UPDATE audit_events SET username = 'bob' WHERE seq = 2").await;
    assert!(s.verify_audit().await.unwrap().ok());

    // Or deletes the last event.
    raw.exec("DELETE FROM audit_events WHERE seq = 3").await;
    assert!(!s.verify_audit().await.unwrap().ok());
}

fn enrolled(agent: &str) -> AuditEvent {
    AuditEvent { username: format!("agent:{agent}"), resource_id: agent.into(), ..event("enroll_agent", "", "1") }
}

async fn agent_credentials(s: Arc<dyn Store>, _raw: Raw) {
    s.issue_agent_credential("ag-1", "salt", "hash", 1, &enrolled("ag-1")).await.unwrap();
    // The enrolment is audited with it; a refused one is not.
    let audited = |n: usize| {
        let s = s.clone();
        async move {
            let events =
                s.audit_events(&AuditQuery { action: Some("enroll_agent".into()), limit: 100, ..Default::default() }).await.unwrap();
            assert_eq!(events.len(), n, "{events:?}");
        }
    };
    audited(1).await;
    assert!(matches!(s.issue_agent_credential("ag-1", "x", "y", 2, &enrolled("ag-1")).await, Err(StoreError::Conflict(_))), "issued once");
    audited(1).await;
    assert_eq!(s.agent_credential("ag-1").await.unwrap(), Some(("salt".into(), "hash".into(), false)));
    assert!(s.revoke_agent("ag-1", 3).await.unwrap());
    assert!(s.agent_credential("ag-1").await.unwrap().unwrap().2);
    // Revoking an id never seen reserves it as revoked.
    s.revoke_agent("ag-2", 3).await.unwrap();
    assert!(matches!(s.issue_agent_credential("ag-2", "x", "y", 4, &enrolled("ag-2")).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.agent_credential("nobody").await.unwrap(), None);
    let facts = shoal_proto::agent::HostFacts { bk_biz_id: 1, bk_cloud_id: 0, ip: "10.0.0.9".into(), ..Default::default() };
    s.upsert_host("ag-1", &facts, "1", 1).await.unwrap();
    assert_eq!(s.agents_at(0, "10.0.0.9").await.unwrap(), vec!["ag-1".to_string()]);
    assert!(s.agents_at(1, "10.0.0.9").await.unwrap().is_empty());
}

async fn concurrent_audit_appends_stay_chained(s: Arc<dyn Store>, _raw: Raw) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                s.audit(&event(&format!("a{i}-{j}"), "u", "1")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = s.verify_audit().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 40);
}
