//! Typed client of the JOB v3 API, as served by Shoal (or by JOB itself): the JobHelper of
//! this world.
//!
//! # Layout
//! - [`Client`]: calls in the API-gateway path form (`/api/v3/<name>`, `X-Bkapi-Authorization`
//!   header) or the ESB form (`/api/c/compapi/v2/jobv3/<name>/`, credentials in the body).
//!   Transport failures are retried with exponential backoff and jitter ([`RetryPolicy`]);
//!   `result=false` never is. Every mutating call carries an `Idempotency-Key` kept across its
//!   retries, so a retried submit never starts a job twice.
//! - JobHelper operations: [`Client::adapt_hosts_target_server`], [`Client::execute_script`],
//!   [`Client::wait_job`], [`Client::host_logs`].
//! - File distribution ([`files`]): upload slots and the streamed upload, `fast_transfer_file`,
//!   `push_config_file`, file logs.
//! - [`ClientError`]: failures classified with the seed system's client codes
//!   ([`ClientError::code`], 500001–500006).
//! - [`check`]: the `shoal check` flow (built-in check script, result parsing, report).
#![forbid(unsafe_code)]

pub mod check;
pub mod files;
mod retry;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use shoal_proto::jobv3::{
    BatchIpLogDto, Envelope, FastExecuteScriptReq, IpDto, JobExecuteResp, JobInstanceStatus, ScriptHostLogDto, ServerDto,
};

pub use files::{FileLog, HostFileLogs, TransferMode, UploadSlot, UploadTransfer, UploadedFile};
pub use retry::RetryPolicy;

/// Path and credential style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathStyle {
    /// `/api/v3/<name>` + `X-Bkapi-Authorization` header.
    #[default]
    Gateway,
    /// `/api/c/compapi/v2/jobv3/<name>/` + credentials in the body, always POST.
    Esb,
}

#[derive(Clone)]
pub struct ClientConfig {
    pub url: String,
    pub app_code: String,
    pub app_secret: String,
    pub username: String,
    /// A Shoal user's bearer token (personal API token or login session): sent as
    /// `Authorization: Bearer …` instead of the app credentials.
    pub token: Option<String>,
    pub style: PathStyle,
    pub timeout: Duration,
    /// `Blueking-Language`: `zh-cn`/`zh` or `en` (other values are refused with 500005).
    pub language: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("app_code", &self.app_code)
            .field("app_secret", &"<redacted>")
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("style", &self.style)
            .finish()
    }
}

/// JOB's code for "business / business set does not exist".
const JOB_APP_NOT_EXIST: i32 = 1243049;
/// Shoal's answer when a check on the same key is already running.
const LOCK_NOT_ACQUIRED: i32 = 500006;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 500001: the request was refused before sending.
    #[error("invalid request: {0}")]
    Validation(String),
    /// 500002: the server answered `result=false`; JOB's code and message are kept.
    #[error("[{code}] {message}")]
    Api { code: i32, message: String, http_status: u16, request_id: Option<String> },
    /// 500003: transport failure, timeout or a non-JSON answer (after the retries).
    #[error("component call failed: {0}")]
    Transport(String),
    /// 500003: a job did not finish before the deadline.
    #[error("job {job_instance_id} did not finish within {waited:?}")]
    Deadline { job_instance_id: i64, waited: Duration },
    /// 500004: the business (scope) does not exist, or has no registered host.
    #[error("business {scope} does not exist: {message}")]
    BusinessNotFound { scope: String, job_code: Option<i32>, message: String },
    /// 500005: a language (`Blueking-Language` or script language) this client cannot use.
    #[error("language not supported: {0}")]
    LanguageNotSupported(String),
    /// 500006: a run on the same key is in progress; retry later.
    #[error("{message}")]
    Lock { message: String },
}

