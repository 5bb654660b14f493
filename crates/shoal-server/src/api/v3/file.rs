//! File distribution APIs: `generate_local_file_upload_url` (upload slots and their URLs),
//! `fast_transfer_file` (a file step from uploaded files) and `push_config_file` (a file step
//! from Base64 content in the call). Every file becomes a blob first; the step then names
//! blobs only (see `crate::files`).

use serde_json::{json, Value};
use shoal_core::validate::{self, AccountRef};
use shoal_core::{JobError, Scope};
use shoal_proto::code::ErrorCode;
use shoal_proto::jobv3::{FastTransferFileReq, PushConfigFileReq, ServerDto, UploadUrlReq};
use shoal_proto::status::{launch_mode, task_type};

use crate::api::authz::{self, Role};
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::engine::admission::{self, FileStep, JobRequest, StepRequest};
use crate::files::{blobs, HostSource, StepFile, StepTransfer, DEFAULT_MODE};
use shoal_proto::agent::FileHost;

/// How long an upload URL may be used.
const UPLOAD_URL_TTL_MS: i64 = 24 * 3600 * 1000;
/// JOB's fixed timeout of a pushed configuration file.
const PUSH_CONFIG_TIMEOUT_SECS: i64 = 7200;

/// `file_name_list` → `url_map {name: {upload_url, path}}`.
pub async fn upload_url(ctx: &Ctx, params: Value) -> ApiResult {
    let req: UploadUrlReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Run).await?;
    let names = req.file_name_list.filter(|l| !l.is_empty()).ok_or_else(|| JobError::missing("file_name_list"))?;
    let origin = ctx.origin.clone().ok_or_else(|| JobError::bad_request("the request has no Host header to build upload URLs on"))?;
    let now = shoal_core::time::now_ms();
    let user = if ctx.caller.username.is_empty() { ctx.caller.app_code.clone() } else { ctx.caller.username.clone() };
    let mut rows = Vec::with_capacity(names.len());
    let mut map = serde_json::Map::new();
    for name in names {
        let name = name.trim().to_string();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.chars().count() > 255 {
            return Err(JobError::illegal("file_name_list"));
        }
        let token = crate::auth::random_secret();
        let path = format!("{}/{}/{}/{}", scope.scope_id, uuid::Uuid::new_v4().simple(), user, name);
        map.insert(name.clone(), json!({"upload_url": format!("{origin}/api/shoal/v1/uploads/{token}"), "path": path}));
        rows.push(shoal_store::UploadRow {
            path,
            token_hash: crate::files::http::token_hash(&token),
            scope_type: scope.scope_type.clone(),
            scope_id: scope.scope_id.clone(),
            file_name: name,
            creator: user.clone(),
            blob: None,
            size: None,
            create_time: now,
            expire_time: now + UPLOAD_URL_TTL_MS,
        });
    }
    ctx.shared.store.create_uploads(&rows).await.map_err(internal("create uploads"))?;
    Ok(json!({"url_map": map}))
}

/// `file_target_path`: an absolute directory, trimmed.
fn target_dir(p: Option<&str>) -> Result<String, JobError> {
    let p = p.map(str::trim).filter(|p| !p.is_empty()).ok_or_else(|| JobError::missing_or_illegal("file_target_path"))?;
    if !p.starts_with('/') || p.contains('\0') || p.split('/').any(|c| c == "..") {
        return Err(JobError::missing_or_illegal("file_target_path"));
    }
    Ok(p.to_string())
}

fn account_of(id: Option<i64>, alias: Option<&str>) -> Result<AccountRef, JobError> {
    match (id, alias.map(str::trim).filter(|a| !a.is_empty())) {
        (Some(id), _) => Ok(AccountRef::Id(id)),
        (None, Some(a)) => Ok(AccountRef::Alias(a.to_string())),
        (None, None) => Err(JobError::missing_or_illegal("account_id|account_alias")),
    }
}

