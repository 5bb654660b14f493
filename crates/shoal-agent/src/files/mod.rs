//! File steps on the agent: each file of a [`Transfer`] is fetched from the server by its
//! SHA-256 (over HTTP, resuming a partial download by range), verified against that hash,
//! owned by the step's account, and renamed into place; nothing half-written is ever seen
//! under the final name. A file already in place with the same hash is not fetched again.
//!
//! The task's output is its file log: one JSON [`FileEvent`] per line (queued, progress,
//! done or failed), which the server folds into JOB's `file_logs`.

mod direct;
mod place;
pub mod stage;
pub mod swarm;

use std::path::Path;
use std::time::{Duration, Instant};

use shoal_proto::agent::{
    ExitReason, FileEvent, FileGet, RunTask, Transfer, FILE_STATUS_DOWNLOADING, FILE_STATUS_FAILED, FILE_STATUS_SUCCESS,
};
use tokio::sync::oneshot;

use crate::exec::{account, now_ms, ExecOutcome, KillReason};
use crate::logs::{ChunkSink, LogStream};

pub use place::{safe_relative, Placement};

/// How the agent reaches the server's blob endpoint: the servers it dials, as HTTP bases.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    bases: Vec<url::Url>,
    /// This host's side of peer-to-peer fan-out; without it every file comes from the server.
    pub peers: Option<std::sync::Arc<swarm::Peers>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("bases", &self.bases).finish_non_exhaustive()
    }
}

/// How long one HTTP read may stall before the download is resumed from where it stopped.
const STALL: Duration = Duration::from_secs(30);
/// Progress events at most this often per file.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

impl Fetcher {
    pub fn new(servers: &[String], tls: std::sync::Arc<tokio_rustls::rustls::ClientConfig>) -> anyhow::Result<Fetcher> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STALL)
            .build()?;
        let bases = servers.iter().map(|s| url::Url::parse(s)).collect::<Result<Vec<_>, _>>()?;
        Ok(Fetcher { client, bases, peers: None })
    }
}

impl Fetcher {
    /// Uploads the file at `path` as blob `sha256` to the staging endpoint `url` (by its path
    /// on the server), unless the server holds it already; at most `limit` bytes per second.
    pub async fn put_blob(&self, url: &str, token: &str, sha256: &str, path: &Path, limit: u64) -> Result<(), String> {
        let mut last = String::from("no server to upload to");
        for base in &self.bases {
            let target = base.join(&format!("{}/{sha256}", url.trim_end_matches('/'))).map_err(|e| e.to_string())?;
            match self.client.head(target.clone()).header("x-shoal-blob-token", token).send().await {
                Ok(r) if r.status().as_u16() == 200 => return Ok(()),
                Ok(r) if r.status().as_u16() == 404 => {}
                Ok(r) => {
                    last = format!("HTTP {}", r.status());
                    continue;
                }
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            }
            let file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
            let body = reqwest::Body::wrap_stream(throttled(file, limit));
            match self.client.put(target).header("x-shoal-blob-token", token).body(body).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// The bytes of `file`, at most `limit` per second (0: no limit).
fn throttled(file: tokio::fs::File, limit: u64) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures_util::stream::unfold((file, Throttle::new(limit)), |(mut file, mut throttle)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                if let Some(wait) = throttle.take(n as u64) {
                    tokio::time::sleep(wait).await;
                }
                Some((Ok(buf), (file, throttle)))
            }
            Err(e) => Some((Err(e), (file, throttle))),
        }
    })
}

/// Why a file step failed on this host.
enum Failure {
    /// The host cannot take the file (space, permission, path): 202.
    Transfer(String),
    /// The blob is not on the server: 203.
    SourceMissing(String),
    Killed(KillReason),
}

