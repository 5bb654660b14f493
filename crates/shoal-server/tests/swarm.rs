//! Peer-to-peer file fan-out: with many targets, the server sends a blob to `p2p_direct` of
//! them and the rest fetch it from targets that hold it, every chunk group checked against the
//! blob's BLAKE3 tree. Real server, real agents (their peer listeners on loopback), real files.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn with_scope(mut v: Value) -> Value {
    v["bk_scope_type"] = json!("biz");
    v["bk_scope_id"] = json!("1");
    v
}

async fn upload(h: &Harness, name: &str, content: &[u8]) -> String {
    let (_, v) = h.post("generate_local_file_upload_url", with_scope(json!({"file_name_list": [name]}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let slot = &v["data"]["url_map"][name];
    let r = h.http.put(slot["upload_url"].as_str().unwrap()).body(content.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    slot["path"].as_str().unwrap().to_string()
}

/// Sends `path` to every host into `dir` at `limit` MB/s (0: no limit); the job, its step and
/// its status once it ended.
async fn send(h: &Harness, path: &str, dir: &std::path::Path, limit: i64) -> (i64, i64, Value) {
    let (_, v) = h
        .post(
            "fast_transfer_file",
            with_scope(json!({
                "account_alias": USER,
                "file_target_path": dir.to_str().unwrap(),
                "file_source_list": [{"file_list": [path], "file_type": 2}],
                "target_server": {"host_id_list": h.host_ids().await},
                "download_speed_limit": limit,
            })),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let step = v["data"]["step_instance_id"].as_i64().unwrap();
    (job, step, h.wait_finished(job, Duration::from_secs(90)).await)
}

/// Each host's file-log lines of `step`, joined.
async fn file_log_lines(h: &Harness, job: i64, step: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for host in h.host_ids().await {
        let q = format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}&step_instance_id={step}&bk_host_id={host}");
        let (_, v) = h.get("get_job_instance_ip_log", &q).await;
        let logs = v["data"]["file_logs"].as_array().unwrap();
        let all: Vec<&str> = logs.iter().filter_map(|l| l["log_content"].as_str()).collect();
        lines.push(all.join(" | "));
    }
    lines
}

fn statuses(st: &Value) -> Vec<i64> {
    hosts_of(st).iter().map(|r| r["status"].as_i64().unwrap()).collect()
}

/// [`send`], checking every host succeeded; each host's file-log lines.
async fn send_to_all(h: &Harness, path: &str, dir: &std::path::Path, limit: i64) -> Vec<String> {
    let (job, step, st) = send(h, path, dir, limit).await;
    assert!(statuses(&st).iter().all(|s| *s == 9), "{st}");
    file_log_lines(h, job, step).await
}

/// What the server's `shoal_blob_bytes_served_total` says.
async fn served(h: &Harness) -> u64 {
    let text = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("shoal_blob_bytes_served_total ")).expect("the counter is exposed");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A server that sends each blob to one target itself, for files of 1 MiB and more.
async fn swarm_harness(backend: Backend) -> Option<Harness> {
    Harness::start_with(backend, |c| {
        c.p2p_direct = 1;
        c.p2p_min_bytes = 1024 * 1024;
    })
    .await
}

/// [`swarm_harness`] with `n` agents at 127.0.0.`first`, 127.0.0.`first + 1`…, connected.
async fn swarm_of(backend: Backend, first: usize, n: usize) -> Option<Harness> {
    let mut h = swarm_harness(backend).await?;
    for i in 0..n {
        h.add_agent_with(&format!("127.0.0.{}", first + i), |_| {});
    }
    h.wait_connected(n).await;
    Some(h)
}

fn content(size: usize) -> Vec<u8> {
    (0..size).map(|i| ((i * 31) ^ (i >> 11)) as u8).collect()
}

/// One target fetches from the server; the other four from it (and from each other), and
/// every copy is the file.
async fn targets_fetch_from_one_another(backend: Backend) {
    let Some(h) = swarm_of(backend, 51, 5).await else { return };
    let data = content(12 * 1024 * 1024 + 777);
    let path = upload(&h, "big.bin", &data).await;
    let dir = h.dir.path().join("dest");
    // 10 MB/s each: the first copy takes about a second, long enough for every target to
    // have asked before anyone holds the file.
    let before = served(&h).await;
    let lines = send_to_all(&h, &path, &dir, 10).await;
    assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), data);
    // The direct copy is checked against the BLAKE3 the server recorded when the file was
    // uploaded.
    let direct = lines.iter().filter(|l| l.contains("done, BLAKE3 verified")).count();
    let from_peers =
        lines.iter().filter(|l| l.contains("peer(s), every chunk checked against the BLAKE3 tree of the blob the SHA-256 names")).count();
    assert_eq!((direct, from_peers), (1, 4), "{lines:#?}");
    // The server sent the file once, not five times.
    assert_eq!(served(&h).await - before, data.len() as u64, "{lines:#?}");
    // The copies are deleted; the holders the tracker still names withdraw when asked, and
    // the file is again sent by the server about once, not to everyone.
    std::fs::remove_dir_all(&dir).unwrap();
    let before = served(&h).await;
    let lines = send_to_all(&h, &path, &dir, 10).await;
    assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), data);
    let sent = served(&h).await - before;
    assert!(sent <= 2 * data.len() as u64, "the server sent {sent} bytes: {lines:#?}");
}

