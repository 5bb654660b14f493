//! `get_job_instance_log` (v2): every step of a job, its hosts grouped by (status, tag),
//! each host with its whole log, as bk-job's `EsbGetJobInstanceLogResourceImpl` answers:
//! `[{is_finished, step_instance_id, name, status, step_results: [{ip_status, tag,
//! ip_logs: [{start_time, end_time, total_time, execute_count, error_code, exit_code,
//! log_content, bk_cloud_id, ip}]}]}]`, the log HTML-escaped (`&`, `<`, `>`) as bk-job does.
//!
//! A file step's host log is its file logs as text, one line per file (v3's
//! `file_logs[].log_content`). Password values of a plan job are masked, as in v3's logs. The answer carries at most
//! `log_read_budget_bytes` of log text; past it a host's `log_content` says so instead.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_proto::agent::FileHost;
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::lenient;
use shoal_proto::status::{step_type, RunStatus};
use shoal_store::HostTaskRow;

use super::status::job_of;
use super::{exec_time, seconds};
use crate::api::v3::get_job_instance_ip_log::{passwords, text};
use crate::api::{decode, internal, ApiResult, Ctx};

#[derive(Deserialize, Default)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    job_instance_id: Option<i64>,
}

/// A file task's log as text, as bk-job's `FileExecuteObjectLogContent.getContent` joins
/// its file logs: each file's line (v3's `file_logs[].log_content`), one per line.
fn file_log_text(log: &str, h: &HostTaskRow) -> String {
    let dest = FileHost { bk_host_id: h.bk_host_id, bk_cloud_id: h.bk_cloud_id, ip: h.ip.clone() };
    crate::files::logs::file_logs(log, &dest).iter().filter_map(|l| l["log_content"].as_str()).map(|l| format!("{l}\n")).collect()
}

/// bk-job's `Utils.htmlEncode`: a blank log is `""`; `&`, `>` and `<` become entities.
pub(crate) fn html_encode(s: &str) -> String {
    if s.trim().is_empty() {
        return String::new();
    }
    s.replace('&', "&amp;").replace('>', "&gt;").replace('<', "&lt;")
}

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let (job, _) = job_of(ctx, &req.scope, req.job_instance_id).await?;
    let store = &ctx.shared.store;
    let secrets = passwords(ctx, job.id).await?;
    let budget = ctx.shared.config.log_read_budget_bytes;
    let mut spent = 0usize;
    let mut out = Vec::new();
    for step in store.get_steps(job.id).await.map_err(internal("get steps"))? {
        let tasks = store.host_tasks(step.id, step.execute_count).await.map_err(internal("host tasks"))?;
        let mut groups: BTreeMap<(i32, String), Vec<&HostTaskRow>> = BTreeMap::new();
        for t in &tasks {
            groups.entry((t.status, t.tag.clone())).or_default().push(t);
        }
        let mut results = Vec::with_capacity(groups.len());
        for ((status, tag), hosts) in groups {
            let mut ip_logs = Vec::with_capacity(hosts.len());
            for h in hosts {
                // One host's log at a time: what is held is bounded by the budget plus one log.
                let content = if spent < budget {
                    let mut read = store.read_logs(step.id, step.execute_count, &[h.bk_host_id]).await.map_err(internal("read logs"))?;
                    let bytes = crate::engine::variables::mask_bytes(read.pop().map(|(_, b)| b).unwrap_or_default(), &secrets);
                    spent += bytes.len();
                    let log = text(bytes);
                    if step.step_type == step_type::FILE {
                        html_encode(&file_log_text(&log, h))
                    } else {
                        html_encode(&log)
                    }
                } else {
                    format!("[log omitted: this answer reached its {budget}-byte budget; read it with batch_get_job_instance_ip_log]\n")
                };
                ip_logs.push(json!({
                    "start_time": exec_time(h.start_time), "end_time": exec_time(h.end_time),
                    "total_time": seconds(h.start_time, h.end_time), "execute_count": h.execute_count,
                    "error_code": h.error_code, "exit_code": h.exit_code, "log_content": content,
                    "bk_cloud_id": h.bk_cloud_id, "ip": h.ip,
                }));
            }
            results.push(json!({"ip_status": status, "tag": tag, "ip_logs": ip_logs}));
        }
        out.push(json!({
            "is_finished": RunStatus::from_i32(step.status).is_some_and(RunStatus::is_finished),
            "step_instance_id": step.id, "name": step.name, "status": step.status, "step_results": results,
        }));
    }
    Ok(json!(out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn logs_are_html_encoded_as_bk_job_does() {
        assert_eq!(super::html_encode("a<b>&c\n"), "a&lt;b&gt;&amp;c\n");
        assert_eq!(super::html_encode("  \n"), "");
    }
}
