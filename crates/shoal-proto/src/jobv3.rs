//! JOB v3 open API: the envelope and the request/response DTOs of the APIs Shoal serves.
//!
//! Requests derive `Deserialize` with lenient field decoders (query strings carry text) and
//! ignore unknown fields; responses derive `Serialize` with JOB's field names. Nested
//! nullable fields are written as explicit `null`, as JOB's Jackson DTOs do.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lenient;

/// The v3 response envelope (`EsbResp`, NON_NULL at the top level).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T = Value> {
    pub result: bool,
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<Value>,
}

/// Scope fields shared by every business-scoped request (§2.1).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ScopeReq {
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub bk_scope_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub bk_scope_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub bk_biz_id: Option<i64>,
}

/// `ip` element (`EsbIpDTO`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct IpDto {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub bk_cloud_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub bk_host_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct DynamicGroupRef {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TopoNode {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub node_type: Option<String>,
}

/// Target `server` object (`EsbServerV3DTO`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ServerDto {
    #[serde(default, deserialize_with = "lenient::opt_i64_list", skip_serializing_if = "Option::is_none")]
    pub host_id_list: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<IpDto>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_group_list: Option<Vec<DynamicGroupRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topo_node_list: Option<Vec<TopoNode>>,
}

impl ServerDto {
    /// Any of host ids / ips / topo nodes / dynamic groups non-empty.
    pub fn is_empty(&self) -> bool {
        fn empty<T>(v: &Option<Vec<T>>) -> bool {
            v.as_ref().is_none_or(|v| v.is_empty())
        }
        empty(&self.host_id_list) && empty(&self.ip_list) && empty(&self.dynamic_group_list) && empty(&self.topo_node_list)
    }
}

/// `fast_execute_script` request (§4.1).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FastExecuteScriptReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub script_version_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub script_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub script_content: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub script_language: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub script_param: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub is_param_sensitive: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub account_alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_server: Option<ServerDto>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_bool", skip_serializing_if = "Option::is_none")]
    pub start_task: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_config: Option<Value>,
}

/// `fast_execute_script` / `execute_job_plan` / `operate_job_instance` answer (`EsbJobExecuteV3DTO`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobExecuteResp {
    pub job_instance_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_instance_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_instance_id: Option<i64>,
}

/// `get_job_instance_status` request (§5.1).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct JobInstanceStatusReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub return_ip_result: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInstanceStatus {
    pub finished: bool,
    pub job_instance: JobInstanceDto,
    pub step_instance_list: Vec<StepInstanceDto>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInstanceDto {
    pub job_instance_id: i64,
    pub bk_scope_type: String,
    pub bk_scope_id: String,
    /// JOB's legacy scope field; null, as bk-job writes it with its compatibility switch off.
    #[serde(default)]
    pub bk_biz_id: Option<i64>,
    pub name: String,
    pub create_time: i64,
    pub status: i32,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub total_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInstanceDto {
    pub step_instance_id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub step_type: i32,
    pub status: i32,
    pub execute_count: i32,
    pub create_time: i64,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub total_time: Option<i64>,
    /// Null unless host results were asked for (`return_ip_result`).
    #[serde(default)]
    pub step_ip_result_list: Option<Vec<HostResultDto>>,
    /// Rolling steps only: the batch running now (1-based) and how many there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_batch: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_batch: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostResultDto {
    pub bk_host_id: i64,
    pub ip: String,
    pub bk_cloud_id: i64,
    pub status: i32,
    pub tag: String,
    pub exit_code: i32,
    pub error_code: i32,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub total_time: Option<i64>,
}

/// `get_job_instance_ip_log` request (§6.1). `host_id` is the gateway doc's name for `bk_host_id`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct IpLogReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub step_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub bk_host_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub host_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub bk_cloud_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpLogDto {
    pub log_type: i32,
    pub bk_host_id: i64,
    pub bk_cloud_id: i64,
    pub ip: String,
    pub log_content: String,
    #[serde(default)]
    pub file_logs: Option<Vec<Value>>,
}

/// `batch_get_job_instance_ip_log` request (§6.2).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BatchIpLogReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub step_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64_list", skip_serializing_if = "Option::is_none")]
    pub host_id_list: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_list: Option<Vec<IpDto>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchIpLogDto {
    pub job_instance_id: i64,
    pub step_instance_id: i64,
    pub log_type: i32,
    #[serde(default)]
    pub script_task_logs: Option<Vec<ScriptHostLogDto>>,
    #[serde(default)]
    pub file_task_logs: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptHostLogDto {
    pub host_id: i64,
    pub bk_host_id: i64,
    pub bk_cloud_id: i64,
    pub ip: String,
    pub ipv6: Option<String>,
    pub log_content: String,
}

/// `operate_job_instance` request (§7.1).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OperateJobReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    pub operation_code: Option<i32>,
}