/// [`transfer`] within the task's timeout.
pub async fn transfer_within<S: ChunkSink>(
    task: &RunTask,
    t: &Transfer,
    fetcher: Option<&Fetcher>,
    logs: &mut LogStream<S>,
    kill: oneshot::Receiver<KillReason>,
) -> ExecOutcome {
    let (tx, rx) = oneshot::channel();
    let limit = Duration::from_secs(task.timeout_secs.max(1));
    let watch = async move {
        let why = tokio::select! {
            Ok(k) = kill => k,
            _ = tokio::time::sleep(limit) => KillReason::Timeout,
        };
        let _ = tx.send(why);
        std::future::pending::<ExecOutcome>().await
    };
    tokio::select! {
        outcome = transfer(task, t, fetcher, logs, rx) => outcome,
        never = watch => never,
    }
}

/// Carries out `task`, a file step. Never fails: what goes wrong is the outcome and a line
/// of the file log.
pub async fn transfer<S: ChunkSink>(
    task: &RunTask,
    t: &Transfer,
    fetcher: Option<&Fetcher>,
    logs: &mut LogStream<S>,
    mut kill: oneshot::Receiver<KillReason>,
) -> ExecOutcome {
    let start_ms = now_ms();
    let end = |reason, exit_code| ExecOutcome { reason, exit_code, start_ms, end_ms: now_ms(), pgid: None, vars: Default::default() };
    let user = task.user.clone();
    let account = match tokio::task::spawn_blocking(move || account::resolve(&user)).await {
        Ok(Ok(a)) => a,
        Ok(Err(line)) => {
            for f in &t.files {
                emit(logs, &event(t, f, FILE_STATUS_FAILED, 0, 0, &line)).await;
            }
            return end(ExitReason::UserError, None);
        }
        Err(e) => {
            logs.note(&format!("[shoal] user lookup failed: {e}")).await;
            return end(ExitReason::StartFailed, None);
        }
    };
    let Some(fetcher) = fetcher else {
        logs.note("[shoal] this agent cannot fetch files (no HTTP client)").await;
        return end(ExitReason::TransferFailed, None);
    };
    let place = match Placement::prepare(Path::new(&t.target_dir), t.create_dirs, &account) {
        Ok(p) => p,
        Err(why) => {
            for f in &t.files {
                emit(logs, &event(t, f, FILE_STATUS_FAILED, 0, 0, &why)).await;
            }
            return end(ExitReason::TransferFailed, None);
        }
    };
    for f in &t.files {
        emit(logs, &event(t, f, shoal_proto::agent::FILE_STATUS_WAITING, 0, 0, "queued")).await;
    }
    let mut failed = None;
    for f in &t.files {
        match one_file(fetcher, t, f, task.key.host_id, &place, logs, &mut kill).await {
            Ok(()) => {}
            Err(Failure::Killed(k)) => return end(k.exit_reason(), None),
            Err(Failure::Transfer(why)) => {
                emit(logs, &event(t, f, FILE_STATUS_FAILED, 0, 0, &why)).await;
                failed.get_or_insert(ExitReason::TransferFailed);
            }
            Err(Failure::SourceMissing(why)) => {
                emit(logs, &event(t, f, FILE_STATUS_FAILED, 0, 0, &why)).await;
                failed = Some(ExitReason::SourceMissing);
            }
        }
    }
    match failed {
        None => end(ExitReason::Exited, Some(0)),
        Some(r) => end(r, None),
    }
}