impl ClientError {
    /// The seed system's client-side code.
    pub fn code(&self) -> i32 {
        match self {
            ClientError::Validation(_) => 500001,
            ClientError::Api { .. } => 500002,
            ClientError::Transport(_) | ClientError::Deadline { .. } => 500003,
            ClientError::BusinessNotFound { .. } => 500004,
            ClientError::LanguageNotSupported(_) => 500005,
            ClientError::Lock { .. } => 500006,
        }
    }

    /// JOB's own code when the server answered.
    pub fn job_code(&self) -> Option<i32> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            ClientError::BusinessNotFound { job_code, .. } => *job_code,
            ClientError::Lock { .. } => Some(LOCK_NOT_ACQUIRED),
            _ => None,
        }
    }

    /// Whether trying the same call again may succeed (transport failures only).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Transport(_))
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub scope_type: String,
    pub scope_id: String,
}

impl Scope {
    pub fn biz(id: i64) -> Scope {
        Scope { scope_type: "biz".into(), scope_id: id.to_string() }
    }

    fn fields(&self) -> Value {
        json!({"bk_scope_type": self.scope_type, "bk_scope_id": self.scope_id})
    }

    /// The business id of a `biz` scope.
    pub fn biz_id(&self) -> Option<i64> {
        (self.scope_type == "biz").then(|| self.scope_id.parse().ok()).flatten()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scope_type, self.scope_id)
    }
}

/// How [`Client::adapt_hosts_target_server`] names hosts to the server (the original's
/// `ENABLE_DHCP` switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetMode {
    /// `host_id_list`: what IPv6 / DHCP fleets need.
    #[default]
    HostId,
    /// `ip_list` of `{bk_cloud_id, ip}`.
    Ip,
}

/// A host as a caller names it: by id, by cloud + IP, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_host_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bk_cloud_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl HostRef {
    pub fn id(id: i64) -> HostRef {
        HostRef { bk_host_id: Some(id), ..Default::default() }
    }

    pub fn ip(cloud: i64, ip: &str) -> HostRef {
        HostRef { bk_cloud_id: Some(cloud), ip: Some(ip.to_string()), bk_host_id: None }
    }
}

impl std::fmt::Display for HostRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.bk_host_id, &self.ip) {
            (Some(id), Some(ip)) => write!(f, "{}:{ip} (#{id})", self.bk_cloud_id.unwrap_or(0)),
            (Some(id), None) => write!(f, "#{id}"),
            (None, Some(ip)) => write!(f, "{}:{ip}", self.bk_cloud_id.unwrap_or(0)),
            (None, None) => write!(f, "(empty host)"),
        }
    }
}

/// A host with every field known, from the registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Host {
    pub bk_host_id: i64,
    pub bk_cloud_id: i64,
    pub ip: String,
}

impl Host {
    /// `cloud:ip:id`, the form check records are keyed by.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.bk_cloud_id, self.ip, self.bk_host_id)
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} (#{})", self.bk_cloud_id, self.ip, self.bk_host_id)
    }
}

/// How [`Client::wait_job`] follows a job.
#[derive(Debug, Clone)]
pub struct WaitPolicy {
    /// Give up after this long (the job keeps running on the server).
    pub deadline: Duration,
    /// First pause between two looks; doubled up to `max_interval`.
    pub first_interval: Duration,
    pub max_interval: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy { deadline: Duration::from_secs(3600), first_interval: Duration::from_millis(50), max_interval: Duration::from_secs(2) }
    }
}

impl WaitPolicy {
    pub fn within(deadline: Duration) -> WaitPolicy {
        WaitPolicy { deadline, ..WaitPolicy::default() }
    }
}

/// Logs of the hosts asked for; every one is either in `logs` or in `missing`. Iterating
/// yields the logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostLogs {
    pub logs: Vec<ScriptHostLogDto>,
    /// Host ids asked for that the server returned no log entry for.
    pub missing: Vec<i64>,
}

impl HostLogs {
    pub fn by_host(&self) -> BTreeMap<i64, &str> {
        self.logs.iter().map(|l| (l.bk_host_id, l.log_content.as_str())).collect()
    }
}

