//! A file step whose files are on source hosts starts by staging them: each source host's
//! agent is asked ([`ServerMsg::Stage`]) to put the files into the blob store, and answers
//! with what it staged. Then the step's transfer names blobs only, is stored with the step,
//! and its targets are dispatched. A source that lacks a file fails every target with 203,
//! one that cannot upload with 202, each with the reason in its file log.
//!
//! Staging is idempotent (blobs are content-addressed), so a server that restarts while a
//! step stages simply stages it again. On several replicas the source host's agent may be
//! held by another replica: the request is routed to it, and the answer comes back through
//! the database (`gateway::route`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::agent::{FileEvent, StageRequest, StageResult, FILE_STATUS_FAILED};
use shoal_proto::status::{gse_code, host_status};
use shoal_store::{StepRow, TaskChange};
use tokio::sync::oneshot;

use super::{finished, Engine};
use crate::files::{HostSource, StepFile, StepTransfer};
use crate::gateway::IngestItem;

/// Staging requests waiting for their answer.
#[derive(Default)]
pub struct Pending {
    /// By request id: the source host asked, and where its answer goes.
    waiting: Mutex<HashMap<u64, (i64, oneshot::Sender<StageResult>)>>,
    /// File steps staging their sources now (their tasks wait for it).
    steps: std::sync::atomic::AtomicUsize,
}

/// How a source failed.
struct SourceFailure {
    status: i32,
    message: String,
}

impl Engine {
    /// The answer of the agent of `host_id`, connected here: taken if this replica asked,
    /// else passed to the other replicas (one of them asked).
    pub async fn on_staged(&self, host_id: i64, result: StageResult) {
        if let Some(result) = self.take_staged_or_return(host_id, result) {
            self.gateway.forward_staged(host_id, result).await;
        }
    }

    /// An answer another replica passed on: taken if this replica asked, else dropped.
    pub fn take_staged(&self, host_id: i64, result: StageResult) {
        let _ = self.take_staged_or_return(host_id, result);
    }

    /// Hands `result` to the request waiting for it; gives it back when no request of this
    /// replica has its id. An answer to a request sent to another host is dropped (an agent
    /// cannot stage files in another host's name).
    fn take_staged_or_return(&self, host_id: i64, result: StageResult) -> Option<StageResult> {
        let mut waiting = self.staging.waiting.lock().expect("staging lock");
        match waiting.get(&result.id) {
            None => return Some(result),
            Some((asked, _)) if *asked != host_id => {
                tracing::warn!(host_id, id = result.id, "staging answer for a request this host was not sent; ignored");
                return None;
            }
            Some(_) => {}
        }
        if let Some((_, tx)) = waiting.remove(&result.id) {
            let _ = tx.send(result);
        }
        None
    }

