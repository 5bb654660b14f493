//! Running one script on this host.
//!
//! - [`interpreter`]: language → interpreter program found on `PATH` (or why it cannot run here).
//! - [`account`]: the OS user to run as, and whether the agent may switch to it.
//! - `privileges`: the `pre_exec` hook that drops to that user (the crate's only `unsafe`).
//! - [`script`]: the script file under `state_dir/scripts`.
//! - [`sensitive`]: how parameters reach the script (sensitive ones never on a command line).
//! - [`cgroup`]: a cgroup (v2) per task where the agent can make one, so stopping a task
//!   reaches every process it started.
//! - [`kill`]: signals to a whole task (its process group and its cgroup).
//! - [`leftovers`]: where a started task's processes are (kept in its task record), and
//!   killing what is left of a task that was running when the agent stopped.
//! - `supervise`: the loop over output, exit, timeout and cancel.
//! - [`vars`]: the task's private directory, where a script leaves the global variables it
//!   changed (`SHOAL_VARS_FILE`).
//!
//! Every file here but `privileges.rs` forbids `unsafe` (this one cannot, being its parent;
//! it has none).

pub mod account;
pub mod cgroup;
pub mod interpreter;
pub mod kill;
pub mod leftovers;
mod privileges;
pub mod script;
pub mod sensitive;
mod supervise;
pub mod vars;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_proto::agent::{ExitReason, RunTask, TaskKey};
use tokio::sync::oneshot;

use self::cgroup::{Placement, TaskCgroup};
use self::leftovers::Whereabouts;
use crate::logs::{ChunkSink, LogStream};

/// How long output is still read after the script's main process exited (background children
/// may keep the pipe open; they are neither waited for nor killed).
pub const DRAIN: Duration = Duration::from_millis(300);

/// Told where a task's processes are as soon as its script has started (the agent keeps it
/// in the task record, for recovery after a crash). Called off the async threads.
#[derive(Clone)]
pub struct StartedHook(pub Arc<NoteStarted>);

/// See [`StartedHook`].
pub type NoteStarted = dyn Fn(&TaskKey, &Whereabouts) + Send + Sync;

impl std::fmt::Debug for StartedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartedHook")
    }
}

/// What every execution on this agent shares.
#[derive(Debug, Clone)]
pub struct ExecEnv {
    /// Where script files are written (`state_dir/scripts`).
    pub scripts_dir: PathBuf,
    /// SIGTERM → this long → SIGKILL.
    pub kill_grace: Duration,
    /// `PATH` used to find interpreters.
    pub search_path: OsString,
    /// A cgroup per task, or process groups only (and why).
    pub placement: Placement,
    /// Where started tasks are reported (none: nowhere).
    pub on_started: Option<StartedHook>,
    /// How file steps reach the server's blobs (none: file steps fail).
    pub fetcher: Option<crate::files::Fetcher>,
}

impl ExecEnv {
    /// Interpreters are looked up on the agent's own `PATH`.
    pub fn new(scripts_dir: PathBuf, kill_grace: Duration, placement: Placement) -> Self {
        ExecEnv {
            scripts_dir,
            kill_grace,
            search_path: std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            placement,
            on_started: None,
            fetcher: None,
        }
    }
}

/// Why the agent stops a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// `timeout_secs` elapsed.
    Timeout,
    /// The server asked (`Cancel`).
    Cancel,
    /// The agent is shutting down.
    Shutdown,
}

impl KillReason {
    pub fn exit_reason(self) -> ExitReason {
        match self {
            KillReason::Timeout => ExitReason::Timeout,
            KillReason::Cancel => ExitReason::Cancelled,
            // The result of a task killed by a shutdown is as unknown as one lost in a crash.
            KillReason::Shutdown => ExitReason::AgentRestarted,
        }
    }
}

/// How an execution ended (log totals come from the [`LogStream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub reason: ExitReason,
    pub exit_code: Option<i32>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Process group of the script, when it started (diagnostics and tests).
    pub pgid: Option<i32>,
    /// Global string variables the script changed (see [`vars`]).
    pub vars: BTreeMap<String, String>,
}

/// Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Runs `task` to its end, writing its output (and the agent's own `[shoal]` notes) to `logs`.
/// Never fails: whatever goes wrong becomes the outcome's reason plus a log line. `kill`
/// stops the task early (dropping its sender does nothing).
pub async fn execute<S: ChunkSink>(
    task: &RunTask,
    env: &ExecEnv,
    logs: &mut LogStream<S>,
    kill: oneshot::Receiver<KillReason>,
) -> ExecOutcome {
    let start_ms = now_ms();
    let end = |reason, exit_code, pgid| ExecOutcome { reason, exit_code, start_ms, end_ms: now_ms(), pgid, vars: BTreeMap::new() };

    let interp = match interpreter::resolve(task.language, &env.search_path) {
        Ok(i) => i,
        Err(line) => {
            logs.note(&line).await;
            return end(ExitReason::InterpreterMissing, None, None);
        }
    };
    let user = task.user.clone();
    let account = match tokio::task::spawn_blocking(move || account::resolve(&user)).await {
        Ok(Ok(a)) => a,
        Ok(Err(line)) => {
            logs.note(&line).await;
            return end(ExitReason::UserError, None, None);
        }
        Err(e) => {
            logs.note(&format!("[shoal] user lookup failed: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
    };
    let delivery = match sensitive::delivery(task) {
        Ok(d) => d,
        Err(line) => {
            logs.note(&line).await;
            return end(ExitReason::StartFailed, None, None);
        }
    };
    let script = {
        let (dir, key, ext, body) = (env.scripts_dir.clone(), task.key, interp.ext, delivery.body.clone());
        let owner = account.switch.then_some((account.uid, account.gid));
        tokio::task::spawn_blocking(move || script::write(&dir, &key, ext, &body, owner)).await
    };
    let script = match script {
        Ok(Ok(path)) => path,
        Ok(Err(e)) => {
            logs.note(&format!("[shoal] could not write the script file: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
        Err(e) => {
            logs.note(&format!("[shoal] could not write the script file: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
    };
    let _remove_script = script::RemoveOnDrop(script.clone());
    let vars_dir = {
        let (dir, key) = (env.scripts_dir.clone(), task.key);
        let owner = account.switch.then_some((account.uid, account.gid));
        tokio::task::spawn_blocking(move || vars::VarsDir::create(&dir, &key, owner)).await
    };
    let vars_dir = match vars_dir {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            logs.note(&format!("[shoal] could not make this task's directory: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
        Err(e) => {
            logs.note(&format!("[shoal] could not make this task's directory: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
    };

    let cgroup = match &env.placement {
        Placement::Cgroups(_) => {
            let path = env.placement.task_cgroup(&task.key);
            match path.map(TaskCgroup::create).transpose() {
                Ok(cg) => cg,
                Err(e) => {
                    logs.note(&format!("[shoal] cannot create this task's cgroup ({e}): {PGROUP_ONLY}")).await;
                    None
                }
            }
        }
        Placement::ProcessGroup { why } => {
            logs.note(&format!("[shoal] {why}: {PGROUP_ONLY}")).await;
            None
        }
    };
    let join = match cgroup.as_ref().map(TaskCgroup::procs_for_join).transpose() {
        Ok(fd) => fd.map(OwnedFd::from),
        Err(e) => {
            logs.note(&format!("[shoal] cannot open this task's cgroup: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
    };

    let (child, reader) = match spawn(&delivery, &interp, &account, &script, &vars_dir.file(), &env.search_path, join) {
        Ok(started) => started,
        Err(e) => {
            let program = interp.program.display();
            logs.note(&format!("[shoal] could not start {program}: {e}")).await;
            return end(ExitReason::StartFailed, None, None);
        }
    };
    let pgid = child.id().map(|p| p as i32);
    let Some(pid) = pgid else {
        // Already reaped: cannot happen before the first wait, but never unwrap on it.
        logs.note("[shoal] the process vanished before it could be supervised").await;
        return end(ExitReason::StartFailed, None, None);
    };
    tracing::debug!(key = %task.key, pid, user = %account.name, "task started");
    if let Some(hook) = env.on_started.clone() {
        let (key, path) = (task.key, cgroup.as_ref().map(|c| c.path.clone()));
        let noted = tokio::task::spawn_blocking(move || (hook.0)(&key, &Whereabouts::started(path, pid))).await;
        if let Err(e) = noted {
            tracing::warn!(key = %task.key, error = %e, "recording where the task runs failed");
        }
    }

    let timeout = (task.timeout_secs > 0).then(|| Duration::from_secs(task.timeout_secs));
    let target = kill::Target { pgid: pid, cgroup: cgroup.clone() };
    let (reason, exit_code) = supervise::supervise(child, &target, reader, timeout, kill, env.kill_grace, logs).await;
    let (uid, mask) = (account.uid, task.mask.clone());
    // The directory goes with the task (removed in the blocking thread, as `vars_dir` drops).
    let changed = match tokio::task::spawn_blocking(move || vars_dir.read(uid, &mask)).await {
        Ok(Ok(v)) => v,
        Ok(Err(line)) => {
            logs.note(&line).await;
            BTreeMap::new()
        }
        Err(e) => {
            logs.note(&format!("[shoal] the variables this script set were ignored: {e}")).await;
            BTreeMap::new()
        }
    };
    if let Some(cg) = cgroup {
        // A task that was stopped leaves nothing behind; one that ended by itself may leave
        // a service it started, which keeps the cgroup until it ends.
        let stopped = !matches!(reason, ExitReason::Exited | ExitReason::Signaled);
        let grace = env.kill_grace;
        let _ = tokio::task::spawn_blocking(move || {
            if stopped {
                cg.kill_all(grace);
            }
            cg.remove();
        })
        .await;
    }
    ExecOutcome { vars: changed, ..end(reason, exit_code, pgid) }
}

/// The limitation stated in the log of a task without a cgroup.
const PGROUP_ONLY: &str = "timeout and terminate reach this task's process group only (daemons it starts with setsid escape them)";

/// Variables of the agent's environment a script still gets, when set: locale and time zone.
pub const PASSED_THROUGH: [&str; 3] = ["LANG", "LC_ALL", "TZ"];

/// A script's whole environment: `PATH` (the agent's interpreter search path), `HOME`,
/// `USER`, `LOGNAME` and `SHELL` of its account, and [`PASSED_THROUGH`] when the agent has
/// them — plus `SHOAL_VARS_FILE` (see [`vars`]). Nothing else of the agent's environment is
/// inherited.
pub fn job_env(account: &account::Account, search_path: &OsString) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), search_path.clone()),
        ("HOME".into(), account.home.clone().into_os_string()),
        ("USER".into(), account.name.clone().into()),
        ("LOGNAME".into(), account.name.clone().into()),
        ("SHELL".into(), account.shell.clone().into_os_string()),
    ];
    for name in PASSED_THROUGH {
        if let Some(v) = std::env::var_os(name) {
            env.push((name.into(), v));
        }
    }
    env
}

/// Starts the interpreter in its own process group (and cgroup, when `join_cgroup` is its
/// `cgroup.procs`) with stdout and stderr on one pipe.
fn spawn(
    task: &sensitive::Delivery,
    interp: &interpreter::Interpreter,
    account: &account::Account,
    script: &std::path::Path,
    vars_file: &std::path::Path,
    search_path: &OsString,
    join_cgroup: Option<OwnedFd>,
) -> std::io::Result<(tokio::process::Child, tokio::net::unix::pipe::Receiver)> {
    // Both ends are O_CLOEXEC, so other tasks' children never inherit this pipe; the write
    // end is dup'ed onto fd 1 and 2 of this child only.
    let (tx, rx) = tokio::net::unix::pipe::pipe()?;
    let write_end: OwnedFd = tx.into_blocking_fd()?;
    let mut cmd = tokio::process::Command::new(&interp.program);
    cmd.args(&interp.pre_args)
        .args(&task.before_script)
        .arg(script)
        .args(&task.args)
        .current_dir(&account.workdir)
        // Nothing of the agent's own environment (its token above all) reaches the script.
        .env_clear()
        .envs(job_env(account, search_path))
        .env(shoal_proto::agent::VARS_FILE_ENV, vars_file)
        .stdin(if task.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::from(write_end.try_clone()?))
        .stderr(Stdio::from(write_end))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(procs) = join_cgroup {
        privileges::join_cgroup(&mut cmd, procs);
    }
    if account.switch {
        privileges::run_as(&mut cmd, account.uid, account.gid, account.groups.clone());
    }
    let child = cmd.spawn();
    // `cmd` holds the parent's copies of the write end; they must close now, or the reader
    // would never see end-of-file.
    drop(cmd);
    let mut child = child?;
    if let (Some(input), Some(mut stdin)) = (task.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // A script that exits without reading makes this fail; nothing to report.
            let _ = stdin.write_all(&input).await;
        });
    }
    Ok((child, rx))
}

#[cfg(test)]
mod tests;
