//! The script file a task runs: `state_dir/scripts/<key>.<ext>`, mode 0700, owned by the
//! account when the agent switches users, removed when the task ends.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::fs::{fchown, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use shoal_proto::agent::TaskKey;

/// Writes the script; `owner` makes it the account's. Blocking.
pub fn write(dir: &Path, key: &TaskKey, ext: &str, body: &[u8], owner: Option<(Uid, Gid)>) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{key}.{ext}"));
    // A leftover from a crash may exist with another owner; start from a fresh file.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o700).open(&path)?;
    // The umask may have narrowed the mode; 0700 exactly is what we want.
    f.set_permissions(std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        fchown(&f, Some(uid.as_raw()), Some(gid.as_raw()))?;
    }
    f.write_all(body)?;
    Ok(path)
}

/// Removes the script file when the execution ends, however it ends.
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "could not remove script file");
            }
        }
    }
}
