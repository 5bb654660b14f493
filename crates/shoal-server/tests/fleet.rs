//! Smoke version of the benchmark suite (correctness only, nothing timed): a simulated fleet
//! of 200 agents — the real agent session code with an instant executor, over real
//! WebSockets on loopback — runs a job, and every host's result and output arrive.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{hosts_of, Backend, Harness, TOKEN};
use serde_json::json;
use shoal_agent::fleet::{Fleet, FleetConfig};
use shoal_agent::{InstantExecutor, VerifyingExecutor};

const HOSTS: usize = 200;

async fn simulated_fleet_reports_every_host(h: Harness) {
    let output = 3000;
    let exec = Arc::new(InstantExecutor { output_bytes: output, exit_code: 0 });
    let config = FleetConfig::new(vec![h.url.clone()], TOKEN.into(), h.dir.path().join("fleet"), exec);
    let fleet = Fleet::start(&config, HOSTS).await;
    h.wait_connected(HOSTS).await;
    let hosts = h.host_ids().await;
    assert_eq!(hosts.len(), HOSTS);

    let data = h.execute("echo simulated", &hosts, json!({})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], json!(3), "{st}");
    let results = hosts_of(&st);
    assert_eq!(results.len(), HOSTS);
    assert!(results.iter().all(|r| r["status"] == json!(9) && r["exit_code"] == json!(0)), "{results:?}");
    for chunk in hosts.chunks(100) {
        let logs = h.logs(job, step, chunk).await;
        assert_eq!(logs.len(), chunk.len());
        assert!(logs.values().all(|l| l.len() == output && l.starts_with("shoal simulated output")), "short or missing output");
    }

    // A failing exit code is reported as such.
    let exec = Arc::new(InstantExecutor { output_bytes: 0, exit_code: 3 });
    let mut config = FleetConfig::new(vec![h.url.clone()], TOKEN.into(), h.dir.path().join("fleet-failing"), exec);
    config.first_ip = "10.1.0.1".parse().unwrap();
    let failing = Fleet::start(&config, 5).await;
    h.wait_connected(HOSTS + 5).await;
    let all = h.host_ids().await;
    let new: Vec<i64> = all.into_iter().filter(|id| !hosts.contains(id)).collect();
    let data = h.execute("exit 3", &new, json!({})).await;
    let st = h.wait_finished(data["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert!(hosts_of(&st).iter().all(|r| r["status"] == json!(104) && r["exit_code"] == json!(3)), "{st}");

    failing.stop(Duration::from_secs(10)).await;
    fleet.stop(Duration::from_secs(10)).await;
}

/// Simulated hosts carry out file steps up to the disk: each fetches the blob from the server
/// and checks its SHA-256 (the benchmark's 10,000-host file fan-out runs the same code).
async fn simulated_fleet_verifies_files(h: Harness) {
    const N: usize = 60;
    let tls = shoal_agent::session::connect::client_config(None).unwrap();
    let fetcher = shoal_agent::files::Fetcher::new(std::slice::from_ref(&h.url), tls).unwrap();
    let inner = Arc::new(InstantExecutor { output_bytes: 0, exit_code: 0 });
    let exec = Arc::new(VerifyingExecutor { inner, fetcher, fetch_slots: Arc::new(tokio::sync::Semaphore::new(16)) });
    let config = FleetConfig::new(vec![h.url.clone()], TOKEN.into(), h.dir.path().join("fleet"), exec);
    let fleet = Fleet::start(&config, N).await;
    h.wait_connected(N).await;
    let hosts = h.host_ids().await;
    let push = |content: &str| {
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account_alias": common::USER, "file_target_path": "/nowhere",
               "file_list": [{"file_name": "f.conf", "content": common::b64(content)}], "target_server": {"host_id_list": hosts}})
    };
    let (_, v) = h.post("push_config_file", push("the same bytes everywhere\n")).await;
    let job = v["data"]["job_instance_id"].as_i64().unwrap_or_else(|| panic!("{v}"));
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], json!(3), "{st}");
    assert!(hosts_of(&st).iter().all(|r| r["status"] == json!(9)), "{st}");

    // Bytes that do not hash to the blob's name fail every host with 202: an upload whose
    // stored blob is then corrupted on the server's disk.
    let (_, v) =
        h.post("generate_local_file_upload_url", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "file_name_list": ["u.bin"]})).await;
    let slot = v["data"]["url_map"]["u.bin"].clone();
    let r = h.http.put(slot["upload_url"].as_str().unwrap()).body("to be corrupted\n").send().await.unwrap();
    assert!(r.status().is_success(), "{r:?}");
    let blobs = h.config.data_dir.clone().unwrap().join("blobs");
    let mut corrupted = 0;
    for b in common::files_under(&blobs) {
        if std::fs::read(&b).unwrap() == b"to be corrupted\n" {
            std::fs::write(&b, b"To be corrupted\n").unwrap();
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 1);
    let (_, v) = h
        .post(
            "fast_transfer_file",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account_alias": common::USER, "file_target_path": "/nowhere",
                   "file_source_list": [{"file_list": [slot["path"]], "file_type": 2}], "target_server": {"host_id_list": hosts}}),
        )
        .await;
    let job = v["data"]["job_instance_id"].as_i64().unwrap_or_else(|| panic!("{v}"));
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    let results = hosts_of(&st);
    assert_eq!(results.len(), N);
    assert!(results.iter().all(|r| r["status"] == json!(202)), "{st}");
    fleet.stop(Duration::from_secs(10)).await;
}

on_both_stores!(simulated_fleet_reports_every_host, simulated_fleet_verifies_files);
