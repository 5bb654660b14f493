//! The life of a started script: read its output, wait for its exit, enforce the timeout,
//! obey a kill request, and stop the whole task — process group and cgroup (SIGTERM → grace →
//! SIGKILL).
#![forbid(unsafe_code)]

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use shoal_proto::agent::ExitReason;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};

use super::{kill, KillReason, DRAIN};
use crate::logs::{ChunkSink, LogStream};

/// A stop in progress.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    reason: KillReason,
    /// When SIGKILL follows the SIGTERM.
    kill_at: Instant,
    killed: bool,
}

/// Supervises `child` (leader of `task`'s process group) until it has exited and its output
/// is read (or [`DRAIN`] has passed since it exited). Returns the exit reason and code.
pub(super) async fn supervise<S: ChunkSink>(
    mut child: Child,
    task: &kill::Target,
    mut output: pipe::Receiver,
    timeout: Option<Duration>,
    mut kill_rx: oneshot::Receiver<KillReason>,
    grace: Duration,
    logs: &mut LogStream<S>,
) -> (ExitReason, Option<i32>) {
    let never = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    // An absurd timeout (overflowing the clock) is no timeout.
    let timeout_at = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut stopping: Option<Stopping> = None;
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut drain_until: Option<Instant> = None;
    let mut eof = false;
    let mut kill_open = true;
    let mut buf = vec![0u8; 16 * 1024];

    while !(status.is_some() && eof) {
        let flush_at = logs.flush_due();
        let running = status.is_none();
        let kill_at = stopping.filter(|s| !s.killed).map(|s| s.kill_at);
        let mut stop_now: Option<KillReason> = None;
        tokio::select! {
            r = output.read(&mut buf), if !eof => match r {
                Ok(0) => eof = true,
                Ok(n) => logs.write(&buf[..n]).await,
                Err(e) => {
                    tracing::warn!(pgid = task.pgid, error = %e, "reading task output failed");
                    eof = true;
                }
            },
            st = child.wait(), if running => {
                status = Some(st);
                drain_until = Some(Instant::now() + DRAIN);
            }
            _ = sleep_until(timeout_at.unwrap_or(never)),
                if running && stopping.is_none() && timeout_at.is_some() => {
                stop_now = Some(KillReason::Timeout);
            }
            r = &mut kill_rx, if kill_open && running && stopping.is_none() => {
                kill_open = false;
                stop_now = r.ok();
            }
            _ = sleep_until(kill_at.unwrap_or(never)), if running && kill_at.is_some() => {
                task.signal(Signal::SIGKILL);
                if let Some(s) = stopping.as_mut() {
                    s.killed = true;
                }
            }
            _ = sleep_until(drain_until.unwrap_or(never)), if drain_until.is_some() => break,
            _ = sleep_until(flush_at.unwrap_or(never)), if flush_at.is_some() => logs.flush().await,
        }
        if let Some(reason) = stop_now {
            logs.note(&stop_note(reason, timeout, grace)).await;
            task.signal(Signal::SIGTERM);
            stopping = Some(Stopping { reason, kill_at: Instant::now() + grace, killed: false });
        }
    }

    // The leader is gone; whatever else of the task survived the SIGTERM gets the rest of
    // the grace period, then SIGKILL. (On a normal exit the rest is left alone.)
    if let Some(s) = stopping.filter(|s| !s.killed) {
        if task.alive() {
            sleep_until(s.kill_at).await;
            task.signal(Signal::SIGKILL);
        }
    }

    // The loop only ends once `status` is set (draining starts at the exit).
    let status = match status {
        Some(Ok(st)) => st,
        Some(Err(e)) => {
            logs.note(&format!("[shoal] lost track of the process: {e}")).await;
            return (stopping.map_or(ExitReason::StartFailed, |s| s.reason.exit_reason()), None);
        }
        None => return (ExitReason::StartFailed, None),
    };
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s));
    match stopping {
        Some(s) => (s.reason.exit_reason(), code),
        None if status.code().is_some() => (ExitReason::Exited, code),
        None => {
            let sig = status.signal().unwrap_or(0);
            logs.note(&format!("[shoal] the script was killed by signal {sig}")).await;
            (ExitReason::Signaled, code)
        }
    }
}

fn stop_note(reason: KillReason, timeout: Option<Duration>, grace: Duration) -> String {
    let what = match reason {
        KillReason::Timeout => {
            format!("timed out after {} s", timeout.map_or(0, |t| t.as_secs()))
        }
        KillReason::Cancel => "cancelled".to_string(),
        KillReason::Shutdown => "the agent is shutting down".to_string(),
    };
    format!("[shoal] {what}; stopping all its processes (SIGTERM, SIGKILL after {} ms)", grace.as_millis())
}
