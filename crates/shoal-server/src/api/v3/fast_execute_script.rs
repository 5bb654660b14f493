//! `fast_execute_script` (§4): validate, resolve account and targets, create the job in one
//! transaction, start it.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_core::validate::{self, AccountRef, ScriptSource};
use shoal_core::JobError;
use shoal_proto::jobv3::FastExecuteScriptReq;
use shoal_proto::status::{launch_mode, task_type};
use shoal_proto::ErrorCode;
use shoal_store::{NewJob, NewStep};

use crate::api::{decode, internal, ApiResult, Ctx};
use crate::engine::targets;

fn language_of(l: i32) -> Result<shoal_proto::status::ScriptLanguage, JobError> {
    shoal_proto::status::ScriptLanguage::from_i32(l).ok_or_else(|| JobError::illegal("script_language"))
}

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: FastExecuteScriptReq = decode(params)?;
    let v = validate::fast_execute(&req)?;
    crate::api::authz::authorize(ctx, &v.scope, crate::api::authz::Role::Run).await?;
    let store = &ctx.shared.store;

    if let Some(u) = &v.callback_url {
        ctx.shared.engine.callback_policy.check(u)?;
    }
    let (language, script) = match v.source {
        ScriptSource::Inline { language, content } => (language, content),
        ScriptSource::Version(id) => {
            let (script, version) = super::script::executable(ctx, &v.scope, None, Some(id)).await?;
            (language_of(script.script_language)?, version.content)
        }
        ScriptSource::Script(id) => {
            let (script, version) = super::script::executable(ctx, &v.scope, Some(&id), None).await?;
            (language_of(script.script_language)?, version.content)
        }
    };

    let account = match &v.account {
        AccountRef::Id(id) => store
            .get_account(*id)
            .await
            .map_err(internal("get account"))?
            .filter(|a| a.scope_type == v.scope.scope_type && a.scope_id == v.scope.scope_id),
        AccountRef::Alias(alias) => {
            store.get_account_by_alias(&v.scope.scope_type, &v.scope.scope_id, alias).await.map_err(internal("get account"))?
        }
    };
    let account = account.ok_or_else(|| {
        let name = match &v.account {
            AccountRef::Id(id) => id.to_string(),
            AccountRef::Alias(a) => a.clone(),
        };
        JobError::with(ErrorCode::ACCOUNT_NOT_EXIST, name)
    })?;
    crate::api::authz::authorize_account(ctx, &v.scope, &account).await?;

    let hosts = targets::resolve(store.as_ref(), &v.scope, &v.target, ctx.shared.config.max_targets_per_step).await?;
    let rolling = match req.rolling_config.as_ref().filter(|r| r.as_object().is_some_and(|o| !o.is_empty())) {
        Some(raw) => {
            let cfg = shoal_core::rolling::RollingConfig::from_json(raw)?;
            let batch_sizes = cfg.plan(hosts.len())?;
            Some(shoal_store::NewRolling { config: cfg.to_json().to_string(), batch_sizes })
        }
        None => None,
    };

    let now = shoal_core::time::now_ms();
    let name = v.task_name.clone().unwrap_or_else(|| format!("API Quick execution script_{}", shoal_core::time::compact_stamp(now)));
    super::dangerous_rule::enforce(ctx, &v.scope, language as i32, &script, &name).await?;
    crate::api::authz::check_quota(ctx, &v.scope).await?;
    let sha = hex::encode(Sha256::digest(&script));
    let job = NewJob {
        scope_type: v.scope.scope_type.clone(),
        scope_id: v.scope.scope_id.clone(),
        name: name.clone(),
        operator: ctx.caller.username.clone(),
        app_code: ctx.caller.app_code.clone(),
        task_type: task_type::FAST_SCRIPT,
        launch_mode: launch_mode::API,
        create_time: now,
        callback_url: v.callback_url.clone(),
        steps: vec![NewStep {
            name: name.clone(),
            step_type: shoal_proto::status::step_type::SCRIPT,
            language: language as i32,
            script,
            args: if v.sensitive {
                ctx.shared.config.sealing_key.seal_all(&v.args, crate::secrets::JOB_PARAM_AAD).map_err(internal("seal params"))?
            } else {
                v.args.clone()
            },
            sensitive: v.sensitive,
            timeout_secs: v.timeout_secs,
            account_id: account.id,
            account_user: account.account.clone(),
            targets: hosts,
            rolling,
            ..Default::default()
        }],
        plan: None,
        audit: ctx.audit_event(&v.scope, "fast_execute_script", "", json!({"script_sha256": sha, "account": account.alias})),
    };
    let target_count = job.steps[0].targets.len();
    let (job_id, step_ids) = store.create_job(&job).await.map_err(internal("create job"))?;
    let step_id = step_ids[0];
    tracing::info!(job_instance_id = job_id, step_instance_id = step_id, targets = target_count, "job created");
    if v.start_task {
        ctx.shared.engine.start_job(job_id).await.map_err(internal("start job"))?;
    }
    Ok(json!({"job_instance_id": job_id, "job_instance_name": name, "step_instance_id": step_id}))
}
