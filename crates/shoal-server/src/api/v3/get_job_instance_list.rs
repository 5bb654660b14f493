//! `get_job_instance_list`: execution history of a scope, newest first.

use serde_json::Value;
use shoal_core::limits::{page, MAX_HISTORY_RANGE_MS};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{JobInstanceListReq, JobInstanceRow, Page};
use shoal_proto::status::task_type;
use shoal_proto::ErrorCode;
use shoal_store::JobQuery;

use crate::api::{decode, internal, ApiResult, Ctx};

/// JOB's checks, in its order: both ends of the creation-time range present and ≥ 1, the
/// start before the end, at most 30 days apart, and a known task type.
fn check(req: &JobInstanceListReq) -> Result<(i64, i64), JobError> {
    let start = req.create_time_start.filter(|t| *t >= 1).ok_or_else(|| JobError::missing_or_illegal("create_time_start"))?;
    let end = req.create_time_end.filter(|t| *t >= 1).ok_or_else(|| JobError::missing_or_illegal("create_time_end"))?;
    let range = "create_time_start|create_time_end";
    if end <= start {
        return Err(JobError::missing_or_illegal(range));
    }
    if end - start > MAX_HISTORY_RANGE_MS {
        return Err(JobError::with(ErrorCode::ILLEGAL_PARAM, range));
    }
    if req.task_type.is_some_and(|t| ![task_type::PLAN, task_type::FAST_SCRIPT, task_type::FAST_FILE].contains(&t)) {
        return Err(JobError::with(ErrorCode::ILLEGAL_PARAM, "type"));
    }
    Ok((start, end))
}

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: JobInstanceListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let (create_time_start, create_time_end) = check(&req)?;
    let (start, length) = page(req.start, req.length);
    let q = JobQuery {
        scope_type: scope.scope_type,
        scope_id: scope.scope_id,
        create_time_start: Some(create_time_start),
        create_time_end: Some(create_time_end),
        job_instance_id: req.job_instance_id,
        operator: req.operator.filter(|s| !s.is_empty()),
        name: req.name.filter(|s| !s.is_empty()),
        launch_mode: req.launch_mode,
        task_type: req.task_type,
        status: req.status,
        ip: req.ip.filter(|s| !s.is_empty()),
        cron_id: req.job_cron_id,
        start,
        length,
    };
    let (total, rows) = ctx.shared.store.list_jobs(&q).await.map_err(internal("list jobs"))?;
    let data = rows
        .into_iter()
        .map(|l| {
            let j = l.job;
            JobInstanceRow {
                bk_biz_id: None,
                bk_scope_type: j.scope_type,
                bk_scope_id: j.scope_id,
                job_instance_id: j.id,
                job_plan_id: l.job_plan_id,
                job_template_id: l.job_template_id,
                name: j.name,
                operator: j.operator,
                launch_mode: j.launch_mode,
                status: j.status,
                start_time: j.start_time,
                end_time: j.end_time,
                total_time: j.start_time.zip(j.end_time).map(|(s, e)| e - s),
                create_time: j.create_time,
                task_type: j.task_type,
            }
        })
        .collect();
    serde_json::to_value(Page { start, length, total, data }).map_err(internal("encode list"))
}
