//! What the agent keeps on disk so no result is lost across disconnects and restarts.
//!
//! ```text
//! state_dir/tasks/<key>                 task record, written before the script starts
//!                                       (JSON: when it started, and where its processes
//!                                       are: cgroup, process group; see exec::leftovers)
//! state_dir/outbox/<key>/<seq>.chunk    a log chunk not yet acknowledged (raw bytes)
//! state_dir/outbox/<key>/exit.json      the task's TaskExit, not yet acknowledged
//! state_dir/outbox/<key>/acked          highest chunk seq acknowledged (keeps numbering
//!                                       going if the agent must add an AgentRestarted note)
//! ```
//! `<key>` is the [`TaskKey`] display form `step-execute-host`. Files are written to a
//! temporary name and renamed, so a crash never leaves half a chunk. An acknowledged exit
//! removes the task's outbox dir and its record: the task is done.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use shoal_proto::agent::{ExitReason, LogChunk, TaskExit, TaskKey};
use tokio::sync::mpsc;

use crate::exec::leftovers::{self, Whereabouts};
use crate::exec::now_ms;

/// The start of the log line added when a task's outcome was lost with the agent (what was
/// done about its leftover processes follows).
pub const RESTARTED_NOTE: &str = "[shoal] the agent restarted while this task was running; its outcome is unknown";

/// Paths of the on-disk state. Cheap to clone; holds no open files.
///
/// An in-memory outbox ([`Outbox::in_memory`], for simulated fleets) keeps unacknowledged
/// chunks in the process instead: results survive reconnects but not a restart.
#[derive(Debug, Clone)]
pub struct Outbox {
    state_dir: PathBuf,
    /// Unacknowledged chunks when the outbox is in memory; `None` on disk.
    memory: Option<Arc<Mutex<MemoryChunks>>>,
}

/// Unacknowledged chunks of an in-memory outbox, by task and seq.
type MemoryChunks = BTreeMap<(TaskKey, u64), Vec<u8>>;

/// What is pending for one task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    /// Chunks written and not yet acknowledged.
    pub chunks: BTreeSet<u64>,
    /// The seq the next chunk of this task gets.
    pub next_seq: u64,
    /// The exit, once the task ended, until acknowledged.
    pub exit: Option<TaskExit>,
}

/// In-memory view of the outbox and the task records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    pub pending: BTreeMap<TaskKey, Pending>,
    pub records: BTreeSet<TaskKey>,
}

impl Index {
    /// Keys for `Hello.known_tasks`: tasks with a record or something pending.
    pub fn known_tasks(&self) -> Vec<TaskKey> {
        let keys: BTreeSet<TaskKey> = self.records.iter().chain(self.pending.keys()).copied().collect();
        keys.into_iter().collect()
    }

    pub fn note_chunk(&mut self, key: TaskKey, seq: u64) {
        let p = self.pending.entry(key).or_default();
        p.chunks.insert(seq);
        p.next_seq = p.next_seq.max(seq + 1);
    }

    pub fn note_exit(&mut self, exit: TaskExit) {
        let p = self.pending.entry(exit.key).or_default();
        p.next_seq = p.next_seq.max(exit.chunks);
        p.exit = Some(exit);
    }
}

/// What the agent keeps about a task from before its script starts until its exit is
/// acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub start_ms: i64,
    #[serde(flatten)]
    pub whereabouts: Whereabouts,
}

/// Disk work done off the session task, in order (see [`spawn_janitor`]).
#[derive(Debug)]
pub enum DiskOp {
    /// Chunks `0..=upto` were acknowledged.
    AckChunks { key: TaskKey, upto: u64 },
    /// The exit was acknowledged: forget the task.
    Forget { key: TaskKey },
}

impl Outbox {
    pub fn new(state_dir: &Path) -> Self {
        Outbox { state_dir: state_dir.to_path_buf(), memory: None }
    }

