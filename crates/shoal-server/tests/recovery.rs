//! Jobs a crash left between two changes reach a final state after a restart, on SQLite and
//! PostgreSQL: a running job whose step had ended, and a started job whose first step never
//! started (it runs, once).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

on_both_stores!(a_running_job_whose_steps_ended_is_finished, a_started_job_whose_step_never_started_runs_once);

async fn a_running_job_whose_steps_ended_is_finished(mut h: Harness) {
    h.add_agent("127.0.0.97", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo done", &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job, Duration::from_secs(20)).await;
    // The crash came after the step's end and before the job's, a minute ago.
    h.stop_server().await;
    h.sql(&format!("UPDATE job_instances SET status = 2, end_time = NULL WHERE id = {job}")).await;
    h.sql(&format!("UPDATE step_instances SET end_time = end_time - 60000 WHERE job_instance_id = {job}")).await;
    h.restart_server().await;
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
}

async fn a_started_job_whose_step_never_started_runs_once(mut h: Harness) {
    h.add_agent("127.0.0.98", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo ran-$$", &hosts, json!({"start_task": false})).await;
    let (job, step) = (job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap());
    // The crash came after the job was marked running and before its first step started.
    h.stop_server().await;
    h.sql(&format!("UPDATE job_instances SET status = 2, start_time = create_time - 60000 WHERE id = {job}")).await;
    h.restart_server().await;
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let logs = h.logs(job, step, &hosts).await;
    assert_eq!(logs[&hosts[0]].matches("ran-").count(), 1, "{logs:?}");
}
