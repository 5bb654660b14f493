//! Jobs a crash left between two changes reach a final state after a restart, on SQLite and
//! PostgreSQL: a running job whose step had ended, and a started job whose first step never
//! started (it runs, once). And a server killed mid-job waits, once restarted, the same grace
//! period on both stores for its agents to come back.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

on_both_stores!(a_running_job_whose_steps_ended_is_finished, a_started_job_whose_step_never_started_runs_once);

async fn a_running_job_whose_steps_ended_is_finished(mut h: Harness) {
    h.add_agent("127.0.0.97", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo done", &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job, Duration::from_secs(20)).await;
    // The crash came after the step's end and before the job's, a minute ago.
    h.stop_server().await;
    h.sql(&format!("UPDATE job_instances SET status = 2, end_time = NULL WHERE id = {job}")).await;
    h.sql(&format!("UPDATE step_instances SET end_time = end_time - 60000 WHERE job_instance_id = {job}")).await;
    h.restart_server().await;
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
}

async fn a_started_job_whose_step_never_started_runs_once(mut h: Harness) {
    h.add_agent("127.0.0.98", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo ran-$$", &hosts, json!({"start_task": false})).await;
    let (job, step) = (job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap());
    // The crash came after the job was marked running and before its first step started.
    h.stop_server().await;
    h.sql(&format!("UPDATE job_instances SET status = 2, start_time = create_time - 60000 WHERE id = {job}")).await;
    h.restart_server().await;
    let st = h.wait_finished(job, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let logs = h.logs(job, step, &hosts).await;
    assert_eq!(logs[&hosts[0]].matches("ran-").count(), 1, "{logs:?}");
}

mod a_killed_server_waits_for_its_agents_after_a_restart {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        super::killed_mid_job(super::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        super::killed_mid_job(super::Backend::Postgres).await;
    }
}

/// The server dies (no shutdown code runs) while a task runs; started again, it cannot be
/// reached by the agent for longer than a dead replica's heartbeat lasts, but well within the
/// grace period. Its script ends meanwhile, and a new job is dispatched to the host before
/// it is back. Neither is failed as lost: both results arrive, once, when the agent is back.
async fn killed_mid_job(backend: Backend) {
    let Some(Gated { dir, config, mut server, gate, api, agent: _agent, hosts, db: _db }) = gated_agent(backend, "127.0.0.94", 10).await
    else {
        return;
    };

    let flag = dir.path().join("go");
    let (job, step) = api.execute(&format!("while [ ! -e '{}' ]; do sleep 0.05; done; echo ran-$$", flag.display()), &hosts).await;
    wait_for("the task running", Duration::from_secs(20), || {
        let api = api.clone();
        async move { hosts_of(&api.status(job).await).iter().all(|h| h["status"] == 7) }
    })
    .await;

    gate.set(None);
    server.kill();
    let server = Server::start(config).await;
    let api = Api::new(&server.url);
    // Dispatched while the agent is still away.
    let (job2, step2) = api.execute("echo second-$$", &hosts).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(&flag, b"").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    gate.set(Some(server.addr));

    for (job, step, marker) in [(job, step, "ran-"), (job2, step2, "second-")] {
        wait_for("the job finished", Duration::from_secs(30), || {
            let api = api.clone();
            async move { api.status(job).await["finished"] == true }
        })
        .await;
        let results = api.results(job, step).await;
        let (status, log) = &results[&hosts[0]];
        assert_eq!(*status, 9, "job {job}: the host's task ended {status}, not with its result: {log:?}");
        assert_eq!(log.matches(marker).count(), 1, "job {job}: {log:?}");
    }
}
