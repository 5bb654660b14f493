//! Server settings. The binary layers defaults, a TOML file, `SHOAL_*` env and flags into
//! this one struct; it is validated once at start.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// Directory for the embedded SQLite store and generated credentials.
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` (or `sqlite://…`); default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Agent enrolment token; generated into `data_dir/agent-token` when absent.
    pub agent_token: Option<String>,
    /// `code:secret` of an app created with full rights at start.
    pub bootstrap_app: Option<String>,
    /// Output kept per host task, in bytes (head and tail beyond it).
    pub output_cap_bytes: u64,
    /// How long a disconnected agent may take to come back before its running tasks are
    /// marked agent-lost (310).
    pub agent_lost_grace_secs: u64,
    /// Heartbeat interval agents are told to use.
    pub heartbeat_secs: u64,
    /// Maximum targets in one script step (JOB: 50,000).
    pub max_targets_per_step: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// PEM certificate chain for TLS on the listener (with `tls_key`); plain HTTP without.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Jobs running at once, in total (1244034); 0 = no limit.
    pub max_running_jobs: u64,
    /// Jobs running at once per scope (1244032); 0 = no limit.
    pub max_running_jobs_per_scope: u64,
    /// Jobs running at once per app (1244033); 0 = no limit.
    pub max_running_jobs_per_app: u64,
    /// Overload: while the oldest host result waiting to be committed has waited longer than
    /// this (ms), new jobs are refused with 1244034 instead of letting that wait grow; 0 =
    /// never refuse.
    pub max_ingest_lag_ms: u64,
    /// Key for sensitive values at rest (64 hex digits); default `data_dir/secret-key`,
    /// generated at first start. Replicas on one PostgreSQL share it.
    pub secret_key_file: Option<PathBuf>,
    /// Key of the audit chain's MACs (64 hex digits), kept outside the database; default
    /// `data_dir/audit-key`, generated at first start. Replicas on one PostgreSQL share it.
    pub audit_key_file: Option<PathBuf>,
    /// Base URLs callbacks may go to (like JOB's `allowedBaseUrls`); empty = any public
    /// address. Loopback, link-local and private addresses are refused unless a base URL
    /// here names that host.
    pub callback_allowed_base_urls: Vec<String>,
    /// Longest wait for a request's headers, and for the next request on an idle
    /// keep-alive connection (seconds).
    pub header_read_timeout_secs: u64,
    /// Longest time an API request may take before it is answered with a timeout (seconds).
    pub request_timeout_secs: u64,
    /// Connections open at once from one source address (0 = no limit). Agents behind
    /// one NAT address count together: raise it for large NATed fleets.
    pub max_connections_per_source: usize,
    /// Connections open at once in total (0 = no limit).
    pub max_connections: usize,
    /// Agent WebSocket sessions that have not said hello yet, at once.
    pub max_pending_agent_sessions: usize,
    /// Most log bytes one `batch_get_job_instance_ip_log` answer carries; further hosts'
    /// logs are marked omitted (ask for fewer hosts at a time).
    pub log_read_budget_bytes: usize,
    /// After a shutdown signal, requests still in flight get this long; then the server
    /// stops anyway (agents resend whatever was not acknowledged).
    pub shutdown_grace_secs: u64,
    /// Replicas on a shared store: how often each looks for dead replicas (silent for
    /// longer than a replica's expiry) and removes them with their leftovers (seconds).
    pub replica_sweep_secs: u64,
    /// How often the cron scheduler looks for due crons (milliseconds).
    pub cron_poll_ms: u64,
    /// A cron fire found this late (seconds after its due time) was missed while no server
    /// ran: it follows its cron's missed-fire policy (run once, or skip) instead of running.
    pub cron_misfire_secs: u64,
    /// A fire claimed this long ago (seconds) with no job and no failure recorded was left by
    /// a server that stopped between claiming it and creating its job: another takes the
    /// claim over and runs it (the job is created under one claim only, so a claimer that
    /// was merely slow creates none).
    pub cron_reclaim_secs: u64,
    /// IANA time zone of crons saved without one; default: this machine's zone.
    pub cron_time_zone: Option<String>,
    /// Base URLs file sources may read from although their host is one of this server's own
    /// addresses (loopback, the listen address) or link-local (cloud metadata); such
    /// addresses are refused otherwise. An admin setting.
    pub file_source_allowed_base_urls: Vec<String>,
    /// Where blobs are kept: `local` (`<data_dir>/blobs`, the default) or `s3` (an
    /// S3-compatible bucket shared by replicas; the `s3_*` settings).
    pub blob_store: String,
    /// S3-compatible endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://minio:9000`; requests are path-style (`<endpoint>/<bucket>/<key>`).
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_bucket: Option<String>,
    /// Key prefix of blobs in the bucket (default `blobs/`).
    pub s3_prefix: String,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    /// Peer-to-peer file fan-out: targets of one blob that fetch it from the server at once;
    /// the others fetch it, verified chunk by chunk, from targets that already hold it.
    /// 0 turns peer-to-peer off (every target fetches from the server).
    pub p2p_direct: usize,
    /// Files smaller than this (bytes) always come from the server.
    pub p2p_min_bytes: u64,
    /// Seconds between garbage collections of the blob store; 0 turns collection off.
    pub blob_gc_interval_secs: u64,
    /// A blob named by a job that ended less than this many days ago is kept (so the job can
    /// be retried); blobs of templates, plans and live uploads are always kept.
    pub blob_keep_days: u64,
    /// The loaded key (filled at start from `secret_key_file`; never serialised).
    #[serde(skip)]
    pub sealing_key: crate::secrets::Key,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: None,
            database_url: None,
            agent_token: None,
            bootstrap_app: None,
            output_cap_bytes: shoal_core::limits::DEFAULT_OUTPUT_CAP,
            agent_lost_grace_secs: 30,
            heartbeat_secs: 10,
            max_targets_per_step: shoal_core::limits::MAX_TARGETS_PER_STEP,
            max_body_bytes: 32 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            max_running_jobs: 0,
            max_running_jobs_per_scope: 0,
            max_running_jobs_per_app: 0,
            max_ingest_lag_ms: 2000,
            secret_key_file: None,
            audit_key_file: None,
            callback_allowed_base_urls: Vec::new(),
            header_read_timeout_secs: 10,
            request_timeout_secs: 120,
            max_connections_per_source: 2048,
            max_connections: 60_000,
            max_pending_agent_sessions: 1024,
            log_read_budget_bytes: 64 * 1024 * 1024,
            shutdown_grace_secs: 10,
            replica_sweep_secs: 30,
            cron_poll_ms: 1000,
            cron_misfire_secs: 60,
            cron_reclaim_secs: 60,
            cron_time_zone: None,
            file_source_allowed_base_urls: Vec::new(),
            blob_store: "local".into(),
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_bucket: None,
            s3_prefix: "blobs/".into(),
            s3_access_key: None,
            s3_secret_key: None,
            p2p_direct: 4,
            p2p_min_bytes: 4 * 1024 * 1024,
            blob_gc_interval_secs: 3600,
            blob_keep_days: 7,
            sealing_key: crate::secrets::Key::default(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| self.redacted_store_url()))
            .field("agent_token", &self.agent_token.as_ref().map(|_| "<redacted>"))
            .field("bootstrap_app", &self.bootstrap_app.as_ref().map(|_| "<redacted>"))
            .field("output_cap_bytes", &self.output_cap_bytes)
            .field("agent_lost_grace_secs", &self.agent_lost_grace_secs)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Files of at least this size may come from peers; `None` when peer-to-peer is off.
    pub fn swarm_min(&self) -> Option<u64> {
        (self.p2p_direct > 0).then_some(self.p2p_min_bytes)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.output_cap_bytes >= 1024, "output_cap_bytes must be at least 1024");
        anyhow::ensure!(self.heartbeat_secs >= 1, "heartbeat_secs must be at least 1");
        anyhow::ensure!(
            (1..=shoal_core::limits::MAX_TARGETS_PER_STEP).contains(&self.max_targets_per_step),
            "max_targets_per_step must be between 1 and 50000"
        );
        anyhow::ensure!(self.data_dir.is_some() || self.database_url.is_some(), "set data_dir (embedded SQLite) or database_url");
        anyhow::ensure!(self.tls_cert.is_some() == self.tls_key.is_some(), "set both tls_cert and tls_key, or neither");
        crate::engine::callback::CallbackPolicy::new(&self.callback_allowed_base_urls)?;
        crate::files::sources::UrlPolicy::new(&self.file_source_allowed_base_urls, &self.listen)?;
        match self.blob_store.as_str() {
            "local" => {}
            "s3" => anyhow::ensure!(
                self.s3_endpoint.is_some() && self.s3_bucket.is_some() && self.s3_access_key.is_some() && self.s3_secret_key.is_some(),
                "blob_store = \"s3\" needs s3_endpoint, s3_bucket, s3_access_key and s3_secret_key"
            ),
            other => anyhow::bail!("blob_store must be \"local\" or \"s3\", not {other:?}"),
        }
        anyhow::ensure!(self.cron_poll_ms >= 10, "cron_poll_ms must be at least 10");
        anyhow::ensure!(self.cron_misfire_secs >= 1, "cron_misfire_secs must be at least 1");
        anyhow::ensure!(self.cron_reclaim_secs >= 1, "cron_reclaim_secs must be at least 1");
        if let Some(tz) = &self.cron_time_zone {
            anyhow::ensure!(tz.parse::<chrono_tz::Tz>().is_ok(), "cron_time_zone {tz:?} is not an IANA time zone");
        }
        anyhow::ensure!(self.header_read_timeout_secs >= 1, "header_read_timeout_secs must be at least 1");
        anyhow::ensure!(self.request_timeout_secs >= 1, "request_timeout_secs must be at least 1");
        anyhow::ensure!(self.max_pending_agent_sessions >= 1, "max_pending_agent_sessions must be at least 1");
        anyhow::ensure!(self.replica_sweep_secs >= 1, "replica_sweep_secs must be at least 1");
        anyhow::ensure!(
            self.data_dir.is_some(),
            "no data dir: give --data-dir (e.g. /var/lib/shoal); on PostgreSQL too, the server keeps its keys and \
             first-start credentials there, never in the directory it was started from"
        );
        Ok(())
    }

    /// The data dir (present once [`ServerConfig::validate`] passed).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_default()
    }

    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => {
                format!("sqlite://{}", self.data_dir().join("shoal.db").display())
            }
        }
    }

    /// This config with its secrets replaced by `<redacted>` (the database password, the
    /// agent token, the bootstrap app's secret), for showing.
    pub fn redacted(&self) -> ServerConfig {
        let mut c = self.clone();
        c.database_url = self.database_url.as_ref().map(|_| self.redacted_store_url());
        c.agent_token = self.agent_token.as_ref().map(|_| "<redacted>".into());
        c.bootstrap_app = self.bootstrap_app.as_ref().map(|a| format!("{}:<redacted>", a.split(':').next().unwrap_or("")));
        c.s3_secret_key = self.s3_secret_key.as_ref().map(|_| "<redacted>".into());
        c
    }

    /// The store URL without a password, for logs and `--print-config`.
    pub fn redacted_store_url(&self) -> String {
        redact_url(&self.store_url())
    }

    pub fn replica_sweep(&self) -> Duration {
        Duration::from_secs(self.replica_sweep_secs)
    }

    pub fn agent_lost_grace(&self) -> Duration {
        Duration::from_secs(self.agent_lost_grace_secs)
    }
}

