//! Templates as documents, plans through JOB v3, multi-step jobs with confirmation,
//! variables, history / rollback and approvals.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    plan_runs_steps_with_variables_and_confirmation,
    failing_steps_retry_and_ignore,
    history_diff_rollback,
    approval_flow,
    roles_gate_library_templates_and_plans,
    dangerous_rules_cover_plan_steps,
    a_password_split_between_chunks_is_masked,
    a_pending_change_cannot_switch_approval_off,
    plan_changes_wait_for_approval,
    a_published_script_version_waits_for_reapproval,
    a_foreign_sealed_value_is_refused,
    secrets_never_leave_templates,
    diff_is_not_an_equality_oracle,
    variable_ids_survive_edits
);

async fn shoal(h: &Harness, user: &str, path: &str, body: Value) -> Value {
    let auth = json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": user}).to_string();
    let r = h.http.post(format!("{}/api/shoal/v1/{path}", h.url)).header("X-Bkapi-Authorization", auth).json(&body).send().await.unwrap();
    r.json().await.unwrap()
}

async fn shoal_get(h: &Harness, path: &str, query: &str) -> Value {
    let r =
        h.http.get(format!("{}/api/shoal/v1/{path}?{query}", h.url)).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    r.json().await.unwrap()
}

async fn apply(h: &Harness, user: &str, doc: Value) -> Value {
    let v = shoal(h, user, "templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc})).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"].clone()
}

async fn step_op(h: &Harness, job: i64, step: i64, code: i32) -> Value {
    let (_, v) = h
        .post(
            "operate_step_instance",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "operation_code": code}),
        )
        .await;
    v
}

async fn wait_status(h: &Harness, job: i64, status: i64) -> Value {
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = h.status(job).await;
        if st["job_instance"]["status"] == status {
            return st;
        }
        assert!(tokio::time::Instant::now() < end, "job {job} never reached {status}: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn execute_plan(h: &Harness, plan: i64, vars: Value) -> Value {
    let (_, v) =
        h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan, "global_var_list": vars})).await;
    v
}

fn deploy_doc(hosts: &[i64]) -> Value {
    json!({
        "name": "deploy",
        "description": "install and check",
        "variables": [
            {"name": "VERSION", "type": "string", "value": "1.0", "required": true},
            {"name": "TOKEN", "type": "password", "value": "hunter2-secret"},
            {"name": "PORTS", "type": "index_array", "value": "80 443"},
            {"name": "TARGETS", "type": "host_list", "server": {"host_id_list": hosts}}
        ],
        "steps": [
            {"name": "install", "script": {"content": "#!/bin/bash\necho version=$VERSION token=$TOKEN ports=${#PORTS[@]}", "account": USER, "target": {"variable": "TARGETS"}}},
            {"name": "go-ahead", "confirm": {"message": "Continue?", "users": [USER]}},
            {"name": "verify", "script": {"language": "python", "content": "print('verified')", "account": USER, "target": {"variable": "TARGETS"}}}
        ],
        "plans": [{"name": "default"}, {"name": "install-only", "steps": ["install"], "variables": {"VERSION": "9.9"}}]
    })
}

