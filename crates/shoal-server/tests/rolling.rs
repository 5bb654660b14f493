//! Rolling execution through `fast_execute_script`'s `rolling_config`, on both stores.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    serial_batches_run_in_order,
    pause_on_failure_stops_ignore_goes_on,
    manual_batches_wait_for_the_user,
    parallel_staggered,
    a_step_left_between_batches_by_a_crash_goes_on,
    bad_rolling_configs
);

async fn fleet(h: &mut Harness, n: usize) -> Vec<i64> {
    for i in 0..n {
        h.add_agent(&format!("127.0.0.{}", 81 + i), None, None, &[]).await;
    }
    h.wait_connected(n).await;
    // In target order: by address.
    let mut hosts = h.shared.store.list_hosts(Some(1)).await.unwrap();
    hosts.sort_by(|a, b| a.ip.cmp(&b.ip));
    hosts.into_iter().map(|h| h.bk_host_id).collect()
}

/// Host results of the first step by host id, in target order.
fn by_target(st: &Value, hosts: &[i64]) -> Vec<Value> {
    let results = hosts_of(st);
    hosts.iter().map(|id| results.iter().find(|r| r["bk_host_id"] == *id).cloned().unwrap()).collect()
}

/// A script that fails only on the agent at `ip` (its script path names the agent's state dir).
fn failing_on(ip: &str) -> String {
    format!("case \"$0\" in *agent-{ip}/*) echo failing; exit 1;; esac; sleep 0.2; echo ok")
}

