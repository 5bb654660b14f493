//! `get_job_instance_status` and `get_step_instance_status` (v2), from the same store rows as
//! v3's status: bk-job's `EsbJobInstanceStatusDTO` (one block per step, each host's
//! `{ip, bk_cloud_id, status}`) and `EsbStepInstanceStatusDTO` (hosts grouped by status).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::status::{host_status, RunStatus};
use shoal_proto::{lenient, ErrorCode};
use shoal_store::{JobRow, StepRow};

use super::{exec_time, scope_fields, seconds};
use crate::api::authz::{self, Role};
use crate::api::v3::job_in_scope;
use crate::api::{decode, internal, ApiResult, Ctx};

#[derive(Deserialize, Default)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    step_instance_id: Option<i64>,
}

fn finished(status: i32) -> bool {
    RunStatus::from_i32(status).is_some_and(RunStatus::is_finished)
}

/// The job a v2 status or log request names, in the caller's scope, with the plan it was
/// started from (`None` for a fast job).
pub(crate) async fn job_of(ctx: &Ctx, scope_req: &ScopeReq, job_id: Option<i64>) -> Result<(JobRow, Option<i64>), JobError> {
    let scope = Scope::resolve(scope_req)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let job_id = job_id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("job_instance_id"))?;
    let job = job_in_scope(ctx, &scope, Some(job_id)).await?;
    let plan = ctx.shared.store.job_plan_link(job.id).await.map_err(internal("job plan link"))?.map(|l| l.plan_id);
    Ok((job, plan))
}

/// The step's id in its plan (its 1-based position in the job), -1 for a fast job.
fn step_id(step: &StepRow, plan: Option<i64>) -> i64 {
    if plan.is_some() {
        i64::from(step.step_order)
    } else {
        -1
    }
}

/// The step a job is at: the first one not finished, else the last one.
fn current_step(steps: &[StepRow]) -> i64 {
    steps.iter().find(|s| !finished(s.status)).or(steps.last()).map_or(0, |s| s.id)
}

pub async fn job_instance(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let (job, plan) = job_of(ctx, &req.scope, req.job_instance_id).await?;
    let store = &ctx.shared.store;
    let steps = store.get_steps(job.id).await.map_err(internal("get steps"))?;
    if steps.is_empty() {
        return Err(JobError::new(ErrorCode::STEP_INSTANCE_NOT_EXIST));
    }
    let mut blocks = Vec::with_capacity(steps.len());
    for s in &steps {
        let hosts = store.host_tasks(s.id, s.execute_count).await.map_err(internal("host tasks"))?;
        let ip_status: Vec<Value> = hosts.iter().map(|h| json!({"ip": h.ip, "bk_cloud_id": h.bk_cloud_id, "status": h.status})).collect();
        blocks.push(json!({"step_instances": [{
            "step_instance_id": s.id, "step_id": step_id(s, plan), "name": s.name, "type": s.step_type,
            "operator": job.operator, "status": s.status, "execute_count": s.execute_count,
            "start_time": exec_time(s.start_time), "end_time": exec_time(s.end_time),
            "total_time": seconds(s.start_time, s.end_time), "create_time": exec_time(Some(s.create_time)),
            "pause": null, "step_ip_status": ip_status,
        }]}));
    }
    let mut instance = json!({});
    scope_fields(&mut instance, &job.scope_type, &job.scope_id);
    let fields = json!({
        "job_instance_id": job.id, "bk_job_id": plan.unwrap_or(-1), "status": job.status, "name": job.name,
        "operator": job.operator, "create_time": exec_time(Some(job.create_time)), "start_time": exec_time(job.start_time),
        "end_time": exec_time(job.end_time), "total_time": seconds(job.start_time, job.end_time),
        "start_way": job.launch_mode, "current_step_instance_id": current_step(&steps),
    });
    if let (Some(o), Some(f)) = (instance.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    Ok(json!({"is_finished": finished(job.status), "job_instance": instance, "blocks": blocks}))
}

pub async fn step_instance(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let (job, plan) = job_of(ctx, &req.scope, req.job_instance_id).await?;
    let step_id_req = req.step_instance_id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("step_instance_id"))?;
    let store = &ctx.shared.store;
    let step = store.get_step(step_id_req).await.map_err(internal("get step"))?;
    let step = step.filter(|s| s.job_instance_id == job.id).ok_or_else(|| JobError::new(ErrorCode::STEP_INSTANCE_NOT_EXIST))?;
    let hosts = store.host_tasks(step.id, step.execute_count).await.map_err(internal("host tasks"))?;
    let target_ips = hosts.iter().map(|h| format!("{}:{}", h.bk_cloud_id, h.ip)).collect::<Vec<_>>().join(",");
    let mut groups: BTreeMap<i32, Vec<Value>> = BTreeMap::new();
    for h in &hosts {
        groups.entry(h.status).or_default().push(json!({
            "bk_host_id": h.bk_host_id, "bk_cloud_id": h.bk_cloud_id, "bk_cloud_name": null, "ip": h.ip,
            "ipv6": null, "bk_agent_id": null, "alive": null,
        }));
    }
    let analyse: Vec<Value> = groups
        .into_iter()
        .map(|(status, ips)| {
            json!({"count": ips.len(), "ip_list": ips, "result_type": status, "result_type_text": host_status::label(status)})
        })
        .collect();
    let mut detail = json!({});
    scope_fields(&mut detail, &job.scope_type, &job.scope_id);
    let fields = json!({
        "step_instance_id": step.id, "step_id": step_id(&step, plan), "job_instance_id": job.id, "name": step.name,
        "type": step.step_type, "target_ips": target_ips, "abnormal_agent_ips": null, "operator": job.operator,
        "status": step.status, "execute_count": step.execute_count, "start_time": exec_time(step.start_time),
        "end_time": exec_time(step.end_time), "total_time": seconds(step.start_time, step.end_time),
        "total_ip_num": null, "abnormal_agent_ip_num": null, "running_ip_num": null, "fail_ip_num": null, "success_ip_num": null,
    });
    if let (Some(o), Some(f)) = (detail.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    Ok(json!({"is_finished": finished(step.status), "step_instance_detail": detail, "step_instance_analyse_result": analyse}))
}
