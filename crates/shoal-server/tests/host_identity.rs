//! Host identity through the real gateway, on SQLite and PostgreSQL: an enrolled agent cannot
//! claim another host's address, business or module (the victim keeps its session and its
//! tasks); racing first enrolments of one address leave one winner; enrolment tokens are held
//! to their business, their single use and their expiry; an agent enrolled pending gets no
//! task until accepted; a hello over the limits is refused; a removed host is in no listing
//! and no target, and its agent is refused (a connected one only with `force`).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shoal_agent::session::connect::{dial, Target, Ws};
use shoal_agent::AgentConfig;
use shoal_proto::agent::{AgentMsg, Hello, HostFacts, ServerMsg, PROTOCOL_VERSION};
use shoal_store::hosts::NewAgentToken;
use shoal_store::trust::AuditQuery;
use tokio_tungstenite::tungstenite::Message;

on_both_stores!(
    an_enrolled_agent_cannot_claim_another_hosts_facts,
    racing_first_enrolments_of_one_address_one_wins,
    tokens_hold_to_business_use_and_expiry,
    a_pending_agent_gets_no_task_until_accepted,
    a_removed_host_is_no_target_and_its_agent_is_refused,
);

fn hello(agent_id: &str, ip: &str, biz: i64, token: &str, credential: &str) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        token: token.into(),
        agent_id: agent_id.into(),
        agent_version: "test".into(),
        facts: HostFacts { bk_biz_id: biz, bk_cloud_id: 0, ip: ip.into(), hostname: "h".into(), ..Default::default() },
        known_tasks: vec![],
        credential: Some(credential.into()),
    }
}

async fn greet(h: &Harness, hello: Hello) -> (Ws, Option<ServerMsg>) {
    let target = Target::parse(&h.url, true).unwrap();
    let mut ws = dial(&target, None).await.unwrap();
    ws.send(Message::Text(serde_json::to_string(&AgentMsg::Hello(hello)).unwrap().into())).await.unwrap();
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => break serde_json::from_str(&t).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => break None,
        }
    };
    (ws, first)
}

