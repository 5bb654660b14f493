//! The one door every job goes through.
//!
//! [`admit`] turns a [`JobRequest`] — built by `fast_execute_script`, `execute_job_plan`, and
//! next by the file APIs, cron, the v2 paths and the console — into a created (and maybe
//! started) job, always in the same order:
//!
//! 1. the caller may run jobs in the scope (9900403);
//! 2. each script step's execution account exists in the scope and the caller may use it
//!    (1244003 / 1244004);
//! 3. its targets resolve within the scope (the host checks of `engine::targets`);
//! 4. its final text (variables included) and parameters pass the dangerous-command check
//!    (custom rules and built-ins; 1244019);
//! 5. the server is not overloaded: agents' results are committed within
//!    `max_ingest_lag_ms` (1244034 otherwise: more jobs would only finish later);
//! 6. the job, its steps and tasks, its audit event and a running-job quota slot are written in
//!    one transaction (1244034 / 1244032 / 1244033 when a limit is reached: the count and the
//!    insert cannot interleave with another creation, see `shoal_store::admission`).
//!
//! The decision is taken again where a job is run later than it was admitted: [`recheck`]
//! repeats steps 1, 2, 4 and 5 when a job created with `start_task=false` starts
//! (`operate_job_instance` 2) and when a step is retried (`operate_step_instance` 2 / 8), so a
//! rule added, a grant revoked or an account deleted since creation stops it.

use serde_json::Value;
use shoal_core::template::VarType;
use shoal_core::validate::AccountRef;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ServerDto;
use shoal_proto::status::{step_type, ScriptLanguage};
use shoal_proto::ErrorCode;
use shoal_store::{AccountRow, JobQuota, JobRow, NewJob, NewStep, PlanLink, QuotaKind, StepRow, StoreError};

use super::{targets, variables};
use crate::api::authz::{self, Role};
use crate::api::v3::dangerous_rule::{self, Checked};
use crate::api::{internal, Ctx};

/// A job to admit, whatever made the request.
pub struct JobRequest {
    pub scope: Scope,
    pub name: String,
    /// `task_type` of the job (fast script, plan, file…).
    pub task_type: i32,
    /// `launch_mode` (API, cron, console…).
    pub launch_mode: i32,
    pub callback_url: Option<String>,
    /// Start at once (`start_task`), or stay blank until `operate_job_instance` 2.
    pub start: bool,
    pub steps: Vec<StepRequest>,
    /// Variables the shell steps' final text is prefixed with (a plan's global variables).
    pub shell_vars: Vec<(String, VarType, String)>,
    pub plan: Option<PlanLink>,
    /// Audit action and detail of the creation (the request id is added).
    pub audit_action: &'static str,
    pub audit_detail: Value,
}

/// One step of a [`JobRequest`].
pub enum StepRequest {
    Script(ScriptStep),
    File(FileStep),
    Confirm { name: String, message: String, users: Vec<String> },
}

/// A script step as requested: nothing resolved yet.
pub struct ScriptStep {
    pub name: String,
    pub language: ScriptLanguage,
    pub script: Vec<u8>,
    /// Positional parameters in plain text (sealed here when `sensitive`).
    pub params: Vec<String>,
    pub sensitive: bool,
    pub timeout_secs: i64,
    pub account: AccountRef,
    pub target: ServerDto,
    /// A rolling configuration as sent (`rolling_config`), if any.
    pub rolling: Option<Value>,
    pub ignore_error: bool,
}

/// A file step as requested: its files already stored as blobs.
#[derive(Debug)]
pub struct FileStep {
    pub name: String,
    pub transfer: crate::files::StepTransfer,
    pub timeout_secs: i64,
    /// The target-side account the files are owned by.
    pub account: AccountRef,
    pub target: ServerDto,
    pub rolling: Option<Value>,
    pub ignore_error: bool,
}

/// Most (source files × target hosts) one file step may move (JOB's
/// `job.execute.limit.file-task.max-tasks`).
pub const MAX_FILE_TASKS: usize = 100_000;

impl std::fmt::Debug for ScriptStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptStep").field("name", &self.name).field("language", &self.language).finish_non_exhaustive()
    }
}

