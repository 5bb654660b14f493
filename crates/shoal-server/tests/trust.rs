//! Trust end to end, on SQLite and PostgreSQL: apps and grants with every denial path, execution
//! accounts, dangerous-command rules (scan, intercept, check), the audit chain detecting an
//! edited row, agent revocation, and sensitive values kept out of answers; evidence and at
//! rest: denied calls audited, the chain checked against an exported head, files owner-only,
//! account grants bound to the account's id, app secrets in argon2id.

#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    apps_grants_and_every_denial,
    dangerous_rules_scan_intercept_and_check,
    audit_is_chained_filtered_and_tamper_evident,
    revoked_agent_is_refused,
    denied_calls_leave_an_audit_event,
    audit_verify_checks_an_exported_head,
    recreated_alias_does_not_inherit_grants,
    app_secrets_are_argon2_and_legacy_ones_upgraded
);

/// Call a JOB v3 API as another app.
async fn call_as(h: &Harness, app: &str, secret: &str, name: &str, body: Value) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/api/v3/{name}", h.url))
        .header("X-Bkapi-Authorization", json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": "carol"}).to_string())
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Call a Shoal API as `app` (POST with a body, or GET when `body` is null).
async fn shoal_as(h: &Harness, app: &str, secret: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": USER}).to_string();
    let url = format!("{}/api/shoal/v1/{path}", h.url);
    let r = if body.is_null() {
        h.http.get(url).header("X-Bkapi-Authorization", auth).send().await.unwrap()
    } else {
        h.http.post(url).header("X-Bkapi-Authorization", auth).json(&body).send().await.unwrap()
    };
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn admin(h: &Harness, path: &str, body: Value) -> Value {
    let (status, v) = shoal_as(h, APP, SECRET, path, body).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{path}: {v}");
    v["data"].clone()
}

fn script_body(hosts: &[i64], alias: &str, script: &str) -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64(script), "script_language": 1,
           "account_alias": alias, "target_server": {"host_id_list": hosts}})
}

async fn jobs(h: &Harness) -> i64 {
    h.post("get_job_instance_list", history("1")).await.1["data"]["total"].as_i64().unwrap()
}

fn assert_denied(v: &Value, action: &str) {
    assert_eq!(v["code"], 9900403, "{v}");
    assert_eq!(v["result"], false);
    assert_eq!(v["permission"]["system_id"], "bk_job", "{v}");
    assert_eq!(v["permission"]["actions"][0]["id"], action, "{v}");
}

