//! Rows of the store.

use std::collections::BTreeMap;

use shoal_proto::agent::TaskKey;

#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    pub code: String,
    pub salt: String,
    pub secret_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    pub bk_host_id: i64,
    pub agent_id: String,
    pub bk_biz_id: i64,
    pub bk_cloud_id: i64,
    pub ip: String,
    pub set_id: Option<i64>,
    pub module_id: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub alive: bool,
    pub last_seen: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: i64,
    pub scope_type: String,
    pub scope_id: String,
    pub account: String,
    pub alias: String,
    pub category: i32,
    pub account_type: i32,
    pub description: Option<String>,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    /// JSON of `shoal_core::selector::GroupSpec`.
    pub spec: String,
    pub creator: String,
    pub create_time: i64,
}

/// A target host of a new job.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetHost {
    pub bk_host_id: i64,
    pub ip: String,
    pub bk_cloud_id: i64,
}

#[derive(Clone)]
pub struct NewJob {
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    pub operator: String,
    pub app_code: String,
    pub task_type: i32,
    pub launch_mode: i32,
    pub create_time: i64,
    pub callback_url: Option<String>,
    /// Steps in the order they run.
    pub steps: Vec<NewStep>,
    /// Set when the job runs a plan.
    pub plan: Option<PlanLink>,
    pub audit: AuditEvent,
    /// Running-job limits taken atomically with the creation (see `crate::admission`).
    pub quota: crate::admission::JobQuota,
}

/// One step of a new job: a script step (with its targets) or a manual confirmation.
#[derive(Clone, Default)]
pub struct NewStep {
    pub name: String,
    pub step_type: i32,
    pub language: i32,
    pub script: Vec<u8>,
    pub args: Vec<String>,
    pub sensitive: bool,
    pub timeout_secs: i64,
    pub account_id: i64,
    pub account_user: String,
    pub targets: Vec<TargetHost>,
    pub ignore_error: bool,
    pub confirm_message: Option<String>,
    pub confirm_users: Vec<String>,
    /// Rolling execution: the config (JSON) and the batch sizes, in target order.
    pub rolling: Option<NewRolling>,
    /// A file step's transfer (JSON).
    pub transfer: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRolling {
    pub config: String,
    /// Hosts per batch of a step rolling by target host.
    pub batch_sizes: Vec<usize>,
    /// Batches of files of a step rolling by source file (0 otherwise).
    pub file_batches: usize,
}

/// The plan a job instance runs, and the variable values it ran with (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanLink {
    pub template_id: i64,
    pub plan_id: i64,
    pub template_version: i64,
    pub variables: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: i64,
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    pub operator: String,
    pub app_code: String,
    pub task_type: i32,
    pub launch_mode: i32,
    pub status: i32,
    pub stopping: bool,
    pub create_time: i64,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub callback_url: Option<String>,
}

/// A job of the execution history, with the template and plan it was started from.
#[derive(Debug, Clone, PartialEq)]
pub struct JobListing {
    pub job: JobRow,
    pub job_template_id: Option<i64>,
    pub job_plan_id: Option<i64>,
}

#[derive(Clone, PartialEq)]
pub struct StepRow {
    pub id: i64,
    pub job_instance_id: i64,
    pub step_order: i32,
    pub name: String,
    pub step_type: i32,
    pub status: i32,
    pub execute_count: i32,
    pub create_time: i64,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub language: i32,
    pub script: Vec<u8>,
    pub args: Vec<String>,
    pub sensitive: bool,
    pub timeout_secs: i64,
    pub account_id: i64,
    pub account_user: String,
    /// A file step's transfer (JSON), `None` on other steps.
    pub transfer: Option<String>,
}

impl std::fmt::Debug for StepRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRow")
            .field("id", &self.id)
            .field("job_instance_id", &self.job_instance_id)
            .field("status", &self.status)
            .field("execute_count", &self.execute_count)
            .field("script_bytes", &self.script.len())
            .field("sensitive", &self.sensitive)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostTaskRow {
    pub step_instance_id: i64,
    pub execute_count: i32,
    pub bk_host_id: i64,
    pub ip: String,
    pub bk_cloud_id: i64,
    pub status: i32,
    pub exit_code: i32,
    pub error_code: i32,
    pub tag: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub dropped_bytes: i64,
    /// Rolling batch (1-based; 0 when the step does not roll).
    pub batch: i32,
    /// The batch of files a step rolling by source file is at (1-based; 0 otherwise).
    pub file_batch: i32,
}

