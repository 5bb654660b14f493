//! Garbage collection of the blob store.
//!
//! Every blob the server stores, or promises to a source host that asks whether to upload
//! it, is recorded with the time of that use ([`Tracked`], in front of the configured store).
//! A collection ([`collect`]) deletes the blobs that have not been used for [`GRACE_MS`] and
//! that nothing still needs: no template version or plan, no upload slot that has not
//! expired, no file step of a job that is not over or ended less than `blob_keep_days` ago
//! names them. A blob's record is removed before its content, and a use records before it
//! looks, so a blob someone starts relying on during a collection survives it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shoal_store::Store;
use tokio::sync::watch;

use super::blobs::{Blob, BlobError, BlobId, BlobReader, BlobStore, ByteStream};

/// How long a blob stays after it was last stored or relied on, whatever refers to it: the
/// time a step takes from staging its first source to recording its transfer.
pub const GRACE_MS: i64 = 3600 * 1000;

/// Most blobs looked at per collection.
const MAX_PER_RUN: i64 = 100_000;

/// A blob store that records each use of a blob in the database.
pub struct Tracked {
    inner: Arc<dyn BlobStore>,
    store: Arc<dyn Store>,
}

impl Tracked {
    pub fn new(inner: Arc<dyn BlobStore>, store: Arc<dyn Store>) -> Tracked {
        Tracked { inner, store }
    }

    async fn note(&self, id: &BlobId, size: u64, blake3: Option<&str>) {
        if let Err(e) = self.store.note_blob_use(id.as_str(), size as i64, blake3, shoal_core::time::now_ms()).await {
            // Unrecorded blobs are never collected; the write itself succeeded.
            tracing::warn!(sha256 = %id, error = %e, "recording a blob's use failed");
        }
    }
}

#[async_trait]
impl BlobStore for Tracked {
    async fn put(&self, body: ByteStream, limit: u64) -> Result<Blob, BlobError> {
        let blob = self.inner.put(body, limit).await?;
        self.note(&blob.id, blob.size, Some(&blob.blake3)).await;
        Ok(blob)
    }

    async fn stat(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        self.inner.stat(id).await
    }

    async fn read_from(&self, id: &BlobId, offset: u64) -> Result<(BlobReader, u64), BlobError> {
        self.inner.read_from(id, offset).await
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.inner.delete(id).await
    }

    async fn list(&self) -> Result<Option<Vec<(BlobId, u64, i64)>>, BlobError> {
        self.inner.list().await
    }

    async fn blake3(&self, id: &BlobId) -> Result<Option<String>, BlobError> {
        self.store.blob_blake3(id.as_str()).await.map_err(|e| BlobError::Io(std::io::Error::other(e)))
    }

    async fn keep(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        let Some(size) = self.inner.stat(id).await? else { return Ok(None) };
        self.note(id, size, None).await;
        // Looked at again after the use is recorded: a collection that removed the record
        // just before has deleted the content by now, or will find the new record.
        self.inner.stat(id).await
    }
}

/// What a collection did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub deleted: usize,
    pub bytes: u64,
    /// Unused for the grace period but still named by something.
    pub kept: usize,
}

/// The 64-hex-digit words of `text` (blob names, wherever they appear in a document).
fn blob_names(text: &str, into: &mut HashSet<String>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i - start == 64 {
            into.insert(text[start..i].to_ascii_lowercase());
        }
    }
}

/// One collection at `now`.
pub async fn collect(store: &dyn Store, blobs: &dyn BlobStore, keep_days: u64, now: i64) -> Result<Collected, anyhow::Error> {
    // Blobs stored before uses were recorded count as used when they were written.
    if let Some(listed) = blobs.list().await? {
        let found: Vec<(String, i64, i64)> =
            listed.into_iter().map(|(id, size, written)| (id.as_str().to_string(), size as i64, written)).collect();
        store.note_blobs_found(&found).await?;
    }
    let keep_ms = i64::try_from(keep_days).unwrap_or(i64::MAX / 2).saturating_mul(86_400_000);
    let mut named = HashSet::new();
    for text in store.blob_references(now.saturating_sub(keep_ms), now).await? {
        blob_names(&text, &mut named);
    }
    let unused_since = now - GRACE_MS;
    let mut out = Collected::default();
    for (sha, size) in store.stale_blobs(unused_since, MAX_PER_RUN).await? {
        if named.contains(&sha) {
            out.kept += 1;
            continue;
        }
        let Some(id) = BlobId::parse(&sha) else { continue };
        if store.forget_blob(&sha, unused_since).await? {
            blobs.delete(&id).await?;
            out.deleted += 1;
            out.bytes += size.max(0) as u64;
        }
    }
    Ok(out)
}

/// Collects every `blob_gc_interval_secs` until `stop` (nothing when it is 0).
pub fn spawn(shared: Arc<crate::Shared>, mut stop: watch::Receiver<bool>) {
    let every = shared.config.blob_gc_interval_secs;
    if every == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(every)) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            let now = shoal_core::time::now_ms();
            match collect(shared.store.as_ref(), shared.blobs.as_ref(), shared.config.blob_keep_days, now).await {
                Ok(c) => tracing::info!(deleted = c.deleted, bytes = c.bytes, kept = c.kept, "blob store collected"),
                Err(e) => tracing::warn!(error = %e, "collecting the blob store failed; trying again later"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_are_whole_64_digit_words() {
        let a = "a".repeat(64);
        let mut got = HashSet::new();
        blob_names(&format!(r#"{{"sha256":"{a}","x":"{}","y":"{}"}}"#, "b".repeat(65), "c".repeat(63)), &mut got);
        blob_names(&format!("sha256: {}\n", "D".repeat(64)), &mut got);
        assert_eq!(got, HashSet::from([a, "d".repeat(64)]));
    }
}
