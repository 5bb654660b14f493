//! Idempotency across a server crash, on SQLite and PostgreSQL. A crash leaves a key pending
//! under a dead owner, either before the request made its job or after (the job committed,
//! the answer not stored yet). A retry must never wait for minutes and never start twice:
//! it answers with the job that was made, or makes it once.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(a_key_left_pending_by_a_crash_before_the_job_is_taken_over, a_key_left_pending_after_the_job_answers_with_that_job);

async fn post_with_key(h: &Harness, key: &str, body: &Value) -> Value {
    let r = h
        .http
        .post(format!("{}/api/v3/fast_execute_script", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

async fn job_count(h: &Harness) -> i64 {
    h.post("get_job_instance_list", history("1")).await.1["data"]["total"].as_i64().unwrap()
}

fn body(host: i64) -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo once"), "script_language": 1,
           "account_alias": USER, "target_server": {"host_id_list": [host]}})
}

async fn a_key_left_pending_by_a_crash_before_the_job_is_taken_over(mut h: Harness) {
    h.add_agent("127.0.0.95", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.95").await;
    // The request hash of the real call: make the key once, then put it back to pending
    // under a dead server with no job, as a crash right after the reservation leaves it.
    let first = post_with_key(&h, "crash-1", &body(host)).await;
    assert_eq!(first["code"], 0, "{first}");
    h.wait_finished(first["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    h.sql("UPDATE idempotency_keys SET state = 'pending', answer = '', owner = 'boot-dead', job_instance_id = NULL WHERE idem_key = 'crash-1'").await;
    let before = job_count(&h).await;
    let started = tokio::time::Instant::now();
    let retry = post_with_key(&h, "crash-1", &body(host)).await;
    assert_eq!(retry["code"], 0, "the retry was not run: {retry}");
    assert!(started.elapsed() < Duration::from_secs(30), "the retry waited for a dead request");
    assert_eq!(job_count(&h).await, before + 1, "the request ran once");
    // And its answer is kept: a second retry replays it.
    let again = post_with_key(&h, "crash-1", &body(host)).await;
    assert_eq!(again["data"], retry["data"]);
    assert_eq!(job_count(&h).await, before + 1);
}

async fn a_key_left_pending_after_the_job_answers_with_that_job(mut h: Harness) {
    h.add_agent("127.0.0.96", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.96").await;
    let first = post_with_key(&h, "crash-2", &body(host)).await;
    assert_eq!(first["code"], 0, "{first}");
    let job = first["data"]["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job, Duration::from_secs(20)).await;
    // The job committed with its key; the crash came before the answer was stored.
    h.sql("UPDATE idempotency_keys SET state = 'pending', answer = '', owner = 'boot-dead' WHERE idem_key = 'crash-2'").await;
    let before = job_count(&h).await;
    let retry = post_with_key(&h, "crash-2", &body(host)).await;
    assert_eq!(retry["code"], 0, "{retry}");
    assert_eq!(retry["data"], first["data"], "the retry is answered with the job the first request made");
    assert_eq!(job_count(&h).await, before, "nothing ran twice");
}
