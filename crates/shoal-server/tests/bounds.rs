//! Bounds on what callers and peers can make the server do, on SQLite and PostgreSQL:
//! callbacks only to allowed addresses, never following a redirect, sent concurrently so a
//! dead endpoint delays nobody else's; idle connections closed; connections capped per source;
//! an agent that ignores the output cap gets no more than the cap stored.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use shoal_proto::agent::{AgentMsg, ExitReason, LogChunk, ServerMsg, TaskExit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_stores!(
    callbacks_are_fenced_and_never_redirected,
    dead_callback_endpoints_delay_nobody,
    output_beyond_the_cap_is_dropped_by_the_server
);

async fn callbacks_are_fenced_and_never_redirected(mut h: Harness) {
    h.add_agent("127.0.0.91", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // A receiver that redirects, and the place it redirects to.
    let hits = Arc::new(AtomicUsize::new(0));
    let target_hits = Arc::new(AtomicUsize::new(0));
    let target = {
        let target_hits = target_hits.clone();
        let app = axum::Router::new().fallback(move || {
            let t = target_hits.clone();
            async move {
                t.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/stolen")
    };
    let redirector = {
        let hits = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let (hits, target) = (hits.clone(), target.clone());
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::TEMPORARY_REDIRECT, [("location", target)])
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/cb")
    };
    let job = h.execute("echo cb", &hosts, json!({"callback_url": redirector})).await;
    h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    let h2 = hits.clone();
    wait_for("both callback attempts", Duration::from_secs(20), || {
        let h2 = h2.clone();
        async move { h2.load(Ordering::SeqCst) >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target_hits.load(Ordering::SeqCst), 0, "a redirect was followed");

    // Without an allowed base URL naming it, loopback and metadata addresses are refused at submit.
    h.shared.engine.callback_policy.check("http://127.0.0.1:9/cb").unwrap();
    let open = shoal_server::engine::callback::CallbackPolicy::new(&[]).unwrap();
    for bad in ["http://127.0.0.1:9/cb", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://10.0.0.1/"] {
        assert!(open.check(bad).is_err(), "{bad}");
    }
    let fenced =
        Harness::start_with(Backend::Sqlite, |c| c.callback_allowed_base_urls = vec!["https://hooks.example.com/".into()]).await.unwrap();
    for bad in ["http://127.0.0.1:9/cb", "http://169.254.169.254/latest/meta-data/", "https://elsewhere.example.com/"] {
        let v = fenced
            .post(
                "fast_execute_script",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo"),
            "script_language": 1, "account_alias": USER, "target_server": {"host_id_list": [1]}, "callback_url": bad}),
            )
            .await
            .1;
        assert_eq!(v["code"], 1240003, "{bad}: {v}");
        assert!(v["message"].as_str().unwrap().contains("callback_url"), "{v}");
    }
}

async fn dead_callback_endpoints_delay_nobody(mut h: Harness) {
    h.add_agent("127.0.0.92", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // Three endpoints that take 30 s to answer, then one that answers at once.
    let answered = Arc::new(AtomicUsize::new(0));
    let hung = {
        let answered = answered.clone();
        let app = axum::Router::new().fallback(move || {
            let answered = answered.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                answered.fetch_add(1, Ordering::SeqCst);
                "late"
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/cb")
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(4);
    let good = {
        let app = axum::Router::new().fallback(move || {
            let tx = tx.clone();
            async move {
                let _ = tx.send(()).await;
                "ok"
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}/cb")
    };
    for _ in 0..3 {
        let job = h.execute("true", &hosts, json!({"callback_url": hung})).await;
        h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    }
    let job = h.execute("true", &hosts, json!({"callback_url": good})).await;
    tokio::time::timeout(Duration::from_secs(90), rx.recv()).await.expect("the good callback arrived").unwrap();
    // Sent one after another, the good callback would come only after the dead ones had
    // timed out, by which time their slow answers would have been given.
    assert_eq!(answered.load(Ordering::SeqCst), 0, "the good callback waited behind the dead endpoints");
    let _ = job;
}

#[tokio::test]
async fn idle_connections_are_closed_and_capped_per_source() {
    let Some(h) = Harness::start_with(Backend::Sqlite, |c| {
        c.header_read_timeout_secs = 1;
        c.max_connections_per_source = 8;
    })
    .await
    else {
        return;
    };
    let addr = h.addr;
    // Silent connections are closed once the header read timeout passes.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await.expect("closed by the server");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // Eight held connections from one source: the ninth is dropped at once, an API call fails;
    // once they are gone the API answers again.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ninth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = ninth.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let n = tokio::time::timeout(Duration::from_secs(5), ninth.read(&mut buf)).await.expect("dropped at once");
    assert!(matches!(n, Ok(0) | Err(_)), "a ninth connection was served: {n:?}");
    drop(held);
    wait_for("the API answers again", Duration::from_secs(10), || {
        let url = format!("{}/healthz", h.url);
        async move { reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_log_read_holds_at_most_its_budget() {
    let Some(mut h) = Harness::start_with(Backend::Sqlite, |c| c.log_read_budget_bytes = 3000).await else { return };
    for ip in ["127.0.0.93", "127.0.0.94", "127.0.0.95"] {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(3).await;
    let hosts = h.host_ids().await;
    let job = h.execute("head -c 2000 /dev/zero | tr '\\0' x", &hosts, json!({})).await;
    let (job, step) = (job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap());
    h.wait_finished(job, Duration::from_secs(20)).await;
    let logs = h.logs(job, step, &hosts).await;
    let full = hosts.iter().filter(|id| logs[id].len() == 2000).count();
    let omitted = hosts.iter().filter(|id| logs[id].contains("budget")).count();
    assert_eq!((full, omitted), (2, 1), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_sessions_waiting_for_hello_are_capped() {
    let Some(h) = Harness::start_with(Backend::Sqlite, |c| c.max_pending_agent_sessions = 2).await else { return };
    let ws = format!("{}/api/shoal/v1/agent/ws", h.url.replacen("http", "ws", 1));
    // Two upgrades that never say hello hold the two places.
    let a = tokio_tungstenite::connect_async(ws.as_str()).await.expect("first upgrade");
    let b = tokio_tungstenite::connect_async(ws.as_str()).await.expect("second upgrade");
    match tokio_tungstenite::connect_async(ws.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 503),
        other => panic!("a third session waiting for hello was let in: {:?}", other.map(|_| ())),
    }
    drop((a, b));
}

/// Shutdown completes within its grace even while a request is still waiting (here a client
/// trickling its body; in the field, a store that does not answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_within_its_grace() {
    let Some(mut h) = Harness::start_with(Backend::Sqlite, |c| c.shutdown_grace_secs = 1).await else { return };
    let mut slow = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let head = format!(
        "POST /api/v3/get_job_instance_status HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-bkapi-authorization: {}\r\ncontent-length: 1000\r\n\r\n{{\"bk_scope_type\":",
        h.auth_header()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    h.stop_server().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown waited {took:?} for a request in flight (grace 1 s)");
    drop(slow);
}

async fn output_beyond_the_cap_is_dropped_by_the_server(mut h: Harness) {
    const CAP: u64 = 4096;
    const CHUNKS: u64 = 300;
    const CHUNK: usize = 16 * 1024;
    h.config.output_cap_bytes = CAP;
    h.restart_server().await;
    // An agent that is told the cap and ignores it.
    let (mut rogue, m) = raw_agent::greet(&h, raw_agent::hello("greedy-1", "127.0.0.96", Some(&"g".repeat(64)))).await;
    let host = match m {
        Some(ServerMsg::Welcome(w)) => w.bk_host_id,
        other => panic!("the agent should enrol: {other:?}"),
    };
    let job = h.execute("echo a lot", &[host], json!({})).await;
    let (job, step) = (job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap());
    let run = loop {
        match raw_agent::next_msg(&mut rogue).await {
            Some(ServerMsg::Run(r)) => break r,
            Some(_) => continue,
            None => panic!("no task sent to the agent"),
        }
    };
    assert_eq!(run.output_cap, CAP);
    for seq in 0..CHUNKS {
        let data = vec![b'a' + (seq % 26) as u8; CHUNK];
        rogue.send(LogChunk { key: run.key, seq, data }.to_frame().into()).await.unwrap();
    }
    let now = shoal_core::time::now_ms();
    let exit = TaskExit {
        key: run.key,
        reason: ExitReason::Exited,
        exit_code: Some(0),
        start_ms: now,
        end_ms: now,
        chunks: CHUNKS,
        dropped_bytes: 0,
        vars: Default::default(),
    };
    raw_agent::send(&mut rogue, &AgentMsg::Exit(exit)).await;
    // Everything is acknowledged, stored or not, so the agent's outbox drains.
    let (mut upto, mut exited) = (None, false);
    while upto != Some(CHUNKS - 1) || !exited {
        match raw_agent::next_msg(&mut rogue).await {
            Some(ServerMsg::Ack(a)) => {
                for i in a.items.into_iter().filter(|i| i.key == run.key) {
                    upto = upto.max(i.upto_seq);
                    exited |= i.exit;
                }
            }
            Some(_) => continue,
            None => panic!("not everything was acknowledged: up to {upto:?}, exit {exited}"),
        }
    }
    h.wait_finished(job, Duration::from_secs(20)).await;
    let log = h.logs(job, step, &[host]).await.remove(&host).unwrap();
    let note = shoal_proto::agent::server_drop_note(CAP);
    assert!(log.ends_with(&note), "no truncation note: ...{:?}", &log[log.len().saturating_sub(200)..]);
    let kept = log.len() - note.len();
    assert!(kept as u64 <= CAP + shoal_proto::agent::OUTPUT_MARKER_ROOM, "{kept} bytes stored");
    assert!(log.starts_with(&"a".repeat(CAP as usize)), "the head is what is kept");
    let task = h.shared.store.host_tasks(step, 0).await.unwrap().remove(0);
    assert_eq!(task.dropped_bytes as u64, CHUNKS * CHUNK as u64 - kept as u64, "dropped bytes are counted");
}