/// Query parameters that carry a password (libpq's and sqlx's names).
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// `raw` with its passwords replaced by `***`: the user info's, and those given as query
/// parameters (`?password=…`, which PostgreSQL clients accept too). Anything else is kept
/// as written.
fn redact_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        // Not a URL the parser takes: at least the user info's password goes.
        return match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let user = raw[s + 3..at].split(':').next().unwrap_or("");
                format!("{}{user}:***{}", &raw[..s + 3], &raw[at..])
            }
            _ => raw.to_string(),
        };
    };
    let mut changed = false;
    if u.password().is_some() {
        changed |= u.set_password(Some("***")).is_ok();
    }
    if u.query_pairs().any(|(k, _)| SECRET_PARAMS.contains(&k.as_ref())) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if SECRET_PARAMS.contains(&k.as_ref()) { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        u.to_string()
    } else {
        raw.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn passwords_leave_store_urls() {
        let r = super::redact_url;
        assert_eq!(r("postgres://shoal:pw@db:5432/shoal"), "postgres://shoal:***@db:5432/shoal");
        assert_eq!(
            r("postgres://shoal@db/shoal?sslmode=require&password=pw&x=1"),
            "postgres://shoal@db/shoal?sslmode=require&password=***&x=1"
        );
        assert_eq!(r("postgres://shoal@db/shoal?sslpassword=pw"), "postgres://shoal@db/shoal?sslpassword=***");
        assert_eq!(r("postgres://s:p@w@db/shoal"), "postgres://s:***@db/shoal");
        // Nothing secret: exactly as written.
        assert_eq!(r("sqlite://shoal-data/shoal.db"), "sqlite://shoal-data/shoal.db");
        assert_eq!(r("postgres://shoal@db/shoal?sslmode=require"), "postgres://shoal@db/shoal?sslmode=require");
    }

    #[test]
    fn cron_settings_are_checked() {
        let ok = ServerConfig {
            data_dir: Some("/tmp/shoal-test".into()),
            cron_time_zone: Some("Asia/Shanghai".into()),
            ..ServerConfig::default()
        };
        ok.validate().unwrap();
        let zone = ServerConfig { cron_time_zone: Some("Mars/Olympus".into()), ..ok.clone() };
        assert!(zone.validate().unwrap_err().to_string().contains("not an IANA time zone"));
        assert!(ServerConfig { cron_poll_ms: 0, ..ok.clone() }.validate().is_err());
        assert!(ServerConfig { cron_misfire_secs: 0, ..ok.clone() }.validate().is_err());
        assert!(ServerConfig { cron_reclaim_secs: 0, ..ok }.validate().is_err());
    }
}
