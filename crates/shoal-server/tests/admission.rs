//! The admission door: dangerous commands checked on the parsed script and its parameters
//! (built-ins block unless an admin turns them off), the checks repeated at a deferred start
//! and on retry, and the running-job quota taken atomically with the creation.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shoal_core::danger::RM_ROOT_SPELLINGS;

on_both_stores!(
    rm_root_spellings_are_blocked_and_reported,
    look_alikes_are_admitted,
    parameter_borne_danger_is_blocked,
    builtins_are_turned_off_by_an_admin_only,
    deferred_start_rechecks_rules,
    retry_rechecks_rules,
    plan_execution_goes_through_the_same_checks,
);

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

/// A host to target (registered; nothing in these tests that is refused ever reaches it).
async fn one_host(h: &mut Harness, ip: &str) -> Vec<i64> {
    h.add_agent(ip, None, None, &[]).await;
    h.wait_connected(1).await;
    h.host_ids().await
}

fn body(hosts: &[i64], script: &str, extra: Value) -> Value {
    let mut b = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64(script), "script_language": 1,
                       "account_alias": USER, "target_server": {"host_id_list": hosts}, "start_task": false});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        b[k] = v;
    }
    b
}

async fn job_count(h: &Harness) -> i64 {
    h.shared.store.running_jobs(None, None).await.unwrap()
}

async fn rm_root_spellings_are_blocked_and_reported(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.141").await;
    assert!(RM_ROOT_SPELLINGS.len() >= 21);
    for script in RM_ROOT_SPELLINGS {
        let script = format!("#!/bin/bash\n{script}\n");
        let (_, v) = h.post("fast_execute_script", body(&hosts, &script, json!({"start_task": true}))).await;
        assert_eq!(v["code"], 1244019, "{script:?} was admitted: {v}");
        let (_, v) = h.post("check_script", json!({"script_language": 1, "content": b64(&script)})).await;
        assert_eq!(v["code"], 0, "{v}");
        let fatal: Vec<&Value> = v["data"].as_array().unwrap().iter().filter(|f| f["level"] == 3).collect();
        assert!(fatal.iter().any(|f| f["description"].as_str().unwrap().contains("rm -rf /")), "{script:?}: {v}");
    }
    assert_eq!(job_count(&h).await, 0, "nothing was created");
    let (_, v) = shoal_as(&h, APP, SECRET, "audit?action=dangerous_script_blocked&length=1000", Value::Null).await;
    assert_eq!(v["data"]["data"].as_array().map(Vec::len), Some(RM_ROOT_SPELLINGS.len()), "every refusal is audited");
}

async fn look_alikes_are_admitted(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.142").await;
    // Deliberately allowed: text only printed or stored, targets other than the root, and
    // variables the script does not set (see docs/security/admission.md).
    let harmless = [
        "rm -rf ./build",
        "rm -rf /tmp/shoal-test-*",
        "echo \"rm -rf /\"",
        "printf '%s\\n' 'rm -rf /'",
        "cat <<EOF\nrm -rf /\nEOF",
        "echo cm0gLXJmIC8= | base64 -d",
        "rm -rf \"$BUILD_DIR\"",
        "x=/tmp/x; rm -rf $x",
        "grep -r 'rm -rf /' /etc",
    ];
    for script in harmless {
        let (_, v) = h.post("fast_execute_script", body(&hosts, &format!("#!/bin/bash\n{script}\n"), json!({}))).await;
        assert_eq!(v["code"], 0, "{script:?} refused: {v}");
    }
}

