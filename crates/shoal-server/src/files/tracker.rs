//! The swarm tracker: peer-to-peer fan-out of a blob to many targets.
//!
//! A target given a swarm secret with its file asks the tracker what to do
//! (`GET /api/shoal/v1/agent/swarm/<sha256>`, with its blob token):
//!
//! - while fewer than `p2p_direct` targets of the blob fetch it from the server, it gets a
//!   *direct* lease and fetches from the server as any target does;
//! - once targets hold the blob, it gets some of them (*seeds*: address and the SHA-256 of the
//!   TLS certificate each one serves with) and fetches the blob's chunks from them, checking
//!   each chunk group against the blob's BLAKE3 tree (bao), whose root the tracker gives;
//! - otherwise it waits and asks again.
//!
//! A target that holds the blob, verified, announces itself (`POST`, same path) and serves it
//! for a while. So the server sends the blob `p2p_direct` times, not once per target, and the
//! holders multiply each round. A target that cannot reach any seed asks with `fallback=1`
//! and is let through to the server.
//!
//! With one server the tracker's state is in memory (a restart forgets the seeds; targets then
//! fetch directly). Replicas on a shared store keep it in the database (`swarm_peers`), so a
//! seed announced through one replica is named by all, and the `p2p_direct` leases of a blob
//! are counted across them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::blobs::BlobId;
use crate::Shared;

/// Seeds named in one answer.
const SEEDS_PER_ANSWER: usize = 6;
/// How long a target waits before asking again when there is nothing to fetch from yet.
const RETRY_MS: u64 = 300;
/// Roots the tracker keeps whatever their age.
const ROOTS_KEPT: usize = 1024;
/// Beyond [`ROOTS_KEPT`], how long a root not asked for is kept.
const ROOT_IDLE: Duration = Duration::from_secs(3600);
/// Longest a seed is named after its announcement, whatever it asks.
const MAX_SEED_TTL: Duration = Duration::from_secs(3600);

/// A blob's BLAKE3 root (hex) and size, once computed.
type RootCell = tokio::sync::OnceCell<(String, u64)>;

#[derive(Default)]
pub struct Tracker {
    swarms: Mutex<HashMap<String, Swarm>>,
    roots: Mutex<Roots>,
}

/// BLAKE3 roots of blobs, computed once each, and when each was last asked for.
#[derive(Default)]
struct Roots {
    cells: HashMap<String, (Arc<RootCell>, Instant)>,
    /// When roots not asked for lately were last forgotten.
    trimmed: Option<Instant>,
}

#[derive(Default)]
struct Swarm {
    seeds: HashMap<i64, Seed>,
    /// Hosts fetching from the server now, until when.
    direct: HashMap<i64, Instant>,
}

#[derive(Clone)]
struct Seed {
    addr: String,
    cert_sha256: String,
    until: Instant,
}

/// What a target is told.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    /// BLAKE3 of the blob (hex): the root of the tree every chunk from a peer is checked against.
    pub blake3: String,
    /// Fetch from the server now.
    pub direct: bool,
    pub seeds: Vec<SeedInfo>,
    /// With neither: ask again after this long.
    pub retry_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedInfo {
    pub addr: String,
    pub cert_sha256: String,
}

/// A holder's announcement; with port 0, a target that serves nothing (any more) and is done
/// with the server (its lease is given back, and it is no longer named as a seed).
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
#[derive(Default)]
pub struct Announce {
    /// The port it serves peers on (at the host's registered IP).
    pub port: u16,
    pub cert_sha256: String,
    pub blake3: String,
    /// How long it serves the blob.
    pub ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
pub struct AskQuery {
    /// No seed could be reached: fetch from the server whatever the lease count.
    #[serde(default)]
    pub fallback: u8,
}

impl Tracker {
    /// The decision for `host`, a target of blob `sha256` of `size` bytes; at most `direct_max`
    /// targets fetch from the server at once.
    fn ask(&self, sha256: &str, host: i64, size: u64, direct_max: usize, fallback: bool) -> (bool, Vec<SeedInfo>) {
        let now = Instant::now();
        let mut swarms = self.swarms.lock().expect("tracker lock");
        let swarm = swarms.entry(sha256.to_string()).or_default();
        swarm.seeds.retain(|_, s| s.until > now);
        swarm.direct.retain(|_, until| *until > now);
        let mut seeds: Vec<SeedInfo> = swarm
            .seeds
            .iter()
            .filter(|(h, _)| **h != host)
            .map(|(_, s)| SeedInfo { addr: s.addr.clone(), cert_sha256: s.cert_sha256.clone() })
            .collect();
        if !seeds.is_empty() && !fallback {
            spread(host, &mut seeds);
            return (false, seeds);
        }
        if fallback || swarm.direct.contains_key(&host) || swarm.direct.len() < direct_max {
            swarm.direct.insert(host, now + lease_for(size));
            return (true, Vec::new());
        }
        (false, Vec::new())
    }

