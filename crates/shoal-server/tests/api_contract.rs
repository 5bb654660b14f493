//! The JOB v3 contract at the edges: authentication, path forms, parameter decoding,
//! validation codes, accounts and limits.

#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    auth_failures_answer_401_with_job_codes,
    validation_codes_match_job,
    accounts_round_trip,
    lookups_and_limits,
    job_history_rows_carry_job_field_names,
    job_history_requires_a_bounded_time_range,
    plan_detail_steps_carry_every_info_key,
    status_writes_null_where_job_does,
    global_var_values_are_string_variables_of_script_steps,
    plan_and_template_lists_filter_by_modifier_and_time,
);

async fn auth_failures_answer_401_with_job_codes(h: Harness) {
    let url = format!("{}/api/v3/get_job_instance_list?{}", h.url, history_query("1"));
    let send = |auth: Option<String>| {
        let h = &h;
        let url = url.clone();
        async move {
            let mut r = h.http.get(url);
            if let Some(a) = auth {
                r = r.header("X-Bkapi-Authorization", a);
            }
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v["code"].as_i64().unwrap(), v["result"].as_bool().unwrap())
        }
    };
    assert_eq!(send(None).await, (401, 1247004, false));
    assert_eq!(
        send(Some(json!({"bk_app_code": APP, "bk_app_secret": "wrong", "bk_username": USER}).to_string())).await,
        (401, 1240005, false)
    );
    assert_eq!(
        send(Some(json!({"bk_app_code": "nobody", "bk_app_secret": SECRET, "bk_username": USER}).to_string())).await,
        (401, 1240005, false)
    );
    assert_eq!(send(Some(json!({"bk_app_code": APP, "bk_app_secret": SECRET}).to_string())).await, (401, 1247002, false));
    assert_eq!(send(Some(h.auth_header())).await, (200, 0, true));
    // ESB body credentials, wrong secret.
    let r = h
        .http
        .post(format!("{}/api/c/compapi/v2/jobv3/get_job_instance_list/", h.url))
        .json(&json!({"bk_app_code": APP, "bk_app_secret": "nope", "bk_username": USER, "bk_biz_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // App-state path takes the operator from X-Bk-Username.
    let r = h
        .http
        .get(format!("{}/api/bk-job/prod/api/v3/system/get_job_instance_list/?{}", h.url, history_query("1")))
        .header("X-Bkapi-Authorization", json!({"bk_app_code": APP, "bk_app_secret": SECRET}).to_string())
        .header("X-Bk-Username", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Messages follow Blueking-Language.
    let r = h.http.get(&url).header("Blueking-Language", "en").send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Missing app code");
}

async fn validation_codes_match_job(mut h: Harness) {
    h.add_agent("127.0.0.41", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let base = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo x"), "script_language": 1,
                      "account_alias": USER, "target_server": {"host_id_list": hosts}});
    let with = |patch: serde_json::Value| {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let cases = [
        (json!({"script_content": "@@not-base64@@"}), 1241005, "script_content"),
        (json!({"script_content": null}), 1241004, "script_version_id|script_id|script_content"),
        (json!({"script_language": 42}), 1241005, "script_language"),
        (json!({"target_server": null}), 1241004, "target_server"),
        (json!({"target_server": {"host_id_list": []}}), 1244001, ""),
        (json!({"target_server": {"host_id_list": [999999]}}), 1243053, "999999"),
        (json!({"target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.9.9.9"}]}}), 1243052, "0:10.9.9.9"),
        (json!({"target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "not-an-ip"}]}}), 1241005, ""),
        (json!({"account_alias": null}), 1241004, "account_id|account_alias"),
        (json!({"account_alias": "ghost"}), 1244003, "ghost"),
        (json!({"timeout": 0}), 1240003, "timeout"),
        (json!({"timeout": "abc"}), 1240003, "timeout"),
        (json!({"task_name": "x".repeat(513)}), 1240003, "task_name"),
        (json!({"callback_url": "ftp://x/"}), 1240003, "callback_url"),
        (json!({"bk_scope_type": null, "bk_scope_id": null}), 1241004, "bk_scope_type"),
        (json!({"script_version_id": 0}), 1241005, "script_version_id"),
    ];
    for (patch, code, needle) in cases {
        let (status, v) = h.post("fast_execute_script", with(patch.clone())).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(code)), "{patch} → {v}");
        assert_eq!(v["result"], false);
        assert!(v["message"].as_str().unwrap().contains(needle), "{patch} → {v}");
        assert!(v["job_request_id"].is_string());
    }
    // A body that is not JSON.
    let r = h
        .http
        .post(format!("{}/api/v3/fast_execute_script", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 1241022, "{v}");
    // Nothing above created a job.
    let (_, list) = h.get("get_job_instance_list", &history_query("1")).await;
    assert_eq!(list["data"]["total"], 0, "{list}");
}

async fn accounts_round_trip(h: Harness) {
    let scope = json!({"bk_scope_type": "biz", "bk_scope_id": "7"});
    let mut req = scope.clone();
    req["account"] = json!("deploy");
    req["type"] = json!(1);
    req["category"] = json!(1);
    req["description"] = json!("deploy user");
    let (_, v) = h.post("create_account", req.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let acc = &v["data"];
    assert_eq!((acc["alias"].as_str(), acc["os"].as_str(), acc["bk_scope_id"].as_str()), (Some("deploy"), Some("Linux"), Some("7")));
    assert!(acc.get("password").is_none());
    let (_, dup) = h.post("create_account", req.clone()).await;
    assert_eq!(dup["code"], 1243007, "{dup}");
    let (_, missing) = h.post("create_account", json!({"bk_scope_type": "biz", "bk_scope_id": "7", "type": 1, "category": 1})).await;
    assert_eq!(missing["code"], 1241004);
    let (_, list) = h.get("get_account_list", "bk_scope_type=biz&bk_scope_id=7&category=1").await;
    assert_eq!(list["data"]["total"], 1, "{list}");
    assert_eq!(list["data"]["data"][0]["account"], "deploy");
    let (_, other_scope) = h.get("get_account_list", "bk_scope_type=biz&bk_scope_id=8").await;
    assert_eq!(other_scope["data"]["total"], 0);
    let id = acc["id"].as_i64().unwrap();
    let (_, del) = h.post("delete_account", json!({"bk_scope_type": "biz", "bk_scope_id": "7", "id": id})).await;
    assert_eq!((del["code"].as_i64(), del["data"]["id"].as_i64()), (Some(0), Some(id)));
    let (_, again) = h.post("delete_account", json!({"bk_scope_type": "biz", "bk_scope_id": "7", "id": id})).await;
    assert_eq!(again["code"], 1244003);
    // Queries are served on GET only for get_*; a mutation on GET is refused.
    let (status, _) = h.get("create_account", "bk_scope_type=biz&bk_scope_id=7").await;
    assert_eq!(status, 405);
}

async fn lookups_and_limits(mut h: Harness) {
    h.add_agent("127.0.0.43", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo x", &hosts, json!({})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let step = job["step_instance_id"].as_i64().unwrap();
    h.wait_finished(id, std::time::Duration::from_secs(20)).await;

    let (_, v) = h.get("get_job_instance_status", "bk_scope_type=biz&bk_scope_id=1&job_instance_id=0").await;
    assert_eq!(v["code"], 1241007);
    let (_, v) = h.get("get_job_instance_status", "bk_scope_type=biz&bk_scope_id=1&job_instance_id=987654").await;
    assert_eq!(v["code"], 1244006);
    // A job is invisible from another scope.
    let (_, v) = h.get("get_job_instance_status", &format!("bk_scope_type=biz&bk_scope_id=2&job_instance_id={id}")).await;
    assert_eq!(v["code"], 1244006);
    // Without return_ip_result the host list is null; with Python's `True` it is there.
    let (_, v) = h.get("get_job_instance_status", &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={id}")).await;
    assert!(v["data"]["step_instance_list"][0]["step_ip_result_list"].is_null(), "{v}");
    let (_, v) = h.get("get_job_instance_status", &format!("bk_biz_id=1&job_instance_id={id}&return_ip_result=True")).await;
    assert_eq!(v["data"]["step_instance_list"][0]["step_ip_result_list"].as_array().unwrap().len(), 1);
    // POST works for queries too, and the trailing slash is optional.
    let (_, v) = h.post("get_job_instance_status/", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id})).await;
    assert_eq!(v["data"]["finished"], true);
    // Log queries: step of another job, too many hosts, neither host key.
    let log_q = |extra: serde_json::Value| {
        let mut b = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "step_instance_id": step});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (_, v) = h.post("batch_get_job_instance_ip_log", log_q(json!({"host_id_list": (1..=501).collect::<Vec<i64>>()}))).await;
    assert_eq!(v["code"], 1241007);
    let (_, v) = h.post("batch_get_job_instance_ip_log", log_q(json!({}))).await;
    assert_eq!(v["code"], 1241007);
    let (_, v) = h.post("batch_get_job_instance_ip_log", log_q(json!({"step_instance_id": step + 1000, "host_id_list": hosts}))).await;
    assert_eq!(v["code"], 1244007);
    let (_, v) = h
        .get(
            "get_job_instance_ip_log",
            &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={id}&step_instance_id={step}&host_id={}", hosts[0]),
        )
        .await;
    assert_eq!(v["data"]["log_content"], "x\n", "gateway doc's host_id name is accepted: {v}");
    let (_, v) =
        h.get("get_job_instance_ip_log", &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={id}&step_instance_id={step}")).await;
    assert_eq!(v["code"], 1241007);
    // operate_job_instance with an unknown code.
    let (_, v) = h
        .post("operate_job_instance", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "operation_code": 7}))
        .await;
    assert_eq!(v["code"], 1241002);
    // Unknown API.
    let (status, v) = h.post("no_such_api", json!({})).await;
    assert_eq!((status, v["result"].as_bool()), (404, Some(false)));
    // The target cap: a server allowing one target refuses two.
    h.config.max_targets_per_step = 1;
    h.restart_server().await;
    h.add_agent("127.0.0.44", None, None, &[]).await;
    h.wait_connected(2).await;
    let all = h.host_ids().await;
    let (_, v) = h
        .post(
            "fast_execute_script",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo"), "script_language": 1,
                   "account_alias": USER, "target_server": {"host_id_list": all}}),
        )
        .await;
    assert_eq!(v["code"], 1244022, "{v}");
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// A plan with a confirmation step, a script step on a host variable and one on fixed hosts.
fn gated_doc(host: i64) -> Value {
    json!({
        "name": "gated",
        "variables": [
            {"name": "TARGETS", "type": "host_list", "server": {"host_id_list": [host]}},
            {"name": "NOTE", "type": "string", "value": "hi"},
            {"name": "TOKEN", "type": "password", "value": "s3cret"},
            {"name": "PORTS", "type": "index_array", "value": "80 443"}
        ],
        "steps": [
            {"name": "ok?", "confirm": {"message": "go on?", "users": [USER]}},
            {"name": "on-var", "script": {"content": "echo $NOTE", "account": USER, "target": {"variable": "TARGETS"}}},
            {"name": "on-host", "script": {"content": "echo fixed", "account": USER, "target": {"host_id_list": [host]}}}
        ],
        "plans": [{"name": "default"}]
    })
}

