//! One agent session over WebSocket: hello → welcome, resume its tasks, then relay frames
//! both ways until either side goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use shoal_proto::agent::{AgentMsg, Hello, LogChunk, Reject, ServerMsg, Welcome, PROTOCOL_VERSION};
use shoal_store::TaskChange;
use tokio::sync::mpsc;

use super::{AckTo, IngestItem};
use crate::Shared;

/// Largest frame an agent may send: a log chunk is at most 64 KiB (binary), a hello with every
/// limit of [`super::enrol`] reached under 1 MiB.
const MAX_FRAME: usize = 1024 * 1024;
/// WebSocket read buffer per agent session (a larger frame still arrives whole).
const READ_BUFFER: usize = 4 * 1024;
/// How long an agent must take to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Longest a hello waits for its turn; the agent is then told to come back later (agents
/// give up on a welcome after 30 s).
const HELLO_QUEUE_WAIT: Duration = Duration::from_secs(20);

pub async fn upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    // Sessions that have not said hello yet are unauthenticated: only so many at once, so
    // a flood of upgrades cannot hold the server's sockets for the hello timeout each.
    let Ok(unhelloed) = shared.gateway.unhelloed.clone().try_acquire_owned() else {
        tracing::warn!("too many agent sessions waiting to say hello; upgrade refused");
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "too many agent sessions waiting to say hello; retry later\n")
            .into_response();
    };
    // The read buffer is zero-filled up to its size before every read and stays resident:
    // the 128 KiB default cost a memset per frame and 128 KiB per idle agent.
    ws.max_message_size(MAX_FRAME).read_buffer_size(READ_BUFFER).on_upgrade(move |socket| session(shared, socket, unhelloed))
}

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

/// The first frame, which must be a hello. A refusal says whether trying again can help: a
/// hello that is late (a busy agent host) may come in time next time, a wrong one never.
async fn read_hello(socket: &mut WebSocket) -> Result<Hello, Reject> {
    let late = || Reject { message: format!("no hello within {} s", HELLO_WITHIN.as_secs()), retry: true };
    let wrong = || Reject { message: "expected hello".into(), retry: false };
    match tokio::time::timeout(HELLO_WITHIN, socket.next()).await {
        Err(_) => Err(late()),
        Ok(None) | Ok(Some(Err(_))) => Err(late()),
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<AgentMsg>(&t) {
            Ok(AgentMsg::Hello(h)) => Ok(h),
            _ => Err(wrong()),
        },
        Ok(Some(Ok(_))) => Err(wrong()),
    }
}