    /// An outbox that writes nothing but the state dir itself (see [`Outbox`]).
    pub fn in_memory(state_dir: &Path) -> Self {
        Outbox { state_dir: state_dir.to_path_buf(), memory: Some(Arc::default()) }
    }

    pub fn is_memory(&self) -> bool {
        self.memory.is_some()
    }

    fn mem(&self) -> Option<std::sync::MutexGuard<'_, MemoryChunks>> {
        self.memory.as_ref().map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn scripts_dir(&self) -> PathBuf {
        self.state_dir.join("scripts")
    }

    fn records_dir(&self) -> PathBuf {
        self.state_dir.join("tasks")
    }

    fn outbox_dir(&self) -> PathBuf {
        self.state_dir.join("outbox")
    }

    pub fn task_dir(&self, key: &TaskKey) -> PathBuf {
        self.outbox_dir().join(key.to_string())
    }

    pub fn record_path(&self, key: &TaskKey) -> PathBuf {
        self.records_dir().join(key.to_string())
    }

    fn chunk_path(&self, key: &TaskKey, seq: u64) -> PathBuf {
        self.task_dir(key).join(format!("{seq}.chunk"))
    }

    /// Creates the state dir layout and (re)sets its modes, also on a state dir made by an
    /// older agent. Blocking.
    ///
    /// The state dir is 0700; for a root agent it is 0711 instead, so that accounts the agent
    /// switches to can traverse it to their own (0700) script file in the 0711 scripts dir
    /// — they can list neither. Task records and the outbox are 0700 dirs of 0600 files, and
    /// the identity and credential files are 0600: no job can read the agent's state.
    pub fn create_dirs(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        let top = if nix::unistd::geteuid().is_root() { 0o711 } else { 0o700 };
        std::fs::set_permissions(&self.state_dir, std::fs::Permissions::from_mode(top))?;
        if self.is_memory() {
            return Ok(());
        }
        for (dir, mode) in [(self.records_dir(), 0o700), (self.outbox_dir(), 0o700), (self.scripts_dir(), 0o711)] {
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// Task record, before the script starts. Blocking.
    pub fn write_record(&self, key: &TaskKey, record: &TaskRecord) -> io::Result<()> {
        if self.is_memory() {
            return Ok(());
        }
        let body = serde_json::to_vec(record).map_err(io::Error::other)?;
        write_atomic(&self.record_path(key), &body)
    }

    fn read_record(&self, key: &TaskKey) -> Option<TaskRecord> {
        serde_json::from_slice(&std::fs::read(self.record_path(key)).ok()?).ok()
    }

    /// Adds where a started task's processes are to its record. Blocking.
    pub fn note_started(&self, key: &TaskKey, whereabouts: &Whereabouts) -> io::Result<()> {
        if self.is_memory() {
            return Ok(());
        }
        let start_ms = self.read_record(key).map_or_else(now_ms, |r| r.start_ms);
        self.write_record(key, &TaskRecord { start_ms, whereabouts: whereabouts.clone() })
    }

    /// A chunk, before it is sent. Blocking.
    pub fn write_chunk(&self, key: &TaskKey, seq: u64, data: &[u8]) -> io::Result<()> {
        if let Some(mut m) = self.mem() {
            m.insert((*key, seq), data.to_vec());
            return Ok(());
        }
        std::fs::create_dir_all(self.task_dir(key))?;
        write_atomic(&self.chunk_path(key, seq), data)
    }

    /// The exit, before it is sent. Blocking.
    pub fn write_exit(&self, exit: &TaskExit) -> io::Result<()> {
        if self.is_memory() {
            // The exit stays in the index until acknowledged.
            return Ok(());
        }
        std::fs::create_dir_all(self.task_dir(&exit.key))?;
        let body = serde_json::to_vec(exit).map_err(io::Error::other)?;
        write_atomic(&self.task_dir(&exit.key).join("exit.json"), &body)
    }

    pub async fn read_chunk(&self, key: &TaskKey, seq: u64) -> io::Result<Vec<u8>> {
        if let Some(m) = self.mem() {
            return m.get(&(*key, seq)).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound));
        }
        tokio::fs::read(self.chunk_path(key, seq)).await
    }

