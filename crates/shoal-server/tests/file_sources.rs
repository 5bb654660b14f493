//! Credentials, file sources and `fast_transfer_file` with `file_type` 3, end to end: a real
//! server and agents; a bkrepo generic-download peer served from this test process; a real
//! S3-compatible server (moto) started by the test, also holding the blobs of a server
//! configured with `blob_store = "s3"`.
//!
//! The S3 tests need `moto_server` (`SHOAL_MOTO_SERVER`, default `target/s3-venv/bin/moto_server`,
//! which `.ci/run` installs); without it they pass as skipped unless `SHOAL_REQUIRE_S3=1`,
//! when they fail.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use shoal_server::files::s3::S3Client;

const BIZ: &str = "1";

fn with_scope(mut v: Value) -> Value {
    v["bk_scope_type"] = json!("biz");
    v["bk_scope_id"] = json!(BIZ);
    v
}

/// A bkrepo generic-download peer: `GET /generic/{project}/{repo}/{path}` with basic auth.
struct Bkrepo {
    url: String,
    hits: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct RepoState {
    files: Arc<HashMap<String, Vec<u8>>>,
    user: String,
    password: String,
    hits: Arc<AtomicUsize>,
}

async fn generic(State(s): State<RepoState>, UrlPath(path): UrlPath<String>, headers: HeaderMap) -> (StatusCode, Vec<u8>) {
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.user, s.password)));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return (StatusCode::UNAUTHORIZED, br#"{"code":250101,"message":"unauthorized"}"#.to_vec());
    }
    s.hits.fetch_add(1, Ordering::SeqCst);
    match s.files.get(&path) {
        Some(b) => (StatusCode::OK, b.clone()),
        None => (StatusCode::NOT_FOUND, br#"{"code":251005,"message":"node not found"}"#.to_vec()),
    }
}