async fn serial_batches_run_in_order(mut h: Harness) {
    let hosts = fleet(&mut h, 5).await;
    let job = h.execute("sleep 0.3; echo ok", &hosts, json!({"rolling_config": {"expression": "2", "mode": 1}})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let st = h.status(id).await;
    assert_eq!(st["step_instance_list"][0]["total_batch"], 3, "{st}");
    let st = h.wait_job(id, 3).await;
    assert_eq!(st["step_instance_list"][0]["current_batch"], 3);
    let r = by_target(&st, &hosts);
    assert!(r.iter().all(|x| x["status"] == 9));
    // Batches [0,1], [2,3], [4]: each starts after the previous one ended.
    let end = |i: usize| r[i]["end_time"].as_i64().unwrap();
    let start = |i: usize| r[i]["start_time"].as_i64().unwrap();
    assert!(start(2).min(start(3)) >= end(0).max(end(1)), "{r:?}");
    assert!(start(4) >= end(2).max(end(3)), "{r:?}");
}

async fn pause_on_failure_stops_ignore_goes_on(mut h: Harness) {
    let hosts = fleet(&mut h, 5).await;
    // The second host (first batch) fails.
    let script = failing_on("127.0.0.82");
    let job = h.execute(&script, &hosts, json!({"rolling_config": {"expression": "2", "mode": 1}})).await;
    let st = h.wait_job(job["job_instance_id"].as_i64().unwrap(), 4).await;
    assert_eq!(st["step_instance_list"][0]["status"], 4);
    let statuses: Vec<i64> = by_target(&st, &hosts).iter().map(|x| x["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![9, 104, 5, 5, 5], "later batches never ran");

    let job = h.execute(&script, &hosts, json!({"rolling_config": {"expression": "2", "mode": 2}})).await;
    let st = h.wait_job(job["job_instance_id"].as_i64().unwrap(), 3).await;
    assert_eq!(st["step_instance_list"][0]["status"], 6, "the step ends ignore-error: {st}");
    let statuses: Vec<i64> = by_target(&st, &hosts).iter().map(|x| x["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![9, 104, 9, 9, 9]);
}

async fn manual_batches_wait_for_the_user(mut h: Harness) {
    let hosts = fleet(&mut h, 3).await;
    let job = h.execute("echo ok", &hosts, json!({"rolling_config": {"expression": "1 2", "mode": 3}})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let step = job["step_instance_id"].as_i64().unwrap();
    let st = h.wait_job(id, 7).await;
    assert_eq!((st["step_instance_list"][0]["status"].as_i64(), st["step_instance_list"][0]["current_batch"].as_i64()), (Some(7), Some(1)));
    let statuses: Vec<i64> = by_target(&st, &hosts).iter().map(|x| x["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![9, 5, 5]);
    let op = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "step_instance_id": step, "operation_code": 13});
    let (_, v) = h.post("operate_step_instance", op.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_job(id, 3).await;
    assert_eq!(st["step_instance_list"][0]["current_batch"], 2);
    assert!(hosts_of(&st).iter().all(|x| x["status"] == 9));
    let (_, v) = h.post("operate_step_instance", op).await;
    assert_eq!(v["code"], 1241003, "nothing to continue");

    // Terminated while waiting between batches: the rest never runs.
    let job = h.execute("echo ok", &hosts, json!({"rolling_config": {"expression": "1", "mode": 3}})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    h.wait_job(id, 7).await;
    let (_, v) = h
        .post("operate_job_instance", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "operation_code": 1}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_job(id, 11).await;
    let statuses: Vec<i64> = by_target(&st, &hosts).iter().map(|x| x["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![9, 403, 403]);
}

async fn a_step_left_between_batches_by_a_crash_goes_on(mut h: Harness) {
    let hosts = fleet(&mut h, 3).await;
    let job = h.execute("echo ok", &hosts, json!({"rolling_config": {"expression": "1", "mode": 3}})).await;
    let (id, step) = (job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap());
    h.wait_job(id, 7).await;
    // The server dies right after a batch ended, having marked the step "waiting for the next
    // batch" (15) but before starting that batch.
    h.stop_server().await;
    let store = h.shared.store.clone();
    store.update_step(&shoal_store::StepUpdate { id: step, status: Some(15), start_time: None, end_time: None }).await.unwrap();
    store.update_job(&shoal_store::JobUpdate { id, status: Some(2), expect_status: vec![7], ..Default::default() }).await.unwrap();
    h.restart_server().await;
    // The new server decides again where the step is: batch 1 is over and mode 3 waits for
    // the user (not a step stuck "between batches" forever)...
    let st = h.wait_job(id, 7).await;
    assert_eq!(
        (st["step_instance_list"][0]["status"].as_i64(), st["step_instance_list"][0]["current_batch"].as_i64()),
        (Some(7), Some(1)),
        "{st}"
    );
    // ...and the user's go starts batch 2.
    let op = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "step_instance_id": step, "operation_code": 13});
    let (_, v) = h.post("operate_step_instance", op).await;
    assert_eq!(v["code"], 0, "{v}");
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = h.status(id).await;
        if st["job_instance"]["status"] == 7 && st["step_instance_list"][0]["current_batch"] == 2 {
            let statuses: Vec<i64> = by_target(&st, &hosts).iter().map(|x| x["status"].as_i64().unwrap()).collect();
            assert_eq!(statuses, vec![9, 9, 5], "{st}");
            break;
        }
        assert!(tokio::time::Instant::now() < end, "batch 2 never ran: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn parallel_staggered(mut h: Harness) {
    let hosts = fleet(&mut h, 3).await;
    let cfg = json!({"expression": "1", "execution_mode": 2, "batch_start_wait_fixed_ms": 300,
                     "batch_start_wait_random_min_ms": 0, "batch_start_wait_random_max_ms": 0});
    let job = h.execute("echo ok", &hosts, json!({"rolling_config": cfg})).await;
    let st = h.wait_job(job["job_instance_id"].as_i64().unwrap(), 3).await;
    let r = by_target(&st, &hosts);
    let start = |i: usize| r[i]["start_time"].as_i64().unwrap();
    assert!(start(1) - start(0) >= 250 && start(2) - start(1) >= 250, "staggered: {r:?}");
}

async fn bad_rolling_configs(mut h: Harness) {
    let hosts = fleet(&mut h, 2).await;
    for (cfg, code) in [
        (json!({"expression": "abc"}), 1244026),
        (json!({"expression": "0%"}), 1244026),
        (json!({"expression": "1", "mode": 7}), 1240003),
        (json!({"expression": "1", "execution_mode": 2}), 1240003),
    ] {
        let (_, v) = h
            .post(
                "fast_execute_script",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo"), "script_language": 1,
                       "account_alias": USER, "target_server": {"host_id_list": hosts}, "rolling_config": cfg}),
            )
            .await;
        assert_eq!(v["code"], code, "{cfg} → {v}");
    }
}