/// bk-sops' history picker reads `job_instance_id`; bk-job's `EsbTaskInstanceV3DTO` has
/// exactly these keys, and the plan ids of a job started from a plan.
async fn job_history_rows_carry_job_field_names(mut h: Harness) {
    h.add_agent("127.0.0.42", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.42").await;
    let fast = h.execute("true", &[host], json!({})).await["job_instance_id"].as_i64().unwrap();
    let applied = h.apply_template(gated_doc(host)).await;
    let (template, plan) = (applied["template_id"].as_i64().unwrap(), applied["plans"][0]["id"].as_i64().unwrap());
    let (_, r) = h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan})).await;
    assert_eq!(r["code"], 0, "{r}");
    let planned = r["data"]["job_instance_id"].as_i64().unwrap();

    let (_, list) = h.get("get_job_instance_list", &history_query("1")).await;
    assert_eq!(list["code"], 0, "{list}");
    let rows = list["data"]["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    let expected = sorted(&[
        "bk_biz_id",
        "bk_scope_type",
        "bk_scope_id",
        "job_instance_id",
        "job_plan_id",
        "job_template_id",
        "name",
        "operator",
        "launch_mode",
        "status",
        "start_time",
        "end_time",
        "total_time",
        "create_time",
        "type",
    ]);
    for row in rows {
        assert_eq!(keys(row), expected, "{row}");
        assert_eq!((row["bk_scope_type"].as_str(), row["bk_scope_id"].as_str(), &row["bk_biz_id"]), (Some("biz"), Some("1"), &Value::Null));
    }
    let (p, f) = (&rows[0], &rows[1]);
    assert_eq!((p["job_instance_id"].as_i64(), p["type"].as_i64()), (Some(planned), Some(0)), "{p}");
    assert_eq!((p["job_template_id"].as_i64(), p["job_plan_id"].as_i64()), (Some(template), Some(plan)), "{p}");
    assert_eq!((f["job_instance_id"].as_i64(), f["type"].as_i64()), (Some(fast), Some(1)), "{f}");
    assert_eq!((&f["job_template_id"], &f["job_plan_id"]), (&Value::Null, &Value::Null), "{f}");
    // The ESB form answers the same rows.
    let (_, esb) = h.post_esb("get_job_instance_list", history("1")).await;
    assert_eq!(esb["data"]["data"][0]["job_instance_id"], planned, "{esb}");
}