/// A file step carried out by a simulated host ([`crate::VerifyingExecutor`]): every file is
/// fetched whole from the server and its SHA-256 checked as it streams, and nothing is
/// written to disk. What the server and the network do is real; only the host's disk is not.
pub async fn verify_without_placing<S: ChunkSink>(t: &Transfer, fetcher: &Fetcher, logs: &mut LogStream<S>) -> ExecOutcome {
    use sha2::Digest as _;
    let start_ms = now_ms();
    let mut failed = None;
    'files: for f in &t.files {
        let mut last = String::new();
        for _ in 0..3 {
            for base in &fetcher.bases {
                let Ok(url) = base.join(&f.url) else { continue };
                let mut resp = match fetcher.client.get(url).header("x-shoal-blob-token", &f.token).send().await {
                    Ok(r) if r.status().is_success() => r,
                    Ok(r) => {
                        last = format!("HTTP {}", r.status());
                        continue;
                    }
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
                let (mut hash, mut len) = (sha2::Sha256::new(), 0u64);
                loop {
                    match resp.chunk().await {
                        Ok(Some(b)) => {
                            hash.update(&b);
                            len += b.len() as u64;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            last = e.to_string();
                            len = u64::MAX;
                            break;
                        }
                    }
                }
                if len == f.size && hex::encode(hash.finalize()) == f.sha256 {
                    emit(logs, &event(t, f, FILE_STATUS_SUCCESS, f.size, 0, "done, SHA-256 verified (not placed: simulated host)")).await;
                    continue 'files;
                }
                if len != u64::MAX {
                    last = format!("{len} bytes whose SHA-256 is not {}", f.sha256);
                }
            }
        }
        emit(logs, &event(t, f, FILE_STATUS_FAILED, 0, 0, &last)).await;
        failed = Some(ExitReason::TransferFailed);
    }
    let (reason, exit_code) = match failed {
        None => (ExitReason::Exited, Some(0)),
        Some(r) => (r, None),
    };
    ExecOutcome { reason, exit_code, start_ms, end_ms: now_ms(), pgid: None, vars: Default::default() }
}

fn event(t: &Transfer, f: &FileGet, status: u8, done: u64, speed: u64, message: &str) -> FileEvent {
    FileEvent {
        mode: 1,
        src_path: f.src_path.clone(),
        src_host: f.src_host.clone(),
        dest_path: Path::new(&t.target_dir).join(&f.name).to_string_lossy().into_owned(),
        status,
        size: f.size,
        done,
        speed,
        time_ms: now_ms(),
        message: message.to_string(),
    }
}

async fn emit<S: ChunkSink>(logs: &mut LogStream<S>, e: &FileEvent) {
    let mut line = serde_json::to_vec(e).expect("file event serialises");
    line.push(b'\n');
    logs.write(&line).await;
    logs.flush().await;
}

/// Fetch, verify and place one file.
#[allow(clippy::too_many_arguments)]
async fn one_file<S: ChunkSink>(
    fetcher: &Fetcher,
    t: &Transfer,
    f: &FileGet,
    host_id: i64,
    place: &Placement,
    logs: &mut LogStream<S>,
    kill: &mut oneshot::Receiver<KillReason>,
) -> Result<(), Failure> {
    let dest = place.destination(&f.name).map_err(Failure::Transfer)?;
    if place::holds(&dest, &f.sha256, f.size).await {
        emit(logs, &event(t, f, FILE_STATUS_SUCCESS, f.size, 0, "already in place with the same content: not fetched")).await;
        return Ok(());
    }
    let partial = place::partial_path(&dest, &f.sha256, host_id);
    let swarm = f.swarm.as_deref().zip(fetcher.peers.as_deref());
    let mut direct_note = None;
    if let Some((secret, peers)) = swarm {
        // Pieces land anywhere in this file, so it is never resumed as a download from the
        // server is: kept apart, and removed whenever the download from peers stops.
        let pieces = partial.with_extension("shoal-pieces");
        match from_swarm(fetcher, peers, secret, t, f, &pieces, logs, kill).await {
            Ok(Swarmed::Fetched { outboard, peers_used, started }) => {
                if let Err(e) = place.install(&pieces, &dest, f.mode).await {
                    let _ = tokio::fs::remove_file(&pieces).await;
                    return Err(Failure::Transfer(format!("cannot place {}: {e}", dest.display())));
                }
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let note =
                    format!("done from {peers_used} peer(s), every chunk checked against the BLAKE3 tree of the blob the SHA-256 names");
                emit(logs, &event(t, f, FILE_STATUS_SUCCESS, f.size, (f.size as f64 / secs) as u64, &note)).await;
                fetcher.serve(peers, f, &dest, outboard, secret).await;
                return Ok(());
            }
            Ok(Swarmed::Direct(why)) => {
                let _ = tokio::fs::remove_file(&pieces).await;
                direct_note = why;
            }
            Err(failure) => {
                let _ = tokio::fs::remove_file(&pieces).await;
                return Err(failure);
            }
        }
    }
    let fetched = fetch_direct(fetcher, t, f, &dest, &partial, place, direct_note.as_deref(), logs, kill).await;
    if let Some((secret, peers)) = swarm {
        // The lease this host had for the server is given back either way: as a holder, or
        // so that another target takes it.
        let placed = match &fetched {
            Ok(checked) => {
                let (path, checked, sha256) = (dest.clone(), *checked, f.sha256.clone());
                match tokio::task::spawn_blocking(move || read_back(&path, checked, &sha256)).await {
                    Ok(Ok(Some(outboard))) => Some(outboard),
                    Ok(Ok(None)) => {
                        tracing::warn!(dest = %dest.display(), "the placed file changed before it could be served to peers");
                        None
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(dest = %dest.display(), error = %e, "the placed file cannot be read to serve it to peers");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "hashing for peers failed");
                        None
                    }
                }
            }
            Err(_) => None,
        };
        match placed {
            Some(outboard) => fetcher.serve(peers, f, &dest, outboard, secret).await,
            None => fetcher.release(f).await,
        }
    }
    fetched.map(drop)
}

