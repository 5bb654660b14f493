//! Several replicas on one PostgreSQL: each replica records the agent sessions it holds,
//! messages for an agent held by another replica go through the database to it, and the
//! lost-agent rule works across replicas. Nothing here runs on SQLite (one server), where
//! [`Gateway::send`] only reaches local sessions as before.
//!
//! - **Sessions**: opening and closing a session is written to `agent_sessions` by one task
//!   per replica, in order ([`Replica::events`]).
//! - **Liveness**: every replica refreshes its row in `replicas` each [`HEARTBEAT`]; one
//!   silent for [`REPLICA_TTL`] is dead, and so are the sessions it held. Every
//!   `replica_sweep_secs` each replica removes the dead: their rows, their hold on sessions
//!   (closed as of their death) and the messages routed to them. A replica removed while
//!   only stalled records its sessions again at its next heartbeat.
//! - **Routing**: a `Run` (as its task key, see [`Routed`]) or `Cancel` for a host held
//!   elsewhere is inserted into `routed_messages` (batched) with a NOTIFY on the holder's
//!   channel; the holder takes its rows and hands them to the sessions. A message for a host
//!   that moved on is routed again to where it is now, or dropped if it is nowhere (the agent
//!   is resumed when it connects, or its task is lost after the grace period).
//! - **Staging answers**: a source host's answer to a staging request another replica sent
//!   goes to every other live replica; the one that asked takes it.
//! - **Lost agents**: a sweep on every replica fails (310) the unfinished tasks of hosts
//!   whose session closed more than the grace period ago, or whose replica died more than
//!   the grace period ago — so a job still finishes when the replica that started it, or
//!   the one that held some of its agents, is gone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_proto::agent::{ServerMsg, StageResult, TaskKey};
use shoal_proto::status::{gse_code, host_status};
use shoal_store::{RoutedMessage, Store, TaskChange};
use tokio::sync::{mpsc, watch};

use super::{Gateway, IngestItem};

/// How often a replica refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A replica whose heartbeat is older than this is dead.
pub const REPLICA_TTL: Duration = Duration::from_secs(5);
/// Most messages routed in one transaction.
const MAX_ROUTE_BATCH: usize = 4096;

/// What goes through `routed_messages`. A task to run travels as its key only: the holder
/// builds the `Run` from the step in the database, as the sender would (variables, unsealed
/// parameters), so task bodies and sensitive values never sit in the table, and the holder
/// knows the step's passwords to mask in the output it ingests.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Routed {
    Run {
        key: TaskKey,
    },
    Msg {
        msg: ServerMsg,
    },
    /// A source host's staging answer, for the replica that asked (sent to every other live
    /// replica: only the asker waits for its id).
    Staged {
        result: StageResult,
    },
}

/// A session opening or closing, written in order.
#[derive(Debug, Clone, Copy)]
pub enum SessionEvent {
    Opened {
        host_id: i64,
        conn_id: u64,
        at: i64,
    },
    Closed {
        host_id: i64,
        conn_id: u64,
        at: i64,
    },
    /// Still held after this replica was removed as dead (it was silent too long).
    Reclaimed {
        host_id: i64,
        conn_id: u64,
        at: i64,
    },
}

/// This server as one of several replicas on a shared store.
pub struct Replica {
    /// Unique per process start.
    pub id: String,
    started_at: i64,
    /// Hosts held by other live replicas, as last read.
    remote: Mutex<HashMap<i64, String>>,
    outgoing_tx: mpsc::UnboundedSender<RoutedMessage>,
    outgoing_rx: Mutex<Option<mpsc::UnboundedReceiver<RoutedMessage>>>,
    events_tx: mpsc::UnboundedSender<SessionEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<SessionEvent>>>,
}

