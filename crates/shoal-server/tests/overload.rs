//! Overload: while agents' results (and the engine's changes) wait longer than
//! `max_ingest_lag_ms` to be committed, new jobs are refused with JOB's system-quota code
//! (1244034) instead of finishing ever later; once the writer has caught up they are accepted
//! again. The writer is held back by another process's transaction holding SQLite's write lock.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_refused_while_results_wait_and_accepted_once_drained() {
    let Some(mut h) = Harness::start_with(Backend::Sqlite, |c| c.max_ingest_lag_ms = 200).await else { return };
    h.add_agent("127.0.0.103", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo again"), "script_language": 1,
                      "account_alias": USER, "target_server": {"host_id_list": hosts}});

    let db = h.config.data_dir.clone().unwrap().join("shoal.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let first = h.execute("echo held", &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();
    let deferred = h.execute("echo later", &hosts, json!({"start_task": false})).await["job_instance_id"].as_i64().unwrap();
    let start = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": deferred, "operation_code": 2});
    // From here the server's writer cannot commit the first job's start or its result.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let gateway = h.shared.gateway.clone();
    wait_for("the writer to fall behind", Duration::from_secs(10), || {
        let lag = gateway.ingest_lag();
        async move { lag > Duration::from_millis(400) }
    })
    .await;
    let (status, v) = tokio::time::timeout(Duration::from_secs(10), h.post("fast_execute_script", body.clone())).await.expect("an answer");
    assert_eq!((status, v["code"].as_i64()), (200, Some(1244034)), "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    // Starting a job created earlier adds load too: refused the same way.
    let (_, v) = tokio::time::timeout(Duration::from_secs(10), h.post("operate_job_instance", start.clone())).await.expect("an answer");
    assert_eq!(v["code"].as_i64(), Some(1244034), "a deferred start while overloaded: {v}");

    // The lock goes: the backlog drains, the held job ends, and jobs are accepted again.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let st = h.wait_finished(first, Duration::from_secs(20)).await;
    assert_eq!(hosts_of(&st)[0]["status"], 9, "{st}");
    wait_for("the writer to catch up", Duration::from_secs(10), || {
        let lag = gateway.ingest_lag();
        async move { lag.is_zero() }
    })
    .await;
    let (_, v) = h.post("fast_execute_script", body).await;
    assert_eq!(v["code"], 0, "accepted once drained: {v}");
    let next = v["data"]["job_instance_id"].as_i64().unwrap();
    h.wait_finished(next, Duration::from_secs(20)).await;
    let (_, v) = h.post("operate_job_instance", start).await;
    assert_eq!(v["code"], 0, "the deferred job starts once drained: {v}");
    assert_eq!(hosts_of(&h.wait_finished(deferred, Duration::from_secs(20)).await)[0]["status"], 9);
    // Nothing was created for the refused submission.
    let q = shoal_store::JobQuery { scope_type: "biz".into(), scope_id: "1".into(), length: 10, ..Default::default() };
    assert_eq!(h.shared.store.list_jobs(&q).await.unwrap().0, 3);
}