/// What [`admit`] created.
#[derive(Debug)]
pub struct Admitted {
    pub job_id: i64,
    pub step_ids: Vec<i64>,
}

/// Admits a job: checks, then creates it (and starts it when asked) — see the module docs.
pub async fn admit(ctx: &Ctx, req: JobRequest) -> Result<Admitted, JobError> {
    let scope = &req.scope;
    authz::authorize(ctx, scope, Role::Run).await?;
    let store = &ctx.shared.store;
    let max = ctx.shared.config.max_targets_per_step;

    let mut steps = Vec::with_capacity(req.steps.len());
    for step in &req.steps {
        let s = match step {
            StepRequest::Confirm { name, message, users } => NewStep {
                name: name.clone(),
                step_type: step_type::CONFIRM,
                confirm_message: Some(message.clone()),
                confirm_users: users.clone(),
                ..Default::default()
            },
            StepRequest::File(f) => {
                let account = resolve_account(ctx, scope, &f.account).await?;
                authz::authorize_account(ctx, scope, &account).await?;
                let hosts = targets::resolve(store.as_ref(), scope, &f.target, max).await?;
                // Files on source hosts count by the paths named, as JOB counts them.
                let sources = f.transfer.files.len()
                    + f.transfer.sources.iter().map(|s| s.paths.len()).sum::<usize>()
                    + f.transfer.remote.iter().map(|s| s.paths.len()).sum::<usize>();
                if sources.saturating_mul(hosts.len()) > MAX_FILE_TASKS {
                    return Err(JobError::with(ErrorCode::FILE_TASK_TARGET_EXCEEDS_LIMIT, MAX_FILE_TASKS.to_string()));
                }
                let mut transfer = f.transfer.clone();
                let rolling = file_rolling_of(f.rolling.as_ref(), hosts.len(), &mut transfer)?;
                NewStep {
                    name: f.name.clone(),
                    step_type: step_type::FILE,
                    timeout_secs: f.timeout_secs,
                    account_id: account.id,
                    account_user: account.account.clone(),
                    rolling,
                    targets: hosts,
                    ignore_error: f.ignore_error,
                    transfer: Some(transfer.to_json()),
                    ..Default::default()
                }
            }
            StepRequest::Script(s) => {
                let account = resolve_account(ctx, scope, &s.account).await?;
                authz::authorize_account(ctx, scope, &account).await?;
                let hosts = targets::resolve(store.as_ref(), scope, &s.target, max).await?;
                let rolling = rolling_of(s.rolling.as_ref(), hosts.len())?;
                let text = final_text(s.language as i32, &s.script, &req.shell_vars);
                let checked = Checked {
                    language: s.language as i32,
                    script: &text,
                    params: &s.params,
                    sensitive: s.sensitive,
                    step_name: &s.name,
                    stage: "admission",
                    job_instance_id: None,
                };
                dangerous_rule::enforce(ctx, scope, &checked).await?;
                NewStep {
                    name: s.name.clone(),
                    step_type: step_type::SCRIPT,
                    language: s.language as i32,
                    script: s.script.clone(),
                    args: if s.sensitive {
                        ctx.shared.config.sealing_key.seal_all(&s.params, crate::secrets::JOB_PARAM_AAD).map_err(internal("seal params"))?
                    } else {
                        s.params.clone()
                    },
                    sensitive: s.sensitive,
                    timeout_secs: s.timeout_secs,
                    account_id: account.id,
                    account_user: account.account.clone(),
                    targets: hosts,
                    rolling,
                    ignore_error: s.ignore_error,
                    ..Default::default()
                }
            }
        };
        steps.push(s);
    }
    if steps.is_empty() {
        return Err(JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL));
    }

    not_overloaded(ctx)?;
    let c = &ctx.shared.config;
    let job = NewJob {
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        name: req.name.clone(),
        operator: ctx.caller.username.clone(),
        app_code: ctx.caller.app_code.clone(),
        task_type: req.task_type,
        launch_mode: req.launch_mode,
        create_time: shoal_core::time::now_ms(),
        callback_url: req.callback_url.clone(),
        steps,
        plan: req.plan.clone(),
        audit: ctx.audit_event(scope, req.audit_action, "", req.audit_detail.clone()),
        quota: JobQuota { system: c.max_running_jobs, scope: c.max_running_jobs_per_scope, app: c.max_running_jobs_per_app },
    };
    let (job_id, step_ids) = store.create_job(&job).await.map_err(|e| match e {
        StoreError::QuotaExceeded(kind) => {
            tracing::info!(app_code = %ctx.caller.app_code, scope_type = %scope.scope_type, scope_id = %scope.scope_id,
                ?kind, "running-job quota reached");
            quota_error(kind)
        }
        e => internal("create job")(e),
    })?;
    tracing::info!(job_instance_id = job_id, steps = step_ids.len(), action = req.audit_action, "job admitted");
    if req.start {
        ctx.shared.engine.start_job(job_id).await.map_err(internal("start job"))?;
    }
    Ok(Admitted { job_id, step_ids })
}

