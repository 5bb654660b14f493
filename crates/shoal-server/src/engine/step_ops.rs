//! Operations on one step of a running or finished job (`operate_step_instance`):
//! confirm / reject / re-confirm a confirmation step, retry failed or all hosts, ignore an
//! error, go on after a terminated step, skip a step.

use shoal_proto::agent::TaskKey;
use shoal_proto::status::{host_status, step_type, RunStatus};
use shoal_store::{JobRow, JobUpdate, StepRow, StepUpdate, StoreError, TargetHost};

use super::Engine;

/// Why an operation was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StepOpError {
    /// The step or job is not in a state that allows it (JOB: 1241003).
    WrongState,
    /// Only the step's confirmers may confirm it (JOB: 1244016).
    NotConfirmer,
    Store(String),
}

impl From<StoreError> for StepOpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => StepOpError::WrongState,
            other => StepOpError::Store(other.to_string()),
        }
    }
}

type OpResult = Result<(), StepOpError>;

fn is(status: i32, s: RunStatus) -> bool {
    status == s as i32
}

impl Engine {
    async fn revive(&self, job: &JobRow, to: RunStatus) -> Result<(), StoreError> {
        self.store
            .update_job(&JobUpdate {
                id: job.id,
                status: Some(to as i32),
                stopping: Some(false),
                expect_status: vec![job.status],
                ..Default::default()
            })
            .await
    }

    /// Run an operation code against a step of a job. `user` is the authenticated
    /// principal's name (`Caller::username`): a Shoal user, a person relayed by a trusted
    /// gateway app, or `app:<code>` for an app acting as itself — never a name an ordinary app
    /// merely claimed, so a confirmation's `users` list cannot be passed by claiming a name.
    pub async fn operate_step(&self, job: &JobRow, step: &StepRow, code: i32, user: &str) -> OpResult {
        let out = self.operate(job, step, code, user).await;
        self.gateway.events.job(job.id);
        out
    }

    async fn operate(&self, job: &JobRow, step: &StepRow, code: i32, user: &str) -> OpResult {
        match code {
            6 => self.confirm(job, step, user).await,
            9 => self.reject(job, step, user).await,
            10 => self.reconfirm(job, step).await,
            2 => self.retry(job, step, false).await,
            8 => self.retry(job, step, true).await,
            3 => self.ignore_error(job, step).await,
            11 => self.next_step(job, step).await,
            12 => self.skip(job, step).await,
            13 => self.continue_rolling(job, step).await,
            _ => Err(StepOpError::WrongState),
        }
    }

