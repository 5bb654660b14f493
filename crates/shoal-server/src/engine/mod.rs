//! The execution engine: job → step → host tasks.
//!
//! - [`Engine::start_job`] moves a job and its step to running and dispatches every host
//!   task; a host whose agent is not connected fails at once with 310.
//! - Every host-task change is committed by the gateway's single writer. The commit that makes
//!   a step's last task final also ends the step, and the job with its callback when that was
//!   its last step (`shoal_store::finalize`); the writer then calls [`Engine::on_applied`],
//!   which starts a next step, or moves a rolling step to its next batch ([`Engine::on_final`]).
//! - [`Engine::terminate_job`] cancels running tasks on their agents (SIGTERM → SIGKILL of the
//!   whole tree there) and fails waiting ones with 403.
//! - After a restart [`Engine::start`] resumes active jobs: agents reconnect and resend what
//!   was not acknowledged; hosts that do not come back within the grace period get 310.
//!   Hosts connected before the restart are awaited as long at dispatch too.

pub mod admission;
pub mod callback;
pub mod cron;
pub mod events;
mod recovery;
mod rolling;
mod staging;
pub mod step_ops;
pub mod targets;
pub mod variables;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use shoal_proto::agent::{RunTask, ServerMsg, TaskKey};
use shoal_proto::status::{gse_code, host_status, RunStatus};
use shoal_store::{Applied, EndedStep, JobUpdate, StepRow, StepUpdate, Store, StoreError, TaskChange};
use tokio::sync::{watch, Notify};

use crate::gateway::{Gateway, IngestItem};
use crate::ServerConfig;

pub struct Engine {
    config: ServerConfig,
    store: Arc<dyn Store>,
    gateway: Arc<Gateway>,
    /// Running steps, so dispatch does not re-read the script for every host.
    steps: Mutex<HashMap<i64, Arc<StepRow>>>,
    /// Wakes the callback sender.
    callbacks: Notify,
    /// Where callbacks may be sent (checked at submit and again at send).
    pub callback_policy: callback::CallbackPolicy,
    /// This engine, for tasks it spawns (staggered rolling batches).
    me: std::sync::Weak<Engine>,
    /// Password values and sensitive parameters of running steps, masked in their output as
    /// it arrives (and sent to agents to mask before it leaves the host).
    redactions: Mutex<HashMap<i64, Arc<Vec<String>>>>,
    /// Hosts each file step (or rolling batch) was last sent to: peer-to-peer fan-out pays
    /// only with many more targets than fetch from the server at once.
    fanout: Mutex<HashMap<i64, usize>>,
    /// File steps' staging requests waiting for their source hosts.
    staging: staging::Pending,
    /// The blob store file sources are read into (set once at start).
    blobs: std::sync::OnceLock<Arc<dyn crate::files::BlobStore>>,
    /// Where file sources may be read from.
    pub source_policy: crate::files::sources::UrlPolicy,
}

fn finished(key: TaskKey, status: i32, error_code: i32, now: i64) -> IngestItem {
    IngestItem {
        change: TaskChange::Finished {
            key,
            status,
            exit_code: 0,
            error_code,
            start_time: None,
            end_time: now,
            dropped_bytes: 0,
            vars: Default::default(),
        },
        ack: None,
    }
}

impl Engine {
    pub fn new(config: ServerConfig, store: Arc<dyn Store>, gateway: Arc<Gateway>) -> Arc<Engine> {
        // The allow-list was checked when the configuration was validated.
        let callback_policy = callback::CallbackPolicy::new(&config.callback_allowed_base_urls).unwrap_or_default();
        let source_policy =
            crate::files::sources::UrlPolicy::new(&config.file_source_allowed_base_urls, &config.listen).unwrap_or_default();
        Arc::new_cyclic(|me| Engine {
            callback_policy,
            config,
            store,
            gateway,
            steps: Mutex::new(HashMap::new()),
            callbacks: Notify::new(),
            me: me.clone(),
            redactions: Mutex::new(HashMap::new()),
            fanout: Mutex::new(HashMap::new()),
            staging: Default::default(),
            blobs: std::sync::OnceLock::new(),
            source_policy,
        })
    }

    /// The blob store file sources are read into.
    pub fn set_blobs(&self, blobs: Arc<dyn crate::files::BlobStore>) {
        let _ = self.blobs.set(blobs);
    }

