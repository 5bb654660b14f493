//! Agent identity, on SQLite and PostgreSQL: an agent id is bound to the credential it enrolled
//! with, so the enrolment token alone cannot take over an enrolled host, an address cannot be
//! claimed by a second agent, and an enrolled agent's frames about another host's tasks are
//! ignored (it never receives them either).

#[macro_use]
mod common;

use std::time::Duration;

use common::raw_agent::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shoal_agent::session::connect::{dial, Target};
use shoal_proto::agent::{AgentMsg, ExitReason, LogChunk, ServerMsg, TaskExit, TaskKey};
use tokio_tungstenite::tungstenite::Message;

on_both_stores!(forged_agent_identity_is_refused);

fn rejected(m: &Option<ServerMsg>) -> String {
    match m {
        Some(ServerMsg::Reject(r)) => r.message.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn forged_agent_identity_is_refused(mut h: Harness) {
    let a = h.add_agent("127.0.0.91", None, None, &[]).await;
    h.wait_connected(1).await;
    let host_a = h.host_id_of("127.0.0.91").await;
    let agent_id = std::fs::read_to_string(h.agents[a].state_dir.join("agent_id")).unwrap().trim().to_string();

    // The token alone does not open an enrolled agent id, nor does a wrong credential.
    let (_, m) = greet(&h, hello(&agent_id, "127.0.0.91", None)).await;
    assert!(rejected(&m).contains("credential"), "{m:?}");
    let (_, m) = greet(&h, hello(&agent_id, "127.0.0.91", Some(&"x".repeat(64)))).await;
    assert!(rejected(&m).contains("credential"), "{m:?}");
    // A new agent id cannot claim an enrolled agent's address.
    let (_, m) = greet(&h, hello("rogue-1", "127.0.0.91", Some(&"r".repeat(64)))).await;
    assert!(rejected(&m).contains("another enrolled agent"), "{m:?}");
    // A first frame that is not a hello is refused for good.
    let mut raw = dial(&Target::parse(&h.url, true).unwrap(), None).await.unwrap();
    raw.send(Message::Binary(LogChunk { key: TaskKey::new(1, 0, host_a), seq: 0, data: vec![] }.to_frame().into())).await.unwrap();
    match next_msg(&mut raw).await {
        Some(ServerMsg::Reject(r)) => assert!(r.message.contains("expected hello") && !r.retry, "{r:?}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Nor enrol without the token.
    let mut bad = hello("rogue-2", "127.0.0.92", Some(&"r".repeat(64)));
    bad.token = "wrong".into();
    let (_, m) = greet(&h, bad).await;
    assert!(rejected(&m).contains("token"), "{m:?}");
    assert!(h.shared.gateway.is_connected(host_a), "the real agent kept its session");

    // A rogue that enrols under its own id and address gets its own host...
    let (mut rogue, m) = greet(&h, hello("rogue-3", "127.0.0.93", Some(&"r".repeat(64)))).await;
    let rogue_host = match m {
        Some(ServerMsg::Welcome(w)) => w.bk_host_id,
        other => panic!("rogue-3 should enrol: {other:?}"),
    };
    assert_ne!(rogue_host, host_a);
    let q = shoal_store::trust::AuditQuery { action: Some("enroll_agent".into()), limit: 10, ..Default::default() };
    let enrolled: Vec<String> = h.shared.store.audit_events(&q).await.unwrap().into_iter().map(|r| r.event.resource_id).collect();
    assert_eq!(enrolled, vec![agent_id.clone(), "rogue-3".to_string()], "each enrolment is audited once");

    // ...and its reports about host A's task are ignored.
    let data = h.execute("#!/bin/bash\nsleep 1; echo genuine-output", &[host_a], json!({})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    let key = TaskKey::new(step, 0, host_a);
    send(&mut rogue, &AgentMsg::Log(LogChunk { key, seq: 0, data: b"forged-output".to_vec() })).await;
    // In the binary form agents send too.
    let frame = LogChunk { key, seq: 1, data: b"forged-binary".to_vec() }.to_frame();
    rogue.send(Message::Binary(frame.into())).await.unwrap();
    let now = shoal_core::time::now_ms();
    let exit = TaskExit {
        key,
        reason: ExitReason::Exited,
        exit_code: Some(7),
        start_ms: now,
        end_ms: now,
        chunks: 1,
        dropped_bytes: 0,
        vars: Default::default(),
    };
    send(&mut rogue, &AgentMsg::Exit(exit)).await;
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    let host = &hosts_of(&st)[0];
    assert_eq!((host["status"].as_i64(), host["exit_code"].as_i64()), (Some(9), Some(0)), "{st}");
    let logs = h.logs(job, step, &[host_a]).await;
    assert!(logs[&host_a].contains("genuine-output") && !logs[&host_a].contains("forged"), "{logs:?}");

    // The rogue was never sent host A's task.
    send(&mut rogue, &AgentMsg::Heartbeat).await;
    while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(200), rogue.next()).await {
        let m: ServerMsg = serde_json::from_str(&t).unwrap();
        assert!(!matches!(m, ServerMsg::Run(ref r) if r.key.host_id == host_a), "rogue received {m:?}");
    }
}
