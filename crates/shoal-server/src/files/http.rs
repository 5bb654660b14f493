//! The HTTP doors of file content, outside the JSON API (no body limit of the API, no request
//! timeout: a file takes as long as it takes):
//!
//! - `PUT /api/shoal/v1/uploads/<token>`: the upload URL of `generate_local_file_upload_url`.
//!   The raw body becomes a blob; the answer is what a bkrepo generic upload answers
//!   (`{code: 0, data: {nodeInfo: {md5, sha256, size, fullPath}}}`), which BlueKing callers read.
//! - `GET /api/shoal/v1/agent/blobs/<sha256>`: a blob, from the `Range: bytes=N-` offset on,
//!   for a target agent holding a token sealed into its task.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use md5::Digest;
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::blobs::{BlobError, BlobId};
use crate::Shared;

/// Bytes per piece of a blob response.
const PIECE: usize = 128 * 1024;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"code": status.as_u16(), "message": message.into(), "data": null}))).into_response()
}

/// The SHA-256 (hex) of an upload token, as the slot keeps it.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

pub async fn upload(State(shared): State<Arc<Shared>>, Path(token): Path<String>, body: Body) -> Response {
    let slot = match shared.store.upload_by_token(&token_hash(&token)).await {
        Ok(Some(s)) => s,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no upload slot for this URL"),
        Err(e) => {
            tracing::error!(error = %e, "upload slot lookup failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read");
        }
    };
    if slot.expire_time < shoal_core::time::now_ms() {
        return error(StatusCode::GONE, "this upload URL has expired; ask for a new one");
    }
    let md5 = Arc::new(std::sync::Mutex::new(md5::Md5::new()));
    let hasher = md5.clone();
    let stream = body.into_data_stream().map(move |piece| {
        let piece = piece.map_err(std::io::Error::other)?;
        hasher.lock().expect("md5 lock").update(&piece);
        Ok(piece)
    });
    let blob = match shared.blobs.put(Box::pin(stream), super::MAX_FILE_BYTES).await {
        Ok(b) => b,
        Err(BlobError::TooLarge(limit)) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("files are limited to {limit} bytes")),
        Err(e) => {
            tracing::error!(error = %e, path = %slot.path, "upload not stored");
            return error(StatusCode::INSUFFICIENT_STORAGE, format!("the upload was not stored: {e}"));
        }
    };
    if let Err(e) = shared.store.fill_upload(&slot.path, blob.id.as_str(), blob.size as i64).await {
        tracing::error!(error = %e, "upload not recorded");
        return error(StatusCode::SERVICE_UNAVAILABLE, "the upload was stored but could not be recorded; upload it again");
    }
    let md5 = hex::encode(std::mem::take(&mut *md5.lock().expect("md5 lock")).finalize());
    tracing::info!(path = %slot.path, sha256 = %blob.id, size = blob.size, "file uploaded");
    axum::Json(json!({
        "code": 0,
        "message": null,
        "data": {"nodeInfo": {"md5": md5, "sha256": blob.id.as_str(), "size": blob.size, "fullPath": slot.path, "name": slot.file_name}},
        "traceId": "",
    }))
    .into_response()
}

/// `bytes=N-` → N; anything else is not served by range.
fn range_start(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    let Some(v) = headers.get(header::RANGE) else { return Ok(None) };
    let v = v.to_str().map_err(|_| ())?;
    let from = v.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).ok_or(())?;
    from.parse().map(Some).map_err(|_| ())
}

pub async fn blob(State(shared): State<Arc<Shared>>, Path(sha): Path<String>, headers: HeaderMap) -> Response {
    let Some(id) = BlobId::parse(&sha) else { return error(StatusCode::NOT_FOUND, "not a blob name") };
    let token = headers.get("x-shoal-blob-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !super::token_opens(&shared.config.sealing_key, token, id.as_str()) {
        return error(StatusCode::FORBIDDEN, "this token does not open this blob");
    }
    let Ok(start) = range_start(&headers) else { return error(StatusCode::RANGE_NOT_SATISFIABLE, "only `bytes=N-` ranges are served") };
    let (reader, size) = match shared.blobs.read_from(&id, start.unwrap_or(0)).await {
        Ok(r) => r,
        Err(BlobError::Missing(_)) => return error(StatusCode::NOT_FOUND, "blob not stored"),
        Err(e) => {
            tracing::error!(error = %e, "blob read failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "blob read failed");
        }
    };
    // A store that cannot say only costs the target a SHA-256.
    let blake3 = shared.blobs.blake3(&id).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, blob = %id, "a blob's BLAKE3 cannot be read");
        None
    });
    let from = start.unwrap_or(0);
    if from > size {
        return error(StatusCode::RANGE_NOT_SATISFIABLE, format!("the blob has {size} bytes"));
    }
    let counted = shared.clone();
    // One buffer per response, taken back once the connection has sent what it held (read
    // into without being zeroed first).
    let stream = futures_util::stream::unfold((reader, bytes::BytesMut::new()), move |(mut r, mut buf)| {
        let counted = counted.clone();
        async move {
            buf.reserve(PIECE);
            match r.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    counted.gateway.metrics.blob_bytes_served(n as u64);
                    Some((Ok::<_, std::io::Error>(buf.split().freeze()), (r, buf)))
                }
                Err(e) => Some((Err(e), (r, buf))),
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, (size - from).into());
    h.insert(header::ACCEPT_RANGES, header::HeaderValue::from_static("bytes"));
    if let Some(v) = blake3.and_then(|b| header::HeaderValue::from_str(&b).ok()) {
        h.insert(shoal_proto::agent::BLOB_BLAKE3_HEADER, v);
    }
    if start.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = size.saturating_sub(1);
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {from}-{last}/{size}")) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// `HEAD`: 200 when the blob is held (nothing to upload), 404 when not.
pub async fn stage_head(State(shared): State<Arc<Shared>>, Path(sha): Path<String>, headers: HeaderMap) -> Response {
    let Some(id) = BlobId::parse(&sha) else { return error(StatusCode::NOT_FOUND, "not a blob name") };
    if !staging_allowed(&shared, &headers) {
        return error(StatusCode::FORBIDDEN, "this token does not allow staging");
    }
    // The source host will not upload it: it must not be collected meanwhile.
    match shared.blobs.keep(&id).await {
        Ok(Some(_)) => StatusCode::OK.into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn staging_allowed(shared: &Shared, headers: &HeaderMap) -> bool {
    let token = headers.get("x-shoal-blob-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    super::stage_token_opens(&shared.config.sealing_key, token)
}

/// `PUT`: the body becomes a blob, which must have the hash the path names.
pub async fn stage_put(State(shared): State<Arc<Shared>>, Path(sha): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let Some(id) = BlobId::parse(&sha) else { return error(StatusCode::NOT_FOUND, "not a blob name") };
    if !staging_allowed(&shared, &headers) {
        return error(StatusCode::FORBIDDEN, "this token does not allow staging");
    }
    let stream = body.into_data_stream().map(|p| p.map_err(std::io::Error::other));
    match shared.blobs.put(Box::pin(stream), super::MAX_FILE_BYTES).await {
        Ok(b) if b.id == id => StatusCode::CREATED.into_response(),
        Ok(b) => error(StatusCode::BAD_REQUEST, format!("the content's SHA-256 is {}, not {id}", b.id)),
        Err(BlobError::TooLarge(limit)) => error(StatusCode::PAYLOAD_TOO_LARGE, format!("files are limited to {limit} bytes")),
        Err(e) => error(StatusCode::INSUFFICIENT_STORAGE, format!("not stored: {e}")),
    }
}
