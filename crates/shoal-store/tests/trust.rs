//! Trust storage on SQLite and PostgreSQL: grants (account grants bound to the account's id),
//! app revocation, dangerous rules and their records, agent credentials, and the keyed audit
//! chain detecting every kind of tampering.

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

    /// Several statements on one connection.
    async fn exec_script(&self, sql: &str) {
        match self {
            Raw::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Raw::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }

    /// `(id, seq, prev_hash, hash)` and the event of every audit row, in seq order.
    async fn audit_rows(&self) -> Vec<AuditRow> {
        const Q: &str = "SELECT id, seq, time, app_code, username, scope_type, scope_id, action, resource_id, detail, prev_hash, hash \
                         FROM audit_events ORDER BY seq";
        macro_rules! rows {
            ($p:expr) => {{
                use sqlx::Row;
                sqlx::query(Q)
                    .fetch_all($p)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| AuditRow {
                        id: r.get("id"),
                        seq: r.get("seq"),
                        event: AuditEvent {
                            time: r.get("time"),
                            app_code: r.get("app_code"),
                            username: r.get("username"),
                            scope_type: r.get("scope_type"),
                            scope_id: r.get("scope_id"),
                            action: r.get("action"),
                            resource_id: r.get("resource_id"),
                            detail: r.get("detail"),
                        },
                        prev_hash: r.get("prev_hash"),
                        hash: r.get("hash"),
                    })
                    .collect()
            }};
        }
        match self {
            Raw::Sqlite(p) => rows!(p),
            Raw::Pg(p) => rows!(p),
        }
    }

    /// Recompute every link and hash with `hash` and move the head, as an attacker with
    /// database access (but not the key) would after an edit.
    async fn rechain(&self, hash: impl Fn(&str, i64, &AuditEvent) -> String) {
        let mut prev = String::new();
        for r in self.audit_rows().await {
            let seq = r.seq.unwrap();
            let h = hash(&prev, seq, &r.event);
            self.exec(&format!("UPDATE audit_events SET prev_hash = '{prev}', hash = '{h}' WHERE seq = {seq}")).await;
            self.exec(&format!("UPDATE audit_head SET seq = {seq}, hash = '{h}' WHERE id = 1")).await;
            prev = h;
        }
    }
}

/// The key the stores of these tests are opened with.
fn key() -> AuditKey {
    AuditKey::from_bytes([42; 32])
}

async fn sqlite() -> (Arc<dyn Store>, Raw, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = open_keyed(&url, key()).await.unwrap();
    let raw = Raw::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap());
    (store, raw, dir)
}

async fn postgres() -> Option<(Arc<dyn Store>, Raw, shoal_store::testing::TestDb)> {
    let db = shoal_store::testing::fresh_postgres("tr").await?;
    let store = open_keyed(&db, key()).await.unwrap();
    let raw = Raw::Pg(sqlx::PgPool::connect(&db).await.unwrap());
    Some((store, raw, db))
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
                if let Some((s, raw, _db)) = super::postgres().await {
                    super::$name(s, raw).await;
                }
            }
        }
    )*};
}

both!(
    grants_and_app_lifecycle,
    account_grants_follow_the_account_not_its_alias,
    rules_and_records,
    audit_chain_detects_tampering,
    audit_chain_detects_every_tampering,
    audit_chain_recomputed_without_the_key_fails,
    legacy_chain_is_sealed_and_stays_verifiable,
    agent_credentials,
    concurrent_audit_appends_stay_chained
);

fn app(code: &str) -> AppRow {
    AppRow { code: code.into(), salt: "s".into(), secret_hash: "h".into(), is_admin: false, created_at: 1 }
}

