//! File distribution end to end: a real server, real agents, real files. `push_config_file`,
//! uploads with `generate_local_file_upload_url` + `fast_transfer_file`, strict and force
//! modes, a corrupted and a missing blob, a terminate mid-transfer, speed limits, file logs.

#[macro_use]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const BIZ: &str = "1";

fn scope() -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": BIZ})
}

fn with_scope(mut v: Value) -> Value {
    v["bk_scope_type"] = json!("biz");
    v["bk_scope_id"] = json!(BIZ);
    v
}

/// Uploads `content` as `name` through an upload URL; returns the path to transfer it by.
async fn upload(h: &Harness, name: &str, content: &[u8]) -> String {
    let (_, v) = h.post("generate_local_file_upload_url", with_scope(json!({"file_name_list": [name]}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let slot = &v["data"]["url_map"][name];
    let url = slot["upload_url"].as_str().unwrap();
    assert!(url.starts_with(&h.url), "{url}");
    // As bk-sops does: a PUT of the raw body, no credentials but the URL.
    let r = h.http.put(url).header("X-BKREPO-OVERWRITE", "True").body(content.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["code"], 0, "{answer}");
    let md5 = format!("{:x}", md5_of(content));
    assert_eq!(answer["data"]["nodeInfo"]["md5"], json!(md5), "{answer}");
    slot["path"].as_str().unwrap().to_string()
}

fn md5_of(b: &[u8]) -> u128 {
    use md5::Digest;
    u128::from_be_bytes(md5::Md5::digest(b).into())
}

async fn transfer(h: &Harness, paths: &[String], dir: &Path, hosts: &[i64], extra: Value) -> Value {
    let mut body = with_scope(json!({
        "account_alias": USER,
        "file_target_path": dir.to_str().unwrap(),
        "file_source_list": [{"file_list": paths, "file_type": 2}],
        "target_server": {"host_id_list": hosts},
    }));
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (_, v) = h.post("fast_transfer_file", body).await;
    v
}

fn host_statuses(st: &Value) -> Vec<i64> {
    hosts_of(st).iter().map(|r| r["status"].as_i64().unwrap()).collect()
}

async fn file_logs(h: &Harness, job: i64, step: i64, host: i64) -> Vec<Value> {
    let q = format!("bk_scope_type=biz&bk_scope_id={BIZ}&job_instance_id={job}&step_instance_id={step}&bk_host_id={host}");
    let (_, v) = h.get("get_job_instance_ip_log", &q).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["log_type"], 2, "{v}");
    v["data"]["file_logs"].as_array().unwrap().clone()
}

async fn pushed_config_files_land_with_their_content(mut h: Harness) {
    h.add_agent("10.9.0.1", None, None, &[]).await;
    h.add_agent("10.9.0.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let dir = h.dir.path().join("conf/new");
    let body = with_scope(json!({
        "account_alias": USER,
        "file_target_path": dir.to_str().unwrap(),
        "file_list": [{"file_name": "a.conf", "content": b64("alpha=1\n")}, {"file_name": "b.conf", "content": b64("beta=2\n")}],
        "target_server": {"host_id_list": hosts},
    }));
    let (_, v) = h.post("push_config_file", body).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["step_instance_id"], Value::Null, "JOB answers no step id here: {v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    assert_eq!(st["step_instance_list"][0]["type"], 2, "{st}");
    assert_eq!(host_statuses(&st), vec![9, 9]);
    assert_eq!(std::fs::read_to_string(dir.join("a.conf")).unwrap(), "alpha=1\n");
    assert_eq!(std::fs::read_to_string(dir.join("b.conf")).unwrap(), "beta=2\n");
    assert_eq!(std::fs::metadata(dir.join("a.conf")).unwrap().permissions().mode() & 0o777, 0o644);
    let step = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    for l in &logs {
        assert_eq!((l["mode"].as_i64(), l["status"].as_i64(), l["process"].as_str()), (Some(1), Some(4), Some("100%")), "{l}");
        assert_eq!(l["dest_ip"]["bk_host_id"], hosts[0], "{l}");
    }
    // The batch form answers file_task_logs.
    let (_, v) = h
        .post("batch_get_job_instance_ip_log", with_scope(json!({"job_instance_id": job, "step_instance_id": step, "host_id_list": hosts})))
        .await;
    assert_eq!(v["data"]["log_type"], 2, "{v}");
    assert_eq!(v["data"]["script_task_logs"], Value::Null, "{v}");
    let per_host = v["data"]["file_task_logs"].as_array().unwrap();
    assert_eq!(per_host.len(), 2, "{v}");
    assert_eq!(per_host[1]["file_logs"].as_array().unwrap().len(), 2, "{v}");
}

async fn an_uploaded_file_is_transferred_and_not_fetched_twice(mut h: Harness) {
    h.add_agent("10.9.1.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let path = upload(&h, "data.bin", &content).await;
    let dir = h.dir.path().join("dest");
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({})).await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let step = v["data"]["step_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    assert_eq!(std::fs::read(dir.join("data.bin")).unwrap(), content);
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert_eq!(logs[0]["src_path"], json!(path));
    assert_eq!(logs[0]["size"], "683.6 KB");
    // The same content again: already in place, not fetched.
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({})).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert!(logs[0]["log_content"].as_str().unwrap().contains("not fetched"), "{logs:?}");
    // file_target_name renames the one file.
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({"file_target_name": "renamed.bin"})).await;
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    assert_eq!(std::fs::read(dir.join("renamed.bin")).unwrap(), content);
}

async fn strict_mode_fails_on_a_missing_directory_and_force_mode_makes_it(mut h: Harness) {
    h.add_agent("10.9.2.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let path = upload(&h, "f.txt", b"content\n").await;
    let dir = h.dir.path().join("missing/dir");
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({"transfer_mode": 1})).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 4, "{st}");
    assert_eq!(host_statuses(&st), vec![202], "{st}");
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert_eq!(logs[0]["status"], 5, "{logs:?}");
    assert!(logs[0]["log_content"].as_str().unwrap().contains("does not exist"), "{logs:?}");
    assert!(!dir.exists());
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({"transfer_mode": 2})).await;
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    assert_eq!(std::fs::read_to_string(dir.join("f.txt")).unwrap(), "content\n");
}

