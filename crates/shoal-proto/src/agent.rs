//! Messages between `shoal agent` and `shoal server`, one WebSocket frame each: a JSON text
//! frame, except log chunks, which go as binary frames ([`LogChunk::to_frame`]) so output is
//! neither base64-encoded nor JSON-escaped on its way.
//!
//! The agent dials out, sends [`AgentMsg::Hello`] and gets [`ServerMsg::Welcome`] (or
//! [`ServerMsg::Reject`]). Tasks are keyed by [`TaskKey`]; a repeated key is the same task.
//! Output goes up as numbered [`LogChunk`]s and ends with one [`TaskExit`]; the server
//! acknowledges what it has committed with [`Ack`], and the agent keeps (on disk) and resends
//! whatever is not yet acknowledged, so a result is neither lost nor applied twice.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of this protocol; the server refuses agents speaking another one.
pub const PROTOCOL_VERSION: u32 = 2;

/// Identity of one host task: `(step_instance_id, execute_count, host_id)`, and for a file
/// step rolling by source file, which batch of files (`file_batch`, from 1; 0 otherwise):
/// each batch sends every target a task of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    pub step_instance_id: i64,
    pub execute_count: i32,
    pub host_id: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub file_batch: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl TaskKey {
    /// The task of `host_id` in run `execute_count` of a step (no file batch).
    pub fn new(step_instance_id: i64, execute_count: i32, host_id: i64) -> TaskKey {
        TaskKey { step_instance_id, execute_count, host_id, file_batch: 0 }
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.step_instance_id, self.execute_count, self.host_id)?;
        if self.file_batch != 0 {
            write!(f, "-{}", self.file_batch)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TaskKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut it = s.split('-');
        let bad = || format!("bad task key {s:?}");
        let k = TaskKey {
            step_instance_id: it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?,
            execute_count: it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?,
            host_id: it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?,
            file_batch: match it.next() {
                None => 0,
                Some(b) => b.parse().ok().filter(|b| *b > 0).ok_or_else(bad)?,
            },
        };
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(k)
    }
}

/// Facts a host registers with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub bk_biz_id: i64,
    pub bk_cloud_id: i64,
    pub ip: String,
    #[serde(default)]
    pub set_id: Option<i64>,
    #[serde(default)]
    pub module_id: Option<i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub os: String,
}

/// Agent → server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    Hello(Hello),
    Log(LogChunk),
    Exit(TaskExit),
    Heartbeat,
    /// The answer to a [`ServerMsg::Stage`].
    Staged(StageResult),
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// Enrolment token.
    pub token: String,
    /// Stable identity of this agent, kept in its state dir.
    pub agent_id: String,
    pub agent_version: String,
    pub facts: HostFacts,
    /// Tasks this agent knows about (running, or finished with results not yet acknowledged).
    #[serde(default)]
    pub known_tasks: Vec<TaskKey>,
    /// The agent's own secret (made once, kept in its state dir): bound to `agent_id` at
    /// enrolment (which needs the token) and required on every hello after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("protocol", &self.protocol)
            .field("token", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .field("facts", &self.facts)
            .field("known_tasks", &self.known_tasks.len())
            .finish()
    }
}

/// A piece of a task's interleaved stdout+stderr. `seq` counts from 0 per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogChunk {
    pub key: TaskKey,
    pub seq: u64,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

/// First byte of a binary frame holding a [`LogChunk`].
pub const LOG_FRAME: u8 = 1;
/// First byte of a binary frame holding a [`LogChunk`] of a task with a file batch: its
/// header ends with the batch (i32).
pub const LOG_FRAME_BATCH: u8 = 2;
/// Tag, step instance, execute count, host, seq.
const LOG_HEADER: usize = 1 + 8 + 4 + 8 + 8;

