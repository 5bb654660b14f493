//! Scope boundaries of Shoal's own resources, on SQLite and PostgreSQL: dynamic groups and
//! check records belong to their scope, and a business set reaches its member businesses
//! only (an undefined set reaches nothing).

#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};

on_both_stores!(dynamic_groups_stay_in_their_scope, check_records_are_authorised_and_final, biz_sets_reach_their_members_only);

async fn shoal_as(h: &Harness, app: &str, secret: &str, path: &str, body: Value) -> Value {
    let auth = json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": USER}).to_string();
    let url = format!("{}/api/shoal/v1/{path}", h.url);
    let r = if body.is_null() {
        h.http.get(url).header("X-Bkapi-Authorization", auth).send().await.unwrap()
    } else {
        h.http.post(url).header("X-Bkapi-Authorization", auth).json(&body).send().await.unwrap()
    };
    r.json().await.unwrap()
}

async fn admin(h: &Harness, path: &str, body: Value) -> Value {
    let v = shoal_as(h, APP, SECRET, path, body).await;
    assert_eq!(v["code"], 0, "{path}: {v}");
    v["data"].clone()
}

/// A new app holding `role` in business `biz`; answers its secret.
async fn app_with(h: &Harness, code: &str, grants: &[(&str, &str)]) -> String {
    let created = admin(h, "apps", json!({"code": code})).await;
    for (biz, role) in grants {
        admin(h, "grants", json!({"app_code": code, "bk_scope_type": "biz", "bk_scope_id": biz, "role": role})).await;
    }
    created["secret"].as_str().unwrap().to_string()
}