async fn apps_grants_and_every_denial(mut h: Harness) {
    h.add_agent("127.0.0.61", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let created = admin(&h, "apps", json!({"code": "ci", "description": "the CI"})).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let list = admin(&h, "apps", Value::Null).await;
    assert!(!list.to_string().contains(&secret), "the secret is shown once, never listed");
    let list_q = history("1");

    // Created with an Idempotency-Key (as the CLI does): the secret is still kept nowhere.
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/apps", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .header("Idempotency-Key", "create-ci2")
        .json(&json!({"code": "ci2"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let secret2 = v["data"]["secret"].as_str().unwrap().to_string();
    assert!(secret2.len() >= 32 && secret2 != secret);
    if h.config.database_url.is_none() {
        for path in files_under(&h.config.data_dir.clone().unwrap()) {
            let bytes = std::fs::read(&path).unwrap();
            for s in [&secret, &secret2] {
                assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "{} holds an app secret in clear", path.display());
            }
        }
    }

    // No grant at all: reading the scope is denied with JOB's permission object.
    let (status, v) = call_as(&h, "ci", &secret, "get_job_instance_list", list_q.clone()).await;
    assert_eq!(status, 200);
    assert_denied(&v, "access_business");
    assert_eq!(v["permission"]["actions"][0]["related_resource_types"][0]["instances"][0][0]["id"], "1");

    // Wrong scope: a grant on business 2 does not open business 1.
    admin(&h, "grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "2", "role": "run"})).await;
    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, USER, "echo hi")).await;
    assert_denied(&v, "quick_execute_script");

    // Read-only role in scope 1 (approve): may list, may not run.
    admin(&h, "grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "approve"})).await;
    let (_, v) = call_as(&h, "ci", &secret, "get_job_instance_list", list_q.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, USER, "echo hi")).await;
    assert_denied(&v, "quick_execute_script");
    let (_, v) = shoal_as(&h, "ci", &secret, "hosts?bk_biz_id=1", Value::Null).await;
    assert_eq!(v["data"]["total"], 1, "{v}");
    let (_, v) = shoal_as(&h, "ci", &secret, "hosts", Value::Null).await;
    assert_denied(&v, "manage_platform");

    // Run role, but the account is not granted (1244004) or does not exist (1244003).
    admin(&h, "grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "run"})).await;
    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, USER, "echo hi")).await;
    assert_eq!(v["code"], 1244004, "{v}");
    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, "nobody", "echo hi")).await;
    assert_eq!(v["code"], 1244003, "{v}");
    let (_, v) = call_as(&h, "ci", &secret, "get_account_list", list_q.clone()).await;
    assert_eq!(v["data"]["total"], 0, "ungranted accounts are not listed: {v}");

    admin(&h, "account_grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": USER})).await;
    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, USER, "echo granted")).await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job, std::time::Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let (_, v) = call_as(&h, "ci", &secret, "get_account_list", list_q.clone()).await;
    assert_eq!(v["data"]["total"], 1, "{v}");

    // Missing role: managing accounts needs the scope's admin role.
    let acct = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": "root", "alias": "ci-root", "type": 1, "category": 1});
    let (_, v) = call_as(&h, "ci", &secret, "create_account", acct.clone()).await;
    assert_denied(&v, "manage_business");
    // Platform calls need an admin app.
    let (_, v) = shoal_as(&h, "ci", &secret, "apps", Value::Null).await;
    assert_denied(&v, "manage_platform");
    let (_, v) =
        call_as(&h, "ci", &secret, "create_dangerous_rule", json!({"expression": "x", "script_language_list": [1], "action": 1})).await;
    assert_denied(&v, "manage_platform");
    // The scope admin role opens account management.
    admin(&h, "grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "admin"})).await;
    let (_, v) = call_as(&h, "ci", &secret, "create_account", acct).await;
    assert_eq!(v["code"], 0, "{v}");

    // Rotation: the old secret stops working at once.
    let rotated = admin(&h, "apps/rotate", json!({"code": "ci"})).await;
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    let (status, v) = call_as(&h, "ci", &secret, "get_job_instance_list", list_q.clone()).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)));
    let (_, v) = call_as(&h, "ci", &new_secret, "get_job_instance_list", list_q.clone()).await;
    assert_eq!(v["code"], 0, "{v}");

    // Revocation: unauthenticated from then on, grants gone; the bootstrap app cannot be revoked.
    admin(&h, "apps/revoke", json!({"code": "ci"})).await;
    let (status, v) = call_as(&h, "ci", &new_secret, "get_job_instance_list", list_q.clone()).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)));
    assert_eq!(admin(&h, "grants?app_code=ci", Value::Null).await["total"], 0);
    let (_, v) = shoal_as(&h, APP, SECRET, "apps/revoke", json!({"code": APP})).await;
    assert_ne!(v["code"], 0, "{v}");
    let listed = admin(&h, "apps", Value::Null).await;
    let ci = listed["data"].as_array().unwrap().iter().find(|a| a["code"] == "ci").unwrap().clone();
    assert_eq!(ci["revoked"], true);
}