/// `get_job_instance_list` request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct JobInstanceListReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub create_time_start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub create_time_end: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub job_cron_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub launch_mode: Option<i32>,
    #[serde(rename = "type", default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub task_type: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
}

/// One row of `get_job_instance_list` (`EsbTaskInstanceV3DTO`: bk-job's code names the id
/// `job_instance_id`, where its doc says `id`). Absent values are written as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInstanceRow {
    pub bk_biz_id: Option<i64>,
    pub bk_scope_type: String,
    pub bk_scope_id: String,
    pub job_instance_id: i64,
    pub job_plan_id: Option<i64>,
    pub job_template_id: Option<i64>,
    pub name: String,
    pub operator: String,
    pub launch_mode: i32,
    pub status: i32,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub total_time: Option<i64>,
    pub create_time: i64,
    #[serde(rename = "type")]
    pub task_type: i32,
}

/// Page of results (`EsbPageDataV3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub start: i64,
    pub length: i64,
    pub total: i64,
    pub data: Vec<T>,
}

/// Account object (§10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountDto {
    pub id: i64,
    pub bk_scope_type: String,
    pub bk_scope_id: String,
    pub account: String,
    pub alias: String,
    pub category: i32,
    #[serde(rename = "type")]
    pub account_type: i32,
    pub os: Option<String>,
    pub description: Option<String>,
    pub db_system_account_id: Option<i64>,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CreateAccountReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub account_type: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub category: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AccountListReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub category: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DeleteAccountReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
}

/// Callback body (`JobCallbackDTO`): JOB's code writes `step_instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackBody {
    pub job_instance_id: i64,
    pub status: i32,
    #[serde(alias = "step_instance_list")]
    pub step_instances: Vec<CallbackStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackStep {
    pub step_instance_id: i64,
    pub status: i32,
}

impl CallbackBody {
    /// The JSON posted when job `job_instance_id` ends with `status`; `steps` are its steps'
    /// (id, status) in order.
    pub fn encode(job_instance_id: i64, status: i32, steps: impl IntoIterator<Item = (i64, i32)>) -> String {
        let step_instances = steps.into_iter().map(|(step_instance_id, status)| CallbackStep { step_instance_id, status }).collect();
        serde_json::to_string(&CallbackBody { job_instance_id, status, step_instances }).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_ids_may_be_strings() {
        let r: FastExecuteScriptReq = serde_json::from_str(
            r#"{"bk_biz_id":"2","bk_username":"admin","operator":"admin","script_content":"ZWNobw==",
                "script_language":1,"target_server":{"ip_list":[{"bk_cloud_id":0,"ip":"10.0.0.1"}]},
                "account_alias":"root","uin":"admin","timeout":"60"}"#,
        )
        .unwrap();
        assert_eq!(r.scope.bk_biz_id, Some(2));
        assert_eq!(r.timeout, Some(60));
        assert!(!r.target_server.unwrap().is_empty());
    }

    #[test]
    fn empty_server_is_empty() {
        let s: ServerDto = serde_json::from_str(r#"{"host_id_list":[],"ip_list":[]}"#).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn callback_reads_both_array_names() {
        let a: CallbackBody =
            serde_json::from_str(r#"{"job_instance_id":1,"status":3,"step_instance_list":[{"step_instance_id":2,"status":3}]}"#).unwrap();
        assert_eq!(a.step_instances.len(), 1);
        let out = serde_json::to_string(&a).unwrap();
        assert!(out.contains("\"step_instances\""));
    }
}

/// `account` of a file source (`{id | alias}`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AccountRefDto {
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// One element of `fast_transfer_file.file_source_list` (`EsbFileSourceV3DTO`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FileSourceDto {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_list: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRefDto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerDto>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub file_type: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub file_source_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub file_source_code: Option<String>,
}

/// `fast_transfer_file` request (`EsbFastTransferFileV3Request`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FastTransferFileReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub account_alias: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub file_target_path: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub file_target_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_source_list: Option<Vec<FileSourceDto>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_server: Option<ServerDto>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub upload_speed_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub download_speed_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32", skip_serializing_if = "Option::is_none")]
    pub transfer_mode: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_config: Option<Value>,
    #[serde(default, deserialize_with = "lenient::opt_bool", skip_serializing_if = "Option::is_none")]
    pub start_task: Option<bool>,
}

/// One file of `push_config_file.file_list`: a name and its Base64 content.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ConfigFileDto {
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `push_config_file` request (`EsbPushConfigFileV3Request`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PushConfigFileReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub account_alias: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub file_target_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_list: Option<Vec<ConfigFileDto>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_server: Option<ServerDto>,
    #[serde(default, deserialize_with = "lenient::opt_string", skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// `generate_local_file_upload_url` request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct UploadUrlReq {
    #[serde(flatten)]
    pub scope: ScopeReq,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name_list: Option<Vec<String>>,
}
