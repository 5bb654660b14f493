//! `get_job_instance_list`: execution history of a scope, newest first.

use serde_json::Value;
use shoal_core::limits::page;
use shoal_core::Scope;
use shoal_proto::jobv3::{JobInstanceListReq, JobInstanceRow, Page};
use shoal_store::JobQuery;

use crate::api::{decode, internal, ApiResult, Ctx};

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: JobInstanceListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    let q = JobQuery {
        scope_type: scope.scope_type,
        scope_id: scope.scope_id,
        create_time_start: req.create_time_start,
        create_time_end: req.create_time_end,
        job_instance_id: req.job_instance_id,
        operator: req.operator.filter(|s| !s.is_empty()),
        name: req.name.filter(|s| !s.is_empty()),
        launch_mode: req.launch_mode,
        task_type: req.task_type,
        status: req.status,
        ip: req.ip.filter(|s| !s.is_empty()),
        start,
        length,
    };
    // A cron job id names nothing until cron jobs exist: the page is empty.
    let (total, rows) =
        if req.job_cron_id.is_some() { (0, vec![]) } else { ctx.shared.store.list_jobs(&q).await.map_err(internal("list jobs"))? };
    let data = rows
        .into_iter()
        .map(|j| JobInstanceRow {
            bk_scope_type: j.scope_type,
            bk_scope_id: j.scope_id,
            id: j.id,
            job_template_id: None,
            job_plan_id: None,
            name: j.name,
            operator: j.operator,
            create_time: j.create_time,
            start_time: j.start_time,
            end_time: j.end_time,
            total_time: j.start_time.zip(j.end_time).map(|(s, e)| e - s),
            launch_mode: j.launch_mode,
            status: j.status,
            task_type: j.task_type,
            task_status: j.status,
            task_type_compat: j.task_type,
        })
        .collect();
    serde_json::to_value(Page { start, length, total, data }).map_err(internal("encode list"))
}