/// A rolling configuration as sent, planned over `hosts` targets.
fn rolling_of(raw: Option<&Value>, hosts: usize) -> Result<Option<shoal_store::NewRolling>, JobError> {
    match raw.filter(|r| r.as_object().is_some_and(|o| !o.is_empty())) {
        Some(raw) => {
            let cfg = shoal_core::rolling::RollingConfig::from_json(raw)?;
            if cfg.source_files().is_some() {
                // Only a file step has source files.
                return Err(JobError::illegal("rolling_config.type"));
            }
            let batch_sizes = cfg.plan(hosts)?;
            Ok(Some(shoal_store::NewRolling { config: cfg.to_json().to_string(), batch_sizes, file_batches: 0 }))
        }
        None => Ok(None),
    }
}

/// A file step's rolling configuration: by target host as for scripts, or by source file,
/// which cuts the step's source hosts and their files into batches (kept in `transfer`, each
/// staged and sent in its turn). Rolling by source file takes files on source hosts only
/// (`1244035`).
fn file_rolling_of(
    raw: Option<&Value>,
    hosts: usize,
    transfer: &mut crate::files::StepTransfer,
) -> Result<Option<shoal_store::NewRolling>, JobError> {
    let Some(raw) = raw.filter(|r| r.as_object().is_some_and(|o| !o.is_empty())) else { return Ok(None) };
    let cfg = shoal_core::rolling::RollingConfig::from_json(raw)?;
    let Some(limits) = cfg.source_files() else { return rolling_of(Some(raw), hosts) };
    if transfer.sources.is_empty() || !transfer.files.is_empty() || !transfer.remote.is_empty() {
        return Err(JobError::new(shoal_core::rolling::SOURCE_FILE_ROLLING_ONLY_SERVER_FILES));
    }
    let batches = crate::files::source_file_batches(&transfer.sources, &limits);
    if batches.len() > shoal_core::rolling::MAX_SERIAL_BATCHES {
        return Err(JobError::with(
            shoal_core::rolling::EXCEED_MAX_ALLOWED_BATCH_SIZE,
            shoal_core::rolling::MAX_SERIAL_BATCHES.to_string(),
        ));
    }
    let n = batches.len();
    transfer.sources.clear();
    transfer.file_batches = batches;
    Ok(Some(shoal_store::NewRolling { config: cfg.to_json().to_string(), batch_sizes: vec![], file_batches: n }))
}

/// Refuses new jobs (1244034, JOB's "system quota", which callers retry later) while
/// agents' results wait longer than `max_ingest_lag_ms` to be committed: more jobs would only
/// make every job finish later, without bound.
fn not_overloaded(ctx: &Ctx) -> Result<(), JobError> {
    let limit = ctx.shared.config.max_ingest_lag_ms;
    let lag = ctx.shared.gateway.ingest_lag();
    if limit == 0 || lag.as_millis() <= u128::from(limit) {
        return Ok(());
    }
    tracing::warn!(app_code = %ctx.caller.app_code, lag_ms = lag.as_millis() as u64, limit_ms = limit, "overloaded: agents' results wait to be committed; job refused");
    Err(quota_error(QuotaKind::System))
}

