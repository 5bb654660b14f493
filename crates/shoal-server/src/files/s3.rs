//! S3-compatible object storage: a small path-style client signed with AWS Signature
//! Version 4 (HMAC-SHA256 from `hmac` and `sha2`, already in the tree; requests go through
//! the server's `reqwest`), and [`S3Blobs`], the [`BlobStore`] that keeps blobs in a bucket
//! so replicas share them.
//!
//! Payloads are sent `UNSIGNED-PAYLOAD` (the content is verified by its SHA-256 name
//! instead), so a body streams without being read twice.

use std::io;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::blobs::{Blob, BlobError, BlobId, BlobReader, BlobStore, ByteStream, Naming};

/// Longest body of one `PUT`; larger blobs go up in parts of [`PART_BYTES`].
const SINGLE_PUT_MAX: u64 = 256 << 20;
const PART_BYTES: u64 = 64 << 20;

/// Where and as whom requests go.
#[derive(Clone)]
pub struct S3Client {
    http: reqwest::Client,
    /// `scheme://host[:port]` plus any base path, without a trailing `/`.
    endpoint: url::Url,
    region: String,
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client").field("endpoint", &self.endpoint.as_str()).field("region", &self.region).finish_non_exhaustive()
    }
}

/// Characters S3 leaves unencoded in a canonical URI (and `/` between segments).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// `Authorization` of a request, after SigV4: the canonical request's hash signed with a key
/// derived from the secret, the date, the region and the service.
#[allow(clippy::too_many_arguments)]
fn authorization(
    access_key: &str,
    secret_key: &str,
    region: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    host: &str,
    amz_date: &str,
    payload: &str,
) -> String {
    let date = &amz_date[..8];
    let mut q: Vec<(String, String)> = query.iter().map(|(k, v)| (encode(k, false), encode(v, false))).collect();
    q.sort();
    let canonical_query = q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let signed = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{method}\n{path}\n{canonical_query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n{signed}\n{payload}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let k = hmac(format!("AWS4{secret_key}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, "s3");
    let k = hmac(&k, "aws4_request");
    let signature = hex::encode(hmac(&k, &to_sign));
    format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}")
}

/// An S3 error answer, as text to show.
async fn failure(what: &str, r: reqwest::Response) -> io::Error {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    let code = between(&body, "<Code>", "</Code>").unwrap_or_default();
    let message = between(&body, "<Message>", "</Message>").unwrap_or_default();
    io::Error::other(format!("{what}: HTTP {status} {code} {message}").trim().to_string())
}

/// The `Content-Length` header (reqwest's `content_length` is the body's, 0 for a HEAD).
fn header_length(r: &reqwest::Response) -> Option<u64> {
    r.headers().get(reqwest::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let from = s.find(open)? + open.len();
    let to = s[from..].find(close)? + from;
    Some(&s[from..to])
}

impl S3Client {
    pub fn new(endpoint: &str, region: &str, access_key: &str, secret_key: &str, http: reqwest::Client) -> anyhow::Result<S3Client> {
        let endpoint = url::Url::parse(endpoint.trim_end_matches('/')).map_err(|e| anyhow::anyhow!("S3 endpoint {endpoint:?}: {e}"))?;
        anyhow::ensure!(
            matches!(endpoint.scheme(), "http" | "https") && endpoint.host_str().is_some(),
            "S3 endpoint {endpoint} is not an http(s) URL"
        );
        Ok(S3Client {
            http,
            endpoint,
            region: if region.is_empty() { "us-east-1".into() } else { region.into() },
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        })
    }

    /// A signed request for `bucket/key` (path-style).
    pub fn request(&self, method: Method, bucket: &str, key: &str, query: &[(String, String)]) -> reqwest::RequestBuilder {
        let base = self.endpoint.path().trim_end_matches('/');
        let path = if key.is_empty() {
            format!("{base}/{}", encode(bucket, false))
        } else {
            format!("{base}/{}/{}", encode(bucket, false), encode(key, true))
        };
        let host = match self.endpoint.port() {
            Some(p) => format!("{}:{p}", self.endpoint.host_str().unwrap_or_default()),
            None => self.endpoint.host_str().unwrap_or_default().to_string(),
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let payload = "UNSIGNED-PAYLOAD";
        let auth =
            authorization(&self.access_key, &self.secret_key, &self.region, method.as_str(), &path, query, &host, &amz_date, payload);
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        if !query.is_empty() {
            let q = query.iter().map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false))).collect::<Vec<_>>().join("&");
            url.set_query(Some(&q));
        }
        self.http
            .request(method, url)
            .header("x-amz-date", amz_date)
            .header("x-amz-content-sha256", payload)
            .header(reqwest::header::AUTHORIZATION, auth)
    }

    /// Size of an object, `None` when there is none.
    pub async fn head(&self, bucket: &str, key: &str) -> io::Result<Option<u64>> {
        let r = self.request(Method::HEAD, bucket, key, &[]).send().await.map_err(io::Error::other)?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(header_length(&r).ok_or_else(|| io::Error::other("HEAD answered no Content-Length"))?)),
            _ => Err(failure(&format!("HEAD {bucket}/{key}"), r).await),
        }
    }

    /// The object's bytes from `offset`, with its whole size; `None` when there is none.
    pub async fn get(&self, bucket: &str, key: &str, offset: u64) -> io::Result<Option<(reqwest::Response, u64)>> {
        let mut req = self.request(Method::GET, bucket, key, &[]);
        if offset > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let r = req.send().await.map_err(io::Error::other)?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::RANGE_NOT_SATISFIABLE => Err(io::Error::other(format!("{bucket}/{key}: offset {offset} is past its end"))),
            StatusCode::PARTIAL_CONTENT => {
                let total = r
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| io::Error::other("a ranged answer without its total size"))?;
                Ok(Some((r, total)))
            }
            s if s.is_success() => {
                let size = header_length(&r).ok_or_else(|| io::Error::other("GET answered no Content-Length"))?;
                Ok(Some((r, size)))
            }
            _ => Err(failure(&format!("GET {bucket}/{key}"), r).await),
        }
    }

    pub async fn put(&self, bucket: &str, key: &str, body: reqwest::Body, len: u64) -> io::Result<()> {
        let r = self
            .request(Method::PUT, bucket, key, &[])
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(io::Error::other)?;
        if !r.status().is_success() {
            return Err(failure(&format!("PUT {bucket}/{key}"), r).await);
        }
        Ok(())
    }

    /// Deletes an object (S3 answers 204 whether or not there was one).
    pub async fn delete(&self, bucket: &str, key: &str) -> io::Result<()> {
        let r = self.request(Method::DELETE, bucket, key, &[]).send().await.map_err(io::Error::other)?;
        if !r.status().is_success() && r.status() != StatusCode::NOT_FOUND {
            return Err(failure(&format!("DELETE {bucket}/{key}"), r).await);
        }
        Ok(())
    }

    /// Creates a bucket (an existing one of the same owner is fine).
    pub async fn create_bucket(&self, bucket: &str) -> io::Result<()> {
        let r = self.request(Method::PUT, bucket, "", &[]).send().await.map_err(io::Error::other)?;
        if !r.status().is_success() && r.status() != StatusCode::CONFLICT {
            return Err(failure(&format!("PUT {bucket}"), r).await);
        }
        Ok(())
    }

    /// Uploads the `len` bytes of the file at `path` in parts of `part_bytes`.
    async fn put_parts(&self, bucket: &str, key: &str, path: &std::path::Path, len: u64, part_bytes: u64) -> io::Result<()> {
        let up = [("uploads".to_string(), String::new())];
        let r = self.request(Method::POST, bucket, key, &up).send().await.map_err(io::Error::other)?;
        if !r.status().is_success() {
            return Err(failure("CreateMultipartUpload", r).await);
        }
        let body = r.text().await.map_err(io::Error::other)?;
        let upload_id = between(&body, "<UploadId>", "</UploadId>").ok_or_else(|| io::Error::other("no UploadId"))?.to_string();
        let mut etags = Vec::new();
        let mut sent = 0u64;
        let result = async {
            while sent < len {
                let n = part_bytes.min(len - sent);
                let number = etags.len() + 1;
                let q = [("partNumber".to_string(), number.to_string()), ("uploadId".to_string(), upload_id.clone())];
                let mut part = tokio::fs::File::open(path).await?;
                part.seek(io::SeekFrom::Start(sent)).await?;
                let stream = tokio_util::io::ReaderStream::new(part.take(n));
                let r = self
                    .request(Method::PUT, bucket, key, &q)
                    .header(reqwest::header::CONTENT_LENGTH, n)
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
                    .map_err(io::Error::other)?;
                if !r.status().is_success() {
                    return Err(failure("UploadPart", r).await);
                }
                let etag = r.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                etags.push(etag);
                sent += n;
            }
            let parts: String =
                etags.iter().enumerate().map(|(i, e)| format!("<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>", i + 1)).collect();
            let q = [("uploadId".to_string(), upload_id.clone())];
            let r = self
                .request(Method::POST, bucket, key, &q)
                .body(format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"))
                .send()
                .await
                .map_err(io::Error::other)?;
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            if !status.is_success() || text.contains("<Error>") {
                return Err(io::Error::other(format!("CompleteMultipartUpload: HTTP {status} {text}")));
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            let q = [("uploadId".to_string(), upload_id)];
            let _ = self.request(Method::DELETE, bucket, key, &q).send().await;
        }
        result
    }
}

use tokio::io::AsyncSeekExt;

/// Blobs in an S3-compatible bucket, at `<prefix><sha256>`. A blob is spooled to a local
/// temporary file while its hash is computed (memory stays bounded), then uploaded under its
/// name unless the bucket already holds it; an object is only ever written whole, so one that
/// exists has the hash it is named by.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: S3Client,
    bucket: String,
    prefix: String,
    spool: std::path::PathBuf,
    /// Largest blob sent in one `PUT`, and the part size above it.
    single_put_max: u64,
    part_bytes: u64,
}

