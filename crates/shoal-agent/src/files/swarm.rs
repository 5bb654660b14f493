//! Peer-to-peer fan-out on the agent: fetching a blob's chunks from other targets that hold it,
//! and serving the blobs this host holds to them.
//!
//! Verification is BLAKE3 verified streaming (bao, with `bao-tree`'s tree layout): a peer
//! answers a request for a range of a blob with the range's chunk groups (16 KiB)
//! interleaved with the tree's parent hashes, and the receiver checks each group against
//! the root the server's tracker gave it before writing a byte. A peer that sends anything
//! else is dropped at the first bad group. The parent hashes that checked the groups make
//! up the tree the receiver serves the blob with in turn, so nothing is read back.
//!
//! Peers talk TLS. A holder serves with a self-signed certificate made at start; the tracker
//! names each holder with the SHA-256 of that certificate, and the receiver accepts no other
//! (so only the announced holder can answer, and nothing on the wire is readable). The
//! receiver proves it was given the blob by the server with the blob's swarm secret, which
//! the holder got with its own copy. A holder serves at most [`UPLOAD_SLOTS`] peers at once
//! (the others wait a little, then are told it is busy and go elsewhere), from the file it
//! placed (a regular file, never through a link). The file it placed, unchanged since
//! (same inode, size, and write and change times), is sent as it is read; any other file at
//! that name is checked against the tree as it is read, so a file changed on disk since is
//! never served.
//!
//! Files move past the page cache where the file system allows ([`super::direct`]): a
//! receiver gathers checked chunk groups into an aligned buffer and writes it directly, and
//! a holder reads its file a window at a time, from the page cache for what it holds (a file
//! this host just fetched from the server and read back) and directly from the disk for the
//! rest. Filling the cache with every received byte, to be read by peers once or not at
//! all, was the largest single cost of a peer download.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::io::sync::encode_ranges_validated;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::direct::{self, Aligned};

/// Chunk groups of 16 KiB: the unit a peer's data is checked in.
pub const BLOCK: BlockSize = BlockSize::from_chunk_log(4);
/// Bytes a receiver asks one peer for at a time.
const PIECE: u64 = 4 << 20;
/// Bytes handed at once between a peer connection and the thread encoding or checking them.
const BATCH: usize = 256 * 1024;
/// Longest a peer waits for one of a holder's upload slots (less than [`PEER_TIMEOUT`]).
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// Peers one holder serves at once.
pub const UPLOAD_SLOTS: usize = 4;
/// Peers one receiver fetches from at once.
const DOWNLOAD_WORKERS: usize = 4;
/// Bytes of checked chunk groups a receiver writes at once.
const GATHER: usize = 1 << 20;
/// How long a holder serves a blob after placing it.
pub const SEED_TTL: Duration = Duration::from_secs(15 * 60);
/// TLS name of every peer (the certificate is pinned, the name is not checked).
const PEER_NAME: &str = "shoal-peer";
/// Longest wait to connect, or for a peer's answer line.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a peer may send or take nothing in the middle of a piece.
const STALL: Duration = Duration::from_secs(30);
/// A holder closes a connection idle this long (and frees its upload slot).
const IDLE: Duration = Duration::from_secs(20);

/// What a receiver asks a holder for: chunks `[start, end)` of blob `blake3`.
#[derive(Serialize, Deserialize)]
struct Request {
    blake3: String,
    secret: String,
    start: u64,
    end: u64,
    /// Bytes per second the holder may send (0: no limit).
    limit: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok,
    Busy,
    Refused(String),
}

/// A blob this host holds and serves.
struct Held {
    path: PathBuf,
    size: u64,
    /// The placed file as it was when this host started serving it.
    placed: Identity,
    /// What [`Peers::withdrawals`] hands on when the file can no longer be served.
    withdrawal: Withdrawal,
    outboard: PreOrderMemOutboard,
    secret: String,
    until: Instant,
}

/// A held file this host stopped serving (gone, or changed on disk): the blob's SHA-256 and
/// the token that lets this host tell the tracker.
#[derive(Debug, Clone)]
pub struct Withdrawal {
    pub sha256: String,
    pub token: String,
}

