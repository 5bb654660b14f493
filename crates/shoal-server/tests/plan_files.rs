//! File steps in templates and plans: a plan that runs a script step, then distributes
//! files (one from a source host, one uploaded) to the hosts a host-list variable names in
//! the run; `get_job_plan_detail`'s `file_info`; file-step documents that are refused.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    a_plan_distributes_files_to_the_hosts_its_variable_names,
    bad_file_steps_are_refused_with_the_field,
    a_deferred_file_step_is_checked_again_when_it_starts
);

async fn shoal(h: &Harness, path: &str, body: Value) -> Value {
    let r = h.http.post(format!("{}/api/shoal/v1/{path}", h.url)).header("X-Bkapi-Authorization", h.auth_header()).json(&body).send().await;
    r.unwrap().json().await.unwrap()
}

async fn shoal_get(h: &Harness, path: &str, query: &str) -> Value {
    let r = h.http.get(format!("{}/api/shoal/v1/{path}?{query}", h.url)).header("X-Bkapi-Authorization", h.auth_header()).send().await;
    r.unwrap().json().await.unwrap()
}

async fn apply(h: &Harness, doc: &Value) -> Value {
    shoal(h, "templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc})).await
}

/// Uploads `content` as `name` through an upload URL; the path to name it by.
async fn upload(h: &Harness, name: &str, content: &[u8]) -> String {
    let (_, v) =
        h.post("generate_local_file_upload_url", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "file_name_list": [name]})).await;
    assert_eq!(v["code"], 0, "{v}");
    let slot = &v["data"]["url_map"][name];
    let r = h.http.put(slot["upload_url"].as_str().unwrap()).body(content.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    slot["path"].as_str().unwrap().to_string()
}

fn ship_doc(src_dir: &str, src_host: i64, upload: &str, dest: &str, all: &[i64]) -> Value {
    json!({
        "name": "ship",
        "variables": [
            {"name": "SRC", "type": "host_list", "server": {"host_id_list": [src_host]}},
            {"name": "DEST", "type": "host_list", "server": {"host_id_list": all}}
        ],
        "steps": [
            {"name": "build", "script": {"content": format!("mkdir -p {src_dir} && printf 'built\\n' > {src_dir}/app.txt"),
                                         "account": USER, "target": {"host_id_list": [src_host]}}},
            {"name": "distribute", "file": {
                "sources": [
                    {"files": [format!("{src_dir}/app.txt")], "account": USER, "target": {"variable": "SRC"}},
                    {"upload": upload}
                ],
                "destination": {"path": dest, "account": USER, "target": {"variable": "DEST"}},
                "download_speed_limit": 10,
                "timeout": 600
            }}
        ]
    })
}