async fn bkrepo(files: &[(&str, Vec<u8>)]) -> Bkrepo {
    let hits = Arc::new(AtomicUsize::new(0));
    let state = RepoState {
        files: Arc::new(files.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        user: "bkrepo-user".into(),
        password: "bkrepo-pass".into(),
        hits: hits.clone(),
    };
    let app = axum::Router::new().route("/generic/{*path}", axum::routing::get(generic)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Bkrepo { url, hits, _task: task }
}

async fn create_credential(h: &Harness, body: Value) -> String {
    let (_, v) = h.post("create_credential", with_scope(body)).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"]["id"].as_str().unwrap().to_string()
}

async fn create_source(h: &Harness, code: &str, kind: &str, params: Value, credential: &str) -> i64 {
    let body = json!({"code": code, "alias": format!("{code} alias"), "type": kind, "access_params": params, "credential_id": credential});
    let (_, v) = h.post("create_file_source", with_scope(body)).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"]["id"].as_i64().unwrap()
}

async fn transfer_from(h: &Harness, source: Value, dir: &Path, hosts: &[i64]) -> (i64, i64) {
    let mut src = source;
    src["file_type"] = json!(3);
    let body = with_scope(json!({
        "account_alias": USER,
        "file_target_path": dir.to_str().unwrap(),
        "file_source_list": [src],
        "target_server": {"host_id_list": hosts},
    }));
    let (_, v) = h.post("fast_transfer_file", body).await;
    assert_eq!(v["code"], 0, "{v}");
    (v["data"]["job_instance_id"].as_i64().unwrap(), v["data"]["step_instance_id"].as_i64().unwrap())
}

fn statuses(st: &Value) -> Vec<i64> {
    hosts_of(st).iter().map(|r| r["status"].as_i64().unwrap()).collect()
}

async fn file_log_text(h: &Harness, job: i64, step: i64, host: i64) -> String {
    let q = format!("bk_scope_type=biz&bk_scope_id={BIZ}&job_instance_id={job}&step_instance_id={step}&bk_host_id={host}");
    let (_, v) = h.get("get_job_instance_ip_log", &q).await;
    assert_eq!(v["data"]["log_type"], 2, "{v}");
    v["data"]["file_logs"].to_string()
}

async fn credentials_are_sealed_and_never_returned(b: Backend) {
    let Some(h) = Harness::start(b).await else { return };
    let id = create_credential(
        &h,
        json!({"name": "repo", "type": "USERNAME_PASSWORD", "description": "bkrepo",
               "credential_username": "u1", "credential_password": "pa55-word-1"}),
    )
    .await;
    assert_eq!(id.len(), 32, "{id}");
    // Each type needs its fields.
    for (kind, body) in [
        ("USERNAME_PASSWORD", json!({"credential_username": "u"})),
        ("APP_ID_SECRET_KEY", json!({"credential_access_key": "ak"})),
        ("PASSWORD", json!({})),
        ("SECRET_KEY", json!({"credential_password": "p"})),
    ] {
        let mut body = body;
        body["name"] = json!("x");
        body["type"] = json!(kind);
        let (_, v) = h.post("create_credential", with_scope(body)).await;
        assert_eq!(v["code"], 1241010, "{kind}: {v}");
    }
    let (_, v) = h.post("create_credential", with_scope(json!({"name": "x", "type": "TOKEN", "credential_secret_key": "s"}))).await;
    assert_eq!(v["code"], 1241010, "{v}");
    let (_, v) = h.post("create_credential", with_scope(json!({"type": "PASSWORD", "credential_password": "s"}))).await;
    assert_eq!(v["code"], 1241010, "{v}");
    create_credential(
        &h,
        json!({"name": "s3", "type": "APP_ID_SECRET_KEY", "credential_access_key": "AK1", "credential_secret_key": "sk-secret-2"}),
    )
    .await;

    // At rest: sealed, bound to the record.
    let row = h.shared.store.get_credential(&id).await.unwrap().unwrap();
    assert!(row.secret.starts_with("shoal-sealed:v2:"), "{}", row.secret);
    assert!(!row.secret.contains("pa55-word-1"));

    // Never returned: detail and list carry no secret field or value.
    let (_, v) = h.post("get_credential_detail", with_scope(json!({"id": id}))).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!((v["data"]["name"].as_str(), v["data"]["type"].as_str()), (Some("repo"), Some("USERNAME_PASSWORD")), "{v}");
    let (_, list) = h.get("get_credential_list", &format!("bk_scope_type=biz&bk_scope_id={BIZ}")).await;
    assert_eq!(list["data"]["total"], 2, "{list}");
    for text in [v.to_string(), list.to_string()] {
        for secret in ["pa55-word-1", "sk-secret-2", "AK1", "u1", "credential_password", "shoal-sealed"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    let (_, typed) = h.get("get_credential_list", &format!("bk_scope_type=biz&bk_scope_id={BIZ}&type=APP_ID_SECRET_KEY")).await;
    assert_eq!(typed["data"]["total"], 1, "{typed}");

    // Another scope does not see it.
    let (_, v) = h.post("get_credential_detail", json!({"bk_scope_type": "biz", "bk_scope_id": "2", "id": id})).await;
    assert_ne!(v["code"], 0, "{v}");

    // Update: a new password replaces the secret; the name alone keeps it.
    let (_, v) =
        h.post("update_credential", with_scope(json!({"id": id, "credential_username": "u1", "credential_password": "new-pass-3"}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let sealed_after = h.shared.store.get_credential(&id).await.unwrap().unwrap().secret;
    assert_ne!(sealed_after, row.secret);
    let (_, v) = h.post("update_credential", with_scope(json!({"id": id, "name": "renamed"}))).await;
    assert_eq!((v["code"].as_i64(), v["data"]["name"].as_str()), (Some(0), Some("renamed")), "{v}");
    assert_eq!(h.shared.store.get_credential(&id).await.unwrap().unwrap().secret, sealed_after);
    let (_, v) = h.post("update_credential", with_scope(json!({"id": "0".repeat(32), "name": "x"}))).await;
    assert_eq!(v["code"], 1241010, "{v}");
}

async fn file_sources_are_checked_and_listed(b: Backend) {
    let Some(h) = Harness::start(b).await else { return };
    let cred =
        create_credential(&h, json!({"name": "repo", "type": "USERNAME_PASSWORD", "credential_username": "u", "credential_password": "p"}))
            .await;
    let id = create_source(&h, "NODEMAN_bkrepo", "BLUEKING_ARTIFACTORY", json!({"base_url": "https://bkrepo.example.com"}), &cred).await;
    let (_, v) = h.post("get_file_source_detail", with_scope(json!({"code": "NODEMAN_bkrepo"}))).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["id"], id);
    assert_eq!(v["data"]["access_params"]["base_url"], "https://bkrepo.example.com", "{v}");
    assert_eq!(v["data"]["credential_id"], json!(cred));

    let base = json!({"alias": "other", "type": "BLUEKING_ARTIFACTORY", "access_params": {"base_url": "https://bkrepo.example.com"}, "credential_id": cred});
    let with = |k: &str, val: Value| {
        let mut b = base.clone();
        b[k] = val;
        with_scope(b)
    };
    // The code: taken, malformed, missing.
    let (_, v) = h.post("create_file_source", with("code", json!("NODEMAN_bkrepo"))).await;
    assert_eq!(v["code"], 1260015, "{v}");
    let (_, v) = h.post("create_file_source", with("code", json!("1bad-code"))).await;
    assert_eq!(v["code"], 1241010, "{v}");
    let (_, v) = h.post("create_file_source", with_scope(json!({"alias": "a", "type": "BLUEKING_ARTIFACTORY", "access_params": {"base_url": "https://x.example"}, "credential_id": cred}))).await;
    assert_eq!(v["code"], 1241004, "{v}");
    // The credential is required (as bk-job's code has it) and must exist in the scope.
    let mut no_cred = with("code", json!("c2"));
    no_cred.as_object_mut().unwrap().remove("credential_id");
    let (_, v) = h.post("create_file_source", no_cred).await;
    assert_eq!(v["code"], 1241004, "{v}");
    let mut bad_cred = with("code", json!("c2"));
    bad_cred["credential_id"] = json!("f".repeat(32));
    let (_, v) = h.post("create_file_source", bad_cred).await;
    assert_eq!(v["code"], 1241005, "{v}");
    // The type.
    let mut bad_type = with("code", json!("c2"));
    bad_type["type"] = json!("TENCENT_CLOUD_COS");
    let (_, v) = h.post("create_file_source", bad_type).await;
    assert_eq!(v["code"], 1241010, "{v}");
    // Secrets belong in credentials.
    let mut secret_param = with("code", json!("c5"));
    secret_param["access_params"] = json!({"base_url": "https://x.example", "password": "p"});
    let (_, v) = h.post("create_file_source", secret_param).await;
    assert_eq!(v["code"], 1241010, "{v}");
    // SSRF: the server's own and link-local (metadata) addresses are refused.
    for url in ["http://127.0.0.1:8080", "http://169.254.169.254/latest", "http://localhost:9000", "http://[::1]:80"] {
        let mut b = with("code", json!("c3"));
        b["access_params"] = json!({"base_url": url});
        let (_, v) = h.post("create_file_source", b).await;
        assert_eq!(v["code"], 1241010, "{url}: {v}");
        assert!(v["message"].as_str().unwrap().contains("file_source_allowed_base_urls"), "{v}");
    }
    // An alias is unique in its scope.
    let mut dup = with("code", json!("c4"));
    dup["alias"] = json!("NODEMAN_bkrepo alias");
    let (_, v) = h.post("create_file_source", dup).await;
    assert_eq!(v["code"], 1260004, "{v}");

    // Update by code; the code never changes.
    let (_, v) = h
        .post(
            "update_file_source",
            with_scope(json!({"code": "NODEMAN_bkrepo", "alias": "renamed", "access_params": {"base_url": "https://bkrepo2.example.com"}})),
        )
        .await;
    assert_eq!((v["code"].as_i64(), v["data"]["id"].as_i64()), (Some(0), Some(id)), "{v}");
    let (_, v) = h.post("update_file_source", with_scope(json!({"code": "nope", "alias": "x"}))).await;
    assert_eq!(v["code"], 1260012, "{v}");
    let (_, v) = h
        .post("update_file_source", with_scope(json!({"code": "NODEMAN_bkrepo", "access_params": {"base_url": "http://169.254.169.254"}})))
        .await;
    assert_eq!(v["code"], 1241010, "{v}");

    let (_, list) = h.get("get_file_source_list", &format!("bk_scope_type=biz&bk_scope_id={BIZ}")).await;
    assert_eq!(list["data"]["total"], 1, "{list}");
    assert_eq!(list["data"]["data"][0]["alias"], "renamed", "{list}");
    assert_eq!(list["data"]["data"][0]["access_params"]["base_url"], "https://bkrepo2.example.com", "{list}");
    let (_, other) = h.get("get_file_source_list", "bk_scope_type=biz&bk_scope_id=2").await;
    assert_eq!(other["data"]["total"], 0, "{other}");

    // fast_transfer_file names a source by id or code; an unknown one is refused.
    let dir = h.dir.path().join("never");
    let body = |src: Value| {
        with_scope(json!({"account_alias": USER, "file_target_path": dir.to_str().unwrap(), "file_source_list": [src],
                          "target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.1.1.1"}]}}))
    };
    let (_, v) = h.post("fast_transfer_file", body(json!({"file_type": 3, "file_list": ["p/r/a"], "file_source_code": "nope"}))).await;
    assert_eq!(v["code"], 1260012, "{v}");
    let (_, v) = h.post("fast_transfer_file", body(json!({"file_type": 3, "file_list": ["p/r/a"], "file_source_id": 999_999}))).await;
    assert_eq!(v["code"], 1260001, "{v}");
    let (_, v) = h.post("fast_transfer_file", body(json!({"file_type": 3, "file_list": ["p/r/a"]}))).await;
    assert_eq!(v["code"], 1260016, "{v}");
}

async fn bkrepo_files_reach_the_targets(b: Backend) {
    let content: Vec<u8> = (0..900_000u32).map(|i| (i % 253) as u8).collect();
    let repo =
        bkrepo(&[("proj/generic-repo/pkgs/agent.tgz", content.clone()), ("proj/generic-repo/a b/c.txt", b"spaced\n".to_vec())]).await;
    let allowed = repo.url.clone();
    let Some(mut h) = Harness::start_with(b, |c| c.file_source_allowed_base_urls = vec![allowed]).await else { return };
    h.add_agent("10.31.0.1", None, None, &[]).await;
    h.add_agent("10.31.0.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let good = create_credential(
        &h,
        json!({"name": "repo", "type": "USERNAME_PASSWORD", "credential_username": "bkrepo-user", "credential_password": "bkrepo-pass"}),
    )
    .await;
    let bad = create_credential(
        &h,
        json!({"name": "wrong", "type": "USERNAME_PASSWORD", "credential_username": "bkrepo-user", "credential_password": "nope"}),
    )
    .await;
    let id = create_source(&h, "repo", "BLUEKING_ARTIFACTORY", json!({"base_url": repo.url}), &good).await;
    create_source(&h, "repo_bad_auth", "BLUEKING_ARTIFACTORY", json!({"base_url": repo.url}), &bad).await;

    // Read once by the server, fetched by both targets, verified.
    let dir = h.dir.path().join("dest");
    let (job, step) = transfer_from(
        &h,
        json!({"file_source_code": "repo", "file_list": ["proj/generic-repo/pkgs/agent.tgz", "proj/generic-repo/a b/c.txt"]}),
        &dir,
        &hosts,
    )
    .await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![9, 9], "{st}");
    assert_eq!(std::fs::read(dir.join("agent.tgz")).unwrap(), content);
    assert_eq!(std::fs::read(dir.join("c.txt")).unwrap(), b"spaced\n");
    assert_eq!(repo.hits.load(Ordering::SeqCst), 2, "each file is read from the source once");
    assert!(file_log_text(&h, job, step, hosts[0]).await.contains("proj/generic-repo/pkgs/agent.tgz"));

    // By id too.
    let dir2 = h.dir.path().join("dest2");
    let (job, _) = transfer_from(&h, json!({"file_source_id": id, "file_list": ["proj/generic-repo/a b/c.txt"]}), &dir2, &hosts[..1]).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![9], "{st}");
    assert_eq!(std::fs::read(dir2.join("c.txt")).unwrap(), b"spaced\n");

    // A file_prefix starts every placed name; ${UUID} makes a new one per read.
    let body = json!({"code": "repo_prefixed", "alias": "p", "type": "BLUEKING_ARTIFACTORY", "access_params": {"base_url": repo.url},
                      "credential_id": good, "file_prefix": "v2_"});
    let (_, v) = h.post("create_file_source", with_scope(body.clone())).await;
    assert_eq!(v["code"], 0, "{v}");
    let dir3 = h.dir.path().join("dest3");
    let (job, _) =
        transfer_from(&h, json!({"file_source_code": "repo_prefixed", "file_list": ["proj/generic-repo/a b/c.txt"]}), &dir3, &hosts[..1])
            .await;
    assert_eq!(statuses(&h.wait_finished(job, Duration::from_secs(60)).await), vec![9]);
    assert_eq!(std::fs::read(dir3.join("v2_c.txt")).unwrap(), b"spaced\n");
    let mut uuid = body.clone();
    uuid["code"] = json!("repo_uuid");
    uuid["alias"] = json!("u");
    uuid["file_prefix"] = json!("${UUID}");
    let (_, v) = h.post("create_file_source", with_scope(uuid)).await;
    assert_eq!(v["code"], 0, "{v}");
    let dir4 = h.dir.path().join("dest4");
    let (job, _) =
        transfer_from(&h, json!({"file_source_code": "repo_uuid", "file_list": ["proj/generic-repo/a b/c.txt"]}), &dir4, &hosts[..1]).await;
    assert_eq!(statuses(&h.wait_finished(job, Duration::from_secs(60)).await), vec![9]);
    let names: Vec<String> = std::fs::read_dir(&dir4).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.len() == 1 && names[0].len() == 32 + "c.txt".len() && names[0].ends_with("c.txt"), "{names:?}");
    for bad in ["../x", "a/b", ".."] {
        let mut b = body.clone();
        b["code"] = json!("repo_bad_prefix");
        b["alias"] = json!("b");
        b["file_prefix"] = json!(bad);
        let (_, v) = h.post("create_file_source", with_scope(b)).await;
        assert_eq!(v["code"], 1241010, "{bad}: {v}");
    }

    // A missing object: 203 on every target, with the reason.
    let (job, step) =
        transfer_from(&h, json!({"file_source_code": "repo", "file_list": ["proj/generic-repo/nothing.bin"]}), &dir, &hosts).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![203, 203], "{st}");
    let log = file_log_text(&h, job, step, hosts[0]).await;
    assert!(log.contains("nothing.bin does not exist"), "{log}");

    // A refused credential: 202, said as such.
    let (job, step) =
        transfer_from(&h, json!({"file_source_code": "repo_bad_auth", "file_list": ["proj/generic-repo/pkgs/agent.tgz"]}), &dir, &hosts)
            .await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![202, 202], "{st}");
    let log = file_log_text(&h, job, step, hosts[1]).await;
    assert!(log.contains("credential was refused") && log.contains("401"), "{log}");
}

