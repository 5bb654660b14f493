//! The call sequences BlueKing callers make, replayed from their code against a real server
//! and real agents, on both stores and through both the ESB path form
//! (`/api/c/compapi/v2/jobv3/<name>/`, credentials in the body) and the API gateway form
//! (`/api/v3/<name>`, credentials in `X-Bkapi-Authorization`):
//! - bk-sops' script node: script list by name → `fast_execute_script` with a callback →
//!   status with host results and tags → global variable values → the first host's log;
//! - bk-sops' plan node: template list → plan list → plan detail → `execute_job_plan` with
//!   variables → status;
//! - bk-sops' cron node: `save_cron` → `update_cron_status` → `get_cron_list`;
//! - bk-sops' history picker: `get_job_instance_list` over a time range, reading
//!   `job_instance_id`;
//! - bk-monitor's alert action: plan list paged → plan detail → `execute_job_plan` with one
//!   `global_var_list` entry per host IP, all with the same variable id (the last wins, as
//!   in bk-job) → status polled until done.
//!
//! bk-nodeman's v2 `fast_execute_script` + `get_job_instance_log` loop is in `tests/v2.rs`.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(sops_script_node, sops_plan_node, sops_cron_node, sops_history_picker, monitor_alert_action);

#[derive(Clone, Copy, Debug)]
enum Via {
    Esb,
    Gateway,
}

const BOTH: [Via; 2] = [Via::Esb, Via::Gateway];

/// One JOB v3 call the way the caller's client makes it; the envelope must say success.
async fn call(h: &Harness, via: Via, name: &str, mut body: Value) -> Value {
    body["bk_scope_type"] = json!("biz");
    body["bk_scope_id"] = json!("1");
    body["bk_biz_id"] = json!(1);
    let (status, v) = match via {
        Via::Esb => h.post_esb(name, body).await,
        Via::Gateway => h.post(name, body).await,
    };
    assert_eq!((status, v["result"].as_bool(), v["code"].as_i64()), (200, Some(true), Some(0)), "{via:?} {name}: {v}");
    v["data"].clone()
}