async fn session(shared: Arc<Shared>, mut socket: WebSocket, unhelloed: tokio::sync::OwnedSemaphorePermit) {
    let hello = match read_hello(&mut socket).await {
        Ok(h) => h,
        Err(why) => {
            let _ = send(&mut socket, &ServerMsg::Reject(why)).await;
            return;
        }
    };
    drop(unhelloed);
    // Held until the session is registered and resumed.
    let Ok(Ok(permit)) = tokio::time::timeout(HELLO_QUEUE_WAIT, shared.gateway.hellos.acquire()).await else {
        let _ = send(&mut socket, &ServerMsg::Reject(Reject { message: "server busy; try again".into(), retry: true })).await;
        return;
    };
    if hello.protocol != PROTOCOL_VERSION {
        let message = format!("protocol {} not supported; server speaks {PROTOCOL_VERSION}", hello.protocol);
        let _ = send(&mut socket, &ServerMsg::Reject(Reject { message, retry: false })).await;
        return;
    }
    // Limits, credential or enrolment token, and the facts the host is bound to.
    let host_id = match super::enrol::admit(&shared, &hello).await {
        Ok(id) => id,
        Err(why) => {
            let _ = send(&mut socket, &ServerMsg::Reject(why)).await;
            return;
        }
    };
    let heartbeat = shared.config.heartbeat_secs;
    if !send(&mut socket, &ServerMsg::Welcome(Welcome { bk_host_id: host_id, heartbeat_secs: heartbeat })).await {
        return;
    }
    let gateway = shared.gateway.clone();
    let (tx, mut rx) = mpsc::channel::<ServerMsg>(1024);
    let conn_id = gateway.register(host_id, tx);
    tracing::info!(host_id, ip = %hello.facts.ip, agent_id = %hello.agent_id, "agent connected");

    // Resume: what this host should be running that the agent does not already know about.
    shared.engine.resume_host(host_id, &hello.known_tasks).await;
    drop(permit);

    let ack = Some(AckTo { host_id, conn_id });
    let idle = Duration::from_secs(heartbeat * 3 + 5);
    let mut stop = gateway.stop_signal();
    // Agents drop a link that stays silent for three heartbeats: ping them as often.
    let mut ping = tokio::time::interval(Duration::from_secs(heartbeat));
    ping.tick().await;
    // An agent that sends nothing — no frame, no pong — for `idle` is gone even if its
    // socket is open (a stopped or hung process, a host lost without FIN or RST). The
    // deadline moves only when something arrives, never because we sent a ping.
    let silence = tokio::time::sleep(idle);
    tokio::pin!(silence);
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
            _ = &mut silence => {
                tracing::warn!(host_id, silent_secs = idle.as_secs(), "agent silent too long (no frame, no pong); closing");
                break;
            }
            incoming = socket.next() => {
                let msg = match incoming {
                    None | Some(Err(_)) => break,
                    Some(Ok(m)) => m,
                };
                silence.as_mut().reset(tokio::time::Instant::now() + idle);
                let mut room = None;
                let parsed: AgentMsg = match msg {
                    Message::Text(t) => match serde_json::from_str(&t) {
                        Ok(m) => m,
                        Err(e) => { tracing::warn!(host_id, error = %e, "bad frame from agent"); continue; }
                    },
                    Message::Binary(b) => {
                        // Room first, then the copy: a session waiting for room (a thousand of
                        // them while a fleet sends output) holds the frame it read, not also a
                        // copy of its output.
                        room = gateway.log_room(LogChunk::data_len_of_frame(&b)).await;
                        match LogChunk::from_frame(&b) {
                            Some(c) => AgentMsg::Log(c),
                            None => { tracing::warn!(host_id, "bad binary frame from agent"); continue; }
                        }
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                let change = match parsed {
                    AgentMsg::Heartbeat | AgentMsg::Hello(_) => continue,
                    AgentMsg::Staged(r) => {
                        shared.engine.on_staged(host_id, r).await;
                        continue;
                    }
                    AgentMsg::Log(c) if c.key.host_id == host_id => TaskChange::Log { key: c.key, seq: c.seq, data: shared.engine.redact(c.key.step_instance_id, c.data) },
                    AgentMsg::Exit(mut x) if x.key.host_id == host_id => {
                        let (status, error_code) = shoal_core::outcome::host_result(x.reason, x.exit_code);
                        let vars = shared.engine.script_vars(host_id, &mut x);
                        TaskChange::Finished {
                            key: x.key,
                            status,
                            exit_code: x.exit_code.unwrap_or(0),
                            error_code,
                            start_time: Some(x.start_ms),
                            end_time: x.end_ms,
                            dropped_bytes: x.dropped_bytes as i64,
                            vars,
                        }
                    }
                    AgentMsg::Log(_) | AgentMsg::Exit(_) => {
                        tracing::warn!(host_id, "agent reported a task of another host; ignored");
                        continue;
                    }
                };
                let item = IngestItem { change, ack };
                match room {
                    Some(room) => { gateway.submit_with_room(item, Some(room)).await; }
                    None => gateway.submit(vec![item]).await,
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                let last = matches!(out, ServerMsg::Reject(_));
                if !send(&mut socket, &out).await || last { break; }
            }
            _ = stop.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
    if gateway.unregister(host_id, conn_id) {
        tracing::info!(host_id, "agent disconnected");
        // A server that stops leaves its agents marked alive: the next start awaits them.
        if !*gateway.stop_signal().borrow() {
            let _ = shared.store.set_host_alive(host_id, false, shoal_core::time::now_ms()).await;
            gateway.watch_lost(host_id);
        }
    }
}