impl LogChunk {
    /// The binary frame of this chunk: [`LOG_FRAME`], then `step_instance_id` (i64),
    /// `execute_count` (i32), `host_id` (i64) and `seq` (u64), little-endian, then the bytes.
    /// A task with a file batch uses [`LOG_FRAME_BATCH`], the batch following `seq`.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(LOG_HEADER + 4 + self.data.len());
        f.push(if self.key.file_batch == 0 { LOG_FRAME } else { LOG_FRAME_BATCH });
        f.extend_from_slice(&self.key.step_instance_id.to_le_bytes());
        f.extend_from_slice(&self.key.execute_count.to_le_bytes());
        f.extend_from_slice(&self.key.host_id.to_le_bytes());
        f.extend_from_slice(&self.seq.to_le_bytes());
        if self.key.file_batch != 0 {
            f.extend_from_slice(&self.key.file_batch.to_le_bytes());
        }
        f.extend_from_slice(&self.data);
        f
    }

    fn header_len(f: &[u8]) -> usize {
        if f.first() == Some(&LOG_FRAME_BATCH) {
            LOG_HEADER + 4
        } else {
            LOG_HEADER
        }
    }

    /// Reads a frame made by [`LogChunk::to_frame`]; `None` when it is not one.
    /// How many bytes of output a binary frame carries (what [`LogChunk::from_frame`] copies).
    pub fn data_len_of_frame(f: &[u8]) -> usize {
        f.len().saturating_sub(Self::header_len(f))
    }

    pub fn from_frame(f: &[u8]) -> Option<LogChunk> {
        let header = Self::header_len(f);
        if f.len() < header || (f[0] != LOG_FRAME && f[0] != LOG_FRAME_BATCH) {
            return None;
        }
        let i64_at = |at: usize| f.get(at..at + 8).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes);
        let i32_at = |at: usize| f.get(at..at + 4).and_then(|b| b.try_into().ok()).map(i32::from_le_bytes);
        let file_batch = if f[0] == LOG_FRAME_BATCH { i32_at(LOG_HEADER).filter(|b| *b > 0)? } else { 0 };
        let key = TaskKey { step_instance_id: i64_at(1)?, execute_count: i32_at(9)?, host_id: i64_at(13)?, file_batch };
        let seq = u64::from_le_bytes(f.get(21..29)?.try_into().ok()?);
        Some(LogChunk { key, seq, data: f[header..].to_vec() })
    }
}

/// Why a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The script exited by itself; see `exit_code`.
    Exited,
    /// Killed by a signal it did not get from us.
    Signaled,
    /// Killed by the agent after `timeout_secs`.
    Timeout,
    /// Killed because the server asked (user terminate).
    Cancelled,
    /// The interpreter for the language is not installed on the host, or the language
    /// cannot run on this OS.
    InterpreterMissing,
    /// The execution account's OS user does not exist, or the agent may not switch to it.
    UserError,
    /// The process could not be started for another reason (see the log).
    StartFailed,
    /// The agent restarted while the task ran; the outcome is unknown.
    AgentRestarted,
    /// A file step could not place a file (space, permission, path, hash): host status 202.
    TransferFailed,
    /// A file step's source is gone: host status 203.
    SourceMissing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskExit {
    pub key: TaskKey,
    pub reason: ExitReason,
    pub exit_code: Option<i32>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Number of log chunks sent for this task (chunks `0..chunks`).
    pub chunks: u64,
    /// Bytes dropped between head and tail because the output exceeded the cap.
    pub dropped_bytes: u64,
    /// Global string variables the script changed, by name (see
    /// `shoal_core::template::with_shell_variables`): at most [`MAX_VARS_BYTES`] of names
    /// and values. Absent from older agents' exits and from records they left.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

/// The environment variable naming the file where a script leaves the global string
/// variables it changed (`name\0value\0` pairs), set by the agent for every script.
pub const VARS_FILE_ENV: &str = "SHOAL_VARS_FILE";

/// The most bytes of names and values a task reports in [`TaskExit::vars`]; an agent
/// ignores more (saying so in the task's log), and the server drops the whole set.
pub const MAX_VARS_BYTES: usize = 64 * 1024;

impl TaskExit {
    /// Bytes of names and values in [`TaskExit::vars`].
    pub fn vars_bytes(&self) -> usize {
        self.vars.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// Room beyond a task's output cap ([`RunTask::output_cap`]) for the agent's [`drop_marker`]: an
/// agent sends at most `cap` bytes of output plus the marker, and the server stores no more.
pub const OUTPUT_MARKER_ROOM: u64 = 128;

/// The line an agent puts between the head and the tail of output it cut.
pub fn drop_marker(dropped: u64) -> String {
    format!("\n[shoal] ... {dropped} bytes of output dropped ...\n")
}

/// The line the server ends a task's log with when an agent sent more than the cap (plus
/// [`OUTPUT_MARKER_ROOM`]) and the server dropped the rest.
pub fn server_drop_note(cap: u64) -> String {
    format!("\n[shoal] ... output beyond the {cap}-byte cap was dropped by the server ...\n")
}

/// Server → agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome(Welcome),
    Reject(Reject),
    Run(RunTask),
    Cancel {
        key: TaskKey,
    },
    Ack(Ack),
    /// Put these source files into the server's blob store (a file step's source host).
    Stage(StageRequest),
}

/// A file step's source host: hash each file under `paths` and upload what the server does not
/// hold yet. Idempotent (content-addressed): a repeated request uploads nothing twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRequest {
    /// Names this request in the answer.
    pub id: u64,
    /// Absolute paths: files, directories (taken whole), or a last component `REGEX:<re>`
    /// matching file names in its directory.
    pub paths: Vec<String>,
    /// The account whose read permission the files need.
    pub user: String,
    /// Path of the server's staging endpoint, and the token that lets this request use it.
    pub url: String,
    pub token: String,
    /// Upload speed limit in bytes per second; 0 is none.
    pub upload_limit: u64,
}

/// What a source host staged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub id: u64,
    pub files: Vec<StagedFile>,
    /// Paths that named nothing.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Why staging failed as a whole (the account cannot read, the upload failed…).
    #[serde(default)]
    pub error: Option<String>,
}

