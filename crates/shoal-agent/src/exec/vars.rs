//! Global variables a script sets for the steps after it.
//!
//! Each script gets a private directory of its own, `state_dir/scripts/<key>.d` (mode 0700,
//! the account's), and `SHOAL_VARS_FILE` naming the file `vars` in it. A plan step's shell
//! prelude writes there, as the script exits, the string variables it changed
//! (`name\0value\0`; see `shoal_core::template::with_shell_variables`). The agent reads the
//! file once the script has exited and sends the values with the task's exit; the directory
//! is removed with the task.
//!
//! The directory belongs to the script's account, so the agent (often root) trusts nothing in
//! it: the file is opened without following a symbolic link or blocking on a FIFO, must be a
//! regular file of that account, and is read up to [`MAX_VARS_BYTES`] only.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
pub use shoal_proto::agent::MAX_VARS_BYTES;
use shoal_proto::agent::{TaskKey, MASK, VARS_FILE_ENV};

/// The file's name in the task's directory.
const FILE: &str = "vars";

/// A task's private directory; removed (with whatever the script left in it) when dropped.
#[derive(Debug)]
pub struct VarsDir {
    path: PathBuf,
}

impl VarsDir {
    /// Makes `dir/<key>.d`, mode 0700, owned by `owner` when the agent switches users.
    /// Blocking.
    pub fn create(dir: &Path, key: &TaskKey, owner: Option<(Uid, Gid)>) -> std::io::Result<VarsDir> {
        let path = dir.join(format!("{key}.d"));
        // One left by a crash (the task runs again under the same key) starts afresh.
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = VarsDir { path };
        // The umask may have narrowed the mode; 0700 exactly is what we want.
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir.path, Some(uid.as_raw()), Some(gid.as_raw()))?;
        }
        Ok(dir)
    }

    /// What `SHOAL_VARS_FILE` names.
    pub fn file(&self) -> PathBuf {
        self.path.join(FILE)
    }

    /// The values the script left, masked with `mask` (a plan's passwords); `Err` is the
    /// `[shoal]` line saying why they were ignored. Blocking.
    pub fn read(&self, uid: Uid, mask: &[String]) -> Result<BTreeMap<String, String>, String> {
        let bytes = read_bounded(&self.file(), uid)?;
        let mut vars = parse(&bytes);
        for value in vars.values_mut() {
            for secret in mask.iter().filter(|s| !s.is_empty()) {
                if value.contains(secret.as_str()) {
                    *value = value.replace(secret.as_str(), MASK);
                }
            }
        }
        Ok(vars)
    }
}

impl Drop for VarsDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove a task's directory");
            }
        }
    }
}

/// The file's bytes: nothing when there is none; `Err` (the log line) when it is not a
/// regular file of `uid` or holds more than [`MAX_VARS_BYTES`].
fn read_bounded(path: &Path, uid: Uid) -> Result<Vec<u8>, String> {
    let ignored = |why: String| format!("[shoal] the variables this script set were ignored: {why}");
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(ignored(format!("cannot open ${}: {e}", VARS_FILE_ENV))),
    };
    let meta = file.metadata().map_err(|e| ignored(e.to_string()))?;
    if !meta.is_file() || meta.uid() != uid.as_raw() {
        return Err(ignored(format!("${} is not a regular file of the script's account", VARS_FILE_ENV)));
    }
    let limit = MAX_VARS_BYTES as u64;
    if meta.len() > limit {
        return Err(ignored(format!("{} bytes, more than the {} KiB allowed", meta.len(), limit / 1024)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| ignored(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(ignored(format!("more than the {} KiB allowed", limit / 1024)));
    }
    Ok(bytes)
}

/// `name\0value\0` pairs; entries whose name is not a variable name, and a last one cut
/// short, are left out. A later entry of a name wins.
pub fn parse(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut fields: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    // What follows the last NUL is an unfinished field.
    fields.pop();
    fields
        .chunks_exact(2)
        .filter_map(|p| {
            let name = std::str::from_utf8(p[0]).ok().filter(|n| is_name(n))?;
            Some((name.to_string(), String::from_utf8_lossy(p[1]).into_owned()))
        })
        .collect()
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TaskKey {
        TaskKey::new(4, 0, 9)
    }

    #[test]
    fn pairs_are_parsed_and_junk_left_out() {
        let got = parse(b"VERSION\x002.0\x00bad name\x00x\x00EMPTY\x00\x00MULTI\x00a\nb\x00CUT\x00half");
        let want: BTreeMap<String, String> =
            [("VERSION", "2.0"), ("EMPTY", ""), ("MULTI", "a\nb")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(got, want);
        assert!(parse(b"").is_empty());
        assert!(parse(b"ODD\x00").is_empty());
    }

    #[test]
    fn the_file_is_read_bounded_masked_and_never_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid();
        let dir = VarsDir::create(tmp.path(), &key(), None).unwrap();
        let mode = std::fs::metadata(tmp.path().join("4-0-9.d")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // No file: nothing changed.
        assert_eq!(dir.read(me, &[]), Ok(BTreeMap::new()));
        std::fs::write(dir.file(), b"V\x00pw=hunter2\x00").unwrap();
        assert_eq!(dir.read(me, &["hunter2".into()]).unwrap()["V"], "pw=******");
        // Another account's file (as a hard link to one would be) is refused.
        let err = dir.read(Uid::from_raw(me.as_raw() + 1), &[]).unwrap_err();
        assert!(err.contains("not a regular file of the script's account"), "{err}");
        // A symbolic link is not followed (the agent may be root; the directory is not its own).
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, b"S\x00leaked\x00").unwrap();
        std::fs::remove_file(dir.file()).unwrap();
        std::os::unix::fs::symlink(&secret, dir.file()).unwrap();
        let err = dir.read(me, &[]).unwrap_err();
        assert!(err.starts_with("[shoal] the variables this script set were ignored"), "{err}");
        // A FIFO neither blocks the agent nor counts.
        std::fs::remove_file(dir.file()).unwrap();
        nix::unistd::mkfifo(&dir.file(), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(dir.read(me, &[]).is_err());
        // Over the bound: all ignored, said why.
        std::fs::remove_file(dir.file()).unwrap();
        let mut big = b"V\x00".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_VARS_BYTES));
        big.push(0);
        std::fs::write(dir.file(), &big).unwrap();
        let err = dir.read(me, &[]).unwrap_err();
        assert!(err.contains("more than the 64 KiB allowed"), "{err}");
        // Dropped: gone, whatever the script left in it.
        std::fs::write(dir.path.join("other"), b"x").unwrap();
        drop(dir);
        assert!(!tmp.path().join("4-0-9.d").exists());
    }
}