    /// [`Tracker::ask`] where the state lives: in the database on a shared store.
    async fn decide(&self, shared: &Shared, sha256: &str, host: i64, size: u64, fallback: bool) -> anyhow::Result<(bool, Vec<SeedInfo>)> {
        let direct_max = shared.config.p2p_direct.max(1);
        if !shared.store.is_shared() {
            let answer = self.ask(sha256, host, size, direct_max, fallback);
            self.sweep();
            return Ok(answer);
        }
        let now = shoal_core::time::now_ms();
        let until = now + lease_for(size).as_millis() as i64;
        let (direct, seeds) = shared.store.swarm_ask(sha256, host, direct_max as i64, until, fallback, now).await?;
        let mut seeds: Vec<SeedInfo> = seeds.into_iter().map(|(addr, cert_sha256)| SeedInfo { addr, cert_sha256 }).collect();
        spread(host, &mut seeds);
        Ok((direct, seeds))
    }

    /// `host` neither fetches from the server nor serves the blob (any more).
    fn release(&self, sha256: &str, host: i64) {
        if let Some(swarm) = self.swarms.lock().expect("tracker lock").get_mut(sha256) {
            swarm.direct.remove(&host);
            swarm.seeds.remove(&host);
        }
    }

    fn announce(&self, sha256: &str, host: i64, seed: Seed) {
        let mut swarms = self.swarms.lock().expect("tracker lock");
        let swarm = swarms.entry(sha256.to_string()).or_default();
        swarm.direct.remove(&host);
        swarm.seeds.insert(host, seed);
    }

    /// Forgets swarms with no seed and no lease left.
    fn sweep(&self) {
        let now = Instant::now();
        let mut swarms = self.swarms.lock().expect("tracker lock");
        swarms.retain(|_, s| s.seeds.values().any(|x| x.until > now) || s.direct.values().any(|u| *u > now));
    }

    /// BLAKE3 of blob `id` and its size: the one recorded when the blob was stored, or else
    /// read once from the blob store.
    ///
    /// Targets fetching from peers check every byte against this root and nothing else, so
    /// the root must be that of the bytes the SHA-256 names: a recorded one was computed in
    /// the pass that named the blob; a read checks the blob's SHA-256 against its name in the
    /// same pass (a blob changed in the store is refused here, as a target fetching from the
    /// server refuses it).
    async fn root(&self, shared: &Shared, id: &BlobId) -> anyhow::Result<(String, u64)> {
        let cell = self.root_cell(id.as_str(), Instant::now());
        let got = cell
            .get_or_try_init(|| async {
                if let (Some(root), Some(size)) = (shared.blobs.blake3(id).await?, shared.blobs.stat(id).await?) {
                    return anyhow::Ok((root, size));
                }
                let (mut reader, _) = shared.blobs.read_from(id, 0).await?;
                let mut naming = super::blobs::Naming::new();
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = reader.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    naming.update(&buf[..n]);
                }
                let read = naming.finish();
                if read.id != *id {
                    return Err(anyhow::Error::new(Changed(read.id.as_str().to_string())));
                }
                anyhow::Ok((read.blake3, read.size))
            })
            .await?;
        Ok(got.clone())
    }
}