async fn dangerous_rules_scan_intercept_and_check(mut h: Harness) {
    h.add_agent("127.0.0.62", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // Bad input answers JOB codes.
    let (_, v) = h.post("create_dangerous_rule", json!({"expression": "(", "script_language_list": [1], "action": 2})).await;
    assert_eq!(v["code"], 1241005, "{v}");
    let (_, v) = h.post("create_dangerous_rule", json!({"expression": "x", "script_language_list": [1], "action": 3})).await;
    assert_eq!(v["code"], 1241005, "{v}");
    let (_, v) = h.post("create_dangerous_rule", json!({"script_language_list": [1], "action": 1})).await;
    assert_eq!(v["code"], 1241004, "{v}");

    let (_, v) = h
        .post(
            "create_dangerous_rule",
            json!({"expression": "forbidden-\\w+", "script_language_list": [1], "description": "no forbidden words", "action": 2}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["status"], 0, "new rules start disabled");
    let id = v["data"]["id"].as_i64().unwrap();
    let script = "#!/bin/bash\n# forbidden-comment is skipped\necho forbidden-word\n";

    // Disabled: the job runs.
    let before = jobs(&h).await;
    h.execute(script, &hosts, json!({})).await;
    assert_eq!(jobs(&h).await, before + 1);

    // Intercept: 1244019, no job created, the refusal recorded and audited.
    let (_, v) = h.post("enable_dangerous_rule", json!({"id": id})).await;
    assert_eq!(v["data"]["status"], 1, "{v}");
    let (_, v) = h.post("fast_execute_script", script_body(&hosts, USER, script)).await;
    assert_eq!((v["code"].as_i64(), v["result"].as_bool()), (Some(1244019), Some(false)), "{v}");
    assert_eq!(jobs(&h).await, before + 1, "no job for an intercepted script");
    let (_, v) = shoal_as(&h, APP, SECRET, "danger_records", Value::Null).await;
    let rec = v["data"]["data"].as_array().unwrap().iter().find(|r| r["rule_id"] == id).cloned().expect("a record of the hit");
    assert_eq!(
        (rec["blocked"].as_bool(), rec["line"].as_i64(), rec["match_content"].as_str()),
        (Some(true), Some(3), Some("forbidden-word"))
    );
    let (_, v) = shoal_as(&h, APP, SECRET, "audit?action=dangerous_script_blocked", Value::Null).await;
    assert_eq!(v["data"]["total"], 1, "{v}");

    // check_script reports the rule (level 3) and the comment line is skipped.
    let (_, v) = h.post("check_script", json!({"script_language": 1, "content": b64(script)})).await;
    let found: Vec<i64> = v["data"].as_array().unwrap().iter().map(|f| f["line"].as_i64().unwrap()).collect();
    assert_eq!(found, vec![3], "{v}");
    assert_eq!(v["data"][0]["level"], 3);
    // Built-in shell checks show in check_script (missing shebang warning, rm -rf /).
    let (_, v) = h.post("check_script", json!({"script_language": 1, "content": b64("rm -rf /")})).await;
    let levels: Vec<i64> = v["data"].as_array().unwrap().iter().map(|f| f["level"].as_i64().unwrap()).collect();
    assert!(levels.contains(&1) && levels.contains(&3), "{v}");

    // Scan: recorded only, the job runs.
    let (_, v) =
        h.post("update_dangerous_rule", json!({"id": id, "expression": "forbidden-\\w+", "script_language_list": [1], "action": 1})).await;
    assert_eq!((v["data"]["action"].as_i64(), v["data"]["status"].as_i64()), (Some(1), Some(1)), "{v}");
    h.execute(script, &hosts, json!({})).await;
    assert_eq!(jobs(&h).await, before + 2);
    let (_, v) = shoal_as(&h, APP, SECRET, "danger_records", Value::Null).await;
    let scans = v["data"]["data"].as_array().unwrap().iter().filter(|r| r["rule_id"] == id && r["blocked"] == false).count();
    assert_eq!(scans, 1, "{v}");

    // Other languages are not affected; list filters; disable and delete.
    let (_, v) = h.post("get_dangerous_rule_list", json!({"script_language_list": [4]})).await;
    assert_eq!(v["data"], json!([]));
    let (_, v) = h.post("get_dangerous_rule_list", json!({})).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let (_, v) = h.post("disable_dangerous_rule", json!({"id": id})).await;
    assert_eq!(v["data"]["status"], 0);
    let (_, v) = h.post("delete_dangerous_rule", json!({"id": id})).await;
    assert_eq!(v["data"]["id"], id);
    let (_, v) = h.post("delete_dangerous_rule", json!({"id": id})).await;
    assert_eq!(v["code"], 1241005);
}

async fn audit_is_chained_filtered_and_tamper_evident(mut h: Harness) {
    h.add_agent("127.0.0.63", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let data = h.execute("echo audited", &hosts, json!({})).await;
    let job = data["job_instance_id"].as_i64().unwrap();
    admin(&h, "apps", json!({"code": "auditee"})).await;

    let v = admin(&h, "audit?action=fast_execute_script", Value::Null).await;
    let ev = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource_id"].as_str() == Some(job.to_string().as_str()))
        .cloned()
        .expect("job start audited");
    assert_eq!((ev["app_code"].as_str(), ev["username"].as_str(), ev["bk_scope_id"].as_str()), (Some(APP), Some(USER), Some("1")));
    assert_eq!(ev["detail"]["script_sha256"].as_str().unwrap().len(), 64);
    let v = admin(&h, "audit?username=nobody", Value::Null).await;
    assert_eq!(v["total"], 0);
    let v = admin(&h, "audit?bk_scope_type=biz&bk_scope_id=1", Value::Null).await;
    let actions: Vec<&str> = v["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"create_account") && actions.contains(&"fast_execute_script"), "{actions:?}");
    let future = shoal_core::time::now_ms() + 60_000;
    assert_eq!(admin(&h, &format!("audit?time_start={future}"), Value::Null).await["total"], 0);
    let v = admin(&h, "audit?action=create_app", Value::Null).await;
    assert_eq!(v["data"][0]["resource_id"], "auditee");
    assert!(!v.to_string().contains("secret\""), "no secret in audit details: {v}");

    let ok = admin(&h, "audit/verify", Value::Null).await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(ok["checked"].as_i64().unwrap() >= 3);

    // Edit one row behind Shoal's back: the chain says where.
    let sql = format!("UPDATE audit_events SET username = 'mallory' WHERE seq = {}", ev["seq"]);
    match &h.config.database_url {
        Some(url) => {
            let p = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(&sql).execute(&p).await.unwrap();
        }
        None => {
            let path = h.config.data_dir.clone().unwrap().join("shoal.db");
            let p = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query(&sql).execute(&p).await.unwrap();
        }
    }
    let bad = admin(&h, "audit/verify", Value::Null).await;
    assert_eq!(bad["ok"], false, "{bad}");
    assert_eq!(bad["broken_at"], ev["seq"], "{bad}");
}

async fn revoked_agent_is_refused(mut h: Harness) {
    let i = h.add_agent("127.0.0.64", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.64").await;
    let (_, v) = shoal_as(&h, "ci-none", "x", "agents/revoke", json!({"bk_host_id": host})).await;
    assert_eq!(v["code"], 1240005, "unauthenticated callers cannot revoke");
    let v = admin(&h, "agents/revoke", json!({"bk_host_id": host})).await;
    assert_eq!(v["revoked"], true);
    let g = h.shared.gateway.clone();
    wait_for("revoked agent disconnected", std::time::Duration::from_secs(10), || {
        let g = g.clone();
        async move { !g.is_connected(host) }
    })
    .await;
    h.stop_agent(i).await;
    // The same agent (same state dir, same agent id) comes back: refused, and it stops.
    let again = h.add_agent("127.0.0.64", None, None, &[]).await;
    wait_for("refused agent stops", std::time::Duration::from_secs(10), || {
        let done = h.agent_finished(again);
        async move { done }
    })
    .await;
    assert!(!h.shared.gateway.is_connected(host));
    // Its host has left the fleet: no task can name it.
    let (_, v) = h.post("fast_execute_script", script_body(&[host], USER, "echo hi")).await;
    assert_eq!(v["code"], 1243053, "a revoked host is no target: {v}");
    assert!(h.shared.store.list_hosts(None).await.unwrap().iter().all(|x| x.bk_host_id != host));
}

/// Run SQL on the server's database behind its back, as someone with database access.
async fn tamper(h: &Harness, sql: &str) {
    match &h.config.database_url {
        Some(url) => {
            let p = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&p).await.unwrap();
        }
        None => {
            let path = h.config.data_dir.clone().unwrap().join("shoal.db");
            let p = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query(sql).execute(&p).await.unwrap();
        }
    }
}

async fn denials(h: &Harness, api: &str) -> Vec<Value> {
    admin(h, &format!("audit?action=denied:{api}"), Value::Null).await["data"].as_array().unwrap().clone()
}

async fn denied_calls_leave_an_audit_event(mut h: Harness) {
    h.add_agent("127.0.0.65", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let secret = admin(&h, "apps", json!({"code": "nosy"})).await["secret"].as_str().unwrap().to_string();
    let list_q = json!({"bk_scope_type": "biz", "bk_scope_id": "1"});

    // 9900403 in a scope.
    let (_, v) = call_as(&h, "nosy", &secret, "get_job_instance_list", list_q).await;
    assert_denied(&v, "access_business");
    let ev = denials(&h, "get_job_instance_list").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0]["app_code"].as_str(), ev[0]["username"].as_str(), ev[0]["bk_scope_type"].as_str(), ev[0]["bk_scope_id"].as_str()),
        (Some("nosy"), Some("app:nosy"), Some("biz"), Some("1"))
    );
    assert_eq!(ev[0]["detail"]["permission"], "access_business", "{ev:?}");

    // A platform call.
    let (_, v) = shoal_as(&h, "nosy", &secret, "apps", Value::Null).await;
    assert_denied(&v, "manage_platform");
    assert_eq!(denials(&h, "apps").await.len(), 1);

    // 1244004: an execution account not granted.
    admin(&h, "grants", json!({"app_code": "nosy", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "run"})).await;
    let (_, v) = call_as(&h, "nosy", &secret, "fast_execute_script", script_body(&hosts, USER, "echo hi")).await;
    assert_eq!(v["code"], 1244004, "{v}");
    let ev = denials(&h, "fast_execute_script").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0]["bk_scope_id"].as_str(), ev[0]["detail"]["alias"].as_str()), (Some("1"), Some(USER)), "{ev:?}");

    // Denial events are part of the chain.
    assert_eq!(admin(&h, "audit/verify", Value::Null).await["ok"], true);
}