/// bk-job refuses a history query without a creation-time range, with its start after
/// its end, or longer than 30 days.
async fn job_history_requires_a_bounded_time_range(h: Harness) {
    let day = 86_400_000i64;
    let now = shoal_core::time::now_ms();
    let cases = [
        (json!({"create_time_end": now}), 1241007, "create_time_start"),
        (json!({"create_time_start": now}), 1241007, "create_time_end"),
        (json!({"create_time_start": 0, "create_time_end": now}), 1241007, "create_time_start"),
        (json!({"create_time_start": now, "create_time_end": now - 1}), 1241007, "create_time_start|create_time_end"),
        (json!({"create_time_start": now, "create_time_end": now}), 1241007, "create_time_start|create_time_end"),
        (json!({"create_time_start": now - 30 * day - 1, "create_time_end": now}), 1241002, ""),
    ];
    for (range, code, needle) in cases {
        let mut body = json!({"bk_scope_type": "biz", "bk_scope_id": "1"});
        for (k, v) in range.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, v) = h.post("get_job_instance_list", body).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(code)), "{range} → {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{range} → {v}");
    }
    let (_, v) = h
        .post(
            "get_job_instance_list",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "create_time_start": now - 30 * day, "create_time_end": now}),
        )
        .await;
    assert_eq!(v["code"], 0, "exactly 30 days is allowed: {v}");
}

