//! The blob store: file contents named by their SHA-256, written once, read by range.
//!
//! [`BlobStore`] is what the rest of the server sees; [`LocalBlobs`] keeps blobs in a
//! directory (`<data_dir>/blobs/<2 hex>/<64 hex>`), written to a temporary name while the
//! hash is computed and renamed into place only when complete, so a blob that exists is
//! whole and has the hash it is named by.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt};

/// A blob's name: 64 lowercase hex digits of the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(String);

impl BlobId {
    /// `None` unless `s` is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<BlobId> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| BlobId(s.to_string()))
    }

    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(hex::encode(Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored blob: its name and size, and the BLAKE3 of its bytes (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub id: BlobId,
    pub size: u64,
    pub blake3: String,
}

/// The hashes of bytes on their way into the store, in one pass: the SHA-256 that names the
/// blob, and the BLAKE3 targets check a download against.
pub struct Naming {
    sha256: Sha256,
    blake3: blake3::Hasher,
    size: u64,
}

impl Naming {
    pub fn new() -> Naming {
        Naming { sha256: Sha256::new(), blake3: blake3::Hasher::new(), size: 0 }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.blake3.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Blob {
        Blob { id: BlobId(hex::encode(self.sha256.finalize())), size: self.size, blake3: self.blake3.finalize().to_hex().to_string() }
    }
}

impl Default for Naming {
    fn default() -> Self {
        Naming::new()
    }
}

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<axum::body::Bytes>> + Send>>;
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not stored")]
    Missing(BlobId),
    #[error("the content is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error("blob store: {0}")]
    Io(#[from] io::Error),
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Store the bytes of `body` (at most `limit`), named by their hash.
    async fn put(&self, body: ByteStream, limit: u64) -> Result<Blob, BlobError>;
    /// Size of a stored blob, `None` when it is not stored.
    async fn stat(&self, id: &BlobId) -> Result<Option<u64>, BlobError>;
    /// The bytes of a blob from `offset` to its end.
    async fn read_from(&self, id: &BlobId, offset: u64) -> Result<(BlobReader, u64), BlobError>;
    /// Deletes a blob (one not stored is fine).
    async fn delete(&self, id: &BlobId) -> Result<(), BlobError>;
    /// Every stored blob with its size and when it was written (ms), where the store can
    /// list them cheaply; `None` where it cannot.
    async fn list(&self) -> Result<Option<Vec<(BlobId, u64, i64)>>, BlobError> {
        Ok(None)
    }
    /// The BLAKE3 of a stored blob's bytes (hex), where it was recorded when it was stored.
    async fn blake3(&self, _id: &BlobId) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
    /// Size of a stored blob that a caller is about to rely on without storing it again (a
    /// source host asking whether to upload): kept from collection from now on.
    async fn keep(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        self.stat(id).await
    }
}

/// Blobs in a local directory.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<LocalBlobs> {
        let root = root.into();
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(LocalBlobs { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `id` lives.
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        self.root.join(&id.0[..2]).join(&id.0)
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, mut body: ByteStream, limit: u64) -> Result<Blob, BlobError> {
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        let written = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut naming = Naming::new();
            while let Some(piece) = body.next().await {
                let piece = piece?;
                naming.update(&piece);
                if naming.size() > limit {
                    return Err(BlobError::TooLarge(limit));
                }
                file.write_all(&piece).await?;
            }
            file.sync_all().await?;
            Ok::<_, BlobError>(naming.finish())
        }
        .await;
        let blob = match written {
            Ok(b) => b,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let dest = self.path_of(&blob.id);
        let placed = async {
            tokio::fs::create_dir_all(dest.parent().expect("blob path has a parent")).await?;
            tokio::fs::rename(&tmp, &dest).await
        }
        .await;
        if let Err(e) = placed {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(blob)
    }

    async fn stat(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        match tokio::fs::metadata(self.path_of(id)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path_of(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> Result<Option<Vec<(BlobId, u64, i64)>>, BlobError> {
        let root = self.root.clone();
        let listed = tokio::task::spawn_blocking(move || -> io::Result<Vec<(BlobId, u64, i64)>> {
            let mut out = Vec::new();
            for dir in std::fs::read_dir(&root)? {
                let dir = dir?;
                let name = dir.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.len() != 2 || !dir.file_type()?.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(dir.path())? {
                    let f = f?;
                    let Some(id) = f.file_name().to_str().and_then(BlobId::parse) else { continue };
                    let m = f.metadata()?;
                    let written =
                        m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as i64);
                    out.push((id, m.len(), written));
                }
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Some(listed))
    }

    async fn read_from(&self, id: &BlobId, offset: u64) -> Result<(BlobReader, u64), BlobError> {
        let mut file = match tokio::fs::File::open(self.path_of(id)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::Missing(id.clone())),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata().await?.len();
        file.seek(io::SeekFrom::Start(offset.min(size))).await?;
        Ok((Box::pin(file), size))
    }
}

/// A stream of one in-memory value (content sent inside an API call).
pub fn once(bytes: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(axum::body::Bytes::from(bytes)) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_blob_is_named_by_its_hash_and_read_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobs::new(dir.path()).unwrap();
        let blob = store.put(once(b"hello shoal".to_vec()), 1 << 20).await.unwrap();
        assert_eq!(blob.id, BlobId::of(b"hello shoal"));
        assert_eq!(blob.size, 11);
        assert_eq!(store.stat(&blob.id).await.unwrap(), Some(11));
        let (mut r, size) = store.read_from(&blob.id, 6).await.unwrap();
        let mut rest = String::new();
        r.read_to_string(&mut rest).await.unwrap();
        assert_eq!((rest.as_str(), size), ("shoal", 11));
        let other = BlobId::of(b"other");
        assert!(matches!(store.read_from(&other, 0).await, Err(BlobError::Missing(_))));
        assert_eq!(store.stat(&other).await.unwrap(), None);
    }

    #[tokio::test]
    async fn content_over_the_limit_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobs::new(dir.path()).unwrap();
        let err = store.put(once(vec![7; 100]), 99).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge(99)), "{err}");
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(store.stat(&BlobId::of(&[7; 100])).await.unwrap(), None);
    }

    #[test]
    fn only_hex_names_are_blob_ids() {
        assert!(BlobId::parse(&"a".repeat(64)).is_some());
        assert!(BlobId::parse(&"A".repeat(64)).is_none());
        assert!(BlobId::parse("../etc/passwd").is_none());
        assert!(BlobId::parse(&"a".repeat(63)).is_none());
    }
}