/// A source on the server's own address, allowed when created, is refused at read time once
/// the admin no longer allows it: the check is made again when the server reads.
async fn a_source_is_checked_again_when_read(b: Backend) {
    let repo = bkrepo(&[("p/r/f.txt", b"x".to_vec())]).await;
    let Some(mut h) = Harness::start(b).await else { return };
    h.add_agent("10.32.0.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let cred = create_credential(
        &h,
        json!({"name": "repo", "type": "USERNAME_PASSWORD", "credential_username": "bkrepo-user", "credential_password": "bkrepo-pass"}),
    )
    .await;
    // Written around the API (as a source saved before the policy changed would be).
    let now = shoal_core::time::now_ms();
    let row = shoal_store::FileSourceRow {
        id: 0,
        scope_type: "biz".into(),
        scope_id: BIZ.into(),
        code: "loopback".into(),
        alias: "loopback".into(),
        kind: "BLUEKING_ARTIFACTORY".into(),
        access_params: json!({"base_url": repo.url}).to_string(),
        credential_id: cred,
        file_prefix: String::new(),
        enable: true,
        creator: "t".into(),
        create_time: now,
        last_modify_user: "t".into(),
        last_modify_time: now,
    };
    h.shared.store.create_file_source(&row).await.unwrap();
    let dir = h.dir.path().join("d");
    let (job, step) = transfer_from(&h, json!({"file_source_code": "loopback", "file_list": ["p/r/f.txt"]}), &dir, &hosts).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![202], "{st}");
    assert!(file_log_text(&h, job, step, hosts[0]).await.contains("file_source_allowed_base_urls"));
    assert_eq!(repo.hits.load(Ordering::SeqCst), 0);
    assert!(!dir.join("f.txt").exists());
}