impl Tracker {
    /// The root cell of blob `sha256`, asked for at `now`. Beyond [`ROOTS_KEPT`] roots, those
    /// not asked for in [`ROOT_IDLE`] are forgotten (at most once a minute): a root is cheap to
    /// have again (recorded with the blob), and one blob asked for leaves no entry forever.
    fn root_cell(&self, sha256: &str, now: Instant) -> Arc<RootCell> {
        let mut roots = self.roots.lock().expect("tracker lock");
        let due = roots.trimmed.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(60));
        if roots.cells.len() >= ROOTS_KEPT && due {
            roots.cells.retain(|_, (_, used)| now.saturating_duration_since(*used) < ROOT_IDLE);
            roots.trimmed = Some(now);
        }
        let (cell, used) = roots.cells.entry(sha256.to_string()).or_insert_with(|| (Arc::default(), now));
        *used = now;
        cell.clone()
    }
}

/// A stored blob whose content no longer has the SHA-256 it is named by (the SHA-256 it has).
#[derive(Debug, thiserror::Error)]
#[error("the stored blob's SHA-256 is {0}, not its name")]
struct Changed(String);

/// A different few seeds for each asker, so the load spreads over the holders.
fn spread(host: i64, seeds: &mut Vec<SeedInfo>) {
    if seeds.is_empty() {
        return;
    }
    let start = (host as usize).wrapping_mul(2_654_435_761) % seeds.len();
    seeds.rotate_left(start);
    seeds.truncate(SEEDS_PER_ANSWER);
}

/// A lease covers the fetch at a modest 4 MB/s, and at least a minute.
fn lease_for(size: u64) -> Duration {
    Duration::from_secs(60).max(Duration::from_secs(size / (4 * 1024 * 1024)))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"code": status.as_u16(), "message": message.into(), "data": null}))).into_response()
}

/// The host a blob token was made for, or the answer refusing it.
fn holder(shared: &Shared, headers: &HeaderMap, sha: &str) -> Result<(BlobId, i64), Box<Response>> {
    let Some(id) = BlobId::parse(sha) else { return Err(Box::new(error(StatusCode::NOT_FOUND, "not a blob name"))) };
    let token = headers.get("x-shoal-blob-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    match super::token_holder(&shared.config.sealing_key, token, id.as_str()) {
        Some(host) => Ok((id, host)),
        None => Err(Box::new(error(StatusCode::FORBIDDEN, "this token does not open this blob"))),
    }
}

/// `GET /api/shoal/v1/agent/swarm/<sha256>`: where a target fetches the blob from.
pub async fn ask(State(shared): State<Arc<Shared>>, Path(sha): Path<String>, Query(q): Query<AskQuery>, headers: HeaderMap) -> Response {
    let (id, host) = match holder(&shared, &headers, &sha) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (blake3, size) = match shared.tracker.root(&shared, &id).await {
        Ok(r) => r,
        Err(e) if matches!(e.downcast_ref::<super::blobs::BlobError>(), Some(super::blobs::BlobError::Missing(_))) => {
            return error(StatusCode::NOT_FOUND, "blob not stored");
        }
        // No peer is named for it: the target fetches from the server, checks the SHA-256
        // as always, and fails saying what it got.
        Err(e) if e.downcast_ref::<Changed>().is_some() => {
            tracing::error!(error = %e, blob = %id.as_str(), "a stored blob changed");
            return axum::Json(Answer { blake3: String::new(), direct: true, seeds: Vec::new(), retry_ms: RETRY_MS }).into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, blob = %id.as_str(), "blob not readable for its BLAKE3 root");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the blob cannot be read now");
        }
    };
    let (direct, seeds) = match shared.tracker.decide(&shared, id.as_str(), host, size, q.fallback != 0).await {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, blob = %id.as_str(), "the swarm state cannot be read");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the swarm state cannot be read now");
        }
    };
    axum::Json(Answer { blake3, direct, seeds, retry_ms: RETRY_MS }).into_response()
}

