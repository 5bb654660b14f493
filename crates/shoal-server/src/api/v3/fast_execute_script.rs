//! `fast_execute_script` (§4): validate, resolve the script source, and hand the job to the
//! admission door (`engine::admission`), which authorises, resolves, checks and creates it.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_core::validate::{self, ScriptSource};
use shoal_core::JobError;
use shoal_proto::jobv3::FastExecuteScriptReq;
use shoal_proto::status::{launch_mode, task_type};

use crate::api::{decode, ApiResult, Ctx};
use crate::engine::admission::{self, JobRequest, ScriptStep, StepRequest};

fn language_of(l: i32) -> Result<shoal_proto::status::ScriptLanguage, JobError> {
    shoal_proto::status::ScriptLanguage::from_i32(l).ok_or_else(|| JobError::illegal("script_language"))
}

pub async fn handle(ctx: &Ctx, params: Value) -> ApiResult {
    let req: FastExecuteScriptReq = decode(params)?;
    let v = validate::fast_execute(&req)?;
    // Reading a stored script needs the caller's right in the scope first (the door checks
    // it again, with the rest).
    crate::api::authz::authorize(ctx, &v.scope, crate::api::authz::Role::Run).await?;
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
    let now = shoal_core::time::now_ms();
    let name = v.task_name.clone().unwrap_or_else(|| format!("API Quick execution script_{}", shoal_core::time::compact_stamp(now)));
    let sha = hex::encode(Sha256::digest(&script));
    let account_name = match &v.account {
        validate::AccountRef::Id(id) => id.to_string(),
        validate::AccountRef::Alias(a) => a.clone(),
    };
    let request = JobRequest {
        scope: v.scope.clone(),
        name: name.clone(),
        task_type: task_type::FAST_SCRIPT,
        launch_mode: launch_mode::API,
        callback_url: v.callback_url.clone(),
        start: v.start_task,
        steps: vec![StepRequest::Script(ScriptStep {
            name: name.clone(),
            language,
            script,
            params: v.args.clone(),
            sensitive: v.sensitive,
            timeout_secs: v.timeout_secs,
            account: v.account.clone(),
            target: v.target.clone(),
            rolling: req.rolling_config.clone(),
            ignore_error: false,
        })],
        shell_vars: vec![],
        plan: None,
        audit_action: "fast_execute_script",
        audit_detail: json!({"script_sha256": sha, "account": account_name}),
    };
    let admitted = admission::admit(ctx, request).await?;
    let step_id = admitted.step_ids[0];
    tracing::info!(job_instance_id = admitted.job_id, step_instance_id = step_id, "fast script job created");
    Ok(json!({"job_instance_id": admitted.job_id, "job_instance_name": name, "step_instance_id": step_id}))
}