fn target_of(t: Option<&ServerDto>) -> Result<ServerDto, JobError> {
    match t {
        None => Err(JobError::missing("target_server")),
        Some(t) if t.is_empty() => Err(JobError::missing("target_server")),
        Some(t) => {
            validate::check_server(t)?;
            Ok(t.clone())
        }
    }
}

/// MB/s as callers send it → bytes/s (≤ 0 or absent: no limit).
pub(crate) fn speed_limit(mb: Option<i64>) -> u64 {
    mb.filter(|v| *v > 0).map_or(0, |v| (v as u64).saturating_mul(1 << 20))
}

pub async fn fast_transfer(ctx: &Ctx, params: Value) -> ApiResult {
    let req: FastTransferFileReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let timeout_secs = req.timeout.unwrap_or(shoal_core::limits::DEFAULT_TIMEOUT_SECS);
    if !(1..=shoal_core::limits::MAX_TIMEOUT_SECS).contains(&timeout_secs) {
        return Err(JobError::bad_request(format!("timeout must be between 1 and {}", shoal_core::limits::MAX_TIMEOUT_SECS)));
    }
    let task_name = req.task_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).map(String::from);
    if task_name.as_ref().is_some_and(|n| n.chars().count() > shoal_core::limits::MAX_TASK_NAME_CHARS) {
        return Err(JobError::bad_request(format!("task_name must be at most {} characters", shoal_core::limits::MAX_TASK_NAME_CHARS)));
    }
    let dir = target_dir(req.file_target_path.as_deref())?;
    let sources = req.file_source_list.as_ref().filter(|l| !l.is_empty()).ok_or_else(|| JobError::missing("file_source_list"))?;
    let target = target_of(req.target_server.as_ref())?;
    let account = account_of(req.account_id, req.account_alias.as_deref())?;
    let callback_url = req.callback_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(String::from);
    if let Some(u) = &callback_url {
        validate::check_callback_url(u)?;
        ctx.shared.engine.callback_policy.check(u)?;
    }
    authz::authorize(ctx, &scope, Role::Run).await?;

    let mut files = Vec::new();
    let mut host_sources = Vec::new();
    let mut remote = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let list = src
            .file_list
            .as_ref()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| JobError::missing(&format!("file_source_list[{i}].file_list")))?;
        match src.file_type.unwrap_or(1) {
            2 => {
                for path in list {
                    let slot = ctx.shared.store.upload_by_path(path.trim()).await.map_err(internal("get upload"))?;
                    let slot = slot.filter(|s| s.scope_type == scope.scope_type && s.scope_id == scope.scope_id).ok_or_else(|| {
                        JobError::with(
                            ErrorCode::ILLEGAL_PARAM_WITH_NAME,
                            format!("file_source_list[{i}].file_list: {path} was not uploaded"),
                        )
                    })?;
                    let (Some(blob), Some(size)) = (slot.blob, slot.size) else {
                        return Err(JobError::with(
                            ErrorCode::ILLEGAL_PARAM_WITH_NAME,
                            format!("file_source_list[{i}].file_list: nothing was uploaded to {path}"),
                        ));
                    };
                    files.push(StepFile {
                        sha256: blob,
                        size: size as u64,
                        name: slot.file_name,
                        mode: Some(DEFAULT_MODE),
                        src_path: path.clone(),
                        src_host: None,
                    });
                }
            }
            1 => {
                let server = src
                    .server
                    .as_ref()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| JobError::missing(&format!("file_source_list[{i}].server")))?;
                validate::check_server(server)?;
                let account = match src.account.as_ref() {
                    Some(a) => {
                        account_of(a.id, a.alias.as_deref()).map_err(|_| JobError::missing(&format!("file_source_list[{i}].account")))?
                    }
                    None => return Err(JobError::missing(&format!("file_source_list[{i}].account"))),
                };
                let paths: Vec<String> = list.iter().map(|p| p.trim().to_string()).collect();
                if paths.iter().any(|p| !p.starts_with('/') || p.contains('\0')) {
                    return Err(JobError::illegal(&format!("file_source_list[{i}].file_list")));
                }
                let account = admission::resolve_account(ctx, &scope, &account).await?;
                authz::authorize_account(ctx, &scope, &account).await?;
                let hosts =
                    crate::engine::targets::resolve(ctx.shared.store.as_ref(), &scope, server, ctx.shared.config.max_targets_per_step)
                        .await?;
                for h in hosts {
                    host_sources.push(HostSource {
                        host: FileHost { bk_host_id: h.bk_host_id, bk_cloud_id: h.bk_cloud_id, ip: h.ip.clone() },
                        user: account.account.clone(),
                        paths: paths.clone(),
                    });
                }
            }
            3 => {
                let source = super::file_source::resolve(ctx, &scope, src.file_source_id, src.file_source_code.as_deref()).await?;
                let paths: Vec<String> = list.iter().map(|p| p.trim().trim_start_matches('/').to_string()).collect();
                if paths.iter().any(|p| p.is_empty() || p.contains('\0') || p.ends_with('/') || p.split('/').any(|c| c == "..")) {
                    return Err(JobError::illegal(&format!("file_source_list[{i}].file_list")));
                }
                remote.push(crate::files::sources::RemoteSource { source_id: source.id, code: source.code, paths });
            }
            _ => return Err(JobError::illegal(&format!("file_source_list[{i}].file_type"))),
        }
    }
    let mut target_name = None;
    if let Some(n) = req.file_target_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        if n.contains('/') || n == "." || n == ".." {
            return Err(JobError::illegal("file_target_name"));
        }
        let remote_files: usize = remote.iter().map(|r: &crate::files::sources::RemoteSource| r.paths.len()).sum();
        match (files.as_mut_slice(), host_sources.is_empty(), remote_files) {
            ([one], true, 0) => one.name = n.to_string(),
            ([], false, 0) | ([], true, 1) => target_name = Some(n.to_string()),
            _ => return Err(JobError::illegal("file_target_name")),
        }
    }
    let transfer = StepTransfer {
        target_dir: dir,
        create_dirs: req.transfer_mode != Some(1),
        download_limit: speed_limit(req.download_speed_limit),
        files,
        sources: host_sources,
        remote,
        upload_limit: speed_limit(req.upload_speed_limit),
        target_name,
        file_batches: vec![],
    };
    let name = task_name.unwrap_or_else(|| format!("API_FAST_TRANSFER_FILE_{}", shoal_core::time::now_ms()));
    let detail = json!({"files": transfer.files.iter().map(|f| json!({"sha256": f.sha256, "size": f.size, "src": f.src_path})).collect::<Vec<_>>(), "target_path": transfer.target_dir});
    let admitted = admit_file_job(
        ctx,
        scope,
        name.clone(),
        transfer,
        timeout_secs,
        account,
        target,
        req.rolling_config.clone(),
        callback_url,
        req.start_task.unwrap_or(true),
        "fast_transfer_file",
        detail,
    )
    .await?;
    Ok(json!({"job_instance_id": admitted.job_id, "job_instance_name": name, "step_instance_id": admitted.step_ids[0]}))
}