impl Replica {
    /// `Some` when the store is shared by several servers.
    pub fn for_store(store: &Arc<dyn Store>) -> Option<Replica> {
        if !store.is_shared() {
            return None;
        }
        let (outgoing_tx, outgoing_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Some(Replica {
            id: uuid::Uuid::new_v4().simple().to_string(),
            started_at: shoal_core::time::now_ms(),
            remote: Mutex::new(HashMap::new()),
            outgoing_tx,
            outgoing_rx: Mutex::new(Some(outgoing_rx)),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
        })
    }
}

fn alive_after() -> i64 {
    shoal_core::time::now_ms() - REPLICA_TTL.as_millis() as i64
}

impl Gateway {
    /// This replica's id, when several replicas share the store.
    pub fn replica_id(&self) -> Option<&str> {
        self.replica.as_ref().map(|r| r.id.as_str())
    }

    /// Hosts whose agent this server can reach: its own sessions and, on a shared store,
    /// those held by other live replicas.
    pub async fn reachable_set(&self) -> HashSet<i64> {
        let mut set = self.connected_set();
        let Some(replica) = &self.replica else { return set };
        match self.store.live_sessions(alive_after()).await {
            Ok(rows) => {
                let remote: HashMap<i64, String> = rows.into_iter().filter(|(h, r)| *r != replica.id && !set.contains(h)).collect();
                set.extend(remote.keys().copied());
                *replica.remote.lock().expect("remote lock") = remote;
            }
            Err(e) => tracing::error!(error = %e, "reading sessions of other replicas"),
        }
        set
    }

    /// Whether the host's agent is connected here or to another live replica.
    pub async fn reachable(&self, host_id: i64) -> bool {
        if self.is_connected(host_id) {
            return true;
        }
        let Some(replica) = &self.replica else { return false };
        matches!(self.store.session_holder(host_id, alive_after()).await, Ok(Some(r)) if r != replica.id)
    }

    /// [`Gateway::send`] for a host without a local session: queue it for the replica that
    /// holds it. False when no other live replica does.
    pub(super) async fn send_remote(&self, host_id: i64, msg: &ServerMsg) -> bool {
        let Some(replica) = &self.replica else { return false };
        let cached = replica.remote.lock().expect("remote lock").get(&host_id).cloned();
        let holder = match cached {
            Some(r) => Some(r),
            None => self.store.session_holder(host_id, alive_after()).await.ok().flatten(),
        };
        let Some(holder) = holder.filter(|r| *r != replica.id) else { return false };
        let routed = match msg {
            ServerMsg::Run(r) => Routed::Run { key: r.key },
            other => Routed::Msg { msg: other.clone() },
        };
        let Ok(body) = serde_json::to_string(&routed) else { return false };
        replica.outgoing_tx.send(RoutedMessage { replica_id: holder, host_id, body }).is_ok()
    }

    /// A staging answer from `host_id`'s agent that no request of this replica waits for:
    /// passed to the other live replicas, one of which asked.
    pub async fn forward_staged(&self, host_id: i64, result: StageResult) {
        let Some(replica) = &self.replica else {
            tracing::warn!(host_id, id = result.id, "staging answer for a request nobody waits for; ignored");
            return;
        };
        let others = match self.store.live_replicas(alive_after()).await {
            Ok(ids) => ids.into_iter().filter(|r| *r != replica.id).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(host_id, error = %e, "reading live replicas to pass on a staging answer");
                return;
            }
        };
        let Ok(body) = serde_json::to_string(&Routed::Staged { result }) else { return };
        for r in others {
            let _ = replica.outgoing_tx.send(RoutedMessage { replica_id: r, host_id, body: body.clone() });
        }
    }

    /// Notes a session opening or closing for the other replicas (in order).
    pub(super) fn session_event(&self, event: SessionEvent) {
        if let Some(replica) = &self.replica {
            let _ = replica.events_tx.send(event);
        }
    }