/// This host's side of the swarm: what it holds, the port it serves on, and how it connects
/// to other peers.
pub struct Peers {
    port: u16,
    cert_sha256: String,
    held: Mutex<HashMap<String, Arc<Held>>>,
    slots: Arc<tokio::sync::Semaphore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    withdrawn: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Withdrawal>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Peers {
    /// Listens for peers on `bind` (e.g. `0.0.0.0:0`) with a certificate made now.
    pub async fn start(bind: &str) -> anyhow::Result<Arc<Peers>> {
        let made = rcgen::generate_simple_self_signed(vec![PEER_NAME.to_string()])?;
        let cert = made.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
        // AES-128-GCM first: every byte between peers is encrypted once and decrypted once,
        // and it is the cheapest of the suites on hosts with AES instructions.
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let provider = Arc::new(provider);
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        let listener = TcpListener::bind(bind).await?;
        let peers = Arc::new(Peers {
            port: listener.local_addr()?.port(),
            cert_sha256: hex::encode(sha2::Sha256::digest(&cert)),
            held: Mutex::new(HashMap::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(UPLOAD_SLOTS)),
            provider,
            withdrawn: std::sync::OnceLock::new(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let weak = Arc::downgrade(&peers);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let Some(peers) = weak.upgrade() else { return };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Err(e) = peers.serve(stream, acceptor).await {
                        tracing::debug!(error = %e, "peer request not served");
                    }
                });
            }
        });
        tracing::info!(port = peers.port, "serving held files to peers");
        Ok(peers)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }

    /// Serves the blob placed at `path` (verified, its tree `outboard`) to holders of `secret`
    /// for [`SEED_TTL`].
    pub fn hold(&self, path: &Path, outboard: PreOrderMemOutboard, secret: &str, withdrawal: Withdrawal) -> std::io::Result<()> {
        let m = std::fs::symlink_metadata(path)?;
        let held = Held {
            path: path.to_path_buf(),
            size: m.len(),
            placed: Identity::of(&m),
            withdrawal,
            outboard,
            secret: secret.to_string(),
            until: Instant::now() + SEED_TTL,
        };
        let mut map = self.held.lock().expect("held lock");
        let now = Instant::now();
        map.retain(|_, h| h.until > now);
        map.insert(held.outboard.root.to_hex().to_string(), Arc::new(held));
        Ok(())
    }

    /// The held files this host stops serving, from now on, for someone to tell the tracker
    /// (so that it stops naming this host for them).
    pub fn withdrawals(&self) -> tokio::sync::mpsc::UnboundedReceiver<Withdrawal> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = self.withdrawn.set(tx);
        rx
    }

    /// Stops serving blob `blake3`.
    fn drop_held(&self, blake3: &str) {
        if let Some(h) = self.held.lock().expect("held lock").remove(blake3) {
            if let Some(tx) = self.withdrawn.get() {
                let _ = tx.send(h.withdrawal.clone());
            }
        }
    }

    /// One peer's connection: requests one after another, each answered with the encoded
    /// range; the upload slot is held while the connection lasts.
    async fn serve(&self, stream: TcpStream, acceptor: tokio_rustls::TlsAcceptor) -> anyhow::Result<()> {
        let _ = stream.set_nodelay(true);
        let tls = tokio::time::timeout(PEER_TIMEOUT, acceptor.accept(stream)).await??;
        let (rd, mut wr) = tokio::io::split(tls);
        let mut rd = tokio::io::BufReader::new(rd);
        let mut slot = None;
        let mut window = Some(Window::new());
        loop {
            let mut line = String::new();
            let wait = if slot.is_some() { IDLE } else { PEER_TIMEOUT };
            match tokio::time::timeout(wait, (&mut rd).take(4096).read_line(&mut line)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
            }
            let Ok(req) = serde_json::from_str::<Request>(&line) else {
                return reply(&mut wr, Reply::Refused("not a request".into())).await;
            };
            let held = self.held.lock().expect("held lock").get(&req.blake3).filter(|h| h.until > Instant::now()).cloned();
            let Some(held) = held.filter(|h| same_secret(&h.secret, &req.secret)) else {
                return reply(&mut wr, Reply::Refused("this host does not serve that blob to you".into())).await;
            };
            if slot.is_none() {
                // A peer waits a little for a slot (so it starts the moment one frees) before
                // it is told this host is busy and goes elsewhere.
                match tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(s)) => slot = Some(s),
                    _ => return reply(&mut wr, Reply::Busy).await,
                }
            }
            if !whole_groups(held.outboard.tree, req.start, req.end) {
                return reply(&mut wr, Reply::Refused("not a range of whole chunk groups".into())).await;
            }
            let (file, unchanged) = match open_same(&held) {
                Ok(f) => f,
                Err(why) => {
                    self.drop_held(&req.blake3);
                    return reply(&mut wr, Reply::Refused(why)).await;
                }
            };
            reply(&mut wr, Reply::Ok).await?;
            // Encoded on a blocking thread into a small queue; sent from here, where a peer
            // that stops reading is given up on (and the encoder with it).
            let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
            let ranges = piece_ranges(held.outboard.tree, req.start, req.end);
            let limit = req.limit;
            let encode_held = held.clone();
            // The window's memory is kept from one request to the next; its bytes are read afresh.
            let mut win = window.take().unwrap_or_else(Window::new);
            if let Some(b) = win.buf.as_mut() {
                b.len = 0;
            }
            let encoder = tokio::task::spawn_blocking(move || {
                let mut out = Throttled::new(ChanWriter { tx, buf: bytes::BytesMut::with_capacity(BATCH) }, limit);
                let r = if unchanged {
                    encode(&file, &encode_held.outboard, &ranges, &mut out, &mut win).map_err(bao_tree::io::EncodeError::Io)
                } else {
                    encode_ranges_validated(file, &encode_held.outboard, &ranges, &mut out)
                };
                (r.and_then(|()| out.flush().map_err(bao_tree::io::EncodeError::Io)), win)
            });
            while let Some(chunk) = rx.recv().await {
                if tokio::time::timeout(STALL, wr.write_all(&chunk)).await.is_err() {
                    return Ok(());
                }
            }
            wr.flush().await?;
            use bao_tree::io::EncodeError as E;
            let (encoded, kept) = encoder.await?;
            window = Some(kept);
            match encoded {
                Ok(()) => {}
                Err(e @ (E::LeafHashMismatch(_) | E::ParentHashMismatch(_) | E::SizeMismatch)) => {
                    tracing::warn!(error = %e, blob = %req.blake3, "a held file no longer matches its tree; not served again");
                    self.drop_held(&req.blake3);
                    return Ok(());
                }
                // The peer went away.
                Err(_) => return Ok(()),
            }
        }
    }

    fn client_config(&self, cert_sha256: &str) -> anyhow::Result<rustls::ClientConfig> {
        Ok(rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                sha256: cert_sha256.to_ascii_lowercase(),
                provider: self.provider.clone(),
            }))
            .with_no_client_auth())
    }
}

