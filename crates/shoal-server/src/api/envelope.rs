//! The JOB v3 response envelope: HTTP 200 with `result=false` for business errors, 401 for
//! authentication failures, `message` in the caller's language, and `job_request_id`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use shoal_core::JobError;
use shoal_proto::code::Lang;
use shoal_proto::jobv3::Envelope;
use shoal_proto::ErrorCode;

pub type ApiResult = Result<Value, JobError>;

/// An answer's `data`: a JSON value, or JSON encoded before (kept by a cache, served as is
/// instead of being rebuilt and re-encoded for every caller).
pub enum Data {
    Json(Value),
    Encoded(Arc<RawValue>),
}

impl Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Json(v) => v.serialize(s),
            Data::Encoded(raw) => raw.serialize(s),
        }
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

pub fn render(out: Result<Data, JobError>, lang: Lang, request_id: &str) -> Response {
    let (status, env) = match out {
        Ok(data) => (
            StatusCode::OK,
            Envelope {
                result: true,
                code: 0,
                message: Some("success".into()),
                data: Some(data),
                job_request_id: Some(request_id.to_string()),
                permission: None,
            },
        ),
        Err(e) => (
            StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::OK),
            Envelope {
                result: false,
                code: e.code.0,
                message: Some(e.message(lang)),
                data: None,
                job_request_id: Some(request_id.to_string()),
                permission: super::authz::permission_object(&e),
            },
        ),
    };
    let mut resp = (status, Json(env)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-bk-job-request-id", v);
    }
    resp
}