impl IntoIterator for HostLogs {
    type Item = ScriptHostLogDto;
    type IntoIter = std::vec::IntoIter<ScriptHostLogDto>;
    fn into_iter(self) -> Self::IntoIter {
        self.logs.into_iter()
    }
}

/// Hosts per `batch_get_job_instance_ip_log` call (JOB's limit).
pub const LOG_BATCH: usize = 500;

pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    retry: RetryPolicy,
    /// Certificates trusted besides the system's ([`Client::with_ca_pem`]), for every
    /// connection this client makes (uploads too).
    ca: Vec<reqwest::Certificate>,
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
    a
}

/// `zh`, `zh-cn`, `zh_CN`, `en`, `en-US`, … are what JOB understands.
fn language_ok(lang: &str) -> bool {
    let l = lang.trim().to_ascii_lowercase().replace('_', "-");
    l == "zh" || l == "en" || l.starts_with("zh-") || l.starts_with("en-")
}

/// One attempt's failure: whether to try again.
enum Attempt {
    Retry(ClientError),
    Fail(ClientError),
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        if let Some(lang) = cfg.language.as_deref().filter(|l| !language_ok(l)) {
            return Err(ClientError::LanguageNotSupported(format!("Blueking-Language {lang:?}: use zh-cn or en")));
        }
        match reqwest::Url::parse(&cfg.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(ClientError::Validation(format!("server URL {:?} must look like http://host:port or https://host", cfg.url))),
        }
        let http = reqwest::Client::builder().timeout(cfg.timeout).build().map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client { http, cfg, retry: RetryPolicy::default(), ca: vec![] })
    }

    /// A transport failure as a person can act on it: what could not be done, to which
    /// server, and the underlying cause (refused, unresolvable name, certificate, timeout).
    fn describe(&self, e: &reqwest::Error) -> String {
        let base = self.cfg.url.trim_end_matches('/');
        let mut cause = String::new();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        if e.is_timeout() {
            format!("no answer from {base} within {} s", self.cfg.timeout.as_secs())
        } else if e.is_connect() {
            format!("cannot connect to {base}: {}", if cause.is_empty() { e.to_string() } else { cause })
        } else if cause.is_empty() {
            format!("{base}: {e}")
        } else {
            format!("{base}: {cause}")
        }
    }

    /// Trust the PEM certificates in `pem` (a private CA's bundle) besides the usual roots.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Client> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::Validation(format!("CA bundle: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Validation("CA bundle: no PEM certificate in it".into()));
        }
        self.ca = certs;
        let b = self.trusting(reqwest::Client::builder().timeout(self.cfg.timeout));
        self.http = b.build().map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(self)
    }

    /// `b` trusting the certificates given to [`Client::with_ca_pem`].
    fn trusting(&self, mut b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for c in &self.ca {
            b = b.add_root_certificate(c.clone());
        }
        b
    }

    /// Replace the retry policy of transport failures.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn url(&self, name: &str) -> String {
        let base = self.cfg.url.trim_end_matches('/');
        match self.cfg.style {
            PathStyle::Gateway => format!("{base}/api/v3/{name}"),
            PathStyle::Esb => format!("{base}/api/c/compapi/v2/jobv3/{name}/"),
        }
    }

    /// Call any JOB v3 API; queries (`get_…`) use GET in gateway style. Anything else is a
    /// mutation and carries an `Idempotency-Key`.
    pub async fn call<T: DeserializeOwned>(&self, name: &str, params: Value) -> Result<T> {
        let url = self.url(name);
        let is_query = name.starts_with("get_");
        self.send(&url, is_query && self.cfg.style == PathStyle::Gateway, !is_query, params).await
    }

    /// Call a Shoal extension under `/api/shoal/v1/`; POSTs carry an `Idempotency-Key`.
    pub async fn shoal<T: DeserializeOwned>(&self, path: &str, get: bool, params: Value) -> Result<T> {
        let url = format!("{}/api/shoal/v1/{path}", self.cfg.url.trim_end_matches('/'));
        self.send(&url, get, !get, params).await
    }

    async fn send<T: DeserializeOwned>(&self, url: &str, get: bool, mutating: bool, params: Value) -> Result<T> {
        // One key for the call, kept across its retries: the server answers a retry of a
        // request it already handled with the first answer.
        let key = mutating.then(|| uuid::Uuid::new_v4().to_string());
        let mut attempt = 0u32;
        loop {
            match self.attempt(url, get, key.as_deref(), &params).await {
                Ok(v) => return serde_json::from_value(v).map_err(|e| ClientError::Transport(format!("unexpected answer: {e}"))),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    attempt += 1;
                    if attempt >= self.retry.attempts.max(1) {
                        return Err(e);
                    }
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
            }
        }
    }

    async fn attempt(&self, url: &str, get: bool, key: Option<&str>, params: &Value) -> std::result::Result<Value, Attempt> {
        let mut req = if get {
            let pairs: Vec<(String, String)> = params
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                match v {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.http.get(url).query(&pairs)
        } else {
            let body = match self.cfg.style {
                PathStyle::Esb if self.cfg.token.is_some() => params.clone(),
                PathStyle::Esb => merge(
                    params.clone(),
                    json!({"bk_app_code": self.cfg.app_code, "bk_app_secret": self.cfg.app_secret, "bk_username": self.cfg.username}),
                ),
                PathStyle::Gateway => params.clone(),
            };
            self.http.post(url).json(&body)
        };
        if let Some(token) = &self.cfg.token {
            req = req.bearer_auth(token);
        } else if self.cfg.style == PathStyle::Gateway {
            let auth = json!({"bk_app_code": self.cfg.app_code, "bk_app_secret": self.cfg.app_secret, "bk_username": self.cfg.username});
            req = req.header("X-Bkapi-Authorization", auth.to_string());
        }
        if let Some(lang) = &self.cfg.language {
            req = req.header("Blueking-Language", lang);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await.map_err(|e| Attempt::Retry(ClientError::Transport(self.describe(&e))))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| Attempt::Retry(ClientError::Transport(self.describe(&e))))?;
        let env: Envelope<Value> = serde_json::from_str(&text).map_err(|_| {
            let head: String = text.chars().take(200).collect();
            let e = ClientError::Transport(format!("HTTP {status}, not a JOB answer: {head}"));
            // Gateways in between answer 5xx / 429 pages when the server is away.
            if status >= 500 || status == 429 {
                Attempt::Retry(e)
            } else {
                Attempt::Fail(e)
            }
        })?;
        if !env.result {
            let message = env.message.unwrap_or_default();
            return Err(Attempt::Fail(match env.code {
                JOB_APP_NOT_EXIST => ClientError::BusinessNotFound { scope: String::new(), job_code: Some(env.code), message },
                LOCK_NOT_ACQUIRED => ClientError::Lock { message },
                code => ClientError::Api { code, message, http_status: status, request_id: env.job_request_id },
            }));
        }
        Ok(env.data.unwrap_or(Value::Null))
    }

    pub async fn fast_execute_script(&self, req: &FastExecuteScriptReq) -> Result<JobExecuteResp> {
        let params = serde_json::to_value(req).map_err(|e| ClientError::Validation(e.to_string()))?;
        let scope = format!("{}:{}", req.scope.bk_scope_type.as_deref().unwrap_or(""), req.scope.bk_scope_id.as_deref().unwrap_or(""));
        self.call("fast_execute_script", params).await.map_err(|e| match e {
            ClientError::BusinessNotFound { job_code, message, .. } => ClientError::BusinessNotFound { scope, job_code, message },
            other => other,
        })
    }

    /// Run a script given as plain text; the client does the base64.
    pub async fn run_script(
        &self,
        scope: &Scope,
        language: i32,
        script: &[u8],
        param: Option<&str>,
        account_alias: &str,
        target: ServerDto,
        timeout_secs: Option<i64>,
        task_name: Option<String>,
    ) -> Result<JobExecuteResp> {
        if target.is_empty() {
            return Err(ClientError::Validation("no target hosts".into()));
        }
        if shoal_proto::status::ScriptLanguage::from_i32(language).is_none() {
            return Err(ClientError::LanguageNotSupported(format!(
                "script language {language}: use 1 shell, 2 bat, 3 perl, 4 python, 5 powershell, 6 sql"
            )));
        }
        let req = FastExecuteScriptReq {
            scope: shoal_proto::jobv3::ScopeReq {
                bk_scope_type: Some(scope.scope_type.clone()),
                bk_scope_id: Some(scope.scope_id.clone()),
                bk_biz_id: None,
            },
            script_content: Some(b64(script)),
            script_language: Some(language),
            script_param: param.filter(|p| !p.is_empty()).map(b64),
            account_alias: Some(account_alias.to_string()),
            target_server: Some(target),
            timeout: timeout_secs,
            task_name,
            ..Default::default()
        };
        self.fast_execute_script(&req).await
    }

    /// JobHelper's `execute_script`: the original's parameters, with the scope in place of
    /// `bk_biz_id` and the configured user as `bk_username`; the script and its parameter
    /// string are given as text and base64-encoded here.
    pub async fn execute_script(
        &self,
        script_content: &str,
        target_server: ServerDto,
        scope: &Scope,
        account: &str,
        task_name: &str,
        script_param: Option<&str>,
        script_language: i32,
        timeout: i64,
    ) -> Result<JobExecuteResp> {
        if script_content.trim().is_empty() {
            return Err(ClientError::Validation("script_content is empty".into()));
        }
        if account.trim().is_empty() {
            return Err(ClientError::Validation("account is empty".into()));
        }
        if !(1..=86400).contains(&timeout) {
            return Err(ClientError::Validation(format!("timeout {timeout} is outside 1..=86400 seconds")));
        }
        let name = Some(task_name.to_string()).filter(|n| !n.trim().is_empty());
        self.run_script(scope, script_language, script_content.as_bytes(), script_param, account, target_server, Some(timeout), name).await
    }

    pub async fn job_status(&self, scope: &Scope, job_instance_id: i64, with_hosts: bool) -> Result<JobInstanceStatus> {
        if job_instance_id <= 0 {
            return Err(ClientError::Validation(format!("job_instance_id {job_instance_id}: no job was created")));
        }
        let p = merge(scope.fields(), json!({"job_instance_id": job_instance_id, "return_ip_result": with_hosts}));
        self.call("get_job_instance_status", p).await
    }

    /// Logs of many hosts, asked [`LOG_BATCH`] at a time. Every host asked for is accounted
    /// for: in `logs`, or in `missing` when the server returned nothing for it.
    pub async fn host_logs(&self, scope: &Scope, job_instance_id: i64, step_instance_id: i64, host_ids: &[i64]) -> Result<HostLogs> {
        if job_instance_id <= 0 || step_instance_id <= 0 {
            return Err(ClientError::Validation(format!("job {job_instance_id} step {step_instance_id}: no job was created")));
        }
        let mut wanted: Vec<i64> = host_ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut logs = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(LOG_BATCH) {
            let p = merge(
                scope.fields(),
                json!({"job_instance_id": job_instance_id, "step_instance_id": step_instance_id, "host_id_list": chunk}),
            );
            let page: BatchIpLogDto = self.call("batch_get_job_instance_ip_log", p).await?;
            logs.extend(page.script_task_logs.unwrap_or_default());
        }
        let got: BTreeSet<i64> = logs.iter().map(|l| l.bk_host_id).collect();
        let asked: BTreeSet<i64> = wanted.iter().copied().collect();
        logs.retain(|l| asked.contains(&l.bk_host_id));
        let missing = wanted.into_iter().filter(|h| !got.contains(h)).collect();
        Ok(HostLogs { logs, missing })
    }

    pub async fn operate_job(&self, scope: &Scope, job_instance_id: i64, operation_code: i32) -> Result<Value> {
        let p = merge(scope.fields(), json!({"job_instance_id": job_instance_id, "operation_code": operation_code}));
        self.call("operate_job_instance", p).await
    }

    /// Jobs created in the last 30 days (the longest range JOB answers), newest first.
    pub async fn job_list(&self, scope: &Scope, start: i64, length: i64) -> Result<Value> {
        const DAYS_30_MS: i64 = 30 * 24 * 3600 * 1000;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let p = merge(
            scope.fields(),
            json!({"start": start, "length": length, "create_time_start": now + 1 - DAYS_30_MS, "create_time_end": now + 1}),
        );
        self.call("get_job_instance_list", p).await
    }

    pub async fn hosts(&self, bk_biz_id: Option<i64>, selector: Option<&str>) -> Result<Value> {
        self.shoal("hosts", true, json!({"bk_biz_id": bk_biz_id, "selector": selector})).await
    }

    /// Hosts of a business from Shoal's registry.
    pub async fn registry(&self, scope: &Scope) -> Result<Vec<Host>> {
        let Some(biz) = scope.biz_id() else {
            return Err(ClientError::Validation(format!("scope {scope}: hosts can only be looked up in a biz scope")));
        };
        let v: Value = self.hosts(Some(biz), None).await?;
        let hosts: Vec<Host> = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| {
                Some(Host {
                    bk_host_id: h["bk_host_id"].as_i64()?,
                    bk_cloud_id: h["bk_cloud_id"].as_i64()?,
                    ip: h["ip"].as_str()?.to_string(),
                })
            })
            .collect();
        Ok(hosts)
    }

    /// Fill each host's missing fields from the registry. A host the registry does not know,
    /// or whose id and IP disagree, is an error naming it; a business with no host at all is
    /// 500004.
    pub async fn resolve_hosts(&self, scope: &Scope, hosts: &[HostRef]) -> Result<Vec<Host>> {
        if hosts.is_empty() {
            return Err(ClientError::Validation("no hosts given".into()));
        }
        for h in hosts {
            if h.bk_host_id.is_none() && (h.ip.is_none() || h.bk_cloud_id.is_none()) {
                return Err(ClientError::Validation(format!(
                    "host {h}: give bk_host_id or both ip and bk_cloud_id, e.g. {{\"bk_host_id\": 1}} or {{\"ip\": \"10.0.0.1\", \"bk_cloud_id\": 0}}"
                )));
            }
        }
        let registry = self.registry(scope).await?;
        if registry.is_empty() {
            return Err(ClientError::BusinessNotFound {
                scope: scope.to_string(),
                job_code: None,
                message: "no host is registered in it".into(),
            });
        }
        let by_id: BTreeMap<i64, &Host> = registry.iter().map(|h| (h.bk_host_id, h)).collect();
        let by_ip: BTreeMap<(i64, &str), &Host> = registry.iter().map(|h| ((h.bk_cloud_id, h.ip.as_str()), h)).collect();
        let mut out = Vec::with_capacity(hosts.len());
        let mut unknown = vec![];
        for h in hosts {
            let found = match (h.bk_host_id, h.ip.as_deref()) {
                (Some(id), ip) => by_id.get(&id).copied().filter(|r| match ip {
                    // Both given: they must name the same host.
                    Some(ip) => r.ip == ip && h.bk_cloud_id.unwrap_or(r.bk_cloud_id) == r.bk_cloud_id,
                    None => true,
                }),
                (None, Some(ip)) => by_ip.get(&(h.bk_cloud_id.unwrap_or(0), ip)).copied(),
                (None, None) => None,
            };
            match found {
                Some(r) => out.push(r.clone()),
                None => unknown.push(h.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(ClientError::Validation(format!("unknown hosts in {scope}: {}", unknown.join(", "))));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// JobHelper's `adapt_hosts_target_server`: hosts named by id and/or cloud + IP become a
    /// `target_server` in `mode`, missing fields filled from the registry.
    pub async fn adapt_hosts_target_server(&self, scope: &Scope, hosts: &[HostRef], mode: TargetMode) -> Result<ServerDto> {
        let hosts = self.resolve_hosts(scope, hosts).await?;
        Ok(target_of(&hosts, mode))
    }

    /// Follow a job until it is finished, calling `progress` after every look.
    pub async fn wait(
        &self,
        scope: &Scope,
        job_instance_id: i64,
        deadline: Option<Duration>,
        progress: impl FnMut(&JobInstanceStatus),
    ) -> Result<JobInstanceStatus> {
        // Interactive callers (progress bars) want a look at least every half second.
        let policy =
            WaitPolicy { deadline: deadline.unwrap_or(Duration::MAX), max_interval: Duration::from_millis(500), ..WaitPolicy::default() };
        self.wait_job(scope, job_instance_id, &policy, progress).await
    }

    /// Follow a job until it is finished, polling with backoff under `policy.deadline`. A job
    /// id of 0 (a submit that failed) is refused, never polled.
    pub async fn wait_job(
        &self,
        scope: &Scope,
        job_instance_id: i64,
        policy: &WaitPolicy,
        mut progress: impl FnMut(&JobInstanceStatus),
    ) -> Result<JobInstanceStatus> {
        if job_instance_id <= 0 {
            return Err(ClientError::Validation(format!("job_instance_id {job_instance_id}: no job was created, nothing to wait for")));
        }
        let started = tokio::time::Instant::now();
        let mut delay = policy.first_interval;
        loop {
            let st = self.job_status(scope, job_instance_id, true).await?;
            progress(&st);
            if st.finished {
                return Ok(st);
            }
            let waited = started.elapsed();
            if waited >= policy.deadline {
                return Err(ClientError::Deadline { job_instance_id, waited });
            }
            tokio::time::sleep(delay.min(policy.deadline - waited)).await;
            delay = (delay * 2).min(policy.max_interval);
        }
    }
}

/// A `target_server` naming `hosts` in `mode`.
pub fn target_of(hosts: &[Host], mode: TargetMode) -> ServerDto {
    match mode {
        TargetMode::HostId => ServerDto { host_id_list: Some(hosts.iter().map(|h| h.bk_host_id).collect()), ..Default::default() },
        TargetMode::Ip => ServerDto {
            ip_list: Some(
                hosts.iter().map(|h| IpDto { bk_cloud_id: Some(h.bk_cloud_id), ip: Some(h.ip.clone()), bk_host_id: None }).collect(),
            ),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages() {
        for ok in ["zh", "zh-cn", "zh_CN", "en", "en-US", "EN"] {
            assert!(language_ok(ok), "{ok}");
        }
        for bad in ["fr", "", "english", "z"] {
            assert!(!language_ok(bad), "{bad}");
        }
        let cfg = ClientConfig {
            url: "http://127.0.0.1:1".into(),
            app_code: "a".into(),
            app_secret: "s".into(),
            username: "u".into(),
            token: None,
            style: PathStyle::Gateway,
            timeout: Duration::from_secs(1),
            language: Some("fr".into()),
        };
        assert_eq!(Client::new(cfg).err().map(|e| e.code()), Some(500005));
    }

    #[test]
    fn targets_in_both_modes() {
        let hosts = [Host { bk_host_id: 3, bk_cloud_id: 0, ip: "10.0.0.3".into() }];
        assert_eq!(target_of(&hosts, TargetMode::HostId).host_id_list, Some(vec![3]));
        let t = target_of(&hosts, TargetMode::Ip);
        assert_eq!(t.ip_list.unwrap()[0].ip.as_deref(), Some("10.0.0.3"));
    }
}
