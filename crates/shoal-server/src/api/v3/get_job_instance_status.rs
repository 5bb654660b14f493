//! `get_job_instance_status` (§5). The answer for a finished job is kept ([`FinishedCache`]):
//! callers poll it, often many at once, and building it for a 1,000-host job (a thousand task
//! rows read and encoded) cost milliseconds each time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use serde_json::Value;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{HostResultDto, JobInstanceDto, JobInstanceStatus, JobInstanceStatusReq, StepInstanceDto};
use shoal_proto::status::RunStatus;
use shoal_proto::ErrorCode;

use super::job_in_scope;
use crate::api::{decode, internal, Ctx};

fn total(start: Option<i64>, end: Option<i64>) -> Option<i64> {
    Some(end? - start?)
}

pub async fn handle(ctx: &Ctx, params: Value) -> Result<Arc<RawValue>, JobError> {
    let req: JobInstanceStatusReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let job = job_in_scope(ctx, &scope, req.job_instance_id).await?;
    let with_hosts = req.return_ip_result.unwrap_or(false);
    let finished = RunStatus::from_i32(job.status).is_some_and(RunStatus::is_finished);
    // A finished job changes only by being revived (a retry, an ignored error), which
    // changes its status and, once it ends again, its end time: both are in the key.
    let key = CacheKey { job_instance_id: job.id, with_hosts, status: job.status, end_time: job.end_time };
    if finished {
        if let Some(answer) = ctx.shared.finished_status.get(&key) {
            return Ok(answer);
        }
    }
    let answer: Arc<RawValue> = build(ctx, job, with_hosts).await?.into();
    if finished {
        ctx.shared.finished_status.put(key, answer.clone());
    }
    Ok(answer)
}

async fn build(ctx: &Ctx, job: shoal_store::JobRow, with_hosts: bool) -> Result<Box<RawValue>, JobError> {
    let store = &ctx.shared.store;
    let steps = store.get_steps(job.id).await.map_err(internal("get steps"))?;
    if steps.is_empty() {
        return Err(JobError::new(ErrorCode::STEP_INSTANCE_NOT_EXIST));
    }
    let mut list = Vec::with_capacity(steps.len());
    for s in steps {
        let hosts = if with_hosts {
            let rows = store.host_tasks(s.id, s.execute_count).await.map_err(internal("host tasks"))?;
            Some(
                rows.into_iter()
                    .map(|h| HostResultDto {
                        bk_host_id: h.bk_host_id,
                        ip: h.ip,
                        bk_cloud_id: h.bk_cloud_id,
                        status: h.status,
                        tag: h.tag,
                        exit_code: h.exit_code,
                        error_code: h.error_code,
                        start_time: h.start_time,
                        end_time: h.end_time,
                        total_time: total(h.start_time, h.end_time),
                    })
                    .collect(),
            )
        } else {
            None
        };
        let rolling = store.step_rolling(s.id).await.map_err(internal("step rolling"))?;
        list.push(StepInstanceDto {
            current_batch: rolling.as_ref().map(|r| r.current_batch),
            total_batch: rolling.as_ref().map(|r| r.total_batches),
            step_instance_id: s.id,
            name: s.name,
            step_type: s.step_type,
            status: s.status,
            execute_count: s.execute_count,
            create_time: s.create_time,
            start_time: s.start_time,
            end_time: s.end_time,
            total_time: total(s.start_time, s.end_time),
            step_ip_result_list: hosts,
        });
    }
    let finished = RunStatus::from_i32(job.status).is_some_and(RunStatus::is_finished);
    let out = JobInstanceStatus {
        finished,
        job_instance: JobInstanceDto {
            job_instance_id: job.id,
            bk_scope_type: job.scope_type,
            bk_scope_id: job.scope_id,
            bk_biz_id: None,
            name: job.name,
            create_time: job.create_time,
            status: job.status,
            start_time: job.start_time,
            end_time: job.end_time,
            total_time: total(job.start_time, job.end_time),
        },
        step_instance_list: list,
    };
    serde_json::value::to_raw_value(&out).map_err(internal("encode status"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey {
    job_instance_id: i64,
    with_hosts: bool,
    status: i32,
    end_time: Option<i64>,
}

/// Answers for finished jobs, the most recent [`FinishedCache::ENTRIES`] (oldest dropped first).
#[derive(Default)]
pub struct FinishedCache {
    inner: Mutex<Kept>,
}

/// The answers by key, and their keys oldest first.
#[derive(Default)]
struct Kept {
    answers: HashMap<CacheKey, Arc<RawValue>>,
    order: VecDeque<CacheKey>,
}

impl FinishedCache {
    /// A 1,000-host answer is about 150 KB.
    const ENTRIES: usize = 64;

    fn get(&self, key: &CacheKey) -> Option<Arc<RawValue>> {
        self.inner.lock().expect("status cache").answers.get(key).cloned()
    }

    fn put(&self, key: CacheKey, answer: Arc<RawValue>) {
        let mut kept = self.inner.lock().expect("status cache");
        if kept.answers.insert(key, answer).is_none() {
            kept.order.push_back(key);
        }
        while kept.order.len() > Self::ENTRIES {
            if let Some(old) = kept.order.pop_front() {
                kept.answers.remove(&old);
            }
        }
    }
}