/// Writes one answer line.
async fn reply<W: tokio::io::AsyncWrite + Unpin>(wr: &mut W, r: Reply) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(&r).expect("a reply serialises");
    line.push('\n');
    wr.write_all(line.as_bytes()).await?;
    wr.flush().await?;
    Ok(())
}

/// A blocking writer whose bytes an async task sends on; it fails once that task gave up.
struct ChanWriter {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    buf: bytes::BytesMut,
}

impl Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // A batch is sent before it would outgrow its memory (growing it copies it whole).
        if !self.buf.is_empty() && self.buf.len() + data.len() > BATCH {
            self.flush()?;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BATCH {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            // Takes back the memory of batches already sent, rather than asking for more.
            self.buf.reserve(BATCH);
            self.tx.blocking_send(chunk).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the peer is gone"))?;
        }
        Ok(())
    }
}

impl ChanWriter {
    /// Reads `size` bytes of `file` at `offset` into the batch.
    fn read_into(&mut self, file: &std::fs::File, offset: u64, size: usize) -> std::io::Result<()> {
        if !self.buf.is_empty() && self.buf.len() + size > BATCH {
            self.flush()?;
        }
        let at = self.buf.len();
        self.buf.resize(at + size, 0);
        file.read_exact_at(&mut self.buf[at..], offset)?;
        if self.buf.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }
}

impl Throttled<ChanWriter> {
    fn read_into(&mut self, file: &std::fs::File, offset: u64, size: usize) -> std::io::Result<()> {
        self.inner.read_into(file, offset, size)?;
        self.account(size);
        Ok(())
    }
}

/// What an async task reads from a peer, handed over in batches and taken here a parent or
/// a chunk group at a time: a slice of its batch, copied only when it spans two. It ends
/// (an error) once that task stops, on a stall or the end of the connection.
struct Incoming {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
    throttle: Throttled<()>,
}

impl Incoming {
    fn take(&mut self, n: usize) -> std::io::Result<bytes::Bytes> {
        self.throttle.account(n);
        if self.cur.len() >= n {
            return Ok(self.cur.split_to(n));
        }
        let mut joined = bytes::BytesMut::with_capacity(n);
        loop {
            let part = self.cur.split_to((n - joined.len()).min(self.cur.len()));
            joined.extend_from_slice(&part);
            if joined.len() == n {
                return Ok(joined.freeze());
            }
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// Reads the bao response for chunks `ranges` of the blob of `tree` and `root`: each
    /// parent hash pair is checked against the hash above it (and kept in `hashes`), each
    /// chunk group against its hash before it goes to `out`.
    fn decode(
        &mut self,
        root: blake3::Hash,
        tree: BaoTree,
        ranges: &ChunkRanges,
        out: &mut Gather,
        hashes: &Mutex<PreOrderMemOutboard>,
    ) -> Result<(), PeerError> {
        use bao_tree::io::sync::OutboardMut;
        let cut = |what: String, e: std::io::Error| PeerError::Bad(format!("{what}: {e}"));
        let mut stack = vec![root];
        for item in bao_tree::iter::ResponseIterRef::new(tree, ranges) {
            let expected = stack.pop().ok_or_else(|| PeerError::Bad("the tree ran out of hashes".into()))?;
            match item {
                BaoChunk::Parent { node, is_root, left, right, .. } => {
                    let pair = self.take(64).map_err(|e| cut(format!("no parent hashes for node {node:?}"), e))?;
                    let hash = |b: &[u8]| blake3::Hash::from(<[u8; 32]>::try_from(b).expect("32 bytes"));
                    let (l, r) = (hash(&pair[..32]), hash(&pair[32..]));
                    if parent_hash(&l, &r, is_root) != expected {
                        return Err(PeerError::Bad(format!("parent hashes for node {node:?} do not match the tree")));
                    }
                    if right {
                        stack.push(r);
                    }
                    if left {
                        stack.push(l);
                    }
                    hashes.lock().expect("tree lock").save(node, &(l, r)).map_err(PeerError::Write)?;
                }
                BaoChunk::Leaf { start_chunk, size, is_root, .. } => {
                    let data = self.take(size).map_err(|e| cut(format!("no chunk group at chunk {}", start_chunk.0), e))?;
                    if group_hash(start_chunk.0, &data, is_root) != expected {
                        return Err(PeerError::Bad(format!("the chunk group at chunk {} does not match the tree", start_chunk.0)));
                    }
                    out.put(start_chunk.to_bytes(), &data).map_err(PeerError::Write)?;
                }
            }
        }
        Ok(())
    }
}

/// Checked chunk groups on their way to the file: runs of consecutive groups are gathered
/// into one aligned buffer and written at once, directly (past the page cache) where the file
/// takes it.
struct Gather<'a> {
    to: &'a Target,
    /// Offset of the first gathered byte in the file.
    at: u64,
    buf: &'a mut Aligned,
    done: &'a std::sync::atomic::AtomicU64,
}

impl Gather<'_> {
    fn put(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if self.buf.len > 0 && (self.at + self.buf.len as u64 != offset || self.buf.room() < data.len()) {
            self.flush()?;
        }
        if self.buf.len == 0 {
            self.at = offset;
        }
        self.buf.push(data);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.len == 0 {
            return Ok(());
        }
        self.to.write(self.buf.data(), self.at)?;
        self.done.fetch_add(self.buf.len as u64, std::sync::atomic::Ordering::Relaxed);
        self.buf.len = 0;
        Ok(())
    }
}

