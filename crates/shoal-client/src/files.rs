//! File distribution calls: upload slots (`generate_local_file_upload_url`) and the `PUT`
//! that fills one, streamed from disk; `fast_transfer_file`; `push_config_file`; and the
//! file logs of a file step (`file_task_logs`), typed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_proto::jobv3::{ConfigFileDto, FastTransferFileReq, FileSourceDto, JobExecuteResp, PushConfigFileReq, ScopeReq, ServerDto};
use tokio::io::AsyncReadExt;

use crate::{merge, Client, ClientError, Result, Scope, LOG_BATCH};

/// Bytes read from disk per piece of an upload.
const UPLOAD_PIECE: usize = 256 * 1024;

/// JOB's source type of files uploaded through an upload URL.
const FILE_TYPE_UPLOADED: i32 = 2;
const FILE_TYPE_SOURCE: i32 = 3;

/// One slot of `generate_local_file_upload_url`: where to `PUT` the file, and the path a
/// `fast_transfer_file` names it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSlot {
    pub upload_url: String,
    pub path: String,
}

/// What the server stored from an upload (`data.nodeInfo` of its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedFile {
    pub md5: String,
    pub sha256: String,
    pub size: u64,
}

/// A file step's transfer mode: strict fails a host whose target directory is missing, force
/// makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferMode {
    Strict = 1,
    #[default]
    Force = 2,
}

/// A `fast_transfer_file` of uploaded files (`file_type` 2) to one directory.
#[derive(Debug, Clone, Default)]
pub struct UploadTransfer {
    /// Upload paths (`UploadSlot::path`) of filled slots.
    pub paths: Vec<String>,
    /// Absolute directory on the targets.
    pub target_dir: String,
    pub target: ServerDto,
    pub account_alias: String,
    pub mode: TransferMode,
    /// MB/s per target; `None` is no limit.
    pub download_limit_mb: Option<i64>,
    /// New name of the one file.
    pub target_name: Option<String>,
    pub timeout_secs: Option<i64>,
    pub task_name: Option<String>,
    /// Files of file sources (`file_type` 3): (source code, paths in it).
    pub sources: Vec<(String, Vec<String>)>,
}

/// One file of a host's file log (`file_logs[]`, JOB's `EsbFileLogV3DTO`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileLog {
    /// 0 upload (from a source), 1 download (onto the target).
    #[serde(default)]
    pub mode: i32,
    #[serde(default)]
    pub src_path: String,
    #[serde(default)]
    pub dest_path: Option<String>,
    /// 1 waiting, 2 uploading, 3 downloading, 4 done, 5 failed.
    #[serde(default)]
    pub status: i32,
    /// As JOB writes it, e.g. `683.6 KB`.
    #[serde(default)]
    pub size: String,
    /// e.g. `512 KB/s`.
    #[serde(default)]
    pub speed: String,
    /// e.g. `42%`.
    #[serde(default)]
    pub process: String,
    #[serde(default)]
    pub log_content: String,
}

/// A file log's states (`file_logs[].status`).
pub mod file_status {
    pub const WAITING: i32 = 1;
    pub const UPLOADING: i32 = 2;
    pub const DOWNLOADING: i32 = 3;
    pub const DONE: i32 = 4;
    pub const FAILED: i32 = 5;
}

impl FileLog {
    /// `process` as a number: 0..=100.
    pub fn percent(&self) -> u64 {
        self.process.trim().trim_end_matches('%').trim().parse::<f64>().map_or(0, |p| p.clamp(0.0, 100.0) as u64)
    }

    /// The reason part of `log_content` (what follows `Detail: `), or the whole of it.
    pub fn detail(&self) -> &str {
        match self.log_content.split_once("Detail: ") {
            Some((_, d)) => d.trim(),
            None => self.log_content.trim(),
        }
    }
}

/// The file logs of one target host (`file_task_logs[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFileLogs {
    pub bk_host_id: i64,
    #[serde(default)]
    pub bk_cloud_id: i64,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub file_logs: Vec<FileLog>,
}

/// Pieces of a file read from disk as it is sent, counted through `sent`. A read error ends
/// the stream and is kept in `failed`, so it is told apart from the network's.
fn file_stream(
    file: tokio::fs::File,
    sent: impl Fn(u64) + Send + Sync + 'static,
    failed: Arc<Mutex<Option<std::io::Error>>>,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures_util::stream::unfold(Some((file, 0u64, sent, failed)), |state| async move {
        let (mut file, total, sent, failed) = state?;
        let mut buf = vec![0u8; UPLOAD_PIECE];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                let total = total + n as u64;
                sent(total);
                Some((Ok(buf), Some((file, total, sent, failed))))
            }
            Err(e) => {
                let kind = e.kind();
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Some((Err(std::io::Error::new(kind, "reading the file failed")), None))
            }
        }
    })
}