async fn grants_and_app_lifecycle(s: Arc<dyn Store>, _raw: Raw) {
    s.create_app(&app("ci"), "the CI").await.unwrap();
    assert!(matches!(s.create_app(&app("ci"), "").await, Err(StoreError::Conflict(_))));
    let g = Grant { app_code: "ci".into(), scope_type: "biz".into(), scope_id: "1".into(), role: "run".into() };
    s.put_grant(&g, "root", 5).await.unwrap();
    s.put_grant(&g, "root", 6).await.unwrap(); // idempotent
    let deploy = s.create_account(&account("deploy")).await.unwrap();
    let ag = AccountGrant {
        app_code: "ci".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        account_id: deploy.id,
        alias: "deploy".into(),
    };
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

fn account(alias: &str) -> AccountRow {
    AccountRow {
        id: 0,
        scope_type: "biz".into(),
        scope_id: "1".into(),
        account: alias.into(),
        alias: alias.into(),
        category: 1,
        account_type: 1,
        description: None,
        creator: "u".into(),
        create_time: 1,
        last_modify_user: "u".into(),
        last_modify_time: 1,
    }
}

async fn account_grants_follow_the_account_not_its_alias(s: Arc<dyn Store>, _raw: Raw) {
    s.create_app(&app("ci"), "").await.unwrap();
    let deploy = s.create_account(&account("deploy")).await.unwrap();
    let g = AccountGrant {
        app_code: "ci".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        account_id: deploy.id,
        alias: "deploy".into(),
    };
    s.put_account_grant(&g, "root", 1).await.unwrap();
    let all = AccountGrant { account_id: ALL_ACCOUNTS, alias: "*".into(), scope_id: "2".into(), ..g.clone() };
    s.put_account_grant(&all, "root", 1).await.unwrap();
    assert_eq!(s.list_account_grants(Some("ci")).await.unwrap(), vec![g.clone(), all.clone()]);

    // Deleted and made again under the same alias (say, now as root): a new id, no grant.
    s.delete_account(deploy.id).await.unwrap();
    let again = s.create_account(&account("deploy")).await.unwrap();
    assert_ne!(again.id, deploy.id);
    let left = s.list_account_grants(Some("ci")).await.unwrap();
    assert_eq!(left, vec![all.clone()], "the grant went with the account");
    assert!(!left.iter().any(|x| x.account_id == again.id));
    assert!(s.delete_account_grant(&all).await.unwrap());
    assert!(!s.delete_account_grant(&g).await.unwrap());
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
    let report = s.verify_audit(None).await.unwrap();
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
    let report = s.verify_audit(None).await.unwrap();
    assert_eq!(report.broken.as_ref().map(|b| b.0), Some(2), "{report:?}");
    raw.exec("UPDATE audit_events SET username = 'bob' WHERE seq = 2").await;
    assert!(s.verify_audit(None).await.unwrap().ok());

    // Or deletes the last event.
    raw.exec("DELETE FROM audit_events WHERE seq = 3").await;
    assert!(!s.verify_audit(None).await.unwrap().ok());
}

/// Three events, verified; returns the rows.
async fn three_events(s: &Arc<dyn Store>, raw: &Raw) -> Vec<AuditRow> {
    for (a, u) in [("create_account", "alice"), ("delete_account", "bob"), ("create_app", "carol")] {
        s.audit(&event(a, u, "1")).await.unwrap();
    }
    let report = s.verify_audit(None).await.unwrap();
    assert!(report.ok() && report.checked == 3, "{report:?}");
    raw.audit_rows().await
}

async fn broken(s: &Arc<dyn Store>, expect: Option<&ChainHead>) -> (i64, String) {
    let report = s.verify_audit(expect).await.unwrap();
    report.broken.clone().unwrap_or_else(|| panic!("tampering not detected: {report:?}"))
}

async fn audit_chain_detects_every_tampering(s: Arc<dyn Store>, raw: Raw) {
    let rows = three_events(&s, &raw).await;
    let exported = s.verify_audit(None).await.unwrap().head.unwrap();
    assert_eq!(exported, ChainHead { seq: 3, hash: rows[2].hash.clone() });
    assert!(s.verify_audit(Some(&exported)).await.unwrap().ok());
    let ok = |s: Arc<dyn Store>| async move { assert!(s.verify_audit(None).await.unwrap().ok()) };

    // Edit.
    raw.exec("UPDATE audit_events SET detail = '{\"x\":1}' WHERE seq = 1").await;
    assert_eq!(broken(&s, None).await.0, 1);
    raw.exec(&format!("UPDATE audit_events SET detail = '{}' WHERE seq = 1", rows[0].event.detail)).await;
    ok(s.clone()).await;

    // Reorder: events 2 and 3 swap places.
    raw.exec("UPDATE audit_events SET seq = 100 WHERE seq = 2").await;
    raw.exec("UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
    raw.exec("UPDATE audit_events SET seq = 3 WHERE seq = 100").await;
    assert_eq!(broken(&s, None).await.0, 2);
    raw.exec("UPDATE audit_events SET seq = 100 WHERE seq = 2").await;
    raw.exec("UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
    raw.exec("UPDATE audit_events SET seq = 3 WHERE seq = 100").await;
    ok(s.clone()).await;

    // Insert: a forged event in the middle, copying a neighbour's links.
    let r = &rows[1];
    let insert = |seq: &str| {
        format!(
            "INSERT INTO audit_events (time, app_code, username, scope_type, scope_id, action, resource_id, detail, seq, prev_hash, hash) \
             VALUES (1, 'app', 'mallory', 'biz', '1', 'grant_role', '', '{{}}', {seq}, '{}', '{}')",
            r.prev_hash, r.hash
        )
    };
    raw.exec("UPDATE audit_events SET seq = seq + 10 WHERE seq >= 2").await;
    raw.exec(&insert("2")).await;
    assert!(broken(&s, None).await.0 <= 3);
    raw.exec("DELETE FROM audit_events WHERE username = 'mallory'").await;
    raw.exec("UPDATE audit_events SET seq = seq - 10 WHERE seq >= 12").await;
    ok(s.clone()).await;

    // A NULL seq: an event outside the chain (the NOT NULL constraint dropped first where
    // the backend allows it; on SQLite a rebuilt table stands in for that).
    match &raw {
        Raw::Pg(_) => {
            raw.exec("ALTER TABLE audit_events ALTER COLUMN seq DROP NOT NULL").await;
            raw.exec(&insert("NULL")).await;
        }
        Raw::Sqlite(_) => {
            // SQLite cannot drop a constraint; a copy of the table without it stands in.
            raw.exec_script(
                "CREATE TABLE loose AS SELECT * FROM audit_events; DROP TABLE audit_events; ALTER TABLE loose RENAME TO audit_events;",
            )
            .await;
            raw.exec(&insert("NULL").replace("(time,", "(id, time,").replace("VALUES (1,", "VALUES (999, 1,")).await;
        }
    }
    let (_, why) = broken(&s, None).await;
    assert!(why.contains("no chain position"), "{why}");
    raw.exec("DELETE FROM audit_events WHERE seq IS NULL").await;
    ok(s.clone()).await;

    // Delete from the middle.
    raw.exec("DELETE FROM audit_events WHERE seq = 2").await;
    assert_eq!(broken(&s, None).await.0, 3);
    // Truncate the tail and rewrite the head: consistent on its own...
    raw.exec("DELETE FROM audit_events WHERE seq = 3").await;
    raw.exec(&format!("UPDATE audit_head SET seq = 1, hash = '{}' WHERE id = 1", rows[0].hash)).await;
    assert!(s.verify_audit(None).await.unwrap().ok(), "a consistent prefix alone cannot be told from a short chain");
    // ...but not against the head exported before.
    let (at, why) = broken(&s, Some(&exported)).await;
    assert_eq!(at, 3, "{why}");
    // A head that does not match the last event.
    raw.exec("UPDATE audit_head SET seq = 2 WHERE id = 1").await;
    assert!(broken(&s, None).await.1.contains("head"));
}

async fn audit_chain_recomputed_without_the_key_fails(s: Arc<dyn Store>, raw: Raw) {
    three_events(&s, &raw).await;
    // Edit, then recompute the whole chain with plain SHA-256 (the old rule): refused.
    raw.exec("UPDATE audit_events SET username = 'mallory' WHERE seq = 2").await;
    raw.rechain(legacy_audit_hash).await;
    let (_, why) = broken(&s, None).await;
    assert!(why.contains("keyed"), "{why}");
    // With a key of one's own: refused at the first event.
    let wrong = AuditKey::from_bytes([7; 32]);
    raw.rechain(|p, seq, e| audit_hash(&wrong, p, seq, e)).await;
    assert_eq!(broken(&s, None).await.0, 1);
    // The chain recomputed with the right key verifies again (the control is the key).
    raw.rechain(|p, seq, e| audit_hash(&key(), p, seq, e)).await;
    assert!(s.verify_audit(None).await.unwrap().ok());
}

async fn legacy_chain_is_sealed_and_stays_verifiable(s: Arc<dyn Store>, raw: Raw) {
    // A database from before the key: two events hashed the unkeyed way.
    let mut prev = String::new();
    for seq in 1..=2 {
        let e = event("create_account", "alice", "1");
        let h = legacy_audit_hash(&prev, seq, &e);
        raw.exec(&format!(
            "INSERT INTO audit_events (time, app_code, username, scope_type, scope_id, action, resource_id, detail, seq, prev_hash, hash) \
             VALUES ({}, 'app', 'alice', 'biz', '1', 'create_account', '7', '{{}}', {seq}, '{prev}', '{h}')",
            e.time
        ))
        .await;
        raw.exec(&format!("UPDATE audit_head SET seq = {seq}, hash = '{h}' WHERE id = 1")).await;
        prev = h;
    }
    let report = s.verify_audit(None).await.unwrap();
    assert!(!report.ok(), "an unsealed legacy chain is not accepted as it is: {report:?}");
    // First start with the key: sealed once, by an audit_rekey event.
    assert_eq!(s.seal_legacy_audit(5).await.unwrap(), Some(3));
    assert_eq!(s.seal_legacy_audit(6).await.unwrap(), None);
    s.audit(&event("create_app", "bob", "1")).await.unwrap();
    let report = s.verify_audit(None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.checked, report.legacy), (4, 2));
    let rekey = &raw.audit_rows().await[2];
    assert_eq!(rekey.event.action, "audit_rekey");
    assert!(rekey.event.detail.contains(&prev), "{rekey:?}");
    // The legacy part is still tamper-evident.
    raw.exec("UPDATE audit_events SET username = 'mallory' WHERE seq = 1").await;
    assert_eq!(broken(&s, None).await.0, 1);
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
    let report = s.verify_audit(None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 40);
}

/// The database, its WAL and shared-memory files are owner-only, whatever the umask, and a
/// database left world-readable by an older version is tightened when opened.
#[tokio::test]
async fn sqlite_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let url = format!("sqlite://{}", db.display());
    let s = open_keyed(&url, key()).await.unwrap();
    s.audit(&event("create_app", "alice", "1")).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("t.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    drop(s);
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("t.db{suffix}"));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let _s = open_keyed(&url, key()).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("t.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{} tightened", p.display());
    }
}
