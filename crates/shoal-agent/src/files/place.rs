//! Where a fetched file goes: the target directory (made in force mode, required in strict
//! mode), writable by the step's account, a partial file next to the destination (kept
//! between attempts so a download resumes), and the rename into place. Nothing is written
//! through a symbolic link: names are plain relative paths, and every directory under the
//! target is checked not to be a link before it is used.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::unistd::{Gid, Uid};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::direct::{self, Aligned, BLOCK};
use crate::exec::account::Account;

/// The target directory of a file step, checked for the step's account.
#[derive(Debug)]
pub struct Placement {
    dir: PathBuf,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// The agent may hand files to the account (it runs as root, or as that account).
    chown: bool,
}

/// `name` as a relative path of plain components (no `..`, no root, not empty).
pub fn safe_relative(name: &str) -> Result<PathBuf, String> {
    let p = Path::new(name);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(format!("file name {name:?} must stay inside the target directory")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("file name {name:?} is empty"));
    }
    Ok(out)
}

impl Placement {
    /// Checks (strict) or makes (force) `dir`, and that `account` may write in it.
    pub fn prepare(dir: &Path, create: bool, account: &Account) -> Result<Placement, String> {
        if !dir.is_absolute() {
            return Err(format!("target directory {} is not an absolute path", dir.display()));
        }
        let me = Uid::effective();
        let place = Placement {
            dir: dir.to_path_buf(),
            uid: account.uid,
            gid: account.gid,
            groups: account.groups.clone(),
            chown: me.is_root() || me == account.uid,
        };
        if !place.chown {
            return Err(format!("the agent runs as uid {me} and cannot give files to account {}", account.name));
        }
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("target {} exists and is not a directory", dir.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => {
                return Err(format!("target directory {} does not exist (strict mode does not create it)", dir.display()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                place.make_dirs(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?
            }
            Err(e) => return Err(format!("cannot use {}: {e}", dir.display())),
        }
        let m = std::fs::metadata(dir).map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
        if !place.may_write(&m) {
            return Err(format!("permission denied: account {} may not write in {}", account.name, dir.display()));
        }
        Ok(place)
    }

    /// Makes the missing directories of `dir`, owned by the account.
    fn make_dirs(&self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = dir;
        while std::fs::symlink_metadata(at).is_err() {
            missing.push(at.to_path_buf());
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
        for d in missing.iter().rev() {
            std::fs::DirBuilder::new().mode(0o755).create(d).or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            std::os::unix::fs::lchown(d, Some(self.uid.as_raw()), Some(self.gid.as_raw()))?;
        }
        Ok(())
    }

    /// Whether the account may create files in a directory with metadata `m`.
    fn may_write(&self, m: &std::fs::Metadata) -> bool {
        if self.uid.is_root() {
            return true;
        }
        let mode = m.mode();
        if m.uid() == self.uid.as_raw() {
            return mode & 0o300 == 0o300;
        }
        if m.gid() == self.gid.as_raw() || self.groups.iter().any(|g| g.as_raw() == m.gid()) {
            return mode & 0o030 == 0o030;
        }
        mode & 0o003 == 0o003
    }

    /// The destination of `name`, its directories made (as the account) and none of them a
    /// link.
    pub fn destination(&self, name: &str) -> Result<PathBuf, String> {
        let rel = safe_relative(name)?;
        let mut at = self.dir.clone();
        let parts: Vec<_> = rel.components().collect();
        for c in &parts[..parts.len() - 1] {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => return Err(format!("{} is a symbolic link: not followed", at.display())),
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("{} is not a directory", at.display())),
                Err(_) => match std::fs::DirBuilder::new().mode(0o755).create(&at) {
                    Ok(()) => std::os::unix::fs::lchown(&at, Some(self.uid.as_raw()), Some(self.gid.as_raw()))
                        .map_err(|e| format!("cannot give {} to the account: {e}", at.display()))?,
                    // Made meanwhile by another task placing files here: fine if it is a
                    // directory (and not a link).
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match std::fs::symlink_metadata(&at) {
                        Ok(m) if m.is_dir() => {}
                        _ => return Err(format!("{} appeared meanwhile and is not a directory", at.display())),
                    },
                    Err(e) => return Err(format!("cannot create {}: {e}", at.display())),
                },
            }
        }
        let dest = self.dir.join(&rel);
        if let Ok(m) = std::fs::symlink_metadata(&dest) {
            if m.is_dir() {
                return Err(format!("{} is a directory", dest.display()));
            }
        }
        Ok(dest)
    }

    /// Gives the verified `partial` to the account with `mode` and renames it to `dest`.
    pub async fn install(&self, partial: &Path, dest: &Path, mode: Option<u32>) -> io::Result<()> {
        let (partial, dest, uid, gid) = (partial.to_path_buf(), dest.to_path_buf(), self.uid, self.gid);
        tokio::task::spawn_blocking(move || {
            // Owner and mode are set through a handle on the partial file itself, never
            // through a name someone who may write in the directory could have swapped for a
            // link. (The name placed is not checked to be that file afterwards: targets
            // sharing a file system place the same file at the same name at once.)
            let not_regular = || io::Error::other(format!("{} is not a regular file", partial.display()));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&partial)
                .map_err(|e| if e.raw_os_error() == Some(nix::libc::ELOOP) { not_regular() } else { e })?;
            let m = file.metadata()?;
            if !m.is_file() {
                return Err(not_regular());
            }
            std::os::unix::fs::fchown(&file, Some(uid.as_raw()), Some(gid.as_raw()))?;
            file.set_permissions(std::fs::Permissions::from_mode(mode.unwrap_or(0o644) & 0o7777))?;
            std::fs::rename(&partial, &dest)?;
            if let Some(parent) = dest.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Where host `host_id`'s download of blob `sha256` to `dest` is kept until it is complete
/// (named by the host too: hosts sharing a file system do not write into one another's).
pub fn partial_path(dest: &Path, sha256: &str, host_id: i64) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.{}.{host_id}.shoal-part", &sha256[..sha256.len().min(16)]))
}

/// Whether `dest` is a regular file of `size` bytes whose SHA-256 is `sha256`.
pub async fn holds(dest: &Path, sha256: &str, size: u64) -> bool {
    match tokio::fs::symlink_metadata(dest).await {
        Ok(m) if m.is_file() && m.len() == size => {}
        _ => return false,
    }
    let Ok(mut f) = tokio::fs::File::open(dest).await else { return false };
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hex::encode(hash.finalize()) == sha256
}

/// A download in progress: the bytes so far, hashed as they are written.
///
/// Received pieces are gathered into [`WRITE_BUF`]-byte buffers; each full buffer is written
/// and hashed on a blocking thread while the next one fills, so a download costs a few
/// hundred large writes rather than one thread hand-off per network read. The writes bypass
/// the page cache (`O_DIRECT`, where the file system takes it): copying every byte into the
/// cache was most of what a download cost, and the file is synced at the end anyway. Direct
/// writes are whole blocks at block offsets; the last partial block goes through the cache.
pub struct Partial {
    path: PathBuf,
    /// The file and the hash so far, when no write is under way.
    idle: Option<(std::fs::File, Check)>,
    /// What the server's first answer said to check the download with, once it answered:
    /// the BLAKE3 it recorded for the blob, or nothing (the SHA-256).
    decided: Option<Option<blake3::Hash>>,
    /// The write under way; it gives back the file, the hash and its (emptied) buffer.
    busy: Option<tokio::task::JoinHandle<io::Result<Written>>>,
    buf: Aligned,
    /// Where the next write goes: bytes written or being written.
    written: u64,
    direct: bool,
    /// Bytes accepted: written, being written or gathered.
    pub len: u64,
}

/// The file, the hash, the emptied buffer, and whether writes are still direct.
type Written = (std::fs::File, Check, Aligned, bool);

/// What a download is checked with. The blob's SHA-256 names it; the server also gives the
/// BLAKE3 of its bytes where it recorded one when it stored the blob (computed in the pass
/// that computed the SHA-256, so a file with that BLAKE3 is the blob the SHA-256 names), and
/// BLAKE3 costs a fraction of SHA-256. Both are computed until the server's first answer
/// says which one is needed.
pub struct Check {
    sha256: Option<Sha256>,
    blake3: Option<blake3::Hasher>,
    root: Option<blake3::Hash>,
}

impl Check {
    fn new() -> Check {
        Check { sha256: Some(Sha256::new()), blake3: Some(blake3::Hasher::new()), root: None }
    }

    fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.blake3 {
            h.update(bytes);
        }
    }

    /// From now on, only what `decided` says (when the server has answered).
    fn decide(&mut self, decided: Option<Option<blake3::Hash>>) {
        match decided {
            Some(Some(root)) if self.blake3.is_some() => {
                self.sha256 = None;
                self.root = Some(root);
            }
            Some(None) if self.sha256.is_some() => self.blake3 = None,
            _ => {}
        }
    }

    /// What was checked, or why the bytes are not blob `sha256`.
    fn verify(self, sha256: &str) -> Result<Checked, String> {
        match (self.root, self.blake3, self.sha256) {
            (Some(root), Some(h), _) => {
                let got = h.finalize();
                if got != root {
                    return Err(format!(
                        "hash mismatch: expected BLAKE3 {} (the blob whose SHA-256 is {sha256}), received {}; the file was not placed",
                        root.to_hex(),
                        got.to_hex()
                    ));
                }
                Ok(Checked::Blake3(root))
            }
            (_, _, Some(h)) => {
                let got = hex::encode(h.finalize());
                if got != sha256 {
                    return Err(format!("hash mismatch: expected SHA-256 {sha256}, received {got}; the file was not placed"));
                }
                Ok(Checked::Sha256)
            }
            _ => Err("the download was not checked".into()),
        }
    }
}

/// What a download was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The BLAKE3 the server gave for the blob.
    Blake3(blake3::Hash),
    /// The blob's SHA-256.
    Sha256,
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checked::Blake3(_) => "BLAKE3",
            Checked::Sha256 => "SHA-256",
        })
    }
}