async fn parameter_borne_danger_is_blocked(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.143").await;
    let script = "#!/bin/bash\nrm -rf \"$1\"\n";
    for (param, sensitive) in [("/", 0), ("/", 1), ("'/'", 0), ("/ /tmp/x", 0)] {
        let (_, v) =
            h.post("fast_execute_script", body(&hosts, script, json!({"script_param": b64(param), "is_param_sensitive": sensitive}))).await;
        assert_eq!(v["code"], 1244019, "param {param:?}: {v}");
    }
    // The parameters' own text: a script that evaluates its arguments.
    let (_, v) = h.post("fast_execute_script", body(&hosts, "#!/bin/sh\neval \"$@\"\n", json!({"script_param": b64("rm -rf /")}))).await;
    assert_eq!(v["code"], 1244019, "{v}");
    let (_, v) = h.post("fast_execute_script", body(&hosts, script, json!({"script_param": b64("/tmp/shoal-x")}))).await;
    assert_eq!(v["code"], 0, "{v}");
    // A custom rule sees the parameters too, in any language.
    let (_, v) =
        h.post("create_dangerous_rule", json!({"expression": "forbidden-param", "script_language_list": [1, 4], "action": 2})).await;
    h.post("enable_dangerous_rule", json!({"id": v["data"]["id"]})).await;
    let (_, v) = h
        .post(
            "fast_execute_script",
            body(
                &hosts,
                "#!/bin/bash
echo ok
",
                json!({"script_param": b64("forbidden-param")}),
            ),
        )
        .await;
    assert_eq!(v["code"], 1244019, "{v}");
    // A sensitive parameter is masked in what the refusal records.
    let sealed = json!({"script_param": b64("forbidden-param-s3cr3t"), "is_param_sensitive": 1});
    let (_, v) = h.post("fast_execute_script", body(&hosts, "#!/bin/bash\necho ok\n", sealed)).await;
    assert_eq!(v["code"], 1244019, "{v}");
    let (_, v) = shoal_as(&h, APP, SECRET, "danger_records", Value::Null).await;
    assert!(v["data"].to_string().contains("forbidden-param"), "recorded: {v}");
    assert!(!v.to_string().contains("s3cr3t"), "the sensitive value is recorded: {v}");
    let mut py = body(&hosts, "print('ok')", json!({"script_param": b64("--forbidden-param")}));
    py["script_language"] = json!(4);
    let (_, v) = h.post("fast_execute_script", py).await;
    assert_eq!(v["code"], 1244019, "{v}");
}