/// bk-job's `EsbStepV3DTO` always carries `script_info`, `file_info` and `approval_info`
/// (bk-sops reads `info["script_info"] or {}`), and every server in `ip_list` form.
async fn plan_detail_steps_carry_every_info_key(mut h: Harness) {
    h.add_agent("127.0.0.43", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.43").await;
    let applied = h.apply_template(gated_doc(host)).await;
    let plan = applied["plans"][0]["id"].as_i64().unwrap();
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    assert_eq!(d["code"], 0, "{d}");
    let steps = d["data"]["step_list"].as_array().unwrap();
    for s in steps {
        assert_eq!(keys(s), sorted(&["id", "name", "type", "script_info", "file_info", "approval_info"]), "{s}");
        assert!(s["file_info"].is_null(), "{s}");
    }
    let (confirm, on_var, on_host) = (&steps[0], &steps[1], &steps[2]);
    assert_eq!((confirm["type"].as_i64(), confirm["script_info"].is_null()), (Some(3), true), "{confirm}");
    assert_eq!(confirm["approval_info"]["approval_message"], "go on?");
    assert_eq!((on_var["type"].as_i64(), on_var["approval_info"].is_null()), (Some(1), true), "{on_var}");
    let ip = json!([{"bk_host_id": host, "bk_cloud_id": 0, "ip": "127.0.0.43"}]);
    assert_eq!(
        on_var["script_info"]["server"],
        json!({"variable": "TARGETS", "ip_list": null, "dynamic_group_list": null, "topo_node_list": null})
    );
    assert_eq!(on_host["script_info"]["server"], json!({"ip_list": ip, "dynamic_group_list": null, "topo_node_list": null}));
    // Host variables: the hosts in `ip_list` form, `value` null.
    let vars = d["data"]["global_var_list"].as_array().unwrap();
    let targets = vars.iter().find(|v| v["name"] == "TARGETS").unwrap();
    assert_eq!(targets["server"], json!({"ip_list": ip, "dynamic_group_list": null, "topo_node_list": null}), "{targets}");
    assert_eq!(targets["value"], Value::Null, "{targets}");
    let note = vars.iter().find(|v| v["name"] == "NOTE").unwrap();
    assert_eq!((note["value"].as_str(), &note["server"]), (Some("hi"), &Value::Null), "{note}");
    for v in vars {
        assert_eq!(keys(v), sorted(&["id", "name", "description", "type", "required", "value", "server", "used"]), "{v}");
    }
}

/// bk-job's `EsbJobInstanceStatusV3DTO` writes `job_instance.bk_biz_id` and, when host
/// results were not asked for, `step_ip_result_list` as null.
async fn status_writes_null_where_job_does(mut h: Harness) {
    h.add_agent("127.0.0.44", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.44").await;
    let job = h.execute("true", &[host], json!({})).await["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job, std::time::Duration::from_secs(20)).await;
    for asked in ["", "&return_ip_result=false"] {
        let (_, v) = h.get("get_job_instance_status", &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}{asked}")).await;
        let d = &v["data"];
        assert!(d["job_instance"].as_object().unwrap().contains_key("bk_biz_id"), "{d}");
        assert_eq!(d["job_instance"]["bk_biz_id"], Value::Null);
        let step = &d["step_instance_list"][0];
        assert!(step.as_object().unwrap().contains_key("step_ip_result_list"), "{step}");
        assert_eq!(step["step_ip_result_list"], Value::Null);
    }
    let st = h.status(job).await;
    assert_eq!(st["step_instance_list"][0]["step_ip_result_list"].as_array().map(Vec::len), Some(1), "{st}");
}

/// bk-job answers one entry per script step, each with the string variables only as
/// `{name, value, type}` (bk-sops copies every non-host entry into its node outputs), and
/// no entry at all for a job without variables.
async fn global_var_values_are_string_variables_of_script_steps(mut h: Harness) {
    h.add_agent("127.0.0.45", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.45").await;
    let plan = h.apply_template(gated_doc(host)).await["plans"][0]["id"].as_i64().unwrap();
    let (_, r) = h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan})).await;
    let job = r["data"]["job_instance_id"].as_i64().unwrap();
    let steps: Vec<i64> =
        h.status(job).await["step_instance_list"].as_array().unwrap().iter().map(|s| s["step_instance_id"].as_i64().unwrap()).collect();
    let query = |job: i64| format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}");
    let (_, v) = h.get("get_job_instance_global_var_value", &query(job)).await;
    let note = json!([{"name": "NOTE", "value": "hi", "type": 1}]);
    assert_eq!(
        v["data"],
        json!({"job_instance_id": job, "step_instance_var_list": [
            {"step_instance_id": steps[1], "global_var_list": note},
            {"step_instance_id": steps[2], "global_var_list": note}
        ]}),
        "{v}"
    );
    let fast = h.execute("true", &[host], json!({})).await["job_instance_id"].as_i64().unwrap();
    let (_, v) = h.get("get_job_instance_global_var_value", &query(fast)).await;
    assert_eq!(v["data"], json!({"job_instance_id": fast, "step_instance_var_list": []}), "{v}");
}

