//! Rolling execution (§17): a step's hosts run in batches. Serial: one batch after the
//! other — between batches the step is 15 (rolling-waiting); with mode 3 it waits for the
//! user (7) after every batch until `operate_step_instance` 13; a failed batch stops the
//! step (mode 1, 3) or is tolerated (mode 2, the step then ends 6). Parallel-staggered: every
//! batch is dispatched at its cumulative delay; the step ends when all hosts have.
//!
//! Rolling by source file (a file step, `type` 2): batch *k* stages its share of the source
//! hosts' files, then sends every target a task of its own (keyed by the batch) to fetch
//! them; the same modes decide between batches. Under mode 2 a failed batch is remembered, so
//! the step ends 6 even when the last batch succeeds.

use std::time::Duration;

use shoal_core::rolling::{RollingConfig, RollingExecution, RollingMode};
use shoal_proto::agent::TaskKey;
use shoal_proto::status::{host_status, RunStatus};
use shoal_store::library::RollingRow;
use shoal_store::{HostTaskRow, StepRow, StepUpdate, StoreError};

use super::Engine;

fn config(r: &RollingRow) -> Option<RollingConfig> {
    serde_json::from_str(&r.config).ok().and_then(|v| RollingConfig::from_json(&v).ok())
}

/// Pseudo-random number in `[lo, hi]` for stagger delays (no need for cryptographic quality).
fn jitter(lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        return lo;
    }
    let seed = uuid::Uuid::new_v4().as_u128() as u64;
    lo + seed % (hi - lo + 1)
}

