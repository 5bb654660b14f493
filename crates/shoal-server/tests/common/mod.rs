//! Test harness: a real server on 127.0.0.1:0 with in-process agents, on SQLite or
//! PostgreSQL; everything stops when the harness is dropped.

#![allow(dead_code, unused_macros, unused_imports)]

/// One test per store for each scenario `async fn name(h: Harness)`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                if let Some(h) = super::Harness::start(super::Backend::Sqlite).await {
                    super::$name(h).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(h) = super::Harness::start(super::Backend::Postgres).await {
                    super::$name(h).await;
                }
            }
        }
    )*};
}

/// One scenario on both stores, given the backend to start its own harness with (for
/// scenarios whose server needs settings of its own).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        }
    )*};
}

mod api;
mod killable;

pub use api::Api;
pub use killable::{Gate, Server};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_agent::AgentConfig;
use shoal_proto::agent::HostFacts;
use shoal_server::{ServerConfig, Shared};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const APP: &str = "test-app";
pub const SECRET: &str = "test-secret";
pub const TOKEN: &str = "test-agent-token";
pub const USER: &str = "alice";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh PostgreSQL database for one test (dropped with the handle), or `None` (skip) when
/// PostgreSQL is not reachable and not required (`SHOAL_REQUIRE_POSTGRES=1` / CI make that a
/// failure).
pub async fn postgres_url() -> Option<shoal_store::testing::TestDb> {
    shoal_store::testing::fresh_postgres("t").await
}

pub struct Agent {
    pub ip: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    pub state_dir: PathBuf,
}

impl Agent {
    /// A real agent of `facts` dialling `servers` in order; stopped when dropped.
    pub fn start(servers: Vec<String>, state_dir: PathBuf, facts: HostFacts) -> Agent {
        Agent::start_with(servers, state_dir, facts, |_| {})
    }

    /// [`Agent::start`] with its config changed by `tweak` first.
    pub fn start_with(servers: Vec<String>, state_dir: PathBuf, facts: HostFacts, tweak: impl FnOnce(&mut AgentConfig)) -> Agent {
        let ip = facts.ip.clone();
        let mut cfg = AgentConfig::new(servers, TOKEN.into(), state_dir.clone(), facts);
        cfg.kill_grace = Duration::from_millis(500);
        cfg.reconnect_max = Duration::from_millis(500);
        tweak(&mut cfg);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(shoal_agent::run(cfg, wait_stop(rx)));
        Agent { ip, stop: tx, task, state_dir }
    }

    /// Facts of a plain host of business 1.
    pub fn facts(ip: &str) -> HostFacts {
        HostFacts {
            bk_biz_id: 1,
            bk_cloud_id: 0,
            ip: ip.into(),
            hostname: format!("host-{ip}"),
            os: "linux".into(),
            ..HostFacts::default()
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub shared: Arc<Shared>,
    pub config: ServerConfig,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pub agents: Vec<Agent>,
    pub http: reqwest::Client,
    /// The PostgreSQL database, dropped last (after the server is told to stop).
    pub db: Option<shoal_store::testing::TestDb>,
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What every test server starts from: loopback, the test credentials, short periods.
pub fn test_config(data_dir: PathBuf, database_url: Option<String>) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: Some(data_dir),
        database_url,
        agent_token: Some(TOKEN.into()),
        bootstrap_app: Some(format!("{APP}:{SECRET}")),
        agent_lost_grace_secs: 2,
        heartbeat_secs: 2,
        // Test receivers listen on loopback.
        callback_allowed_base_urls: vec!["http://127.0.0.1".into()],
        ..ServerConfig::default()
    }
}

impl Harness {
    /// `None` when the backend is unavailable and not required.
    pub async fn start(backend: Backend) -> Option<Harness> {
        Self::start_with(backend, |_| {}).await
    }

