//! Garbage collection of the blob store: a blob goes once nothing needs it any more (no job
//! that ended within `blob_keep_days`, no live upload, no template or plan) and nobody used it
//! for the grace period; everything still needed stays. Real server and agent, both stores,
//! collections run at chosen times.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shoal_server::files::gc::{collect, Collected, GRACE_MS};
use shoal_server::files::BlobId;

fn with_scope(mut v: Value) -> Value {
    v["bk_scope_type"] = json!("biz");
    v["bk_scope_id"] = json!("1");
    v
}

fn sha_of(b: &[u8]) -> BlobId {
    BlobId::of(b)
}

const DAY: i64 = 86_400_000;

async fn collected(h: &Harness, at: i64) -> Collected {
    collect(h.shared.store.as_ref(), h.shared.blobs.as_ref(), h.shared.config.blob_keep_days, at).await.unwrap()
}

async fn held(h: &Harness, id: &BlobId) -> bool {
    h.shared.blobs.stat(id).await.unwrap().is_some()
}

/// Pushes `a.conf` ("pushed") to `hosts` and waits for the job to succeed.
async fn push(h: &Harness, dir: &std::path::Path, hosts: &[i64]) {
    let (_, v) = h
        .post(
            "push_config_file",
            with_scope(json!({"account_alias": USER, "file_target_path": dir.to_str().unwrap(),
                "file_list": [{"file_name": "a.conf", "content": b64("pushed\n")}], "target_server": {"host_id_list": hosts}})),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
}

async fn unneeded_blobs_go_and_needed_ones_stay(mut h: Harness) {
    h.add_agent("10.7.0.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let t0 = shoal_core::time::now_ms();

    // A: pushed by a job that ends now.
    let dir = h.dir.path().join("conf");
    push(&h, &dir, &hosts).await;
    let a = sha_of(b"pushed\n");
    // B: uploaded into a slot (alive a day), not used by any job yet.
    let (_, v) = h.post("generate_local_file_upload_url", with_scope(json!({"file_name_list": ["b.bin"]}))).await;
    let url = v["data"]["url_map"]["b.bin"]["upload_url"].as_str().unwrap().to_string();
    assert_eq!(h.http.put(url).body("uploaded").send().await.unwrap().status(), 200);
    let b = sha_of(b"uploaded");
    assert!(held(&h, &a).await && held(&h, &b).await);

    // Within the grace period nothing goes, needed or not.
    assert_eq!(collected(&h, t0).await.deleted, 0);
    // Past it, both are still needed: a job that ended today names A, a live upload B.
    let c = collected(&h, t0 + 2 * GRACE_MS).await;
    assert_eq!((c.deleted, c.kept), (0, 2), "{c:?}");
    assert!(held(&h, &a).await && held(&h, &b).await);

    // Eight days on: the job ended more than blob_keep_days (7) ago, the upload expired.
    // C was relied on (a source host told not to upload it) ten minutes before: it stays.
    let put = h.shared.blobs.put(shoal_server::files::blobs::once(b"relied on".to_vec()), 1 << 20).await.unwrap();
    let later = t0 + 8 * DAY;
    h.shared.store.note_blob_use(put.id.as_str(), put.size as i64, None, later - 600_000).await.unwrap();
    // Relying on a blob keeps the BLAKE3 recorded when it was stored.
    let root = blake3::hash(b"relied on").to_hex().to_string();
    assert_eq!(put.blake3, root);
    assert_eq!(h.shared.blobs.blake3(&put.id).await.unwrap(), Some(root));
    let c = collected(&h, later).await;
    assert_eq!(c.deleted, 2, "{c:?}");
    assert_eq!(c.bytes, (b"pushed\n".len() + b"uploaded".len()) as u64);
    assert!(!held(&h, &a).await && !held(&h, &b).await, "their content is deleted");
    assert!(held(&h, &put.id).await, "a blob used within the grace period stays");
    // Collected once: a second run finds nothing more.
    assert_eq!(collected(&h, later).await.deleted, 0);

    // The same content pushed again is simply stored again.
    push(&h, &dir, &hosts).await;
    assert!(held(&h, &a).await);
}

async fn blobs_stored_before_uses_were_recorded_are_collected_too(h: Harness) {
    // A blob file written straight into the store's directory (as an older server left it).
    let content = b"left by an older server";
    let id = sha_of(content);
    let root = h.shared.config.data_dir().join("blobs");
    let path = root.join(&id.as_str()[..2]).join(id.as_str());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    let now = shoal_core::time::now_ms();
    // Written just now: kept for the grace period, then collected.
    assert_eq!(collected(&h, now).await.deleted, 0);
    assert!(path.exists());
    assert_eq!(collected(&h, now + 2 * GRACE_MS).await.deleted, 1);
    assert!(!path.exists());
}

on_both_stores!(unneeded_blobs_go_and_needed_ones_stay, blobs_stored_before_uses_were_recorded_are_collected_too);