async fn audit_verify_checks_an_exported_head(h: Harness) {
    for code in ["a1", "a2", "a3"] {
        admin(&h, "apps", json!({"code": code})).await;
    }
    let v = admin(&h, "audit/verify", Value::Null).await;
    assert_eq!(v["ok"], true, "{v}");
    let head = v["head"].as_str().unwrap().to_string();
    let (seq, _) = head.split_once(':').unwrap();
    let seq: i64 = seq.parse().unwrap();
    let v = admin(&h, &format!("audit/verify?expect_head={head}"), Value::Null).await;
    assert_eq!(v["ok"], true, "{v}");
    let (_, v) = shoal_as(&h, APP, SECRET, "audit/verify?expect_head=nonsense", Value::Null).await;
    assert_eq!(v["code"], 1241010, "{v}");

    // Cut the last event off and move the head back: consistent on its own...
    let rows = admin(&h, &format!("audit?after_seq={}", seq - 2), Value::Null).await;
    let before = rows["data"][0].clone();
    assert_eq!(before["seq"].as_i64(), Some(seq - 1));
    tamper(&h, &format!("DELETE FROM audit_events WHERE seq = {seq}")).await;
    tamper(&h, &format!("UPDATE audit_head SET seq = {}, hash = '{}' WHERE id = 1", seq - 1, before["hash"].as_str().unwrap())).await;
    assert_eq!(admin(&h, "audit/verify", Value::Null).await["ok"], true);
    // ...but not against the head kept elsewhere.
    let v = admin(&h, &format!("audit/verify?expect_head={head}"), Value::Null).await;
    assert_eq!((v["ok"].as_bool(), v["broken_at"].as_i64()), (Some(false), Some(seq)), "{v}");
}

