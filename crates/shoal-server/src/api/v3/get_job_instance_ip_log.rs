//! `get_job_instance_ip_log` (one host) and `batch_get_job_instance_ip_log` (≤ 500 hosts),
//! §6. Hosts are looked up among the step's own host tasks, so logs of hosts that have since
//! left the registry are still served.
//!
//! A batch answer is written as it is read ([`Streamed`]): one host's log is read from the
//! store, masked, encoded into the body and dropped before the next host's is read, so the
//! memory an answer holds is about one host's log (at most the output cap), however many
//! hosts it covers. It carries at most `log_read_budget_bytes` of log text in all: once that
//! is spent the remaining hosts' `log_content` says so instead (ask for fewer hosts at a time).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};

use serde_json::{json, Value};
use shoal_core::limits::MAX_HOSTS_PER_LOG_QUERY;
use shoal_core::{JobError, Scope};
use shoal_proto::agent::FileHost;
use shoal_proto::jobv3::{BatchIpLogDto, BatchIpLogReq, IpLogDto, IpLogReq, ScriptHostLogDto};
use shoal_proto::status::step_type;
use shoal_proto::ErrorCode;
use shoal_store::{HostTaskRow, StepRow};

use super::job_in_scope;
use crate::api::envelope::Streamed;
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::Shared;

async fn step_of(ctx: &Ctx, scope: &Scope, job_id: Option<i64>, step_id: Option<i64>) -> Result<StepRow, JobError> {
    let job = job_in_scope(ctx, scope, job_id).await?;
    let step_id = step_id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("step_instance_id"))?;
    let step = ctx.shared.store.get_step(step_id).await.map_err(internal("get step"))?;
    step.filter(|s| s.job_instance_id == job.id).ok_or_else(|| JobError::new(ErrorCode::STEP_INSTANCE_NOT_EXIST))
}

pub(crate) fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One host task's whole log, with password values masked.
async fn host_log(shared: &Shared, step: &StepRow, host_id: i64, secrets: &[String]) -> Result<Vec<u8>, JobError> {
    let mut logs = shared.store.read_logs(step.id, step.execute_count, &[host_id]).await.map_err(internal("read logs"))?;
    Ok(crate::engine::variables::mask_bytes(logs.pop().map(|(_, b)| b).unwrap_or_default(), secrets))
}

/// Password variable values of a plan job, masked wherever a script printed them.
pub(crate) async fn passwords(ctx: &Ctx, job_id: i64) -> Result<Vec<String>, JobError> {
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
    let secrets = passwords(ctx, step.job_instance_id).await?;
    let content = text(host_log(&ctx.shared, &step, task.bk_host_id, &secrets).await?);
    if step.step_type == step_type::FILE {
        let dest = FileHost { bk_host_id: task.bk_host_id, bk_cloud_id: task.bk_cloud_id, ip: task.ip.clone() };
        return Ok(json!({
            "log_type": 2,
            "bk_host_id": task.bk_host_id,
            "bk_cloud_id": task.bk_cloud_id,
            "ip": task.ip,
            "log_content": null,
            "file_logs": crate::files::logs::file_logs(&content, &dest),
        }));
    }
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

pub async fn batch(ctx: &Ctx, params: Value) -> Result<Streamed, JobError> {
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
    let mut tasks = ctx.shared.store.host_tasks(step.id, step.execute_count).await.map_err(internal("host tasks"))?;
    let wanted: Vec<usize> = match (by_id, by_ip) {
        (Some(ids), _) => {
            let index: HashMap<i64, usize> = tasks.iter().enumerate().map(|(i, t)| (t.bk_host_id, i)).collect();
            ids.iter().filter_map(|id| index.get(id).copied()).collect()
        }
        (None, Some(ips)) => {
            let index: HashMap<(i64, &str), usize> = tasks.iter().enumerate().map(|(i, t)| ((t.bk_cloud_id, t.ip.as_str()), i)).collect();
            ips.iter().filter_map(|ip| index.get(&(ip.bk_cloud_id.unwrap_or(0), ip.ip.as_deref().unwrap_or("").trim())).copied()).collect()
        }
        (None, None) => vec![],
    };
    let hosts: Vec<(i64, i64, String)> =
        wanted.into_iter().map(|i| (tasks[i].bk_host_id, tasks[i].bk_cloud_id, std::mem::take(&mut tasks[i].ip))).collect();
    let secrets = passwords(ctx, step.job_instance_id).await?;
    let file = step.step_type == step_type::FILE;
    let skeleton = serde_json::to_value(BatchIpLogDto {
        job_instance_id: step.job_instance_id,
        step_instance_id: step.id,
        log_type: if file { 2 } else { 1 },
        script_task_logs: if file { None } else { Some(vec![]) },
        file_task_logs: if file { Some(vec![]) } else { None },
    })
    .map_err(internal("encode logs"))?;
    let reader = HostLogs { shared: ctx.shared.clone(), step, secrets, budget: ctx.shared.config.log_read_budget_bytes, spent: 0 };
    let elements = stream::unfold((reader, hosts.into_iter()), |(mut reader, mut hosts)| async move {
        let entry = reader.entry(hosts.next()?).await;
        Some((entry, (reader, hosts)))
    });
    Ok(Streamed { skeleton, list: if file { "file_task_logs" } else { "script_task_logs" }, elements: elements.boxed() })
}

/// Reads the hosts of one batch answer in turn, within its budget.
struct HostLogs {
    shared: Arc<Shared>,
    step: StepRow,
    secrets: Vec<String>,
    budget: usize,
    spent: usize,
}

impl HostLogs {
    /// One host's element of `script_task_logs`, encoded.
    async fn entry(&mut self, (host_id, bk_cloud_id, ip): (i64, i64, String)) -> Result<Vec<u8>, JobError> {
        let content = if self.spent < self.budget {
            let bytes = host_log(&self.shared, &self.step, host_id, &self.secrets).await?;
            self.spent += bytes.len();
            text(bytes)
        } else {
            let budget = self.budget;
            format!("[log omitted: this answer reached its {budget}-byte budget; ask for fewer hosts at a time]\n")
        };
        if self.step.step_type == step_type::FILE {
            let dest = FileHost { bk_host_id: host_id, bk_cloud_id, ip: ip.clone() };
            let v = json!({"bk_host_id": host_id, "bk_cloud_id": bk_cloud_id, "ip": ip, "file_logs": crate::files::logs::file_logs(&content, &dest)});
            return serde_json::to_vec(&v).map_err(internal("encode log"));
        }
        let dto = ScriptHostLogDto { host_id, bk_host_id: host_id, bk_cloud_id, ip, ipv6: None, log_content: String::new() };
        // Encoded through a `Value`, as the whole answer used to be (same key order), with
        // the log moved in rather than copied.
        let mut v = serde_json::to_value(dto).map_err(internal("encode log"))?;
        v["log_content"] = Value::String(content);
        serde_json::to_vec(&v).map_err(internal("encode log"))
    }
}