fn quota_error(kind: QuotaKind) -> JobError {
    JobError::new(match kind {
        QuotaKind::System => ErrorCode::RUNNING_JOB_EXCEED_SYSTEM_QUOTA,
        QuotaKind::Scope => ErrorCode::RUNNING_JOB_EXCEED_SCOPE_QUOTA,
        QuotaKind::App => ErrorCode::RUNNING_JOB_EXCEED_APP_QUOTA,
    })
}

/// Where a [`recheck`] happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A job created with `start_task=false` starts.
    DeferredStart,
    /// A step runs again.
    Retry,
}

/// Repeats the caller, overload, account and dangerous-command checks of [`admit`] for `job`'s
/// script steps, and the account check for its file steps (all of them at a deferred start,
/// only `step` on a retry).
pub async fn recheck(ctx: &Ctx, job: &JobRow, stage: Stage, step: Option<&StepRow>) -> Result<(), JobError> {
    let scope = Scope { scope_type: job.scope_type.clone(), scope_id: job.scope_id.clone() };
    authz::authorize(ctx, &scope, Role::Run).await?;
    // Running a job later adds load as much as creating one does.
    not_overloaded(ctx)?;
    let store = &ctx.shared.store;
    let steps = match step {
        Some(s) => vec![s.clone()],
        None => store.get_steps(job.id).await.map_err(internal("get steps"))?,
    };
    let shell_vars = match store.job_plan_link(job.id).await.map_err(internal("job plan link"))? {
        Some(link) => variables::shell_values(&link.variables, &ctx.shared.config.sealing_key),
        None => vec![],
    };
    for s in steps.iter().filter(|s| s.step_type == step_type::SCRIPT || s.step_type == step_type::FILE) {
        let account = store
            .get_account(s.account_id)
            .await
            .map_err(internal("get account"))?
            .filter(|a| a.scope_type == scope.scope_type && a.scope_id == scope.scope_id)
            .ok_or_else(|| JobError::with(ErrorCode::ACCOUNT_NOT_EXIST, s.account_user.clone()))?;
        authz::authorize_account(ctx, &scope, &account).await?;
        if s.step_type == step_type::FILE {
            continue;
        }
        let params =
            if s.sensitive { ctx.shared.config.sealing_key.open_all(&s.args, crate::secrets::JOB_PARAM_AAD) } else { s.args.clone() };
        let text = final_text(s.language, &s.script, &shell_vars);
        let checked = Checked {
            language: s.language,
            script: &text,
            params: &params,
            sensitive: s.sensitive,
            step_name: &s.name,
            stage: match stage {
                Stage::DeferredStart => "start",
                Stage::Retry => "retry",
            },
            job_instance_id: Some(job.id),
        };
        dangerous_rule::enforce(ctx, &scope, &checked).await?;
    }
    Ok(())
}

/// The text a host will run: a shell step gets the plan's variables in front (as the engine
/// does when it dispatches; without Shoal's own EXIT trap, which is no author's code), other
/// languages run as written.
fn final_text(language: i32, script: &[u8], shell_vars: &[(String, VarType, String)]) -> Vec<u8> {
    if language == ScriptLanguage::Shell as i32 && !shell_vars.is_empty() {
        shoal_core::template::with_shell_definitions(&String::from_utf8_lossy(script), shell_vars).into_bytes()
    } else {
        script.to_vec()
    }
}

pub(crate) async fn resolve_account(ctx: &Ctx, scope: &Scope, account: &AccountRef) -> Result<AccountRow, JobError> {
    let store = &ctx.shared.store;
    let found = match account {
        AccountRef::Id(id) => store
            .get_account(*id)
            .await
            .map_err(internal("get account"))?
            .filter(|a| a.scope_type == scope.scope_type && a.scope_id == scope.scope_id),
        AccountRef::Alias(alias) => {
            store.get_account_by_alias(&scope.scope_type, &scope.scope_id, alias).await.map_err(internal("get account"))?
        }
    };
    found.ok_or_else(|| {
        let name = match account {
            AccountRef::Id(id) => id.to_string(),
            AccountRef::Alias(a) => a.clone(),
        };
        JobError::with(ErrorCode::ACCOUNT_NOT_EXIST, name)
    })
}