/// The file a download writes: one handle for direct writes of whole blocks (while the file
/// system takes them), one through the page cache for the rest (the end of the file).
struct Target {
    file: std::fs::File,
    cached: std::fs::File,
    direct: std::sync::atomic::AtomicBool,
}

impl Target {
    fn open(partial: &Path) -> std::io::Result<Target> {
        let (file, direct) = direct::open(partial)?;
        let cached = std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NOFOLLOW).open(partial)?;
        Ok(Target { file, cached, direct: direct.into() })
    }

    /// Writes `data` (from an [`Aligned`] buffer) at `at`.
    fn write(&self, data: &[u8], at: u64) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut direct = self.direct.load(Relaxed);
        if !direct {
            return direct::write_at(&self.file, data, at, &mut direct);
        }
        if !direct::whole_blocks(at, data.len()) {
            return direct::write_at(&self.cached, data, at, &mut false);
        }
        let r = direct::write_at(&self.file, data, at, &mut direct);
        if !direct {
            self.direct.store(false, Relaxed);
        }
        r
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (sha2::Sha256::digest(a.as_bytes()), sha2::Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The held file: a regular file of the blob's size, not reached through a link at its
/// name, and whether it is still the file this host placed.
///
/// It may have been replaced since (another target sharing the file system placed the same
/// file over it) or changed in place. The file this host placed, unchanged, was checked
/// whole against the tree when it was placed and is sent as it is read; any other file is
/// checked against the tree as it is read, so only the blob's own bytes ever leave. (Every
/// receiver checks every chunk group anyway: this is about what a holder lets out, not
/// what a receiver takes in.)
fn open_same(h: &Held) -> Result<(std::fs::File, bool), String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&h.path)
        .map_err(|e| format!("the held file cannot be opened: {e}"))?;
    let m = f.metadata().map_err(|e| e.to_string())?;
    if !m.is_file() || m.len() != h.size {
        return Err("the held file was changed since it was placed".into());
    }
    let unchanged = Identity::of(&m) == h.placed;
    Ok((f, unchanged))
}

/// What tells a file apart from any other, and from itself changed: its inode, size, and
/// the times of its last write and last change (which a write, a truncation, a change of
/// owner or mode, or a new link all move, and which no one but the kernel sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity { dev: m.dev(), ino: m.ino(), len: m.len(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }
}

/// Whether chunks `[start, end)` are whole chunk groups of `tree` (what receivers ask for),
/// so that each group is sent whole.
fn whole_groups(tree: BaoTree, start: u64, end: u64) -> bool {
    let (group, chunks) = (1u64 << BLOCK.chunk_log(), tree.chunks().0.max(1));
    start < end && end <= chunks && start.is_multiple_of(group) && (end.is_multiple_of(group) || end == chunks)
}

/// Chunks `[start, end)` of the blob of `tree` as bao ranges: one that reaches the last chunk
/// is left open, so that the last chunk group is sent whole (as it is, short) rather than
/// split into its chunks.
fn piece_ranges(tree: BaoTree, start: u64, end: u64) -> ChunkRanges {
    if end >= tree.chunks().0 {
        ChunkRanges::from(ChunkNum(start)..)
    } else {
        ChunkRanges::from(ChunkNum(start)..ChunkNum(end))
    }
}

/// Chunks `ranges` (whole chunk groups) of `file` in the order of a bao response: each group
/// after the parent hashes above it, taken from `outboard`. The file is read directly (past
/// the page cache) a window at a time where the file system allows, else straight into the
/// batch on its way out.
fn encode(
    file: &std::fs::File,
    outboard: &PreOrderMemOutboard,
    ranges: &ChunkRanges,
    out: &mut Throttled<ChanWriter>,
    window: &mut Window,
) -> std::io::Result<()> {
    use bao_tree::io::sync::Outboard;
    let mut direct = direct::set_direct(file);
    for item in bao_tree::iter::ResponseIterRef::new(outboard.tree, ranges) {
        match item {
            BaoChunk::Parent { node, .. } => {
                let (left, right) = outboard.load(node)?.ok_or_else(|| std::io::Error::other("a parent hash is missing"))?;
                out.write_all(left.as_bytes())?;
                out.write_all(right.as_bytes())?;
            }
            BaoChunk::Leaf { start_chunk, size, .. } if direct => {
                let at = start_chunk.to_bytes();
                let group = window.get(file, at, size, &mut direct)?;
                out.write_all(group)?;
            }
            BaoChunk::Leaf { start_chunk, size, .. } => out.read_into(file, start_chunk.to_bytes(), size)?,
        }
    }
    Ok(())
}

/// Bytes of a held file read at once.
const WINDOW: usize = 1 << 20;

/// Part of a held file, read at once; kept by a holder's connection from one piece to the
/// next.
struct Window {
    buf: Option<Aligned>,
    /// Offset of the first byte held.
    at: u64,
}

impl Window {
    fn new() -> Window {
        Window { buf: None, at: 0 }
    }

