//! File distribution: a file step moves blobs named by their SHA-256.
//!
//! - [`blobs`]: the blob store ([`BlobStore`]; a local directory by default).
//! - [`gc`]: its garbage collection (blob uses recorded, unneeded blobs deleted).
//! - [`http`]: the two HTTP doors of file content — the upload URL handed out by
//!   `generate_local_file_upload_url` (a `PUT` of the raw body), and the blob endpoint target
//!   agents fetch from by range, with a token the server sealed into their task.
//! - [`StepTransfer`]: what a file step places on its targets, kept with the step; the engine
//!   turns it into each target's [`Transfer`].
//! - [`logs`]: a file task's output (one JSON [`shoal_proto::agent::FileEvent`] per line) folded
//!   into JOB's `file_logs`.

pub mod blobs;
pub mod gc;
pub mod http;
pub mod logs;
pub mod s3;
pub mod sources;
pub mod tracker;

use serde::{Deserialize, Serialize};
use shoal_proto::agent::{FileGet, FileHost, TaskKey, Transfer};

pub use blobs::{Blob, BlobId, BlobStore, LocalBlobs};

/// The blob store the configuration names (`blob_store`).
pub fn open_blobs(config: &crate::ServerConfig) -> anyhow::Result<std::sync::Arc<dyn BlobStore>> {
    use anyhow::Context;
    let local = config.data_dir().join("blobs");
    if config.blob_store != "s3" {
        return Ok(std::sync::Arc::new(LocalBlobs::new(local).context("preparing the blob directory")?));
    }
    let (Some(endpoint), Some(bucket), Some(ak), Some(sk)) =
        (&config.s3_endpoint, &config.s3_bucket, &config.s3_access_key, &config.s3_secret_key)
    else {
        anyhow::bail!("blob_store = \"s3\" needs s3_endpoint, s3_bucket, s3_access_key and s3_secret_key");
    };
    let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10)).build()?;
    let client = s3::S3Client::new(endpoint, &config.s3_region, ak, sk, http)?;
    let spool = local.join("tmp");
    Ok(std::sync::Arc::new(s3::S3Blobs::new(client, bucket, &config.s3_prefix, spool).context("preparing the blob spool directory")?))
}

/// Largest file Shoal takes in one upload or source.
pub const MAX_FILE_BYTES: u64 = 64 << 30;

/// Additional data the blob tokens are sealed with.
const BLOB_TOKEN_AAD: &[u8] = b"shoal-blob-token";

/// What a file step places on each target host (stored with the step as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTransfer {
    /// Absolute directory on the targets.
    pub target_dir: String,
    /// Force mode (make missing directories) or strict mode.
    pub create_dirs: bool,
    /// Bytes per second per target; 0 is no limit.
    pub download_limit: u64,
    pub files: Vec<StepFile>,
    /// Source hosts whose files are still to be staged (then they join `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<HostSource>,
    /// Upload speed limit of each source host, bytes per second; 0 is none.
    #[serde(default)]
    pub upload_limit: u64,
    /// Files of file sources still to be read into the blob store (then they join `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<sources::RemoteSource>,
    /// The name the one staged file takes (`file_target_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// A step rolling by source file: its sources cut into batches, each staged into
    /// `sources` (then `files`) in its turn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_batches: Vec<Vec<HostSource>>,
}

