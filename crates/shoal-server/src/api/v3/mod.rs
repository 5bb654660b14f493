//! JOB v3 APIs, one module per API family.

mod account;
pub mod cron;
pub(crate) mod dangerous_rule;
pub(crate) mod fast_execute_script;
pub mod file;
pub(crate) mod file_source;
pub(crate) mod get_job_instance_ip_log;
mod get_job_instance_list;
pub mod get_job_instance_status;
pub mod job_plan;
pub(crate) mod operate_job_instance;
mod operate_step_instance;
pub mod script;
pub(crate) mod server;

use axum::http::Method;
use serde_json::Value;

use super::envelope::{method_not_allowed, not_found};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::{ApiResult, Ctx, Reply};
use shoal_core::JobError;

/// Whether an API is a query (served on GET and POST) or a mutation (POST only).
fn is_query(name: &str) -> bool {
    name.starts_with("get_")
}

fn check_method(method: &Method, name: &str) -> Result<(), JobError> {
    if *method != Method::POST && !(is_query(name) && *method == Method::GET) {
        return Err(method_not_allowed());
    }
    Ok(())
}

/// APIs whose answer is written piece by piece ([`Reply::Streamed`]).
pub fn streams(name: &str) -> bool {
    name == "batch_get_job_instance_ip_log"
}

pub async fn call_streamed(ctx: &Ctx, method: &Method, name: &str, params: Value) -> Result<Reply, JobError> {
    check_method(method, name)?;
    match name {
        "batch_get_job_instance_ip_log" => get_job_instance_ip_log::batch(ctx, params).await.map(Reply::Streamed),
        other => Err(not_found(other)),
    }
}

/// Whether `name` answers with data encoded once and kept ([`call_encoded`]).
pub fn answers_encoded(name: &str) -> bool {
    name == "get_job_instance_status"
}

/// The APIs of [`answers_encoded`].
pub async fn call_encoded(ctx: &Ctx, method: &Method, name: &str, params: Value) -> Result<Arc<RawValue>, JobError> {
    check_method(method, name)?;
    match name {
        "get_job_instance_status" => get_job_instance_status::handle(ctx, params).await,
        other => Err(not_found(other)),
    }
}

pub async fn call(ctx: &Ctx, method: &Method, name: &str, params: Value) -> ApiResult {
    check_method(method, name)?;
    match name {
        "fast_execute_script" => fast_execute_script::handle(ctx, params).await,
        "fast_transfer_file" => file::fast_transfer(ctx, params).await,
        "push_config_file" => file::push_config(ctx, params).await,
        "generate_local_file_upload_url" => file::upload_url(ctx, params).await,
        "create_credential" => file_source::create_credential(ctx, params).await,
        "update_credential" => file_source::update_credential(ctx, params).await,
        "get_credential_detail" => file_source::credential_detail(ctx, params).await,
        "get_credential_list" => file_source::credential_list(ctx, params).await,
        "create_file_source" => file_source::create_file_source(ctx, params).await,
        "update_file_source" => file_source::update_file_source(ctx, params).await,
        "get_file_source_detail" => file_source::file_source_detail(ctx, params).await,
        "get_file_source_list" => file_source::file_source_list(ctx, params).await,
        "get_job_instance_ip_log" => get_job_instance_ip_log::one(ctx, params).await,
        "operate_job_instance" => operate_job_instance::handle(ctx, params).await,
        "operate_step_instance" => operate_step_instance::handle(ctx, params).await,
        "get_job_template_list" => job_plan::template_list(ctx, params).await,
        "get_job_plan_list" => job_plan::plan_list(ctx, params).await,
        "get_job_plan_detail" => job_plan::plan_detail(ctx, params).await,
        "execute_job_plan" => job_plan::execute(ctx, params).await,
        "get_job_instance_global_var_value" => job_plan::global_var_value(ctx, params).await,
        "get_job_instance_list" => get_job_instance_list::handle(ctx, params).await,
        "create_account" => account::create(ctx, params).await,
        "get_account_list" => account::list(ctx, params).await,
        "delete_account" => account::delete(ctx, params).await,
        "create_dangerous_rule" => dangerous_rule::create(ctx, params).await,
        "update_dangerous_rule" => dangerous_rule::update(ctx, params).await,
        "delete_dangerous_rule" => dangerous_rule::delete(ctx, params).await,
        "enable_dangerous_rule" => dangerous_rule::set_status(ctx, params, true).await,
        "disable_dangerous_rule" => dangerous_rule::set_status(ctx, params, false).await,
        "get_dangerous_rule_list" => dangerous_rule::list(ctx, params).await,
        "check_script" => dangerous_rule::check_script(ctx, params).await,
        "save_cron" => cron::save(ctx, params).await,
        "update_cron_status" => cron::update_status(ctx, params).await,
        "get_cron_list" => cron::list(ctx, params).await,
        "get_cron_detail" => cron::detail(ctx, params).await,
        "delete_cron" => cron::delete(ctx, params).await,
        other => {
            if let Some(op) = public_op(other) {
                if let Some(out) = script::call(ctx, script::Family::Public, &op, params).await {
                    return out;
                }
                return Err(not_found(other));
            }
            match script::call(ctx, script::Family::Business, other, params).await {
                Some(out) => out,
                None => Err(not_found(other)),
            }
        }
    }
}

/// `publish_public_script_version` → `publish_script_version`, and so on.
fn public_op(name: &str) -> Option<String> {
    name.contains("_public_script").then(|| name.replacen("_public_script", "_script", 1))
}

/// Load a job in the caller's scope; a job of another scope does not exist for them.
pub(crate) async fn job_in_scope(
    ctx: &Ctx,
    scope: &shoal_core::Scope,
    id: Option<i64>,
) -> Result<shoal_store::JobRow, shoal_core::JobError> {
    use shoal_core::JobError;
    use shoal_proto::ErrorCode;
    let id = id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("job_instance_id"))?;
    let job = ctx.shared.store.get_job(id).await.map_err(super::internal("get job"))?;
    match job {
        Some(j) if j.scope_type == scope.scope_type && j.scope_id == scope.scope_id => Ok(j),
        _ => Err(JobError::new(ErrorCode::TASK_INSTANCE_NOT_EXIST)),
    }
}