impl HostTaskRow {
    /// The agent task of this row.
    pub fn key(&self) -> TaskKey {
        TaskKey {
            step_instance_id: self.step_instance_id,
            execute_count: self.execute_count,
            host_id: self.bk_host_id,
            file_batch: self.file_batch,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    pub scope_type: String,
    pub scope_id: String,
    pub create_time_start: Option<i64>,
    pub create_time_end: Option<i64>,
    pub job_instance_id: Option<i64>,
    pub operator: Option<String>,
    pub name: Option<String>,
    pub launch_mode: Option<i32>,
    pub task_type: Option<i32>,
    pub status: Option<i32>,
    pub ip: Option<String>,
    /// Jobs started by this cron's fires.
    pub cron_id: Option<i64>,
    pub start: i64,
    pub length: i64,
}

/// Change of a job row; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct JobUpdate {
    pub id: i64,
    pub status: Option<i32>,
    pub stopping: Option<bool>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// When the job finishes: the callback to enqueue in the same transaction.
    pub callback: Option<(String, String)>,
    /// Only apply when the current status is one of these.
    pub expect_status: Vec<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct StepUpdate {
    pub id: i64,
    pub status: Option<i32>,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
}

/// One change to host tasks, applied by [`crate::Store::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum TaskChange {
    /// One task dispatched (to an agent that reconnected): waiting → running.
    Started {
        key: TaskKey,
        at: i64,
    },
    /// The still-waiting tasks of a step run — of one rolling batch when `batch` is set —
    /// are dispatched: waiting → running, as one statement instead of one per host.
    RunStarted {
        step_instance_id: i64,
        execute_count: i32,
        batch: Option<i32>,
        at: i64,
    },
    Log {
        key: TaskKey,
        seq: u64,
        data: Vec<u8>,
    },
    /// A final status; ignored when the task is already final.
    Finished {
        key: TaskKey,
        status: i32,
        exit_code: i32,
        error_code: i32,
        start_time: Option<i64>,
        end_time: i64,
        dropped_bytes: i64,
        /// Global string variables the script changed, by name: stored with the final
        /// status, and only when it is (a resent exit changes nothing).
        vars: BTreeMap<String, String>,
    },
}

impl TaskChange {
    /// The task changed; for [`TaskChange::RunStarted`], the step run with host 0.
    pub fn key(&self) -> TaskKey {
        match self {
            TaskChange::Started { key, .. } | TaskChange::Log { key, .. } | TaskChange::Finished { key, .. } => *key,
            TaskChange::RunStarted { step_instance_id, execute_count, .. } => TaskKey::new(*step_instance_id, *execute_count, 0),
        }
    }
}

/// A step's output value of a global variable a script changed: the value set by the host
/// with the lowest `bk_host_id` that set it ([`crate::Store::step_var_outputs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepVarOutput {
    pub step_instance_id: i64,
    pub name: String,
    pub value: String,
}

/// What committing a batch of host-task changes did ([`crate::Store::apply`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Tasks that became final.
    pub finals: Vec<TaskKey>,
    /// Steps whose last task became final: each got its final status in the same commit as
    /// that task, and so did its job when the step ended it (callback queued with it).
    pub ended: Vec<EndedStep>,
    /// Step runs with tasks that became final that the store left to the engine (step id,
    /// execute count): those rolling in batches (the engine starts their next batch) and, on
    /// PostgreSQL, any whose end could not be written after the batch's commit.
    pub left: Vec<(i64, i32)>,
}

/// A step ended by [`crate::Store::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndedStep {
    pub step_instance_id: i64,
    pub job_instance_id: i64,
    pub step_order: i32,
    pub status: i32,
    pub hosts: usize,
    /// The job's final status when this step ended the job; `None` when the job goes on with
    /// its next step (the engine starts it).
    pub job_status: Option<i32>,
    /// A callback was queued with the job's end.
    pub callback: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallbackRow {
    pub id: i64,
    pub job_instance_id: i64,
    pub url: String,
    pub body: String,
    pub attempts: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEvent {
    pub time: i64,
    pub app_code: String,
    pub username: String,
    pub scope_type: String,
    pub scope_id: String,
    pub action: String,
    pub resource_id: String,
    /// JSON detail (script sha256, target count, outcome, request id).
    pub detail: String,
}
