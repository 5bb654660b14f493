//! One running task: executes it, persists every chunk and the exit to the outbox, then hands
//! them to the session task over a bounded channel (which slows the script's output down if
//! the session cannot keep up, rather than buffering without bound).
#![forbid(unsafe_code)]

use std::sync::Arc;

use shoal_proto::agent::{LogChunk, RunTask, TaskExit, TaskKey};
use tokio::sync::{mpsc, oneshot};

use super::executor::Executor;
use super::outbox::Outbox;
use crate::exec::KillReason;
use crate::logs::{ChunkSink, LogStream};

/// From a task to the session task. Already on disk when sent.
#[derive(Debug)]
pub enum TaskEvent {
    Chunk(LogChunk),
    Exit(TaskExit),
    /// A file step's sources, staged (sent if connected; the server asks again otherwise).
    Staged(shoal_proto::agent::StageResult),
}

/// Where a running task's chunks go: the outbox, then the session task.
pub struct TaskSink {
    key: TaskKey,
    outbox: Outbox,
    events: mpsc::Sender<TaskEvent>,
}

impl ChunkSink for TaskSink {
    async fn send_chunk(&mut self, seq: u64, data: Vec<u8>) {
        let chunk = LogChunk { key: self.key, seq, data };
        let chunk = persist(&self.outbox, chunk, |o, c| o.write_chunk(&c.key, c.seq, &c.data)).await;
        let _ = self.events.send(TaskEvent::Chunk(chunk)).await;
    }
}

/// Writes `item` with `write` off the async threads; a failed write is logged, and the item
/// is still sent (it just will not survive a restart).
async fn persist<T: Send + 'static>(outbox: &Outbox, item: T, write: fn(&Outbox, &T) -> std::io::Result<()>) -> T {
    if outbox.is_memory() {
        if let Err(e) = write(outbox, &item) {
            tracing::error!(error = %e, "cannot keep the result in the outbox; sending anyway");
        }
        return item;
    }
    let outbox = outbox.clone();
    match tokio::task::spawn_blocking(move || (write(&outbox, &item), item)).await {
        Ok((Ok(()), item)) => item,
        Ok((Err(e), item)) => {
            tracing::error!(error = %e, "cannot persist to the outbox; sending anyway");
            item
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Starts `task` on its own tokio task. Its first chunk gets `first_seq`.
pub fn spawn(
    task: RunTask,
    first_seq: u64,
    executor: Arc<dyn Executor>,
    outbox: Outbox,
    events: mpsc::Sender<TaskEvent>,
    kill: oneshot::Receiver<KillReason>,
) {
    tokio::spawn(async move {
        let key = task.key;
        let sink = TaskSink { key, outbox: outbox.clone(), events: events.clone() };
        let mut logs = LogStream::new(task.output_cap, first_seq, sink).with_mask(&task.mask);
        let out = executor.execute(&task, &mut logs, kill).await;
        let summary = logs.finish().await;
        let exit = TaskExit {
            key,
            reason: out.reason,
            exit_code: out.exit_code,
            start_ms: out.start_ms,
            end_ms: out.end_ms,
            chunks: summary.chunks,
            dropped_bytes: summary.dropped_bytes,
            vars: out.vars,
        };
        tracing::info!(%key, reason = ?exit.reason, exit_code = ?exit.exit_code,
            chunks = exit.chunks, "task finished");
        let exit = persist(&outbox, exit, |o, e| o.write_exit(e)).await;
        let _ = events.send(TaskEvent::Exit(exit)).await;
    });
}
