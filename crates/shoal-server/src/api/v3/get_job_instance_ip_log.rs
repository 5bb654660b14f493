//! `get_job_instance_ip_log` (one host) and `batch_get_job_instance_ip_log` (≤ 500 hosts),
//! §6. Hosts are looked up among the step's own host tasks, so logs of hosts that have since
//! left the registry are still served.
//!
//! A batch answer holds at most `log_read_budget_bytes` of log text: hosts are read from the
//! store a few at a time, and once the budget is spent the remaining hosts' `log_content`
//! says so instead (ask for fewer hosts at a time). Without it, 200 hosts × 5 MB of output
//! would be held in memory several times over to build one answer.

use std::collections::HashMap;

use serde_json::Value;
use shoal_core::limits::MAX_HOSTS_PER_LOG_QUERY;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{BatchIpLogDto, BatchIpLogReq, IpLogDto, IpLogReq, ScriptHostLogDto};
use shoal_proto::ErrorCode;
use shoal_store::{HostTaskRow, StepRow};

use super::job_in_scope;
use crate::api::{decode, internal, ApiResult, Ctx};

/// Hosts whose logs are read from the store at once.
const READ_GROUP: usize = 8;

async fn step_of(ctx: &Ctx, scope: &Scope, job_id: Option<i64>, step_id: Option<i64>) -> Result<StepRow, JobError> {
    let job = job_in_scope(ctx, scope, job_id).await?;
    let step_id = step_id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("step_instance_id"))?;
    let step = ctx.shared.store.get_step(step_id).await.map_err(internal("get step"))?;
    step.filter(|s| s.job_instance_id == job.id).ok_or_else(|| JobError::new(ErrorCode::STEP_INSTANCE_NOT_EXIST))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Password variable values of a plan job, masked wherever a script printed them.
async fn passwords(ctx: &Ctx, job_id: i64) -> Result<Vec<String>, JobError> {
    let link = ctx.shared.store.job_plan_link(job_id).await.map_err(internal("job plan link"))?;
    Ok(link.map(|l| crate::engine::variables::passwords(&l.variables, &ctx.shared.config.sealing_key)).unwrap_or_default())
}

pub async fn one(ctx: &Ctx, params: Value) -> ApiResult {
    let req: IpLogReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let step = step_of(ctx, &scope, req.job_instance_id, req.step_instance_id).await?;
    let tasks = ctx.shared.store.host_tasks(step.id, step.execute_count).await.map_err(internal("host tasks"))?;
    let host_id = req.bk_host_id.or(req.host_id);
    let found: Option<&HostTaskRow> = match (host_id, req.bk_cloud_id, req.ip.as_deref()) {
        (Some(id), _, _) => tasks.iter().find(|t| t.bk_host_id == id),
        (None, Some(cloud), Some(ip)) => tasks.iter().find(|t| t.bk_cloud_id == cloud && t.ip == ip.trim()),
        _ => return Err(JobError::missing_or_illegal("host_id/(bk_cloud_id+ip)")),
    };
    let Some(task) = found else {
        return Err(JobError::missing_or_illegal("host_id/(bk_cloud_id+ip)"));
    };
    let mut logs = ctx.shared.store.read_logs(step.id, step.execute_count, &[task.bk_host_id]).await.map_err(internal("read logs"))?;
    let secrets = passwords(ctx, step.job_instance_id).await?;
    let content = crate::engine::variables::mask(&logs.pop().map(|(_, b)| text(b)).unwrap_or_default(), &secrets);
    serde_json::to_value(IpLogDto {
        log_type: 1,
        bk_host_id: task.bk_host_id,
        bk_cloud_id: task.bk_cloud_id,
        ip: task.ip.clone(),
        log_content: content,
        file_logs: None,
    })
    .map_err(internal("encode log"))
}

pub async fn batch(ctx: &Ctx, params: Value) -> ApiResult {
    let req: BatchIpLogReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let by_id = req.host_id_list.as_ref().filter(|l| !l.is_empty());
    let by_ip = req.ip_list.as_ref().filter(|l| !l.is_empty());
    let asked = by_id.map(Vec::len).or(by_ip.map(Vec::len)).unwrap_or(0);
    if asked == 0 || asked > MAX_HOSTS_PER_LOG_QUERY {
        return Err(JobError::missing_or_illegal("host_id_list/ip_list"));
    }
    let step = step_of(ctx, &scope, req.job_instance_id, req.step_instance_id).await?;
    let tasks = ctx.shared.store.host_tasks(step.id, step.execute_count).await.map_err(internal("host tasks"))?;
    let wanted: Vec<&HostTaskRow> = match (by_id, by_ip) {
        (Some(ids), _) => {
            let index: HashMap<i64, &HostTaskRow> = tasks.iter().map(|t| (t.bk_host_id, t)).collect();
            ids.iter().filter_map(|id| index.get(id).copied()).collect()
        }
        (None, Some(ips)) => {
            let index: HashMap<(i64, &str), &HostTaskRow> = tasks.iter().map(|t| ((t.bk_cloud_id, t.ip.as_str()), t)).collect();
            ips.iter().filter_map(|ip| index.get(&(ip.bk_cloud_id.unwrap_or(0), ip.ip.as_deref().unwrap_or("").trim())).copied()).collect()
        }
        (None, None) => vec![],
    };
    let secrets = passwords(ctx, step.job_instance_id).await?;
    let budget = ctx.shared.config.log_read_budget_bytes;
    let mut spent = 0usize;
    let mut script_task_logs = Vec::with_capacity(wanted.len());
    for group in wanted.chunks(READ_GROUP) {
        let ids: Vec<i64> = group.iter().map(|t| t.bk_host_id).collect();
        let mut logs: HashMap<i64, Vec<u8>> = if spent < budget {
            ctx.shared.store.read_logs(step.id, step.execute_count, &ids).await.map_err(internal("read logs"))?.into_iter().collect()
        } else {
            HashMap::new()
        };
        for t in group {
            let content = if spent < budget {
                let bytes = crate::engine::variables::mask_bytes(logs.remove(&t.bk_host_id).unwrap_or_default(), &secrets);
                spent += bytes.len();
                text(bytes)
            } else {
                format!("[log omitted: this answer reached its {budget}-byte budget; ask for fewer hosts at a time]\n")
            };
            script_task_logs.push(ScriptHostLogDto {
                host_id: t.bk_host_id,
                bk_host_id: t.bk_host_id,
                bk_cloud_id: t.bk_cloud_id,
                ip: t.ip.clone(),
                ipv6: None,
                log_content: content,
            });
        }
    }
    serde_json::to_value(BatchIpLogDto {
        job_instance_id: step.job_instance_id,
        step_instance_id: step.id,
        log_type: 1,
        script_task_logs: Some(script_task_logs),
        file_task_logs: None,
    })
    .map_err(internal("encode logs"))
}