/// Bytes gathered before a write.
const WRITE_BUF: usize = 4 << 20;

impl Partial {
    /// Opens (or makes) the partial file and hashes what it already holds, so a download
    /// resumes where the last attempt stopped (from its last whole block, when writes are
    /// direct). One longer than `size` is started over.
    pub async fn open(path: &Path, size: u64) -> io::Result<Partial> {
        let path = path.to_path_buf();
        let at = path.clone();
        let (file, hash, len, direct) = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, Check, u64, bool)> {
            let (file, direct) = direct::open(&at)?;
            let mut len = file.metadata()?.len();
            if len > size {
                len = 0;
            }
            if direct {
                // The next direct write must start on a block.
                len -= len % BLOCK as u64;
            }
            file.set_len(len)?;
            let mut hash = Check::new();
            let mut reader = std::io::Read::take(std::fs::File::open(&at)?, len);
            let mut buf = vec![0u8; 256 * 1024];
            let mut read = 0u64;
            loop {
                let n = std::io::Read::read(&mut reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                read += n as u64;
            }
            Ok((file, hash, read, direct))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Partial {
            path,
            idle: Some((file, hash)),
            decided: None,
            busy: None,
            buf: Aligned::with_capacity(WRITE_BUF + BLOCK),
            written: len,
            direct,
            len,
        })
    }

