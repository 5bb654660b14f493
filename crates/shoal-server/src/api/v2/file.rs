//! `fast_push_file` and `push_config_file` (v2): translated into v3's `fast_transfer_file`
//! and `push_config_file`, so they take the same admission door and file engine. What v2
//! differs in, as bk-job's v2 requests have it:
//! - `account` (target account, an alias or the OS user's name) and, per source,
//!   `file_source[{files, account, ip_list, custom_query_id, target_server}]` (files on hosts);
//! - targets as top-level `ip_list` / `custom_query_id`, or a v2 `target_server`;
//! - `bk_callback_url`;
//! - the answer is `{job_instance_id, job_instance_name}`.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{AccountRefDto, ConfigFileDto, FastTransferFileReq, FileSourceDto, IpDto, PushConfigFileReq, ScopeReq, ServerDto};
use shoal_proto::lenient;

use super::execute::{account_alias, target, V2Server};
use crate::api::v3;
use crate::api::{decode, internal, ApiResult, Ctx};

/// The hosts a v2 request (or one of its sources) names: a v2 `target_server`, else the
/// top-level `ip_list` and `custom_query_id`.
#[derive(Deserialize, Default)]
struct V2Hosts {
    #[serde(default)]
    ip_list: Option<Vec<IpDto>>,
    #[serde(default, deserialize_with = "super::opt_string_list")]
    custom_query_id: Option<Vec<String>>,
    #[serde(default)]
    target_server: Option<V2Server>,
}

impl V2Hosts {
    fn server(self) -> ServerDto {
        target(self.target_server, self.ip_list, self.custom_query_id)
    }
}

#[derive(Deserialize, Default)]
struct V2Source {
    #[serde(default)]
    files: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    account: Option<String>,
    #[serde(flatten)]
    hosts: V2Hosts,
}

#[derive(Deserialize, Default)]
struct PushFileReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    task_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    account: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    file_target_path: Option<String>,
    #[serde(default)]
    file_source: Option<Vec<V2Source>>,
    #[serde(flatten)]
    hosts: V2Hosts,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    bk_callback_url: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    timeout: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    upload_speed_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    download_speed_limit: Option<i64>,
}

#[derive(Deserialize, Default)]
struct PushConfigReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    task_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    account: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    file_target_path: Option<String>,
    #[serde(default)]
    file_list: Option<Vec<ConfigFileDto>>,
    #[serde(flatten)]
    hosts: V2Hosts,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    bk_callback_url: Option<String>,
}

/// v2's answer of a started job.
fn started(v3_answer: &Value) -> Value {
    json!({"job_instance_id": v3_answer["job_instance_id"], "job_instance_name": v3_answer["job_instance_name"]})
}

/// An account given by name or alias → its alias (1241003 — account does not exist — else).
async fn alias_of(ctx: &Ctx, scope: &Scope, field: &str, account: Option<&str>) -> Result<String, JobError> {
    let name = account.map(str::trim).filter(|a| !a.is_empty()).ok_or_else(|| JobError::missing(field))?;
    account_alias(ctx, scope, name).await
}

pub async fn fast_push_file(ctx: &Ctx, params: Value) -> ApiResult {
    let req: PushFileReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let sources = req.file_source.filter(|s| !s.is_empty()).ok_or_else(|| JobError::missing("file_source"))?;
    let mut list = Vec::with_capacity(sources.len());
    for s in sources {
        let server = s.hosts.server();
        if server.is_empty() {
            return Err(JobError::missing_or_illegal("file_source.ip_list"));
        }
        let alias = alias_of(ctx, &scope, "file_source.account", s.account.as_deref()).await?;
        list.push(FileSourceDto {
            file_list: s.files,
            account: Some(AccountRefDto { id: None, alias: Some(alias) }),
            server: Some(server),
            file_type: Some(1),
            ..FileSourceDto::default()
        });
    }
    let targets = req.hosts.server();
    let v3_req = FastTransferFileReq {
        scope: req.scope,
        task_name: req.task_name,
        account_alias: Some(alias_of(ctx, &scope, "account", req.account.as_deref()).await?),
        file_target_path: req.file_target_path,
        file_source_list: Some(list),
        target_server: (!targets.is_empty()).then_some(targets),
        timeout: req.timeout,
        upload_speed_limit: req.upload_speed_limit,
        download_speed_limit: req.download_speed_limit,
        callback_url: req.bk_callback_url,
        ..FastTransferFileReq::default()
    };
    let params = serde_json::to_value(v3_req).map_err(internal("encode request"))?;
    Ok(started(&v3::file::fast_transfer(ctx, params).await?))
}

pub async fn push_config_file(ctx: &Ctx, params: Value) -> ApiResult {
    let req: PushConfigReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let targets = req.hosts.server();
    let v3_req = PushConfigFileReq {
        scope: req.scope,
        task_name: req.task_name,
        account_alias: Some(alias_of(ctx, &scope, "account", req.account.as_deref()).await?),
        file_target_path: req.file_target_path,
        file_list: req.file_list,
        target_server: (!targets.is_empty()).then_some(targets),
        callback_url: req.bk_callback_url,
        ..PushConfigFileReq::default()
    };
    let params = serde_json::to_value(v3_req).map_err(internal("encode request"))?;
    Ok(started(&v3::file::push_config(ctx, params).await?))
}
