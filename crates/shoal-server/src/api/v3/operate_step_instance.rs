//! `operate_step_instance` (§7.2): 2 retry failed hosts, 3 ignore error, 6 confirm,
//! 8 retry all hosts, 9 reject a confirmation, 10 re-open it, 11 go on after a terminated
//! step, 12 skip a failed or terminated step, 13 start the next batch of a rolling step
//! that waits for the user.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::{lenient, ErrorCode};

use super::job_in_scope;
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::engine::step_ops::StepOpError;

#[derive(Deserialize)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    step_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    operation_code: Option<i32>,
}

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Run).await?;
    let job = job_in_scope(ctx, &scope, req.job_instance_id).await?;
    let step_id = req.step_instance_id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("step_instance_id"))?;
    let code = req
        .operation_code
        .filter(|c| [2, 3, 6, 8, 9, 10, 11, 12, 13].contains(c))
        .ok_or_else(|| JobError::new(ErrorCode::ILLEGAL_PARAM))?;
    let step = ctx.shared.store.get_step(step_id).await.map_err(internal("get step"))?;
    let step = step.filter(|s| s.job_instance_id == job.id).ok_or_else(|| JobError::new(ErrorCode::STEP_INSTANCE_NOT_EXIST))?;
    if code == 2 || code == 8 {
        // A retry runs the step again: admission is decided again (rules, grants, accounts).
        crate::engine::admission::recheck(ctx, &job, crate::engine::admission::Stage::Retry, Some(&step)).await?;
    }
    match ctx.shared.engine.operate_step(&job, &step, code, &ctx.caller.username).await {
        Ok(()) => {}
        Err(StepOpError::WrongState) => return Err(JobError::new(ErrorCode::UNSUPPORTED_OPERATION)),
        Err(StepOpError::NotConfirmer) => return Err(JobError::new(ErrorCode::NOT_IN_CONFIRM_USER_LIST)),
        Err(StepOpError::Store(e)) => return Err(internal("operate step")(e)),
    }
    ctx.audit(&scope, "operate_step_instance", step.id, json!({"operation_code": code, "job_instance_id": job.id})).await?;
    Ok(json!({"job_instance_id": job.id, "step_instance_id": step.id}))
}