    /// File steps staging their sources now.
    pub fn staging_waiting(&self) -> usize {
        self.staging.steps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stages `step`'s sources, then dispatches it (on its own task).
    pub(crate) fn stage_then_dispatch(&self, step: Arc<StepRow>, transfer: StepTransfer) {
        let Some(me) = self.me.upgrade() else { return };
        use std::sync::atomic::Ordering;
        me.staging.steps.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = me.stage(step.clone(), transfer).await {
                tracing::error!(step_instance_id = step.id, error = %e, "staging the step's sources failed");
                me.gateway.metrics.store_error("engine");
            }
            me.staging.steps.fetch_sub(1, Ordering::Relaxed);
        });
    }

    async fn stage(&self, step: Arc<StepRow>, mut transfer: StepTransfer) -> Result<(), shoal_store::StoreError> {
        let sources = std::mem::take(&mut transfer.sources);
        let remote = std::mem::take(&mut transfer.remote);
        let limit = Duration::from_secs(step.timeout_secs.max(1) as u64);
        let mut staged: Vec<StepFile> = Vec::new();
        let mut failure: Option<SourceFailure> = None;
        for src in &remote {
            match tokio::time::timeout(limit, self.stage_remote(src)).await {
                Ok(Ok(files)) => staged.extend(files),
                Ok(Err(f)) => {
                    if failure.as_ref().is_none_or(|old| old.status != host_status::FILE_SOURCE_MISSING) {
                        failure = Some(f);
                    }
                }
                Err(_) => {
                    failure.get_or_insert(SourceFailure {
                        status: host_status::FILE_TRANSFER_FAILED,
                        message: format!("file source {}: not read within the step's timeout", src.code),
                    });
                }
            }
        }
        for src in &sources {
            match self.stage_one(&step, src, transfer.upload_limit, limit).await {
                Ok(files) => staged.extend(files),
                Err(f) => {
                    // A missing file (203) outranks a failed upload (202).
                    if failure.as_ref().is_none_or(|old| old.status != host_status::FILE_SOURCE_MISSING) {
                        failure = Some(f);
                    }
                }
            }
        }
        let tasks = self.store.host_tasks(step.id, step.execute_count).await?;
        if let Some(f) = failure {
            tracing::warn!(step_instance_id = step.id, reason = %f.message, "file step sources failed");
            let now = shoal_core::time::now_ms();
            let mut items = Vec::new();
            for t in tasks.iter().filter(|t| !host_status::is_final(t.status)) {
                let key = t.key();
                let event = FileEvent {
                    mode: 0,
                    src_path: sources
                        .iter()
                        .flat_map(|s| s.paths.iter().cloned())
                        .chain(remote.iter().flat_map(|s| s.paths.iter().cloned()))
                        .collect::<Vec<_>>()
                        .join(" "),
                    src_host: None,
                    dest_path: transfer.target_dir.clone(),
                    status: FILE_STATUS_FAILED,
                    size: 0,
                    done: 0,
                    speed: 0,
                    time_ms: now,
                    message: f.message.clone(),
                };
                let mut line = serde_json::to_vec(&event).expect("a file event serialises");
                line.push(b'\n');
                items.push(IngestItem { change: TaskChange::Log { key, seq: 0, data: line }, ack: None });
                items.push(finished(key, f.status, gse_code::OTHER, now));
            }
            self.gateway.submit(items).await;
            return Ok(());
        }
        if let (Some(name), [one]) = (transfer.target_name.take(), staged.as_mut_slice()) {
            one.name = name;
        }
        transfer.files.extend(staged);
        let json = transfer.to_json();
        self.store.set_step_transfer(step.id, &json).await?;
        let mut ready = (*step).clone();
        ready.transfer = Some(json);
        let ready = Arc::new(ready);
        self.steps.lock().expect("steps lock").insert(ready.id, ready.clone());
        tracing::info!(step_instance_id = step.id, files = transfer.files.len(), "file step sources staged");
        self.dispatch_step(&ready).await
    }

    /// Reads the files of a file source into the blob store.
    async fn stage_remote(&self, src: &crate::files::sources::RemoteSource) -> Result<Vec<StepFile>, SourceFailure> {
        let Some(blobs) = self.blobs.get() else {
            return Err(SourceFailure { status: host_status::FILE_TRANSFER_FAILED, message: "no blob store".into() });
        };
        crate::files::sources::stage(self.store.as_ref(), &self.config.sealing_key, &self.source_policy, blobs.as_ref(), src)
            .await
            .map_err(|f| SourceFailure { status: f.status, message: f.message })
    }

    /// Asks one source host to stage its files, waiting for its agent to be reachable first.
    async fn stage_one(
        &self,
        step: &StepRow,
        src: &HostSource,
        upload_limit: u64,
        limit: Duration,
    ) -> Result<Vec<StepFile>, SourceFailure> {
        let who = format!("source host {} ({})", src.host.ip, src.host.bk_host_id);
        // Unique across replicas: the answer may come back through another one.
        let id = ((uuid::Uuid::new_v4().as_u128() as u64) >> 1) | 1;
        let token = crate::files::stage_token(&self.config.sealing_key, step.id).map_err(|e| SourceFailure {
            status: host_status::FILE_TRANSFER_FAILED,
            message: format!("cannot make an upload token: {e}"),
        })?;
        let req = StageRequest {
            id,
            paths: src.paths.clone(),
            user: src.user.clone(),
            url: crate::files::STAGE_PATH.to_string(),
            token,
            upload_limit,
        };
        let deadline = tokio::time::Instant::now() + self.config.agent_lost_grace().max(Duration::from_secs(5));
        let (tx, rx) = oneshot::channel();
        self.staging.waiting.lock().expect("staging lock").insert(id, (src.host.bk_host_id, tx));
        loop {
            if self.gateway.send(src.host.bk_host_id, shoal_proto::agent::ServerMsg::Stage(req.clone())).await {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                self.staging.waiting.lock().expect("staging lock").remove(&id);
                return Err(SourceFailure {
                    status: host_status::FILE_SOURCE_MISSING,
                    message: format!("{who}: its agent is not connected"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let result = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r,
            _ => {
                self.staging.waiting.lock().expect("staging lock").remove(&id);
                return Err(SourceFailure {
                    status: host_status::FILE_TRANSFER_FAILED,
                    message: format!("{who}: no answer within the step's timeout while uploading the source files"),
                });
            }
        };
        if !result.missing.is_empty() {
            return Err(SourceFailure {
                status: host_status::FILE_SOURCE_MISSING,
                message: format!("{who}: source file not found: {}", result.missing.join(", ")),
            });
        }
        if let Some(e) = result.error {
            return Err(SourceFailure { status: host_status::FILE_TRANSFER_FAILED, message: format!("{who}: {e}") });
        }
        Ok(result
            .files
            .into_iter()
            .map(|f| StepFile {
                sha256: f.sha256,
                size: f.size,
                name: f.name,
                mode: Some(f.mode),
                src_path: f.src_path,
                src_host: Some(src.host.clone()),
            })
            .collect())
    }
}
