//! Agent gateway: admitting agents ([`enrol`]), which agents are connected, sending them work,
//! and the single ingest writer that commits their logs and exits in batches before
//! acknowledging them.
//!
//! Every host-task change (from agents or from the engine) goes through the one writer, so
//! a step's completion is decided in one place and never twice.

pub mod enrol;
mod returning;
pub mod route;
pub mod ws;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use shoal_proto::agent::{Ack, AckItem, ServerMsg, TaskKey};
use shoal_store::{Store, TaskChange};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::engine::Engine;
use crate::ServerConfig;

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 4096;
/// Most log bytes committed in one transaction. Every byte of a batch is also held as SQLite
/// pages and statement copies while it commits; 4 MiB batches ingested as fast as 16 MiB ones.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Changes waiting for the writer.
const INGEST_QUEUE: usize = 4096;
/// Log bytes queued for the writer or being committed, at most. An agent session whose chunk
/// does not fit waits (and reads no further frames: its agent keeps the output meanwhile), so
/// the server's memory under ingest is bounded in bytes, not in chunks.
const INGEST_BYTES: usize = 8 * 1024 * 1024;
/// Hellos handled at once (each costs a few store queries). When a whole fleet connects at
/// once, the rest wait their turn instead of exhausting the store's connections.
const CONCURRENT_HELLOS: usize = 8;

fn log_bytes(item: &IngestItem) -> usize {
    match &item.change {
        TaskChange::Log { data, .. } => data.len(),
        _ => 0,
    }
}

/// Where to send the acknowledgement once a change is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckTo {
    pub host_id: i64,
    pub conn_id: u64,
}

/// Acknowledgements per agent connection, per task.
type Acks = HashMap<AckTo, HashMap<TaskKey, AckItem>>;

pub struct IngestItem {
    pub change: TaskChange,
    pub ack: Option<AckTo>,
}

/// What the writer's queue carries: changes, and markers that report when every change
/// queued before them is committed.
enum Ingest {
    /// A change, when it was queued, and its share of [`INGEST_BYTES`] (returned once it
    /// is committed).
    Change(IngestItem, Instant, Option<OwnedSemaphorePermit>),
    Committed(oneshot::Sender<()>),
}

struct Session {
    conn_id: u64,
    tx: mpsc::Sender<ServerMsg>,
}

pub struct Gateway {
    config: ServerConfig,
    store: Arc<dyn Store>,
    engine: OnceLock<Weak<Engine>>,
    /// Connected agents by host id; the newest connection of a host replaces older ones.
    sessions: Mutex<HashMap<i64, Session>>,
    next_conn: AtomicU64,
    ingest_tx: mpsc::Sender<Ingest>,
    ingest_rx: Mutex<Option<mpsc::Receiver<Ingest>>>,
    /// Log bytes in flight between agent sessions and the store ([`INGEST_BYTES`]).
    ingest_bytes: Arc<Semaphore>,
    stop: OnceLock<watch::Receiver<bool>>,
    /// Set when several replicas share the store (see [`route`]).
    replica: Option<route::Replica>,
    /// Agents awaited for the grace period after the start (see [`returning`]).
    returning: Mutex<Option<returning::Returning>>,
    /// Admission of agent hellos (see [`CONCURRENT_HELLOS`]).
    pub(crate) hellos: tokio::sync::Semaphore,
    /// Agent sessions upgraded but not past their hello yet (`max_pending_agent_sessions`).
    pub(crate) unhelloed: Arc<tokio::sync::Semaphore>,
    /// Why the ingest writer cannot commit right now (`None` while it can): agents keep
    /// their unacknowledged output meanwhile, and `/healthz` says so.
    ingest_fault: Mutex<Option<String>>,
    /// When the oldest change not yet committed was queued (`None`: the writer is idle).
    /// How far the writer is behind; admission refuses new jobs past a limit.
    behind_since: Mutex<Option<Instant>>,
    /// This server's metrics (the engine and the API count through here too).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Who listens for job changes (the console's live job page); the writer and the engine
    /// publish there.
    pub events: Arc<crate::engine::events::Hub>,
}

impl Gateway {
    pub fn new(config: ServerConfig, store: Arc<dyn Store>) -> Gateway {
        let unhelloed = Arc::new(tokio::sync::Semaphore::new(config.max_pending_agent_sessions));
        let (ingest_tx, ingest_rx) = mpsc::channel(INGEST_QUEUE);
        let replica = route::Replica::for_store(&store);
        Gateway {
            config,
            store,
            engine: OnceLock::new(),
            sessions: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            ingest_tx,
            ingest_rx: Mutex::new(Some(ingest_rx)),
            ingest_bytes: Arc::new(Semaphore::new(INGEST_BYTES)),
            stop: OnceLock::new(),
            replica,
            returning: Mutex::new(None),
            hellos: tokio::sync::Semaphore::new(CONCURRENT_HELLOS),
            unhelloed,
            ingest_fault: Mutex::new(None),
            behind_since: Mutex::new(None),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            events: Arc::default(),
        }
    }

    pub fn set_engine(&self, engine: &Arc<Engine>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }

    fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.get().and_then(Weak::upgrade)
    }

    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.get().cloned().unwrap_or_else(|| watch::channel(false).1)
    }

    /// Start the ingest writer.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        self.start_replica(stop.clone());
        let _ = self.stop.set(stop);
        let rx = self.ingest_rx.lock().expect("ingest lock").take();
        if let Some(rx) = rx {
            let me = self.clone();
            tokio::spawn(async move { me.writer(rx).await });
        }
    }

    /// Why agents' results cannot be committed now, if they cannot.
    pub fn ingest_fault(&self) -> Option<String> {
        self.ingest_fault.lock().expect("ingest fault").clone()
    }

    /// How long the oldest change not yet committed has waited.
    pub fn ingest_lag(&self) -> Duration {
        self.behind_since.lock().expect("behind lock").map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Changes queued for the writer (not yet in a batch being committed).
    pub fn ingest_queue_depth(&self) -> usize {
        INGEST_QUEUE - self.ingest_tx.capacity()
    }

    /// Log bytes queued for the writer or being committed.
    pub fn ingest_queue_bytes(&self) -> usize {
        INGEST_BYTES - self.ingest_bytes.available_permits()
    }

    /// Messages queued to this server's agent sessions, not yet written to their sockets.
    pub fn dispatch_queue_depth(&self) -> usize {
        self.sessions.lock().expect("sessions lock").values().map(|s| s.tx.max_capacity() - s.tx.capacity()).sum()
    }

    pub fn is_connected(&self, host_id: i64) -> bool {
        self.sessions.lock().expect("sessions lock").contains_key(&host_id)
    }

    pub fn connected_set(&self) -> HashSet<i64> {
        self.sessions.lock().expect("sessions lock").keys().copied().collect()
    }

    /// Queue a message for a host's agent; false when it is not connected (or its queue is
    /// gone). On a shared store an agent held by another replica is reached through it.
    pub async fn send(&self, host_id: i64, msg: ServerMsg) -> bool {
        let tx = self.sessions.lock().expect("sessions lock").get(&host_id).map(|s| s.tx.clone());
        match tx {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => self.send_remote(host_id, &msg).await,
        }
    }

    /// Waits until `bytes` of log data fit in [`INGEST_BYTES`] and takes that room (`None`
    /// for no bytes, or once the gateway is gone).
    pub(crate) async fn log_room(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        match bytes.min(INGEST_BYTES) {
            0 => None,
            n => self.ingest_bytes.clone().acquire_many_owned(n as u32).await.ok(),
        }
    }

    /// Queue changes for the writer; waits while [`INGEST_BYTES`] of log data are in flight.
    pub async fn submit(&self, items: Vec<IngestItem>) {
        for item in items {
            let permit = self.log_room(log_bytes(&item)).await;
            if !self.submit_with_room(item, permit).await {
                return;
            }
        }
    }

    /// Queue one change whose log bytes already have their room ([`Gateway::log_room`]);
    /// false when the writer is gone.
    pub(crate) async fn submit_with_room(&self, item: IngestItem, room: Option<OwnedSemaphorePermit>) -> bool {
        if self.ingest_tx.send(Ingest::Change(item, Instant::now(), room)).await.is_err() {
            tracing::error!("ingest writer is gone");
            return false;
        }
        true
    }

    /// Queue changes for the writer and wait until they are committed.
    pub async fn commit(&self, items: Vec<IngestItem>) {
        self.submit(items).await;
        let (tx, rx) = oneshot::channel();
        if self.ingest_tx.send(Ingest::Committed(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    fn register(&self, host_id: i64, tx: mpsc::Sender<ServerMsg>) -> u64 {
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let old = self.sessions.lock().expect("sessions lock").insert(host_id, Session { conn_id, tx });
        if old.is_some() {
            tracing::info!(host_id, "agent reconnected; replacing its previous session");
        }
        self.session_event(route::SessionEvent::Opened { host_id, conn_id, at: shoal_core::time::now_ms() });
        conn_id
    }

    /// Forget a session; true when it was the host's current one.
    fn unregister(&self, host_id: i64, conn_id: u64) -> bool {
        let mut s = self.sessions.lock().expect("sessions lock");
        if s.get(&host_id).is_some_and(|x| x.conn_id == conn_id) {
            s.remove(&host_id);
            self.session_event(route::SessionEvent::Closed { host_id, conn_id, at: shoal_core::time::now_ms() });
            true
        } else {
            false
        }
    }

    pub fn close_all(&self) {
        self.sessions.lock().expect("sessions lock").clear();
    }

    /// After a disconnect: if the agent has not come back within the grace period, its
    /// unfinished tasks are lost (310).
    fn watch_lost(self: &Arc<Self>, host_id: i64) {
        let me = self.clone();
        let grace = self.config.agent_lost_grace();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // A server that is shutting down judges nobody: its successor will.
            if *me.stop_signal().borrow() || me.reachable(host_id).await {
                return;
            }
            if let Some(engine) = me.engine() {
                engine.agent_lost(host_id).await;
            }
        });
    }

    async fn writer(self: Arc<Self>, mut rx: mpsc::Receiver<Ingest>) {
        let mut next = rx.recv().await;
        while let Some(first) = next.take() {
            // A batch: changes up to the size limits, or up to a commit marker.
            let mut batch = Vec::new();
            let mut bytes = 0;
            let mut permits = Vec::new();
            let mut markers = Vec::new();
            // When each agent's result in the batch was received (ingest latency).
            let mut received = Vec::new();
            let mut item = Some(first);
            while let Some(i) = item.take() {
                match i {
                    Ingest::Change(c, queued, permit) => {
                        if batch.is_empty() {
                            // The first change of a batch is the oldest one waiting.
                            *self.behind_since.lock().expect("behind lock") = Some(queued);
                        }
                        bytes += log_bytes(&c);
                        if c.ack.is_some() {
                            received.push(queued);
                        }
                        batch.push(c);
                        permits.extend(permit);
                    }
                    Ingest::Committed(tx) => {
                        markers.push(tx);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                    item = rx.try_recv().ok();
                }
            }
            // What to acknowledge is worked out first; the changes (log data included) then
            // move into the store call.
            let acks = acks_of(&batch);
            let agent_exits: Vec<TaskKey> = batch
                .iter()
                .filter(|i| i.ack.is_some() && matches!(i.change, TaskChange::Finished { .. }))
                .map(|i| i.change.key())
                .collect();
            let changes: Vec<TaskChange> = batch.into_iter().map(|i| i.change).collect();
            let touched: Vec<i64> = changes
                .iter()
                .map(|c| match c {
                    TaskChange::RunStarted { step_instance_id, .. } => *step_instance_id,
                    other => other.key().step_instance_id,
                })
                .collect();
            let applied = loop {
                if changes.is_empty() {
                    break shoal_store::Applied::default();
                }
                match self.store.apply(&changes, self.config.output_cap_bytes).await {
                    Ok(f) => {
                        if self.ingest_fault.lock().expect("ingest fault").take().is_some() {
                            tracing::info!("committing host-task changes again");
                        }
                        for at in &received {
                            self.metrics.ingested(at.elapsed().as_secs_f64());
                        }
                        break f;
                    }
                    Err(e) => {
                        // Nothing is acknowledged until it is committed: keep trying.
                        tracing::error!(error = %e, changes = changes.len(), "committing host-task changes failed; retrying");
                        self.metrics.store_error("ingest");
                        let why = e.unavailable().map_or_else(|| e.to_string(), str::to_string);
                        *self.ingest_fault.lock().expect("ingest fault") = Some(why);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            if !applied.finals.is_empty() {
                let finals: HashSet<&TaskKey> = applied.finals.iter().collect();
                for change in &changes {
                    if let TaskChange::Finished { key, status, .. } = change {
                        if finals.contains(key) {
                            self.metrics.host_task_finished(*status);
                        }
                    }
                }
            }
            // The batch's log data is gone: let waiting sessions in before anything else
            // (acknowledging waits for sessions' queues).
            drop(changes);
            drop(permits);
            for tx in markers {
                let _ = tx.send(());
            }
            // An exit for a task already final (or unknown) changed nothing; it is still
            // acknowledged, so the agent stops resending it. Its output was refused likewise.
            if !agent_exits.is_empty() {
                let became: HashSet<&TaskKey> = applied.finals.iter().collect();
                for key in agent_exits.iter().filter(|k| !became.contains(k)) {
                    tracing::info!(task = %key, "exit for a finished or unknown task; not stored");
                }
            }
            self.acknowledge(acks).await;
            self.events.steps(touched);
            if !applied.ended.is_empty() || !applied.left.is_empty() {
                if let Some(engine) = self.engine() {
                    engine.on_applied(applied).await;
                }
            }
            next = match rx.try_recv() {
                Ok(n) => Some(n),
                Err(_) => {
                    *self.behind_since.lock().expect("behind lock") = None;
                    rx.recv().await
                }
            };
        }
    }

    async fn acknowledge(&self, per_conn: Acks) {
        for (to, items) in per_conn {
            let tx = {
                let s = self.sessions.lock().expect("sessions lock");
                s.get(&to.host_id).filter(|s| s.conn_id == to.conn_id).map(|s| s.tx.clone())
            };
            // A connection that is gone gets nothing: its agent resends and is acked then.
            if let Some(tx) = tx {
                let _ = tx.send(ServerMsg::Ack(Ack { items: items.into_values().collect() })).await;
            }
        }
    }
}

/// The acknowledgements a batch earns once committed.
fn acks_of(batch: &[IngestItem]) -> Acks {
    let mut per_conn = Acks::new();
    for item in batch {
        let Some(to) = item.ack else { continue };
        let key = item.change.key();
        let entry = per_conn.entry(to).or_default().entry(key).or_insert(AckItem { key, upto_seq: None, exit: false });
        match &item.change {
            TaskChange::Log { seq, .. } => entry.upto_seq = Some(entry.upto_seq.map_or(*seq, |s| s.max(*seq))),
            TaskChange::Finished { .. } => entry.exit = true,
            TaskChange::Started { .. } | TaskChange::RunStarted { .. } => {}
        }
    }
    per_conn
}
