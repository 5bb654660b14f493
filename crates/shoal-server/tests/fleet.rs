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
use shoal_agent::InstantExecutor;

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

on_both_stores!(simulated_fleet_reports_every_host);