fn s3(endpoint: &str, ak: &str, sk: &str) -> S3Client {
    S3Client::new(endpoint, "us-east-1", ak, sk, reqwest::Client::new()).unwrap()
}

async fn s3_put(c: &S3Client, bucket: &str, key: &str, body: Vec<u8>) {
    let len = body.len() as u64;
    c.put(bucket, key, reqwest::Body::from(body), len).await.unwrap();
}

async fn s3_files_reach_the_targets(b: Backend) {
    let Some(m) = moto().await else { return };
    let client = s3(&m.endpoint, "AKIDEXAMPLE", "secret-example");
    client.create_bucket("artifacts").await.unwrap();
    let content: Vec<u8> = (0..1_500_000u32).map(|i| (i % 241) as u8).collect();
    s3_put(&client, "artifacts", "builds/v1/app.bin", content.clone()).await;
    let allowed = m.endpoint.clone();
    let Some(mut h) = Harness::start_with(b, |c| c.file_source_allowed_base_urls = vec![allowed]).await else { return };
    h.add_agent("10.33.0.1", None, None, &[]).await;
    h.add_agent("10.33.0.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let cred = create_credential(
        &h,
        json!({"name": "s3", "type": "APP_ID_SECRET_KEY", "credential_access_key": "AKIDEXAMPLE", "credential_secret_key": "secret-example"}),
    )
    .await;
    create_source(&h, "objects", "S3", json!({"endpoint": m.endpoint, "region": "us-east-1"}), &cred).await;
    create_source(&h, "only_other", "S3", json!({"endpoint": m.endpoint, "bucket": "other"}), &cred).await;
    // An S3 source needs an access key and secret key credential.
    let pw = create_credential(&h, json!({"name": "pw", "type": "PASSWORD", "credential_password": "p"})).await;
    let (_, v) = h
        .post(
            "create_file_source",
            with_scope(
                json!({"code": "s3pw", "alias": "s3pw", "type": "S3", "access_params": {"endpoint": m.endpoint}, "credential_id": pw}),
            ),
        )
        .await;
    assert_eq!(v["code"], 1241010, "{v}");

    let dir = h.dir.path().join("dest");
    let (job, _) =
        transfer_from(&h, json!({"file_source_code": "objects", "file_list": ["artifacts/builds/v1/app.bin"]}), &dir, &hosts).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![9, 9], "{st}");
    assert_eq!(std::fs::read(dir.join("app.bin")).unwrap(), content);

    // A missing key: 203 with the reason.
    let (job, step) =
        transfer_from(&h, json!({"file_source_code": "objects", "file_list": ["artifacts/builds/v2/app.bin"]}), &dir, &hosts).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![203, 203], "{st}");
    assert!(file_log_text(&h, job, step, hosts[0]).await.contains("artifacts/builds/v2/app.bin does not exist"));
    // A bucket the source does not cover: 203 too.
    let (job, step) =
        transfer_from(&h, json!({"file_source_code": "only_other", "file_list": ["artifacts/builds/v1/app.bin"]}), &dir, &hosts).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![203, 203], "{st}");
    assert!(file_log_text(&h, job, step, hosts[1]).await.contains("outside its bucket other"));
}