async fn a_corrupted_blob_is_refused_and_a_missing_one_is_203(mut h: Harness) {
    h.add_agent("10.9.3.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let content = b"the real content\n";
    let path = upload(&h, "c.txt", content).await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content));
    let blob = h.config.data_dir.clone().unwrap().join("blobs").join(&sha[..2]).join(&sha);
    std::fs::write(&blob, b"the fake content\n").unwrap();
    let dir = h.dir.path().join("c");
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({})).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![202], "{st}");
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert!(logs[0]["log_content"].as_str().unwrap().contains("hash mismatch"), "{logs:?}");
    assert!(!dir.join("c.txt").exists(), "a file that failed its hash is never placed");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no partial file is left behind");

    std::fs::remove_file(&blob).unwrap();
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({})).await;
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![203], "{st}");
}

async fn a_terminate_mid_transfer_removes_the_partial_file(mut h: Harness) {
    h.add_agent("10.9.4.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let content = vec![b'x'; 6 << 20];
    let path = upload(&h, "big.bin", &content).await;
    let dir = h.dir.path().join("big");
    // 1 MB/s: six seconds to go.
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({"download_speed_limit": 1})).await;
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    wait_for("a partial file", Duration::from_secs(20), || {
        let dir = dir.clone();
        async move { std::fs::read_dir(&dir).map(|d| d.count() > 0).unwrap_or(false) }
    })
    .await;
    // Progress is visible while the file moves.
    let step = v["data"]["step_instance_id"].as_i64().unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let logs = file_logs(&h, job, step, hosts[0]).await;
        if logs.first().is_some_and(|l| l["status"] == 3 && l["process"] != "0%") {
            break;
        }
        assert!(Instant::now() < end, "no download progress in the file log: {logs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, v) = h.post("operate_job_instance", with_scope(json!({"job_instance_id": job, "operation_code": 1}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![403], "{st}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the partial file is removed");
}

async fn the_download_speed_limit_is_honoured(mut h: Harness) {
    h.add_agent("10.9.5.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let content = vec![b'y'; 3 << 20];
    let path = upload(&h, "s.bin", &content).await;
    let dir = h.dir.path().join("s");
    let started = Instant::now();
    let v = transfer(&h, std::slice::from_ref(&path), &dir, &hosts, json!({"download_speed_limit": 1})).await;
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    // 3 MiB at 1 MiB/s cannot take less than about two seconds after the first byte.
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
    assert_eq!(std::fs::read(dir.join("s.bin")).unwrap().len(), 3 << 20);
}

async fn the_upload_speed_limit_is_honoured(mut h: Harness) {
    h.add_agent("10.9.5.2", None, None, &[]).await;
    h.add_agent("10.9.5.3", None, None, &[]).await;
    h.wait_connected(2).await;
    let (src, target) = (h.host_id_of("10.9.5.2").await, h.host_id_of("10.9.5.3").await);
    let from = h.dir.path().join("up-source");
    std::fs::create_dir_all(&from).unwrap();
    std::fs::write(from.join("u.bin"), vec![b'u'; 3 << 20]).unwrap();
    let dir = h.dir.path().join("up-dest");
    let body = with_scope(json!({
        "account_alias": USER,
        "file_target_path": dir.to_str().unwrap(),
        "file_source_list": [{"file_list": [from.join("u.bin").to_str().unwrap()], "account": {"alias": USER}, "server": {"host_id_list": [src]}}],
        "target_server": {"host_id_list": [target]},
        "upload_speed_limit": 1,
    }));
    let started = Instant::now();
    let (_, v) = h.post("fast_transfer_file", body).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    // The source host uploads 3 MiB at 1 MiB/s: about two seconds at least.
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
    assert_eq!(std::fs::read(dir.join("u.bin")).unwrap().len(), 3 << 20);
}

async fn bad_file_requests_get_job_codes(mut h: Harness) {
    h.add_agent("10.9.6.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let path = upload(&h, "ok.txt", b"ok").await;
    let cases = [
        (json!({"file_target_path": "relative/dir"}), 1241007),
        (json!({"file_target_path": null}), 1241007),
        (json!({"file_source_list": []}), 1241004),
        (json!({"file_source_list": [{"file_list": ["1/nope/alice/x"], "file_type": 2}]}), 1241005),
        (json!({"file_source_list": [{"file_list": [path.clone()], "file_type": 9}]}), 1241005),
        (json!({"target_server": {}}), 1241004),
        (json!({"account_alias": "nobody-here"}), 1244003),
    ];
    for (extra, code) in cases {
        let v = transfer(&h, std::slice::from_ref(&path), Path::new("/tmp/x"), &hosts, extra.clone()).await;
        assert_eq!(v["code"], code, "{extra}: {v}");
    }
    let (_, v) = h.post("push_config_file", with_scope(json!({"account_alias": USER, "file_target_path": "/tmp/x", "file_list": [{"file_name": "a", "content": ""}], "target_server": {"host_id_list": hosts}}))).await;
    assert_eq!(v["code"], 1241005, "{v}");
    let (_, v) = h
        .post(
            "push_config_file",
            with_scope(
                json!({"account_alias": USER, "file_target_path": "/tmp/x", "file_list": [], "target_server": {"host_id_list": hosts}}),
            ),
        )
        .await;
    assert_eq!(v["code"], 1241007, "{v}");
    let (_, v) = h.post("generate_local_file_upload_url", scope()).await;
    assert_eq!(v["code"], 1241004, "{v}");
    // Blobs are not readable without a token sealed into a task.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"ok"));
    let r = h.http.get(format!("{}/api/shoal/v1/agent/blobs/{sha}", h.url)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = h.http.get(format!("{}/api/shoal/v1/agent/blobs/{sha}", h.url)).header("x-shoal-blob-token", "forged").send().await.unwrap();
    assert_eq!(r.status(), 403);
    // An upload URL that was never handed out stores nothing.
    let r = h.http.put(format!("{}/api/shoal/v1/uploads/not-a-token", h.url)).body("x").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

async fn files_on_a_source_host_reach_the_targets(mut h: Harness) {
    h.add_agent("10.9.7.1", None, None, &[]).await;
    h.add_agent("10.9.7.2", None, None, &[]).await;
    h.add_agent("10.9.7.3", None, None, &[]).await;
    h.wait_connected(3).await;
    let src = h.host_id_of("10.9.7.1").await;
    let targets = vec![h.host_id_of("10.9.7.2").await, h.host_id_of("10.9.7.3").await];
    let from = h.dir.path().join("source");
    std::fs::create_dir_all(from.join("logs/deep")).unwrap();
    std::fs::write(from.join("app.log"), "app\n").unwrap();
    std::fs::write(from.join("app.log.1"), "old\n").unwrap();
    std::fs::write(from.join("other.txt"), "other\n").unwrap();
    std::fs::write(from.join("logs/a.txt"), "a\n").unwrap();
    std::fs::write(from.join("logs/deep/b.txt"), "b\n").unwrap();
    let f = |p: &str| from.join(p).to_str().unwrap().to_string();
    let dir = h.dir.path().join("collected");
    let body = with_scope(json!({
        "account_alias": USER,
        "file_target_path": dir.to_str().unwrap(),
        "file_source_list": [{
            "file_list": [f("other.txt"), format!("{}/REGEX:app\\.log.*", from.display()), f("logs")],
            "account": {"alias": USER},
            "server": {"host_id_list": [src]},
        }],
        "target_server": {"host_id_list": targets},
    }));
    let (_, v) = h.post("fast_transfer_file", body.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    let why = [file_logs(&h, job, step, targets[0]).await, file_logs(&h, job, step, targets[1]).await];
    assert_eq!(host_statuses(&st), vec![9, 9], "only the targets are listed: {st}; file logs: {why:?}");
    for (name, content) in
        [("other.txt", "other\n"), ("app.log", "app\n"), ("app.log.1", "old\n"), ("logs/a.txt", "a\n"), ("logs/deep/b.txt", "b\n")]
    {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), content, "{name}");
    }
    let logs = file_logs(&h, job, step, targets[0]).await;
    assert_eq!(logs.len(), 5, "{logs:?}");
    assert!(logs.iter().all(|l| l["src_ip"]["bk_host_id"] == src && l["status"] == 4), "{logs:?}");

    // A source path that names nothing: every target ends 203, with the reason.
    let mut missing = body.clone();
    missing["file_source_list"][0]["file_list"] = json!([f("no-such-file")]);
    let (_, v) = h.post("fast_transfer_file", missing).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![203, 203], "{st}");
    let logs = file_logs(&h, job, step, targets[1]).await;
    assert!(logs[0]["log_content"].as_str().unwrap().contains("not found"), "{logs:?}");

    // A source without an account is refused up front.
    let mut bad = body.clone();
    bad["file_source_list"][0].as_object_mut().unwrap().remove("account");
    let (_, v) = h.post("fast_transfer_file", bad).await;
    assert_eq!(v["code"], 1241004, "{v}");
}

/// Uploads `size` bytes and starts sending them to the first host at 1 MB/s; returns the job,
/// its step and the target directory once part of the file has arrived.
async fn slow_transfer(h: &Harness, size: usize) -> (i64, i64, std::path::PathBuf, Vec<u8>) {
    let hosts = h.host_ids().await;
    let content: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let path = upload(h, "r.bin", &content).await;
    let dir = h.dir.path().join("r");
    let v = transfer(h, std::slice::from_ref(&path), &dir, &hosts[..1], json!({"download_speed_limit": 1})).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    wait_for("part of the file", Duration::from_secs(20), || {
        let dir = dir.clone();
        async move {
            std::fs::read_dir(&dir).map(|d| d.flatten().any(|e| e.metadata().map(|m| m.len() > 300_000).unwrap_or(false))).unwrap_or(false)
        }
    })
    .await;
    (job, step, dir, content)
}

/// The server dies (no shutdown code runs) while a file is on its way and is out of reach for
/// a while; started again, the agent's download goes on from the byte it had.
async fn killed_mid_download(backend: Backend) {
    let Some(Gated { dir, config, mut server, gate, api, agent: _agent, hosts, db: _db }) = gated_agent(backend, "127.0.0.95", 20).await
    else {
        return;
    };
    let host = hosts[0];
    // Larger than what socket buffers hold, so the kill cuts the download short.
    let content: Vec<u8> = (0..(32usize << 20)).map(|i| (i % 253) as u8).collect();
    let slot = api.post("generate_local_file_upload_url", with_scope(json!({"file_name_list": ["k.bin"]}))).await;
    let slot = &slot["url_map"]["k.bin"];
    let r = reqwest::Client::new().put(slot["upload_url"].as_str().unwrap()).body(content.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let target = dir.path().join("k");
    let started = api
        .post(
            "fast_transfer_file",
            with_scope(json!({
                "account_alias": USER, "file_target_path": target.to_str().unwrap(), "download_speed_limit": 4,
                "file_source_list": [{"file_list": [slot["path"]], "file_type": 2}], "target_server": {"host_id_list": [host]},
            })),
        )
        .await;
    let (job, step) = (started["job_instance_id"].as_i64().unwrap(), started["step_instance_id"].as_i64().unwrap());
    wait_for("part of the file", Duration::from_secs(20), || {
        let target = target.clone();
        async move {
            std::fs::read_dir(&target)
                .map(|d| d.flatten().any(|e| e.metadata().map(|m| m.len() > 300_000).unwrap_or(false)))
                .unwrap_or(false)
        }
    })
    .await;
    gate.set(None);
    server.kill();
    let server = Server::start(config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    gate.set(Some(server.addr));
    let api = Api::new(&server.url);
    wait_for("the job finished", Duration::from_secs(60), || {
        let api = api.clone();
        async move { api.status(job).await["finished"] == true }
    })
    .await;
    let st = api.status(job).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    assert_eq!(std::fs::read(target.join("k.bin")).unwrap(), content);
    let q = format!("bk_scope_type=biz&bk_scope_id={BIZ}&job_instance_id={job}&step_instance_id={step}&bk_host_id={host}");
    let log: Value = reqwest::Client::new()
        .get(format!("{}/api/v3/get_job_instance_ip_log?{q}", server.url))
        .header("X-Bkapi-Authorization", json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": USER}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = log["data"]["file_logs"][0]["log_content"].as_str().unwrap_or_default().to_string();
    assert!(text.contains("resumed"), "{log}");
}

mod a_download_resumes_after_the_server_is_killed {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        super::killed_mid_download(super::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::killed_mid_download(super::Backend::Postgres).await;
    }
}

async fn a_download_resumes_after_the_agent_restarts(mut h: Harness) {
    let agent = h.add_agent("10.9.9.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_ids().await[0];
    let (job, step, dir, content) = slow_transfer(&h, 3 << 20).await;
    h.stop_agent(agent).await;
    h.add_agent("10.9.9.1", None, None, &[]).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(host_statuses(&st), vec![310], "the interrupted run is lost, not guessed: {st}");
    assert!(std::fs::read_dir(&dir).unwrap().count() > 0, "the partial file is kept for a retry");
    // Retry the failed host: the download goes on from where it stopped.
    let (_, v) =
        h.post("operate_step_instance", with_scope(json!({"job_instance_id": job, "step_instance_id": step, "operation_code": 2}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let end = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let st = h.status(job).await;
        if st["finished"] == json!(true) && st["step_instance_list"][0]["execute_count"] == 1 {
            assert_eq!(host_statuses(&st), vec![9], "{st}");
            break file_logs(&h, job, step, host).await;
        }
        assert!(Instant::now() < end, "retry not finished: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(std::fs::read(dir.join("r.bin")).unwrap(), content);
    assert!(logs[0]["log_content"].as_str().unwrap().contains("resumed"), "{logs:?}");
}

async fn a_target_without_permission_or_space_fails_with_the_reason(mut h: Harness) {
    h.add_agent("10.9.10.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // An account whose OS user may not write where the file goes.
    h.create_account(1, "nobody-acct", "nobody").await;
    let path = upload(&h, "p.txt", b"permission\n").await;
    let closed = h.dir.path().join("closed");
    std::fs::create_dir_all(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = transfer(&h, std::slice::from_ref(&path), &closed, &hosts, json!({"account_alias": "nobody-acct"})).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![202], "{st}");
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert!(logs[0]["log_content"].as_str().unwrap().contains("permission denied"), "{logs:?}");
    // Where it may write, the file is its own.
    let open = h.dir.path().join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let v = transfer(&h, std::slice::from_ref(&path), &open, &hosts, json!({"account_alias": "nobody-acct"})).await;
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(host_statuses(&st), vec![9], "{st}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(open.join("p.txt")).unwrap()), nobody);

    // A target file system without room for the file.
    let mnt = h.dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status().is_ok_and(|s| s.success());
    if !mounted {
        assert!(std::env::var("CI").is_err(), "CI must be able to mount a tmpfs for the full-disk test");
        eprintln!("skipping the full-disk part: cannot mount a tmpfs (needs root)");
        return;
    }
    let big = upload(&h, "big.bin", &vec![7u8; 3 << 20]).await;
    let v = transfer(&h, std::slice::from_ref(&big), &mnt, &hosts, json!({})).await;
    let (job, step) = (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    let left = std::fs::read_dir(&mnt).map(|d| d.count()).unwrap_or(0);
    let _ = std::process::Command::new("umount").arg("-l").arg(&mnt).status();
    assert_eq!(host_statuses(&st), vec![202], "{st}");
    let logs = file_logs(&h, job, step, hosts[0]).await;
    assert!(logs[0]["log_content"].as_str().unwrap().contains("No space left"), "{logs:?}");
    assert_eq!(left, 0, "the partial file is removed");
}

on_both_stores!(
    a_target_without_permission_or_space_fails_with_the_reason,
    a_download_resumes_after_the_agent_restarts,
    files_on_a_source_host_reach_the_targets,
    pushed_config_files_land_with_their_content,
    an_uploaded_file_is_transferred_and_not_fetched_twice,
    strict_mode_fails_on_a_missing_directory_and_force_mode_makes_it,
    a_corrupted_blob_is_refused_and_a_missing_one_is_203,
    a_terminate_mid_transfer_removes_the_partial_file,
    the_download_speed_limit_is_honoured,
    the_upload_speed_limit_is_honoured,
    bad_file_requests_get_job_codes,
);