    pub async fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            let n = bytes.len().min(self.buf.room());
            self.buf.push(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len >= WRITE_BUF {
                self.flush_buf().await?;
            }
        }
        Ok(())
    }

    /// Waits for the write under way, if any; gives back its buffer, emptied.
    async fn settle(&mut self) -> io::Result<Aligned> {
        match self.busy.take() {
            None => Ok(Aligned::with_capacity(WRITE_BUF + BLOCK)),
            Some(job) => {
                let (file, hash, mut spare, direct) = job.await.map_err(io::Error::other)??;
                spare.len = 0;
                self.direct = direct;
                self.idle = Some((file, hash));
                Ok(spare)
            }
        }
    }

    /// Starts writing what is gathered (after the write under way) — with direct writes,
    /// its whole blocks; the rest waits for more. A slow download reaches the disk as it
    /// goes, not only every [`WRITE_BUF`] bytes.
    pub async fn flush_buf(&mut self) -> io::Result<()> {
        let mut next = self.settle().await?;
        let n = if self.direct { self.buf.len - self.buf.len % BLOCK } else { self.buf.len };
        if n == 0 {
            return Ok(());
        }
        // What does not fill a block starts the next buffer.
        next.push(&self.buf.data()[n..]);
        let mut data = std::mem::replace(&mut self.buf, next);
        data.len = n;
        let at = self.written;
        self.written += n as u64;
        let (file, mut hash) = self.idle.take().ok_or_else(|| io::Error::other("an earlier write failed"))?;
        let mut direct = self.direct;
        let decided = self.decided;
        self.busy = Some(tokio::task::spawn_blocking(move || {
            hash.decide(decided);
            direct::write_at(&file, data.data(), at, &mut direct)?;
            hash.update(data.data());
            Ok((file, hash, data, direct))
        }));
        Ok(())
    }

    /// Writes what is gathered and waits for it (a download stopped to be resumed later
    /// keeps what it received, up to its last whole block when writes are direct).
    pub async fn persist(&mut self) -> io::Result<()> {
        self.flush_buf().await?;
        self.settle().await.map(drop)
    }

    /// The server answered: `blake3` is the BLAKE3 it gave for the blob, if any. Only its
    /// first answer counts.
    pub fn answered(&mut self, blake3: Option<blake3::Hash>) {
        self.decided.get_or_insert(blake3);
    }

    /// Writes the rest, flushes to disk and checks the hash; says which hash it checked.
    pub async fn finish(mut self, sha256: &str) -> Result<Checked, String> {
        let written = async {
            self.persist().await?;
            let (file, mut hash) = self.idle.take().ok_or_else(|| io::Error::other("an earlier write failed"))?;
            let (tail, at, path) = (self.buf.data().to_vec(), self.written, self.path.clone());
            hash.decide(self.decided);
            tokio::task::spawn_blocking(move || {
                if !tail.is_empty() {
                    // The last partial block, through the page cache.
                    let cached = std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NOFOLLOW).open(&path)?;
                    std::os::unix::fs::FileExt::write_all_at(&cached, &tail, at)?;
                    hash.update(&tail);
                    cached.sync_all()?;
                }
                file.sync_all().map(|()| hash)
            })
            .await
            .map_err(io::Error::other)?
        };
        let hash = written.await.map_err(|e| format!("cannot write the file: {e}"))?;
        hash.verify(sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Account {
        crate::exec::account::resolve(&nix::unistd::User::from_uid(Uid::effective()).unwrap().unwrap().name).unwrap()
    }

    /// A partial file swapped for a link (by someone who may write in the target directory)
    /// is not placed, and nothing is done to what the link names.
    #[tokio::test]
    async fn a_partial_swapped_for_a_link_is_not_placed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"s").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = Placement::prepare(tmp.path(), false, &me()).unwrap();
        let (partial, dest) = (tmp.path().join(".f.part"), tmp.path().join("f"));
        std::os::unix::fs::symlink(&secret, &partial).unwrap();
        let err = p.install(&partial, &dest, Some(0o644)).await.unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o7777, 0o600, "the link was followed");
        assert!(std::fs::symlink_metadata(&dest).is_err(), "the link was placed");

        // A regular partial is placed, with its mode.
        std::fs::remove_file(&partial).unwrap();
        std::fs::write(&partial, b"data").unwrap();
        p.install(&partial, &dest, Some(0o640)).await.unwrap();
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    fn names_stay_inside_the_target() {
        assert_eq!(safe_relative("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
        assert!(safe_relative("../x").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("a/../../x").is_err());
        assert!(safe_relative("").is_err());
    }

    #[test]
    fn strict_mode_needs_the_directory_and_force_mode_makes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x/y");
        let err = Placement::prepare(&dir, false, &me()).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        Placement::prepare(&dir, true, &me()).unwrap();
        assert!(dir.is_dir());
    }

    #[test]
    fn a_link_inside_the_target_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("sub")).unwrap();
        let p = Placement::prepare(tmp.path(), false, &me()).unwrap();
        let err = p.destination("sub/f.txt").unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(p.destination("ok/f.txt").unwrap().starts_with(tmp.path()));
    }

    #[tokio::test]
    async fn a_partial_download_resumes_and_is_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".f.part");
        let content: Vec<u8> = (0..3 * BLOCK + 10).map(|i| (i % 251) as u8).collect();
        let size = content.len() as u64;
        let mut p = Partial::open(&path, size).await.unwrap();
        p.write(&content[..3 * BLOCK + 5]).await.unwrap();
        p.persist().await.unwrap();
        drop(p);
        let mut p = Partial::open(&path, size).await.unwrap();
        // Direct writes keep whole blocks; through the cache, every byte.
        assert!(p.len == 3 * BLOCK as u64 || p.len == 3 * BLOCK as u64 + 5, "{}", p.len);
        p.write(&content[p.len as usize..]).await.unwrap();
        p.finish(&hex::encode(Sha256::digest(&content))).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), content);
        let p = Partial::open(&path, size).await.unwrap();
        let err = p.finish(&"0".repeat(64)).await.unwrap_err();
        assert!(err.contains("hash mismatch"), "{err}");
    }

    /// Where the server gives the blob's BLAKE3, the download is checked against it (and
    /// only it); where it does not, against the SHA-256. Either way a wrong byte fails it,
    /// also when the answer comes after a resumed part.
    #[tokio::test]
    async fn a_download_is_checked_against_the_blake3_the_server_gives_or_else_the_sha256() {
        let tmp = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..(WRITE_BUF + 3 * BLOCK + 77)).map(|i| (i % 253) as u8).collect();
        let sha = hex::encode(Sha256::digest(&content));
        let root = blake3::hash(&content);
        let mut wrong = content.clone();
        wrong[WRITE_BUF + 5] ^= 1;
        let run = |name: &'static str, bytes: Vec<u8>, answer: Option<blake3::Hash>| {
            let path = tmp.path().join(name);
            let sha = sha.clone();
            async move {
                // A part first (as a resumed download has), then the server's answer.
                let mut p = Partial::open(&path, bytes.len() as u64).await.unwrap();
                p.write(&bytes[..2 * BLOCK]).await.unwrap();
                p.persist().await.unwrap();
                drop(p);
                let mut p = Partial::open(&path, bytes.len() as u64).await.unwrap();
                p.answered(answer);
                p.answered(None);
                p.write(&bytes[p.len as usize..]).await.unwrap();
                p.finish(&sha).await
            }
        };
        assert_eq!(run("a", content.clone(), Some(root)).await, Ok(Checked::Blake3(root)));
        assert_eq!(run("b", content.clone(), None).await, Ok(Checked::Sha256));
        let err = run("c", wrong.clone(), Some(root)).await.unwrap_err();
        assert!(err.contains("hash mismatch: expected BLAKE3"), "{err}");
        let err = run("d", wrong, None).await.unwrap_err();
        assert!(err.contains("hash mismatch: expected SHA-256"), "{err}");
        // A BLAKE3 the server gives that is not the content's fails it too.
        let err = run("e", content, Some(blake3::hash(b"other"))).await.unwrap_err();
        assert!(err.contains("hash mismatch"), "{err}");
    }

    #[test]
    fn tasks_making_the_same_directories_at_once_all_succeed() {
        for round in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let p = std::sync::Arc::new(Placement::prepare(tmp.path(), false, &me()).unwrap());
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let (p, barrier) = (std::sync::Arc::clone(&p), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        p.destination(&format!("a/b/c/f{i}.txt"))
                    })
                })
                .collect();
            for t in threads {
                assert!(t.join().unwrap().is_ok(), "round {round}");
            }
            assert!(tmp.path().join("a/b/c").is_dir());
        }
    }

    #[tokio::test]
    async fn large_downloads_are_written_in_order_across_buffers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".big.part");
        let content: Vec<u8> = (0..(WRITE_BUF * 2 + 12_345)).map(|i| (i % 251) as u8).collect();
        let mut p = Partial::open(&path, content.len() as u64).await.unwrap();
        for piece in content.chunks(16 * 1024 + 7) {
            p.write(piece).await.unwrap();
        }
        assert_eq!(p.len, content.len() as u64);
        p.finish(&hex::encode(Sha256::digest(&content))).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}
