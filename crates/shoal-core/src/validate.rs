//! Request validation in the order JOB runs it (`checkFastExecuteScriptRequest`): field
//! constraints first (1240003), then script source → version id → language → target →
//! account. Base64 is decoded here, at the boundary, and the parameter string is split into
//! arguments the way a shell would.

use base64::Engine;
use shoal_proto::code::ErrorCode;
use shoal_proto::jobv3::{FastExecuteScriptReq, ServerDto};
use shoal_proto::status::ScriptLanguage;

use crate::limits::*;
use crate::{JobError, Scope};

/// Which account the job runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRef {
    Id(i64),
    Alias(String),
}

/// Where the script comes from. Library scripts are resolved by the caller.
#[derive(Clone, PartialEq, Eq)]
pub enum ScriptSource {
    Inline { language: ScriptLanguage, content: Vec<u8> },
    Version(i64),
    Script(String),
}

impl std::fmt::Debug for ScriptSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptSource::Inline { language, content } => {
                write!(f, "Inline({}, {} bytes)", language.name(), content.len())
            }
            ScriptSource::Version(v) => write!(f, "Version({v})"),
            ScriptSource::Script(s) => write!(f, "Script({s})"),
        }
    }
}

/// A `fast_execute_script` request that passed validation.
#[derive(Clone)]
pub struct FastExecute {
    pub scope: Scope,
    pub source: ScriptSource,
    /// The raw parameter string after decoding (newlines replaced by spaces).
    pub param: String,
    pub args: Vec<String>,
    pub sensitive: bool,
    pub timeout_secs: i64,
    pub account: AccountRef,
    pub target: ServerDto,
    pub task_name: Option<String>,
    pub callback_url: Option<String>,
    pub start_task: bool,
}

impl std::fmt::Debug for FastExecute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastExecute")
            .field("scope", &self.scope)
            .field("source", &self.source)
            .field("args", if self.sensitive { &"<sensitive>" as &dyn std::fmt::Debug } else { &self.args })
            .field("timeout_secs", &self.timeout_secs)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Decode standard base64, tolerating surrounding whitespace and line breaks (Python's
/// `base64.encodebytes` inserts them).
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let cleaned: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.as_bytes()).ok())
}

/// Split a parameter string as a POSIX shell would (quotes, escapes); newlines count as spaces.
pub fn split_params(param: &str) -> Result<Vec<String>, JobError> {
    let flat = param.replace(['\r', '\n'], " ");
    shell_words::split(&flat)
        .map_err(|_| JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec!["script_param".into(), "unbalanced quotes".into()]))
}

/// Validate a `callback_url`: http/https with a host and no user info.
pub fn check_callback_url(u: &str) -> Result<(), JobError> {
    let bad = || JobError::bad_request(format!("callback_url is invalid: {u}"));
    let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")).ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok(())
}

pub fn fast_execute(req: &FastExecuteScriptReq) -> Result<FastExecute, JobError> {
    let scope = Scope::resolve(&req.scope)?;

    // Field constraints (bean validation in JOB) come first.
    let timeout_secs = req.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(1..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
        return Err(JobError::bad_request(format!("timeout must be between 1 and {MAX_TIMEOUT_SECS}")));
    }
    let task_name = req.task_name.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(n) = &task_name {
        if n.chars().count() > MAX_TASK_NAME_CHARS {
            return Err(JobError::bad_request(format!("task_name must be at most {MAX_TASK_NAME_CHARS} characters")));
        }
    }
    // An empty callback URL is ignored, as JOB does since issue #1726.
    let callback_url = req.callback_url.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(u) = &callback_url {
        check_callback_url(u)?;
    }
    let sensitive = req.is_param_sensitive.unwrap_or(0) == 1;
    let param = match req.script_param.as_deref().filter(|s| !s.trim().is_empty()) {
        None => String::new(),
        Some(p) => {
            let bytes = decode_base64(p).ok_or_else(|| JobError::illegal("script_param"))?;
            let limit = if sensitive { MAX_SENSITIVE_PARAM_BYTES } else { MAX_PARAM_BYTES };
            if bytes.len() > limit {
                return Err(JobError::bad_request(format!("script_param must be at most {limit} bytes")));
            }
            String::from_utf8(bytes).map_err(|_| JobError::illegal("script_param"))?
        }
    };

    // Script source: version id, then script id, then inline content.
    let source = if let Some(v) = req.script_version_id {
        if v < 1 {
            return Err(JobError::illegal("script_version_id"));
        }
        ScriptSource::Version(v)
    } else if let Some(id) = req.script_id.as_ref().filter(|s| !s.trim().is_empty()) {
        ScriptSource::Script(id.trim().to_string())
    } else if let Some(content) = req.script_content.as_ref().filter(|s| !s.is_empty()) {
        let language = req.script_language.and_then(ScriptLanguage::from_i32).ok_or_else(|| JobError::illegal("script_language"))?;
        let content = decode_base64(content).ok_or_else(|| JobError::illegal("script_content"))?;
        if content.len() > MAX_SCRIPT_BYTES {
            return Err(JobError::bad_request(format!("script_content must be at most {MAX_SCRIPT_BYTES} bytes")));
        }
        ScriptSource::Inline { language, content }
    } else {
        return Err(JobError::missing("script_version_id|script_id|script_content"));
    };

    let target = match &req.target_server {
        None => return Err(JobError::missing("target_server")),
        Some(t) if t.is_empty() => return Err(JobError::new(ErrorCode::SERVER_EMPTY)),
        Some(t) => t.clone(),
    };
    check_server(&target)?;

    let account = if let Some(id) = req.account_id {
        AccountRef::Id(id)
    } else if let Some(a) = req.account_alias.as_ref().filter(|s| !s.trim().is_empty()) {
        AccountRef::Alias(a.trim().to_string())
    } else {
        return Err(JobError::missing("account_id|account_alias"));
    };

    let args = split_params(&param)?;
    Ok(FastExecute {
        scope,
        source,
        param: param.replace(['\r', '\n'], " "),
        args,
        sensitive,
        timeout_secs,
        account,
        target,
        task_name,
        callback_url,
        start_task: req.start_task.unwrap_or(true),
    })
}