/// Cuts a file step's source hosts into the batches of [`SourceFileLimits`]. Hosts that follow
/// each other with the same files and account form one group (one `file_source_list` entry).
pub fn source_file_batches(sources: &[HostSource], limits: &shoal_core::rolling::SourceFileLimits) -> Vec<Vec<HostSource>> {
    let mut groups: Vec<&[HostSource]> = Vec::new();
    let mut start = 0;
    for i in 1..=sources.len() {
        if i == sources.len() || sources[i].paths != sources[start].paths || sources[i].user != sources[start].user {
            groups.push(&sources[start..i]);
            start = i;
        }
    }
    let sizes: Vec<(usize, usize)> = groups.iter().map(|g| (g.len(), g[0].paths.len())).collect();
    limits
        .plan(&sizes)
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .flat_map(|pick| {
                    groups[pick.group][pick.hosts.clone()]
                        .iter()
                        .map(move |h| HostSource {
                            host: h.host.clone(),
                            user: h.user.clone(),
                            paths: h.paths[pick.files.clone()].to_vec(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

/// Files on a source host, as the caller named them, and the account that reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSource {
    pub host: FileHost,
    pub user: String,
    pub paths: Vec<String>,
}

/// Path of the staging endpoint source agents upload to (`<path>/<sha256>`).
pub const STAGE_PATH: &str = "/api/shoal/v1/agent/stage";
const STAGE_TOKEN_AAD: &[u8] = b"shoal-stage-token";

/// A token for a source agent to upload into the blob store for step `step_id`.
pub fn stage_token(key_seal: &crate::secrets::Key, step_id: i64) -> anyhow::Result<String> {
    key_seal.seal(&format!("stage {step_id}"), STAGE_TOKEN_AAD)
}

/// Whether `token` lets its holder stage files.
pub fn stage_token_opens(key_seal: &crate::secrets::Key, token: &str) -> bool {
    key_seal.open(token, STAGE_TOKEN_AAD).is_ok_and(|p| p.starts_with("stage "))
}

/// One file of a file step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFile {
    pub sha256: String,
    pub size: u64,
    /// Name under the target directory.
    pub name: String,
    #[serde(default)]
    pub mode: Option<u32>,
    /// The source as the caller named it (an upload path, a host path, a pushed file name).
    pub src_path: String,
    #[serde(default)]
    pub src_host: Option<FileHost>,
}

impl StepTransfer {
    /// Whether sources remain to be staged before the targets can fetch.
    pub fn needs_staging(&self) -> bool {
        !self.sources.is_empty() || !self.remote.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a step transfer serialises")
    }

    pub fn from_json(s: &str) -> Option<StepTransfer> {
        serde_json::from_str(s).ok()
    }

    /// The transfer of host task `key`: each file with a token that lets that task read its
    /// blob, and for files of at least `swarm_min` bytes (none when `None`) the secret that
    /// lets the task fetch the blob from peers.
    pub fn for_task(&self, key: TaskKey, key_seal: &crate::secrets::Key, swarm_min: Option<u64>) -> Transfer {
        let files = self
            .files
            .iter()
            .map(|f| FileGet {
                sha256: f.sha256.clone(),
                size: f.size,
                name: f.name.clone(),
                mode: f.mode,
                src_path: f.src_path.clone(),
                src_host: f.src_host.clone(),
                url: format!("/api/shoal/v1/agent/blobs/{}", f.sha256),
                token: blob_token(key_seal, &f.sha256, key).unwrap_or_default(),
                swarm: swarm_min.filter(|min| f.size >= *min).and_then(|_| swarm_secret(key_seal, &f.sha256)),
            })
            .collect();
        Transfer { target_dir: self.target_dir.clone(), create_dirs: self.create_dirs, download_limit: self.download_limit, files }
    }
}

/// A token for task `key` to read blob `sha256`: sealed by the server (so only a server of
/// this deployment makes one), naming the blob (so it opens nothing else), for a week.
pub fn blob_token(key_seal: &crate::secrets::Key, sha256: &str, key: TaskKey) -> anyhow::Result<String> {
    let expires = shoal_core::time::now_ms() + BLOB_TOKEN_TTL_MS;
    key_seal.seal(&format!("{sha256} {key} {expires}"), BLOB_TOKEN_AAD)
}

/// How long a blob token opens its blob (a retry of the step gets a new one).
const BLOB_TOKEN_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Whether `token` lets its holder read blob `sha256` (now).
pub fn token_opens(key_seal: &crate::secrets::Key, token: &str, sha256: &str) -> bool {
    token_holder(key_seal, token, sha256).is_some()
}

/// The host whose task `token` was made for, if it opens blob `sha256` now.
pub fn token_holder(key_seal: &crate::secrets::Key, token: &str, sha256: &str) -> Option<i64> {
    let plain = key_seal.open(token, BLOB_TOKEN_AAD).ok()?;
    let mut parts = plain.split(' ');
    let blob = parts.next();
    let host = parts.next().and_then(|k| k.parse::<TaskKey>().ok()).map(|k| k.host_id);
    let expires = parts.next().and_then(|e| e.parse::<i64>().ok());
    (blob == Some(sha256) && expires.is_some_and(|e| e > shoal_core::time::now_ms())).then_some(host).flatten()
}

/// The secret every target of blob `sha256` is given to fetch it from its peers: peers serve
/// the blob only to a holder of this secret, which only the server can make.
pub fn swarm_secret(key_seal: &crate::secrets::Key, sha256: &str) -> Option<String> {
    key_seal.mac("shoal-swarm", sha256)
}

/// File mode bits JOB callers cannot give: pushed and uploaded files are 0644.
pub const DEFAULT_MODE: u32 = 0o644;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_token_opens_its_blob_only() {
        let seal = crate::secrets::Key::from_bytes(&[7; 32]);
        let key = TaskKey::new(1, 0, 2);
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let t = blob_token(&seal, &a, key).unwrap();
        assert!(token_opens(&seal, &t, &a));
        assert!(!token_opens(&seal, &t, &b));
        assert!(!token_opens(&crate::secrets::Key::from_bytes(&[8; 32]), &t, &a), "another deployment's key");
        let stale = seal.seal(&format!("{a} {key} {}", shoal_core::time::now_ms() - 1), BLOB_TOKEN_AAD).unwrap();
        assert!(!token_opens(&seal, &stale, &a), "an expired token");
        let stage = stage_token(&seal, 1).unwrap();
        assert!(stage_token_opens(&seal, &stage));
        assert!(!token_opens(&seal, &stage, &a), "a staging token is not a blob token");
    }
}