    /// A step ended: drop what was kept for it while it ran.
    fn forget_step(&self, step_id: i64) {
        self.steps.lock().expect("steps lock").remove(&step_id);
        self.redactions.lock().expect("redactions lock").remove(&step_id);
        self.fanout.lock().expect("fanout lock").remove(&step_id);
    }

    /// The smallest file of step `step_id` its targets may fetch from one another: none when
    /// the step went to few hosts (each fetches from the server, as fast as waiting for a
    /// first copy would be); unknown (after a restart) counts as many.
    fn swarm_min(&self, step_id: i64) -> Option<u64> {
        let hosts = self.fanout.lock().expect("fanout lock").get(&step_id).copied();
        let few = hosts.is_some_and(|n| n <= 2 * self.config.p2p_direct);
        self.config.swarm_min().filter(|_| !few)
    }

    /// Mask a plan step's password values in a piece of its output before it is stored.
    pub fn redact(&self, step_id: i64, data: Vec<u8>) -> Vec<u8> {
        let secrets = self.redactions.lock().expect("redactions lock").get(&step_id).cloned();
        match secrets {
            Some(s) => variables::mask_bytes(data, &s),
            None => data,
        }
    }

    /// The global variables an exit reports, as stored: none past
    /// [`shoal_proto::agent::MAX_VARS_BYTES`] (whatever the agent sends), the step's
    /// passwords masked as in its output.
    pub fn script_vars(&self, host_id: i64, exit: &mut shoal_proto::agent::TaskExit) -> BTreeMap<String, String> {
        let bytes = exit.vars_bytes();
        let mut vars = std::mem::take(&mut exit.vars);
        if bytes > shoal_proto::agent::MAX_VARS_BYTES {
            tracing::warn!(host_id, step_instance_id = exit.key.step_instance_id, bytes, "an exit's variables exceed the bound; ignored");
            return BTreeMap::new();
        }
        let secrets = self.redactions.lock().expect("redactions lock").get(&exit.key.step_instance_id).cloned();
        if let Some(s) = secrets {
            for v in vars.values_mut() {
                *v = variables::mask(v, &s);
            }
        }
        vars
    }

    pub(crate) fn me(&self) -> Option<Arc<Engine>> {
        self.me.upgrade()
    }

