//! The agent's state, owned by the session task: running tasks, the outbox index, and what to
//! do with each server message and each task event.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::agent::{Ack, AgentMsg, Hello, HostFacts, LogChunk, RunTask, ServerMsg, TaskKey, PROTOCOL_VERSION};
use tokio::sync::{mpsc, oneshot};

use super::error::LinkError;
use super::executor::{Executor, ProcessExecutor};
use super::link::Link;
use super::outbox::{DiskOp, Index, Outbox, TaskRecord};
use super::runner::{self, TaskEvent};
use crate::exec::leftovers::Whereabouts;
use crate::exec::{now_ms, ExecEnv, KillReason};

/// Room for task events before running tasks have to wait for the session task.
const EVENT_QUEUE: usize = 256;

pub struct Agent {
    /// Stable identity from `state_dir/agent_id`.
    pub agent_id: String,
    /// Secret from `state_dir/agent_credential`, bound to `agent_id` by the server.
    pub credential: Option<String>,
    token: String,
    facts: HostFacts,
    outbox: Outbox,
    /// Carries out tasks: real processes, or a simulation.
    executor: Arc<dyn Executor>,
    /// What is on disk: task records and unacknowledged chunks and exits.
    index: Index,
    /// Tasks whose process is running, with the way to stop them (taken when used).
    running: HashMap<TaskKey, Option<oneshot::Sender<KillReason>>>,
    events_tx: mpsc::Sender<TaskEvent>,
    /// Chunks and exits from running tasks (already on disk).
    pub events: mpsc::Receiver<TaskEvent>,
    /// Acknowledged files are deleted by the janitor, in order, off this task.
    janitor: mpsc::Sender<DiskOp>,
    janitor_task: tokio::task::JoinHandle<()>,
}

impl Agent {
    pub fn new(agent_id: String, token: String, facts: HostFacts, outbox: Outbox, env: ExecEnv, index: Index) -> Self {
        Self::with_executor(agent_id, token, facts, outbox, Arc::new(ProcessExecutor { env }), index)
    }

    /// An agent whose tasks are carried out by `executor`.
    pub fn with_executor(
        agent_id: String,
        token: String,
        facts: HostFacts,
        outbox: Outbox,
        executor: Arc<dyn Executor>,
        index: Index,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (janitor, janitor_task) = super::outbox::spawn_janitor(outbox.clone());
        Agent {
            agent_id,
            credential: None,
            token,
            facts,
            outbox,
            executor,
            index,
            running: HashMap::new(),
            events_tx,
            events,
            janitor,
            janitor_task,
        }
    }

    /// Drops the enrolment token (once welcomed, the agent's credential is what counts).
    pub fn forget_token(&mut self) {
        self.token = String::new();
    }

