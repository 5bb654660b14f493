//! The caller side against a real server: the typed client (retries, idempotency keys, error
//! classes, host lookups, complete logs), idempotent submission over HTTP, messages in the
//! caller's language, and `shoal check` end to end.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shoal_client::check::{CheckOptions, CheckScript, Verdict};
use shoal_client::{Client, ClientConfig, ClientError, HostRef, PathStyle, RetryPolicy, Scope, TargetMode, WaitPolicy};
use shoal_proto::code::Lang;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client_for(url: &str, lang: &str) -> Client {
    Client::new(ClientConfig {
        url: url.into(),
        app_code: APP.into(),
        app_secret: SECRET.into(),
        username: USER.into(),
        token: None,
        style: PathStyle::Gateway,
        timeout: Duration::from_secs(10),
        language: Some(lang.into()),
    })
    .unwrap()
    .with_retry(RetryPolicy { attempts: 5, base: Duration::from_millis(10), max: Duration::from_millis(100) })
}

fn scope() -> Scope {
    Scope::biz(1)
}

async fn job_count(h: &Harness) -> i64 {
    let (_, v) = h.get("get_job_instance_list", &format!("{}&length=1000", history_query("1"))).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"]["total"].as_i64().unwrap()
}

/// What the proxy does with one connection.
#[derive(Clone)]
enum Mode {
    /// Pass bytes both ways.
    Forward,
    /// Pass the request on, let the server handle it, then drop the connection before the
    /// client sees any answer: the worst case for a retried submit.
    ForwardThenDrop,
    /// Answer this raw HTTP response without asking the server.
    Canned(String),
}

/// A TCP proxy in front of the server whose behaviour is chosen per connection (numbered
/// from 0); it counts connections.
struct Proxy {
    url: String,
    connections: Arc<AtomicUsize>,
}

fn http_answer(status: &str, content_type: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

async fn proxy(upstream: std::net::SocketAddr, mode: impl Fn(usize) -> Mode + Send + Sync + 'static) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let mode = Arc::new(mode);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let mode = mode(n);
            tokio::spawn(async move {
                match mode {
                    Mode::Forward => {
                        let mut up = TcpStream::connect(upstream).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut up).await;
                    }
                    Mode::ForwardThenDrop => {
                        let up = TcpStream::connect(upstream).await.unwrap();
                        let (mut up_r, mut up_w) = up.into_split();
                        let (mut in_r, _in_w) = inbound.into_split();
                        let pump = tokio::spawn(async move {
                            let _ = tokio::io::copy(&mut in_r, &mut up_w).await;
                        });
                        // The server's answer proves it handled the request; nobody gets it.
                        let mut buf = [0u8; 1];
                        let _ = up_r.read(&mut buf).await;
                        pump.abort();
                    }
                    Mode::Canned(answer) => {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut got = Vec::new();
                        // Read the request head and body (Content-Length), then answer.
                        loop {
                            let Ok(n) = inbound.read(&mut buf).await else { return };
                            if n == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..n]);
                            let text = String::from_utf8_lossy(&got).to_string();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let len = text[..end]
                                    .lines()
                                    .find_map(|l| {
                                        l.to_ascii_lowercase()
                                            .strip_prefix("content-length:")
                                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                    })
                                    .unwrap_or(0);
                                if got.len() >= end + 4 + len {
                                    break;
                                }
                            }
                        }
                        let _ = inbound.write_all(answer.as_bytes()).await;
                        let _ = inbound.shutdown().await;
                    }
                }
            });
        }
    });
    Proxy { url, connections }
}

on_both_stores!(
    retries_after_lost_answers_start_exactly_one_job,
    error_classes_map_to_their_codes,
    hosts_are_adapted_from_the_registry,
    idempotent_submission_replays_and_refuses,
    concurrent_duplicates_start_one_job,
    messages_follow_blueking_language,
    check_reports_each_host_and_locks_its_key,
);

