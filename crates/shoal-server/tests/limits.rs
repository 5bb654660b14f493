//! Limits and bad input: running-job quotas (1244032 / 1244033 / 1244034), and a property test
//! that throws arbitrary requests at every API of a real server: it never panics or drops the
//! connection, and every rejection is a JOB envelope carrying a known JOB code.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use shoal_proto::code::Lang;
use shoal_proto::ErrorCode;

mod quotas {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        if let Some(h) = super::Harness::start_with(super::Backend::Sqlite, |c| c.max_running_jobs_per_app = 1).await {
            super::quota_per_app(h).await;
        }
        if let Some(h) = super::Harness::start_with(super::Backend::Sqlite, |c| c.max_running_jobs_per_scope = 1).await {
            super::quota_per_scope_and_total(h, 1244032).await;
        }
        if let Some(h) = super::Harness::start_with(super::Backend::Sqlite, |c| c.max_running_jobs = 1).await {
            super::quota_per_scope_and_total(h, 1244034).await;
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(h) = super::Harness::start_with(super::Backend::Postgres, |c| c.max_running_jobs_per_app = 1).await {
            super::quota_per_app(h).await;
        }
    }
}

/// A long job holds the only slot; the next start is refused until it ends.
async fn quota_per_scope_and_total(mut h: Harness, code: i64) {
    h.add_agent("127.0.0.101", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let long = h.execute("sleep 30", &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo x"), "script_language": 1,
                      "account_alias": USER, "target_server": {"host_id_list": hosts}});
    let (_, v) = h.post("fast_execute_script", body.clone()).await;
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    let (_, v) = h
        .post("operate_job_instance", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": long, "operation_code": 1}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    h.wait_finished(long, Duration::from_secs(20)).await;
    let (_, v) = h.post("fast_execute_script", body).await;
    assert_eq!(v["code"], 0, "a slot is free again: {v}");
}

async fn quota_per_app(mut h: Harness) {
    h.add_agent("127.0.0.102", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    h.execute("sleep 30", &hosts, json!({})).await;
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo x"), "script_language": 1,
                      "account_alias": USER, "target_server": {"host_id_list": hosts}});
    let (_, v) = h.post("fast_execute_script", body).await;
    assert_eq!(v["code"], 1244033, "{v}");
}

const APIS: &[&str] = &[
    "fast_execute_script",
    "get_job_instance_status",
    "get_job_instance_ip_log",
    "batch_get_job_instance_ip_log",
    "operate_job_instance",
    "get_job_instance_list",
    "create_account",
    "get_account_list",
    "delete_account",
    "create_dangerous_rule",
    "update_dangerous_rule",
    "delete_dangerous_rule",
    "enable_dangerous_rule",
    "disable_dangerous_rule",
    "get_dangerous_rule_list",
    "check_script",
    "no_such_api",
];

/// Field names the APIs read, so generated bodies reach past the first check.
const FIELDS: &[&str] = &[
    "bk_scope_type",
    "bk_scope_id",
    "bk_biz_id",
    "script_content",
    "script_language",
    "script_param",
    "is_param_sensitive",
    "timeout",
    "account_alias",
    "account_id",
    "target_server",
    "host_id_list",
    "ip_list",
    "bk_cloud_id",
    "ip",
    "topo_node_list",
    "dynamic_group_list",
    "task_name",
    "callback_url",
    "job_instance_id",
    "step_instance_id",
    "bk_host_id",
    "operation_code",
    "start",
    "length",
    "account",
    "alias",
    "type",
    "category",
    "password",
    "id",
    "expression",
    "script_language_list",
    "description",
    "action",
    "content",
    "rolling_config",
    "start_task",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-3i64..5).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::from),
        "[A-Za-z0-9+/=]{0,24}".prop_map(Value::from),
        Just(Value::from("biz")),
        Just(Value::from("1")),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(FIELDS).prop_map(String::from), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

fn arb_request() -> impl Strategy<Value = (&'static str, bool, Body)> {
    let body = prop_oneof![
        4 => prop::collection::btree_map(prop::sample::select(FIELDS).prop_map(String::from), arb_json(), 0..10)
            .prop_map(|m| Body::Json(Value::Object(m.into_iter().collect()))),
        1 => arb_json().prop_map(Body::Json),
        1 => (prop::collection::vec(any::<u8>(), 0..200), prop::sample::select(vec!["application/json", "application/x-www-form-urlencoded", "text/plain"]))
            .prop_map(|(b, t)| Body::Raw(b, t)),
    ];
    (prop::sample::select(APIS), any::<bool>(), body)
}

/// Codes an answer may carry: 0, or one JOB defines (and Shoal has the message of).
fn known(code: i64) -> bool {
    code == 0 || ErrorCode(code as i32).template(Lang::En) != "Unknown error"
}

mod fuzz_decoders {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        if let Some(h) = super::Harness::start(super::Backend::Sqlite).await {
            super::fuzz(h).await;
        }
    }
}

async fn fuzz(h: Harness) {
    let url = h.url.clone();
    let auth = h.auth_header();
    let http = h.http.clone();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
        runner
            .run(&arb_request(), |(name, esb, body)| {
                let (status, text) = rt.block_on(async {
                    let path = if esb { format!("{url}/api/c/compapi/v2/jobv3/{name}/") } else { format!("{url}/api/v3/{name}") };
                    let req = http.post(path).header("X-Bkapi-Authorization", &auth);
                    let req = match &body {
                        Body::Json(v) => req.json(v),
                        Body::Raw(b, t) => req.header("content-type", *t).body(b.clone()),
                    };
                    let r = req.send().await.expect("the server answers every request");
                    (r.status().as_u16(), r.text().await.unwrap())
                });
                let v: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
                let code = v["code"].as_i64().ok_or_else(|| TestCaseError::fail(format!("no code: {v}")))?;
                prop_assert!(known(code), "unknown code {code}: {v}");
                prop_assert_eq!(v["result"].as_bool(), Some(code == 0), "{}", v);
                prop_assert!(code == 0 || v["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", v);
                prop_assert!(matches!(status, 200 | 400 | 401 | 404 | 405 | 413), "HTTP {status}: {v}");
                prop_assert_ne!(code, 1240002, "an internal error is a bug: {}", v);
                Ok(())
            })
            .unwrap();
    })
    .await
    .unwrap();
    let (_, v) = h.get("get_job_instance_list", &history_query("1")).await;
    assert_eq!(v["code"], 0, "the server still serves: {v}");
}
