//! How the session carries out one task: [`ProcessExecutor`] runs the script as a real
//! process (the agent's normal behaviour); [`InstantExecutor`] answers at once with output of
//! a chosen size and a chosen exit code, so one process can simulate thousands of hosts with
//! the real session code around it.
#![forbid(unsafe_code)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use shoal_proto::agent::{ExitReason, RunTask, StageRequest, StageResult, TaskKey};
use tokio::sync::oneshot;

use super::runner::TaskSink;
use crate::exec::{self, now_ms, ExecEnv, ExecOutcome, KillReason};
use crate::logs::{LogStream, CHUNK_BYTES};

pub type ExecFuture<'a> = Pin<Box<dyn Future<Output = ExecOutcome> + Send + 'a>>;

/// Runs one task to its end, writing its output to `logs`. `kill` stops it early.
pub trait Executor: Send + Sync + 'static {
    fn execute<'a>(&'a self, task: &'a RunTask, logs: &'a mut LogStream<TaskSink>, kill: oneshot::Receiver<KillReason>) -> ExecFuture<'a>;

    /// The cgroup the task will run in, if any (kept in its record before it starts).
    fn task_cgroup(&self, _key: &TaskKey) -> Option<PathBuf> {
        None
    }

    /// Puts a file step's source files into the server's blob store.
    fn stage(&self, req: StageRequest) -> Pin<Box<dyn Future<Output = StageResult> + Send + '_>> {
        Box::pin(async move {
            StageResult { id: req.id, files: vec![], missing: vec![], error: Some("this agent does not serve files".into()) }
        })
    }
}

/// Real processes (see [`crate::exec`]).
#[derive(Debug)]
pub struct ProcessExecutor {
    pub env: ExecEnv,
}

impl Executor for ProcessExecutor {
    fn execute<'a>(&'a self, task: &'a RunTask, logs: &'a mut LogStream<TaskSink>, kill: oneshot::Receiver<KillReason>) -> ExecFuture<'a> {
        match &task.transfer {
            Some(t) => Box::pin(crate::files::transfer_within(task, t, self.env.fetcher.as_ref(), logs, kill)),
            None => Box::pin(exec::execute(task, &self.env, logs, kill)),
        }
    }

    fn task_cgroup(&self, key: &TaskKey) -> Option<PathBuf> {
        self.env.placement.task_cgroup(key)
    }

    fn stage(&self, req: StageRequest) -> Pin<Box<dyn Future<Output = StageResult> + Send + '_>> {
        Box::pin(crate::files::stage::stage(req, self.env.fetcher.as_ref()))
    }
}

/// Answers every task at once: `output_bytes` of text (lines of a fixed pattern), then exit
/// `exit_code`. Nothing is started on the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstantExecutor {
    pub output_bytes: usize,
    pub exit_code: i32,
}

/// The pattern simulated output repeats.
const LINE: &[u8] = b"shoal simulated output 0123456789 abcdefghijklmnopqrstuvwxyz\n";

impl Executor for InstantExecutor {
    fn execute<'a>(
        &'a self,
        _task: &'a RunTask,
        logs: &'a mut LogStream<TaskSink>,
        _kill: oneshot::Receiver<KillReason>,
    ) -> ExecFuture<'a> {
        Box::pin(async move {
            let start_ms = now_ms();
            let mut left = self.output_bytes;
            let piece: Vec<u8> = LINE.iter().copied().cycle().take(CHUNK_BYTES.min(left)).collect();
            while left > 0 {
                let n = left.min(piece.len());
                logs.write(&piece[..n]).await;
                left -= n;
            }
            ExecOutcome {
                reason: ExitReason::Exited,
                exit_code: Some(self.exit_code),
                start_ms,
                end_ms: now_ms(),
                pgid: None,
                vars: Default::default(),
            }
        })
    }
}

/// A simulated host that carries out file steps for real up to the disk: it fetches each file
/// from the server and checks its SHA-256 ([`crate::files::verify_without_placing`]), and
/// hands every other task to `inner`. At most `fetch_slots` downloads run at once (one
/// process standing in for thousands of hosts has only so many sockets).
#[derive(Clone)]
pub struct VerifyingExecutor {
    pub inner: std::sync::Arc<dyn Executor>,
    pub fetcher: crate::files::Fetcher,
    pub fetch_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Executor for VerifyingExecutor {
    fn execute<'a>(&'a self, task: &'a RunTask, logs: &'a mut LogStream<TaskSink>, kill: oneshot::Receiver<KillReason>) -> ExecFuture<'a> {
        match &task.transfer {
            Some(t) => Box::pin(async move {
                let _slot = self.fetch_slots.acquire().await;
                crate::files::verify_without_placing(t, &self.fetcher, logs).await
            }),
            None => self.inner.execute(task, logs, kill),
        }
    }
}