    /// Bytes `[at, at + size)` of `file` (`at` a chunk group's start), read first if need be.
    fn get(&mut self, file: &std::fs::File, at: u64, size: usize, direct: &mut bool) -> std::io::Result<&[u8]> {
        let buf = self.buf.get_or_insert_with(|| Aligned::with_capacity(WINDOW));
        let held = |buf: &Aligned, from: u64| from <= at && at + size as u64 <= from + buf.len as u64;
        if !held(buf, self.at) {
            buf.fill(file, at, direct)?;
            self.at = at;
            if !held(buf, at) {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let from = (at - self.at) as usize;
        Ok(&buf.data()[from..from + size])
    }
}

/// The hash of a chunk group of `data` starting at chunk `start_chunk` (the whole blob's
/// hash when it is the root), as the blob's tree has it.
fn group_hash(start_chunk: u64, data: &[u8], is_root: bool) -> blake3::Hash {
    use blake3::hazmat::HasherExt;
    if is_root {
        return blake3::hash(data);
    }
    let mut h = blake3::Hasher::new();
    h.set_input_offset(start_chunk * 1024);
    h.update(data);
    blake3::Hash::from(h.finalize_non_root())
}

/// The hash of a parent node over hashes `left` and `right`.
fn parent_hash(left: &blake3::Hash, right: &blake3::Hash, is_root: bool) -> blake3::Hash {
    use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, Mode};
    if is_root {
        merge_subtrees_root(left.as_bytes(), right.as_bytes(), Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(left.as_bytes(), right.as_bytes(), Mode::Hash))
    }
}

/// Accepts only the certificate whose SHA-256 the tracker named.
#[derive(Debug)]
struct Pinned {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if hex::encode(sha2::Sha256::digest(end_entity)) == self.sha256 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the peer's certificate is not the one the tracker named".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A writer (or reader) held to `limit` bytes per second (0: no limit), sleeping the
/// blocking thread it runs on.
struct Throttled<T> {
    inner: T,
    limit: u64,
    since: Instant,
    moved: u64,
}

impl<T> Throttled<T> {
    fn new(inner: T, limit: u64) -> Self {
        Throttled { inner, limit, since: Instant::now(), moved: 0 }
    }