async fn plan_runs_steps_with_variables_and_confirmation(mut h: Harness) {
    h.add_agent("127.0.0.71", None, None, &[]).await;
    h.add_agent("127.0.0.72", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let out = apply(&h, USER, deploy_doc(&hosts)).await;
    assert_eq!((out["version"].as_i64(), out["state"].as_str()), (Some(1), Some("current")));
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    let install_only = out["plans"][1]["id"].as_i64().unwrap();

    // JOB's template and plan queries.
    let (_, tl) = h.get("get_job_template_list", "bk_scope_type=biz&bk_scope_id=1").await;
    assert_eq!(tl["data"]["data"][0]["name"], "deploy");
    let (_, pl) = h.get("get_job_plan_list", &format!("bk_scope_type=biz&bk_scope_id=1&job_template_id={}", out["template_id"])).await;
    assert_eq!(pl["data"]["total"], 2);
    assert_eq!(pl["data"]["data"][0]["need_update"], false);
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    let d = &d["data"];
    assert_eq!(d["id"], plan);
    assert_eq!(d["step_list"].as_array().unwrap().len(), 3);
    assert_eq!(d["step_list"][1]["type"], 3);
    assert_eq!(d["step_list"][0]["script_info"]["server"]["variable"], "TARGETS");
    assert_eq!(d["step_list"][0]["script_info"]["account"]["alias"], USER);
    let token = d["global_var_list"].as_array().unwrap().iter().find(|v| v["name"] == "TOKEN").unwrap().clone();
    assert_eq!((token["type"].as_i64(), token["value"].as_str(), token["used"].as_bool()), (Some(4), Some("******"), Some(true)));
    assert!(!d.to_string().contains("hunter2-secret"));

    // Run it: the first step, then a wait in status 7 at the confirmation.
    let r = execute_plan(&h, plan, json!([{"name": "VERSION", "value": "2.5"}])).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["data"]["job_instance_name"], "default");
    let job = r["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job, 7).await;
    let steps = st["step_instance_list"].as_array().unwrap().clone();
    assert_eq!(steps.iter().map(|s| s["status"].as_i64().unwrap()).collect::<Vec<_>>(), vec![3, 7, 1]);
    let install = steps[0]["step_instance_id"].as_i64().unwrap();
    let confirm = steps[1]["step_instance_id"].as_i64().unwrap();
    let logs = h.logs(job, install, &hosts).await;
    for out in logs.values() {
        assert_eq!(out, "version=2.5 token=****** ports=2\n", "variables reach the script; passwords are masked");
    }
    let (_, gv) = h.get("get_job_instance_global_var_value", &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}")).await;
    let list = gv["data"]["step_instance_var_list"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{gv}");
    assert!(gv.to_string().contains("\"2.5\"") && !gv.to_string().contains("hunter2"), "{gv}");
    // Not in the database files either (SQLite: the data dir; values are sealed at rest).
    for path in files_under(&h.dir.path().join("server")) {
        let bytes = std::fs::read(path).unwrap();
        let at = bytes.windows(14).position(|w| w == b"hunter2-secret");
        assert!(
            at.is_none(),
            "password value stored in clear: …{}…",
            String::from_utf8_lossy(&bytes[at.unwrap().saturating_sub(300)..at.unwrap() + 40])
        );
    }

    // Confirming a script step, or as someone else, is refused.
    assert_eq!(step_op(&h, job, install, 6).await["code"], 1241003);
    let v = h
        .http
        .post(format!("{}/api/v3/operate_step_instance", h.url))
        .header("X-Bkapi-Authorization", json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": "bob"}).to_string())
        .json(
            &json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": confirm, "operation_code": 6}),
        )
        .send()
        .await
        .unwrap();
    let v: Value = v.json().await.unwrap();
    assert_eq!(v["code"], 1244016, "{v}");

    // Confirm: the last step runs and the job succeeds.
    assert_eq!(step_op(&h, job, confirm, 6).await["code"], 0);
    let st = wait_status(&h, job, 3).await;
    assert!(st["finished"].as_bool().unwrap());
    let verify = st["step_instance_list"][2]["step_instance_id"].as_i64().unwrap();
    assert!(h.logs(job, verify, &hosts).await.values().all(|l| l == "verified\n"));

    // Reject, re-open, confirm.
    let job2 = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job2, 7).await;
    let confirm2 = st["step_instance_list"][1]["step_instance_id"].as_i64().unwrap();
    assert_eq!(step_op(&h, job2, confirm2, 9).await["code"], 0);
    let st = wait_status(&h, job2, 13).await;
    assert!(st["finished"].as_bool().unwrap());
    assert_eq!(st["step_instance_list"][1]["status"], 13);
    assert_eq!(st["step_instance_list"][2]["status"], 1, "a rejected job runs nothing more");
    assert_eq!(step_op(&h, job2, confirm2, 10).await["code"], 0);
    wait_status(&h, job2, 7).await;
    assert_eq!(step_op(&h, job2, confirm2, 6).await["code"], 0);
    wait_status(&h, job2, 3).await;

    // Terminating a job that waits at its confirmation ends it at once.
    let job4 = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    wait_status(&h, job4, 7).await;
    let (_, v) = h
        .post("operate_job_instance", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job4, "operation_code": 1}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let st = wait_status(&h, job4, 11).await;
    assert_eq!(st["step_instance_list"][1]["status"], 11);
    assert_eq!(st["step_instance_list"][2]["status"], 1);

    // A plan with chosen steps and its own values.
    let job3 = execute_plan(&h, install_only, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job3, 3).await;
    assert_eq!(st["step_instance_list"].as_array().unwrap().len(), 1);
    let s = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    assert!(h.logs(job3, s, &hosts).await.values().all(|l| l.starts_with("version=9.9 ")));

    // Bad input.
    assert_eq!(execute_plan(&h, 999_999, json!([])).await["code"], 1244012);
    assert_eq!(execute_plan(&h, plan, json!([{"name": "NOPE", "value": "x"}])).await["code"], 1241005);
    assert_eq!(execute_plan(&h, plan, json!([{"name": "VERSION", "value": ""}])).await["code"], 1241004);
}

async fn a_password_split_between_chunks_is_masked(mut h: Harness) {
    h.add_agent("127.0.0.74", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // 65,530 bytes, then the password: it straddles the 64 KiB boundary between two chunks.
    let doc = json!({
        "name": "split",
        "variables": [{"name": "PW", "type": "password", "value": "split-secret-42"}],
        "steps": [{"name": "print", "script": {"content": "#!/bin/bash\nhead -c 65530 /dev/zero | tr '\\0' x; echo \"$PW\"; echo done",
                   "account": USER, "target": {"host_id_list": hosts}}}],
        "plans": [{"name": "default"}]
    });
    let out = apply(&h, USER, doc).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    let r = execute_plan(&h, plan, json!([])).await;
    assert_eq!(r["code"], 0, "{r}");
    let job = r["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job, 3).await;
    let step = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    let logs = h.logs(job, step, &hosts).await;
    let log = &logs[&hosts[0]];
    assert!(log.ends_with("xxxx******\ndone\n"), "…{}", &log[log.len().saturating_sub(40)..]);
    assert_eq!(log.len(), 65530 + "******\ndone\n".len());
    // No piece of it at rest either (SQLite: the data dir).
    for path in files_under(&h.dir.path().join("server")) {
        let bytes = std::fs::read(path).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"secret-4" || w == b"split-se"), "a piece of the password is stored in clear");
    }
}

async fn failing_steps_retry_and_ignore(mut h: Harness) {
    h.add_agent("127.0.0.73", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let marker = h.dir.path().join("second-try");
    let doc = json!({
        "name": "flaky",
        "steps": [
            {"name": "flaky", "script": {"content": format!("if [ -e {m} ]; then echo ok; else touch {m}; echo first; exit 1; fi", m = marker.display()), "account": USER, "target": {"host_id_list": hosts}}},
            {"name": "tolerated", "script": {"content": "exit 2", "account": USER, "target": {"host_id_list": hosts}, "ignore_error": true}},
            {"name": "last", "script": {"content": "echo last", "account": USER, "target": {"host_id_list": hosts}}}
        ]
    });
    let out = apply(&h, USER, doc).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(out["plans"][0]["name"], "default");
    let job = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job, 4).await;
    let statuses: Vec<i64> = st["step_instance_list"].as_array().unwrap().iter().map(|s| s["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![4, 1, 1], "a failing step stops the job");
    let flaky = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    // Retry the failed hosts: the step runs again with execute_count 1 and the job goes on;
    // the ignore-error step fails without stopping it.
    assert_eq!(step_op(&h, job, flaky, 2).await["code"], 0);
    let st = wait_status(&h, job, 3).await;
    let steps = st["step_instance_list"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["status"].as_i64().unwrap()).collect::<Vec<_>>(), vec![3, 6, 3]);
    assert_eq!(steps[0]["execute_count"], 1);
    assert_eq!(h.logs(job, flaky, &hosts).await.values().next().unwrap(), "ok\n");

    // Ignore the error of a failed step by hand.
    std::fs::remove_file(&marker).unwrap();
    let job = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job, 4).await;
    let flaky = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    assert_eq!(step_op(&h, job, flaky, 3).await["code"], 0);
    let st = wait_status(&h, job, 3).await;
    assert_eq!(st["step_instance_list"][0]["status"], 6);
    assert_eq!(step_op(&h, job, flaky, 3).await["code"], 1241003, "nothing to ignore any more");
}

/// Run a one-step plan to success and return the first host's output.
async fn run_plan(h: &Harness, plan: i64) -> String {
    let job = execute_plan(h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(h, job, 3).await;
    let s = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    h.logs(job, s, &h.host_ids().await).await.into_values().next().unwrap()
}

async fn history_diff_rollback(mut h: Harness) {
    h.add_agent("127.0.0.74", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let v1 = json!({"name": "hist", "variables": [{"name": "MSG", "type": "string", "value": "one"}],
                    "steps": [{"name": "say", "script": {"content": "echo $MSG", "account": USER, "target": {"host_id_list": hosts}}}]});
    let out = apply(&h, USER, v1.clone()).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    // Unchanged documents make no version.
    assert_eq!(apply(&h, USER, v1.clone()).await["changed"], false);
    let mut v2 = v1.clone();
    v2["variables"][0]["value"] = json!("two");
    let preview = shoal(&h, USER, "templates/diff", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": v2})).await;
    assert_eq!(preview["data"]["changes"][0]["path"], "variables[MSG].value", "{preview}");
    let out2 = apply(&h, USER, v2).await;
    assert_eq!(out2["version"], 2);
    let hist = shoal_get(&h, "templates/history", "bk_scope_type=biz&bk_scope_id=1&name=hist").await;
    let versions = hist["data"]["versions"].as_array().unwrap();
    assert_eq!(versions.iter().map(|v| v["state"].as_str().unwrap()).collect::<Vec<_>>(), vec!["superseded", "current"]);
    assert_eq!(versions[1]["author"], USER);
    assert_eq!(versions[1]["changes"][0]["after"], "two");
    let d = shoal_get(&h, "templates/version_diff", "bk_scope_type=biz&bk_scope_id=1&name=hist&from=1&to=2").await;
    assert_eq!(d["data"]["changes"].as_array().unwrap().len(), 1);

    assert_eq!(run_plan(&h, plan).await, "two\n");
    let rb = shoal(&h, USER, "templates/rollback", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "hist", "version": 1})).await;
    assert_eq!((rb["data"]["version"].as_i64(), rb["data"]["state"].as_str()), (Some(3), Some("current")), "{rb}");
    assert_eq!(run_plan(&h, plan).await, "one\n");
    let hist = shoal_get(&h, "templates/history", "bk_scope_type=biz&bk_scope_id=1&name=hist").await;
    assert_eq!(hist["data"]["versions"].as_array().unwrap().len(), 3, "history is kept");
    // Export round-trips: applying it changes nothing.
    let ex = shoal_get(&h, "templates/export", "bk_scope_type=biz&bk_scope_id=1&name=hist").await;
    assert_eq!(ex["data"]["version"], 3);
    assert_eq!(apply(&h, USER, ex["data"]["document"].clone()).await["changed"], false);
}

async fn approval_flow(mut h: Harness) {
    h.add_agent("127.0.0.75", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let mut doc = json!({"name": "guarded", "needs_approval": true,
                         "steps": [{"name": "say", "script": {"content": "echo v1", "account": USER, "target": {"host_id_list": hosts}}}]});
    let out = apply(&h, USER, doc.clone()).await;
    assert_eq!((out["version"].as_i64(), out["state"].as_str()), (Some(1), Some("pending")));
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(execute_plan(&h, plan, json!([])).await["code"], 1244011, "a pending version never runs");
    let pending = shoal_get(&h, "approvals", "bk_scope_type=biz&bk_scope_id=1").await;
    assert_eq!(pending["data"]["total"], 1);
    // The author cannot approve their own change.
    let own =
        shoal(&h, USER, "approvals/approve", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "guarded", "version": 1})).await;
    assert_eq!(own["code"], 1241010, "{own}");
    let ok = shoal(
        &h,
        "bob",
        "approvals/approve",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "guarded", "version": 1, "comment": "lgtm"}),
    )
    .await;
    assert_eq!(ok["data"]["state"], "current", "{ok}");
    let job = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    wait_status(&h, job, 3).await;

    // A change waits; executions keep using v1; a rejection keeps it out.
    doc["steps"][0]["script"]["content"] = json!("echo v2");
    let out = apply(&h, USER, doc).await;
    assert_eq!((out["version"].as_i64(), out["state"].as_str()), (Some(2), Some("pending")));
    let job = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job, 3).await;
    let s = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    assert_eq!(h.logs(job, s, &hosts).await.into_values().next().unwrap(), "v1\n");
    let (_, pl) = h.get("get_job_plan_list", "bk_scope_type=biz&bk_scope_id=1").await;
    assert_eq!(pl["data"]["data"][0]["need_update"], true, "the plan knows its template changed");
    let rej = shoal(
        &h,
        "bob",
        "approvals/reject",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "guarded", "version": 2, "comment": "no"}),
    )
    .await;
    assert_eq!(rej["data"]["state"], "rejected");
    let again =
        shoal(&h, "bob", "approvals/approve", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "guarded", "version": 2})).await;
    assert_eq!(again["code"], 1241010);
    let hist = shoal_get(&h, "templates/history", "bk_scope_type=biz&bk_scope_id=1&name=guarded").await;
    let v = &hist["data"]["versions"][1];
    assert_eq!((v["state"].as_str(), v["reviewer"].as_str(), v["review_comment"].as_str()), (Some("rejected"), Some("bob"), Some("no")));
}

