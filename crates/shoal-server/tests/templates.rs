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
    a_password_split_between_chunks_is_masked
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
    for entry in std::fs::read_dir(h.dir.path().join("server")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
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
    for entry in std::fs::read_dir(h.dir.path().join("server")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
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
    let (_, list) = h.get("get_job_instance_list", "bk_scope_type=biz&bk_scope_id=1").await;
    assert_eq!(list["data"]["total"], 0, "no job was created");
}
