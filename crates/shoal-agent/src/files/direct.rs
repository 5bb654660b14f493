//! Reads and writes that bypass the page cache (`O_DIRECT`, where the file system takes it).
//!
//! A fetched file is written once, synced, and renamed into place: copying each byte into
//! the page cache on the way (and filling the cache with pages nobody reads) was most of
//! what receiving a file cost. A holder serving a placed file to peers reads it the same
//! way, a window at a time, rather than filling the cache with a file it reads once per
//! peer. Direct I/O is whole [`BLOCK`]s at block offsets into block-aligned memory; writes
//! that are not (the end of a file) go through the cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Alignment of direct writes: their memory, offset and length.
pub const BLOCK: usize = 4096;

/// Opens `path` for writing (made with mode 0600 if missing, never through a link at its
/// name), for direct writes where the file system takes them; says whether it does.
pub fn open(path: &Path) -> io::Result<(File, bool)> {
    let open = |flags: i32| {
        OpenOptions::new().read(true).write(true).create(true).mode(0o600).custom_flags(nix::libc::O_NOFOLLOW | flags).open(path)
    };
    // File systems without direct I/O (tmpfs on older kernels) refuse the flag.
    match open(nix::libc::O_DIRECT) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => Ok((open(0)?, false)),
        Err(e) => Err(e),
    }
}

/// Writes all of `data` at `at`. `direct` says whether `file` was opened for direct writes
/// (and `data` is whole blocks of an [`Aligned`] buffer at a block offset); a file system
/// that took the flag but refuses the write gets this write, and every later one on the
/// file, through the cache, and `direct` turns false.
pub fn write_at(file: &File, data: &[u8], at: u64, direct: &mut bool) -> io::Result<()> {
    match file.write_all_at(data, at) {
        Err(e) if *direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
            nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty())).map_err(io::Error::from)?;
            *direct = false;
            file.write_all_at(data, at)
        }
        other => other,
    }
}

/// Turns direct I/O on for `file` (opened without it), where the file system takes it;
/// says whether it did.
pub fn set_direct(file: &File) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let Ok(flags) = fcntl(file, FcntlArg::F_GETFL) else { return false };
    fcntl(file, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_DIRECT)).is_ok()
}

/// Reads what it can of `buf` from `file` at `at`. With `direct`, what the page cache holds
/// (a file this host just read or wrote through it) is copied from there and the rest is
/// read from the disk; a file system that took the flag but refuses the read gets this read,
/// and every later one, through the cache, and `direct` turns false.
fn read_at(file: &File, buf: &mut [u8], at: u64, direct: &mut bool) -> io::Result<usize> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    loop {
        if *direct {
            fcntl(file, FcntlArg::F_SETFL(OFlag::empty()))?;
            let cached = rustix::io::preadv2(file, &mut [io::IoSliceMut::new(buf)], at, rustix::io::ReadWriteFlags::NOWAIT);
            fcntl(file, FcntlArg::F_SETFL(OFlag::O_DIRECT))?;
            // Nothing there (or a file system that cannot say): from the disk.
            if let Ok(n) = cached {
                return Ok(n);
            }
        }
        match file.read_at(buf, at) {
            Err(e) if *direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                fcntl(file, FcntlArg::F_SETFL(OFlag::empty()))?;
                *direct = false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

/// Whether a write of `len` bytes at `at` from an [`Aligned`] buffer may be direct.
pub fn whole_blocks(at: u64, len: usize) -> bool {
    at.is_multiple_of(BLOCK as u64) && len.is_multiple_of(BLOCK)
}

/// A buffer of fixed capacity whose data starts at a [`BLOCK`]-aligned address.
pub struct Aligned {
    raw: Vec<u8>,
    start: usize,
    pub len: usize,
    cap: usize,
}

impl Aligned {
    pub fn with_capacity(cap: usize) -> Aligned {
        let raw = vec![0u8; cap + BLOCK];
        let start = (BLOCK - raw.as_ptr() as usize % BLOCK) % BLOCK;
        Aligned { raw, start, len: 0, cap }
    }

    pub fn data(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// Bytes that still fit.
    pub fn room(&self) -> usize {
        self.cap - self.len
    }

    /// Replaces the content with up to its capacity of `file` from `at` (a block offset,
    /// when `direct`); fewer bytes only at the end of the file.
    pub fn fill(&mut self, file: &File, at: u64, direct: &mut bool) -> io::Result<()> {
        self.len = 0;
        while self.len < self.cap {
            let window = &mut self.raw[self.start + self.len..self.start + self.cap];
            let n = read_at(file, window, at + self.len as u64, direct)?;
            self.len += n;
            // The end of the file (a direct read goes on only from a block).
            if n == 0 || !self.len.is_multiple_of(BLOCK) {
                break;
            }
        }
        Ok(())
    }

    /// Appends `bytes` (at most [`Aligned::room`]).
    pub fn push(&mut self, bytes: &[u8]) {
        let at = self.start + self.len;
        self.raw[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aligned_buffer_starts_on_a_block_and_holds_its_capacity() {
        let mut a = Aligned::with_capacity(3 * BLOCK);
        assert_eq!(a.data().as_ptr() as usize % BLOCK, 0);
        a.push(&[7; BLOCK]);
        assert_eq!(a.room(), 2 * BLOCK);
        a.push(&[8; 2 * BLOCK]);
        assert_eq!((a.room(), a.data().len(), a.data()[BLOCK]), (0, 3 * BLOCK, 8));
    }

    #[test]
    fn direct_writes_land_where_they_are_asked_and_others_go_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let (file, mut direct) = open(&path).unwrap();
        let mut a = Aligned::with_capacity(2 * BLOCK);
        a.push(&[1; 2 * BLOCK]);
        write_at(&file, a.data(), BLOCK as u64, &mut direct).unwrap();
        assert!(whole_blocks(BLOCK as u64, a.len) && !whole_blocks(1, a.len) && !whole_blocks(0, 10));
        // Not whole blocks: through a second handle without the flag.
        let cached = OpenOptions::new().write(true).open(&path).unwrap();
        write_at(&cached, b"tail", 3 * BLOCK as u64, &mut false).unwrap();
        file.sync_all().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 3 * BLOCK + 4);
        assert!(got[..BLOCK].iter().all(|&b| b == 0) && got[BLOCK..3 * BLOCK].iter().all(|&b| b == 1));
        assert_eq!(&got[3 * BLOCK..], b"tail");

        // Read back directly, a window at a time; the last one short.
        let reader = std::fs::File::open(&path).unwrap();
        let mut direct = set_direct(&reader);
        let mut w = Aligned::with_capacity(2 * BLOCK);
        w.fill(&reader, 0, &mut direct).unwrap();
        assert_eq!(w.data(), &got[..2 * BLOCK]);
        w.fill(&reader, 2 * BLOCK as u64, &mut direct).unwrap();
        assert_eq!(w.data(), &got[2 * BLOCK..]);
        w.fill(&reader, 4 * BLOCK as u64, &mut direct).unwrap();
        assert_eq!(w.len, 0);

        // A file just written through the cache: read from there, up to its end.
        let cached: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i % 249) as u8).collect();
        std::fs::write(dir.path().join("c"), &cached).unwrap();
        let reader = std::fs::File::open(dir.path().join("c")).unwrap();
        let mut direct = set_direct(&reader);
        let mut w = Aligned::with_capacity(4 * BLOCK);
        w.fill(&reader, BLOCK as u64, &mut direct).unwrap();
        assert_eq!(w.data(), &cached[BLOCK..]);
    }
}