async fn recreated_alias_does_not_inherit_grants(mut h: Harness) {
    h.add_agent("127.0.0.66", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let me = current_user();
    let deploy = h.create_account(1, "deploy", &me).await;
    let secret = admin(&h, "apps", json!({"code": "ci"})).await["secret"].as_str().unwrap().to_string();
    admin(&h, "grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "run"})).await;
    let g = admin(&h, "account_grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": "deploy"})).await;
    assert_eq!(g["account_id"], deploy["id"], "{g}");
    // No such account, or a named account in every business: refused with a reason.
    let (_, v) = shoal_as(
        &h,
        APP,
        SECRET,
        "account_grants",
        json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": "ghost"}),
    )
    .await;
    assert_eq!(v["code"], 1241010, "{v}");
    let (_, v) = shoal_as(
        &h,
        APP,
        SECRET,
        "account_grants",
        json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "*", "alias": "deploy"}),
    )
    .await;
    assert_eq!(v["code"], 1241010, "{v}");

    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, "deploy", "echo granted")).await;
    assert_eq!(v["code"], 0, "{v}");

    // The account is deleted and made again under the same alias (in real life as root).
    let (_, v) = h.post("delete_account", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "id": deploy["id"]})).await;
    assert_eq!(v["code"], 0, "{v}");
    let again = h.create_account(1, "deploy", &me).await;
    assert_ne!(again["id"], deploy["id"]);
    let (_, v) = call_as(&h, "ci", &secret, "fast_execute_script", script_body(&hosts, "deploy", "echo inherited?")).await;
    assert_eq!(v["code"], 1244004, "the old grant does not carry over: {v}");
    let grants = admin(&h, "account_grants?app_code=ci", Value::Null).await;
    assert_eq!(grants["total"], 0, "{grants}");
    let (_, v) = call_as(&h, "ci", &secret, "get_account_list", json!({"bk_scope_type": "biz", "bk_scope_id": "1"})).await;
    assert_eq!(v["data"]["total"], 0, "{v}");
}