    /// Applies an acknowledgement of chunks `0..=upto`. Blocking.
    pub fn ack_chunks(&self, key: &TaskKey, upto: u64) -> io::Result<()> {
        if let Some(mut m) = self.mem() {
            let acked: Vec<_> = m.range((*key, 0)..=(*key, upto)).map(|(k, _)| *k).collect();
            for k in acked {
                m.remove(&k);
            }
            return Ok(());
        }
        let dir = self.task_dir(key);
        if !dir.is_dir() {
            return Ok(());
        }
        write_atomic(&dir.join("acked"), upto.to_string().as_bytes())?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let seq = name.to_str().and_then(|n| n.strip_suffix(".chunk")?.parse::<u64>().ok());
            if seq.is_some_and(|s| s <= upto) {
                remove_file(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Forgets a finished, acknowledged task. Blocking.
    pub fn forget(&self, key: &TaskKey) -> io::Result<()> {
        if let Some(mut m) = self.mem() {
            m.retain(|(k, _), _| k != key);
            return Ok(());
        }
        match std::fs::remove_dir_all(self.task_dir(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        remove_file(&self.record_path(key))
    }

    fn apply(&self, op: &DiskOp) -> io::Result<()> {
        match op {
            DiskOp::AckChunks { key, upto } => self.ack_chunks(key, *upto),
            DiskOp::Forget { key } => self.forget(key),
        }
    }

    /// Writes the end of a task whose outcome was lost (the agent restarted while it ran):
    /// a note chunk (with `what_was_done` about its leftover processes) and an
    /// `AgentRestarted` exit. Returns them, to be sent. Blocking.
    pub fn write_restarted(&self, key: &TaskKey, next_seq: u64, what_was_done: &str) -> io::Result<(LogChunk, TaskExit)> {
        let start_ms = self.read_record(key).map_or_else(now_ms, |r| r.start_ms);
        let note = format!("{RESTARTED_NOTE}; {what_was_done}\n");
        self.write_end(ended(*key, next_seq, ExitReason::AgentRestarted, start_ms, note))
    }

    /// A task that was running when the agent stopped: kills what is left of its processes,
    /// then writes its `AgentRestarted` end (see [`Outbox::write_restarted`]). Blocking.
    pub fn write_lost(&self, key: &TaskKey, next_seq: u64) -> io::Result<(LogChunk, TaskExit)> {
        let done = leftovers::stop(&self.read_record(key).unwrap_or_default().whereabouts);
        tracing::warn!(%key, leftovers = %done, "task was running when the agent stopped; reporting it lost");
        self.write_restarted(key, next_seq, &done)
    }

    /// Writes the end of a task that was not run because its record could not be written
    /// (running it would risk running it twice after a restart). Returns the end to send;
    /// when even that cannot be written, it is still returned (to be sent from memory).
    pub fn write_not_run(&self, key: &TaskKey, next_seq: u64, error: &io::Error) -> (LogChunk, TaskExit) {
        let note = format!("[shoal] the task was not started: the agent cannot record it ({error})\n");
        let end = ended(*key, next_seq, ExitReason::StartFailed, now_ms(), note);
        if let Err(e) = self.write_end(end.clone()) {
            tracing::error!(%key, error = %e, "cannot keep the task's end in the outbox; sending it anyway");
        }
        end
    }

    fn write_end(&self, (chunk, exit): (LogChunk, TaskExit)) -> io::Result<(LogChunk, TaskExit)> {
        self.write_chunk(&chunk.key, chunk.seq, &chunk.data)?;
        self.write_exit(&exit)?;
        Ok((chunk, exit))
    }

    /// Reads the records and the outbox. Tasks that have a record but no exit were running
    /// when the agent stopped: what is left of their processes is killed, and they get their
    /// `AgentRestarted` end now. Blocking.
    pub fn load(&self) -> io::Result<Index> {
        let mut index = Index::default();
        if self.is_memory() {
            return Ok(index);
        }
        for entry in std::fs::read_dir(self.records_dir())? {
            let entry = entry?;
            match entry.file_name().to_str().and_then(|n| n.parse::<TaskKey>().ok()) {
                Some(key) => {
                    index.records.insert(key);
                }
                None => tracing::warn!(path = %entry.path().display(), "stray file in tasks dir"),
            }
        }
        for entry in std::fs::read_dir(self.outbox_dir())? {
            let entry = entry?;
            let Some(key) = entry.file_name().to_str().and_then(|n| n.parse::<TaskKey>().ok()) else {
                tracing::warn!(path = %entry.path().display(), "stray file in outbox dir");
                continue;
            };
            index.pending.insert(key, self.load_task(&entry.path())?);
        }
        let orphans: Vec<TaskKey> =
            index.records.iter().filter(|k| index.pending.get(k).and_then(|p| p.exit.as_ref()).is_none()).copied().collect();
        for key in orphans {
            let next_seq = index.pending.get(&key).map_or(0, |p| p.next_seq);
            let (chunk, exit) = self.write_lost(&key, next_seq)?;
            index.note_chunk(key, chunk.seq);
            index.note_exit(exit);
        }
        Ok(index)
    }

    fn load_task(&self, dir: &Path) -> io::Result<Pending> {
        let mut p = Pending::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(".chunk").and_then(|s| s.parse::<u64>().ok()) {
                p.chunks.insert(seq);
                p.next_seq = p.next_seq.max(seq + 1);
            } else if name == "exit.json" {
                match serde_json::from_slice::<TaskExit>(&std::fs::read(entry.path())?) {
                    Ok(exit) => {
                        p.next_seq = p.next_seq.max(exit.chunks);
                        p.exit = Some(exit);
                    }
                    Err(e) => tracing::warn!(path = %entry.path().display(), error = %e,
                        "unreadable exit file; ignored"),
                }
            } else if name == "acked" {
                if let Ok(n) = std::fs::read_to_string(entry.path())?.trim().parse::<u64>() {
                    p.next_seq = p.next_seq.max(n + 1);
                }
            } else if name.ends_with(".tmp") {
                remove_file(&entry.path())?;
            }
        }
        Ok(p)
    }
}

/// Runs [`DiskOp`]s one after another on a task of their own, so acknowledgements never make
/// the session wait for the disk and are applied in the order they came.
pub fn spawn_janitor(outbox: Outbox) -> (mpsc::Sender<DiskOp>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<DiskOp>(256);
    let handle = tokio::spawn(async move {
        while let Some(op) = rx.recv().await {
            if outbox.is_memory() {
                let _ = outbox.apply(&op);
                continue;
            }
            let outbox = outbox.clone();
            let done = tokio::task::spawn_blocking(move || (outbox.apply(&op), op)).await;
            match done {
                Ok((Err(e), op)) => tracing::warn!(?op, error = %e, "outbox cleanup failed"),
                Err(e) => tracing::warn!(error = %e, "outbox cleanup panicked"),
                Ok((Ok(()), _)) => {}
            }
        }
    });
    (tx, handle)
}

/// Writes `path` via a temporary file and a rename.
/// Writes `data` to `path` through a temporary file, readable by the agent's user only (0600:
/// output and records are nobody else's business, even inside the private state dir).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    // A temporary file left by an older agent keeps its mode through `open`.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// A task's last chunk (`note`) and its exit.
fn ended(key: TaskKey, seq: u64, reason: ExitReason, start_ms: i64, note: String) -> (LogChunk, TaskExit) {
    let chunk = LogChunk { key, seq, data: note.into_bytes() };
    let exit =
        TaskExit { key, reason, exit_code: None, start_ms, end_ms: now_ms(), chunks: seq + 1, dropped_bytes: 0, vars: Default::default() };
    (chunk, exit)
}

fn remove_file(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start_ms: i64) -> TaskRecord {
        TaskRecord { start_ms, whereabouts: Whereabouts::default() }
    }

    fn key(n: i64) -> TaskKey {
        TaskKey::new(n, 0, 9)
    }

    #[test]
    fn the_state_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        // A state dir left world-readable by an older agent is closed on start.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = Outbox::new(&state);
        o.create_dirs().unwrap();
        o.write_record(&key(1), &rec(5)).unwrap();
        o.write_chunk(&key(1), 0, b"secret output").unwrap();
        let exit = TaskExit {
            key: key(1),
            reason: ExitReason::Exited,
            exit_code: Some(0),
            start_ms: 1,
            end_ms: 2,
            chunks: 1,
            dropped_bytes: 0,
            vars: Default::default(),
        };
        o.write_exit(&exit).unwrap();
        o.ack_chunks(&key(1), 0).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let top = if nix::unistd::geteuid().is_root() { 0o711 } else { 0o700 };
        assert_eq!(mode(&state), top);
        assert_eq!((mode(&state.join("tasks")), mode(&state.join("outbox"))), (0o700, 0o700));
        assert_eq!(mode(&o.record_path(&key(1))), 0o600);
        assert_eq!(mode(&o.task_dir(&key(1)).join("exit.json")), 0o600);
        assert_eq!(mode(&o.task_dir(&key(1)).join("acked")), 0o600);
        o.write_chunk(&key(1), 1, b"more").unwrap();
        assert_eq!(mode(&o.task_dir(&key(1)).join("1.chunk")), 0o600);
    }

    fn exit(k: TaskKey, chunks: u64) -> TaskExit {
        TaskExit {
            key: k,
            reason: ExitReason::Exited,
            exit_code: Some(0),
            start_ms: 1,
            end_ms: 2,
            chunks,
            dropped_bytes: 0,
            vars: Default::default(),
        }
    }

    fn outbox() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::new(dir.path());
        o.create_dirs().unwrap();
        (dir, o)
    }

    #[test]
    fn chunks_and_exit_survive_a_reload() {
        let (_dir, o) = outbox();
        let (a, b) = (key(1), key(2));
        o.write_record(&a, &rec(5)).unwrap();
        o.write_chunk(&a, 0, b"zero").unwrap();
        o.write_chunk(&a, 1, b"one").unwrap();
        o.write_exit(&exit(a, 2)).unwrap();
        o.write_record(&b, &rec(5)).unwrap();
        o.write_chunk(&b, 0, b"b0").unwrap();
        o.write_exit(&exit(b, 1)).unwrap();

        let index = o.load().unwrap();
        assert_eq!(index.known_tasks(), vec![a, b]);
        let pa = &index.pending[&a];
        assert_eq!(pa.chunks.iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(pa.exit, Some(exit(a, 2)));
        assert_eq!(pa.next_seq, 2);

        // Chunk 0 of `a` acknowledged, then all of `b`.
        o.ack_chunks(&a, 0).unwrap();
        o.forget(&b).unwrap();
        let index = o.load().unwrap();
        assert_eq!(index.known_tasks(), vec![a]);
        assert_eq!(index.pending[&a].chunks.iter().copied().collect::<Vec<_>>(), vec![1]);
        assert!(!o.task_dir(&b).exists() && !o.record_path(&b).exists());
    }

    #[test]
    fn an_exit_keeps_its_variables_and_older_records_still_load() {
        let (_dir, o) = outbox();
        let mut x = exit(key(1), 0);
        x.vars.insert("VERSION".into(), "2.0".into());
        o.write_exit(&x).unwrap();
        // An exit an older agent left, without the field.
        let old = r#"{"key":{"step_instance_id":2,"execute_count":0,"host_id":9},"reason":"exited","exit_code":0,"start_ms":1,"end_ms":2,"chunks":0,"dropped_bytes":0}"#;
        std::fs::create_dir_all(o.task_dir(&key(2))).unwrap();
        std::fs::write(o.task_dir(&key(2)).join("exit.json"), old).unwrap();
        let index = o.load().unwrap();
        assert_eq!(index.pending[&key(1)].exit, Some(x));
        assert_eq!(index.pending[&key(2)].exit, Some(exit(key(2), 0)));
    }

    #[tokio::test]
    async fn read_back_what_was_written() {
        let (_dir, o) = outbox();
        o.write_chunk(&key(1), 3, &[0xff, 0, 1]).unwrap();
        assert_eq!(o.read_chunk(&key(1), 3).await.unwrap(), vec![0xff, 0, 1]);
    }

    #[test]
    fn a_task_running_at_a_crash_is_reported_lost_with_numbering_intact() {
        let (_dir, o) = outbox();
        let k = key(3);
        o.write_record(&k, &rec(1234)).unwrap();
        for seq in 0..4 {
            o.write_chunk(&k, seq, b"x").unwrap();
        }
        // 0..=2 were acknowledged (and deleted); 3 is pending; a temp file is left over.
        o.ack_chunks(&k, 2).unwrap();
        std::fs::write(o.task_dir(&k).join("4.chunk.tmp"), b"half").unwrap();

        let index = o.load().unwrap();
        let p = &index.pending[&k];
        assert_eq!(p.chunks.iter().copied().collect::<Vec<_>>(), vec![3, 4]);
        let exit = p.exit.clone().unwrap();
        assert_eq!(exit.reason, ExitReason::AgentRestarted);
        assert_eq!((exit.chunks, exit.start_ms), (5, 1234));
        let note = String::from_utf8(std::fs::read(o.task_dir(&k).join("4.chunk")).unwrap()).unwrap();
        assert_eq!(note, format!("{RESTARTED_NOTE}; it had not started a process\n"));
        // Loading again finds the same thing (the lost task is not reported twice).
        assert_eq!(o.load().unwrap(), index);

        // Everything acknowledged but the record: numbering continues after `acked`.
        let k2 = key(4);
        o.write_record(&k2, &rec(1)).unwrap();
        o.write_chunk(&k2, 0, b"x").unwrap();
        o.ack_chunks(&k2, 0).unwrap();
        let index = o.load().unwrap();
        assert_eq!(index.pending[&k2].exit.as_ref().unwrap().chunks, 2);
    }

    #[tokio::test]
    async fn the_janitor_applies_ops_in_order() {
        let (_dir, o) = outbox();
        let k = key(5);
        o.write_record(&k, &rec(1)).unwrap();
        o.write_chunk(&k, 0, b"x").unwrap();
        o.write_chunk(&k, 1, b"y").unwrap();
        o.write_exit(&exit(k, 2)).unwrap();
        let (tx, handle) = spawn_janitor(o.clone());
        tx.send(DiskOp::AckChunks { key: k, upto: 0 }).await.unwrap();
        tx.send(DiskOp::Forget { key: k }).await.unwrap();
        drop(tx);
        handle.await.unwrap();
        assert!(!o.task_dir(&k).exists() && !o.record_path(&k).exists());
        assert_eq!(o.load().unwrap(), Index::default());
    }

    #[tokio::test]
    async fn an_in_memory_outbox_keeps_chunks_until_acknowledged_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let o = Outbox::in_memory(&state);
        o.create_dirs().unwrap();
        let k = key(1);
        o.write_record(&k, &rec(5)).unwrap();
        for seq in 0..3 {
            o.write_chunk(&k, seq, format!("c{seq}").as_bytes()).unwrap();
        }
        o.write_exit(&exit(k, 3)).unwrap();
        assert_eq!(o.read_chunk(&k, 1).await.unwrap(), b"c1");
        o.ack_chunks(&k, 1).unwrap();
        assert!(o.read_chunk(&k, 1).await.is_err());
        assert_eq!(o.read_chunk(&k, 2).await.unwrap(), b"c2");
        o.forget(&k).unwrap();
        assert!(o.read_chunk(&k, 2).await.is_err());
        assert_eq!(o.load().unwrap(), Index::default());
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "nothing on disk");
    }
}