/// One staged file: where it was, the name it takes under the target directory, its blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedFile {
    pub src_path: String,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    pub bk_host_id: i64,
    pub heartbeat_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reject {
    pub message: String,
    /// False when retrying cannot help (bad token, wrong protocol).
    pub retry: bool,
}

/// Run a script. Parameters arrive already split into arguments.
#[derive(Clone, Serialize, Deserialize)]
pub struct RunTask {
    pub key: TaskKey,
    pub language: i32,
    #[serde(with = "b64")]
    pub script: Vec<u8>,
    pub args: Vec<String>,
    /// Arguments are sensitive: never log them.
    pub sensitive: bool,
    /// OS user to run as.
    pub user: String,
    pub timeout_secs: u64,
    /// Output cap in bytes; beyond it head and tail are kept.
    pub output_cap: u64,
    /// Values (a plan's passwords) the agent replaces with [`MASK`] in the task's output
    /// before it leaves the host, also when one is split between two writes or chunks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
    /// A file step: fetch and place these files instead of running a script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Box<Transfer>>,
}

/// The files a file step places on one target host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Absolute directory the files go into.
    pub target_dir: String,
    /// Make missing directories (JOB's force mode) or fail (strict mode).
    pub create_dirs: bool,
    /// Download speed limit in bytes per second; 0 is none.
    pub download_limit: u64,
    pub files: Vec<FileGet>,
}

/// One file to fetch: a blob, where it goes, and where it came from (for the file log).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct FileGet {
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    pub size: u64,
    /// Path under the target directory: plain relative components.
    pub name: String,
    /// Permission bits to give the file (default 0644).
    #[serde(default)]
    pub mode: Option<u32>,
    /// Where the content came from, as the file log shows it.
    pub src_path: String,
    #[serde(default)]
    pub src_host: Option<FileHost>,
    /// Path of the blob endpoint on the server, and the token that lets this task read it.
    pub url: String,
    pub token: String,
    /// When set, the blob may come from peers (targets that hold it verified) rather than
    /// the server: the secret its peers ask for. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<String>,
}

/// Header of the server's answer to a blob fetch: the BLAKE3 (hex) of the blob's bytes,
/// computed when the blob was stored, which the target checks what it receives against (it
/// costs a fraction of SHA-256). Absent where it was not recorded: the SHA-256 is checked.
pub const BLOB_BLAKE3_HEADER: &str = "x-shoal-blake3";

impl fmt::Debug for FileGet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileGet").field("sha256", &self.sha256).field("size", &self.size).field("name", &self.name).finish_non_exhaustive()
    }
}

/// A host as a file log names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHost {
    pub bk_host_id: i64,
    pub bk_cloud_id: i64,
    pub ip: String,
}

/// JOB's file-log `status` (`FileDistStatusEnum`).
pub const FILE_STATUS_WAITING: u8 = 1;
pub const FILE_STATUS_UPLOADING: u8 = 2;
pub const FILE_STATUS_DOWNLOADING: u8 = 3;
pub const FILE_STATUS_SUCCESS: u8 = 4;
pub const FILE_STATUS_FAILED: u8 = 5;

/// One line of a file task's output: the state of one file at `time_ms`. The last event of a
/// file is its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEvent {
    /// 0 upload (source side), 1 download (target side).
    pub mode: u8,
    pub src_path: String,
    #[serde(default)]
    pub src_host: Option<FileHost>,
    pub dest_path: String,
    /// [`FILE_STATUS_WAITING`] … [`FILE_STATUS_FAILED`].
    pub status: u8,
    pub size: u64,
    /// Bytes done so far.
    pub done: u64,
    /// Bytes per second.
    pub speed: u64,
    pub time_ms: i64,
    pub message: String,
}

/// What a masked value is replaced with.
pub const MASK: &str = "******";

impl fmt::Debug for RunTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunTask")
            .field("key", &self.key)
            .field("language", &self.language)
            .field("script_bytes", &self.script.len())
            .field("args", if self.sensitive { &"<sensitive>" as &dyn fmt::Debug } else { &self.args })
            .field("user", &self.user)
            .field("timeout_secs", &self.timeout_secs)
            .field("masked_values", &self.mask.len())
            .finish()
    }
}