impl S3Blobs {
    pub fn new(client: S3Client, bucket: &str, prefix: &str, spool: std::path::PathBuf) -> io::Result<S3Blobs> {
        std::fs::create_dir_all(&spool)?;
        Ok(S3Blobs { client, bucket: bucket.into(), prefix: prefix.into(), spool, single_put_max: SINGLE_PUT_MAX, part_bytes: PART_BYTES })
    }

    /// Sends blobs over `single_put_max` bytes in parts of `part_bytes` (S3's smallest part is
    /// 5 MiB).
    pub fn with_parts(mut self, single_put_max: u64, part_bytes: u64) -> S3Blobs {
        self.single_put_max = single_put_max;
        self.part_bytes = part_bytes.max(5 << 20);
        self
    }

    fn key(&self, id: &BlobId) -> String {
        format!("{}{}", self.prefix, id.as_str())
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, mut body: ByteStream, limit: u64) -> Result<Blob, BlobError> {
        let tmp = self.spool.join(uuid::Uuid::new_v4().simple().to_string());
        let result = async {
            let mut file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).await?;
            let mut naming = Naming::new();
            while let Some(piece) = body.next().await {
                let piece = piece?;
                naming.update(&piece);
                if naming.size() > limit {
                    return Err(BlobError::TooLarge(limit));
                }
                file.write_all(&piece).await?;
            }
            file.flush().await?;
            let blob = naming.finish();
            let size = blob.size;
            let key = self.key(&blob.id);
            if self.client.head(&self.bucket, &key).await? == Some(size) {
                return Ok(blob);
            }
            if size <= self.single_put_max {
                file.seek(io::SeekFrom::Start(0)).await?;
                let stream = tokio_util::io::ReaderStream::new(file);
                self.client.put(&self.bucket, &key, reqwest::Body::wrap_stream(stream), size).await?;
            } else {
                drop(file);
                self.client.put_parts(&self.bucket, &key, &tmp, size, self.part_bytes).await?;
            }
            Ok(blob)
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    async fn stat(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        Ok(self.client.head(&self.bucket, &self.key(id)).await?)
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        Ok(self.client.delete(&self.bucket, &self.key(id)).await?)
    }

    async fn read_from(&self, id: &BlobId, offset: u64) -> Result<(BlobReader, u64), BlobError> {
        let size = self.client.head(&self.bucket, &self.key(id)).await?.ok_or_else(|| BlobError::Missing(id.clone()))?;
        if offset >= size {
            return Ok((Box::pin(tokio::io::empty()), size));
        }
        let (r, total) = self.client.get(&self.bucket, &self.key(id), offset).await?.ok_or_else(|| BlobError::Missing(id.clone()))?;
        let stream = r.bytes_stream().map_err(io::Error::other);
        Ok((Box::pin(tokio_util::io::StreamReader::new(stream)), total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of AWS's SigV4 documentation for S3 (header-signed requests whose only
    /// signed headers are host, x-amz-content-sha256 and x-amz-date).
    #[test]
    fn signatures_match_the_aws_examples() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let (ak, sk) = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let host = "examplebucket.s3.amazonaws.com";
        let lifecycle = [("lifecycle".to_string(), String::new())];
        let a = authorization(ak, sk, "us-east-1", "GET", "/", &lifecycle, host, "20130524T000000Z", empty);
        assert!(a.ends_with("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"), "{a}");
        let list = [("max-keys".to_string(), "2".to_string()), ("prefix".to_string(), "J".to_string())];
        let a = authorization(ak, sk, "us-east-1", "GET", "/", &list, host, "20130524T000000Z", empty);
        assert!(a.ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"), "{a}");
        assert!(a.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
        ));
    }

    #[test]
    fn keys_are_encoded_segment_by_segment() {
        assert_eq!(encode("a b/c+d~", true), "a%20b/c%2Bd~");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }
}
