//! Recovery of jobs a crash left between two of their changes: a job still running whose
//! steps are all final (the step ended, the job's end was not written), or whose next step
//! never started (the step before it ended, or the job was started but its first step was
//! not). Run at start and then periodically on every replica.
//!
//! A job is only touched when nothing has happened to it for [`STALL_AFTER`] (on a shared
//! store, where another replica may be between the two changes right now), and its next step
//! is started only by moving it from blank to running in one conditional update
//! ([`shoal_store::ScaleStore::claim_step_start`]), so a step is never started twice.

use std::sync::Arc;
use std::time::Duration;

use shoal_proto::status::RunStatus;
use shoal_store::{JobRow, StepRow, StoreError};
use tokio::sync::watch;

use super::Engine;

/// How long a job must have been still before it counts as stalled on a shared store.
pub const STALL_AFTER: Duration = Duration::from_secs(30);
/// How often the sweep looks.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

fn status(s: &StepRow) -> Option<RunStatus> {
    RunStatus::from_i32(s.status)
}

fn finished(s: &StepRow) -> bool {
    status(s).is_some_and(RunStatus::is_finished)
}

/// A step that is neither blank nor final: running, waiting for a person or a batch.
fn in_progress(s: &StepRow) -> bool {
    !finished(s) && s.status != RunStatus::Blank as i32
}

impl Engine {
    /// Finish or continue every stalled job; answers how many were moved on.
    pub async fn recover_stalled(&self) -> Result<usize, StoreError> {
        let shared = self.store.is_shared();
        let quiet_since = shoal_core::time::now_ms() - STALL_AFTER.as_millis() as i64;
        let mut moved = 0;
        for job in self.store.active_jobs().await? {
            let steps = self.store.get_steps(job.id).await?;
            if steps.iter().any(in_progress) {
                continue;
            }
            let last = steps.iter().filter(|s| finished(s)).max_by_key(|s| s.step_order);
            let last_change = last.and_then(|s| s.end_time).or(job.start_time).unwrap_or(job.create_time);
            if shared && last_change > quiet_since {
                continue;
            }
            if self.recover_job(&job, &steps, last).await? {
                moved += 1;
            }
        }
        if moved > 0 {
            tracing::warn!(jobs = moved, "recovered jobs a crash had left between two changes");
        }
        Ok(moved)
    }

    async fn recover_job(&self, job: &JobRow, steps: &[StepRow], last: Option<&StepRow>) -> Result<bool, StoreError> {
        if job.stopping || job.status == RunStatus::Stopping as i32 {
            tracing::info!(job_instance_id = job.id, "recovery: a stopping job with no step left running ends as stopped");
            self.finish_job(job.id, RunStatus::StopSuccess).await?;
            return Ok(true);
        }
        let next = steps
            .iter()
            .filter(|s| s.status == RunStatus::Blank as i32 && last.is_none_or(|l| s.step_order > l.step_order))
            .min_by_key(|s| s.step_order);
        let last_status = last.and_then(status);
        let goes_on = last_status.is_none_or(|s| matches!(s, RunStatus::Success | RunStatus::IgnoreError | RunStatus::Skipped));
        match (next, last_status) {
            (Some(next), _) if goes_on => {
                if !self.store.claim_step_start(next.id, shoal_core::time::now_ms()).await? {
                    return Ok(false);
                }
                tracing::info!(job_instance_id = job.id, step_instance_id = next.id, "recovery: starting the step a crash left unstarted");
                self.start_step(next.clone()).await?;
            }
            (_, None) => {
                tracing::info!(job_instance_id = job.id, "recovery: a job without steps ends");
                self.finish_job(job.id, RunStatus::Success).await?;
            }
            (_, Some(s)) => {
                let end = if goes_on { RunStatus::Success } else { s };
                tracing::info!(job_instance_id = job.id, status = end as i32, "recovery: ending a job whose steps had all ended");
                self.finish_job(job.id, end).await?;
            }
        }
        Ok(true)
    }
}

/// The sweep: first once agents had [`crate::ServerConfig::agent_lost_grace`] to reconnect
/// after a start, then every [`SWEEP_EVERY`].
pub async fn sweeper(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut wait = engine.config.agent_lost_grace();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = SWEEP_EVERY;
        if let Err(e) = engine.recover_stalled().await {
            tracing::error!(error = %e, "recovering stalled jobs");
            engine.gateway.metrics.store_error("engine");
        }
    }
}