pub async fn push_config(ctx: &Ctx, params: Value) -> ApiResult {
    let req: PushConfigFileReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let account = account_of(req.account_id, req.account_alias.as_deref())?;
    let dir = target_dir(req.file_target_path.as_deref())?;
    let list = req.file_list.as_ref().filter(|l| !l.is_empty()).ok_or_else(|| JobError::missing_or_illegal("file_list"))?;
    let target = target_of(req.target_server.as_ref())?;
    let callback_url = req.callback_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(String::from);
    if let Some(u) = &callback_url {
        validate::check_callback_url(u)?;
        ctx.shared.engine.callback_policy.check(u)?;
    }
    authz::authorize(ctx, &scope, Role::Run).await?;
    let mut files = Vec::with_capacity(list.len());
    for f in list {
        let name =
            f.file_name.as_deref().map(str::trim).filter(|n| !n.is_empty()).ok_or_else(|| JobError::illegal("file_list.file_name"))?;
        if name.contains('/') || name == "." || name == ".." {
            return Err(JobError::illegal("file_list.file_name"));
        }
        let content = f.content.as_deref().filter(|c| !c.trim().is_empty()).ok_or_else(|| JobError::illegal("file_list.content"))?;
        let bytes = validate::decode_base64(content).ok_or_else(|| JobError::illegal("file_list.content"))?;
        let blob = ctx.shared.blobs.put(blobs::once(bytes), crate::files::MAX_FILE_BYTES).await.map_err(internal("store pushed file"))?;
        files.push(StepFile {
            sha256: blob.id.to_string(),
            size: blob.size,
            name: name.to_string(),
            mode: Some(DEFAULT_MODE),
            src_path: name.to_string(),
            src_host: None,
        });
    }
    let transfer = StepTransfer {
        target_dir: dir,
        create_dirs: true,
        download_limit: 0,
        files,
        sources: vec![],
        remote: vec![],
        upload_limit: 0,
        target_name: None,
        file_batches: vec![],
    };
    let name = req
        .task_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .unwrap_or_else(|| format!("API_PUSH_CONFIG_FILE_{}", shoal_core::time::now_ms()));
    let detail = json!({"files": transfer.files.iter().map(|f| json!({"sha256": f.sha256, "size": f.size, "name": f.name})).collect::<Vec<_>>(), "target_path": transfer.target_dir});
    let admitted = admit_file_job(
        ctx,
        scope,
        name.clone(),
        transfer,
        PUSH_CONFIG_TIMEOUT_SECS,
        account,
        target,
        None,
        callback_url,
        true,
        "push_config_file",
        detail,
    )
    .await?;
    // JOB answers no step id here; callers read it from the status.
    Ok(json!({"job_instance_id": admitted.job_id, "job_instance_name": name, "step_instance_id": null}))
}