    fn account(&mut self, n: usize) {
        if self.limit == 0 {
            return;
        }
        self.moved += n as u64;
        let due = Duration::from_secs_f64(self.moved as f64 / self.limit as f64);
        if let Some(wait) = due.checked_sub(self.since.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

impl<T: Write> Write for Throttled<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.account(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Throttled<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.account(n);
        Ok(n)
    }
}

/// A holder the tracker named.
#[derive(Debug, Clone, Deserialize)]
pub struct Seed {
    pub addr: String,
    pub cert_sha256: String,
}

/// Why a peer did not give a piece.
#[derive(Debug)]
pub enum PeerError {
    /// It serves as many peers as it may: try another, or later.
    Busy,
    /// It cannot be reached, refused, or sent something that is not the blob.
    Bad(String),
    /// This host cannot write the piece.
    Write(std::io::Error),
}

/// A blob being fetched from peers into a file of its size.
pub struct Download {
    pub root: blake3::Hash,
    pub tree: BaoTree,
    pub secret: String,
    /// Bytes per second for the whole download (0: no limit).
    pub limit: u64,
    file: Arc<Target>,
    missing: Arc<Mutex<VecDeque<u64>>>,
    /// The blob's tree, filled from the parent hashes peers send (each checked before it is
    /// kept): once every piece is here, it is the whole tree this host serves the blob with.
    tree_hashes: Arc<Mutex<PreOrderMemOutboard>>,
    /// Bytes written so far.
    pub done: Arc<std::sync::atomic::AtomicU64>,
}

impl Download {
    /// Starts (over) the download into `partial`, a file made `size` bytes long.
    pub fn open(partial: &Path, size: u64, root: blake3::Hash, secret: &str, limit: u64) -> std::io::Result<Download> {
        let file = Target::open(partial)?;
        file.file.set_len(0)?;
        file.file.set_len(size)?;
        let pieces = size.div_ceil(PIECE).max(1);
        let tree = BaoTree::new(size, BLOCK);
        let hashes = PreOrderMemOutboard { root, tree, data: vec![0; tree.outboard_size() as usize] };
        Ok(Download {
            root,
            tree,
            secret: secret.to_string(),
            limit,
            file: Arc::new(file),
            missing: Arc::new(Mutex::new((0..pieces).collect())),
            tree_hashes: Arc::new(Mutex::new(hashes)),
            done: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    pub fn complete(&self) -> bool {
        self.missing.lock().expect("pieces lock").is_empty()
    }

    /// Fetches the missing pieces from `seeds`, a few at once, until every piece is here or
    /// none of the seeds gives more. Returns how many seeds were busy and what went wrong with
    /// the others.
    pub async fn from_seeds(&self, peers: &Peers, seeds: &[Seed]) -> (usize, Vec<String>) {
        let mut set = tokio::task::JoinSet::new();
        let workers = seeds.len().clamp(1, DOWNLOAD_WORKERS);
        for seed in seeds.iter().take(workers) {
            let config = match peers.client_config(&seed.cert_sha256) {
                Ok(c) => Arc::new(c),
                Err(e) => return (0, vec![e.to_string()]),
            };
            let job = Worker {
                seed: seed.clone(),
                config,
                root: self.root,
                tree: self.tree,
                secret: self.secret.clone(),
                limit: self.limit / workers as u64,
                file: self.file.clone(),
                missing: self.missing.clone(),
                tree_hashes: self.tree_hashes.clone(),
                done: self.done.clone(),
            };
            set.spawn(job.run());
        }
        let (mut busy, mut failed) = (0, Vec::new());
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(PeerError::Busy)) => busy += 1,
                Ok(Err(PeerError::Bad(why))) => failed.push(why),
                Ok(Err(PeerError::Write(e))) => failed.push(format!("cannot write: {e}")),
                Err(e) => failed.push(e.to_string()),
            }
        }
        (busy, failed)
    }

    /// Once [`Download::complete`]: the file on disk, and the blob's tree to serve it with.
    ///
    /// Nothing is read back. Every byte was checked against the root as it came, and the tree
    /// is made of the parent hashes that checked it: every node of the tree lies over some
    /// piece, so every node came with one. The root is the server's, computed from the blob
    /// it holds after checking that blob's SHA-256, so a file that matches the root is the
    /// blob the SHA-256 names.
    pub fn finish(&self) -> std::io::Result<PreOrderMemOutboard> {
        self.file.file.sync_all()?;
        let tree = self.tree_hashes.lock().expect("tree lock");
        Ok(PreOrderMemOutboard { root: tree.root, tree: tree.tree, data: tree.data.clone() })
    }
}

/// The BLAKE3 tree of the first `size` bytes of `file`.
pub fn tree(file: &std::fs::File, size: u64) -> std::io::Result<PreOrderMemOutboard> {
    let tree = BaoTree::new(size, BLOCK);
    let mut outboard = PreOrderMemOutboard { root: blake3::Hash::from([0; 32]), tree, data: vec![0; tree.outboard_size() as usize] };
    let reader = std::io::BufReader::with_capacity(256 * 1024, file.take(size));
    outboard.root = bao_tree::io::sync::outboard(reader, tree, &mut outboard)?;
    Ok(outboard)
}

/// The SHA-256 and BLAKE3 tree of the first `size` bytes of `file`, in one read.
pub fn digest(file: &std::fs::File, size: u64) -> std::io::Result<(String, PreOrderMemOutboard)> {
    struct Tee<'a> {
        file: &'a std::fs::File,
        at: u64,
        sha: sha2::Sha256,
    }
    impl Read for Tee<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.file.read_at(buf, self.at)?;
            self.at += n as u64;
            self.sha.update(&buf[..n]);
            Ok(n)
        }
    }
    let tree = BaoTree::new(size, BLOCK);
    let mut outboard = PreOrderMemOutboard { root: blake3::Hash::from([0; 32]), tree, data: vec![0; tree.outboard_size() as usize] };
    let mut tee = Tee { file, at: 0, sha: sha2::Sha256::new() };
    let root = bao_tree::io::sync::outboard(std::io::BufReader::with_capacity(256 * 1024, (&mut tee).take(size)), tree, &mut outboard)?;
    outboard.root = root;
    Ok((hex::encode(tee.sha.finalize()), outboard))
}

/// One connection's worth of pieces from one seed.
struct Worker {
    seed: Seed,
    config: Arc<rustls::ClientConfig>,
    root: blake3::Hash,
    tree: BaoTree,
    secret: String,
    limit: u64,
    file: Arc<Target>,
    missing: Arc<Mutex<VecDeque<u64>>>,
    tree_hashes: Arc<Mutex<PreOrderMemOutboard>>,
    done: Arc<std::sync::atomic::AtomicU64>,
}

/// A connection to a holder, kept for the pieces a worker takes from it.
struct Conn {
    rd: tokio::io::BufReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    wr: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
}

impl Worker {
    async fn run(self) -> Result<(), PeerError> {
        let (mut conn, mut buf) = (None, None);
        loop {
            let Some(piece) = self.missing.lock().expect("pieces lock").pop_front() else { return Ok(()) };
            if let Err(e) = self.piece(&mut conn, &mut buf, piece).await {
                self.missing.lock().expect("pieces lock").push_back(piece);
                return Err(e);
            }
        }
    }