impl Client {
    /// `generate_local_file_upload_url`: one slot per name (names are plain file names, no
    /// `/`; each once).
    pub async fn upload_urls(&self, scope: &Scope, names: &[String]) -> Result<BTreeMap<String, UploadSlot>> {
        if names.is_empty() {
            return Err(ClientError::Validation("no file names".into()));
        }
        let p = merge(scope.fields(), json!({"file_name_list": names}));
        #[derive(Deserialize)]
        struct Answer {
            url_map: BTreeMap<String, UploadSlot>,
        }
        let a: Answer = self.call("generate_local_file_upload_url", p).await?;
        if let Some(n) = names.iter().find(|n| !a.url_map.contains_key(n.as_str())) {
            return Err(ClientError::Transport(format!("the server handed out no upload URL for {n:?}")));
        }
        Ok(a.url_map)
    }

    /// `PUT` the file at `local` to an upload URL, read from disk piece by piece as it is sent
    /// (never whole in memory). `sent` is told the bytes sent so far. A transport failure is
    /// retried from the start of the file, as the slot takes a new upload whole.
    pub async fn upload_file(
        &self,
        slot: &UploadSlot,
        local: &Path,
        sent: impl Fn(u64) + Clone + Send + Sync + 'static,
    ) -> Result<UploadedFile> {
        // The API's timeout bounds connecting and waiting for the answer, not the upload,
        // which takes as long as the file needs.
        let http = self
            .trusting(reqwest::Client::builder().connect_timeout(self.cfg.timeout).read_timeout(self.cfg.timeout))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut attempt = 0u32;
        loop {
            let file =
                tokio::fs::File::open(local).await.map_err(|e| ClientError::Validation(format!("cannot read {}: {e}", local.display())))?;
            let size = file.metadata().await.map_err(|e| ClientError::Validation(format!("cannot read {}: {e}", local.display())))?.len();
            let failed = Arc::new(Mutex::new(None));
            let body = reqwest::Body::wrap_stream(file_stream(file, sent.clone(), failed.clone()));
            let result = http.put(&slot.upload_url).header(reqwest::header::CONTENT_LENGTH, size).body(body).send().await;
            if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(ClientError::Validation(format!("cannot read {}: {e}", local.display())));
            }
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.retry.attempts.max(1) {
                        return Err(ClientError::Transport(format!("uploading {}: {}", local.display(), self.describe(&e))));
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| ClientError::Transport(self.describe(&e)))?;
            let v: Value = serde_json::from_str(&text).map_err(|_| {
                let head: String = text.chars().take(200).collect();
                ClientError::Transport(format!("uploading {}: HTTP {status}, not an upload answer: {head}", local.display()))
            })?;
            if status != 200 || v["code"].as_i64() != Some(0) {
                return Err(ClientError::Api {
                    code: v["code"].as_i64().unwrap_or(i64::from(status)) as i32,
                    message: format!("uploading {}: {}", local.display(), v["message"].as_str().unwrap_or("refused")),
                    http_status: status,
                    request_id: None,
                });
            }
            let node: UploadedFile = serde_json::from_value(v["data"]["nodeInfo"].clone())
                .map_err(|e| ClientError::Transport(format!("uploading {}: unexpected answer: {e}", local.display())))?;
            if node.size != size {
                return Err(ClientError::Transport(format!(
                    "uploading {}: the server stored {} bytes of {size} (the file changed while it was sent?)",
                    local.display(),
                    node.size
                )));
            }
            return Ok(node);
        }
    }

    pub async fn fast_transfer_file(&self, req: &FastTransferFileReq) -> Result<JobExecuteResp> {
        let params = serde_json::to_value(req).map_err(|e| ClientError::Validation(e.to_string()))?;
        self.call("fast_transfer_file", params).await
    }

    /// `fast_transfer_file` of uploaded files.
    pub async fn transfer_uploads(&self, scope: &Scope, t: &UploadTransfer) -> Result<JobExecuteResp> {
        if t.paths.is_empty() && t.sources.iter().all(|(_, p)| p.is_empty()) {
            return Err(ClientError::Validation("no files to transfer".into()));
        }
        if t.target.is_empty() {
            return Err(ClientError::Validation("no target hosts".into()));
        }
        if !t.target_dir.starts_with('/') {
            return Err(ClientError::Validation(format!("target directory {:?} must be absolute", t.target_dir)));
        }
        let req = FastTransferFileReq {
            scope: scope_req(scope),
            task_name: t.task_name.clone(),
            account_alias: Some(t.account_alias.clone()),
            file_target_path: Some(t.target_dir.clone()),
            file_target_name: t.target_name.clone(),
            file_source_list: Some(
                (!t.paths.is_empty())
                    .then(|| FileSourceDto { file_list: Some(t.paths.clone()), file_type: Some(FILE_TYPE_UPLOADED), ..Default::default() })
                    .into_iter()
                    .chain(t.sources.iter().filter(|(_, p)| !p.is_empty()).map(|(code, paths)| FileSourceDto {
                        file_list: Some(paths.clone()),
                        file_type: Some(FILE_TYPE_SOURCE),
                        file_source_code: Some(code.clone()),
                        ..Default::default()
                    }))
                    .collect(),
            ),
            target_server: Some(t.target.clone()),
            timeout: t.timeout_secs,
            download_speed_limit: t.download_limit_mb,
            transfer_mode: Some(t.mode as i32),
            ..Default::default()
        };
        self.fast_transfer_file(&req).await
    }

    /// `push_config_file`: `files` are (name, content); the client does the Base64. JOB
    /// answers no step id here.
    pub async fn push_config_file(
        &self,
        scope: &Scope,
        files: &[(String, Vec<u8>)],
        target_dir: &str,
        target: ServerDto,
        account_alias: &str,
    ) -> Result<JobExecuteResp> {
        if files.is_empty() {
            return Err(ClientError::Validation("no files to push".into()));
        }
        let req = PushConfigFileReq {
            scope: scope_req(scope),
            account_alias: Some(account_alias.to_string()),
            file_target_path: Some(target_dir.to_string()),
            file_list: Some(
                files.iter().map(|(n, c)| ConfigFileDto { file_name: Some(n.clone()), content: Some(crate::b64(c)) }).collect(),
            ),
            target_server: Some(target),
            ..Default::default()
        };
        let params = serde_json::to_value(&req).map_err(|e| ClientError::Validation(e.to_string()))?;
        self.call("push_config_file", params).await
    }

    /// File logs of a file step's hosts, asked [`LOG_BATCH`] at a time
    /// (`batch_get_job_instance_ip_log`, `file_task_logs`).
    pub async fn file_logs(
        &self,
        scope: &Scope,
        job_instance_id: i64,
        step_instance_id: i64,
        host_ids: &[i64],
    ) -> Result<Vec<HostFileLogs>> {
        if job_instance_id <= 0 || step_instance_id <= 0 {
            return Err(ClientError::Validation(format!("job {job_instance_id} step {step_instance_id}: no job was created")));
        }
        let mut wanted = host_ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(LOG_BATCH) {
            let p = merge(
                scope.fields(),
                json!({"job_instance_id": job_instance_id, "step_instance_id": step_instance_id, "host_id_list": chunk}),
            );
            let page: shoal_proto::jobv3::BatchIpLogDto = self.call("batch_get_job_instance_ip_log", p).await?;
            for h in page.file_task_logs.unwrap_or_default() {
                let h: HostFileLogs = serde_json::from_value(h).map_err(|e| ClientError::Transport(format!("unexpected file log: {e}")))?;
                out.push(h);
            }
        }
        Ok(out)
    }
}

