//! A file step rolling by source file (`rolling_config.type` 2): the source hosts' files move
//! in batches, every target receiving batch *k* before batch *k + 1* is staged; the modes
//! (pause on failure, ignore failures, confirm each batch) decide between batches. Real
//! server, real agents, real files, on both stores.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn with_scope(mut v: Value) -> Value {
    v["bk_scope_type"] = json!("biz");
    v["bk_scope_id"] = json!("1");
    v
}

fn host_statuses(st: &Value) -> Vec<i64> {
    hosts_of(st).iter().map(|r| r["status"].as_i64().unwrap()).collect()
}

/// Two source hosts (`a` with files `a1`, `a2`; `b` with `b1`) and two targets.
struct Fleet {
    a: i64,
    b: i64,
    targets: Vec<i64>,
    from: PathBuf,
}

async fn fleet(h: &mut Harness) -> Fleet {
    for ip in ["10.8.1.1", "10.8.1.2", "10.8.1.3", "10.8.1.4"] {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(4).await;
    let from = h.dir.path().join("sources");
    std::fs::create_dir_all(&from).unwrap();
    for (name, content) in [("a1", "one\n"), ("a2", "two\n"), ("b1", "three\n")] {
        std::fs::write(from.join(name), content).unwrap();
    }
    Fleet {
        a: h.host_id_of("10.8.1.1").await,
        b: h.host_id_of("10.8.1.2").await,
        targets: vec![h.host_id_of("10.8.1.3").await, h.host_id_of("10.8.1.4").await],
        from,
    }
}

fn body(f: &Fleet, dir: &Path, a_files: &[&str], rolling: Value) -> Value {
    let path = |n: &&str| f.from.join(n).to_str().unwrap().to_string();
    with_scope(json!({
        "account_alias": USER,
        "file_target_path": dir.to_str().unwrap(),
        "file_source_list": [
            {"file_list": a_files.iter().map(path).collect::<Vec<_>>(), "account": {"alias": USER}, "server": {"host_id_list": [f.a]}},
            {"file_list": [path(&"b1")], "account": {"alias": USER}, "server": {"host_id_list": [f.b]}},
        ],
        "target_server": {"host_id_list": f.targets},
        "rolling_config": rolling,
    }))
}

fn one_file_per_batch(mode: i64) -> Value {
    json!({"type": 2, "mode": mode, "file_source": {"max_execute_object_num_in_batch": 1, "max_file_num_of_single_execute_object": 1}})
}

async fn batches_of_files_wait_for_the_user(mut h: Harness) {
    let f = fleet(&mut h).await;
    let dir = h.dir.path().join("rolled");
    let (_, v) = h.post("fast_transfer_file", body(&f, &dir, &["a1", "a2"], one_file_per_batch(3))).await;
    assert_eq!(v["code"], 0, "{v}");
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    // a's two files are over the per-host limit: [a:a1], [a:a2]; then [b:b1].
    let st = h.wait_job(job, 7).await;
    let s = &st["step_instance_list"][0];
    assert_eq!((s["status"].as_i64(), s["current_batch"].as_i64(), s["total_batch"].as_i64()), (Some(7), Some(1), Some(3)), "{st}");
    assert_eq!(host_statuses(&st), vec![9, 9], "{st}");
    assert_eq!(std::fs::read_to_string(dir.join("a1")).unwrap(), "one\n");
    assert!(!dir.join("a2").exists() && !dir.join("b1").exists(), "later batches wait for the user");

    let op = with_scope(json!({"job_instance_id": job, "step_instance_id": step, "operation_code": 13}));
    let (_, v) = h.post("operate_step_instance", op.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_job(job, 7).await;
    assert_eq!(st["step_instance_list"][0]["current_batch"], 2, "{st}");
    // Wait until batch 2 has really ended (the job is 7 again only after it).
    assert_eq!(std::fs::read_to_string(dir.join("a2")).unwrap(), "two\n");
    assert!(!dir.join("b1").exists());

    let (_, v) = h.post("operate_step_instance", op.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_job(job, 3).await;
    assert_eq!((st["step_instance_list"][0]["status"].as_i64(), st["step_instance_list"][0]["current_batch"].as_i64()), (Some(3), Some(3)));
    assert_eq!(host_statuses(&st), vec![9, 9]);
    assert_eq!(std::fs::read_to_string(dir.join("b1")).unwrap(), "three\n");

    // Each target's file log has every batch's file, with its source host.
    let q = format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}&step_instance_id={step}&bk_host_id={}", f.targets[1]);
    let (_, v) = h.get("get_job_instance_ip_log", &q).await;
    let logs = v["data"]["file_logs"].as_array().unwrap();
    let mut seen: Vec<(i64, String, i64)> = logs
        .iter()
        .filter(|l| l["mode"] == 1)
        .map(|l| {
            (
                l["src_ip"]["bk_host_id"].as_i64().unwrap(),
                l["src_path"].as_str().unwrap().rsplit('/').next().unwrap().to_string(),
                l["status"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![(f.a, "a1".to_string(), 4), (f.a, "a2".to_string(), 4), (f.b, "b1".to_string(), 4)];
    want.sort();
    assert_eq!(seen, want, "{v}");
    let (_, v) = h.post("operate_step_instance", op).await;
    assert_eq!(v["code"], 1241003, "nothing to continue: {v}");
}

async fn a_failed_batch_stops_or_is_ignored(mut h: Harness) {
    let f = fleet(&mut h).await;
    // Mode 1: the first batch names a missing file (203); the later batches never run.
    let dir = h.dir.path().join("paused");
    let (_, v) = h.post("fast_transfer_file", body(&f, &dir, &["missing", "a2"], one_file_per_batch(1))).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_job(v["data"]["job_instance_id"].as_i64().unwrap(), 4).await;
    assert_eq!(st["step_instance_list"][0]["status"], 4, "{st}");
    assert_eq!(host_statuses(&st), vec![203, 203], "{st}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!dir.join("a2").exists() && !dir.join("b1").exists(), "later batches never ran");

    // Mode 2: the failed batch is passed over, the others arrive; the step ends 6.
    let dir = h.dir.path().join("ignored");
    let (_, v) = h.post("fast_transfer_file", body(&f, &dir, &["missing", "a2"], one_file_per_batch(2))).await;
    let st = h.wait_job(v["data"]["job_instance_id"].as_i64().unwrap(), 3).await;
    assert_eq!(st["step_instance_list"][0]["status"], 6, "{st}");
    assert_eq!(std::fs::read_to_string(dir.join("a2")).unwrap(), "two\n");
    assert_eq!(std::fs::read_to_string(dir.join("b1")).unwrap(), "three\n");

    // Without limits every source goes in one batch.
    let dir = h.dir.path().join("whole");
    let (_, v) = h.post("fast_transfer_file", body(&f, &dir, &["a1", "a2"], json!({"type": 2, "file_source": {}}))).await;
    let st = h.wait_job(v["data"]["job_instance_id"].as_i64().unwrap(), 3).await;
    assert_eq!(st["step_instance_list"][0]["total_batch"], 1, "{st}");
    assert!(["a1", "a2", "b1"].iter().all(|n| dir.join(n).exists()));
}

async fn rolling_by_source_file_takes_host_files_only(mut h: Harness) {
    let f = fleet(&mut h).await;
    let dir = h.dir.path().join("refused");
    // Pushed content (a local upload) has no source host to roll over.
    let (_, v) = h.post("generate_local_file_upload_url", with_scope(json!({"file_name_list": ["u.bin"]}))).await;
    let slot = v["data"]["url_map"]["u.bin"].clone();
    let r = h.http.put(slot["upload_url"].as_str().unwrap()).body("u").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut mixed = body(&f, &dir, &["a1"], one_file_per_batch(1));
    mixed["file_source_list"].as_array_mut().unwrap().push(json!({"file_list": [slot["path"]], "file_type": 2}));
    let (_, v) = h.post("fast_transfer_file", mixed).await;
    assert_eq!(v["code"], 1244035, "{v}");
    // More batches than a serial step may have (500): refused before anything is read.
    let many: Vec<String> = (0..501).map(|i| format!("f{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (_, v) = h.post("fast_transfer_file", body(&f, &dir, &many, one_file_per_batch(1))).await;
    assert_eq!(v["code"], 1244027, "{v}");
    // type 2 needs its file_source object; a script cannot roll by source file.
    let (_, v) = h.post("fast_transfer_file", body(&f, &dir, &["a1"], json!({"type": 2}))).await;
    assert_eq!(v["code"], 1240003, "{v}");
    let (_, v) = h
        .post(
            "fast_execute_script",
            with_scope(json!({"script_content": b64("echo hi"), "script_language": 1, "account_alias": USER,
                "target_server": {"host_id_list": f.targets}, "rolling_config": {"type": 2, "file_source": {}}})),
        )
        .await;
    assert_eq!(v["code"], 1241005, "{v}");
}

on_both_stores!(batches_of_files_wait_for_the_user, a_failed_batch_stops_or_is_ignored, rolling_by_source_file_takes_host_files_only);