    async fn connect(&self) -> Result<Conn, PeerError> {
        let bad = |e: String| PeerError::Bad(format!("{}: {e}", self.seed.addr));
        let tcp = tokio::time::timeout(PEER_TIMEOUT, TcpStream::connect(&self.seed.addr))
            .await
            .map_err(|_| bad("no answer".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(PEER_NAME).expect("a valid name");
        let tls = tokio::time::timeout(PEER_TIMEOUT, tokio_rustls::TlsConnector::from(self.config.clone()).connect(name, tcp))
            .await
            .map_err(|_| bad("TLS timed out".into()))?
            .map_err(|e| bad(e.to_string()))?;
        let (rd, wr) = tokio::io::split(tls);
        Ok(Conn { rd: tokio::io::BufReader::with_capacity(16 * 1024, rd), wr })
    }

    /// Fetches piece `n` over `conn` (connecting first if need be), checking every chunk
    /// group before writing it (gathered in `buf`, kept from one piece to the next).
    async fn piece(&self, conn: &mut Option<Conn>, buf: &mut Option<Aligned>, n: u64) -> Result<(), PeerError> {
        let bad = |e: String| PeerError::Bad(format!("{}: {e}", self.seed.addr));
        let chunks = self.tree.chunks().0;
        let per = PIECE / 1024;
        let (start, end) = (n * per, ((n + 1) * per).min(chunks.max(1)));
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let c = conn.as_mut().expect("connected");
        let req = Request { blake3: self.root.to_hex().to_string(), secret: self.secret.clone(), start, end, limit: self.limit };
        let mut line = serde_json::to_string(&req).expect("a request serialises");
        line.push('\n');
        let sent = async {
            c.wr.write_all(line.as_bytes()).await?;
            c.wr.flush().await
        };
        tokio::time::timeout(PEER_TIMEOUT, sent).await.map_err(|_| bad("not taking requests".into()))?.map_err(|e| bad(e.to_string()))?;
        let mut answer = String::new();
        tokio::time::timeout(PEER_TIMEOUT, (&mut c.rd).take(4096).read_line(&mut answer))
            .await
            .map_err(|_| bad("no answer".into()))?
            .map_err(|e| bad(e.to_string()))?;
        match serde_json::from_str::<Reply>(&answer) {
            Ok(Reply::Ok) => {}
            Ok(Reply::Busy) => return Err(PeerError::Busy),
            Ok(Reply::Refused(why)) => return Err(bad(why)),
            Err(_) => return Err(bad("not a peer's answer".into())),
        }
        // Read here (where a stall is seen), decoded and checked on a blocking thread.
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let (root, tree, file, done, limit) = (self.root, self.tree, self.file.clone(), self.done.clone(), self.limit);
        let tree_hashes = self.tree_hashes.clone();
        let mut gathered = buf.take().unwrap_or_else(|| Aligned::with_capacity(GATHER));
        let decoder = tokio::task::spawn_blocking(move || {
            let ranges = piece_ranges(tree, start, end);
            let mut input = Incoming { rx, cur: bytes::Bytes::new(), throttle: Throttled::new((), limit) };
            // Checked chunk groups follow one another: written a batch at a time.
            let mut out = Gather { to: &file, at: 0, buf: &mut gathered, done: &done };
            let decoded = input.decode(root, tree, &ranges, &mut out, &tree_hashes);
            // The groups checked before anything went wrong are kept.
            let r = out.flush().map_err(PeerError::Write).and(decoded);
            (r, gathered)
        });
        let pump = async {
            use futures_util::FutureExt;
            // Owned here: when the pump stops, the decoder sees the end of its input.
            let tx = tx;
            // What the answer line's reader already holds comes first.
            let held = c.rd.buffer().len();
            if held > 0 {
                let first = bytes::Bytes::copy_from_slice(c.rd.buffer());
                c.rd.consume(held);
                if tx.send(first).await.is_err() {
                    return Ok(());
                }
            }
            let mut buf = bytes::BytesMut::new();
            loop {
                // Takes back the memory of batches already checked, rather than asking for more.
                buf.reserve(BATCH);
                let read = tokio::select! {
                    // The decoder has all it needs: the piece is done.
                    _ = tx.closed() => return Ok(()),
                    r = tokio::time::timeout(STALL, c.rd.get_mut().read_buf(&mut buf)) => r,
                };
                match read {
                    Err(_) => return Err(bad("stalled".into())),
                    Ok(Err(e)) => return Err(bad(e.to_string())),
                    Ok(Ok(0)) => return Err(bad("closed the connection mid-piece".into())),
                    Ok(Ok(_)) => {}
                }
                // Whatever else has arrived goes in the same batch: one hand-over (and one
                // wake-up of the decoder) per batch, not per TLS record.
                while buf.len() < BATCH {
                    match c.rd.get_mut().read_buf(&mut buf).now_or_never() {
                        Some(Ok(n)) if n > 0 => {}
                        Some(Err(e)) => return Err(bad(e.to_string())),
                        _ => break,
                    }
                }
                if tx.send(buf.split().freeze()).await.is_err() {
                    return Ok(());
                }
            }
        };
        let pumped = pump.await;
        let (decoded, gathered) = decoder.await.map_err(|e| PeerError::Bad(e.to_string()))?;
        *buf = Some(gathered);
        match (decoded, pumped) {
            (Ok(()), _) => Ok(()),
            (Err(PeerError::Bad(why)), Err(link)) => {
                *conn = None;
                Err(PeerError::Bad(format!("{why} ({link:?})")))
            }
            (Err(e), _) => {
                *conn = None;
                Err(match e {
                    PeerError::Bad(why) => bad(why),
                    other => other,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    #[test]
    fn the_tree_root_is_the_blake3_of_the_content() {
        let data = content(3 * 1024 * 1024 + 123);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let (sha, outboard) = digest(&std::fs::File::open(&path).unwrap(), data.len() as u64).unwrap();
        assert_eq!(outboard.root, blake3::hash(&data));
        assert_eq!(sha, hex::encode(sha2::Sha256::digest(&data)));
    }

    /// A holder serves a receiver with the secret, pinned by certificate; a wrong secret, a
    /// wrong pin and a changed file get nothing.
    #[tokio::test]
    async fn pieces_come_verified_from_a_holder() {
        let data = content(9 * 1024 * 1024 + 5000);
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join("held");
        std::fs::write(&held, &data).unwrap();
        let (_, outboard) = digest(&std::fs::File::open(&held).unwrap(), data.len() as u64).unwrap();
        let root = outboard.root;
        let holder = Peers::start("127.0.0.1:0").await.unwrap();
        holder.hold(&held, outboard, "s3cret", Withdrawal { sha256: "x".into(), token: "t".into() }).unwrap();
        let receiver = Peers::start("127.0.0.1:0").await.unwrap();
        let seed = Seed { addr: format!("127.0.0.1:{}", holder.port()), cert_sha256: holder.cert_sha256().to_string() };

        let part = dir.path().join("part");
        let d = Download::open(&part, data.len() as u64, root, "s3cret", 0).unwrap();
        let (busy, failed) = d.from_seeds(&receiver, std::slice::from_ref(&seed)).await;
        assert_eq!((busy, failed.len()), (0, 0), "{failed:?}");
        assert!(d.complete());
        assert_eq!(std::fs::read(&part).unwrap(), data);
        // The tree kept from the parent hashes of three pieces is the whole tree, as if read back.
        let kept = d.finish().unwrap();
        let (_, read_back) = digest(&std::fs::File::open(&part).unwrap(), data.len() as u64).unwrap();
        assert_eq!((kept.root, &kept.data), (read_back.root, &read_back.data));

        let wrong = Download::open(&dir.path().join("p2"), data.len() as u64, root, "guess", 0).unwrap();
        let (_, failed) = wrong.from_seeds(&receiver, std::slice::from_ref(&seed)).await;
        assert!(failed.iter().any(|f| f.contains("does not serve")), "{failed:?}");
        assert!(!wrong.complete());

        let impostor = Seed { cert_sha256: "0".repeat(64), ..seed.clone() };
        let pinned = Download::open(&dir.path().join("p3"), data.len() as u64, root, "s3cret", 0).unwrap();
        let (_, failed) = pinned.from_seeds(&receiver, &[impostor]).await;
        assert!(failed.iter().any(|f| f.contains("certificate")), "{failed:?}");

        // A holder whose file does not match the tree (its own placed file, as the holder
        // sees it, but other bytes): the receiver stops at the first bad chunk group, and
        // keeps the good ones before it.
        let mut changed = data.clone();
        changed[1_500_000] ^= 1;
        let lying = dir.path().join("lying");
        std::fs::write(&lying, &changed).unwrap();
        let liar = Peers::start("127.0.0.1:0").await.unwrap();
        liar.hold(
            &lying,
            digest(&std::fs::File::open(&held).unwrap(), data.len() as u64).unwrap().1,
            "s3cret",
            Withdrawal { sha256: "x".into(), token: "t".into() },
        )
        .unwrap();
        let liar_seed = Seed { addr: format!("127.0.0.1:{}", liar.port()), cert_sha256: liar.cert_sha256().to_string() };
        let bad = Download::open(&dir.path().join("p4"), data.len() as u64, root, "s3cret", 0).unwrap();
        let (_, failed) = bad.from_seeds(&receiver, std::slice::from_ref(&liar_seed)).await;
        assert!(failed.iter().any(|f| f.contains("does not match the tree")), "{failed:?}");
        assert!(!bad.complete(), "a file that is not the blob was taken");
        let got = std::fs::read(dir.path().join("p4")).unwrap();
        assert_eq!(&got[..1024 * 1024], &data[..1024 * 1024], "the pieces before the change are good");
        assert_ne!(got[1_500_000], changed[1_500_000], "the changed byte was written");

        // The held file changed in place (same inode) after it was placed: its changed chunk
        // group never leaves the holder, even for a receiver that would take anything.
        std::fs::OpenOptions::new().write(true).open(&held).unwrap().write_all_at(&changed[1_500_000..1_500_001], 1_500_000).unwrap();
        let group = 1_500_000 / 16384 * 16384;
        let sent = raw_piece(&receiver, &seed, root, "s3cret", 0, 4096).await;
        assert!((1024 * 1024..4 * 1024 * 1024).contains(&sent.len()), "the groups before the change, and no more: {} bytes", sent.len());
        assert!(!sent.windows(16384).any(|w| w == &changed[group..group + 16384]), "the changed chunk group was sent");
        let (_, failed) = bad.from_seeds(&receiver, std::slice::from_ref(&seed)).await;
        assert!(!failed.is_empty() && !bad.complete(), "a changed file was served");
    }

    /// What a holder sends for chunks `[start, end)`, unchecked: everything up to the end
    /// of the answer or of the connection.
    async fn raw_piece(peers: &Peers, seed: &Seed, root: blake3::Hash, secret: &str, start: u64, end: u64) -> Vec<u8> {
        let worker = Worker {
            seed: seed.clone(),
            config: Arc::new(peers.client_config(&seed.cert_sha256).unwrap()),
            root,
            tree: BaoTree::new(0, BLOCK),
            secret: secret.into(),
            limit: 0,
            file: Arc::new(Target::open(&tempfile::tempdir().unwrap().path().join("raw")).unwrap()),
            missing: Default::default(),
            tree_hashes: Arc::new(Mutex::new(PreOrderMemOutboard { root, tree: BaoTree::new(0, BLOCK), data: Vec::new() })),
            done: Default::default(),
        };
        let mut c = worker.connect().await.unwrap();
        let req = Request { blake3: root.to_hex().to_string(), secret: secret.into(), start, end, limit: 0 };
        c.wr.write_all(format!("{}\n", serde_json::to_string(&req).unwrap()).as_bytes()).await.unwrap();
        c.wr.flush().await.unwrap();
        let mut answer = String::new();
        c.rd.read_line(&mut answer).await.unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&answer).unwrap(), Reply::Ok);
        let mut sent = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.rd.read_to_end(&mut sent)).await;
        sent
    }
}