/// Fetches `f` from the server into `partial` (resuming what it holds), verifies and places
/// it; says what it was checked against.
#[allow(clippy::too_many_arguments)]
async fn fetch_direct<S: ChunkSink>(
    fetcher: &Fetcher,
    t: &Transfer,
    f: &FileGet,
    dest: &Path,
    partial: &Path,
    place: &Placement,
    note: Option<&str>,
    logs: &mut LogStream<S>,
    kill: &mut oneshot::Receiver<KillReason>,
) -> Result<place::Checked, Failure> {
    let mut part =
        place::Partial::open(partial, f.size).await.map_err(|e| Failure::Transfer(format!("cannot write {}: {e}", partial.display())))?;
    let started = Instant::now();
    let resumed_from = part.len;
    let mut resumes = u32::from(resumed_from > 0);
    if resumed_from > 0 {
        let note = format!("resumed at byte {resumed_from} of {}", f.size);
        emit(logs, &event(t, f, FILE_STATUS_DOWNLOADING, resumed_from, 0, &note)).await;
    }
    let mut last_progress = Instant::now();
    let mut throttle = Throttle::new(t.download_limit);
    let mut attempt = 0u32;
    while part.len < f.size {
        let got = fetch_some(
            fetcher,
            f,
            &mut part,
            &mut throttle,
            kill,
            &mut last_progress,
            |done| {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                event(t, f, FILE_STATUS_DOWNLOADING, done, ((done - resumed_from) as f64 / secs) as u64, "downloading")
            },
            logs,
        )
        .await;
        match got {
            Ok(()) => attempt = 0,
            Err(FetchError::Killed(k)) => {
                let _ = part.persist().await;
                drop(part);
                drop_partial(partial, k).await;
                return Err(Failure::Killed(k));
            }
            Err(FetchError::Missing) => {
                drop(part);
                let _ = tokio::fs::remove_file(partial).await;
                return Err(Failure::SourceMissing(format!("the server does not hold blob {}", f.sha256)));
            }
            Err(FetchError::Write(e)) => {
                drop(part);
                let _ = tokio::fs::remove_file(partial).await;
                return Err(Failure::Transfer(format!("cannot write {}: {e}", dest.display())));
            }
            Err(FetchError::Refused(why)) => {
                drop(part);
                let _ = tokio::fs::remove_file(partial).await;
                return Err(Failure::Transfer(why));
            }
            Err(FetchError::Link(why)) => {
                attempt += 1;
                resumes += 1;
                let wait = Duration::from_millis(200 * 2u64.pow(attempt.min(6)));
                let note = format!("stopped at byte {} ({why}); resuming in {} ms", part.len, wait.as_millis());
                emit(logs, &event(t, f, FILE_STATUS_DOWNLOADING, part.len, 0, &note)).await;
                tokio::select! {
                    k = &mut *kill => {
                        let _ = part.persist().await;
                        drop(part);
                        let k = k.unwrap_or(KillReason::Shutdown);
                        drop_partial(partial, k).await;
                        return Err(Failure::Killed(k));
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    let checked = match part.finish(&f.sha256).await {
        Ok(hash) => hash,
        Err(why) => {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(Failure::Transfer(why));
        }
    };
    if let Err(e) = place.install(partial, dest, f.mode).await {
        let _ = tokio::fs::remove_file(partial).await;
        return Err(Failure::Transfer(format!("cannot place {}: {e}", dest.display())));
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let speed = ((f.size - resumed_from) as f64 / secs) as u64;
    let mut done = match resumes {
        0 => format!("done, {checked} verified"),
        n => format!("done, {checked} verified; the download was interrupted and resumed {n} time(s)"),
    };
    if let Some(note) = note {
        done.push_str(&format!(" (from the server: {note})"));
    }
    emit(logs, &event(t, f, FILE_STATUS_SUCCESS, f.size, speed, &done)).await;
    Ok(checked)
}

/// The tree to serve the placed file at `path` with, read back and checked again (it may have
/// changed since it was placed) against what its download was checked against: the blob's
/// BLAKE3, or else its SHA-256. `None` if it is no longer the blob.
fn read_back(path: &Path, checked: place::Checked, sha256: &str) -> std::io::Result<Option<bao_tree::io::outboard::PreOrderMemOutboard>> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    Ok(match checked {
        place::Checked::Blake3(root) => Some(swarm::tree(&file, size)?).filter(|tree| tree.root == root),
        place::Checked::Sha256 => {
            let (sha, tree) = swarm::digest(&file, size)?;
            (sha == sha256).then_some(tree)
        }
    })
}

/// How a file came (or is to come) when peers may serve it.
enum Swarmed {
    /// From peers, verified, into the partial file; its tree, to serve it in turn.
    Fetched { outboard: bao_tree::io::outboard::PreOrderMemOutboard, peers_used: usize, started: Instant },
    /// The tracker lets this host fetch from the server; why, when it is not the usual turn.
    Direct(Option<String>),
}

/// What the tracker answers.
#[derive(serde::Deserialize)]
struct TrackerAnswer {
    blake3: String,
    direct: bool,
    seeds: Vec<swarm::Seed>,
    retry_ms: u64,
}

/// Path of the swarm tracker on the server (`<path>/<sha256>`).
const SWARM_PATH: &str = "/api/shoal/v1/agent/swarm";
/// Rounds in which no seed could be reached before this host fetches from the server instead.
const UNREACHABLE_ROUNDS: u32 = 3;

impl Fetcher {
    /// Asks the tracker where to fetch `f` from.
    async fn ask_tracker(&self, f: &FileGet, fallback: bool) -> Result<TrackerAnswer, FetchError> {
        let mut last = String::from("no server to ask");
        for base in &self.bases {
            let Ok(mut url) = base.join(&format!("{SWARM_PATH}/{}", f.sha256)) else { continue };
            if fallback {
                url.set_query(Some("fallback=1"));
            }
            match self.client.get(url).header("x-shoal-blob-token", &f.token).send().await {
                Ok(r) if r.status().is_success() => match r.json::<TrackerAnswer>().await {
                    Ok(a) => return Ok(a),
                    Err(e) => last = e.to_string(),
                },
                Ok(r) if r.status().as_u16() == 404 => return Err(FetchError::Missing),
                Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
                    return Err(FetchError::Refused(format!("the server refused the download (HTTP {})", r.status().as_u16())))
                }
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(FetchError::Link(last))
    }

    /// Tells the tracker this host does not serve the blob (any more), and is done with the
    /// server.
    async fn release(&self, f: &FileGet) {
        self.withdraw(&swarm::Withdrawal { sha256: f.sha256.clone(), token: f.token.clone() }).await;
    }

    /// [`Fetcher::release`] for a held file this host stopped serving.
    pub async fn withdraw(&self, w: &swarm::Withdrawal) {
        for base in &self.bases {
            let Ok(url) = base.join(&format!("{SWARM_PATH}/{}", w.sha256)) else { continue };
            if let Ok(r) = self.client.post(url).header("x-shoal-blob-token", &w.token).json(&serde_json::json!({"port": 0})).send().await {
                if r.status().is_success() {
                    return;
                }
            }
        }
    }

    /// Serves the placed `dest` to peers and tells the tracker so.
    async fn serve(
        &self,
        peers: &swarm::Peers,
        f: &FileGet,
        dest: &Path,
        outboard: bao_tree::io::outboard::PreOrderMemOutboard,
        secret: &str,
    ) {
        let blake3 = outboard.root.to_hex().to_string();
        let withdrawal = swarm::Withdrawal { sha256: f.sha256.clone(), token: f.token.clone() };
        if let Err(e) = peers.hold(dest, outboard, secret, withdrawal) {
            tracing::warn!(dest = %dest.display(), error = %e, "cannot serve the placed file to peers");
            return;
        }
        let body = serde_json::json!({
            "port": peers.port(), "cert_sha256": peers.cert_sha256(), "blake3": blake3, "ttl_secs": swarm::SEED_TTL.as_secs(),
        });
        for base in &self.bases {
            let Ok(url) = base.join(&format!("{SWARM_PATH}/{}", f.sha256)) else { continue };
            match self.client.post(url).header("x-shoal-blob-token", &f.token).json(&body).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(status = %r.status(), "the tracker did not take this host as a holder"),
                Err(e) => tracing::debug!(error = %e, "announcing to the tracker failed"),
            }
        }
    }
}

/// Fetches `f` from the peers the tracker names, into `partial`, until it is all here and
/// verified; or learns that this host fetches from the server.
#[allow(clippy::too_many_arguments)]
async fn from_swarm<S: ChunkSink>(
    fetcher: &Fetcher,
    peers: &swarm::Peers,
    secret: &str,
    t: &Transfer,
    f: &FileGet,
    partial: &Path,
    logs: &mut LogStream<S>,
    kill: &mut oneshot::Receiver<KillReason>,
) -> Result<Swarmed, Failure> {
    let started = Instant::now();
    let mut download: Option<swarm::Download> = None;
    let (mut fallback, mut unreachable, mut link_errors) = (false, 0u32, 0u32);
    let mut fallback_why = None;
    let mut used = std::collections::HashSet::new();
    let mut last_progress = Instant::now();
    loop {
        let answer = tokio::select! {
            k = &mut *kill => return Err(Failure::Killed(k.unwrap_or(KillReason::Shutdown))),
            a = fetcher.ask_tracker(f, fallback) => a,
        };
        let answer = match answer {
            Ok(a) => {
                link_errors = 0;
                a
            }
            Err(FetchError::Missing) => return Err(Failure::SourceMissing(format!("the server does not hold blob {}", f.sha256))),
            Err(FetchError::Refused(why)) => return Err(Failure::Transfer(why)),
            Err(FetchError::Link(why)) => {
                link_errors += 1;
                let wait = Duration::from_millis(200 * 2u64.pow(link_errors.min(6)));
                if link_errors % 5 == 1 {
                    emit(logs, &event(t, f, FILE_STATUS_DOWNLOADING, 0, 0, &format!("the server cannot be asked ({why}); asking again")))
                        .await;
                }
                sleep_or_kill(wait, kill).await?;
                continue;
            }
            Err(FetchError::Write(e)) => return Err(Failure::Transfer(e.to_string())),
            Err(FetchError::Killed(k)) => return Err(Failure::Killed(k)),
        };
        if answer.direct {
            return Ok(Swarmed::Direct(fallback_why.take()));
        }
        if answer.seeds.is_empty() {
            sleep_or_kill(Duration::from_millis(answer.retry_ms.clamp(50, 5000)), kill).await?;
            continue;
        }
        let root = blake3::Hash::from_hex(&answer.blake3).map_err(|_| Failure::Transfer("the tracker sent no BLAKE3 root".into()))?;
        let d = match &mut download {
            Some(d) => d,
            None => download.insert(
                swarm::Download::open(partial, f.size, root, secret, t.download_limit)
                    .map_err(|e| Failure::Transfer(format!("cannot write {}: {e}", partial.display())))?,
            ),
        };
        let round = d.from_seeds(peers, &answer.seeds);
        tokio::pin!(round);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let (busy, failed) = loop {
            tokio::select! {
                k = &mut *kill => return Err(Failure::Killed(k.unwrap_or(KillReason::Shutdown))),
                r = &mut round => break r,
                _ = tick.tick() => {
                    if last_progress.elapsed() >= PROGRESS_EVERY {
                        last_progress = Instant::now();
                        let done = d.done.load(std::sync::atomic::Ordering::Relaxed).min(f.size);
                        let secs = started.elapsed().as_secs_f64().max(0.001);
                        emit(logs, &event(t, f, FILE_STATUS_DOWNLOADING, done, (done as f64 / secs) as u64, "downloading from peers")).await;
                    }
                }
            }
        };
        used.extend(answer.seeds.iter().take(4).map(|s| s.addr.clone()));
        if d.complete() {
            break;
        }
        for why in &failed {
            tracing::debug!(blob = %f.sha256, %why, "a peer did not serve");
        }
        if busy == 0 && !failed.is_empty() {
            unreachable += 1;
            if unreachable >= UNREACHABLE_ROUNDS {
                let why = format!("no peer could serve ({})", failed[0]);
                emit(logs, &event(t, f, FILE_STATUS_DOWNLOADING, 0, 0, &format!("{why}; fetching from the server"))).await;
                fallback_why = Some(why);
                fallback = true;
            }
        }
        sleep_or_kill(Duration::from_millis(answer.retry_ms.clamp(50, 5000)), kill).await?;
    }
    let d = std::sync::Arc::new(download.expect("a complete download"));
    let done = d.clone();
    let outboard = tokio::task::spawn_blocking(move || done.finish())
        .await
        .map_err(|e| Failure::Transfer(e.to_string()))?
        .map_err(|e| Failure::Transfer(format!("cannot write {}: {e}", partial.display())))?;
    Ok(Swarmed::Fetched { outboard, peers_used: used.len(), started })
}

async fn sleep_or_kill(wait: Duration, kill: &mut oneshot::Receiver<KillReason>) -> Result<(), Failure> {
    tokio::select! {
        k = &mut *kill => Err(Failure::Killed(k.unwrap_or(KillReason::Shutdown))),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

/// A download stopped by a user or its timeout leaves nothing behind; one stopped because the
/// agent shuts down keeps its partial file, so a retry after the restart resumes it.
async fn drop_partial(partial: &Path, why: KillReason) {
    if why != KillReason::Shutdown {
        let _ = tokio::fs::remove_file(partial).await;
    }
}

enum FetchError {
    Killed(KillReason),
    /// 404: the blob is gone.
    Missing,
    /// The server refused (a bad token, a range it cannot serve): retrying will not help.
    Refused(String),
    /// The connection failed or stalled: resume.
    Link(String),
    Write(std::io::Error),
}

/// One HTTP request from `part.len` on; returns when the link fails or the file is complete.
#[allow(clippy::too_many_arguments)]
async fn fetch_some<S: ChunkSink>(
    fetcher: &Fetcher,
    f: &FileGet,
    part: &mut place::Partial,
    throttle: &mut Throttle,
    kill: &mut oneshot::Receiver<KillReason>,
    last_progress: &mut Instant,
    progress: impl Fn(u64) -> FileEvent,
    logs: &mut LogStream<S>,
) -> Result<(), FetchError> {
    let mut last_err = String::from("no server to fetch from");
    for base in &fetcher.bases {
        let url = match base.join(&f.url) {
            Ok(u) => u,
            Err(e) => return Err(FetchError::Refused(format!("bad blob URL {}: {e}", f.url))),
        };
        let req = fetcher.client.get(url).header("x-shoal-blob-token", &f.token).header("range", format!("bytes={}-", part.len));
        let mut resp = tokio::select! {
            k = &mut *kill => return Err(FetchError::Killed(k.unwrap_or(KillReason::Shutdown))),
            r = req.send() => match r {
                Ok(r) => r,
                Err(e) => { last_err = e.to_string(); continue; }
            },
        };
        match resp.status().as_u16() {
            206 => {}
            200 if part.len == 0 => {}
            404 => return Err(FetchError::Missing),
            s @ (401 | 403 | 416) => return Err(FetchError::Refused(format!("the server refused the download (HTTP {s})"))),
            s => {
                last_err = format!("HTTP {s}");
                continue;
            }
        }
        let blake3 = resp.headers().get(shoal_proto::agent::BLOB_BLAKE3_HEADER).and_then(|v| v.to_str().ok());
        part.answered(blake3.and_then(|b| blake3::Hash::from_hex(b).ok()));
        loop {
            let piece = tokio::select! {
                k = &mut *kill => return Err(FetchError::Killed(k.unwrap_or(KillReason::Shutdown))),
                c = resp.chunk() => c,
            };
            match piece {
                Ok(Some(bytes)) => {
                    part.write(&bytes).await.map_err(FetchError::Write)?;
                    if part.len > f.size {
                        return Err(FetchError::Refused(format!("the server sent more than the {} bytes expected", f.size)));
                    }
                    if let Some(wait) = throttle.take(bytes.len() as u64) {
                        tokio::select! {
                            k = &mut *kill => return Err(FetchError::Killed(k.unwrap_or(KillReason::Shutdown))),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    if last_progress.elapsed() >= PROGRESS_EVERY {
                        *last_progress = Instant::now();
                        part.flush_buf().await.map_err(FetchError::Write)?;
                        emit(logs, &progress(part.len)).await;
                    }
                }
                Ok(None) if part.len >= f.size => return Ok(()),
                Ok(None) => return Err(FetchError::Link(format!("the server ended the download at byte {}", part.len))),
                Err(e) => return Err(FetchError::Link(e.to_string())),
            }
        }
    }
    Err(FetchError::Link(last_err))
}

/// Holds a download to `limit` bytes per second (0: no limit).
struct Throttle {
    limit: u64,
    since: Instant,
    sent: u64,
}

impl Throttle {
    fn new(limit: u64) -> Throttle {
        Throttle { limit, since: Instant::now(), sent: 0 }
    }

    /// After `n` more bytes: how long to wait to stay within the limit.
    fn take(&mut self, n: u64) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        self.sent += n;
        let due = Duration::from_secs_f64(self.sent as f64 / self.limit as f64);
        due.checked_sub(self.since.elapsed()).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_asks_for_the_time_the_limit_needs() {
        let mut t = Throttle::new(1000);
        let wait = t.take(2000).expect("2000 bytes at 1000 B/s need a wait");
        assert!(wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2), "{wait:?}");
        assert_eq!(Throttle::new(0).take(1 << 30), None);
    }

    /// A file fetched from the server is served to peers only while it is still the blob: its
    /// read-back is checked against the BLAKE3 the download was checked against, or the SHA-256.
    #[test]
    fn a_placed_file_is_served_only_while_it_is_the_blob() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..5 * 1024 * 1024 + 7).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let (root, sha) = (blake3::hash(&content), hex::encode(sha2::Sha256::digest(&content)));
        let tree = read_back(&path, place::Checked::Blake3(root), &sha).unwrap().expect("the blob");
        assert_eq!(tree.root, root);
        assert!(read_back(&path, place::Checked::Sha256, &sha).unwrap().is_some());

        let mut changed = content.clone();
        changed[4 * 1024 * 1024] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        assert!(read_back(&path, place::Checked::Blake3(root), &sha).unwrap().is_none());
        assert!(read_back(&path, place::Checked::Sha256, &sha).unwrap().is_none());
    }
}
