//! `operate_job_instance` (§7.1): 1 terminate, 2 start a job created with `start_task=false`
//! (after the admission checks run again, `engine::admission::recheck`).

use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::OperateJobReq;
use shoal_proto::status::RunStatus;
use shoal_proto::ErrorCode;

use super::job_in_scope;
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::engine::admission::{self, Stage};

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: OperateJobReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Run).await?;
    let code = req.operation_code.ok_or_else(|| JobError::new(ErrorCode::ILLEGAL_PARAM))?;
    let job = job_in_scope(ctx, &scope, req.job_instance_id).await?;
    let engine = &ctx.shared.engine;
    let action = match code {
        1 => {
            if job.status == RunStatus::Stopping as i32 {
                return Err(JobError::new(ErrorCode::TASK_STOPPING_DO_NOT_REPEAT));
            }
            if job.status != RunStatus::Running as i32 && job.status != RunStatus::WaitingUser as i32 {
                return Err(JobError::new(ErrorCode::UNSUPPORTED_OPERATION));
            }
            engine.terminate_job(job.id).await.map_err(internal("terminate job"))?;
            "terminate_job"
        }
        2 => {
            if job.status != RunStatus::Blank as i32 {
                return Err(JobError::with(ErrorCode::REPEAT_START_JOB, job.id.to_string()));
            }
            // Admission is decided again now: rules, grants and accounts may have changed.
            admission::recheck(ctx, &job, Stage::DeferredStart, None).await?;
            engine.start_job(job.id).await.map_err(internal("start job"))?;
            "start_job"
        }
        _ => return Err(JobError::new(ErrorCode::ILLEGAL_PARAM)),
    };
    ctx.audit(&scope, action, job.id, json!({})).await?;
    Ok(json!({"job_instance_id": job.id}))
}