/// With `blob_store = "s3"` every file path runs through the bucket: an upload and a pushed
/// file are stored there, then transferred to agents and verified by hash.
async fn blobs_in_s3_serve_the_whole_file_path(b: Backend) {
    let Some(m) = moto().await else { return };
    let client = s3(&m.endpoint, "AKBLOBS", "blob-secret");
    client.create_bucket("shoal-blobs").await.unwrap();
    let endpoint = m.endpoint.clone();
    let Some(mut h) = Harness::start_with(b, |c| {
        c.blob_store = "s3".into();
        c.s3_endpoint = Some(endpoint);
        c.s3_bucket = Some("shoal-blobs".into());
        c.s3_access_key = Some("AKBLOBS".into());
        c.s3_secret_key = Some("blob-secret".into());
    })
    .await
    else {
        return;
    };
    h.add_agent("10.34.0.1", None, None, &[]).await;
    h.add_agent("10.34.0.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;

    // An upload, PUT as bk-sops does.
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(7) % 256) as u8).collect();
    let (_, v) = h.post("generate_local_file_upload_url", with_scope(json!({"file_name_list": ["big.bin"]}))).await;
    let slot = &v["data"]["url_map"]["big.bin"];
    let r = h.http.put(slot["upload_url"].as_str().unwrap()).body(content.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&content))
    };
    assert_eq!(client.head("shoal-blobs", &format!("blobs/{sha}")).await.unwrap(), Some(content.len() as u64), "the blob is in the bucket");
    assert!(!h.dir.path().join("server/blobs").join(&sha[..2]).join(&sha).exists(), "and not on local disk");

    let dir = h.dir.path().join("dest");
    let body = with_scope(json!({
        "account_alias": USER, "file_target_path": dir.to_str().unwrap(),
        "file_source_list": [{"file_list": [slot["path"]], "file_type": 2}], "target_server": {"host_id_list": hosts},
    }));
    let (_, v) = h.post("fast_transfer_file", body).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![9, 9], "{st}");
    assert_eq!(std::fs::read(dir.join("big.bin")).unwrap(), content);

    // A pushed configuration file.
    let body = with_scope(json!({
        "account_alias": USER, "file_target_path": dir.to_str().unwrap(),
        "file_list": [{"file_name": "app.conf", "content": b64("k=v\n")}], "target_server": {"host_id_list": hosts},
    }));
    let (_, v) = h.post("push_config_file", body).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![9, 9], "{st}");
    assert_eq!(std::fs::read_to_string(dir.join("app.conf")).unwrap(), "k=v\n");

    // Garbage collection deletes from the bucket: eight days on, the jobs are long over and
    // the upload slot expired.
    let later = shoal_core::time::now_ms() + 8 * 86_400_000;
    let c = shoal_server::files::gc::collect(h.shared.store.as_ref(), h.shared.blobs.as_ref(), 7, later).await.unwrap();
    assert_eq!(c.deleted, 2, "{c:?}");
    assert_eq!(client.head("shoal-blobs", &format!("blobs/{sha}")).await.unwrap(), None, "deleted from the bucket");
}