async fn app_secrets_are_argon2_and_legacy_ones_upgraded(h: Harness) {
    let store = &h.shared.store;
    let secret = admin(&h, "apps", json!({"code": "fresh"})).await["secret"].as_str().unwrap().to_string();
    let stored = store.get_app("fresh").await.unwrap().unwrap();
    assert!(stored.secret_hash.starts_with("$argon2id$"), "{stored:?}");
    assert!(!stored.secret_hash.contains(&secret));
    let rotated = admin(&h, "apps/rotate", json!({"code": "fresh"})).await["secret"].as_str().unwrap().to_string();
    assert!(store.get_app("fresh").await.unwrap().unwrap().secret_hash.starts_with("$argon2id$"));
    let (_, v) = shoal_as(&h, "fresh", &rotated, "apps", Value::Null).await;
    assert_eq!(v["code"], 9900403, "authenticated (then denied): {v}");

    // An operator-chosen secret stored by an older version: salted SHA-256.
    let salt = "0123456789abcdef";
    let legacy = shoal_store::AppRow {
        code: "old".into(),
        salt: salt.into(),
        secret_hash: shoal_server::auth::hash_secret(salt, "hunter2"),
        is_admin: true,
        created_at: 1,
    };
    store.put_app(&legacy).await.unwrap();
    let (status, v) = shoal_as(&h, "old", "wrong", "apps", Value::Null).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)));
    assert_eq!(store.get_app("old").await.unwrap().unwrap().secret_hash, legacy.secret_hash, "no upgrade on a wrong secret");
    let (_, v) = shoal_as(&h, "old", "hunter2", "apps", Value::Null).await;
    assert_eq!(v["code"], 0, "the legacy hash still verifies: {v}");
    let upgraded = store.get_app("old").await.unwrap().unwrap();
    assert!(upgraded.secret_hash.starts_with("$argon2id$") && upgraded.salt.is_empty(), "upgraded on success: {upgraded:?}");
    let (_, v) = shoal_as(&h, "old", "hunter2", "apps", Value::Null).await;
    assert_eq!(v["code"], 0, "and verifies as argon2id: {v}");
    let (status, _) = shoal_as(&h, "old", "hunter3", "apps", Value::Null).await;
    assert_eq!(status, 401);
}

/// After a server start (and a restart over files left world-readable), the data directory
/// is 0700 and the database, its WAL and shared memory and both keys are 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_dir_and_its_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Harness::start(Backend::Sqlite).await.unwrap();
    admin(&h, "apps", json!({"code": "x"})).await;
    let dir = h.config.data_dir.clone().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let files = ["shoal.db", "shoal.db-wal", "shoal.db-shm", "secret-key", "audit-key"];
    let check = |when: &str| {
        assert_eq!(mode(&dir), 0o700, "{when}: data dir");
        for f in files {
            assert_eq!(mode(&dir.join(f)), 0o600, "{when}: {f}");
        }
    };
    check("first start");
    h.stop_server().await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in files {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    h.restart_server().await;
    admin(&h, "apps", json!({"code": "y"})).await;
    check("restart");
}