async fn builtins_are_turned_off_by_an_admin_only(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.144").await;
    let created = admin(&h, "apps", json!({"code": "ci", "description": "the CI"})).await;
    let secret = created["secret"].as_str().unwrap().to_string();
    admin(&h, "grants", json!({"app_code": "ci", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "admin"})).await;
    let (_, v) = shoal_as(&h, "ci", &secret, "danger/builtins/disable", json!({"name": "rm-root"})).await;
    assert_eq!(v["code"], 9900403, "a scope admin is not a platform admin: {v}");
    let (_, v) = shoal_as(&h, APP, SECRET, "danger/builtins/disable", json!({"name": "no-such"})).await;
    assert_eq!(v["code"], 1241005, "{v}");

    let list = admin(&h, "danger/builtins", Value::Null).await;
    assert!(list.as_array().unwrap().iter().all(|b| b["enabled"] == true), "{list}");
    let script = "#!/bin/bash\nrm -rf /\n";
    let (_, v) = h.post("fast_execute_script", body(&hosts, script, json!({}))).await;
    assert_eq!(v["code"], 1244019, "{v}");

    admin(&h, "danger/builtins/disable", json!({"name": "rm-root"})).await;
    let list = admin(&h, "danger/builtins", Value::Null).await;
    let rm = list.as_array().unwrap().iter().find(|b| b["name"] == "rm-root").unwrap().clone();
    assert_eq!(rm["enabled"], false, "{list}");
    // Off: admitted (created, never started); the other built-ins still block.
    let (_, v) = h.post("fast_execute_script", body(&hosts, script, json!({}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = h.post("fast_execute_script", body(&hosts, "#!/bin/bash\nmkfs.ext4 /dev/sda\n", json!({}))).await;
    assert_eq!(v["code"], 1244019, "{v}");

    admin(&h, "danger/builtins/enable", json!({"name": "rm-root"})).await;
    let (_, v) = h.post("fast_execute_script", body(&hosts, script, json!({}))).await;
    assert_eq!(v["code"], 1244019, "{v}");
    let (_, v) = shoal_as(&h, APP, SECRET, "audit?action=disable_danger_builtin", Value::Null).await;
    assert_eq!(v["data"]["data"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = shoal_as(&h, APP, SECRET, "audit?action=enable_danger_builtin", Value::Null).await;
    assert_eq!(v["data"]["data"].as_array().map(Vec::len), Some(1), "{v}");
}

async fn intercept_rule(h: &Harness, expression: &str) {
    let (_, v) = h.post("create_dangerous_rule", json!({"expression": expression, "script_language_list": [1], "action": 2})).await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = h.post("enable_dangerous_rule", json!({"id": v["data"]["id"]})).await;
    assert_eq!(v["code"], 0, "{v}");
}

async fn deferred_start_rechecks_rules(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.145").await;
    let (_, v) = h.post("fast_execute_script", body(&hosts, "#!/bin/bash\necho deferred-marker\n", json!({}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    // A parameter-borne one too: the stored (sealed) parameters are opened and checked.
    let (_, v) = h
        .post(
            "fast_execute_script",
            body(&hosts, "#!/bin/bash\nrm -rf \"$1\"\n", json!({"script_param": b64("/tmp/x"), "is_param_sensitive": 1})),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let second = v["data"]["job_instance_id"].as_i64().unwrap();

    intercept_rule(&h, "deferred-marker").await;
    intercept_rule(&h, r"rm -rf /tmp/x").await;
    for id in [job, second] {
        let start = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "operation_code": 2});
        let (_, v) = h.post("operate_job_instance", start).await;
        assert_eq!(v["code"], 1244019, "{v}");
        assert_eq!(h.status(id).await["job_instance"]["status"], 1, "still not started");
    }
    let (_, v) = shoal_as(&h, APP, SECRET, "audit?action=dangerous_script_blocked", Value::Null).await;
    let events = v["data"]["data"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{v}");
    assert!(events.iter().all(|e| e["detail"]["stage"] == "start"), "{v}");
}

async fn retry_rechecks_rules(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.146").await;
    let data = h.execute("#!/bin/bash\necho retry-marker\nexit 3\n", &hosts, json!({})).await;
    let job = data["job_instance_id"].as_i64().unwrap();
    let step = data["step_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 4, "failed: {st}");
    intercept_rule(&h, "retry-marker").await;
    for code in [2, 8] {
        let op =
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "operation_code": code});
        let (_, v) = h.post("operate_step_instance", op).await;
        assert_eq!(v["code"], 1244019, "retry {code}: {v}");
    }
    assert_eq!(h.status(job).await["job_instance"]["status"], 4, "not run again");
}

async fn apply(h: &Harness, doc: Value) -> i64 {
    let out = admin(h, "templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc})).await;
    out["plans"][0]["id"].as_i64().unwrap()
}

async fn execute_plan(h: &Harness, plan: i64, extra: Value) -> Value {
    let mut b = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        b[k] = v;
    }
    h.post("execute_job_plan", b).await.1
}

async fn plan_execution_goes_through_the_same_checks(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.147").await;
    // The built-in sees the final text: the variable in front of the body makes it `rm -rf /`.
    let doc = json!({"name": "wipe", "variables": [{"name": "DIR", "type": "string", "value": "/tmp/build"}],
                     "steps": [{"name": "s", "script": {"content": "#!/bin/bash\nrm -rf \"$DIR\"", "account": USER,
                                                         "target": {"host_id_list": hosts}}}]});
    let plan = apply(&h, doc).await;
    let v = execute_plan(&h, plan, json!({"global_var_list": [{"name": "DIR", "value": "/"}], "start_task": false})).await;
    assert_eq!(v["code"], 1244019, "{v}");
    let v = execute_plan(&h, plan, json!({"start_task": false})).await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    // A rule added after creation stops the deferred start of a plan job too.
    intercept_rule(&h, r"rm -rf /tmp/build").await;
    let start = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "operation_code": 2});
    let (_, v) = h.post("operate_job_instance", start).await;
    assert_eq!(v["code"], 1244019, "{v}");
}

mod quota_race {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        if let Some(h) = super::Harness::start_with(super::Backend::Sqlite, |c| c.max_running_jobs_per_app = 5).await {
            super::twenty_submits_five_slots(h).await;
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(h) = super::Harness::start_with(super::Backend::Postgres, |c| c.max_running_jobs_per_app = 5).await {
            super::twenty_submits_five_slots(h).await;
        }
    }
}

/// 20 concurrent submits against a per-app limit of 5: exactly 5 are admitted.
async fn twenty_submits_five_slots(mut h: Harness) {
    let hosts = one_host(&mut h, "127.0.0.148").await;
    let h = std::sync::Arc::new(h);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let h = h.clone();
        let b = body(&hosts, &format!("#!/bin/bash\necho {i}\n"), json!({}));
        set.spawn(async move { h.post("fast_execute_script", b).await.1 });
    }
    let mut codes = Vec::new();
    while let Some(v) = set.join_next().await {
        codes.push(v.unwrap()["code"].as_i64().unwrap());
    }
    codes.sort_unstable();
    let admitted = codes.iter().filter(|c| **c == 0).count();
    let refused = codes.iter().filter(|c| **c == 1244033).count();
    assert_eq!((admitted, refused), (5, 15), "{codes:?}");
    assert_eq!(job_count(&h).await, 5);
}