/// Call as another app: a Shoal path (`shoal/…`) or a JOB v3 API name.
async fn as_app(h: &Harness, app: &str, secret: &str, user: &str, path: &str, body: Value) -> Value {
    let auth = json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": user}).to_string();
    let url = match path.strip_prefix("shoal/") {
        Some(p) => format!("{}/api/shoal/v1/{p}", h.url),
        None => format!("{}/api/v3/{path}", h.url),
    };
    h.http.post(url).header("X-Bkapi-Authorization", auth).json(&body).send().await.unwrap().json().await.unwrap()
}

async fn roles_gate_library_templates_and_plans(mut h: Harness) {
    h.add_agent("127.0.0.76", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let created = shoal(&h, USER, "apps", json!({"code": "ops"})).await;
    let secret = created["data"]["secret"].as_str().unwrap().to_string();
    let grant = |role: &str| json!({"app_code": "ops", "bk_scope_type": "biz", "bk_scope_id": "1", "role": role});
    assert_eq!(shoal(&h, USER, "grants", grant("run")).await["code"], 0);
    assert_eq!(
        shoal(&h, USER, "account_grants", json!({"app_code": "ops", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": USER})).await
            ["code"],
        0
    );
    let doc = json!({"name": "gated", "needs_approval": true,
                     "steps": [{"name": "s", "script": {"content": "echo gated", "account": USER, "target": {"host_id_list": hosts}}}]});

    // Run only: no template changes, no approvals, no library changes.
    let v =
        as_app(&h, "ops", &secret, "alice", "shoal/templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc}))
            .await;
    assert_eq!(v["code"], 9900403, "{v}");
    let v = as_app(
        &h,
        "ops",
        &secret,
        "alice",
        "create_script",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "x", "script_language": 1, "content": b64("x"), "version": "1"}),
    )
    .await;
    assert_eq!(v["code"], 9900403, "{v}");
    let v = as_app(
        &h,
        "ops",
        &secret,
        "alice",
        "create_public_script",
        json!({"name": "x", "script_language": 1, "content": b64("x"), "version": "1"}),
    )
    .await;
    assert_eq!(v["code"], 9900403, "{v}");

    // The admin app writes the template; ops may not approve it until granted approve.
    let out = apply(&h, USER, doc).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    let review = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "gated", "version": 1});
    assert_eq!(as_app(&h, "ops", &secret, "bob", "shoal/approvals/approve", review.clone()).await["code"], 9900403);
    assert_eq!(shoal(&h, USER, "grants", grant("approve")).await["code"], 0);
    let v = as_app(&h, "ops", &secret, "bob", "shoal/approvals/approve", review).await;
    assert_eq!(v["data"]["state"], "current", "{v}");

    // Run: the plan executes under ops' grants.
    let v = as_app(&h, "ops", &secret, "bob", "execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    wait_status(&h, v["data"]["job_instance_id"].as_i64().unwrap(), 3).await;
    // Another scope: nothing.
    let v = as_app(&h, "ops", &secret, "bob", "get_job_plan_list", json!({"bk_scope_type": "biz", "bk_scope_id": "2"})).await;
    assert_eq!(v["code"], 9900403, "{v}");
}

async fn dangerous_rules_cover_plan_steps(mut h: Harness) {
    h.add_agent("127.0.0.77", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let (_, rule) = h
        .post(
            "create_dangerous_rule",
            json!({"expression": "shutdown\\s+-h", "script_language_list": [1], "description": "no shutdowns", "action": 2}),
        )
        .await;
    assert_eq!(rule["code"], 0, "{rule}");
    let (_, on) = h.post("enable_dangerous_rule", json!({"id": rule["data"]["id"]})).await;
    assert_eq!(on["code"], 0, "{on}");
    // The command only appears once the variable is put in front of the body.
    let doc = json!({"name": "sneaky", "variables": [{"name": "CMD", "type": "string", "value": "shutdown -h now"}],
                     "steps": [{"name": "s", "script": {"content": "echo \"$CMD\"", "account": USER, "target": {"host_id_list": hosts}}}]});
    let out = apply(&h, USER, doc).await;
    let v = execute_plan(&h, out["plans"][0]["id"].as_i64().unwrap(), json!([])).await;
    assert_eq!(v["code"], 1244019, "{v}");
    let (_, list) = h.get("get_job_instance_list", &history_query("1")).await;
    assert_eq!(list["data"]["total"], 0, "no job was created");
}

fn review(name: &str, version: i64) -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": name, "version": version, "comment": "ok"})
}

/// The actions of the audit events of scope biz 1, oldest first.
async fn audit_actions(h: &Harness) -> Vec<String> {
    let q =
        shoal_store::trust::AuditQuery { scope_type: Some("biz".into()), scope_id: Some("1".into()), limit: 1000, ..Default::default() };
    let rows = shoal_store::TrustStore::audit_events(h.shared.store.as_ref(), &q).await.unwrap();
    let mut rows: Vec<_> = rows.into_iter().map(|r| (r.seq, r.event.action)).collect();
    rows.sort();
    rows.into_iter().map(|(_, a)| a).collect()
}

async fn a_pending_change_cannot_switch_approval_off(mut h: Harness) {
    h.add_agent("127.0.0.78", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let mut doc = json!({"name": "held", "needs_approval": true,
                         "steps": [{"name": "say", "script": {"content": "echo v1", "account": USER, "target": {"host_id_list": hosts}}}]});
    let plan = apply(&h, USER, doc.clone()).await["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(shoal(&h, "bob", "approvals/approve", review("held", 1)).await["data"]["state"], "current");

    // A change that turns approval off is itself a change that waits …
    doc["needs_approval"] = json!(false);
    let off = apply(&h, USER, doc.clone()).await;
    assert_eq!((off["version"].as_i64(), off["state"].as_str()), (Some(2), Some("pending")), "{off}");
    // … and until it is approved, the next apply still waits: the setting in force is v1's.
    doc["steps"][0]["script"]["content"] = json!("echo unreviewed");
    let next = apply(&h, USER, doc.clone()).await;
    assert_eq!((next["version"].as_i64(), next["state"].as_str()), (Some(3), Some("pending")), "{next}");
    assert_eq!(run_plan(&h, plan).await, "v1\n");
    // Rejected, it changes nothing either.
    assert_eq!(shoal(&h, "bob", "approvals/reject", review("held", 2)).await["data"]["state"], "rejected");
    doc["steps"][0]["script"]["content"] = json!("echo still-unreviewed");
    let after_reject = apply(&h, USER, doc.clone()).await;
    assert_eq!(after_reject["state"], "pending", "{after_reject}");
    let t = shoal_get(&h, "templates/history", "bk_scope_type=biz&bk_scope_id=1&name=held").await;
    assert_eq!(t["data"]["template"]["needs_approval"], true, "{t}");
    assert_eq!(run_plan(&h, plan).await, "v1\n");

    // Approved by someone else, turning approval off holds, and then changes apply at once.
    assert_eq!(shoal(&h, "bob", "approvals/approve", review("held", 4)).await["data"]["state"], "current");
    assert_eq!(run_plan(&h, plan).await, "still-unreviewed\n");
    doc["steps"][0]["script"]["content"] = json!("echo free");
    assert_eq!(apply(&h, USER, doc).await["state"], "current");
    // Every change, approved or not, left an audit event.
    let actions = audit_actions(&h).await;
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(count("apply_template"), 5, "{actions:?}");
    assert_eq!((count("approve_template_version"), count("reject_template_version")), (2, 1), "{actions:?}");
}

async fn plan_changes_wait_for_approval(mut h: Harness) {
    h.add_agent("127.0.0.79", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let mut doc = json!({"name": "valued", "needs_approval": true,
                         "variables": [{"name": "WHERE", "type": "string", "value": "default"}],
                         "steps": [{"name": "say", "script": {"content": "echo $WHERE", "account": USER, "target": {"host_id_list": hosts}}},
                                   {"name": "extra", "script": {"content": "echo extra", "account": USER, "target": {"host_id_list": hosts}}}],
                         "plans": [{"name": "prod", "steps": ["say"], "variables": {"WHERE": "prod-a"}}]});
    let plan = apply(&h, USER, doc.clone()).await["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(shoal(&h, "bob", "approvals/approve", review("valued", 1)).await["code"], 0);
    assert_eq!(run_plan(&h, plan).await, "prod-a\n");
    let before = audit_actions(&h).await.len();

    // A plan-only change of a value: a new version that waits, with its change and audit event.
    doc["plans"][0]["variables"]["WHERE"] = json!("prod-b");
    let out = apply(&h, USER, doc.clone()).await;
    assert_eq!((out["version"].as_i64(), out["state"].as_str()), (Some(2), Some("pending")), "{out}");
    assert_eq!(out["changes"][0]["path"], "plans[prod].variables.WHERE", "{out}");
    assert_eq!(audit_actions(&h).await.len(), before + 1, "the plan change is audited");
    assert_eq!(run_plan(&h, plan).await, "prod-a\n", "the approved values run until the change is approved");
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    assert_eq!(d["data"]["global_var_list"][0]["value"], "prod-a", "{d}");
    // The plan's composition too.
    doc["plans"][0]["steps"] = json!(["say", "extra"]);
    assert_eq!(apply(&h, USER, doc.clone()).await["state"], "pending");
    let job = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    assert_eq!(wait_status(&h, job, 3).await["step_instance_list"].as_array().unwrap().len(), 1);
    // A plan added by a pending version does not run.
    doc["plans"].as_array_mut().unwrap().push(json!({"name": "sneaky", "steps": ["extra"]}));
    let out = apply(&h, USER, doc).await;
    let sneaky = out["plans"][1]["id"].as_i64().unwrap();
    assert_eq!(execute_plan(&h, sneaky, json!([])).await["code"], 1244011);

    assert_eq!(shoal(&h, "bob", "approvals/approve", review("valued", 4)).await["code"], 0);
    let job = execute_plan(&h, plan, json!([])).await["data"]["job_instance_id"].as_i64().unwrap();
    let st = wait_status(&h, job, 3).await;
    assert_eq!(st["step_instance_list"].as_array().unwrap().len(), 2);
    let s = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    assert_eq!(h.logs(job, s, &hosts).await.into_values().next().unwrap(), "prod-b\n");
}

async fn a_published_script_version_waits_for_reapproval(mut h: Harness) {
    h.add_agent("127.0.0.80", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let scope = json!({"bk_scope_type": "biz", "bk_scope_id": "1"});
    let with = |extra: Value| {
        let mut b = scope.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let (_, v) =
        h.post("create_script", with(json!({"name": "lib", "script_language": 1, "content": b64("echo lib-v1"), "version": "1"}))).await;
    let script_id = v["data"]["script_id"].as_str().unwrap().to_string();
    let v1 = v["data"]["id"].as_i64().unwrap();
    h.post("publish_script_version", with(json!({"script_id": script_id, "script_version_id": v1}))).await;
    let doc = json!({"name": "uses-lib", "needs_approval": true,
                     "steps": [{"name": "run", "script": {"script_id": script_id, "account": USER, "target": {"host_id_list": hosts}}}]});
    let plan = apply(&h, USER, doc.clone()).await["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(shoal(&h, "bob", "approvals/approve", review("uses-lib", 1)).await["code"], 0);
    assert_eq!(run_plan(&h, plan).await, "lib-v1\n");

    // A newer published version does not reach the approved template.
    let (_, v) =
        h.post("create_script_version", with(json!({"script_id": script_id, "content": b64("echo lib-v2"), "version": "2"}))).await;
    let v2 = v["data"]["id"].as_i64().unwrap();
    h.post("publish_script_version", with(json!({"script_id": script_id, "script_version_id": v2}))).await;
    assert_eq!(run_plan(&h, plan).await, "lib-v1\n", "the pinned version runs");
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    assert_eq!(d["data"]["step_list"][0]["script_info"]["script_version_id"], v1, "{d}");
    // Applying again picks it up — as a change that waits for approval.
    let out = apply(&h, USER, doc.clone()).await;
    assert_eq!(out["state"], "pending", "{out}");
    assert_eq!(out["changes"][0]["path"], "steps[run].script.pinned_version_id", "{out}");
    assert_eq!(run_plan(&h, plan).await, "lib-v1\n");
    assert_eq!(shoal(&h, "bob", "approvals/approve", review("uses-lib", 2)).await["code"], 0);
    assert_eq!(run_plan(&h, plan).await, "lib-v2\n");

    // A pinned version that was disabled fails clearly; no other version runs instead.
    h.post("disable_script_version", with(json!({"script_id": script_id, "script_version_id": v2}))).await;
    let (_, v) =
        h.post("create_script_version", with(json!({"script_id": script_id, "content": b64("echo lib-v3"), "version": "3"}))).await;
    h.post("publish_script_version", with(json!({"script_id": script_id, "script_version_id": v["data"]["id"]}))).await;
    assert_eq!(execute_plan(&h, plan, json!([])).await["code"], 1244018);
}

async fn a_foreign_sealed_value_is_refused(mut h: Harness) {
    h.add_agent("127.0.0.81", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let key = &h.shared.config.sealing_key;
    let aad = |biz: &str, name: &str, path: &str| shoal_server::secrets::aad(&["template", "biz", biz, name, path]);
    // A value sealed for business 3's template (as an export of it once carried).
    let foreign = key.seal("biz3-password", &aad("3", "deploy", "variables[PW].value")).unwrap();
    let doc = |value: &str| {
        json!({"name": "deploy", "variables": [{"name": "PW", "type": "password", "value": value}],
               "steps": [{"name": "s", "script": {"content": "echo \"$PW\"", "account": USER, "target": {"host_id_list": hosts}}}]})
    };
    let v = shoal(&h, USER, "templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc(&foreign)})).await;
    assert_eq!(v["code"], 1241010, "{v}");
    assert!(v["message"].as_str().unwrap().contains("another record or scope"), "{v}");
    assert!(!v.to_string().contains("biz3-password"));
    // Another template or another field of the same scope: refused as well.
    for (name, path) in [("other", "variables[PW].value"), ("deploy", "variables[PW2].value")] {
        let sealed = key.seal("x", &aad("1", name, path)).unwrap();
        let v = shoal(&h, USER, "templates/diff", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc(&sealed)})).await;
        assert_eq!(v["code"], 1241010, "{v}");
    }
    // An old unbound (v1) value is never taken from a caller.
    let v = shoal(&h, USER, "templates/diff", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc("shoal-sealed:v1:AAAA")}))
        .await;
    assert_eq!(v["code"], 1241010, "{v}");
    // The value sealed for this very place is accepted.
    let own = key.seal("mine", &aad("1", "deploy", "variables[PW].value")).unwrap();
    let out = apply(&h, USER, doc(&own)).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(run_plan(&h, plan).await, "******\n");
}

async fn secrets_never_leave_templates(mut h: Harness) {
    h.add_agent("127.0.0.82", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let doc = json!({"name": "secretive",
        "variables": [{"name": "PW", "type": "password", "value": "Pw-default-8817"}],
        "steps": [{"name": "s", "script": {"content": "#!/bin/bash\n[ \"$1\" = Param-$((9930 + 1)) ] && [ \"$PW\" = Pw-plan-$((5520 + 1)) ] && echo ok",
                   "param": "Param-9931", "sensitive": true, "account": USER, "target": {"host_id_list": hosts}}}],
        "plans": [{"name": "default", "variables": {"PW": "Pw-plan-5521"}}]});
    let out = apply(&h, USER, doc.clone()).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    assert_eq!(run_plan(&h, plan).await, "ok\n", "the script gets the values");
    // Change something else, so history has a diff to show.
    let mut doc2 = doc.clone();
    doc2["steps"][0]["name"] = json!("renamed");
    apply(&h, USER, doc2).await;
    let q = "bk_scope_type=biz&bk_scope_id=1&name=secretive";
    let (_, detail) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    let answers = [
        out.to_string(),
        shoal_get(&h, "templates/export", q).await.to_string(),
        shoal_get(&h, "templates/export", &format!("{q}&version=1")).await.to_string(),
        shoal_get(&h, "templates/history", q).await.to_string(),
        shoal_get(&h, "templates/version_diff", &format!("{q}&from=1&to=2")).await.to_string(),
        shoal_get(&h, "approvals", "bk_scope_type=biz&bk_scope_id=1").await.to_string(),
        shoal(&h, USER, "templates/diff", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc})).await.to_string(),
        detail.to_string(),
    ];
    for a in &answers {
        for secret in ["Pw-default-8817", "Param-9931", "Pw-plan-5521", "shoal-sealed"] {
            assert!(!a.contains(secret), "{secret} in {a}");
        }
        let param = b64("Param-9931");
        assert!(!a.contains(&param), "{a}");
    }
    assert_eq!(detail["data"]["step_list"][0]["script_info"]["script_param"], b64("******"), "{detail}");
    // The export round-trips: `******` keeps the stored values.
    let ex = shoal_get(&h, "templates/export", q).await;
    assert_eq!(apply(&h, USER, ex["data"]["document"].clone()).await["changed"], false);
    assert_eq!(run_plan(&h, plan).await, "ok\n");
    // Not in the database files either (SQLite: the data dir).
    for path in files_under(&h.dir.path().join("server")) {
        let bytes = std::fs::read(path).unwrap();
        for secret in ["Pw-default-8817", "Param-9931", "Pw-plan-5521"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} stored in clear");
        }
    }
    // `******` where nothing is stored is refused rather than taken as the value.
    let v = shoal(
        &h,
        USER,
        "templates/diff",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document":
        {"name": "fresh", "variables": [{"name": "PW", "type": "password", "value": "******"}],
         "steps": [{"name": "s", "script": {"content": "true", "account": USER, "target": {"host_id_list": hosts}}}]}}),
    )
    .await;
    assert_eq!(v["code"], 1241010, "{v}");
}

async fn diff_is_not_an_equality_oracle(mut h: Harness) {
    h.add_agent("127.0.0.83", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let doc = |pw: &str, param: &str| {
        json!({"name": "oracle", "variables": [{"name": "PW", "type": "password", "value": pw}],
               "steps": [{"name": "s", "script": {"content": "true", "param": param, "sensitive": true, "account": USER, "target": {"host_id_list": hosts}}}],
               "plans": [{"name": "default", "variables": {"PW": pw}}]})
    };
    apply(&h, USER, doc("right-guess", "right-param")).await;
    let diff = |d: Value| {
        let h = &h;
        async move {
            let v = shoal(h, USER, "templates/diff", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": d})).await;
            assert_eq!(v["code"], 0, "{v}");
            v["data"].clone()
        }
    };
    let right = diff(doc("right-guess", "right-param")).await;
    let wrong = diff(doc("wrong-guess", "wrong-param")).await;
    assert_eq!(right, wrong, "a right guess and a wrong one look the same");
    assert_eq!(right["changed"], true);
    let paths: Vec<&str> = right["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["plans[default].variables.PW", "steps[s].script.param", "variables[PW].value"]);
    assert_eq!(diff(doc("******", "******")).await["changed"], false, "the placeholder keeps");
}

async fn plan_var_ids(h: &Harness, plan: i64) -> Vec<(String, i64)> {
    let (_, d) = h.post("get_job_plan_detail", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan})).await;
    let vars = d["data"]["global_var_list"].as_array().unwrap_or_else(|| panic!("{d}")).clone();
    vars.iter().map(|v| (v["name"].as_str().unwrap().to_string(), v["id"].as_i64().unwrap())).collect()
}

/// Callers (bk-monitor's alert actions, crons) save values under a variable's id: editing the
/// template must not re-point them.
async fn variable_ids_survive_edits(mut h: Harness) {
    h.add_agent("127.0.0.75", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let var = |name: &str, value: &str| json!({"name": name, "type": "string", "value": value});
    let doc = |vars: Vec<Value>| {
        json!({"name": "ids", "variables": vars,
               "steps": [{"name": "say", "script": {"content": "echo A=$A B=$B C=$C D=$D", "account": USER, "target": {"host_id_list": hosts}}}]})
    };
    let plan = apply(&h, USER, doc(vec![var("A", "a"), var("B", "b"), var("C", "c")])).await["plans"][0]["id"].as_i64().unwrap();
    let ids = |v: &[(&str, i64)]| v.iter().map(|(n, i)| (n.to_string(), *i)).collect::<Vec<_>>();
    assert_eq!(plan_var_ids(&h, plan).await, ids(&[("A", 1), ("B", 2), ("C", 3)]));
    // Reordered, B removed, D added: A and C keep theirs, D gets a new one.
    apply(&h, USER, doc(vec![var("C", "c"), var("D", "d"), var("A", "a")])).await;
    assert_eq!(plan_var_ids(&h, plan).await, ids(&[("C", 3), ("D", 4), ("A", 1)]));
    // A value saved under C's id still reaches C.
    let job = execute_plan(&h, plan, json!([{"id": 3, "value": "saved"}])).await;
    let job = job["data"]["job_instance_id"].as_i64().unwrap_or_else(|| panic!("{job}"));
    let st = wait_status(&h, job, 3).await;
    let s = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    assert_eq!(h.logs(job, s, &hosts).await.into_values().next().unwrap(), "A=a B= C=saved D=d\n");
    // A removed variable's id is never handed on, even when its name comes back.
    apply(&h, USER, doc(vec![var("C", "c"), var("D", "d"), var("A", "a"), var("B", "b")])).await;
    assert_eq!(plan_var_ids(&h, plan).await, ids(&[("C", 3), ("D", 4), ("A", 1), ("B", 5)]));
    // The id an exported document carries lets a rename keep it.
    let ex = shoal_get(&h, "templates/export", "bk_scope_type=biz&bk_scope_id=1&name=ids").await;
    let mut renamed = ex["data"]["document"].clone();
    renamed["variables"][0]["name"] = json!("C2");
    renamed["steps"][0]["script"]["content"] = json!("echo C2=$C2");
    apply(&h, USER, renamed).await;
    assert_eq!(plan_var_ids(&h, plan).await, ids(&[("C2", 3), ("D", 4), ("A", 1), ("B", 5)]));
    // A rollback restores the old document under the ids callers know now (B's is 5 since it
    // came back); new ones stay above every id given out.
    let rb = shoal(&h, USER, "templates/rollback", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "ids", "version": 1})).await;
    assert_eq!(rb["code"], 0, "{rb}");
    assert_eq!(plan_var_ids(&h, plan).await, ids(&[("A", 1), ("B", 5), ("C", 3)]));
    apply(&h, USER, doc(vec![var("A", "a"), var("B", "b"), var("C", "c"), var("E", "e")])).await;
    assert_eq!(plan_var_ids(&h, plan).await, ids(&[("A", 1), ("B", 5), ("C", 3), ("E", 6)]));
}