fn step_hosts(st: &Value, i: usize) -> Vec<(i64, i64)> {
    let list = st["step_instance_list"][i]["step_ip_result_list"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<(i64, i64)> = list.iter().map(|r| (r["bk_host_id"].as_i64().unwrap(), r["status"].as_i64().unwrap())).collect();
    out.sort_unstable();
    out
}

async fn a_plan_distributes_files_to_the_hosts_its_variable_names(mut h: Harness) {
    for ip in ["127.0.0.81", "127.0.0.82", "127.0.0.83", "127.0.0.84"] {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(4).await;
    let src = h.host_id_of("127.0.0.81").await;
    let dests = [h.host_id_of("127.0.0.82").await, h.host_id_of("127.0.0.83").await, h.host_id_of("127.0.0.84").await];
    let src_dir = h.dir.path().join("built");
    let dest = h.dir.path().join("deployed/app");
    let path = upload(&h, "app.conf", b"port=80\n").await;
    let doc = ship_doc(src_dir.to_str().unwrap(), src, &path, dest.to_str().unwrap(), &dests);
    let v = apply(&h, &doc).await;
    assert_eq!(v["code"], 0, "{v}");
    let plan = v["data"]["plans"][0]["id"].as_i64().unwrap();

    // The version holds the uploaded content it distributes; the same document again changes nothing.
    let v = shoal_get(&h, "templates/export", "bk_scope_type=biz&bk_scope_id=1&name=ship").await;
    let pinned = &v["data"]["document"]["steps"][1]["file"]["sources"][1]["pinned"];
    assert_eq!((pinned["name"].as_str(), pinned["size"].as_i64()), (Some("app.conf"), Some(8)), "{v}");
    assert_eq!(pinned["sha256"].as_str().map(str::len), Some(64), "{v}");
    let v = apply(&h, &doc).await;
    assert_eq!((v["data"]["changed"].as_bool(), v["data"]["version"].as_i64()), (Some(false), Some(1)), "{v}");
    // A pin sent by the caller is replaced by what the upload holds.
    let mut forged = doc.clone();
    forged["steps"][1]["file"]["sources"][1]["pinned"] = json!({"sha256": "0".repeat(64), "size": 1, "name": "evil"});
    let v = apply(&h, &forged).await;
    assert_eq!(v["data"]["changed"], false, "{v}");

    // Plan detail: the file step in bk-job's shape.
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    assert_eq!(d["code"], 0, "{d}");
    let step = &d["data"]["step_list"][1];
    assert_eq!((step["type"].as_i64(), &step["script_info"], &step["approval_info"]), (Some(2), &Value::Null, &Value::Null), "{step}");
    let info = &step["file_info"];
    assert_eq!(info["file_destination"]["path"], json!(dest.to_str().unwrap()), "{info}");
    assert_eq!(info["file_destination"]["server"]["variable"], "DEST", "{info}");
    assert_eq!(info["file_destination"]["account"]["alias"], USER, "{info}");
    let sources = info["file_source_list"].as_array().unwrap();
    assert_eq!((sources[0]["file_type"].as_i64(), sources[1]["file_type"].as_i64()), (Some(1), Some(2)), "{info}");
    assert_eq!(sources[0]["account"]["alias"], USER, "{info}");
    assert_eq!(sources[0]["server"]["variable"], "SRC", "{info}");
    assert_eq!(sources[1]["file_list"], json!([path]), "{info}");
    assert_eq!(
        (info["transfer_mode"].as_i64(), info["timeout"].as_i64(), info["is_ignore_error"].as_i64()),
        (Some(2), Some(600), Some(0)),
        "{info}"
    );
    assert_eq!((&info["destination_speed_limit"], &info["source_speed_limit"]), (&json!(10), &Value::Null), "{info}");
    assert_eq!(d["data"]["step_list"][0]["file_info"], Value::Null);
    let used: Vec<(&str, bool)> = d["data"]["global_var_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["used"].as_bool().unwrap()))
        .collect();
    assert_eq!(used, vec![("SRC", true), ("DEST", true)], "{d}");

    // Run it with DEST naming two of the three hosts: the files land there, and only there.
    let chosen = [dests[0], dests[2]];
    let (_, v) = h
        .post(
            "execute_job_plan",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan,
                   "global_var_list": [{"name": "DEST", "server": {"host_id_list": chosen}}]}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    assert_eq!(st["step_instance_list"][1]["type"], 2, "{st}");
    assert_eq!(step_hosts(&st, 0), vec![(src, 9)], "{st}");
    let mut landed = vec![(chosen[0], 9), (chosen[1], 9)];
    landed.sort_unstable();
    assert_eq!(step_hosts(&st, 1), landed, "{st}");
    assert_eq!(std::fs::read_to_string(dest.join("app.txt")).unwrap(), "built\n");
    assert_eq!(std::fs::read_to_string(dest.join("app.conf")).unwrap(), "port=80\n");
    let step = st["step_instance_list"][1]["step_instance_id"].as_i64().unwrap();
    let mut want = vec![src_dir.join("app.txt").to_str().unwrap().to_string(), path.clone()];
    want.sort();
    for host in chosen {
        let q = format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}&step_instance_id={step}&bk_host_id={host}");
        let (_, v) = h.get("get_job_instance_ip_log", &q).await;
        let mut placed: Vec<String> = v["data"]["file_logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["mode"] == 1 && l["status"] == 4)
            .map(|l| l["src_path"].as_str().unwrap().to_string())
            .collect();
        placed.sort();
        assert_eq!(placed, want, "{v}");
    }

    // A change of the file step is a new version whose changes, history and diff name it.
    let mut changed = doc.clone();
    changed["steps"][1]["file"]["mode"] = json!("strict");
    let v = apply(&h, &changed).await;
    assert_eq!(v["data"]["version"], 2, "{v}");
    let paths: Vec<&str> = v["data"]["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["steps[distribute].file.mode"], "{v}");
    let v = shoal_get(&h, "templates/history", "bk_scope_type=biz&bk_scope_id=1&name=ship").await;
    let last = v["data"]["versions"].as_array().unwrap().iter().find(|x| x["version"] == 2).unwrap().clone();
    assert_eq!(last["changes"][0]["after"], "strict", "{v}");
    let v = shoal_get(&h, "templates/version_diff", "bk_scope_type=biz&bk_scope_id=1&name=ship&from=1&to=2").await;
    assert_eq!(v["data"]["changes"][0]["path"], "steps[distribute].file.mode", "{v}");
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id=1&job_plan_id={plan}")).await;
    assert_eq!(d["data"]["step_list"][1]["file_info"]["transfer_mode"], 1, "{d}");

    // A host-list value naming a host outside the scope is refused before anything runs.
    let (_, v) = h
        .post(
            "execute_job_plan",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan,
                   "global_var_list": [{"name": "DEST", "server": {"host_id_list": [999_999]}}]}),
        )
        .await;
    assert_ne!(v["code"], 0, "{v}");
    assert_eq!(v["data"], Value::Null, "{v}");
}

async fn bad_file_steps_are_refused_with_the_field(mut h: Harness) {
    h.add_agent("127.0.0.91", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_ids().await[0];
    let path = upload(&h, "a.txt", b"a\n").await;
    let good = ship_doc("/tmp/src", host, &path, "/tmp/dest", &[host]);
    let refused = |v: &Value, field: &str| {
        assert_eq!(v["code"], 1241010, "{v}");
        assert!(v["message"].as_str().unwrap().contains(field), "{field}: {v}");
    };
    let mut d = good.clone();
    d["steps"][1]["file"]["destination"]["path"] = json!("relative/dir");
    refused(&apply(&h, &d).await, "steps.file.destination.path");
    let mut d = good.clone();
    d["steps"][1]["file"]["sources"][0].as_object_mut().unwrap().remove("account");
    refused(&apply(&h, &d).await, "steps.file.sources[0].account");
    let mut d = good.clone();
    d["steps"][1]["file"]["sources"] = json!([]);
    refused(&apply(&h, &d).await, "steps.file.sources");
    let mut d = good.clone();
    d["steps"][1]["file"]["destination"]["target"] = json!({"variable": "NOPE"});
    assert_eq!(apply(&h, &d).await["code"], 1244008);

    // An upload that never was, and one that holds nothing yet.
    let mut d = good.clone();
    d["steps"][1]["file"]["sources"][1]["upload"] = json!("1/none/alice/ghost.txt");
    refused(&apply(&h, &d).await, "was not uploaded");
    let (_, v) = h
        .post("generate_local_file_upload_url", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "file_name_list": ["empty.txt"]}))
        .await;
    let mut d = good.clone();
    d["steps"][1]["file"]["sources"][1]["upload"] = v["data"]["url_map"]["empty.txt"]["path"].clone();
    refused(&apply(&h, &d).await, "nothing was uploaded");

    // An unknown mode names where it is.
    let mut d = good.clone();
    d["steps"][1]["file"]["mode"] = json!("careful");
    let v = apply(&h, &d).await;
    assert_ne!(v["code"], 0, "{v}");
    assert!(v["message"].as_str().unwrap().contains("steps[1].file.mode"), "{v}");

    // Files on hosts count by the paths named: (paths × targets) over JOB's limit is refused
    // when the plan runs.
    let many: Vec<String> = (0..100_001).map(|i| format!("/s/{i}")).collect();
    let mut d = good.clone();
    d["name"] = json!("too-many");
    d["steps"][1]["file"]["sources"] = json!([{"files": many, "account": USER, "target": {"host_id_list": [host]}}]);
    let v = apply(&h, &d).await;
    assert_eq!(v["code"], 0, "{v}");
    let plan = v["data"]["plans"][0]["id"].as_i64().unwrap();
    let (_, v) = h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan})).await;
    assert_eq!(v["code"], 1244021, "{v}");
    shoal(&h, "templates/delete", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "too-many"})).await;

    // None of these made a template; the good document does.
    let v = shoal_get(&h, "templates", "bk_scope_type=biz&bk_scope_id=1").await;
    assert_eq!(v["data"]["total"], 0, "{v}");
    assert_eq!(apply(&h, &good).await["code"], 0);
}

