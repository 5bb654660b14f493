//! Two server replicas on one PostgreSQL serving one fleet: a job submitted to one replica
//! runs on agents held by the other, any replica answers, and when a replica dies mid-job its
//! agents move to the survivor and the job finishes with every host result.
//!
//! Each replica runs on its own tokio runtime so that "killing" it drops every task and
//! socket at once, without any of its shutdown code running — as when the process dies.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{b64, current_user, postgres_url, test_config, wait_for, Agent, Api, Server, USER};
use serde_json::json;
use shoal_server::ServerConfig;

/// The settings of replica `name`: its own data dir, the keys every replica shares.
fn replica_config(dir: &std::path::Path, name: &str, database_url: &str) -> ServerConfig {
    ServerConfig {
        // Replicas share the key of sensitive values (docs/scale-out.md)...
        secret_key_file: Some(dir.join("secret-key")),
        // ...and the audit chain's key: one chain, one key.
        audit_key_file: Some(dir.join("audit-key")),
        ..test_config(dir.join(name), Some(database_url.to_string()))
    }
}

const AGENTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_survives_the_death_of_the_replica_that_started_it_on_postgres() {
    let Some(db) = postgres_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::start(replica_config(dir.path(), "a", &db)).await;
    let b = Server::start(replica_config(dir.path(), "b", &db)).await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    api_a.create_account(USER, &current_user()).await;

    // Half the agents prefer replica a, half replica b; each fails over to the other.
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let facts = Agent::facts(&format!("127.0.8.{}", i + 1));
        let servers = if i % 2 == 0 { vec![a.url.clone(), b.url.clone()] } else { vec![b.url.clone(), a.url.clone()] };
        agents.push(Agent::start(servers, dir.path().join(format!("agent-{i}")), facts));
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

    drop(agents);
    drop(Arc::clone(&store));
}

/// Whether `api`'s host list says the host at `ip` is alive.
async fn listed_alive(api: &Api, ip: &str) -> bool {
    api.hosts().await.iter().any(|h| h["ip"] == ip && h["alive"] == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_replica_lists_a_host_held_by_another_as_alive_on_postgres() {
    let Some(db) = postgres_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::start(replica_config(dir.path(), "a", &db)).await;
    let b = Server::start(replica_config(dir.path(), "b", &db)).await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    let _agent = Agent::start(vec![a.url.clone()], dir.path().join("agent"), Agent::facts("127.0.8.20"));
    wait_for("the agent connected to a", Duration::from_secs(20), || {
        let api_a = api_a.clone();
        async move { listed_alive(&api_a, "127.0.8.20").await }
    })
    .await;
    // Held by a, asked of b.
    wait_for("b listing the host alive", Duration::from_secs(5), || {
        let api_b = api_b.clone();
        async move { listed_alive(&api_b, "127.0.8.20").await }
    })
    .await;
    // Once a is dead, nobody holds the host.
    a.kill();
    wait_for("b listing the host not alive", Duration::from_secs(20), || {
        let api_b = api_b.clone();
        async move { !listed_alive(&api_b, "127.0.8.20").await }
    })
    .await;
}

/// The id of a replica other than `known`, once its first heartbeat is written.
async fn replica_besides(db: &sqlx::PgPool, known: Option<&str>) -> String {
    let query = || sqlx::query_scalar::<_, String>("SELECT id FROM replicas WHERE id <> $1").bind(known.unwrap_or("")).fetch_optional(db);
    wait_for("a new replica's heartbeat", Duration::from_secs(10), || async { query().await.unwrap().is_some() }).await;
    query().await.unwrap().unwrap()
}

/// Rows of `table` whose `column` is `value`.
async fn rows_with(db: &sqlx::PgPool, table: &str, column: &str, value: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1")).bind(value).fetch_one(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_replica_is_swept_away_and_its_hosts_still_end_lost_on_postgres() {
    let Some(url) = postgres_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let quick = |name| ServerConfig { replica_sweep_secs: 1, ..replica_config(dir.path(), name, &url) };
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let mut a = Server::start(quick("a")).await;
    let a_id = replica_besides(&db, None).await;
    let b = Server::start(quick("b")).await;
    let b_id = replica_besides(&db, Some(&a_id)).await;
    let api_b = Api::new(&b.url);
    api_b.create_account(USER, &current_user()).await;

    // One agent held by a (and only ever by a), one by b.
    let _on_a = Agent::start(vec![a.url.clone()], dir.path().join("agent-a"), Agent::facts("127.0.8.30"));
    let _on_b = Agent::start(vec![b.url.clone()], dir.path().join("agent-b"), Agent::facts("127.0.8.31"));
    wait_for("both agents held", Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM agent_sessions WHERE replica_id IS NOT NULL").fetch_one(&db).await.unwrap()
                == 2
        }
    })
    .await;
    let hosts: Vec<i64> = api_b.hosts().await.iter().map(|h| h["bk_host_id"].as_i64().unwrap()).collect();
    let flag = dir.path().join("go");
    let (job, step) = api_b.execute(&format!("while [ ! -e '{}' ]; do sleep 0.05; done; echo done", flag.display()), &hosts).await;
    wait_for("both tasks running", Duration::from_secs(20), || {
        let api_b = api_b.clone();
        async move { common::hosts_of(&api_b.status(job).await).iter().filter(|h| h["status"] == json!(7)).count() == 2 }
    })
    .await;

    // a dies with a message still queued for it.
    a.kill();
    sqlx::query("INSERT INTO routed_messages (replica_id, bk_host_id, body, created_at) VALUES ($1, 0, '{}', 0)")
        .bind(&a_id)
        .execute(&db)
        .await
        .unwrap();
    wait_for("a swept away", Duration::from_secs(20), || {
        let (db, a_id) = (db.clone(), a_id.clone());
        async move {
            rows_with(&db, "replicas", "id", &a_id).await == 0
                && rows_with(&db, "routed_messages", "replica_id", &a_id).await == 0
                && rows_with(&db, "agent_sessions", "replica_id", &a_id).await == 0
        }
    })
    .await;
    // b and what it holds stay.
    assert_eq!(rows_with(&db, "replicas", "id", &b_id).await, 1);
    assert_eq!(rows_with(&db, "agent_sessions", "replica_id", &b_id).await, 1);

    // a's host is still known to be gone: its task fails as lost; b's finishes.
    std::fs::write(&flag, b"").unwrap();
    wait_for("the job finished", Duration::from_secs(30), || {
        let api_b = api_b.clone();
        async move { api_b.status(job).await["finished"] == json!(true) }
    })
    .await;
    let statuses: BTreeSet<i64> = api_b.results(job, step).await.values().map(|(s, _)| *s).collect();
    assert_eq!(statuses, BTreeSet::from([9, 310]));
}