/// Holders that cannot be reached (they announce an address nothing listens on) do not
/// stall anyone: after a few refused rounds each target fetches from the server.
async fn unreachable_holders_send_targets_to_the_server(backend: Backend) {
    let Some(mut h) = swarm_harness(backend).await else { return };
    for i in 0..3 {
        // Listening on 127.0.0.1 only, registered as 127.0.0.6x: peers are refused.
        h.add_agent_with(&format!("127.0.0.{}", 61 + i), |c| c.peer_listen = Some("127.0.0.1:0".into()));
    }
    h.wait_connected(3).await;
    let data = content(3 * 1024 * 1024);
    let path = upload(&h, "f.bin", &data).await;
    let dir = h.dir.path().join("dest");
    let lines = send_to_all(&h, &path, &dir, 20).await;
    assert_eq!(std::fs::read(dir.join("f.bin")).unwrap(), data);
    assert!(lines.iter().filter(|l| l.contains("no peer could serve")).count() >= 1, "{lines:#?}");
}

/// A terminate while targets fetch from their peers leaves no piece file behind.
async fn a_terminate_while_fetching_from_peers_leaves_nothing(backend: Backend) {
    let Some(h) = swarm_of(backend, 71, 3).await else { return };
    let data = content(6 * 1024 * 1024);
    let path = upload(&h, "t.bin", &data).await;
    // Every host holds the file after this; the next transfer comes from peers only.
    send_to_all(&h, &path, &h.dir.path().join("first"), 0).await;
    let before = served(&h).await;
    let dir = h.dir.path().join("second");
    let hosts = h.host_ids().await;
    let (_, v) = h
        .post(
            "fast_transfer_file",
            with_scope(json!({
                "account_alias": USER, "file_target_path": dir.to_str().unwrap(),
                "file_source_list": [{"file_list": [path], "file_type": 2}],
                "target_server": {"host_id_list": hosts}, "download_speed_limit": 1,
            })),
        )
        .await;
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let pieces = |dir: &std::path::Path| files_under(dir).into_iter().filter(|p| p.to_string_lossy().ends_with(".shoal-pieces")).count();
    wait_for("pieces arriving from peers", Duration::from_secs(30), || {
        let dir = dir.clone();
        async move { dir.exists() && pieces(&dir) > 0 }
    })
    .await;
    let (_, v) = h.post("operate_job_instance", with_scope(json!({"job_instance_id": job, "operation_code": 1}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert!(hosts_of(&st).iter().all(|r| r["status"] == 403), "{st}");
    wait_for("piece files removed", Duration::from_secs(10), || {
        let dir = dir.clone();
        async move { pieces(&dir) == 0 }
    })
    .await;
    assert!(!dir.join("t.bin").exists());
    assert_eq!(served(&h).await, before, "the server sent nothing: the pieces came from peers");
}

/// A blob changed in the store after it was stored reaches no target, from the server or
/// from a peer: the tracker names no peer for it, and every target fails saying why. So
/// with the BLAKE3 recorded when the blob was stored (targets check it), and without one (a
/// blob an older server stored: the tracker reads the blob and finds its SHA-256 changed,
/// and targets check the SHA-256).
async fn a_blob_changed_in_the_store_is_placed_nowhere(backend: Backend) {
    let Some(h) = swarm_of(backend, 81, 3).await else { return };
    for (round, recorded) in [(0u8, true), (1, false)] {
        let mut data = content(2 * 1024 * 1024);
        data[0] = round;
        let path = upload(&h, "c.bin", &data).await;
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
        if !recorded {
            h.sql(&format!("UPDATE blobs SET blake3 = NULL WHERE sha256 = '{sha}'")).await;
        }
        let blob = h.config.data_dir.clone().unwrap().join("blobs").join(&sha[..2]).join(&sha);
        let mut fake = data.clone();
        fake[1_000_000] ^= 1;
        std::fs::write(&blob, &fake).unwrap();
        let dir = h.dir.path().join(format!("dest{round}"));
        let (job, step, st) = send(&h, &path, &dir, 0).await;
        assert_eq!(statuses(&st), vec![202; 3], "{st}");
        let lines = file_log_lines(&h, job, step).await;
        let checked = if recorded { "hash mismatch: expected BLAKE3" } else { "hash mismatch: expected SHA-256" };
        assert!(lines.iter().all(|l| l.contains(checked)), "{lines:#?}");
        assert!(!dir.join("c.bin").exists(), "the changed blob was placed");
    }
}

on_both_backends!(
    a_blob_changed_in_the_store_is_placed_nowhere,
    targets_fetch_from_one_another,
    unreachable_holders_send_targets_to_the_server,
    a_terminate_while_fetching_from_peers_leaves_nothing,
);