/// Poll `get_job_instance_status` as bk-sops and bk-monitor do until the job is finished.
async fn poll_until_done(h: &Harness, via: Via, job: i64) -> Value {
    for _ in 0..600 {
        let st = call(h, via, "get_job_instance_status", json!({"job_instance_id": job, "return_ip_result": true})).await;
        if st["finished"] == true {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} did not finish");
}

fn ip_list(ips: &[&str]) -> Value {
    json!(ips.iter().map(|ip| json!({"bk_cloud_id": 0, "ip": ip})).collect::<Vec<_>>())
}

async fn sops_script_node(mut h: Harness) {
    let ips = ["10.0.7.1", "10.0.7.2"];
    for ip in ips {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(2).await;
    let v = call(
        &h,
        Via::Gateway,
        "create_script",
        json!({"name": "sops-probe", "script_language": 1, "content": b64("echo probe $1"), "version": "1"}),
    )
    .await;
    let (script_id, version) = (v["script_id"].clone(), v["id"].as_i64().unwrap());
    call(&h, Via::Gateway, "publish_script_version", json!({"script_id": script_id, "script_version_id": version})).await;
    let (url, got) = callback_sink().await;
    for via in BOTH {
        // The script picker: the business's scripts by name.
        let list = call(&h, via, "get_script_list", json!({"name": "sops-probe", "start": 0, "length": 100})).await;
        let script =
            list["data"].as_array().unwrap().iter().find(|s| s["name"] == "sops-probe").cloned().unwrap_or_else(|| panic!("{list}"));
        assert_eq!(script["online_script_version_id"].as_i64(), Some(version), "{script}");
        let job = call(
            &h,
            via,
            "fast_execute_script",
            json!({"script_version_id": script["online_script_version_id"], "script_param": b64("node"), "timeout": 600,
                   "account_alias": USER, "target_server": {"ip_list": ip_list(&ips)}, "callback_url": url}),
        )
        .await;
        let job_id = job["job_instance_id"].as_i64().unwrap();
        assert!(job["job_instance_name"].is_string() && job["step_instance_id"].is_i64(), "{job}");
        let cb = callback_of(&got, job_id).await;
        assert_eq!(cb["status"], 3, "{cb}");
        let st = poll_until_done(&h, via, job_id).await;
        assert_eq!(st["job_instance"]["status"], 3, "{st}");
        let step = &st["step_instance_list"][0];
        let hosts = step["step_ip_result_list"].as_array().unwrap();
        assert_eq!(hosts.len(), 2, "{st}");
        for r in hosts {
            assert_eq!((r["status"].as_i64(), r["exit_code"].as_i64()), (Some(9), Some(0)), "{r}");
            assert!(r.get("tag").is_some() && r["ip"].is_string() && r["bk_cloud_id"] == 0, "{r}");
        }
        let vars = call(&h, via, "get_job_instance_global_var_value", json!({"job_instance_id": job_id})).await;
        assert_eq!(vars["job_instance_id"].as_i64(), Some(job_id), "{vars}");
        assert!(vars["step_instance_var_list"].is_array(), "{vars}");
        let first = &hosts[0];
        let log = call(
            &h,
            via,
            "get_job_instance_ip_log",
            json!({"job_instance_id": job_id, "step_instance_id": step["step_instance_id"], "bk_cloud_id": first["bk_cloud_id"], "ip": first["ip"]}),
        )
        .await;
        assert_eq!(log["log_content"], "probe node\n", "{log}");
    }
}

fn sops_doc(hosts: &[i64]) -> Value {
    json!({
        "name": "sops-deploy",
        "variables": [
            {"name": "VERSION", "type": "string", "value": "1.0"},
            {"name": "TARGETS", "type": "host_list", "server": {"host_id_list": hosts}}
        ],
        "steps": [
            {"name": "install", "script": {"content": "echo v=$VERSION", "account": USER, "target": {"variable": "TARGETS"}}},
            {"name": "approve", "confirm": {"message": "go on?", "users": [USER]}}
        ],
        "plans": [{"name": "full"}, {"name": "install-only", "steps": ["install"]}]
    })
}

async fn sops_plan_node(mut h: Harness) {
    h.add_agent("10.0.8.1", None, None, &[]).await;
    h.add_agent("10.0.8.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    h.apply_template(sops_doc(&hosts)).await;
    for via in BOTH {
        let templates = call(&h, via, "get_job_template_list", json!({"start": 0, "length": 100})).await;
        let template = templates["data"].as_array().unwrap().iter().find(|t| t["name"] == "sops-deploy").cloned().unwrap();
        let plans = call(&h, via, "get_job_plan_list", json!({"job_template_id": template["id"], "start": 0, "length": 100})).await;
        let plan_id = |name: &str| plans["data"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["id"].as_i64().unwrap();
        // The plan view: every step carries all three infos; host variables as ip_list.
        let full = call(&h, via, "get_job_plan_detail", json!({"job_plan_id": plan_id("full")})).await;
        for s in full["step_list"].as_array().unwrap() {
            let info = s.as_object().unwrap();
            assert!(info.contains_key("script_info") && info.contains_key("file_info") && info.contains_key("approval_info"), "{s}");
        }
        let detail = call(&h, via, "get_job_plan_detail", json!({"job_plan_id": plan_id("install-only")})).await;
        let vars = detail["global_var_list"].as_array().unwrap();
        let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned().unwrap();
        let targets = var("TARGETS");
        assert_eq!(targets["value"], Value::Null, "{targets}");
        let shown: Vec<&str> = targets["server"]["ip_list"].as_array().unwrap().iter().map(|i| i["ip"].as_str().unwrap()).collect();
        assert_eq!(shown.len(), 2, "{targets}");
        // The node form sends back what the detail showed, with the user's values.
        let job = call(
            &h,
            via,
            "execute_job_plan",
            json!({"job_plan_id": detail["id"], "global_var_list": [
                {"id": var("VERSION")["id"], "value": "2.5"},
                {"id": targets["id"], "server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.0.8.2"}]}}
            ]}),
        )
        .await;
        let job_id = job["job_instance_id"].as_i64().unwrap();
        let st = poll_until_done(&h, via, job_id).await;
        assert_eq!(st["job_instance"]["status"], 3, "{st}");
        let step = &st["step_instance_list"][0];
        let hosts = step["step_ip_result_list"].as_array().unwrap();
        assert_eq!(hosts.iter().map(|r| r["ip"].as_str().unwrap()).collect::<Vec<_>>(), vec!["10.0.8.2"], "{st}");
        let log = call(
            &h,
            via,
            "get_job_instance_ip_log",
            json!({"job_instance_id": job_id, "step_instance_id": step["step_instance_id"], "bk_cloud_id": 0, "ip": "10.0.8.2"}),
        )
        .await;
        assert_eq!(log["log_content"], "v=2.5\n", "{log}");
    }
}

async fn sops_cron_node(mut h: Harness) {
    h.add_agent("10.0.9.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plans = h.apply_template(sops_doc(&hosts)).await;
    let plan = plans["plans"][1]["id"].as_i64().unwrap();
    for (i, via) in BOTH.into_iter().enumerate() {
        let name = format!("sops-cron-{i}");
        let saved = call(&h, via, "save_cron", json!({"job_plan_id": plan, "name": name, "expression": "0/5 * * * *"})).await;
        let id = saved["id"].as_i64().unwrap_or_else(|| panic!("{saved}"));
        // bk-sops starts it only when the user chose to, and checks `result` only.
        call(&h, via, "update_cron_status", json!({"id": id, "status": 1})).await;
        let list = call(&h, via, "get_cron_list", json!({"id": id})).await;
        let row = &list["data"][0];
        assert_eq!(
            (row["id"].as_i64(), row["name"].as_str(), row["status"].as_i64(), row["job_plan_id"].as_i64()),
            (Some(id), Some(name.as_str()), Some(1), Some(plan)),
            "{list}"
        );
        assert_eq!(row["expression"], "0/5 * * * *", "{row}");
    }
}

async fn sops_history_picker(mut h: Harness) {
    h.add_agent("10.0.10.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo history", &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job, Duration::from_secs(30)).await;
    let now = shoal_core::time::now_ms();
    for via in BOTH {
        let list = call(
            &h,
            via,
            "get_job_instance_list",
            json!({"create_time_start": now - 3_600_000, "create_time_end": now + 60_000, "start": 0, "length": 20}),
        )
        .await;
        let rows = list["data"].as_array().unwrap();
        let row = rows.iter().find(|r| r["job_instance_id"] == job).unwrap_or_else(|| panic!("{list}"));
        assert_eq!(row["status"], 3, "{row}");
        assert!(row["name"].is_string() && row["create_time"].is_i64(), "{row}");
    }
}

async fn monitor_alert_action(mut h: Harness) {
    let ips = ["10.0.11.1", "10.0.11.2", "10.0.11.3"];
    for ip in ips {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(3).await;
    let hosts = h.host_ids().await;
    h.apply_template(sops_doc(&hosts)).await;
    // More plans than one page holds.
    for n in 0..3 {
        let mut doc = sops_doc(&hosts);
        doc["name"] = json!(format!("other-{n}"));
        h.apply_template(doc).await;
    }
    for via in BOTH {
        // The action config's plan picker pages through every plan.
        let mut all = Vec::new();
        let mut start = 0;
        loop {
            let page = call(&h, via, "get_job_plan_list", json!({"start": start, "length": 3})).await;
            let rows = page["data"].as_array().unwrap().clone();
            let total = page["total"].as_i64().unwrap();
            all.extend(rows.iter().cloned());
            start += 3;
            if rows.is_empty() || start >= total {
                break;
            }
        }
        assert_eq!(all.len(), 8, "four templates with two plans each");
        let plan = all.iter().find(|p| p["name"] == "install-only" && p["job_template_id"].is_i64()).unwrap()["id"].clone();
        let detail = call(&h, via, "get_job_plan_detail", json!({"job_plan_id": plan})).await;
        let targets = detail["global_var_list"].as_array().unwrap().iter().find(|v| v["type"] == 3).cloned().unwrap();
        // The alert's hosts as bk-monitor's job action sends them (`fta_action/job`): one
        // `global_var_list` entry per host IP, each with the host variable's id and a one-host
        // `ip_list`, plus a string variable by id.
        let version = detail["global_var_list"].as_array().unwrap().iter().find(|v| v["name"] == "VERSION").cloned().unwrap();
        let mut global_vars: Vec<Value> =
            ips[..2].iter().map(|ip| json!({"id": targets["id"], "server": {"ip_list": ip_list(&[ip])}})).collect();
        global_vars.push(json!({"id": version["id"], "value": "alert"}));
        let job = call(&h, via, "execute_job_plan", json!({"job_plan_id": plan, "global_var_list": global_vars})).await;
        let st = poll_until_done(&h, via, job["job_instance_id"].as_i64().unwrap()).await;
        assert_eq!(st["job_instance"]["status"], 3, "{st}");
        // bk-job keeps the last value given for an id (`buildFinalTaskVariableValues` fills a
        // map), so the host variable holds the last IP only.
        let results = st["step_instance_list"][0]["step_ip_result_list"].as_array().unwrap();
        let ran: Vec<&str> = results.iter().map(|r| r["ip"].as_str().unwrap()).collect();
        assert_eq!(ran, vec!["10.0.11.2"], "{st}");
        let log = call(
            &h,
            via,
            "get_job_instance_ip_log",
            json!({"job_instance_id": job["job_instance_id"], "step_instance_id": st["step_instance_list"][0]["step_instance_id"],
                   "bk_cloud_id": 0, "ip": "10.0.11.2"}),
        )
        .await;
        assert_eq!(log["log_content"], "v=alert\n", "{log}");
    }
}