impl Engine {
    pub(crate) async fn dispatch_rolling(&self, step: &StepRow, tasks: Vec<HostTaskRow>, r: RollingRow) -> Result<(), StoreError> {
        let Some(cfg) = config(&r) else {
            return self.dispatch_tasks(step, tasks, None).await;
        };
        if cfg.source_files().is_some() {
            if r.current_batch == 0 {
                return self.begin_file_batch(step, 1).await;
            }
            // The current batch's files are staged: its tasks go out.
            return self.dispatch_tasks(step, tasks, None).await;
        }
        match cfg.execution {
            RollingExecution::Serial => {
                let batch = r.current_batch.max(1);
                self.store.set_rolling_batch(step.id, batch).await?;
                tracing::info!(step_instance_id = step.id, batch, total = r.total_batches, "rolling batch started");
                self.dispatch_tasks(step, tasks.into_iter().filter(|t| t.batch == batch).collect(), Some(batch)).await
            }
            RollingExecution::Parallel(delays) => {
                self.store.set_rolling_batch(step.id, r.total_batches).await?;
                let offsets = delays.offsets(r.total_batches as usize, jitter);
                let step = std::sync::Arc::new(step.clone());
                for (i, offset) in offsets.into_iter().enumerate() {
                    let batch = i as i32 + 1;
                    let mine: Vec<HostTaskRow> = tasks.iter().filter(|t| t.batch == batch).cloned().collect();
                    if offset == 0 {
                        self.dispatch_tasks(&step, mine, Some(batch)).await?;
                        continue;
                    }
                    let me = self.me();
                    let step = step.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(offset)).await;
                        if let Some(me) = me {
                            if let Err(e) = me.dispatch_tasks(&step, mine, Some(batch)).await {
                                tracing::error!(step_instance_id = step.id, batch, error = %e, "dispatching a staggered batch");
                                me.gateway.metrics.store_error("engine");
                            }
                        }
                    });
                }
                Ok(())
            }
        }
    }

    /// A host task may go out now: it is not waiting in a later batch of a serial rolling step.
    pub(crate) async fn may_run_now(&self, step: &StepRow, key: TaskKey) -> bool {
        // A file step still staging its sources has nothing to send yet.
        if step.transfer.as_deref().and_then(crate::files::StepTransfer::from_json).is_some_and(|t| t.needs_staging()) {
            return false;
        }
        if key.execute_count != 0 {
            return true;
        }
        let Ok(Some(r)) = self.store.step_rolling(step.id).await else { return true };
        let cfg = config(&r);
        // Rolling by source file: whatever task is pending is the current batch's.
        if !matches!(cfg.as_ref().map(|c| c.execution), Some(RollingExecution::Serial)) || cfg.and_then(|c| c.source_files()).is_some() {
            return true;
        }
        match self.store.host_tasks(step.id, 0).await {
            Ok(tasks) => tasks
                .iter()
                .find(|t| t.bk_host_id == key.host_id)
                .is_none_or(|t| t.status == host_status::RUNNING || t.batch == r.current_batch),
            Err(_) => false,
        }
    }

    /// After results arrive for a rolling step: when its current batch is done, decide
    /// between the next batch, waiting for the user, or the end of the step.
    pub(crate) async fn rolling_progress(&self, step_id: i64, r: RollingRow) -> Result<(), StoreError> {
        let Some(step) = self.store.get_step(step_id).await? else { return Ok(()) };
        if step.status != RunStatus::Running as i32 {
            return Ok(());
        }
        let tasks = self.store.host_tasks(step_id, 0).await?;
        let Some(job) = self.store.get_job(step.job_instance_id).await? else { return Ok(()) };
        let cfg = config(&r);
        let parallel = matches!(cfg.as_ref().map(|c| c.execution), Some(RollingExecution::Parallel(_)));
        let all_final = tasks.iter().all(|t| host_status::is_final(t.status));
        if job.stopping || parallel || cfg.is_none() {
            if all_final {
                self.finish_rolling_step(&step, &tasks, cfg.map(|c| c.mode), &r).await?;
            }
            return Ok(());
        }
        let cfg = cfg.expect("checked above");
        let by_file = cfg.source_files().is_some();
        // Rolling by source file, every target takes part in every batch.
        let batch: Vec<&HostTaskRow> =
            tasks.iter().filter(|t| if by_file { t.file_batch == r.current_batch } else { t.batch == r.current_batch }).collect();
        // A batch of files is over when every target's task for it is.
        let started = !by_file || batch.len() == tasks.len();
        if !started || batch.iter().any(|t| !host_status::is_final(t.status)) {
            return Ok(());
        }
        let failed = batch.iter().any(|t| !host_status::is_success(t.status));
        tracing::info!(step_instance_id = step.id, batch = r.current_batch, failed, "rolling batch finished");
        if failed && cfg.mode != RollingMode::IgnoreFailure {
            return self.end_step(&step, RunStatus::Fail).await;
        }
        let mut r = r;
        if failed && by_file {
            self.store.note_failed_batch(step.id).await?;
            r.failed_batches += 1;
        }
        if r.current_batch >= r.total_batches {
            return self.finish_rolling_step(&step, &tasks, Some(cfg.mode), &r).await;
        }
        if cfg.mode == RollingMode::ManualConfirm {
            self.store
                .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::WaitingUser as i32), start_time: None, end_time: None })
                .await?;
            self.set_job_status(job.id, RunStatus::WaitingUser).await?;
            return Ok(());
        }
        self.store
            .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::RollingWaiting as i32), start_time: None, end_time: None })
            .await?;
        self.next_batch(&step, &r).await
    }

    /// Start the batch after the current one (also `operate_step_instance` 13).
    pub(crate) async fn next_batch(&self, step: &StepRow, r: &RollingRow) -> Result<(), StoreError> {
        let batch = r.current_batch + 1;
        let by_file = config(r).and_then(|c| c.source_files()).is_some();
        if !by_file {
            self.store.set_rolling_batch(step.id, batch).await?;
        }
        self.store
            .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::Running as i32), start_time: None, end_time: None })
            .await?;
        self.set_job_status(step.job_instance_id, RunStatus::Running).await?;
        if by_file {
            let mut running = step.clone();
            running.status = RunStatus::Running as i32;
            return self.begin_file_batch(&running, batch).await;
        }
        let tasks = self.store.host_tasks(step.id, 0).await?;
        let mut running = step.clone();
        running.status = RunStatus::Running as i32;
        let prepared = self.step(step.id).await.map(|s| (*s).clone()).unwrap_or(running);
        tracing::info!(step_instance_id = step.id, batch, total = r.total_batches, "rolling batch started");
        self.dispatch_tasks(&prepared, tasks.into_iter().filter(|t| t.batch == batch).collect(), Some(batch)).await
    }

    async fn finish_rolling_step(
        &self,
        step: &StepRow,
        tasks: &[HostTaskRow],
        mode: Option<RollingMode>,
        r: &RollingRow,
    ) -> Result<(), StoreError> {
        let job = self.store.get_job(step.job_instance_id).await?;
        let stopping = job.as_ref().is_some_and(|j| j.stopping);
        let mut status = shoal_core::outcome::step_status(tasks.iter().map(|t| t.status), stopping);
        let earlier_failed = r.failed_batches > 0 && status == RunStatus::Success;
        if (status == RunStatus::Fail || earlier_failed) && mode == Some(RollingMode::IgnoreFailure) {
            status = RunStatus::IgnoreError;
        }
        self.end_step(step, status).await
    }

    /// Batch `batch` of a step rolling by source file: its sources become the step's to stage
    /// (the previous batch's files are done), every target's task waits again keyed by the
    /// batch, then the sources are staged and the tasks sent.
    async fn begin_file_batch(&self, step: &StepRow, batch: i32) -> Result<(), StoreError> {
        let Some(mut transfer) = step.transfer.as_deref().and_then(crate::files::StepTransfer::from_json) else {
            return Box::pin(self.end_step(step, RunStatus::Fail)).await;
        };
        let Some(sources) = transfer.file_batches.get(batch.max(1) as usize - 1).cloned() else {
            tracing::error!(step_instance_id = step.id, batch, "no such batch of files");
            return Box::pin(self.end_step(step, RunStatus::Fail)).await;
        };
        transfer.sources = sources;
        transfer.files.clear();
        let json = transfer.to_json();
        self.store.start_file_batch(step.id, step.execute_count, batch, &json).await?;
        let mut ready = step.clone();
        ready.transfer = Some(json);
        let ready = std::sync::Arc::new(ready);
        self.steps.lock().expect("steps lock").insert(ready.id, ready.clone());
        tracing::info!(step_instance_id = step.id, batch, hosts = transfer.sources.len(), "rolling batch of files started");
        self.gateway.events.job(step.job_instance_id);
        self.stage_then_dispatch(ready, transfer);
        Ok(())
    }

    /// Give a step its final status and move the job on.
    async fn end_step(&self, step: &StepRow, status: RunStatus) -> Result<(), StoreError> {
        let now = shoal_core::time::now_ms();
        self.store.update_step(&StepUpdate { id: step.id, status: Some(status as i32), start_time: None, end_time: Some(now) }).await?;
        self.gateway.events.job(step.job_instance_id);
        self.forget_step(step.id);
        let Some(job) = self.store.get_job(step.job_instance_id).await? else { return Ok(()) };
        tracing::info!(job_instance_id = job.id, step_instance_id = step.id, status = status as i32, "rolling step finished");
        self.advance(&job, step, status).await
    }
}