/// A file step submitted to replica a whose source host's agent is held by replica b: the
/// staging request goes to b, the source uploads into the shared (S3) blob store through b,
/// and b passes the answer back to a, which then sends the targets their tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_staged_through_another_replica_reach_the_targets_on_postgres() {
    let Some(db) = postgres_url().await else { return };
    let Some(m) = common::moto().await else { return };
    let client = shoal_server::files::s3::S3Client::new(&m.endpoint, "us-east-1", "AKREP", "rep-secret", reqwest::Client::new()).unwrap();
    client.create_bucket("shoal-replicas").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shared_blobs = |name: &str| ServerConfig {
        blob_store: "s3".into(),
        s3_endpoint: Some(m.endpoint.clone()),
        s3_bucket: Some("shoal-replicas".into()),
        s3_access_key: Some("AKREP".into()),
        s3_secret_key: Some("rep-secret".into()),
        ..replica_config(dir.path(), name, &db)
    };
    let a = Server::start(shared_blobs("a")).await;
    let b = Server::start(shared_blobs("b")).await;
    let api_a = Api::new(&a.url);
    api_a.create_account(USER, &current_user()).await;
    let _source = Agent::start(vec![b.url.clone()], dir.path().join("source"), Agent::facts("127.0.8.40"));
    let _target = Agent::start(vec![a.url.clone()], dir.path().join("target"), Agent::facts("127.0.8.41"));
    wait_for("both agents alive", Duration::from_secs(30), || {
        let api_a = api_a.clone();
        async move { listed_alive(&api_a, "127.0.8.40").await && listed_alive(&api_a, "127.0.8.41").await }
    })
    .await;
    let id_of = |hosts: &[serde_json::Value], ip: &str| hosts.iter().find(|h| h["ip"] == ip).unwrap()["bk_host_id"].as_i64().unwrap();
    let hosts = api_a.hosts().await;
    let (source, target) = (id_of(&hosts, "127.0.8.40"), id_of(&hosts, "127.0.8.41"));

    let from = dir.path().join("files");
    std::fs::create_dir_all(&from).unwrap();
    std::fs::write(from.join("app.conf"), "staged via b\n").unwrap();
    let dest = dir.path().join("dest");
    let d = api_a
        .post(
            "fast_transfer_file",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account_alias": USER, "file_target_path": dest.to_str().unwrap(),
                   "file_source_list": [{"file_list": [from.join("app.conf").to_str().unwrap()], "account": {"alias": USER},
                                         "server": {"host_id_list": [source]}}],
                   "target_server": {"host_id_list": [target]}}),
        )
        .await;
    let job = d["job_instance_id"].as_i64().unwrap();
    wait_for("the file job finished", Duration::from_secs(60), || {
        let api_a = api_a.clone();
        async move { api_a.status(job).await["finished"] == json!(true) }
    })
    .await;
    let st = api_a.status(job).await;
    assert_eq!(st["job_instance"]["status"], json!(3), "{st}");
    assert_eq!(std::fs::read_to_string(dest.join("app.conf")).unwrap(), "staged via b\n");
}