/// Element checks of a target server object.
pub fn check_server(s: &ServerDto) -> Result<(), JobError> {
    for ip in s.ip_list.iter().flatten() {
        match (&ip.bk_cloud_id, &ip.ip) {
            (Some(c), Some(addr)) if *c >= 0 && addr.trim().parse::<std::net::Ipv4Addr>().is_ok() => {}
            _ => return Err(JobError::illegal("target_server.ip_list")),
        }
    }
    for n in s.topo_node_list.iter().flatten() {
        match (&n.id, &n.node_type) {
            (Some(_), Some(t)) if !t.trim().is_empty() => {}
            _ => return Err(JobError::illegal("target_server.topo_node_list")),
        }
    }
    for g in s.dynamic_group_list.iter().flatten() {
        if g.id.as_deref().is_none_or(|id| id.trim().is_empty()) {
            return Err(JobError::illegal("target_server.dynamic_group_list"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn base() -> FastExecuteScriptReq {
        serde_json::from_value(serde_json::json!({
            "bk_scope_type": "biz", "bk_scope_id": "1",
            "script_content": b64("echo hi"), "script_language": 1,
            "account_alias": "root",
            "target_server": {"host_id_list": [1]}
        }))
        .unwrap()
    }

    #[test]
    fn happy_path_decodes_and_splits() {
        let mut r = base();
        r.script_param = Some(b64("a 'b c'\nd"));
        let v = fast_execute(&r).unwrap();
        assert_eq!(v.args, vec!["a", "b c", "d"]);
        assert_eq!(v.timeout_secs, 7200);
        assert!(v.start_task);
        match v.source {
            ScriptSource::Inline { content, .. } => assert_eq!(content, b"echo hi"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn codes_in_job_order() {
        let mut r = base();
        r.script_content = None;
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1241004);

        let mut r = base();
        r.script_content = Some("%%%not base64".into());
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1241005);

        let mut r = base();
        r.script_language = Some(9);
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1241005);

        let mut r = base();
        r.target_server = None;
        let e = fast_execute(&r).unwrap_err();
        assert_eq!((e.code.0, e.args.clone()), (1241004, vec!["target_server".to_string()]));

        let mut r = base();
        r.target_server = Some(ServerDto::default());
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1244001);

        let mut r = base();
        r.account_alias = None;
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1241004);

        let mut r = base();
        r.timeout = Some(259_201);
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1240003);

        let mut r = base();
        r.script_version_id = Some(0);
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1241005);
    }

    #[test]
    fn callback_urls() {
        assert!(check_callback_url("http://127.0.0.1:9/cb").is_ok());
        assert!(check_callback_url("ftp://x/").is_err());
        assert!(check_callback_url("http://u:p@host/").is_err());
        assert!(check_callback_url("http:///x").is_err());
    }

    #[test]
    fn sensitive_param_limit_is_smaller() {
        let mut r = base();
        r.is_param_sensitive = Some(1);
        r.script_param = Some(b64(&"x".repeat(MAX_SENSITIVE_PARAM_BYTES + 1)));
        assert_eq!(fast_execute(&r).unwrap_err().code.0, 1240003);
        r.is_param_sensitive = Some(0);
        assert!(fast_execute(&r).is_ok());
    }
}