#[allow(clippy::too_many_arguments)]
async fn admit_file_job(
    ctx: &Ctx,
    scope: Scope,
    name: String,
    transfer: StepTransfer,
    timeout_secs: i64,
    account: AccountRef,
    target: ServerDto,
    rolling: Option<Value>,
    callback_url: Option<String>,
    start: bool,
    action: &'static str,
    detail: Value,
) -> Result<admission::Admitted, JobError> {
    let request = JobRequest {
        scope,
        name: name.clone(),
        task_type: task_type::FAST_FILE,
        launch_mode: launch_mode::API,
        callback_url,
        start,
        steps: vec![StepRequest::File(FileStep { name, transfer, timeout_secs, account, target, rolling, ignore_error: false })],
        shell_vars: vec![],
        plan: None,
        audit_action: action,
        audit_detail: detail,
    };
    let admitted = admission::admit(ctx, request).await?;
    tracing::info!(job_instance_id = admitted.job_id, action, "file job created");
    Ok(admitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths_are_absolute_directories() {
        assert_eq!(target_dir(Some(" /tmp/x ")).unwrap(), "/tmp/x");
        for bad in [None, Some(""), Some("tmp/x"), Some("/tmp/../etc")] {
            let e = target_dir(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::MISSING_OR_ILLEGAL_PARAM_WITH_NAME, "{bad:?}");
        }
    }

    #[test]
    fn speed_limits_are_megabytes_per_second() {
        assert_eq!(speed_limit(Some(2)), 2 << 20);
        assert_eq!(speed_limit(Some(0)), 0);
        assert_eq!(speed_limit(Some(-1)), 0);
        assert_eq!(speed_limit(None), 0);
    }
}