    pub fn hello(&self) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            token: self.token.clone(),
            agent_id: self.agent_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            facts: self.facts.clone(),
            known_tasks: self.index.known_tasks(),
            credential: self.credential.clone(),
        }
    }

    /// After `Welcome`: everything unacknowledged, task by task, chunks in order then the exit.
    pub async fn resend_all(&mut self, link: &mut Link) -> Result<(), LinkError> {
        let pending: Vec<_> =
            self.index.pending.iter().map(|(k, p)| (*k, p.chunks.iter().copied().collect::<Vec<_>>(), p.exit.clone())).collect();
        for (key, seqs, exit) in pending {
            for seq in seqs {
                match self.outbox.read_chunk(&key, seq).await {
                    Ok(data) => link.send(&AgentMsg::Log(LogChunk { key, seq, data })).await?,
                    Err(e) => tracing::warn!(%key, seq, error = %e, "pending chunk unreadable"),
                }
            }
            if let Some(exit) = exit {
                link.send(&AgentMsg::Exit(exit)).await?;
            }
        }
        Ok(())
    }

    /// A chunk or exit from a task: note it, and send it if connected.
    pub async fn on_event(&mut self, event: TaskEvent, link: Option<&mut Link>) -> Result<(), LinkError> {
        let msg = match event {
            TaskEvent::Chunk(chunk) => {
                self.index.note_chunk(chunk.key, chunk.seq);
                AgentMsg::Log(chunk)
            }
            TaskEvent::Exit(exit) => {
                self.running.remove(&exit.key);
                self.index.note_exit(exit.clone());
                AgentMsg::Exit(exit)
            }
            TaskEvent::Staged(r) => AgentMsg::Staged(r),
        };
        match link {
            Some(link) => link.send(&msg).await,
            None => Ok(()),
        }
    }

    pub async fn on_server_msg(&mut self, msg: ServerMsg, link: &mut Link) -> Result<(), LinkError> {
        match msg {
            ServerMsg::Run(task) => self.on_run(task, link).await,
            ServerMsg::Cancel { key } => {
                match self.running.get_mut(&key).and_then(Option::take) {
                    Some(kill) => {
                        tracing::info!(%key, "cancelling task");
                        let _ = kill.send(KillReason::Cancel);
                    }
                    None => tracing::debug!(%key, "cancel for a task not running; ignored"),
                }
                Ok(())
            }
            ServerMsg::Ack(ack) => {
                self.on_ack(ack).await;
                Ok(())
            }
            ServerMsg::Stage(req) => {
                let (executor, events) = (self.executor.clone(), self.events_tx.clone());
                tokio::spawn(async move {
                    let id = req.id;
                    let result = executor.stage(req).await;
                    tracing::info!(id, files = result.files.len(), missing = result.missing.len(), error = ?result.error, "sources staged");
                    let _ = events.send(TaskEvent::Staged(result)).await;
                });
                Ok(())
            }
            ServerMsg::Welcome(_) | ServerMsg::Reject(_) => {
                tracing::warn!("unexpected greeting mid-session; ignored");
                Ok(())
            }
        }
    }

    async fn on_run(&mut self, task: RunTask, link: &mut Link) -> Result<(), LinkError> {
        let key = task.key;
        if self.running.contains_key(&key) {
            tracing::debug!(%key, "run for a task already running; ignored");
            return Ok(());
        }
        if self.index.pending.get(&key).is_some_and(|p| p.exit.is_some()) {
            // Its result is queued (and was sent after Welcome); nothing new to do.
            tracing::debug!(%key, "run for a task already finished; ignored");
            return Ok(());
        }
        let next_seq = self.index.pending.get(&key).map_or(0, |p| p.next_seq);
        if self.index.records.contains(&key) {
            // It ran before the agent restarted and its outcome is lost.
            let outbox = self.outbox.clone();
            let written = tokio::task::spawn_blocking(move || outbox.write_lost(&key, next_seq)).await;
            return match written {
                Ok(Ok((chunk, exit))) => {
                    self.on_event(TaskEvent::Chunk(chunk), Some(&mut *link)).await?;
                    self.on_event(TaskEvent::Exit(exit), Some(link)).await
                }
                Ok(Err(e)) => {
                    tracing::error!(%key, error = %e, "cannot write the lost task's result");
                    Ok(())
                }
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
        }
        // The record comes first: a task the agent could forget (a crash before its exit is
        // written) would be run again when the server asks again. No record, no run.
        let record =
            TaskRecord { start_ms: now_ms(), whereabouts: Whereabouts { cgroup: self.executor.task_cgroup(&key), ..Default::default() } };
        let outbox = self.outbox.clone();
        let recorded = if outbox.is_memory() {
            Ok(outbox.write_record(&key, &record))
        } else {
            tokio::task::spawn_blocking(move || outbox.write_record(&key, &record)).await
        };
        match recorded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(%key, error = %e, "cannot record the task; not running it");
                let outbox = self.outbox.clone();
                let (chunk, exit) = tokio::task::spawn_blocking(move || outbox.write_not_run(&key, next_seq, &e))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                self.on_event(TaskEvent::Chunk(chunk), Some(&mut *link)).await?;
                return self.on_event(TaskEvent::Exit(exit), Some(link)).await;
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
        self.index.records.insert(key);
        tracing::info!(%key, user = %task.user, language = task.language, "running task");
        let (kill_tx, kill_rx) = oneshot::channel();
        self.running.insert(key, Some(kill_tx));
        runner::spawn(task, next_seq, self.executor.clone(), self.outbox.clone(), self.events_tx.clone(), kill_rx);
        Ok(())
    }

    async fn on_ack(&mut self, ack: Ack) {
        for item in ack.items {
            let key = item.key;
            let Some(p) = self.index.pending.get_mut(&key) else {
                continue;
            };
            if let Some(upto) = item.upto_seq {
                p.chunks.retain(|s| *s > upto);
                let _ = self.janitor.send(DiskOp::AckChunks { key, upto }).await;
            }
            if item.exit && p.exit.is_some() {
                self.index.pending.remove(&key);
                self.index.records.remove(&key);
                let _ = self.janitor.send(DiskOp::Forget { key }).await;
            }
        }
    }

    /// Stops all running tasks (their exits go to the outbox, to be sent after the next
    /// start), waits for them for at most `grace` plus a margin, and lets pending disk
    /// cleanups finish.
    pub async fn shutdown(mut self, grace: Duration) {
        for kill in self.running.values_mut() {
            if let Some(kill) = kill.take() {
                let _ = kill.send(KillReason::Shutdown);
            }
        }
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(5);
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    let _ = self.on_event(event, None).await;
                }
                _ => {
                    tracing::warn!(left = self.running.len(), "tasks did not stop in time");
                    break;
                }
            }
        }
        drop(self.janitor);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.janitor_task).await;
    }

    #[cfg(test)]
    pub fn index(&self) -> &Index {
        &self.index
    }
}