async fn a_deferred_file_step_is_checked_again_when_it_starts(mut h: Harness) {
    h.add_agent("127.0.0.95", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_ids().await[0];
    let temp = h.create_account(1, "deployer", &current_user()).await;
    let path = upload(&h, "a.txt", b"a\n").await;
    let dest = h.dir.path().join("deferred");
    let mut doc = ship_doc("/tmp/src", host, &path, dest.to_str().unwrap(), &[host]);
    doc["steps"].as_array_mut().unwrap().remove(0);
    doc["steps"][0]["file"]["sources"].as_array_mut().unwrap().remove(0);
    doc["steps"][0]["file"]["destination"]["account"] = json!("deployer");
    let v = apply(&h, &doc).await;
    assert_eq!(v["code"], 0, "{v}");
    let plan = v["data"]["plans"][0]["id"].as_i64().unwrap();
    let (_, v) =
        h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan, "start_task": false})).await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();

    // The account the files were to belong to is gone: the start is refused, nothing moves.
    let (_, v) = h.post("delete_account", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "id": temp["id"]})).await;
    assert_eq!(v["code"], 0, "{v}");
    let start = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "operation_code": 2});
    let (_, v) = h.post("operate_job_instance", start).await;
    assert_eq!(v["code"], 1244003, "{v}");
    assert_eq!(h.status(job).await["job_instance"]["status"], 1, "still not started");
    assert!(!dest.exists());
}