/// What the server has committed: for each key, chunks `0..=upto_seq` (if any) and the exit
/// (if `exit`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ack {
    pub items: Vec<AckItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckItem {
    pub key: TaskKey,
    pub upto_seq: Option<u64>,
    pub exit: bool,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_key_text_round_trip() {
        let k = TaskKey::new(12, 0, 7);
        assert_eq!(k.to_string().parse::<TaskKey>().unwrap(), k);
        assert_eq!(k.to_string(), "12-0-7", "the text of a task without a file batch is unchanged");
        let b = TaskKey { file_batch: 3, ..k };
        assert_eq!(b.to_string(), "12-0-7-3");
        assert_eq!(b.to_string().parse::<TaskKey>().unwrap(), b);
        assert!("1-2".parse::<TaskKey>().is_err());
        assert!("1-2-3-0".parse::<TaskKey>().is_err(), "batch 0 is written without");
        assert!("1-2-3-4-5".parse::<TaskKey>().is_err());
        // JSON: the batch only when there is one, and older keys still decode.
        assert_eq!(serde_json::to_string(&k).unwrap(), r#"{"step_instance_id":12,"execute_count":0,"host_id":7}"#);
        assert_eq!(serde_json::from_str::<TaskKey>(&serde_json::to_string(&b).unwrap()).unwrap(), b);
    }

    #[test]
    fn exits_carry_variables_and_older_exits_still_decode() {
        let key = TaskKey::new(1, 0, 2);
        let mut x = TaskExit {
            key,
            reason: ExitReason::Exited,
            exit_code: Some(0),
            start_ms: 1,
            end_ms: 2,
            chunks: 1,
            dropped_bytes: 0,
            vars: BTreeMap::new(),
        };
        let text = serde_json::to_string(&AgentMsg::Exit(x.clone())).unwrap();
        assert!(!text.contains("vars"), "no field when nothing changed: {text}");
        // What an older agent sends (and keeps in its outbox).
        let old = r#"{"key":{"step_instance_id":1,"execute_count":0,"host_id":2},"reason":"exited","exit_code":0,"start_ms":1,"end_ms":2,"chunks":1,"dropped_bytes":0}"#;
        assert_eq!(serde_json::from_str::<TaskExit>(old).unwrap(), x);
        x.vars.insert("VERSION".into(), "2.0".into());
        assert_eq!(x.vars_bytes(), 10);
        let back: TaskExit = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(back, x);
    }

    #[test]
    fn log_chunk_carries_arbitrary_bytes() {
        let c = AgentMsg::Log(LogChunk { key: TaskKey::new(1, 0, 2), seq: 3, data: vec![0xff, 0, b'a'] });
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"type\":\"log\""));
        match serde_json::from_str::<AgentMsg>(&text).unwrap() {
            AgentMsg::Log(l) => assert_eq!(l.data, vec![0xff, 0, b'a']),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn log_frames_round_trip_and_refuse_what_is_not_one() {
        let c = LogChunk { key: TaskKey::new(-5, 3, 1 << 40), seq: u64::MAX, data: vec![0xff, 0, b'a'] };
        let f = c.to_frame();
        assert_eq!(f.len(), 29 + 3);
        assert_eq!(LogChunk::from_frame(&f), Some(c.clone()));
        let empty = LogChunk { data: Vec::new(), ..c };
        assert_eq!(LogChunk::from_frame(&empty.to_frame()), Some(empty));
        assert_eq!(LogChunk::from_frame(&f[..28]), None, "short header");
        let mut other = f.clone();
        other[0] = 3;
        assert_eq!(LogChunk::from_frame(&other), None, "another tag");
        assert_eq!(LogChunk::from_frame(&[]), None);
        // A file batch's chunk: its own tag, the batch after the header.
        let batch = LogChunk { key: TaskKey { file_batch: 2, ..c.key }, ..c.clone() };
        let f = batch.to_frame();
        assert_eq!((f[0], f.len()), (LOG_FRAME_BATCH, 29 + 4 + 3));
        assert_eq!(LogChunk::data_len_of_frame(&f), 3);
        assert_eq!(LogChunk::from_frame(&f), Some(batch));
        assert_eq!(LogChunk::from_frame(&f[..32]), None, "short header");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let h = Hello {
            protocol: 1,
            token: "s3cret".into(),
            agent_id: "a".into(),
            agent_version: "0".into(),
            facts: HostFacts::default(),
            known_tasks: vec![],
            credential: Some("cr3d".into()),
        };
        assert!(!format!("{h:?}").contains("s3cret"));
        assert!(!format!("{h:?}").contains("cr3d"));
        let t = RunTask {
            key: TaskKey::new(1, 0, 1),
            language: 1,
            script: vec![],
            args: vec!["hunter2".into()],
            sensitive: true,
            user: "root".into(),
            timeout_secs: 1,
            output_cap: 1,
            mask: vec!["pw".into()],
            transfer: None,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