    /// Starts the replica's tasks (heartbeat, session writer, router, delivery, lost sweep).
    pub(super) fn start_replica(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        let Some(replica) = &self.replica else { return };
        tracing::info!(replica_id = %replica.id, "serving as one replica of a shared store");
        if let Some(rx) = replica.events_rx.lock().expect("events lock").take() {
            tokio::spawn(self.clone().session_writer(rx));
        }
        if let Some(rx) = replica.outgoing_rx.lock().expect("outgoing lock").take() {
            tokio::spawn(self.clone().router(rx));
        }
        tokio::spawn(self.clone().heartbeat(stop.clone()));
        tokio::spawn(self.clone().delivery(stop.clone()));
        tokio::spawn(self.clone().dead_replica_sweep(stop.clone()));
        tokio::spawn(self.clone().lost_sweep(stop));
    }

    async fn heartbeat(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(replica) = &self.replica else { return };
        let mut tick = tokio::time::interval(HEARTBEAT);
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.store.replica_heartbeat(&replica.id, replica.started_at, shoal_core::time::now_ms()).await {
                        // No row past the first beat: removed as dead meanwhile.
                        Ok(false) if !first => self.reclaim_sessions(),
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "replica heartbeat"),
                    }
                    first = false;
                }
                _ = stopped(&mut stop) => break,
            }
        }
        // A clean stop: our agents count as disconnected now, not when we look dead.
        if let Err(e) = self.store.replica_stopped(&replica.id, shoal_core::time::now_ms()).await {
            tracing::warn!(error = %e, "recording this replica's stop");
        }
    }

    /// This replica was silent so long that another removed it as dead, closing its
    /// sessions: those it still holds are recorded again.
    fn reclaim_sessions(&self) {
        let held: Vec<(i64, u64)> = self.sessions.lock().expect("sessions lock").iter().map(|(h, s)| (*h, s.conn_id)).collect();
        tracing::warn!(sessions = held.len(), "this replica was removed as dead; recording its agent sessions again");
        let at = shoal_core::time::now_ms();
        for (host_id, conn_id) in held {
            self.session_event(SessionEvent::Reclaimed { host_id, conn_id, at });
        }
    }

    /// Removes replicas silent for longer than [`REPLICA_TTL`]: their rows, their sessions
    /// (closed as of their death, so the lost sweep still judges their hosts) and the
    /// messages routed to them. Every replica sweeps; doing it twice changes nothing.
    async fn dead_replica_sweep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.replica_sweep());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(&mut stop) => return,
            }
            let ttl = REPLICA_TTL.as_millis() as i64;
            match self.store.remove_dead_replicas(alive_after(), ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(replicas = n, "removed dead replicas and closed the agent sessions they held"),
                Err(e) => tracing::error!(error = %e, "removing dead replicas"),
            }
        }
    }

    async fn session_writer(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<SessionEvent>) {
        let Some(replica) = &self.replica else { return };
        while let Some(event) = rx.recv().await {
            let r = match event {
                SessionEvent::Opened { host_id, conn_id, at } => self.store.session_opened(host_id, &replica.id, conn_id as i64, at).await,
                SessionEvent::Closed { host_id, conn_id, at } => self.store.session_closed(host_id, &replica.id, conn_id as i64, at).await,
                SessionEvent::Reclaimed { host_id, conn_id, at } => {
                    self.store.session_reclaimed(host_id, &replica.id, conn_id as i64, at).await
                }
            };
            if let Err(e) = r {
                tracing::error!(?event, error = %e, "recording an agent session");
            }
        }
    }

    async fn router(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<RoutedMessage>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_ROUTE_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            for attempt in 0..5 {
                match self.store.route(&batch, shoal_core::time::now_ms()).await {
                    Ok(()) => break,
                    Err(e) => {
                        // Undelivered messages are not lost work: the agent is resumed when
                        // it connects, or its task is failed by the lost-agent sweep.
                        tracing::error!(error = %e, messages = batch.len(), attempt, "routing messages to other replicas");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }

    async fn delivery(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some(replica) = &self.replica else { return };
        let channel = shoal_store::scale::replica_channel(&replica.id);
        let mut wake = match self.store.listen(&channel).await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot LISTEN; looking for routed messages every second");
                None
            }
        };
        loop {
            match self.store.take_routed(&replica.id).await {
                Ok(msgs) => self.deliver(msgs).await,
                Err(e) => tracing::error!(error = %e, "taking routed messages"),
            }
            let woke = async {
                match wake.as_mut() {
                    Some(w) => w.recv().await.is_some(),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        true
                    }
                }
            };
            tokio::select! {
                ok = woke => if !ok { wake = None },
                _ = stopped(&mut stop) => return,
            }
        }
    }

    async fn deliver(&self, msgs: Vec<RoutedMessage>) {
        let mut again = Vec::new();
        let engine = self.engine();
        for m in msgs {
            let msg = match serde_json::from_str::<Routed>(&m.body) {
                Ok(Routed::Msg { msg }) => msg,
                Ok(Routed::Staged { result }) => {
                    // Forwarded once: a replica that did not ask drops it.
                    if let Some(engine) = engine.as_ref() {
                        engine.take_staged(m.host_id, result);
                    }
                    continue;
                }
                Ok(Routed::Run { key }) => match engine.as_ref() {
                    Some(engine) => match engine.run_msg_for(key).await {
                        Some(msg) => msg,
                        // The step ended meanwhile (terminated, or its other hosts failed).
                        None => continue,
                    },
                    None => continue,
                },
                Err(_) => {
                    tracing::warn!(host_id = m.host_id, "undecodable routed message; dropped");
                    continue;
                }
            };
            let tx = self.sessions.lock().expect("sessions lock").get(&m.host_id).map(|s| s.tx.clone());
            match tx {
                Some(tx) => {
                    let _ = tx.send(msg).await;
                }
                None => again.push((m.host_id, msg)),
            }
        }
        // The agent moved on since the message was routed: follow it once more.
        for (host_id, msg) in again {
            if let Some(replica) = &self.replica {
                replica.remote.lock().expect("remote lock").remove(&host_id);
            }
            if !self.send_remote(host_id, &msg).await {
                tracing::debug!(host_id, "routed message for an agent connected nowhere; dropped");
            }
        }
    }

    /// Fails the unfinished tasks of hosts lost for longer than the grace period, wherever
    /// their session was. Every replica sweeps; the store applies a final status once.
    async fn lost_sweep(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let grace = self.config.agent_lost_grace();
        let mut tick = tokio::time::interval((grace / 2).max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Not at once: this replica's own row and sessions are still being written.
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(&mut stop) => return,
            }
            let now = shoal_core::time::now_ms();
            let grace_ms = grace.as_millis() as i64;
            let lost = match self.store.lost_tasks(now - grace_ms, now - grace_ms - REPLICA_TTL.as_millis() as i64).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "looking for lost agents");
                    continue;
                }
            };
            // A session may have just opened here and not be written yet.
            let local = self.connected_set();
            let items: Vec<IngestItem> =
                lost.into_iter().filter(|k: &TaskKey| !local.contains(&k.host_id)).map(|key| lost_item(key, now)).collect();
            if !items.is_empty() {
                tracing::warn!(tasks = items.len(), "agents lost on other replicas or long gone; failing their unfinished tasks");
                self.submit(items).await;
            }
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

fn lost_item(key: TaskKey, now: i64) -> IngestItem {
    IngestItem {
        change: TaskChange::Finished {
            key,
            status: host_status::GSE_AGENT_ERROR,
            exit_code: 0,
            error_code: gse_code::OTHER,
            start_time: None,
            end_time: now,
            dropped_bytes: 0,
            vars: Default::default(),
        },
        ack: None,
    }
}