async fn plan_and_template_lists_filter_by_modifier_and_time(h: Harness) {
    let doc = json!({"name": "filtered", "steps": [{"name": "s", "script": {"content": "true", "account": USER, "target": {"host_id_list": [1]}}}]});
    h.apply_template(doc).await;
    let now = shoal_core::time::now_ms();
    for name in ["get_job_plan_list", "get_job_template_list"] {
        let count = |filter: Value| {
            let mut body = json!({"bk_scope_type": "biz", "bk_scope_id": "1"});
            for (k, v) in filter.as_object().unwrap() {
                body[k] = v.clone();
            }
            let h = &h;
            async move {
                let (_, v) = h.post(name, body).await;
                assert_eq!(v["code"], 0, "{v}");
                v["data"]["data"].as_array().unwrap().len()
            }
        };
        assert_eq!(count(json!({})).await, 1, "{name}");
        assert_eq!(count(json!({"last_modify_user": USER})).await, 1, "{name}");
        assert_eq!(count(json!({"last_modify_user": "someone-else"})).await, 0, "{name}");
        assert_eq!(count(json!({"create_time_start": now - 600_000, "create_time_end": now + 600_000})).await, 1, "{name}");
        assert_eq!(count(json!({"create_time_start": now + 600_000})).await, 0, "{name}");
        assert_eq!(count(json!({"last_modify_time_end": now - 600_000})).await, 0, "{name}");
    }
}