/// `POST /api/shoal/v1/agent/swarm/<sha256>`: a target holds the blob, verified, and serves it.
pub async fn announce(State(shared): State<Arc<Shared>>, Path(sha): Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (id, host) = match holder(&shared, &headers, &sha) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Ok(a) = serde_json::from_slice::<Announce>(&body) else { return error(StatusCode::BAD_REQUEST, "not an announcement") };
    if a.port == 0 {
        if shared.store.is_shared() {
            if let Err(e) = shared.store.swarm_release(id.as_str(), host).await {
                tracing::error!(error = %e, "the swarm state cannot be written");
                return error(StatusCode::SERVICE_UNAVAILABLE, "the swarm state cannot be written now");
            }
        } else {
            shared.tracker.release(id.as_str(), host);
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    let Ok((root, _)) = shared.tracker.root(&shared, &id).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the blob cannot be read now");
    };
    if a.blake3 != root {
        tracing::warn!(host, blob = %id.as_str(), "a holder announced a BLAKE3 root that is not the blob's; not named as a seed");
        return error(StatusCode::CONFLICT, "that is not this blob's BLAKE3 root");
    }
    if a.cert_sha256.len() != 64 || !a.cert_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return error(StatusCode::BAD_REQUEST, "an announcement needs a port and the SHA-256 of the certificate");
    }
    let ip = match shared.store.hosts_by_ids(&[host]).await {
        Ok(hosts) => match hosts.into_iter().next() {
            Some(h) => h.ip,
            None => return error(StatusCode::NOT_FOUND, "no such host"),
        },
        Err(e) => {
            tracing::error!(error = %e, "host lookup failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read");
        }
    };
    let addr = if ip.contains(':') { format!("[{ip}]:{}", a.port) } else { format!("{ip}:{}", a.port) };
    let ttl = Duration::from_secs(a.ttl_secs).min(MAX_SEED_TTL);
    let cert_sha256 = a.cert_sha256.to_ascii_lowercase();
    if shared.store.is_shared() {
        let now = shoal_core::time::now_ms();
        if let Err(e) = shared.store.swarm_announce(id.as_str(), host, &addr, &cert_sha256, now + ttl.as_millis() as i64, now).await {
            tracing::error!(error = %e, "the swarm state cannot be written");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the swarm state cannot be written now");
        }
    } else {
        shared.tracker.announce(id.as_str(), host, Seed { addr, cert_sha256, until: Instant::now() + ttl });
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(answer: (bool, Vec<SeedInfo>)) -> (bool, Vec<String>) {
        (answer.0, answer.1.into_iter().map(|s| s.addr).collect())
    }

    #[test]
    fn leases_then_seeds() {
        let t = Tracker::default();
        assert_eq!(addrs(t.ask("b", 1, 10, 2, false)), (true, vec![]));
        assert!(t.ask("b", 2, 10, 2, false).0);
        // Two leases out: the third waits.
        assert_eq!(addrs(t.ask("b", 3, 10, 2, false)), (false, vec![]));
        // Asking again keeps one's own lease.
        assert!(t.ask("b", 1, 10, 2, false).0);
        // Could not reach anyone: let through.
        assert!(t.ask("b", 3, 10, 2, true).0);
        t.announce("b", 1, Seed { addr: "10.0.0.1:7000".into(), cert_sha256: "c".into(), until: Instant::now() + Duration::from_secs(60) });
        assert_eq!(addrs(t.ask("b", 4, 10, 2, false)), (false, vec!["10.0.0.1:7000".to_string()]));
        // A seed is not told to fetch from itself.
        assert!(t.ask("b", 1, 10, 3, false).1.is_empty());
        // A holder that withdraws is no longer named.
        t.release("b", 1);
        assert!(t.ask("b", 4, 10, 2, false).1.is_empty());
        // Expired seeds are not named.
        t.announce("c", 1, Seed { addr: "x".into(), cert_sha256: "c".into(), until: Instant::now() });
        assert!(t.ask("c", 2, 10, 1, false).1.is_empty());
    }

    /// The roots kept are those of blobs asked about lately: a server that serves many blobs
    /// over months does not keep one entry for each.
    #[test]
    fn roots_not_asked_for_are_forgotten() {
        let t = Tracker::default();
        let start = Instant::now();
        for i in 0..3 * ROOTS_KEPT {
            let cell = t.root_cell(&format!("old{i}"), start);
            cell.set((String::new(), 0)).unwrap();
        }
        let later = start + ROOT_IDLE + Duration::from_secs(1);
        let recent = t.root_cell("recent", later);
        recent.set(("r".into(), 1)).unwrap();
        for i in 0..ROOTS_KEPT {
            t.root_cell(&format!("new{i}"), later);
        }
        let kept = t.roots.lock().unwrap().cells.len();
        assert!(kept <= ROOTS_KEPT + 1, "{kept} roots kept");
        // One asked for lately is still there, computed.
        assert_eq!(t.root_cell("recent", later).get(), Some(&("r".to_string(), 1)));
    }
}