    /// Resume active jobs and start the callback sender.
    pub async fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Result<(), StoreError> {
        self.gateway.expect_returning().await;
        let active = self.store.active_jobs().await?;
        let mut resumed = 0;
        for job in &active {
            for mut step in self.store.get_steps(job.id).await? {
                // Left between two batches (the server stopped before starting the next one):
                // running again, its current batch's waiting tasks go out below, and a batch
                // already over moves on.
                let between_batches = step.status == RunStatus::RollingWaiting as i32;
                if between_batches {
                    self.store
                        .update_step(&StepUpdate { id: step.id, status: Some(RunStatus::Running as i32), start_time: None, end_time: None })
                        .await?;
                    self.set_job_status(job.id, RunStatus::Running).await?;
                    step.status = RunStatus::Running as i32;
                    tracing::info!(step_instance_id = step.id, "resuming a rolling step left between two batches");
                }
                if step.status != RunStatus::Running as i32 {
                    continue;
                }
                resumed += 1;
                let key = TaskKey::new(step.id, step.execute_count, 0);
                // A file step that was staging its sources stages them again.
                let unstaged = step.transfer.as_deref().and_then(crate::files::StepTransfer::from_json).filter(|t| t.needs_staging());
                let staging = unstaged.is_some();
                if let Some(t) = unstaged {
                    self.stage_then_dispatch(Arc::new(step.clone()), t);
                }
                let prepared = self.prepare(step).await?;
                self.steps.lock().expect("steps lock").insert(prepared.id, prepared.clone());
                if between_batches && !staging {
                    self.dispatch_step(&prepared).await?;
                }
                // Steps whose last result arrived just before the restart end now.
                self.on_final(&[key]).await;
            }
        }
        if resumed > 0 {
            tracing::info!(steps = resumed, "resuming running steps; waiting for their agents");
        }
        // Tasks of resumed steps, and those dispatched meanwhile to agents still awaited,
        // whose agent is not back by the end of the grace period. A server that is stopping
        // judges nobody: its successor will.
        let me = self.clone();
        let mut lost_stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(me.config.agent_lost_grace()) => me.sweep_lost().await,
                _ = async { let _ = lost_stop.wait_for(|v| *v).await; } => {}
            }
        });
        // Jobs a crash left between two changes: once agents had the grace to reconnect (a
        // step started before would fail its hosts with 310), then periodically.
        let me = self.clone();
        let sweep_stop = stop.clone();
        tokio::spawn(async move { recovery::sweeper(me, sweep_stop).await });
        let me = self.clone();
        tokio::spawn(async move { callback::sender(me, stop).await });
        Ok(())
    }

    async fn step(&self, step_id: i64) -> Option<Arc<StepRow>> {
        if let Some(s) = self.steps.lock().expect("steps lock").get(&step_id) {
            return Some(s.clone());
        }
        let s = match self.store.get_step(step_id).await {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!(step_instance_id = step_id, error = %e, "reading a step");
                self.gateway.metrics.store_error("engine");
                return None;
            }
        };
        let running = s.status == RunStatus::Running as i32;
        let s = match self.prepare(s).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(step_instance_id = step_id, error = %e, "preparing a step");
                self.gateway.metrics.store_error("engine");
                return None;
            }
        };
        if running {
            self.steps.lock().expect("steps lock").insert(step_id, s.clone());
        }
        Some(s)
    }

    /// The step as agents run it: shell scripts of plan jobs get the job's variables
    /// defined before their body — a string variable as the latest earlier step whose
    /// script changed it left it, else the plan's value.
    async fn prepare(&self, mut step: StepRow) -> Result<Arc<StepRow>, StoreError> {
        // Sensitive parameters are masked like passwords.
        let mut secrets = if step.sensitive { self.config.sealing_key.open_all(&step.args, crate::secrets::JOB_PARAM_AAD) } else { vec![] };
        if step.language == shoal_proto::status::ScriptLanguage::Shell as i32 {
            if let Some(link) = self.store.job_plan_link(step.job_instance_id).await? {
                secrets.extend(variables::passwords(&link.variables, &self.config.sealing_key));
                let mut vars = variables::shell_values(&link.variables, &self.config.sealing_key);
                let outputs = variables::outputs_by_step(self.store.step_var_outputs(step.job_instance_id).await?);
                if !outputs.is_empty() {
                    let mut earlier = self.store.get_steps(step.job_instance_id).await?;
                    earlier.retain(|s| s.step_order < step.step_order);
                    earlier.sort_by_key(|s| s.step_order);
                    for s in &earlier {
                        variables::apply_outputs(&mut vars, outputs.get(&s.id));
                    }
                }
                let body = String::from_utf8_lossy(&step.script).into_owned();
                step.script = shoal_core::template::with_shell_variables(&body, &vars).into_bytes();
            }
        }
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|v| std::cmp::Reverse(v.len()));
        if !secrets.is_empty() {
            self.redactions.lock().expect("redactions lock").insert(step.id, Arc::new(secrets));
        }
        Ok(Arc::new(step))
    }

    /// Move a step to running (script) or waiting for a user (confirmation) and, for a
    /// script step, dispatch its host tasks.
    pub(crate) async fn start_step(&self, mut step: StepRow) -> Result<(), StoreError> {
        let now = shoal_core::time::now_ms();
        let confirm = step.step_type == shoal_proto::status::step_type::CONFIRM;
        let status = if confirm { RunStatus::WaitingUser } else { RunStatus::Running };
        self.store.update_step(&StepUpdate { id: step.id, status: Some(status as i32), start_time: Some(now), end_time: None }).await?;
        self.set_job_status(step.job_instance_id, status).await?;
        if confirm {
            tracing::info!(job_instance_id = step.job_instance_id, step_instance_id = step.id, "waiting for confirmation");
            return Ok(());
        }
        step.status = status as i32;
        step.start_time = Some(now);
        let step = self.prepare(step).await?;
        self.steps.lock().expect("steps lock").insert(step.id, step.clone());
        self.dispatch_step(&step).await
    }

    /// Running ↔ waiting-for-user while a job is active.
    pub(crate) async fn set_job_status(&self, job_id: i64, status: RunStatus) -> Result<(), StoreError> {
        let out = self
            .store
            .update_job(&JobUpdate {
                id: job_id,
                status: Some(status as i32),
                expect_status: vec![RunStatus::Running as i32, RunStatus::WaitingUser as i32],
                ..Default::default()
            })
            .await;
        self.gateway.events.job(job_id);
        out
    }

    fn run_msg(&self, key: TaskKey, step: &StepRow) -> ServerMsg {
        ServerMsg::Run(RunTask {
            key,
            language: step.language,
            script: step.script.clone(),
            args: if step.sensitive {
                self.config.sealing_key.open_all(&step.args, crate::secrets::JOB_PARAM_AAD)
            } else {
                step.args.clone()
            },
            sensitive: step.sensitive,
            user: step.account_user.clone(),
            timeout_secs: step.timeout_secs as u64,
            output_cap: self.config.output_cap_bytes,
            // The agent masks the step's passwords before output leaves the host; the
            // server masks them again at ingest.
            mask: self.redactions.lock().expect("redactions lock").get(&step.id).map(|s| s.to_vec()).unwrap_or_default(),
            transfer: step
                .transfer
                .as_deref()
                .and_then(crate::files::StepTransfer::from_json)
                .map(|t| Box::new(t.for_task(key, &self.config.sealing_key, self.swarm_min(step.id)))),
        })
    }

    /// The `Run` of a task routed here by the replica that dispatched it; `None` when its
    /// step is no longer running.
    pub(crate) async fn run_msg_for(&self, key: TaskKey) -> Option<ServerMsg> {
        let current = |s: &StepRow| s.status == RunStatus::Running as i32 && s.execute_count == key.execute_count;
        let mut step = self.step(key.step_instance_id).await?;
        if !current(&step) {
            // Kept from an earlier run of the step (finalized elsewhere, then retried).
            self.forget_step(step.id);
            step = self.step(key.step_instance_id).await?;
        }
        current(&step).then(|| self.run_msg(key, &step))
    }

    pub async fn start_job(&self, job_id: i64) -> Result<(), StoreError> {
        let now = shoal_core::time::now_ms();
        self.store
            .update_job(&JobUpdate {
                id: job_id,
                status: Some(RunStatus::Running as i32),
                start_time: Some(now),
                expect_status: vec![RunStatus::Blank as i32],
                ..Default::default()
            })
            .await?;
        self.gateway.events.job(job_id);
        self.gateway.metrics.job_started();
        // Steps run in order: the first starts now, the next when it ends.
        if let Some(step) = self.store.get_steps(job_id).await?.into_iter().next() {
            self.start_step(step).await?;
        }
        Ok(())
    }

    async fn dispatch_step(&self, step: &StepRow) -> Result<(), StoreError> {
        // A file step with files on source hosts stages them first.
        if let Some(t) = step.transfer.as_deref().and_then(crate::files::StepTransfer::from_json).filter(|t| t.needs_staging()) {
            self.stage_then_dispatch(Arc::new(step.clone()), t);
            return Ok(());
        }
        let tasks = self.store.host_tasks(step.id, step.execute_count).await?;
        if step.execute_count == 0 {
            if let Some(r) = self.store.step_rolling(step.id).await? {
                return self.dispatch_rolling(step, tasks, r).await;
            }
        }
        self.dispatch_tasks(step, tasks, None).await
    }

    /// Send the waiting ones of `tasks` — the step run's, or those of rolling batch `batch` —
    /// to their agents; a host without a reachable agent fails at once with 310, unless it is
    /// still awaited after a start (it gets the task when it reconnects).
    pub(crate) async fn dispatch_tasks(
        &self,
        step: &StepRow,
        tasks: Vec<shoal_store::HostTaskRow>,
        batch: Option<i32>,
    ) -> Result<(), StoreError> {
        let now = shoal_core::time::now_ms();
        let mut changes = Vec::new();
        let mut to_send = Vec::new();
        // Agents held here, or by another replica on a shared store.
        let reachable = self.gateway.reachable_set().await;
        // Right after a start, agents still reconnecting: their tasks wait for them.
        let returning = self.gateway.returning_set();
        for t in tasks.iter().filter(|t| t.status == host_status::WAITING) {
            let key = t.key();
            if reachable.contains(&t.bk_host_id) {
                to_send.push(key);
            } else if !returning.contains(&t.bk_host_id) {
                changes.push(finished(key, host_status::GSE_AGENT_ERROR, gse_code::OTHER, now));
            }
        }
        // One change starts them all (a 50,000-host step would otherwise queue 50,000 before
        // its first task went out). The hosts failed above end failed whether their change is
        // committed before it or after it in the same batch.
        let run = TaskChange::RunStarted { step_instance_id: step.id, execute_count: step.execute_count, batch, at: now };
        changes.push(IngestItem { change: run, ack: None });
        // The start is queued before the tasks go out, so the writer sees it first.
        self.gateway.submit(changes).await;
        self.fanout.lock().expect("fanout lock").insert(step.id, to_send.len());
        // When these tasks became due: a step's first run from its start (a job's first step
        // starts as the job is accepted); a retry or a later batch now.
        let due = match (step.execute_count, batch) {
            (0, None | Some(1)) => step.start_time.unwrap_or(now).min(now),
            _ => now,
        };
        let mut lost = Vec::new();
        for key in to_send {
            if self.gateway.send(key.host_id, self.run_msg(key, step)).await {
                self.gateway.metrics.dispatched((shoal_core::time::now_ms() - due) as f64 / 1000.0);
            } else if !returning.contains(&key.host_id) {
                lost.push(finished(key, host_status::GSE_AGENT_ERROR, gse_code::OTHER, now));
            }
        }
        self.gateway.submit(lost).await;
        tracing::info!(step_instance_id = step.id, hosts = tasks.len(), "step dispatched");
        Ok(())
    }

    /// An agent (re)connected: send the tasks of running steps it should run and does not
    /// know about; on a job being terminated, cancel instead.
    pub async fn resume_host(&self, host_id: i64, known: &[TaskKey]) {
        let pending = match self.store.pending_tasks_for_host(host_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(host_id, error = %e, "reading pending tasks");
                self.gateway.metrics.store_error("engine");
                return;
            }
        };
        let known: BTreeSet<TaskKey> = known.iter().copied().collect();
        let now = shoal_core::time::now_ms();
        let mut changes = Vec::new();
        for key in pending {
            let Some(step) = self.step(key.step_instance_id).await else { continue };
            let stopping = matches!(self.store.get_job(step.job_instance_id).await, Ok(Some(j)) if j.stopping);
            if stopping {
                if known.contains(&key) {
                    self.gateway.send(host_id, ServerMsg::Cancel { key }).await;
                } else {
                    changes.push(finished(key, host_status::TERMINATE_SUCCESS, gse_code::TERMINATED, now));
                }
                continue;
            }
            if known.contains(&key) || !self.may_run_now(&step, key).await {
                continue;
            }
            changes.push(IngestItem { change: TaskChange::Started { key, at: now }, ack: None });
            self.gateway.submit(std::mem::take(&mut changes)).await;
            self.gateway.send(host_id, self.run_msg(key, &step)).await;
        }
        self.gateway.submit(changes).await;
    }

    /// The agent of `host_id` did not come back: its unfinished tasks are lost.
    pub async fn agent_lost(&self, host_id: i64) {
        let pending = match self.store.pending_tasks_for_host(host_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(host_id, error = %e, "reading pending tasks");
                self.gateway.metrics.store_error("engine");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        tracing::warn!(host_id, tasks = pending.len(), "agent lost; failing its unfinished tasks");
        let now = shoal_core::time::now_ms();
        let items = pending.into_iter().map(|k| finished(k, host_status::GSE_AGENT_ERROR, gse_code::OTHER, now)).collect();
        self.gateway.submit(items).await;
    }

    /// After a restart's grace period: every task of a running step (resumed, or dispatched
    /// while agents were awaited) whose agent never came back.
    async fn sweep_lost(&self) {
        let steps: Vec<Arc<StepRow>> = self.steps.lock().expect("steps lock").values().cloned().collect();
        let connected = self.gateway.reachable_set().await;
        // A server that began stopping meanwhile (its sessions closing, so nobody looks
        // connected) judges nobody: its successor will.
        if *self.gateway.stop_signal().borrow() {
            return;
        }
        let now = shoal_core::time::now_ms();
        for step in steps {
            let Ok(tasks) = self.store.host_tasks(step.id, step.execute_count).await else { continue };
            if *self.gateway.stop_signal().borrow() {
                return;
            }
            let items: Vec<IngestItem> = tasks
                .iter()
                .filter(|t| !host_status::is_final(t.status) && !connected.contains(&t.bk_host_id))
                .map(|t| {
                    let key = t.key();
                    finished(key, host_status::GSE_AGENT_ERROR, gse_code::OTHER, now)
                })
                .collect();
            self.gateway.submit(items).await;
        }
    }

    pub async fn terminate_job(&self, job_id: i64) -> Result<(), StoreError> {
        self.store
            .update_job(&JobUpdate {
                id: job_id,
                status: Some(RunStatus::Stopping as i32),
                stopping: Some(true),
                expect_status: vec![RunStatus::Running as i32, RunStatus::WaitingUser as i32],
                ..Default::default()
            })
            .await?;
        let now = shoal_core::time::now_ms();
        let mut running = false;
        for step in self.store.get_steps(job_id).await? {
            let waiting = step.status == RunStatus::WaitingUser as i32;
            if step.status != RunStatus::Running as i32 && step.status != RunStatus::RollingWaiting as i32 && !waiting {
                continue;
            }
            if waiting {
                // A confirmation (or a rolling step between batches) has nothing running: it
                // ends terminated at once.
                self.store
                    .update_step(&StepUpdate {
                        id: step.id,
                        status: Some(RunStatus::StopSuccess as i32),
                        start_time: None,
                        end_time: Some(now),
                    })
                    .await?;
                self.forget_step(step.id);
            } else {
                running = true;
            }
            let mut items = Vec::new();
            for t in self.store.host_tasks(step.id, step.execute_count).await? {
                let key = t.key();
                let cancelled = t.status == host_status::RUNNING && self.gateway.send(t.bk_host_id, ServerMsg::Cancel { key }).await;
                if !cancelled && !host_status::is_final(t.status) {
                    items.push(finished(key, host_status::TERMINATE_SUCCESS, gse_code::TERMINATED, now));
                }
            }
            if waiting {
                // The job ends below: its tasks' ends are committed first, so it is never seen
                // finished with tasks still waiting.
                self.gateway.commit(items).await;
            } else {
                self.gateway.submit(items).await;
            }
        }
        tracing::info!(job_instance_id = job_id, "terminating job");
        self.gateway.events.job(job_id);
        if !running {
            self.finish_job(job_id, RunStatus::StopSuccess).await?;
        }
        Ok(())
    }

    /// Called by the writer after each committed batch: steps the store ended in that commit
    /// (their job too, unless it goes on to a next step), and step runs it left to the engine.
    pub async fn on_applied(&self, applied: Applied) {
        for ended in &applied.ended {
            self.step_ended(ended).await;
        }
        let left: Vec<TaskKey> =
            applied.left.iter().map(|&(step_instance_id, execute_count)| TaskKey::new(step_instance_id, execute_count, 0)).collect();
        if !left.is_empty() {
            self.on_final(&left).await;
        }
    }

    async fn step_ended(&self, e: &EndedStep) {
        self.forget_step(e.step_instance_id);
        let (job_instance_id, step_instance_id) = (e.job_instance_id, e.step_instance_id);
        tracing::info!(job_instance_id, step_instance_id, status = e.status, hosts = e.hosts, "step finished");
        if let Some(status) = e.job_status {
            tracing::info!(job_instance_id, status, "job finished");
            self.gateway.metrics.job_finished(status);
            if e.callback {
                self.callbacks.notify_one();
            }
            return;
        }
        let next = match self.store.get_steps(job_instance_id).await {
            Ok(steps) => steps.into_iter().find(|s| s.step_order > e.step_order),
            Err(err) => {
                tracing::error!(job_instance_id, error = %err, "reading the next step");
                self.gateway.metrics.store_error("engine");
                return;
            }
        };
        if let Some(next) = next {
            if let Err(err) = self.start_step(next).await {
                tracing::error!(job_instance_id, error = %err, "starting the next step");
                self.gateway.metrics.store_error("engine");
            }
        }
    }

    /// Steps with tasks that just became final (host 0: the whole run): rolling steps move to
    /// their next batch, others end when no task is left unfinished.
    pub async fn on_final(&self, keys: &[TaskKey]) {
        let steps: BTreeSet<(i64, i32)> = keys.iter().map(|k| (k.step_instance_id, k.execute_count)).collect();
        for (step_id, execute_count) in steps {
            if execute_count == 0 {
                match self.store.step_rolling(step_id).await {
                    Ok(Some(r)) => {
                        if let Err(e) = self.rolling_progress(step_id, r).await {
                            tracing::error!(step_instance_id = step_id, error = %e, "advancing rolling batches");
                            self.gateway.metrics.store_error("engine");
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(step_instance_id = step_id, error = %e, "reading rolling state");
                        self.gateway.metrics.store_error("engine");
                    }
                }
            }
            match self.store.any_unfinished(step_id, execute_count).await {
                Ok(false) => self.finish_step(step_id).await,
                Ok(true) => {}
                Err(e) => {
                    tracing::error!(step_instance_id = step_id, error = %e, "looking for unfinished tasks");
                    self.gateway.metrics.store_error("engine");
                }
            }
        }
    }

    async fn finish_step(&self, step_id: i64) {
        if let Err(e) = self.try_finish_step(step_id).await {
            tracing::error!(step_instance_id = step_id, error = %e, "finishing step");
            self.gateway.metrics.store_error("engine");
        }
    }

    async fn try_finish_step(&self, step_id: i64) -> Result<(), StoreError> {
        let Some(step) = self.store.get_step(step_id).await? else { return Ok(()) };
        if RunStatus::from_i32(step.status).is_some_and(RunStatus::is_finished) {
            // Finalized by another replica.
            self.forget_step(step.id);
            return Ok(());
        }
        let Some(job) = self.store.get_job(step.job_instance_id).await? else { return Ok(()) };
        let tasks = self.store.host_tasks(step.id, step.execute_count).await?;
        let mut status = shoal_core::outcome::step_status(tasks.iter().map(|t| t.status), job.stopping);
        if status == RunStatus::Fail && self.store.step_extras(step.id).await?.ignore_error {
            status = RunStatus::IgnoreError;
        }
        let now = shoal_core::time::now_ms();
        // Writers on two replicas may both see the last task end: only one finalizes.
        let finished: Vec<i32> = (0..=64).filter(|s| RunStatus::from_i32(*s).is_some_and(RunStatus::is_finished)).collect();
        if !self.store.claim_step_end(step.id, status as i32, now, &finished).await? {
            self.forget_step(step.id);
            return Ok(());
        }
        self.forget_step(step.id);
        tracing::info!(job_instance_id = job.id, step_instance_id = step.id, status = status as i32, hosts = tasks.len(), "step finished");
        self.advance(&job, &step, status).await?;
        Ok(())
    }

    /// After a step ends: the next step, or the end of the job.
    pub(crate) async fn advance(&self, job: &shoal_store::JobRow, step: &StepRow, status: RunStatus) -> Result<(), StoreError> {
        let next = self.store.get_steps(job.id).await?.into_iter().find(|s| s.step_order > step.step_order);
        match (shoal_core::outcome::after_step(status, job.stopping, next.is_some()), next) {
            (Some(end), _) => self.finish_job(job.id, end).await,
            (None, Some(next)) => self.start_step(next).await,
            (None, None) => Ok(()),
        }
    }

    /// Final status of a job, with its callback queued in the same transaction.
    pub(crate) async fn finish_job(&self, job_id: i64, status: RunStatus) -> Result<(), StoreError> {
        let Some(job) = self.store.get_job(job_id).await? else { return Ok(()) };
        let steps = self.store.get_steps(job_id).await?;
        let callback = job.callback_url.as_ref().map(|url| {
            (url.clone(), shoal_proto::jobv3::CallbackBody::encode(job.id, status as i32, steps.iter().map(|s| (s.id, s.status))))
        });
        let has_callback = callback.is_some();
        self.store
            .update_job(&JobUpdate {
                id: job.id,
                status: Some(status as i32),
                end_time: Some(shoal_core::time::now_ms()),
                callback,
                expect_status: vec![RunStatus::Running as i32, RunStatus::WaitingUser as i32, RunStatus::Stopping as i32],
                ..Default::default()
            })
            .await?;
        tracing::info!(job_instance_id = job.id, status = status as i32, "job finished");
        self.gateway.events.job(job.id);
        self.gateway.metrics.job_finished(status as i32);
        if has_callback {
            self.callbacks.notify_one();
        }
        Ok(())
    }
}