    /// [`Harness::start`] with settings changed by `tweak` first.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ServerConfig)) -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(postgres_url().await?),
        };
        let mut config = test_config(dir.path().join("server"), db.as_ref().map(|d| d.to_string()));
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut h = Harness {
            url: format!("http://{addr}"),
            addr,
            shared: shoal_server::prepare(config.clone()).await.expect("prepare server"),
            config,
            dir,
            stop: watch::channel(false).0,
            server: None,
            agents: vec![],
            http: reqwest::Client::new(),
            db,
        };
        h.serve(listener);
        h.create_account(1, USER, &current_user()).await;
        Some(h)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = watch::channel(false);
        self.stop = tx;
        self.server = Some(tokio::spawn(shoal_server::serve(self.shared.clone(), listener, wait_stop(rx))));
    }

    /// Stop the server (agents keep running and reconnect later).
    pub async fn stop_server(&mut self) {
        let _ = self.stop.send(true);
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
    }

    /// Start a new server process-equivalent on the same address and store.
    pub async fn restart_server(&mut self) {
        self.stop_server().await;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.shared = shoal_server::prepare(self.config.clone()).await.expect("prepare server");
        self.serve(listener);
    }

    pub async fn add_agent(&mut self, ip: &str, set_id: Option<i64>, module_id: Option<i64>, labels: &[(&str, &str)]) -> usize {
        self.add_agent_in(1, ip, set_id, module_id, labels).await
    }

    /// [`Harness::add_agent`] in business `bk_biz_id`.
    pub async fn add_agent_in(
        &mut self,
        bk_biz_id: i64,
        ip: &str,
        set_id: Option<i64>,
        module_id: Option<i64>,
        labels: &[(&str, &str)],
    ) -> usize {
        let facts = HostFacts {
            bk_biz_id,
            bk_cloud_id: 0,
            ip: ip.into(),
            set_id,
            module_id,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            hostname: format!("host-{ip}"),
            os: "linux".into(),
        };
        let state_dir = self.dir.path().join(format!("agent-{ip}"));
        self.agents.push(Agent::start(vec![self.url.clone()], state_dir, facts));
        self.agents.len() - 1
    }

    /// An agent of business 1 at `ip` whose config `tweak` changes.
    pub fn add_agent_with(&mut self, ip: &str, tweak: impl FnOnce(&mut AgentConfig)) -> usize {
        let state_dir = self.dir.path().join(format!("agent-{ip}"));
        self.agents.push(Agent::start_with(vec![self.url.clone()], state_dir, Agent::facts(ip), tweak));
        self.agents.len() - 1
    }

    pub async fn stop_agent(&mut self, i: usize) {
        let _ = self.agents[i].stop.send(true);
        let task = &mut self.agents[i].task;
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }

    /// Whether an agent's task has ended (stopped, or refused by the server).
    pub fn agent_finished(&self, i: usize) -> bool {
        self.agents[i].task.is_finished()
    }

    pub async fn wait_connected(&self, n: usize) {
        let g = self.shared.gateway.clone();
        wait_for(&format!("{n} agents"), Duration::from_secs(20), || {
            let g = g.clone();
            async move { g.connected_set().len() >= n }
        })
        .await;
    }

    pub fn auth_header(&self) -> String {
        json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": USER}).to_string()
    }

    /// POST through the API-gateway path form; returns (HTTP status, envelope).
    pub async fn post(&self, name: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v3/{name}", self.url))
            .header("X-Bkapi-Authorization", self.auth_header())
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// POST through the ESB path form with credentials in the body.
    pub async fn post_esb(&self, name: &str, mut body: Value) -> (u16, Value) {
        body["bk_app_code"] = json!(APP);
        body["bk_app_secret"] = json!(SECRET);
        body["bk_username"] = json!(USER);
        let r = self.http.post(format!("{}/api/c/compapi/v2/jobv3/{name}/", self.url)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// GET through the API-gateway path form with a raw query string. Queries are safe to
    /// repeat, so a connection dropped by a restarting server is retried for a while.
    pub async fn get(&self, name: &str, query: &str) -> (u16, Value) {
        let mut tries = 0;
        loop {
            let sent = self
                .http
                .get(format!("{}/api/v3/{name}?{query}", self.url))
                .header("X-Bkapi-Authorization", self.auth_header())
                .send()
                .await;
            match sent {
                Ok(r) => return (r.status().as_u16(), r.json().await.unwrap()),
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("GET {name}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("GET {name}: {e}"),
            }
        }
    }

    pub async fn create_account(&self, biz: i64, alias: &str, os_user: &str) -> Value {
        let (_, v) = self
            .post("create_account", json!({"bk_scope_type": "biz", "bk_scope_id": biz.to_string(), "account": os_user, "alias": alias, "type": 1, "category": 1}))
            .await;
        assert_eq!(v["code"], 0, "{v}");
        v["data"].clone()
    }

    pub async fn host_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.shared.store.list_hosts(Some(1)).await.unwrap().iter().map(|h| h.bk_host_id).collect();
        ids.sort_unstable();
        ids
    }

    pub async fn host_id_of(&self, ip: &str) -> i64 {
        self.shared.store.list_hosts(None).await.unwrap().iter().find(|h| h.ip == ip).expect("host registered").bk_host_id
    }

    /// Submit a shell script on hosts; returns the answer's data.
    pub async fn execute(&self, script: &str, hosts: &[i64], extra: Value) -> Value {
        let mut body = json!({
            "bk_scope_type": "biz", "bk_scope_id": "1",
            "script_content": b64(script), "script_language": 1,
            "account_alias": USER, "target_server": {"host_id_list": hosts},
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, v) = self.post("fast_execute_script", body).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
        v["data"].clone()
    }

    /// Change the database behind Shoal's back (a crash's leftovers, tampering).
    pub async fn sql(&self, q: &str) {
        match &self.config.database_url {
            Some(url) => {
                let p = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(q).execute(&p).await.unwrap();
            }
            None => {
                let path = self.config.data_dir.clone().unwrap().join("shoal.db");
                let p = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query(q).execute(&p).await.unwrap();
            }
        }
    }

    pub async fn status(&self, job_id: i64) -> Value {
        let (_, v) = self
            .get("get_job_instance_status", &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job_id}&return_ip_result=True"))
            .await;
        assert_eq!(v["code"], 0, "{v}");
        v["data"].clone()
    }

    pub async fn wait_finished(&self, job_id: i64, within: Duration) -> Value {
        let end = tokio::time::Instant::now() + within;
        loop {
            let st = self.status(job_id).await;
            if st["finished"] == json!(true) {
                return st;
            }
            assert!(tokio::time::Instant::now() < end, "job {job_id} not finished in {within:?}: {st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The job's status once it is `status` (within 30 s).
    pub async fn wait_job(&self, job_id: i64, status: i64) -> Value {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.status(job_id).await;
            if st["job_instance"]["status"] == status {
                return st;
            }
            assert!(tokio::time::Instant::now() < end, "job {job_id} never reached {status}: {st}");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    pub async fn logs(&self, job_id: i64, step_id: i64, hosts: &[i64]) -> BTreeMap<i64, String> {
        let (_, v) = self
            .post(
                "batch_get_job_instance_ip_log",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job_id, "step_instance_id": step_id, "host_id_list": hosts}),
            )
            .await;
        assert_eq!(v["code"], 0, "{v}");
        v["data"]["script_task_logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["bk_host_id"].as_i64().unwrap(), l["log_content"].as_str().unwrap().to_string()))
            .collect()
    }
}

impl Harness {
    /// Apply a template document in business 1 as [`USER`] (`/api/shoal/v1/templates/apply`).
    pub async fn apply_template(&self, doc: Value) -> Value {
        let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc});
        let r = self.http.post(format!("{}/api/shoal/v1/templates/apply", self.url)).header("X-Bkapi-Authorization", self.auth_header());
        let v: Value = r.json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["code"], 0, "{v}");
        v["data"].clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A killable server on `backend`, behind a gate, with one real agent of `ip` connected
/// through the gate (the setup of the kill -9 tests).
pub struct Gated {
    pub dir: tempfile::TempDir,
    pub config: ServerConfig,
    pub server: Server,
    pub gate: Gate,
    pub api: Api,
    pub agent: Agent,
    pub hosts: Vec<i64>,
    /// The PostgreSQL database, dropped last.
    pub db: Option<shoal_store::testing::TestDb>,
}

/// [`Gated`], or `None` (skip) when PostgreSQL is asked for and not reachable.
pub async fn gated_agent(backend: Backend, ip: &str, agent_lost_grace_secs: u64) -> Option<Gated> {
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(postgres_url().await?),
    };
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { agent_lost_grace_secs, ..test_config(dir.path().join("server"), db.as_ref().map(|d| d.to_string())) };
    let server = Server::start(config.clone()).await;
    let gate = Gate::open_to(server.addr).await;
    let api = Api::new(&server.url);
    api.create_account(USER, &current_user()).await;
    let agent = Agent::start(vec![gate.url.clone()], dir.path().join("agent"), Agent::facts(ip));
    wait_for("the agent connected", Duration::from_secs(20), || {
        let api = api.clone();
        async move { api.hosts().await.iter().any(|h| h["alive"] == 1) }
    })
    .await;
    let hosts = api.hosts().await.iter().map(|h| h["bk_host_id"].as_i64().unwrap()).collect();
    Some(Gated { dir, config, server, gate, api, agent, hosts, db })
}

/// Every file under `dir`, however deep (the database files and the blob store among them).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A `get_job_instance_list` body for one business: JOB requires a creation-time range
/// (at most 30 days), here the hour either side of now.
pub fn history(biz: &str) -> Value {
    let now = shoal_core::time::now_ms();
    json!({"bk_scope_type": "biz", "bk_scope_id": biz, "create_time_start": now - 3_600_000, "create_time_end": now + 3_600_000})
}

/// [`history`] as a query string.
pub fn history_query(biz: &str) -> String {
    let h = history(biz);
    format!("bk_scope_type=biz&bk_scope_id={biz}&create_time_start={}&create_time_end={}", h["create_time_start"], h["create_time_end"])
}

pub fn current_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
    })
}

/// Hosts of the first step of a status answer.
pub fn hosts_of(st: &Value) -> Vec<Value> {
    st["step_instance_list"][0]["step_ip_result_list"].as_array().cloned().unwrap_or_default()
}

/// Whether a process is alive (not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// A raw agent session: the real agent protocol spoken by hand, for peers that misbehave.
pub mod raw_agent {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use shoal_agent::session::connect::{dial, Target, Ws};
    use shoal_proto::agent::{AgentMsg, Hello, HostFacts, ServerMsg, PROTOCOL_VERSION};
    use tokio_tungstenite::tungstenite::Message;

    use super::{Harness, TOKEN};

    pub fn hello(agent_id: &str, ip: &str, credential: Option<&str>) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            token: TOKEN.into(),
            agent_id: agent_id.into(),
            agent_version: "rogue".into(),
            facts: HostFacts { bk_biz_id: 1, bk_cloud_id: 0, ip: ip.into(), hostname: "rogue".into(), ..Default::default() },
            known_tasks: vec![],
            credential: credential.map(String::from),
        }
    }

    pub async fn send(ws: &mut Ws, msg: &AgentMsg) {
        ws.send(Message::Text(serde_json::to_string(msg).unwrap().into())).await.unwrap();
    }

    /// The server's next message, `None` after 10 s of nothing or a closed session.
    pub async fn next_msg(ws: &mut Ws) -> Option<ServerMsg> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok()?? {
                Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Say hello as a raw client; the server's first answer.
    pub async fn greet(h: &Harness, hello: Hello) -> (Ws, Option<ServerMsg>) {
        let target = Target::parse(&h.url, true).unwrap();
        let mut ws = dial(&target, None).await.unwrap();
        send(&mut ws, &AgentMsg::Hello(hello)).await;
        let first = next_msg(&mut ws).await;
        (ws, first)
    }
}

