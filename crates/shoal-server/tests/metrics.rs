//! `GET /metrics`: Prometheus text, and counters moved by real jobs, requests and faults.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

on_both_stores!(
    jobs_requests_agents_and_store_errors_move_the_metrics,
    a_store_refusing_results_shows_as_blocked_ingest,
    latencies_queues_and_running_jobs,
    store_errors_of_the_engine_and_cron_are_counted
);

async fn scrape(h: &Harness) -> String {
    let r = h.http.get(format!("{}/metrics", h.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    text
}

/// A sample's value (`name{labels}` exactly as exposed), 0 when it is not there yet.
fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or(0.0)
}

async fn wait_value(h: &Harness, sample: &str, at_least: f64) {
    wait_for(sample, Duration::from_secs(20), || async { value(&scrape(h).await, sample) >= at_least }).await;
}

async fn jobs_requests_agents_and_store_errors_move_the_metrics(mut h: Harness) {
    let before = scrape(&h).await;
    // Families with labels appear with their first sample; these are there from the start.
    for family in [
        "# TYPE shoal_jobs_started counter",
        "# TYPE shoal_connected_agents gauge",
        "# TYPE shoal_ingest_lag_seconds gauge",
        "# TYPE shoal_ingest_blocked gauge",
        "# TYPE shoal_jobs_running gauge",
        "# TYPE shoal_dispatch_latency_seconds histogram",
        "# TYPE shoal_ingest_latency_seconds histogram",
        "# TYPE shoal_ingest_queue_depth gauge",
        "# TYPE shoal_ingest_queue_bytes gauge",
        "# TYPE shoal_dispatch_queue_depth gauge",
        "# TYPE shoal_callback_queue_depth gauge",
        "# TYPE shoal_staging_queue_depth gauge",
        "# TYPE shoal_blob_bytes_served counter",
    ] {
        assert!(before.contains(family), "{family} missing: {before}");
    }
    assert_eq!(value(&before, "shoal_connected_agents"), 0.0);
    assert_eq!(value(&before, "shoal_ingest_blocked"), 0.0);
    assert_eq!(value(&before, "shoal_jobs_started_total"), 0.0);

    h.add_agent("127.0.0.41", None, None, &[]).await;
    h.add_agent("127.0.0.42", None, None, &[]).await;
    h.wait_connected(2).await;
    assert_eq!(value(&scrape(&h).await, "shoal_connected_agents"), 2.0);
    let hosts = h.host_ids().await;

    // A job that succeeds on both hosts, then one that fails on both.
    let ok = h.execute("echo fine", &hosts, json!({})).await;
    h.wait_finished(ok["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    wait_value(&h, "shoal_jobs_finished_total{status=\"3\"}", 1.0).await;
    let bad = h.execute("exit 3", &hosts, json!({})).await;
    h.wait_finished(bad["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    wait_value(&h, "shoal_jobs_finished_total{status=\"4\"}", 1.0).await;

    let m = scrape(&h).await;
    for family in ["# TYPE shoal_jobs_finished counter", "# TYPE shoal_host_tasks_finished counter", "# TYPE shoal_http_requests counter"] {
        assert!(m.contains(family), "{family} missing: {m}");
    }
    assert_eq!(value(&m, "shoal_jobs_started_total"), 2.0, "{m}");
    assert_eq!(value(&m, "shoal_jobs_finished_total{status=\"3\"}"), 1.0, "{m}");
    assert_eq!(value(&m, "shoal_jobs_finished_total{status=\"4\"}"), 1.0, "{m}");
    assert_eq!(value(&m, "shoal_host_tasks_finished_total{status=\"9\"}"), 2.0, "{m}");
    assert_eq!(value(&m, "shoal_host_tasks_finished_total{status=\"104\"}"), 2.0, "{m}");
    assert!(value(&m, "shoal_http_requests_total{code=\"200\"}") >= 4.0, "{m}");

    // A refused caller is an HTTP 401.
    let unauth_before = value(&m, "shoal_http_requests_total{code=\"401\"}");
    let r = h.http.post(format!("{}/api/v3/get_job_instance_list", h.url)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(value(&scrape(&h).await, "shoal_http_requests_total{code=\"401\"}"), unauth_before + 1.0);

    // A store that fails under a request: counted as an API store error.
    assert_eq!(value(&m, "shoal_store_errors_total{source=\"api\"}"), 0.0, "{m}");
    h.sql("ALTER TABLE job_instances RENAME TO job_instances_gone").await;
    let (_, v) = h.get("get_job_instance_list", &history_query("1")).await;
    assert_ne!(v["code"], 0, "{v}");
    assert!(value(&scrape(&h).await, "shoal_store_errors_total{source=\"api\"}") >= 1.0);

    // An agent that goes away is no longer counted.
    h.stop_agent(1).await;
    wait_for("one agent left", Duration::from_secs(20), || async { value(&scrape(&h).await, "shoal_connected_agents") == 1.0 }).await;
}

async fn a_store_refusing_results_shows_as_blocked_ingest(mut h: Harness) {
    h.add_agent("127.0.0.43", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // The results of this job arrive while the store cannot take them.
    h.sql("ALTER TABLE log_chunks RENAME TO log_chunks_away").await;
    let job = h.execute("echo held; sleep 0.2", &hosts, json!({})).await;
    wait_value(&h, "shoal_ingest_blocked", 1.0).await;
    wait_value(&h, "shoal_store_errors_total{source=\"ingest\"}", 1.0).await;
    let m = scrape(&h).await;
    assert_eq!(value(&m, "shoal_host_tasks_finished_total{status=\"9\"}"), 0.0, "{m}");
    // The store takes them again: nothing was lost, the gauge falls back.
    h.sql("ALTER TABLE log_chunks_away RENAME TO log_chunks").await;
    let st = h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    wait_for("ingest unblocked", Duration::from_secs(20), || async { value(&scrape(&h).await, "shoal_ingest_blocked") == 0.0 }).await;
    wait_value(&h, "shoal_host_tasks_finished_total{status=\"9\"}", 1.0).await;
    wait_value(&h, "shoal_jobs_finished_total{status=\"3\"}", 1.0).await;
    let m = scrape(&h).await;
    assert_eq!(value(&m, "shoal_host_tasks_finished_total{status=\"9\"}"), 1.0, "{m}");
    assert_eq!(value(&m, "shoal_jobs_finished_total{status=\"3\"}"), 1.0, "{m}");
}

/// What one real job moves: each task handed to its agent is a dispatch latency, each result
/// an agent sent an ingest latency; while it runs it is counted as running; the queues are
/// empty again once it is over, and a callback waiting for its receiver is a queued callback.
async fn latencies_queues_and_running_jobs(mut h: Harness) {
    h.add_agent("127.0.0.44", None, None, &[]).await;
    h.add_agent("127.0.0.45", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let m = scrape(&h).await;
    assert_eq!(value(&m, "shoal_dispatch_latency_seconds_count"), 0.0, "{m}");
    assert_eq!(value(&m, "shoal_jobs_running"), 0.0, "{m}");

    // A receiver that takes the callback's connection and never answers: the callback stays
    // queued while the job has ended.
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callback = format!("http://{}/done", receiver.local_addr().unwrap());
    let job = h.execute("echo one; sleep 2; echo two", &hosts, json!({"callback_url": callback})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    wait_value(&h, "shoal_jobs_running", 1.0).await;
    wait_value(&h, "shoal_dispatch_latency_seconds_count", 2.0).await;
    let m = scrape(&h).await;
    assert_eq!(value(&m, "shoal_dispatch_latency_seconds_count"), 2.0, "one per task handed out: {m}");
    let dispatch = value(&m, "shoal_dispatch_latency_seconds_sum");
    // Measured in whole milliseconds: two tasks handed out within the millisecond they
    // became due add up to 0.
    assert!((0.0..10.0).contains(&dispatch), "{m}");
    assert!(value(&m, "shoal_dispatch_latency_seconds_bucket{le=\"+Inf\"}") == 2.0, "{m}");
    h.wait_finished(id, Duration::from_secs(20)).await;
    wait_for("no job running", Duration::from_secs(20), || async { value(&scrape(&h).await, "shoal_jobs_running") == 0.0 }).await;
    wait_value(&h, "shoal_callback_queue_depth", 1.0).await;
    let m = scrape(&h).await;
    // Two exits and at least two pieces of output each committed.
    assert!(value(&m, "shoal_ingest_latency_seconds_count") >= 4.0, "{m}");
    assert!(value(&m, "shoal_ingest_latency_seconds_sum") > 0.0, "{m}");
    for idle in ["shoal_ingest_queue_depth", "shoal_ingest_queue_bytes", "shoal_dispatch_queue_depth", "shoal_staging_queue_depth"] {
        assert_eq!(value(&m, idle), 0.0, "{idle}: {m}");
    }
    assert_eq!(value(&m, "shoal_dispatch_latency_seconds_count"), 2.0, "{m}");
    drop(receiver);
}

/// A store error met by the engine (an agent's lost tasks cannot be read) or the cron
/// scheduler (due crons cannot be read) is counted under its own source.
async fn store_errors_of_the_engine_and_cron_are_counted(mut h: Harness) {
    h.add_agent("127.0.0.46", None, None, &[]).await;
    h.wait_connected(1).await;
    let m = scrape(&h).await;
    assert_eq!(value(&m, "shoal_store_errors_total{source=\"engine\"}"), 0.0, "{m}");
    assert_eq!(value(&m, "shoal_store_errors_total{source=\"cron\"}"), 0.0, "{m}");
    h.sql("ALTER TABLE step_instances RENAME TO step_instances_gone").await;
    h.sql("ALTER TABLE crons RENAME TO crons_gone").await;
    wait_value(&h, "shoal_store_errors_total{source=\"cron\"}", 1.0).await;
    // The agent goes; after the grace period the engine reads its unfinished tasks.
    h.stop_agent(0).await;
    wait_value(&h, "shoal_store_errors_total{source=\"engine\"}", 1.0).await;
}
