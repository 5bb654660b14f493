//! Two server replicas on one PostgreSQL serving one fleet: a job submitted to one replica
//! runs on agents held by the other, any replica answers, and when a replica dies mid-job its
//! agents move to the survivor and the job finishes with every host result.
//!
//! Each replica runs on its own tokio runtime so that "killing" it drops every task and
//! socket at once, without any of its shutdown code running — as when the process dies.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{b64, current_user, postgres_url, wait_for, APP, SECRET, TOKEN, USER};
use serde_json::{json, Value};
use shoal_agent::AgentConfig;
use shoal_proto::agent::HostFacts;
use shoal_server::ServerConfig;
use tokio::sync::watch;

/// One `shoal server` replica on its own runtime.
struct Replica {
    url: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl Replica {
    async fn start(dir: &std::path::Path, name: &str, database_url: &str) -> Replica {
        let config = ServerConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: Some(dir.join(name)),
            // Replicas share the key of sensitive values (docs/scale-out.md).
            secret_key_file: Some(dir.join("secret-key")),
            // ...and the audit chain's key: one chain, one key.
            audit_key_file: Some(dir.join("audit-key")),
            database_url: Some(database_url.to_string()),
            agent_token: Some(TOKEN.into()),
            bootstrap_app: Some(format!("{APP}:{SECRET}")),
            agent_lost_grace_secs: 2,
            heartbeat_secs: 2,
            ..ServerConfig::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            shoal_server::run(config, listener, std::future::pending()).await
        });
        let http = reqwest::Client::new();
        wait_for(&format!("replica {name} up"), Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Replica { url, rt: Some(rt) }
    }

    /// Drops every task and socket of the replica at once.
    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(url: &str) -> Api {
        Api { http: reqwest::Client::new(), url: url.to_string() }
    }

    fn auth() -> String {
        json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": USER}).to_string()
    }

    async fn post(&self, name: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/api/v3/{name}", self.url))
            .header("X-Bkapi-Authorization", Self::auth())
            .json(&body)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], 0, "{name}: {v}");
        v["data"].clone()
    }

    async fn status(&self, job_id: i64) -> Value {
        let q = format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job_id}&return_ip_result=True");
        let r = self
            .http
            .get(format!("{}/api/v3/get_job_instance_status?{q}", self.url))
            .header("X-Bkapi-Authorization", Self::auth())
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], 0, "{v}");
        v["data"].clone()
    }

    async fn execute(&self, script: &str, hosts: &[i64]) -> (i64, i64) {
        let d = self
            .post(
                "fast_execute_script",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64(script), "script_language": 1,
                       "account_alias": USER, "target_server": {"host_id_list": hosts}}),
            )
            .await;
        (d["job_instance_id"].as_i64().unwrap(), d["step_instance_id"].as_i64().unwrap())
    }

    /// Host id → (status, log) of the job's first step.
    async fn results(&self, job_id: i64, step_id: i64) -> BTreeMap<i64, (i64, String)> {
        let st = self.status(job_id).await;
        let hosts: Vec<i64> = common::hosts_of(&st).iter().map(|h| h["bk_host_id"].as_i64().unwrap()).collect();
        let logs = self
            .post(
                "batch_get_job_instance_ip_log",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job_id, "step_instance_id": step_id, "host_id_list": hosts}),
            )
            .await;
        let logs: BTreeMap<i64, String> = logs["script_task_logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["bk_host_id"].as_i64().unwrap(), l["log_content"].as_str().unwrap_or_default().to_string()))
            .collect();
        common::hosts_of(&st)
            .iter()
            .map(|h| {
                let id = h["bk_host_id"].as_i64().unwrap();
                (id, (h["status"].as_i64().unwrap(), logs.get(&id).cloned().unwrap_or_default()))
            })
            .collect()
    }
}

const AGENTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_survives_the_death_of_the_replica_that_started_it() {
    let Some(db) = postgres_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Replica::start(dir.path(), "a", &db).await;
    let b = Replica::start(dir.path(), "b", &db).await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    api_a
        .post(
            "create_account",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": current_user(), "alias": USER, "type": 1, "category": 1}),
        )
        .await;

    // Half the agents prefer replica a, half replica b; each fails over to the other.
    let (stop_tx, _) = watch::channel(false);
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let ip = format!("127.0.8.{}", i + 1);
        let facts = HostFacts {
            bk_biz_id: 1,
            bk_cloud_id: 0,
            ip: ip.clone(),
            hostname: format!("r{i}"),
            os: "linux".into(),
            ..HostFacts::default()
        };
        let servers = if i % 2 == 0 { vec![a.url.clone(), b.url.clone()] } else { vec![b.url.clone(), a.url.clone()] };
        let mut cfg = AgentConfig::new(servers, TOKEN.into(), dir.path().join(format!("agent-{i}")), facts);
        cfg.kill_grace = Duration::from_millis(500);
        cfg.reconnect_max = Duration::from_millis(300);
        let mut rx = stop_tx.subscribe();
        agents.push(tokio::spawn(shoal_agent::run(cfg, async move {
            let _ = rx.wait_for(|v| *v).await;
        })));
    }

    let store = shoal_store::open(&db).await.unwrap();
    wait_for("every agent held by a live replica, on both replicas", Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            let alive_after = shoal_core::time::now_ms() - 5_000;
            let sessions = store.live_sessions(alive_after).await.unwrap();
            let replicas: BTreeSet<&String> = sessions.iter().map(|(_, r)| r).collect();
            sessions.len() == AGENTS && replicas.len() == 2
        }
    })
    .await;
    let hosts: Vec<i64> = store.list_hosts(Some(1)).await.unwrap().iter().map(|h| h.bk_host_id).collect();
    assert_eq!(hosts.len(), AGENTS);

    // A sensitive parameter reaches the agents held by b too: b builds their tasks from the
    // database, opening the sealed parameter with the key the replicas share.
    let d = api_a
        .post(
            "fast_execute_script",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo \"p=$1\""), "script_language": 1,
                   "script_param": b64("s3cret-value"), "is_param_sensitive": 1,
                   "account_alias": USER, "target_server": {"host_id_list": hosts}}),
        )
        .await;
    let (job0, step0) = (d["job_instance_id"].as_i64().unwrap(), d["step_instance_id"].as_i64().unwrap());
    wait_for("the sensitive job finished", Duration::from_secs(30), || {
        let api_b = api_b.clone();
        async move { api_b.status(job0).await["finished"] == json!(true) }
    })
    .await;
    let results = api_b.results(job0, step0).await;
    assert_eq!(results.len(), AGENTS, "{results:?}");
    // It arrived (the script printed it) and was masked in the output like a password.
    assert!(results.values().all(|(s, log)| *s == 9 && log.contains("p=******")), "{results:?}");

    // Submitted to a: b's agents get their tasks through PostgreSQL. Every task waits for a
    // flag file, so all of them are running when a dies.
    let flag = dir.path().join("go");
    let script = format!("while [ ! -e '{}' ]; do sleep 0.05; done; echo \"finished on $(hostname)\"", flag.display());
    let (job, step) = api_a.execute(&script, &hosts).await;
    wait_for("every host task running (read through replica b)", Duration::from_secs(30), || {
        let api_b = api_b.clone();
        async move { common::hosts_of(&api_b.status(job).await).iter().filter(|h| h["status"] == json!(7)).count() == AGENTS }
    })
    .await;

    a.kill();
    std::fs::write(&flag, b"").unwrap();

    wait_for("the job finished on the surviving replica", Duration::from_secs(60), || {
        let api_b = api_b.clone();
        async move { api_b.status(job).await["finished"] == json!(true) }
    })
    .await;
    let st = api_b.status(job).await;
    assert_eq!(st["job_instance"]["status"], json!(3), "{st}");
    let results = api_b.results(job, step).await;
    assert_eq!(results.len(), AGENTS, "{results:?}");
    for (host, (status, log)) in &results {
        assert_eq!(*status, 9, "host {host}: {log}");
        assert!(log.contains("finished on "), "host {host} log: {log:?}");
    }

    // Every agent now lives on b, and b runs new jobs on all of them.
    let (job2, step2) = api_b.execute("echo again", &hosts).await;
    wait_for("the second job finished", Duration::from_secs(30), || {
        let api_b = api_b.clone();
        async move { api_b.status(job2).await["finished"] == json!(true) }
    })
    .await;
    let results = api_b.results(job2, step2).await;
    assert!(results.values().all(|(s, log)| *s == 9 && log.contains("again")), "{results:?}");

    let _ = stop_tx.send(true);
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
    }
    drop(Arc::clone(&store));
}