    async fn confirm(&self, job: &JobRow, step: &StepRow, user: &str) -> OpResult {
        if step.step_type != step_type::CONFIRM || !is(step.status, RunStatus::WaitingUser) || !is(job.status, RunStatus::WaitingUser) {
            return Err(StepOpError::WrongState);
        }
        let extras = self.store.step_extras(step.id).await?;
        if !extras.confirm_users.is_empty() && !extras.confirm_users.iter().any(|u| u == user) {
            return Err(StepOpError::NotConfirmer);
        }
        self.store.set_step_confirmation(step.id, user, "confirmed").await?;
        let now = shoal_core::time::now_ms();
        self.store
            .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::Success as i32), start_time: None, end_time: Some(now) })
            .await?;
        self.set_job_status(job.id, RunStatus::Running).await?;
        tracing::info!(job_instance_id = job.id, step_instance_id = step.id, user, "step confirmed");
        let job = self.store.get_job(job.id).await?.ok_or(StepOpError::WrongState)?;
        Ok(self.advance(&job, step, RunStatus::Success).await?)
    }

    async fn reject(&self, job: &JobRow, step: &StepRow, user: &str) -> OpResult {
        if step.step_type != step_type::CONFIRM || !is(step.status, RunStatus::WaitingUser) {
            return Err(StepOpError::WrongState);
        }
        let extras = self.store.step_extras(step.id).await?;
        if !extras.confirm_users.is_empty() && !extras.confirm_users.iter().any(|u| u == user) {
            return Err(StepOpError::NotConfirmer);
        }
        self.store.set_step_confirmation(step.id, user, "rejected").await?;
        let now = shoal_core::time::now_ms();
        self.store
            .update_step(&StepUpdate {
                id: step.id,
                status: Some(RunStatus::ConfirmTerminated as i32),
                start_time: None,
                end_time: Some(now),
            })
            .await?;
        tracing::info!(job_instance_id = job.id, step_instance_id = step.id, user, "confirmation rejected");
        Ok(self.finish_job(job.id, RunStatus::ConfirmTerminated).await?)
    }

    async fn reconfirm(&self, job: &JobRow, step: &StepRow) -> OpResult {
        if step.step_type != step_type::CONFIRM
            || !is(step.status, RunStatus::ConfirmTerminated)
            || !is(job.status, RunStatus::ConfirmTerminated)
        {
            return Err(StepOpError::WrongState);
        }
        self.revive(job, RunStatus::WaitingUser).await?;
        self.store
            .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::WaitingUser as i32), start_time: None, end_time: None })
            .await?;
        Ok(())
    }

    /// A failed (or terminated) script or file step runs again: all hosts, or only those that did
    /// not succeed (the others show "succeeded before", 3).
    async fn retry(&self, job: &JobRow, step: &StepRow, all: bool) -> OpResult {
        let failed_step = is(step.status, RunStatus::Fail) || is(step.status, RunStatus::StopSuccess);
        let job_over = is(job.status, RunStatus::Fail) || is(job.status, RunStatus::StopSuccess);
        let runs_on_hosts = step.step_type == step_type::SCRIPT || step.step_type == step_type::FILE;
        if !runs_on_hosts || !failed_step || !job_over {
            return Err(StepOpError::WrongState);
        }
        let tasks = self.store.host_tasks(step.id, step.execute_count).await?;
        let next = step.execute_count + 1;
        let rows: Vec<(TargetHost, i32)> = tasks
            .iter()
            .map(|t| {
                let keep = !all && host_status::is_success(t.status);
                (
                    TargetHost { bk_host_id: t.bk_host_id, ip: t.ip.clone(), bk_cloud_id: t.bk_cloud_id },
                    if keep { host_status::LAST_SUCCESS } else { host_status::WAITING },
                )
            })
            .collect();
        // A step rolling by source file runs again with all its files at once.
        if let Some(mut t) = step.transfer.as_deref().and_then(crate::files::StepTransfer::from_json).filter(|t| !t.file_batches.is_empty())
        {
            t.sources = t.file_batches.concat();
            t.files.clear();
            self.store.set_step_transfer(step.id, &t.to_json()).await?;
        }
        self.revive(job, RunStatus::Running).await?;
        self.store.restart_step(step.id, next, &rows).await?;
        let fresh = self.store.get_step(step.id).await?.ok_or(StepOpError::WrongState)?;
        tracing::info!(job_instance_id = job.id, step_instance_id = step.id, execute_count = next, all, "retrying step");
        let fresh = self.prepare(fresh).await?;
        self.steps.lock().expect("steps lock").insert(fresh.id, fresh.clone());
        if rows.iter().all(|(_, s)| *s == host_status::LAST_SUCCESS) {
            // Nothing to run: the step is done at once.
            self.on_final(&[TaskKey::new(step.id, next, 0)]).await;
            return Ok(());
        }
        Ok(self.dispatch_step(&fresh).await?)
    }

    async fn ignore_error(&self, job: &JobRow, step: &StepRow) -> OpResult {
        if !is(step.status, RunStatus::Fail) || !is(job.status, RunStatus::Fail) {
            return Err(StepOpError::WrongState);
        }
        self.revive(job, RunStatus::Running).await?;
        self.store
            .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::IgnoreError as i32), start_time: None, end_time: None })
            .await?;
        let job = self.store.get_job(job.id).await?.ok_or(StepOpError::WrongState)?;
        Ok(self.advance(&job, step, RunStatus::IgnoreError).await?)
    }

    async fn next_step(&self, job: &JobRow, step: &StepRow) -> OpResult {
        if !is(step.status, RunStatus::StopSuccess) || !is(job.status, RunStatus::StopSuccess) {
            return Err(StepOpError::WrongState);
        }
        self.revive(job, RunStatus::Running).await?;
        let job = self.store.get_job(job.id).await?.ok_or(StepOpError::WrongState)?;
        Ok(self.advance(&job, step, RunStatus::Success).await?)
    }

    async fn skip(&self, job: &JobRow, step: &StepRow) -> OpResult {
        let stuck = is(step.status, RunStatus::Fail) || is(step.status, RunStatus::StopSuccess);
        if !stuck || !(is(job.status, RunStatus::Fail) || is(job.status, RunStatus::StopSuccess)) {
            return Err(StepOpError::WrongState);
        }
        self.revive(job, RunStatus::Running).await?;
        self.store
            .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::Skipped as i32), start_time: None, end_time: None })
            .await?;
        let job = self.store.get_job(job.id).await?.ok_or(StepOpError::WrongState)?;
        Ok(self.advance(&job, step, RunStatus::Skipped).await?)
    }

    async fn continue_rolling(&self, job: &JobRow, step: &StepRow) -> OpResult {
        let rolling = self.store.step_rolling(step.id).await?;
        let Some(r) = rolling.filter(|_| is(step.status, RunStatus::WaitingUser) && is(job.status, RunStatus::WaitingUser)) else {
            return Err(StepOpError::WrongState);
        };
        Ok(self.next_batch(step, &r).await?)
    }
}