/// A template's file step may read from a file source: checked when applied, shown by
/// `get_job_plan_detail` as `file_type` 3, read when the plan runs.
async fn a_plan_step_reads_from_a_file_source(b: Backend) {
    let repo = bkrepo(&[("proj/generic/app.tar", b"release 7\n".to_vec())]).await;
    let allowed = repo.url.clone();
    let Some(mut h) = Harness::start_with(b, |c| c.file_source_allowed_base_urls = vec![allowed]).await else { return };
    h.add_agent("10.35.0.1", None, None, &[]).await;
    h.add_agent("10.35.0.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let cred = create_credential(
        &h,
        json!({"name": "repo", "type": "USERNAME_PASSWORD", "credential_username": "bkrepo-user", "credential_password": "bkrepo-pass"}),
    )
    .await;
    let id = create_source(&h, "releases", "BLUEKING_ARTIFACTORY", json!({"base_url": repo.url}), &cred).await;
    let dest = h.dir.path().join("srv/app");
    let doc = |code: &str| {
        json!({
            "name": "release",
            "variables": [{"name": "DEST", "type": "host_list", "server": {"host_id_list": hosts}}],
            "steps": [{"name": "ship", "file": {
                "sources": [{"file_source": code, "files": ["proj/generic/app.tar"]}],
                "destination": {"path": dest.to_str().unwrap(), "account": USER, "target": {"variable": "DEST"}}
            }}]
        })
    };
    let apply = |d: Value| {
        let h = &h;
        async move {
            let r = h.http.post(format!("{}/api/shoal/v1/templates/apply", h.url)).header("X-Bkapi-Authorization", h.auth_header());
            r.json(&json!({"bk_scope_type": "biz", "bk_scope_id": BIZ, "document": d})).send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    // An unknown source, and a source with an account, are refused with the field.
    let v = apply(doc("nope")).await;
    assert_eq!(v["code"], 1241010, "{v}");
    assert!(v["message"].as_str().unwrap().contains("steps.file.sources[0].file_source"), "{v}");
    let mut bad = doc("releases");
    bad["steps"][0]["file"]["sources"][0]["account"] = json!(USER);
    assert_eq!(apply(bad).await["code"], 1241010);

    let v = apply(doc("releases")).await;
    assert_eq!(v["code"], 0, "{v}");
    let plan = v["data"]["plans"][0]["id"].as_i64().unwrap();
    let (_, d) = h.get("get_job_plan_detail", &format!("bk_scope_type=biz&bk_scope_id={BIZ}&job_plan_id={plan}")).await;
    let src = &d["data"]["step_list"][0]["file_info"]["file_source_list"][0];
    assert_eq!(
        (src["file_type"].as_i64(), src["file_source_code"].as_str(), src["file_source_id"].as_i64()),
        (Some(3), Some("releases"), Some(id)),
        "{d}"
    );
    assert_eq!(src["file_list"], json!(["proj/generic/app.tar"]), "{d}");

    let (_, v) = h.post("execute_job_plan", with_scope(json!({"job_plan_id": plan}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(statuses(&st), vec![9, 9], "{st}");
    assert_eq!(std::fs::read(dest.join("app.tar")).unwrap(), b"release 7\n");
}

on_both_backends!(
    a_plan_step_reads_from_a_file_source,
    credentials_are_sealed_and_never_returned,
    file_sources_are_checked_and_listed,
    bkrepo_files_reach_the_targets,
    a_source_is_checked_again_when_read,
    s3_files_reach_the_targets,
    blobs_in_s3_serve_the_whole_file_path,
);

/// The blob store reads by range from S3 as from a directory.
#[tokio::test]
async fn s3_blobs_read_by_range() {
    use shoal_server::files::{blobs, BlobId, BlobStore};
    use tokio::io::AsyncReadExt;
    let Some(m) = moto().await else { return };
    let client = s3(&m.endpoint, "AKR", "range-secret");
    client.create_bucket("ranges").await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let store = shoal_server::files::s3::S3Blobs::new(client, "ranges", "b/", spool.path().join("tmp")).unwrap();
    let blob = store.put(blobs::once(b"hello shoal".to_vec()), 1 << 20).await.unwrap();
    assert_eq!(blob.id, BlobId::of(b"hello shoal"));
    assert_eq!(store.stat(&blob.id).await.unwrap(), Some(11));
    let (mut r, size) = store.read_from(&blob.id, 6).await.unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).await.unwrap();
    assert_eq!((rest.as_str(), size), ("shoal", 11));
    let other = BlobId::of(b"other");
    assert_eq!(store.stat(&other).await.unwrap(), None);
    assert!(store.read_from(&other, 0).await.is_err());
    let err = store.put(blobs::once(vec![1; 100]), 99).await.unwrap_err();
    assert!(err.to_string().contains("99"), "{err}");
    assert_eq!(std::fs::read_dir(spool.path().join("tmp")).unwrap().count(), 0, "nothing left spooled");
}

/// A blob over the single-`PUT` size goes up in parts and reads back whole.
#[tokio::test]
async fn s3_blobs_upload_large_blobs_in_parts() {
    use shoal_server::files::{blobs, BlobId, BlobStore};
    use tokio::io::AsyncReadExt;
    let Some(m) = moto().await else { return };
    let client = s3(&m.endpoint, "AKP", "parts-secret");
    client.create_bucket("parts").await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let store = shoal_server::files::s3::S3Blobs::new(client, "parts", "", spool.path().join("tmp")).unwrap().with_parts(1 << 20, 5 << 20);
    let content: Vec<u8> = (0..(12u32 << 20)).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
    let pieces: Vec<std::io::Result<axum::body::Bytes>> =
        content.chunks(1 << 20).map(|c| Ok(axum::body::Bytes::copy_from_slice(c))).collect();
    let blob = store.put(Box::pin(futures_util::stream::iter(pieces)), 1 << 30).await.unwrap();
    assert_eq!((blob.id.clone(), blob.size), (BlobId::of(&content), content.len() as u64));
    let (mut r, size) = store.read_from(&blob.id, 0).await.unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert_eq!(size, content.len() as u64);
    assert!(back == content, "the parts read back as the blob");
    let again = store.put(blobs::once(content.clone()), 1 << 30).await.unwrap();
    assert_eq!(again.id, blob.id);
}
