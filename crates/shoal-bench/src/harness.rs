//! What the scenarios share: a JOB v3 API client, `shoal server` as a child process (its
//! memory is measured on its own), fresh PostgreSQL databases, and process memory readings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shoal_server::ServerConfig;
use shoal_store::Store;

pub const APP: &str = "bench-app";
pub const SECRET: &str = "bench-secret";
pub const TOKEN: &str = "bench-agent-token";
pub const ALIAS: &str = "bench";

/// A JOB v3 client with the bench app's credentials.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    auth: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("http client");
        let auth = json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": "bench"}).to_string();
        Api { http, base: base.to_string(), auth }
    }

    async fn data(r: reqwest::Response) -> anyhow::Result<Value> {
        Self::answer(r).await?.map_err(|(code, v)| anyhow::anyhow!("API answered {code}: {v}"))
    }

    /// A JOB answer: its `data`, or its error code and the whole answer.
    async fn answer(r: reqwest::Response) -> anyhow::Result<Result<Value, (i64, Value)>> {
        let mut v: Value = r.json().await.context("decoding answer")?;
        Ok(match v["code"].as_i64() {
            Some(0) => Ok(v["data"].take()),
            code => Err((code.unwrap_or(-1), v)),
        })
    }

    /// Calls `name`; a JOB error answer is a value, not an error.
    pub async fn call(&self, name: &str, body: Value) -> anyhow::Result<Result<Value, (i64, Value)>> {
        let r =
            self.http.post(format!("{}/api/v3/{name}", self.base)).header("X-Bkapi-Authorization", &self.auth).json(&body).send().await?;
        Self::answer(r).await
    }

    pub async fn post(&self, name: &str, body: Value) -> anyhow::Result<Value> {
        self.call(name, body).await?.map_err(|(code, v)| anyhow::anyhow!("API answered {code}: {v}"))
    }

    pub async fn status(&self, job_id: i64, with_hosts: bool) -> anyhow::Result<Value> {
        Self::data(self.status_request(job_id, with_hosts).await?).await
    }

    /// The status answer as received, undecoded.
    pub async fn status_bytes(&self, job_id: i64, with_hosts: bool) -> anyhow::Result<Vec<u8>> {
        Ok(self.status_request(job_id, with_hosts).await?.bytes().await?.to_vec())
    }

    async fn status_request(&self, job_id: i64, with_hosts: bool) -> anyhow::Result<reqwest::Response> {
        let q = format!(
            "bk_scope_type=biz&bk_scope_id=1&job_instance_id={job_id}&return_ip_result={}",
            if with_hosts { "True" } else { "False" }
        );
        Ok(self
            .http
            .get(format!("{}/api/v3/get_job_instance_status?{q}", self.base))
            .header("X-Bkapi-Authorization", &self.auth)
            .send()
            .await?)
    }

    pub async fn create_account(&self, os_user: &str) -> anyhow::Result<()> {
        let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": os_user, "alias": ALIAS, "type": 1, "category": 1});
        match self.post("create_account", body).await {
            Ok(_) => Ok(()),
            // 1243007: the alias exists (another replica made it).
            Err(e) if e.to_string().contains("1243007") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Submits a shell script on `hosts`; returns the job id.
    pub async fn execute(&self, script: &str, hosts: &[i64]) -> anyhow::Result<i64> {
        self.try_execute(script, hosts).await?.map_err(|(code, v)| anyhow::anyhow!("API answered {code}: {v}"))
    }

    /// Submits a shell script on `hosts`: the job id, or JOB's error code and answer.
    pub async fn try_execute(&self, script: &str, hosts: &[i64]) -> anyhow::Result<Result<i64, (i64, Value)>> {
        use base64::Engine;
        let body = json!({
            "bk_scope_type": "biz", "bk_scope_id": "1",
            "script_content": base64::engine::general_purpose::STANDARD.encode(script), "script_language": 1,
            "account_alias": ALIAS, "target_server": {"host_id_list": hosts},
        });
        Ok(match self.call("fast_execute_script", body).await? {
            Ok(data) => Ok(data["job_instance_id"].as_i64().context("no job_instance_id")?),
            Err(e) => Err(e),
        })
    }

    /// Polls every `poll` until the job is finished; returns the status with host results.
    /// Polls (without host results) until the job is finished; then the full status, and
    /// the moment `finished` was first seen (the full answer is fetched after it).
    pub async fn wait_finished(&self, job_id: i64, poll: Duration, within: Duration) -> anyhow::Result<(Value, Instant)> {
        let end = Instant::now() + within;
        loop {
            let st = self.status(job_id, false).await?;
            if st["finished"] == json!(true) {
                let seen = Instant::now();
                return Ok((self.status(job_id, true).await?, seen));
            }
            if Instant::now() > end {
                bail!("job {job_id} not finished within {within:?}");
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// Host results of a status answer: (successful, total).
pub fn host_results(st: &Value) -> (usize, usize) {
    let hosts = st["step_instance_list"][0]["step_ip_result_list"].as_array().cloned().unwrap_or_default();
    (hosts.iter().filter(|h| h["status"] == json!(9)).count(), hosts.len())
}

/// A fresh PostgreSQL database named after the bench, from `SHOAL_BENCH_DATABASE_URL`
/// (default `postgres://postgres@127.0.0.1:5432/test`).
pub async fn fresh_postgres() -> anyhow::Result<String> {
    let base = std::env::var("SHOAL_BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = sqlx::PgPool::connect(&base).await.with_context(|| format!("connecting to {base}"))?;
    let name = format!("shoal_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
    let (prefix, _) = base.rsplit_once('/').context("database url has no path")?;
    Ok(format!("{prefix}/{name}"))
}

fn server_config(dir: &Path, database_url: Option<String>) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: Some(dir.join("server")),
        database_url,
        agent_token: Some(TOKEN.into()),
        bootstrap_app: Some(format!("{APP}:{SECRET}")),
        // Every simulated agent connects from 127.0.0.1.
        max_connections_per_source: 0,
        ..ServerConfig::default()
    }
}

/// `shoal server` as a child process (the release binary next to this one).
pub struct Child {
    child: std::process::Child,
    pub api: Api,
    pub url: String,
    store: Arc<dyn Store>,
}

/// The `shoal` binary built next to `shoal-bench`.
pub fn shoal_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("shoal");
    if !bin.exists() {
        bail!("{} not found: build it with `cargo build --release -p shoal`", bin.display());
    }
    Ok(bin)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Child {
    pub async fn start(dir: &Path, database_url: Option<String>) -> anyhow::Result<Child> {
        Self::start_with(dir, database_url, &[]).await
    }

    /// [`Child::start`] with settings of its own (`SHOAL_*` variables).
    pub async fn start_with(dir: &Path, database_url: Option<String>, env: &[(&str, &str)]) -> anyhow::Result<Child> {
        let port = free_port()?;
        let config = server_config(dir, database_url.clone());
        let data_dir = config.data_dir.clone().context("data dir")?;
        std::fs::create_dir_all(&data_dir)?;
        let mut cmd = std::process::Command::new(shoal_bin()?);
        cmd.arg("server").arg("--listen").arg(format!("127.0.0.1:{port}")).arg("--data-dir").arg(&data_dir);
        if let Some(u) = &database_url {
            cmd.arg("--database-url").arg(u);
        }
        cmd.env("SHOAL_BOOTSTRAP_APP", format!("{APP}:{SECRET}"))
            .env("SHOAL_AGENT_TOKEN", TOKEN)
            .env("SHOAL_MAX_CONNECTIONS_PER_SOURCE", "0")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(std::fs::File::create(dir.join("server.log"))?));
        let mut child = cmd.spawn().context("starting shoal server")?;
        let url = format!("http://127.0.0.1:{port}");
        match Self::ready(&url, dir, &config).await {
            Ok((api, store)) => Ok(Child { child, api, url, store }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    async fn ready(url: &str, dir: &Path, config: &ServerConfig) -> anyhow::Result<(Api, Arc<dyn Store>)> {
        let api = Api::new(url);
        let end = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{url}/healthz")).await.is_err() {
            if Instant::now() > end {
                bail!("shoal server did not come up; see {}", dir.join("server.log").display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api.create_account(&current_user()).await?;
        let store = shoal_store::open(&config.store_url()).await?;
        Ok((api, store))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The server's store, opened beside it (for reading what it recorded).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn alive_hosts(&self) -> anyhow::Result<Vec<i64>> {
        let hosts = self.store.list_hosts(Some(1)).await?;
        if self.store.is_shared() {
            // Several replicas: what counts is a session on a live one.
            let live: std::collections::HashSet<i64> =
                self.store.live_sessions(now_ms() - 5_000).await?.into_iter().map(|(h, _)| h).collect();
            return Ok(hosts.iter().filter(|h| live.contains(&h.bk_host_id)).map(|h| h.bk_host_id).collect());
        }
        Ok(hosts.iter().filter(|h| h.alive).map(|h| h.bk_host_id).collect())
    }

    pub async fn wait_agents(&self, n: usize, within: Duration) -> anyhow::Result<Vec<i64>> {
        let end = Instant::now() + within;
        loop {
            let hosts = self.alive_hosts().await?;
            if hosts.len() >= n {
                return Ok(hosts);
            }
            if Instant::now() > end {
                bail!("only {} of {n} agents connected within {within:?}", hosts.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten().map_or_else(|| "root".into(), |u| u.name)
}

/// Raises this process's open-file limit to at least `want` (as far as the system allows).
pub fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    if soft >= want {
        return soft;
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(hard);
    let target = want.min(nr_open.max(hard));
    if setrlimit(Resource::RLIMIT_NOFILE, target, target.max(hard)).is_ok() {
        return target;
    }
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    hard
}

/// Median, p50 and p99 helpers over a sample.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}
