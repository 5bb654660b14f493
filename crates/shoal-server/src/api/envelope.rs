//! The JOB v3 response envelope: HTTP 200 with `result=false` for business errors, 401 for
//! authentication failures, `message` in the caller's language, and `job_request_id`.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::value::RawValue;
use serde_json::Value;
use shoal_core::JobError;
use shoal_proto::code::Lang;
use shoal_proto::jobv3::Envelope;
use shoal_proto::ErrorCode;
use std::sync::Arc;

pub type ApiResult = Result<Value, JobError>;

/// What the dispatcher answers: a value; JSON encoded before (kept by a cache, served as is
/// instead of being rebuilt and re-encoded for every caller); or an answer whose largest list
/// is written piece by piece.
pub enum Reply {
    Value(Value),
    Encoded(Arc<RawValue>),
    Streamed(Streamed),
}

/// An answer too large to hold in memory at once: `data` is `skeleton`, except that the list
/// under the key `list` (empty in the skeleton) is written element by element as `elements`
/// yields them, each already encoded as JSON. The bytes are those of the same answer built
/// whole. An error part-way aborts the body (the caller sees a broken answer, never a
/// truncated one that parses).
pub struct Streamed {
    pub skeleton: Value,
    pub list: &'static str,
    pub elements: BoxStream<'static, Result<Vec<u8>, JobError>>,
}

impl From<Value> for Reply {
    fn from(v: Value) -> Reply {
        Reply::Value(v)
    }
}

pub fn not_found(path: &str) -> JobError {
    let mut e = JobError::new(ErrorCode::UNSUPPORTED_OPERATION);
    e.detail = Some(format!("no such API: {path}"));
    e.http_status = 404;
    e
}

pub fn method_not_allowed() -> JobError {
    let mut e = JobError::new(ErrorCode::UNSUPPORTED_OPERATION);
    e.detail = Some("method not allowed".into());
    e.http_status = 405;
    e
}

fn success<T>(data: T, request_id: &str) -> Envelope<T> {
    Envelope {
        result: true,
        code: 0,
        message: Some("success".into()),
        data: Some(data),
        job_request_id: Some(request_id.to_string()),
        permission: None,
    }
}

pub fn render(out: Result<Reply, JobError>, lang: Lang, request_id: &str) -> Response {
    let mut resp = match out {
        Ok(Reply::Value(data)) => (StatusCode::OK, Json(success(data, request_id))).into_response(),
        Ok(Reply::Encoded(data)) => (StatusCode::OK, Json(success(data, request_id))).into_response(),
        Ok(Reply::Streamed(s)) => streamed(s, request_id),
        Err(e) => {
            let env: Envelope = Envelope {
                result: false,
                code: e.code.0,
                message: Some(e.message(lang)),
                data: None,
                job_request_id: Some(request_id.to_string()),
                permission: super::authz::permission_object(&e),
            };
            (StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::OK), Json(env)).into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-bk-job-request-id", v);
    }
    resp
}

/// The envelope around a [`Streamed`] answer, rendered with its list empty and split there;
/// the elements go between the halves as they come.
fn streamed(s: Streamed, request_id: &str) -> Response {
    let whole = match serde_json::to_vec(&success(s.skeleton, request_id)) {
        Ok(w) => w,
        Err(e) => return render(Err(super::internal("encode answer")(e)), Lang::default(), request_id),
    };
    let empty = format!("\"{}\":[]", s.list);
    // The first occurrence is the key itself: a JSON string cannot hold an unescaped quote.
    let Some(at) = whole.windows(empty.len()).position(|w| w == empty.as_bytes()) else {
        tracing::error!(list = s.list, "streamed answer without its list");
        return render(Err(JobError::internal()), Lang::default(), request_id);
    };
    let mut head = whole;
    let tail = head.split_off(at + empty.len() - 1);
    let elements = s.elements.enumerate().map(|(i, e)| {
        let mut e = e.map_err(|e| std::io::Error::other(format!("answer aborted: error {}", e.code.0)))?;
        if i > 0 {
            e.insert(0, b',');
        }
        Ok::<_, std::io::Error>(Bytes::from(e))
    });
    let body = stream::once(async { Ok(Bytes::from(head)) }).chain(elements).chain(stream::once(async { Ok(Bytes::from(tail)) }));
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