/// A moto S3 server on a free port, stopped on drop.
pub struct Moto {
    pub endpoint: String,
    child: std::process::Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn moto_path() -> PathBuf {
    std::env::var_os("SHOAL_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/s3-venv/bin/moto_server"))
}

/// `None` (the test is skipped) when moto is not installed, unless `SHOAL_REQUIRE_S3=1`.
pub async fn moto() -> Option<Moto> {
    let path = moto_path();
    if !path.exists() {
        assert!(
            std::env::var("SHOAL_REQUIRE_S3").as_deref() != Ok("1"),
            "SHOAL_REQUIRE_S3=1 but {} is missing (.ci/run installs moto[server] there)",
            path.display()
        );
        eprintln!("skipped: {} is missing", path.display());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(&path)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let m = Moto { endpoint: format!("http://127.0.0.1:{port}"), child };
    let http = reqwest::Client::new();
    wait_for("moto_server to answer", Duration::from_secs(60), || {
        let (http, url) = (http.clone(), m.endpoint.clone());
        async move { http.get(&url).send().await.is_ok() }
    })
    .await;
    Some(m)
}

/// A callback receiver on 127.0.0.1: its URL and every JSON body posted to it.
/// The callback a [`callback_sink`] received for job `job`, once it came (within 30 s).
pub async fn callback_of(got: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>, job: i64) -> Value {
    wait_for("the callback", Duration::from_secs(30), || {
        let got = got.clone();
        async move { got.lock().unwrap().iter().any(|c| c["job_instance_id"] == job) }
    })
    .await;
    got.lock().unwrap().iter().find(|c| c["job_instance_id"] == job).cloned().unwrap()
}

pub async fn callback_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let sink = sink.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            sink.lock().unwrap().push(v);
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/callback"), got)
}