fn scope_req(scope: &Scope) -> ScopeReq {
    ScopeReq { bk_scope_type: Some(scope.scope_type.clone()), bk_scope_id: Some(scope.scope_id.clone()), bk_biz_id: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_log_progress_and_reason() {
        let l: FileLog = serde_json::from_value(json!({
            "mode": 1, "src_path": "1/x/u/a.txt", "dest_path": "/t/a.txt", "status": 5, "size": "1.0 KB",
            "speed": "0 KB/s", "process": "42%",
            "log_content": "[2026-01-01 00:00:00] FileName: /t/a.txt FileSize: 1.0 KB State: failed Speed: 0 KB/s Progress: 42% Detail: /t does not exist"
        }))
        .unwrap();
        assert_eq!(l.percent(), 42);
        assert_eq!(l.detail(), "/t does not exist");
        let l = FileLog { process: "n/a".into(), log_content: " plain ".into(), ..l };
        assert_eq!((l.percent(), l.detail()), (0, "plain"));
    }

    #[tokio::test]
    async fn a_file_is_read_piece_by_piece_and_counted() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let content: Vec<u8> = (0..(UPLOAD_PIECE * 2 + 10)).map(|i| (i % 253) as u8).collect();
        std::fs::write(&p, &content).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let s = seen.clone();
        let failed = Arc::new(Mutex::new(None));
        let pieces: Vec<Vec<u8>> =
            file_stream(tokio::fs::File::open(&p).await.unwrap(), move |n| s.lock().unwrap().push(n), failed.clone())
                .map(|r| r.unwrap())
                .collect()
                .await;
        assert!(failed.lock().unwrap().is_none());
        assert!(pieces.iter().all(|p| p.len() <= UPLOAD_PIECE), "no piece is larger than {UPLOAD_PIECE}");
        assert_eq!(pieces.concat(), content);
        assert_eq!(seen.lock().unwrap().last().copied(), Some(content.len() as u64));
    }

    #[tokio::test]
    async fn a_read_error_ends_the_stream_and_is_kept() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        // A directory opens as a file but cannot be read as one.
        let failed = Arc::new(Mutex::new(None));
        let items: Vec<std::io::Result<Vec<u8>>> =
            file_stream(tokio::fs::File::open(dir.path()).await.unwrap(), |_| {}, failed.clone()).collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        let kept = failed.lock().unwrap().take().expect("the read error is kept");
        assert_eq!(kept.raw_os_error(), Some(nix::libc::EISDIR), "{kept}");
    }
}