async fn retries_after_lost_answers_start_exactly_one_job(mut h: Harness) {
    h.add_agent("127.0.0.11", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.11").await;
    let target = shoal_proto::jobv3::ServerDto { host_id_list: Some(vec![host]), ..Default::default() };

    // The server handles the first two submits but their answers are lost.
    let p = proxy(h.addr, |n| if n < 2 { Mode::ForwardThenDrop } else { Mode::Forward }).await;
    let c = client_for(&p.url, "en");
    let job = c.execute_script("echo once", target.clone(), &scope(), USER, "retried", None, 1, 60).await.expect("submit after retries");
    assert!(p.connections.load(Ordering::SeqCst) >= 3, "the client retried");
    assert_eq!(job_count(&h).await, 1, "three deliveries of one submit start one job");
    let st = c.wait_job(&scope(), job.job_instance_id, &WaitPolicy::within(Duration::from_secs(30)), |_| {}).await.unwrap();
    assert_eq!(st.job_instance.status, 3);

    // A gateway answering 502 pages: retried too, still one new job.
    let p = proxy(h.addr, |n| {
        if n < 2 {
            Mode::Canned(http_answer("502 Bad Gateway", "text/html", "<html>bad gateway</html>"))
        } else {
            Mode::Forward
        }
    })
    .await;
    let c = client_for(&p.url, "en");
    let job2 = c.execute_script("echo twice", target.clone(), &scope(), USER, "retried", None, 1, 60).await.expect("submit after 502s");
    assert_ne!(job2.job_instance_id, job.job_instance_id);
    assert_eq!(job_count(&h).await, 2);

    // result=false is an answer, not a failure: asked once, never retried.
    let p = proxy(h.addr, |_| Mode::Forward).await;
    let c =
        client_for(&p.url, "en").with_retry(RetryPolicy { attempts: 5, base: Duration::from_millis(10), max: Duration::from_millis(10) });
    let e = c.execute_script("echo", target.clone(), &scope(), "no-such-account", "x", None, 1, 60).await.unwrap_err();
    assert_eq!((e.code(), e.job_code()), (500002, Some(1244003)), "{e}");
    let p = proxy(h.addr, |_| {
        Mode::Canned(http_answer(
            "200 OK",
            "application/json",
            r#"{"result":false,"code":1244005,"message":"Fail to start job","data":null}"#,
        ))
    })
    .await;
    let c = client_for(&p.url, "en");
    let e = c.execute_script("echo", target, &scope(), USER, "x", None, 1, 60).await.unwrap_err();
    assert_eq!((e.code(), e.job_code()), (500002, Some(1244005)));
    assert_eq!(p.connections.load(Ordering::SeqCst), 1, "result=false was retried");
    assert_eq!(job_count(&h).await, 2);
}

async fn error_classes_map_to_their_codes(mut h: Harness) {
    h.add_agent("127.0.0.11", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.11").await;
    let target = shoal_proto::jobv3::ServerDto { host_id_list: Some(vec![host]), ..Default::default() };
    let c = client_for(&h.url, "en");

    // 500001: refused before sending.
    let e = c.execute_script("  ", target.clone(), &scope(), USER, "x", None, 1, 60).await.unwrap_err();
    assert_eq!(e.code(), 500001, "{e}");
    let e = c.wait_job(&scope(), 0, &WaitPolicy::default(), |_| {}).await.unwrap_err();
    assert_eq!(e.code(), 500001, "a job that was not created is never polled: {e}");
    let e = c.resolve_hosts(&scope(), &[HostRef::ip(0, "10.9.9.9")]).await.unwrap_err();
    assert_eq!(e.code(), 500001);
    assert!(e.to_string().contains("0:10.9.9.9"), "names the unknown host: {e}");

    // 500002: JOB's result=false, JOB's code kept.
    let e = c.execute_script("echo", target.clone(), &scope(), "nobody-here", "x", None, 1, 60).await.unwrap_err();
    assert_eq!((e.code(), e.job_code()), (500002, Some(1244003)), "{e}");

    // 500003: nothing listening, a non-JSON answer, a deadline.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let e = client_for(&format!("http://{dead}"), "en").job_status(&scope(), 1, false).await.unwrap_err();
    assert_eq!(e.code(), 500003, "{e}");
    let p = proxy(h.addr, |_| Mode::Canned(http_answer("200 OK", "text/plain", "hello"))).await;
    let e = client_for(&p.url, "en").job_status(&scope(), 1, false).await.unwrap_err();
    assert_eq!(e.code(), 500003, "{e}");
    assert_eq!(p.connections.load(Ordering::SeqCst), 1, "a 200 that is not JSON is not retried");
    let job = c.execute_script("sleep 5", target.clone(), &scope(), USER, "slow", None, 1, 60).await.unwrap();
    let e = c.wait_job(&scope(), job.job_instance_id, &WaitPolicy::within(Duration::from_millis(300)), |_| {}).await.unwrap_err();
    assert!(matches!(e, ClientError::Deadline { .. }), "{e}");
    assert_eq!(e.code(), 500003);

    // 500004: a business with no host; JOB's "business does not exist".
    let e = c.resolve_hosts(&Scope::biz(99), &[HostRef::id(host)]).await.unwrap_err();
    assert_eq!(e.code(), 500004, "{e}");
    let p = proxy(h.addr, |_| {
        Mode::Canned(http_answer(
            "200 OK",
            "application/json",
            r#"{"result":false,"code":1243049,"message":"Business/Business Set not exist or archived","data":null}"#,
        ))
    })
    .await;
    let e = client_for(&p.url, "en").execute_script("echo", target.clone(), &Scope::biz(42), USER, "x", None, 1, 60).await.unwrap_err();
    assert_eq!((e.code(), e.job_code()), (500004, Some(1243049)), "{e}");

    // 500005: languages this client cannot speak.
    let e = Client::new(ClientConfig { language: Some("fr".into()), ..c.config().clone() }).err().unwrap();
    assert_eq!(e.code(), 500005);
    let e = c.execute_script("echo", target.clone(), &scope(), USER, "x", None, 9, 60).await.unwrap_err();
    assert_eq!(e.code(), 500005, "{e}");

    // 500006: a check record held by a running check.
    let open = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "check": "lock-test", "hosts": ["a", "b"]});
    let first: Value = c.shoal("checks", false, open.clone()).await.unwrap();
    assert_eq!(first["status"], "wait");
    let e = c
        .shoal::<Value>("checks", false, json!({"bk_scope_type": "biz", "bk_scope_id": "1", "check": "lock-test", "hosts": ["b", "a"]}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 500006, "{e}");
    assert!(e.to_string().contains(first["check_id"].as_str().unwrap()), "{e}");
}

async fn hosts_are_adapted_from_the_registry(mut h: Harness) {
    h.add_agent("127.0.0.11", None, None, &[]).await;
    h.add_agent("127.0.0.12", None, None, &[]).await;
    h.wait_connected(2).await;
    let (a, b) = (h.host_id_of("127.0.0.11").await, h.host_id_of("127.0.0.12").await);
    let c = client_for(&h.url, "en");
    let hosts = [HostRef::id(a), HostRef::ip(0, "127.0.0.12")];
    let by_id = c.adapt_hosts_target_server(&scope(), &hosts, TargetMode::HostId).await.unwrap();
    let mut ids = by_id.host_id_list.clone().unwrap();
    ids.sort_unstable();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(ids, want);
    let by_ip = c.adapt_hosts_target_server(&scope(), &hosts, TargetMode::Ip).await.unwrap();
    let mut ips: Vec<(i64, String)> = by_ip.ip_list.unwrap().into_iter().map(|i| (i.bk_cloud_id.unwrap(), i.ip.unwrap())).collect();
    ips.sort();
    assert_eq!(ips, vec![(0, "127.0.0.11".to_string()), (0, "127.0.0.12".to_string())]);
    // An id and an IP that name different hosts is an error, as is an unknown id.
    let e = c
        .resolve_hosts(&scope(), &[HostRef { bk_host_id: Some(a), bk_cloud_id: Some(0), ip: Some("127.0.0.12".into()) }])
        .await
        .unwrap_err();
    assert_eq!(e.code(), 500001);
    let e = c.resolve_hosts(&scope(), &[HostRef::id(a), HostRef::id(999_999)]).await.unwrap_err();
    assert!(e.to_string().contains("#999999"), "{e}");
    let e = c.resolve_hosts(&scope(), &[HostRef { ip: Some("127.0.0.11".into()), ..Default::default() }]).await.unwrap_err();
    assert_eq!(e.code(), 500001, "an ip without its cloud id is incomplete");

    // Both modes run the job on the same hosts.
    let job = c.execute_script("echo hi", by_id, &scope(), USER, "by id", None, 1, 60).await.unwrap();
    let st = c.wait_job(&scope(), job.job_instance_id, &WaitPolicy::within(Duration::from_secs(30)), |_| {}).await.unwrap();
    assert_eq!(st.job_instance.status, 3);
}

/// Hundreds of agents in one process on a small machine: looser liveness settings than the
/// harness's, so a slow heartbeat under load is not taken for a lost agent, and one store at
/// a time.
mod many_hosts {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn start(backend: super::Backend) -> Option<super::Harness> {
        super::Harness::start_with(backend, |c| {
            c.heartbeat_secs = 10;
            c.agent_lost_grace_secs = 60;
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn logs_for_more_than_500_hosts_come_back_complete_sqlite() {
        let _one = ONE_AT_A_TIME.lock().await;
        if let Some(h) = start(super::Backend::Sqlite).await {
            super::logs_for_more_than_500_hosts_come_back_complete(h).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn logs_for_more_than_500_hosts_come_back_complete_postgres() {
        let _one = ONE_AT_A_TIME.lock().await;
        if let Some(h) = start(super::Backend::Postgres).await {
            super::logs_for_more_than_500_hosts_come_back_complete(h).await;
        }
    }
}

async fn logs_for_more_than_500_hosts_come_back_complete(mut h: Harness) {
    const N: usize = 520;
    for i in 0..N {
        h.add_agent(&format!("127.1.{}.{}", i / 200, i % 200 + 1), None, None, &[]).await;
    }
    h.wait_connected(N).await;
    let ids = h.host_ids().await;
    assert_eq!(ids.len(), N);
    let c = client_for(&h.url, "en");
    let target = shoal_proto::jobv3::ServerDto { host_id_list: Some(ids.clone()), ..Default::default() };
    let job = c.execute_script("echo \"from $0\"", target, &scope(), USER, "many", None, 1, 120).await.unwrap();
    let st = c.wait_job(&scope(), job.job_instance_id, &WaitPolicy::within(Duration::from_secs(120)), |_| {}).await.unwrap();
    let failed: Vec<(i64, i32, i32)> = st.step_instance_list[0]
        .step_ip_result_list
        .iter()
        .flatten()
        .filter(|r| r.status != 9)
        .map(|r| (r.bk_host_id, r.status, r.exit_code))
        .collect();
    assert_eq!(st.job_instance.status, 3, "every host succeeded; failed (host, status, exit): {failed:?}");
    let step = job.step_instance_id.unwrap();
    // Ask for every host plus one that is not in the job.
    let mut asked = ids.clone();
    asked.push(9_999_999);
    let logs = c.host_logs(&scope(), job.job_instance_id, step, &asked).await.unwrap();
    assert_eq!(logs.missing, vec![9_999_999], "only the stranger is missing");
    let by_host = logs.by_host();
    assert_eq!(by_host.len(), N);
    let agents: BTreeMap<i64, String> =
        h.shared.store.list_hosts(Some(1)).await.unwrap().into_iter().map(|r| (r.bk_host_id, r.ip)).collect();
    for id in &ids {
        let ip = &agents[id];
        let out = by_host[id];
        assert!(out.contains(&format!("agent-{ip}/")), "host {id} ({ip}) answered {out:?}");
    }
}

async fn post_with_key(h: &Harness, name: &str, key: &str, lang: &str, body: &Value) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/api/v3/{name}", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .header("Idempotency-Key", key)
        .header("Blueking-Language", lang)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn submit_body(hosts: &[i64], script: &str) -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64(script), "script_language": 1,
           "account_alias": USER, "target_server": {"host_id_list": hosts}})
}

async fn idempotent_submission_replays_and_refuses(mut h: Harness) {
    h.add_agent("127.0.0.11", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.11").await;
    let body = submit_body(&[host], "echo idem");

    let (s1, v1) = post_with_key(&h, "fast_execute_script", "key-1", "en", &body).await;
    assert_eq!((s1, v1["code"].as_i64()), (200, Some(0)), "{v1}");
    // Field order does not make a different request.
    let reordered: Value = serde_json::from_str(&serde_json::to_string(&body).unwrap()).unwrap();
    let (s2, v2) = post_with_key(&h, "fast_execute_script", "key-1", "en", &reordered).await;
    assert_eq!((s2, &v2["data"]), (s1, &v1["data"]), "the repeat gets the first answer");
    assert_eq!(job_count(&h).await, 1);

    // Same key, another request: refused, nothing started.
    let (s3, v3) = post_with_key(&h, "fast_execute_script", "key-1", "en", &submit_body(&[host], "echo other")).await;
    assert_eq!((s3, v3["result"].as_bool(), v3["code"].as_i64()), (200, Some(false), Some(1241010)), "{v3}");
    assert_eq!(v3["message"], "Invalid request parameter [Idempotency-Key], reason: reused with a different request");
    assert_eq!(job_count(&h).await, 1);

    // A business error is an answer too: replayed, in the repeat's language.
    let mut bad = body.clone();
    bad["account_alias"] = json!("nobody-here");
    let (s4, v4) = post_with_key(&h, "fast_execute_script", "key-2", "en", &bad).await;
    let (s5, v5) = post_with_key(&h, "fast_execute_script", "key-2", "zh-cn", &bad).await;
    assert_eq!((s4, v4["code"].as_i64()), (200, Some(1244003)), "{v4}");
    assert_eq!((s5, v5["code"].as_i64()), (s4, Some(1244003)));
    assert_eq!(v5["message"], "账号[nobody-here]不存在");

    // Without a key every POST is new; queries ignore keys.
    let (_, a) = h.post("fast_execute_script", body.clone()).await;
    let (_, b) = h.post("fast_execute_script", body.clone()).await;
    assert_ne!(a["data"]["job_instance_id"], b["data"]["job_instance_id"]);
    assert_eq!(job_count(&h).await, 3);
    let q = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": v1["data"]["job_instance_id"], "return_ip_result": true});
    let (_, q1) = post_with_key(&h, "get_job_instance_status", "key-3", "en", &q).await;
    let (_, q2) = post_with_key(
        &h,
        "get_job_instance_status",
        "key-3",
        "en",
        &json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": a["data"]["job_instance_id"]}),
    )
    .await;
    assert_eq!((q1["code"].as_i64(), q2["code"].as_i64()), (Some(0), Some(0)), "{q1} {q2}");

    // A key that is not one.
    let (_, v6) = post_with_key(&h, "fast_execute_script", &"k".repeat(300), "en", &body).await;
    assert_eq!(v6["code"].as_i64(), Some(1241010), "{v6}");
    assert_eq!(job_count(&h).await, 3);
}

async fn concurrent_duplicates_start_one_job(mut h: Harness) {
    h.add_agent("127.0.0.11", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.11").await;
    let body = submit_body(&[host], "echo race");
    let h = Arc::new(h);
    let mut tasks = vec![];
    for _ in 0..12 {
        let (h, body) = (h.clone(), body.clone());
        tasks.push(tokio::spawn(async move { post_with_key(&h, "fast_execute_script", "same-key", "en", &body).await }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
        ids.insert(v["data"]["job_instance_id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 1, "every duplicate got the one job: {ids:?}");
    assert_eq!(job_count(&h).await, 1);
}

async fn messages_follow_blueking_language(mut h: Harness) {
    h.add_agent("127.0.0.11", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("127.0.0.11").await;
    let ask = |lang: &'static str, body: Value| {
        let h = &h;
        async move {
            let r = h
                .http
                .post(format!("{}/api/v3/fast_execute_script", h.url))
                .header("X-Bkapi-Authorization", h.auth_header())
                .header("Blueking-Language", lang)
                .json(&body)
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            (v["code"].as_i64().unwrap(), v["message"].as_str().unwrap().to_string())
        }
    };
    let mut no_target = submit_body(&[host], "echo");
    no_target.as_object_mut().unwrap().remove("target_server");
    let mut no_account = submit_body(&[host], "echo");
    no_account["account_alias"] = json!("ghost");
    let cases = [
        (no_target, 1241004, "Missing request parameter [target_server]", "请求参数[target_server]缺失"),
        (no_account, 1244003, "Account [ghost] does not exist", "账号[ghost]不存在"),
    ];
    for (body, code, en, zh) in cases {
        assert_eq!(ask("en", body.clone()).await, (code, en.to_string()));
        assert_eq!(ask("en-US", body.clone()).await, (code, en.to_string()));
        assert_eq!(ask("zh-cn", body.clone()).await, (code, zh.to_string()));
        assert_eq!(ask("", body).await, (code, zh.to_string()), "Chinese by default, as JOB");
    }
    // Shoal's own answers too: the lock of a running check.
    let open = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "check": "lang", "hosts": ["x"]});
    let en = client_for(&h.url, "en");
    let zh = client_for(&h.url, "zh-cn");
    let first: Value = en.shoal("checks", false, open.clone()).await.unwrap();
    let id = first["check_id"].as_str().unwrap().to_string();
    let e = en.shoal::<Value>("checks", false, open.clone()).await.unwrap_err();
    assert_eq!(e.to_string(), format!("Could not acquire the lock: check [{id}] is already running; retry later"));
    let e = zh.shoal::<Value>("checks", false, open).await.unwrap_err();
    assert_eq!(e.to_string(), format!("无法获取锁：检查[{id}]正在运行，请稍后重试"));
}

fn check_opts(script: CheckScript, hosts: Vec<HostRef>, deadline: Duration) -> CheckOptions {
    CheckOptions {
        script,
        hosts,
        mode: TargetMode::HostId,
        account: USER.into(),
        timeout_secs: 30,
        deadline,
        max_skew_secs: 30,
        lang: Lang::En,
    }
}

async fn check_reports_each_host_and_locks_its_key(mut h: Harness) {
    for ip in ["127.0.0.11", "127.0.0.12", "127.0.0.13"] {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(3).await;
    let (good, garbage, down) = (h.host_id_of("127.0.0.11").await, h.host_id_of("127.0.0.12").await, h.host_id_of("127.0.0.13").await);
    let c = client_for(&h.url, "en");
    let all = vec![HostRef::id(good), HostRef::id(garbage), HostRef::id(down)];

    // The built-in check passes on a healthy fleet.
    let builtin =
        CheckScript::Builtin { server_url: Some(h.url.clone()), expect_version: Some("0.1.0".into()), min_free_mb: 1, collector: None };
    let report = c.run_check(&scope(), &check_opts(builtin.clone(), all.clone(), Duration::from_secs(60)), |_| {}).await.unwrap();
    assert!(report.all_ok(), "{}", shoal_client::check::render(&report, Lang::En));
    let items: Vec<&str> = report.hosts[0].items.iter().map(|i| i.item.as_str()).collect();
    assert_eq!(items, ["bin_file", "version", "process", "state_dir", "server", "disk_space", "clock_skew"]);
    let text = shoal_client::check::render(&report, Lang::En);
    assert!(text.contains("[shoal_agent] [check the server is reachable] [ok]"), "{text}");
    assert!(shoal_client::check::render(&report, Lang::Zh).contains("[shoal_agent] [检查进程是否存在] [成功]"));

    // One agent stopped, one host printing garbage.
    h.stop_agent(2).await;
    let g = h.shared.gateway.clone();
    wait_for("agent 3 gone", Duration::from_secs(20), || {
        let g = g.clone();
        async move { !g.connected_set().contains(&down) }
    })
    .await;
    let custom = CheckScript::Custom {
        name: "app-check".into(),
        content: "case \"$0\" in\n  */agent-127.0.0.12/*) echo 'this is not json'; echo 'Traceback: boom' ;;\n  *) echo '{\"status\": false, \"data\": [{\"module\": \"app\", \"item\": \"ping\", \"status\": true, \"message\": \"pong\"}, {\"module\": \"app\", \"item\": \"disk\", \"status\": false, \"message\": \"full\"}]}' ;;\nesac\n".into(),
        language: 1,
        param: None,
    };
    let mut seen = None;
    let report = c
        .run_check(&scope(), &check_opts(custom.clone(), all.clone(), Duration::from_secs(60)), |id| seen = Some(id.to_string()))
        .await
        .unwrap();
    let by: BTreeMap<i64, &shoal_client::check::HostReport> = report.hosts.iter().map(|r| (r.host.bk_host_id, r)).collect();
    assert_eq!(by[&good].verdict, Verdict::Failed);
    assert_eq!(by[&good].items.iter().map(|i| (i.item.as_str(), i.status)).collect::<Vec<_>>(), [("ping", true), ("disk", false)]);
    assert_eq!(by[&garbage].verdict, Verdict::BadOutput);
    assert_eq!(by[&garbage].problems.len(), 2, "each non-JSON line is reported: {:?}", by[&garbage].problems);
    assert!(by[&garbage].problems[0].contains("this is not json"));
    assert_eq!(by[&down].verdict, Verdict::NoAnswer);
    assert!(by[&down].problems[0].contains("agent down"), "{:?}", by[&down].problems);
    assert_eq!((report.summary.ok, report.summary.failed, report.summary.bad_output, report.summary.no_answer), (0, 1, 1, 1));
    let text = shoal_client::check::render(&report, Lang::En);
    assert!(text.contains("[app] [disk] [failed] full"), "{text}");
    // The record keeps the report.
    let rec = c.check_record(seen.as_deref().unwrap()).await.unwrap();
    assert_eq!((rec.status.as_str(), rec.finished), ("finish", true));
    assert_eq!(rec.report.as_ref().map(|r| r.summary.clone()), Some(report.summary.clone()));
    assert!(rec.infos.iter().any(|l| l.contains("[app] [disk] [failed] full")), "{:?}", rec.infos);

    // A second run on the same key while one runs is refused; the record reads as it runs.
    let slow = CheckScript::Custom {
        name: "slow".into(),
        content: "sleep 2; echo '{\"status\": true, \"data\": []}'".into(),
        language: 1,
        param: None,
    };
    let hosts = vec![HostRef::id(good), HostRef::id(garbage)];
    let (tx, rx) = tokio::sync::oneshot::channel();
    let c2 = client_for(&h.url, "en");
    let (slow2, hosts2) = (slow.clone(), hosts.clone());
    let first = tokio::spawn(async move {
        let mut tx = Some(tx);
        c2.run_check(&scope(), &check_opts(slow2, hosts2, Duration::from_secs(60)), |id| {
            let _ = tx.take().map(|t| t.send(id.to_string()));
        })
        .await
    });
    let id = rx.await.unwrap();
    wait_for("record started", Duration::from_secs(20), || {
        let (c, id) = (&c, id.clone());
        async move { c.check_record(&id).await.is_ok_and(|r| r.status == "started" && r.job_instance_id > 0) }
    })
    .await;
    let reversed = vec![HostRef::id(garbage), HostRef::id(good)];
    let e = c.run_check(&scope(), &check_opts(slow.clone(), reversed, Duration::from_secs(60)), |_| {}).await.unwrap_err();
    assert_eq!(e.code(), 500006, "{e}");
    let done = first.await.unwrap().unwrap();
    assert!(done.all_ok(), "{}", shoal_client::check::render(&done, Lang::En));
    // Only the run holding a record may write to it.
    let e =
        c.shoal::<Value>(&format!("checks/{id}/update"), false, json!({"run_id": "not-the-holder", "status": "finish"})).await.unwrap_err();
    assert_eq!(e.job_code(), Some(1241010), "{e}");
    assert_eq!(c.check_record(&id).await.unwrap().status, "finish");
    // Finished: the key is free again.
    let again = c.run_check(&scope(), &check_opts(slow, hosts, Duration::from_secs(60)), |_| {}).await.unwrap();
    assert_eq!(again.check_id, id);
}