/// The refusal's message, or a panic naming what came instead.
fn refused(m: &Option<ServerMsg>) -> String {
    match m {
        Some(ServerMsg::Reject(r)) => r.message.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn welcomed(m: &Option<ServerMsg>) -> i64 {
    match m {
        Some(ServerMsg::Welcome(w)) => w.bk_host_id,
        other => panic!("expected a welcome, got {other:?}"),
    }
}

async fn shoal_api(h: &Harness, path: &str, body: Value) -> Value {
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/{path}", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .json(&body)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

async fn audited(h: &Harness, action: &str) -> usize {
    h.shared.store.audit_events(&AuditQuery { action: Some(action.into()), limit: 100, ..Default::default() }).await.unwrap().len()
}

fn read(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

async fn an_enrolled_agent_cannot_claim_another_hosts_facts(mut h: Harness) {
    h.add_agent("127.0.0.81", None, Some(5), &[]).await;
    let rogue = h.add_agent("127.0.0.82", None, Some(6), &[]).await;
    h.wait_connected(2).await;
    let (victim, rogue_host) = (h.host_id_of("127.0.0.81").await, h.host_id_of("127.0.0.82").await);
    // The rogue is a genuine enrolled agent: it has its own id and credential.
    let id = read(h.agents[rogue].state_dir.join("agent_id"));
    let cred = read(h.agents[rogue].state_dir.join("agent_credential"));

    let mut claim = hello(&id, "127.0.0.81", 1, "", &cred);
    claim.facts.module_id = Some(6);
    let (_, m) = greet(&h, claim).await;
    assert_eq!(
        refused(&m),
        format!("hello claims ip 0:127.0.0.81 but this agent is enrolled as host {rogue_host} at 0:127.0.0.82; an admin must run `shoal host move --host-id {rogue_host}`")
    );
    let mut claim = hello(&id, "127.0.0.82", 2, TOKEN, &cred);
    claim.facts.module_id = Some(6);
    let (_, m) = greet(&h, claim).await;
    assert!(refused(&m).contains("hello claims business 2 (enrolled in business 1)"), "{m:?}");
    let mut claim = hello(&id, "127.0.0.82", 1, TOKEN, &cred);
    claim.facts.module_id = Some(5);
    let (_, m) = greet(&h, claim).await;
    assert!(refused(&m).contains("hello claims module 5 (enrolled in module 6)"), "{m:?}");
    assert_eq!(audited(&h, "agent_hello_refused").await, 3, "every refused claim is audited");

    // Nothing moved: the registry still says what enrolment bound.
    let hosts = h.shared.store.hosts_by_ids(&[victim, rogue_host]).await.unwrap();
    let mut facts: Vec<(i64, &str, i64, Option<i64>)> =
        hosts.iter().map(|x| (x.bk_host_id, x.ip.as_str(), x.bk_biz_id, x.module_id)).collect();
    facts.sort_unstable();
    let mut bound = vec![(victim, "127.0.0.81", 1, Some(5)), (rogue_host, "127.0.0.82", 1, Some(6))];
    bound.sort_unstable();
    assert_eq!(facts, bound);
    // The victim keeps its session and runs its own task.
    assert!(h.shared.gateway.is_connected(victim));
    let data = h.execute("echo from-the-victim", &[victim], json!({})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(st["finished"], true, "{st}");
    assert_eq!(hosts_of(&st)[0]["status"], 9, "{st}");
    assert!(h.logs(job, step, &[victim]).await[&victim].contains("from-the-victim"));

    // A hello over the limits is refused before anything else.
    let mut big = hello("fresh-agent", "127.0.0.83", 1, TOKEN, &"c".repeat(64));
    big.facts.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    let (_, m) = greet(&h, big).await;
    assert!(refused(&m).contains("65 labels; at most 64"), "{m:?}");
    let mut big = hello("fresh-agent", "127.0.0.83", 1, TOKEN, &"c".repeat(64));
    big.facts.labels.insert("k".into(), "v".repeat(256));
    let (_, m) = greet(&h, big).await;
    assert!(refused(&m).contains("at most 255 bytes"), "{m:?}");
}

async fn racing_first_enrolments_of_one_address_one_wins(h: Harness) {
    let mut racers = Vec::new();
    for i in 0..8 {
        let hello = hello(&format!("racer-{i}"), "127.0.0.90", 1, TOKEN, &format!("{i}").repeat(40));
        racers.push(greet(&h, hello));
    }
    let answers = futures_util::future::join_all(racers).await;
    let mut won = 0;
    for (_, m) in &answers {
        match m {
            Some(ServerMsg::Welcome(_)) => won += 1,
            other => assert!(refused(other).contains("this address belongs to another enrolled agent"), "{other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one of the racers enrols: {answers:?}", answers = answers.iter().map(|a| &a.1).collect::<Vec<_>>());
    let at: Vec<_> = h.shared.store.list_hosts(None).await.unwrap().into_iter().filter(|x| x.ip == "127.0.0.90").collect();
    assert_eq!(at.len(), 1);
    assert_eq!(audited(&h, "enroll_agent").await, 1);
}

async fn tokens_hold_to_business_use_and_expiry(h: Harness) {
    let v = shoal_api(&h, "agent_tokens", json!({"bk_biz_id": 2, "single_use": true})).await;
    assert_eq!(v["code"], 0, "{v}");
    let once = v["data"]["token"].as_str().unwrap().to_string();
    let (_, m) = greet(&h, hello("b3", "127.0.1.1", 3, &once, &"a".repeat(40))).await;
    assert_eq!(refused(&m), "enrolment token is for business 2; hello claims business 3");
    let (_, m) = greet(&h, hello("b2", "127.0.1.2", 2, &once, &"b".repeat(40))).await;
    welcomed(&m);
    let (_, m) = greet(&h, hello("b2-again", "127.0.1.3", 2, &once, &"c".repeat(40))).await;
    assert_eq!(refused(&m), "single-use enrolment token already used");
    assert_eq!(audited(&h, "enroll_agent_refused").await, 1, "the business mismatch is audited");

    // Expired a minute ago.
    let expired = "shoal-at-expired-for-this-test";
    let t = NewAgentToken {
        token_hash: shoal_server::gateway::enrol::token_hash(expired),
        expires_at: Some(shoal_core::time::now_ms() - 60_000),
        created_at: 1,
        ..Default::default()
    };
    h.shared
        .store
        .create_agent_token(&t, &shoal_store::AuditEvent { action: "create_agent_token".into(), detail: "{}".into(), ..Default::default() })
        .await
        .unwrap();
    let (_, m) = greet(&h, hello("late", "127.0.1.4", 1, expired, &"d".repeat(40))).await;
    assert_eq!(refused(&m), "enrolment token expired");

    // A revoked token enrols nobody; one never issued neither.
    let v = shoal_api(&h, "agent_tokens", json!({})).await;
    let (id, multi) = (v["data"]["id"].as_i64().unwrap(), v["data"]["token"].as_str().unwrap().to_string());
    let (_, m) = greet(&h, hello("m1", "127.0.1.5", 7, &multi, &"e".repeat(40))).await;
    welcomed(&m);
    assert_eq!(shoal_api(&h, "agent_tokens/revoke", json!({"id": id})).await["code"], 0);
    let (_, m) = greet(&h, hello("m2", "127.0.1.6", 7, &multi, &"f".repeat(40))).await;
    assert_eq!(refused(&m), "enrolment token revoked");
    let (_, m) = greet(&h, hello("m3", "127.0.1.7", 7, "shoal-at-never-issued", &"g".repeat(40))).await;
    assert_eq!(refused(&m), "invalid enrolment token");
    // The token list shows uses, never the token.
    let listed = shoal_api(&h, "agent_tokens", json!({})).await;
    let r =
        h.http.get(format!("{}/api/shoal/v1/agent_tokens", h.url)).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    let list: Value = r.json().await.unwrap();
    assert!(!list.to_string().contains(&once) && !list.to_string().contains(&multi), "{list}");
    assert_eq!(list["data"]["data"].as_array().unwrap().len(), 4, "{list} {listed}");
}

async fn a_pending_agent_gets_no_task_until_accepted(h: Harness) {
    let v = shoal_api(&h, "agent_tokens", json!({"bk_biz_id": 1, "pending": true})).await;
    let token = v["data"]["token"].as_str().unwrap_or_else(|| panic!("{v}")).to_string();
    let facts = HostFacts { bk_biz_id: 1, bk_cloud_id: 0, ip: "127.0.0.95".into(), hostname: "held".into(), ..Default::default() };
    let mut cfg = AgentConfig::new(vec![h.url.clone()], token, h.dir.path().join("held-agent"), facts);
    cfg.reconnect_max = Duration::from_millis(300);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(shoal_agent::run(cfg, async move {
        let mut rx = rx;
        let _ = rx.wait_for(|v| *v).await;
    }));

    let store = h.shared.store.clone();
    wait_for("the agent to enrol pending", Duration::from_secs(20), || {
        let store = store.clone();
        async move { !store.pending_hosts().await.unwrap().is_empty() }
    })
    .await;
    let pending = shoal_api(&h, "agents/pending", json!({})).await;
    let host = pending["data"]["data"][0]["bk_host_id"].as_i64().unwrap_or_else(|| panic!("{pending}"));
    assert_eq!(pending["data"]["data"][0]["ip"], "127.0.0.95");
    // Not a target: by id, by address, nor in the host listing; and not connected.
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo hi"), "script_language": 1,
                      "account_alias": USER, "target_server": {"host_id_list": [host]}});
    let (_, v) = h.post("fast_execute_script", body).await;
    assert_ne!(v["code"], 0, "a pending host takes no job: {v}");
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo hi"), "script_language": 1,
                      "account_alias": USER, "target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "127.0.0.95"}]}});
    let (_, v) = h.post("fast_execute_script", body).await;
    assert_ne!(v["code"], 0, "{v}");
    assert!(!h.shared.gateway.is_connected(host));
    assert!(h.host_ids().await.is_empty());

    let v = shoal_api(&h, "agents/accept", json!({"bk_host_id": host})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(audited(&h, "accept_agent").await, 1);
    h.wait_connected(1).await;
    let data = h.execute("echo accepted-and-running", &[host], json!({})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(hosts_of(&st)[0]["status"], 9, "{st}");
    assert!(h.logs(job, step, &[host]).await[&host].contains("accepted-and-running"));
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
}

async fn a_removed_host_is_no_target_and_its_agent_is_refused(mut h: Harness) {
    let live = h.add_agent("127.0.0.84", None, None, &[]).await;
    let gone = h.add_agent("127.0.0.85", None, None, &[]).await;
    h.wait_connected(2).await;
    let (live_id, gone_id) = (h.host_id_of("127.0.0.84").await, h.host_id_of("127.0.0.85").await);
    h.stop_agent(gone).await;
    wait_for("the agent gone", Duration::from_secs(20), || {
        let g = h.shared.gateway.clone();
        async move { !g.is_connected(gone_id) }
    })
    .await;
    let r = shoal_api(&h, "hosts/remove", json!({"bk_host_id": gone_id})).await;
    assert_eq!(r["result"], true, "{r}");
    assert_eq!(r["data"]["was_connected"], false, "{r}");
    let r = shoal_api(&h, "hosts/remove", json!({"bk_host_id": gone_id})).await;
    assert_eq!(r["result"], false, "removed once: {r}");
    // A connected host: refused without force.
    let r = shoal_api(&h, "hosts/remove", json!({"bk_host_id": live_id})).await;
    assert_eq!(r["result"], false, "{r}");
    assert!(r["message"].as_str().unwrap().contains("is connected"), "{r}");
    assert!(h.shared.gateway.is_connected(live_id));
    let r = shoal_api(&h, "hosts/remove", json!({"bk_host_id": live_id, "force": true})).await;
    assert_eq!(r["data"]["was_connected"], true, "{r}");
    wait_for("the agent refused", Duration::from_secs(20), || {
        let done = h.agent_finished(live);
        async move { done }
    })
    .await;
    assert!(h.shared.store.list_hosts(None).await.unwrap().is_empty());
    assert_eq!(audited(&h, "remove_host").await, 2);
    // A removed host is no target.
    let (status, env) = h
        .post(
            "fast_execute_script",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("true"), "script_language": 1,
                   "account_alias": USER, "target_server": {"host_id_list": [gone_id]}}),
        )
        .await;
    assert_eq!((status, env["code"].as_i64()), (200, Some(1243053)), "{env}");
}
