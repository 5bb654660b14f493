//! The error every layer rejects a request with: a JOB code and its message arguments.

use shoal_proto::code::{ErrorCode, Lang};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: ErrorCode,
    pub args: Vec<String>,
    /// Replaces the code's template (bean-validation failures carry the field message).
    pub detail: Option<String>,
    /// HTTP status: 200 for business errors as JOB does, 401 for authentication.
    pub http_status: u16,
}

impl JobError {
    pub fn new(code: ErrorCode) -> Self {
        JobError { code, args: vec![], detail: None, http_status: 200 }
    }

    pub fn with(code: ErrorCode, arg: impl Into<String>) -> Self {
        JobError { code, args: vec![arg.into()], detail: None, http_status: 200 }
    }

    pub fn args(code: ErrorCode, args: Vec<String>) -> Self {
        JobError { code, args, detail: None, http_status: 200 }
    }

    /// 1241004 Missing request parameter [name].
    pub fn missing(name: &str) -> Self {
        Self::with(ErrorCode::MISSING_PARAM_WITH_NAME, name)
    }

    /// 1241005 Invalid request parameter [name].
    pub fn illegal(name: &str) -> Self {
        Self::with(ErrorCode::ILLEGAL_PARAM_WITH_NAME, name)
    }

    /// 1241007 Missing or invalid request parameter [name].
    pub fn missing_or_illegal(name: &str) -> Self {
        Self::with(ErrorCode::MISSING_OR_ILLEGAL_PARAM_WITH_NAME, name)
    }

    /// 1240003 Bad Request, with the field's message as JOB's bean validation answers.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        JobError { code: ErrorCode::BAD_REQUEST, args: vec![], detail: Some(detail.into()), http_status: 200 }
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::INTERNAL_ERROR)
    }

    /// 1240001 with HTTP 503: a component the call needs (the store) cannot serve it now;
    /// `why` says what, for the operator.
    pub fn unavailable(why: impl Into<String>) -> Self {
        JobError {
            code: ErrorCode::SERVICE_UNAVAILABLE,
            args: vec![],
            detail: Some(format!("Service Unavailable: {}", why.into())),
            http_status: 503,
        }
    }

    pub fn unauthorized(code: ErrorCode) -> Self {
        JobError { code, args: vec![], detail: None, http_status: 401 }
    }

    pub fn message(&self, lang: Lang) -> String {
        match &self.detail {
            Some(d) => d.clone(),
            None => self.code.message(lang, &self.args),
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message(Lang::En))
    }
}

impl std::error::Error for JobError {}
