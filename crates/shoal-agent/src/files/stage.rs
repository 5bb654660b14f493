//! A file step's source side: find the files a [`StageRequest`] names (files, whole
//! directories, `REGEX:` names), check the step's account may read them, hash each, and upload
//! the ones the server does not hold yet to its staging endpoint (a `PUT` by SHA-256, which the
//! server checks against what it receives). Nothing is followed through a symbolic link
//! inside a directory taken whole.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use shoal_proto::agent::{StageRequest, StageResult, StagedFile};
use tokio::io::AsyncReadExt;

use super::Fetcher;
use crate::exec::account::{self, Account};

/// Files found for one requested path: (absolute path, name under the target directory).
type Found = Vec<(PathBuf, String)>;

/// Carries out `req`. Never fails: what goes wrong is in the result.
pub async fn stage(req: StageRequest, fetcher: Option<&Fetcher>) -> StageResult {
    let mut out = StageResult { id: req.id, files: vec![], missing: vec![], error: None };
    let Some(fetcher) = fetcher else {
        out.error = Some("this agent cannot upload files (no HTTP client)".into());
        return out;
    };
    let user = req.user.clone();
    let account = match tokio::task::spawn_blocking(move || account::resolve(&user)).await {
        Ok(Ok(a)) => a,
        Ok(Err(line)) => {
            out.error = Some(line);
            return out;
        }
        Err(e) => {
            out.error = Some(format!("user lookup failed: {e}"));
            return out;
        }
    };
    let paths = req.paths.clone();
    let found = tokio::task::spawn_blocking(move || paths.iter().map(|p| (p.clone(), find(p))).collect::<Vec<_>>()).await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            out.error = Some(format!("listing the source files failed: {e}"));
            return out;
        }
    };
    for (asked, files) in found {
        let files = match files {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => {
                out.missing.push(asked);
                continue;
            }
            Err(e) => {
                out.missing.push(format!("{asked} ({e})"));
                continue;
            }
        };
        for (path, name) in files {
            match one(fetcher, &req, &account, &path).await {
                Ok((sha256, size, mode)) => {
                    out.files.push(StagedFile { src_path: path.to_string_lossy().into_owned(), name, sha256, size, mode })
                }
                Err(e) => {
                    out.error = Some(format!("{}: {e}", path.display()));
                    return out;
                }
            }
        }
    }
    out
}

/// The files `asked` names.
fn find(asked: &str) -> Result<Found, String> {
    let p = Path::new(asked);
    if !p.is_absolute() {
        return Err("not an absolute path".into());
    }
    let last = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(re) = last.strip_prefix("REGEX:") {
        let re = regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("bad REGEX: {e}"))?;
        let dir = p.parent().unwrap_or(Path::new("/"));
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) && re.is_match(&name) {
                out.push((entry.path(), name));
            }
        }
        out.sort();
        return Ok(out);
    }
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e.to_string()),
    };
    if meta.is_file() {
        return Ok(vec![(p.to_path_buf(), last)]);
    }
    if !meta.is_dir() {
        return Err("not a regular file or directory".into());
    }
    // A directory goes whole, under its own name.
    let base = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
    let mut out = Vec::new();
    let mut stack = vec![(p.to_path_buf(), base)];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| e.to_string())?;
            let t = entry.file_type().map_err(|e| e.to_string())?;
            let name = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if t.is_dir() {
                stack.push((entry.path(), name));
            } else if t.is_file() {
                out.push((entry.path(), name));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `account` may read a file with metadata `m`.
fn may_read(account: &Account, m: &std::fs::Metadata) -> bool {
    if account.uid.is_root() {
        return true;
    }
    let mode = m.mode();
    if m.uid() == account.uid.as_raw() {
        return mode & 0o400 != 0;
    }
    if m.gid() == account.gid.as_raw() || account.groups.iter().any(|g| g.as_raw() == m.gid()) {
        return mode & 0o040 != 0;
    }
    mode & 0o004 != 0
}

/// Hashes `path` and uploads it unless the server holds its blob: (sha256, size, mode).
async fn one(fetcher: &Fetcher, req: &StageRequest, account: &Account, path: &Path) -> Result<(String, u64, u32), String> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| e.to_string())?;
    if !may_read(account, &meta) {
        return Err(format!("permission denied: account {} may not read it", account.name));
    }
    let mut f = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    let sha = hex::encode(hash.finalize());
    let mode = meta.mode() & 0o7777;
    let mut last = String::new();
    for attempt in 0..5u32 {
        match fetcher.put_blob(&req.url, &req.token, &sha, path, req.upload_limit).await {
            Ok(()) => return Ok((sha, size, mode)),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    Err(format!("upload failed: {last}"))
}