async fn audit_actions(h: &Harness) -> Vec<String> {
    let v = admin(h, "audit?length=1000", Value::Null).await;
    v["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap_or("").to_string()).collect()
}

async fn dynamic_groups_stay_in_their_scope(mut h: Harness) {
    h.add_agent_in(2, "127.0.0.71", None, None, &[("role", "db")]).await;
    h.add_agent_in(3, "127.0.0.72", None, None, &[("role", "db")]).await;
    h.wait_connected(2).await;
    // Business 2 saves group "dbs".
    admin(&h, "dynamic_groups", json!({"bk_scope_type": "biz", "bk_scope_id": "2", "id": "dbs", "name": "dbs", "selector": "role=db"}))
        .await;
    // An app that manages business 3 saves a group of the same id in its own scope: business 2's
    // group is untouched, and business 3's call cannot name business 2's group at all.
    let secret = app_with(&h, "m3", &[("3", "manage")]).await;
    let v = shoal_as(
        &h,
        "m3",
        &secret,
        "dynamic_groups",
        json!({"bk_scope_type": "biz", "bk_scope_id": "3", "id": "dbs", "name": "hijack", "selector": "role=none"}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let groups = admin(&h, "dynamic_groups?bk_scope_type=biz&bk_scope_id=2", Value::Null).await;
    assert_eq!(groups["total"], 1, "{groups}");
    assert_eq!(groups["data"][0]["name"], "dbs", "business 2's group was changed from business 3: {groups}");
    assert_eq!(groups["data"][0]["selector"], "role=db");
    // Its own business 2 call is refused, and deleting through business 3 finds nothing of 2's.
    let v =
        shoal_as(&h, "m3", &secret, "dynamic_groups", json!({"bk_scope_type": "biz", "bk_scope_id": "2", "id": "dbs", "name": "x"})).await;
    assert_eq!(v["code"], 9900403, "{v}");
    let v = shoal_as(&h, "m3", &secret, "dynamic_groups/delete", json!({"bk_scope_type": "biz", "bk_scope_id": "3", "id": "dbs"})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(admin(&h, "dynamic_groups?bk_scope_type=biz&bk_scope_id=2", Value::Null).await["total"], 1);
    // The group still targets business 2's host.
    h.create_account(2, USER, &current_user()).await;
    let (_, v) = h
        .post(
            "fast_execute_script",
            json!({"bk_scope_type": "biz", "bk_scope_id": "2", "script_content": b64("echo hi"), "script_language": 1,
            "account_alias": USER, "target_server": {"dynamic_group_list": [{"id": "dbs"}]}}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let (_, st) = h
        .post(
            "get_job_instance_status",
            json!({"bk_scope_type": "biz", "bk_scope_id": "2", "job_instance_id": job, "return_ip_result": true}),
        )
        .await;
    assert_eq!(hosts_of(&st["data"]).len(), 1, "{st}");
    assert_eq!(hosts_of(&st["data"])[0]["ip"], "127.0.0.71", "{st}");
    let actions = audit_actions(&h).await;
    assert!(actions.iter().filter(|a| *a == "save_dynamic_group").count() >= 2, "{actions:?}");
    assert!(actions.iter().any(|a| a == "delete_dynamic_group"), "{actions:?}");
}

async fn check_records_are_authorised_and_final(h: Harness) {
    let open = json!({"bk_scope_type": "biz", "bk_scope_id": "2", "check": "agent", "hosts": ["0:10.0.0.1:1"], "ttl_secs": 600});
    let rec = admin(&h, "checks", open.clone()).await;
    let (id, run_id) = (rec["check_id"].as_str().unwrap().to_string(), rec["run_id"].as_str().unwrap().to_string());

    // An app with rights in business 3 only: it can neither read, list, open nor update 2's records.
    let secret = app_with(&h, "r3", &[("3", "run")]).await;
    assert_eq!(shoal_as(&h, "r3", &secret, &format!("checks/{id}"), Value::Null).await["code"], 9900403);
    assert_eq!(shoal_as(&h, "r3", &secret, "checks?bk_scope_type=biz&bk_scope_id=2", Value::Null).await["code"], 9900403);
    assert_eq!(shoal_as(&h, "r3", &secret, "checks", open.clone()).await["code"], 9900403);
    let v = shoal_as(&h, "r3", &secret, &format!("checks/{id}/update"), json!({"run_id": run_id, "status": "finish"})).await;
    assert_eq!(v["code"], 9900403, "{v}");
    // The same check on the same hosts in business 3 is another record: 2's run does not lock it.
    let mine = shoal_as(
        &h,
        "r3",
        &secret,
        "checks",
        json!({"bk_scope_type": "biz", "bk_scope_id": "3", "check": "agent", "hosts": ["0:10.0.0.1:1"]}),
    )
    .await;
    assert_eq!(mine["code"], 0, "{mine}");
    assert_ne!(mine["data"]["check_id"].as_str().unwrap(), id);

    // The holder finishes its record; a finished record is not rewritten afterwards.
    admin(&h, &format!("checks/{id}/update"), json!({"run_id": run_id, "status": "finish", "report": {"ok": true}})).await;
    let v = shoal_as(&h, APP, SECRET, &format!("checks/{id}/update"), json!({"run_id": run_id, "report": {"ok": false}})).await;
    assert_ne!(v["code"], 0, "a finished record was overwritten: {v}");
    assert_eq!(admin(&h, &format!("checks/{id}"), Value::Null).await["report"]["ok"], true);
    let actions = audit_actions(&h).await;
    assert!(actions.iter().any(|a| a == "open_check_record"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "finish_check_record"), "{actions:?}");
}

async fn biz_sets_reach_their_members_only(mut h: Harness) {
    h.add_agent_in(2, "127.0.0.81", None, None, &[]).await;
    h.add_agent_in(3, "127.0.0.82", None, None, &[]).await;
    h.wait_connected(2).await;
    let (b2, b3) = (h.host_id_of("127.0.0.81").await, h.host_id_of("127.0.0.82").await);
    let set = json!({"bk_scope_type": "biz_set", "bk_scope_id": "8000001"});
    h.post(
        "create_account",
        json!({"bk_scope_type": "biz_set", "bk_scope_id": "8000001", "account": current_user(),
        "alias": USER, "type": 1, "category": 1}),
    )
    .await;
    let run = |targets: Value| {
        let mut b = set.clone();
        b["script_content"] = json!(b64("echo hi"));
        b["script_language"] = json!(1);
        b["account_alias"] = json!(USER);
        b["target_server"] = targets;
        b
    };
    // Undefined set: it reaches no host, by id or by topology.
    let (_, v) = h.post("fast_execute_script", run(json!({"host_id_list": [b2]}))).await;
    assert_ne!(v["code"], 0, "an undefined business set reached a host: {v}");
    let (_, v) = h.post("fast_execute_script", run(json!({"topo_node_list": [{"id": 2, "node_type": "biz"}]}))).await;
    assert_ne!(v["code"], 0, "{v}");
    // Defined with business 2 only: 2's host is reachable, 3's is not.
    let saved = admin(&h, "biz_sets", json!({"id": 8000001, "name": "prod", "members": [2]})).await;
    assert_eq!(saved["members"], json!([2]));
    let (_, v) = h.post("fast_execute_script", run(json!({"host_id_list": [b2]}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = h.post("fast_execute_script", run(json!({"host_id_list": [b3]}))).await;
    assert_ne!(v["code"], 0, "a non-member business's host was reached: {v}");
    let (_, v) = h.post("fast_execute_script", run(json!({"topo_node_list": [{"id": 3, "node_type": "biz"}]}))).await;
    assert_ne!(v["code"], 0, "{v}");
    // Managing sets is for platform admins.
    let secret = app_with(&h, "m2", &[("2", "admin")]).await;
    assert_eq!(shoal_as(&h, "m2", &secret, "biz_sets", json!({"id": 8000001, "members": [2, 3]})).await["code"], 9900403);
    assert!(audit_actions(&h).await.iter().any(|a| a == "save_biz_set"));
}
