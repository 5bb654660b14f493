//! End-to-end execution through the JOB v3 API with real agents running real processes, on
//! both stores.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

on_both_stores!(
    success_through_both_path_forms,
    non_zero_exit_fails_the_job,
    timeout_kills_the_whole_tree,
    terminate_stops_job_and_tree,
    stopped_agent_is_310,
    agent_lost_mid_task_is_310,
    start_task_false_then_start,
    callback_is_posted_when_the_job_ends,
    topology_and_dynamic_group_targets,
    output_cap_keeps_head_and_tail,
    server_restart_mid_job_loses_nothing,
);

async fn success_through_both_path_forms(mut h: Harness) {
    h.add_agent("127.0.0.21", None, None, &[]).await;
    h.add_agent("127.0.0.22", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;

    // API gateway form.
    let job = h.execute("echo out-$1; echo err >&2; exit 0", &hosts, json!({"script_param": b64("a b")})).await;
    assert!(job["job_instance_name"].as_str().unwrap().starts_with("API Quick execution script"));
    let st = h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let step = &st["step_instance_list"][0];
    assert_eq!((step["status"].as_i64(), step["type"].as_i64(), step["execute_count"].as_i64()), (Some(3), Some(1), Some(0)));
    for host in hosts_of(&st) {
        assert_eq!((host["status"].as_i64(), host["exit_code"].as_i64(), host["error_code"].as_i64()), (Some(9), Some(0), Some(0)));
        assert!(host["total_time"].as_i64().is_some());
    }
    let logs = h.logs(job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap(), &hosts).await;
    assert_eq!(logs.len(), 2);
    for out in logs.values() {
        assert_eq!(out, "out-a\nerr\n");
    }

    // ESB form, legacy bk_biz_id and ip_list targets, one-host log by cloud+ip.
    let (status, v) = h
        .post_esb(
            "fast_execute_script",
            json!({"bk_biz_id": 1, "script_content": b64("echo esb"), "script_language": 1, "account_alias": USER,
                   "target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "127.0.0.21"}]}, "task_name": "esb job"}),
        )
        .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    assert_eq!(v["data"]["job_instance_name"], "esb job");
    let id = v["data"]["job_instance_id"].as_i64().unwrap();
    let step_id = v["data"]["step_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(id, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3);
    let (_, one) = h
        .post_esb(
            "get_job_instance_ip_log",
            json!({"bk_biz_id": 1, "job_instance_id": id, "step_instance_id": step_id, "bk_cloud_id": 0, "ip": "127.0.0.21"}),
        )
        .await;
    assert_eq!(one["data"]["log_content"], "esb\n", "{one}");
    assert_eq!(one["data"]["log_type"], 1);

    // Job list shows both, newest first.
    let (_, list) = h.get("get_job_instance_list", &history_query("1")).await;
    assert_eq!(list["data"]["total"], 2, "{list}");
    assert_eq!(list["data"]["data"][0]["name"], "esb job");
    assert_eq!(list["data"]["data"][0]["launch_mode"], 2);
    assert_eq!(list["data"]["data"][0]["type"], 1);
}

async fn non_zero_exit_fails_the_job(mut h: Harness) {
    h.add_agent("127.0.0.23", None, None, &[]).await;
    h.add_agent("127.0.0.24", None, None, &[]).await;
    h.wait_connected(2).await;
    let a = h.host_id_of("127.0.0.23").await;
    let b = h.host_id_of("127.0.0.24").await;
    let script = "if [ \"$(hostname -I 2>/dev/null)\" = never ]; then exit 0; fi; echo failing; exit 3";
    let job = h.execute(script, &[a, b], json!({})).await;
    let st = h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 4);
    assert_eq!(st["step_instance_list"][0]["status"], 4);
    for host in hosts_of(&st) {
        assert_eq!((host["status"].as_i64(), host["exit_code"].as_i64()), (Some(104), Some(3)), "{host}");
    }
}

async fn timeout_kills_the_whole_tree(mut h: Harness) {
    h.add_agent("127.0.0.25", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let pidfile = h.dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > {}; sleep 300", pidfile.display());
    let job = h.execute(&script, &hosts, json!({"timeout": 1})).await;
    let st = h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 4);
    assert_eq!(hosts_of(&st)[0]["status"], 102, "{st}");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_for("grandchild to die", Duration::from_secs(5), || async move { !alive(pid) }).await;
}

async fn terminate_stops_job_and_tree(mut h: Harness) {
    h.add_agent("127.0.0.26", None, None, &[]).await;
    h.add_agent("127.0.0.27", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let dir = h.dir.path().join("pids");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!("sleep 300 & echo $! > {}/$$.pid; echo started; sleep 300", dir.display());
    let job = h.execute(&script, &hosts, json!({})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let d = dir.clone();
    wait_for("both scripts running", Duration::from_secs(10), || {
        let d = d.clone();
        async move { std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0) == 2 }
    })
    .await;
    let (_, v) = h
        .post("operate_job_instance", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "operation_code": 1}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["job_instance_id"], id);
    let st = h.wait_finished(id, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 11, "{st}");
    assert_eq!(st["step_instance_list"][0]["status"], 11);
    for host in hosts_of(&st) {
        assert_eq!(host["status"], 403, "{host}");
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let pid: i32 = std::fs::read_to_string(entry.unwrap().path()).unwrap().trim().parse().unwrap();
        wait_for("background child to die", Duration::from_secs(5), || async move { !alive(pid) }).await;
    }
    // A finished job cannot be terminated again.
    let (_, v) = h
        .post("operate_job_instance", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "operation_code": 1}))
        .await;
    assert_eq!(v["code"], 1241003, "{v}");
}

async fn stopped_agent_is_310(mut h: Harness) {
    let i = h.add_agent("127.0.0.28", None, None, &[]).await;
    h.add_agent("127.0.0.29", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let gone = h.host_id_of("127.0.0.28").await;
    h.stop_agent(i).await;
    let g = h.shared.gateway.clone();
    wait_for("agent to disconnect", Duration::from_secs(10), || {
        let g = g.clone();
        async move { !g.is_connected(gone) }
    })
    .await;
    let job = h.execute("echo hi", &hosts, json!({})).await;
    let st = h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 4);
    for host in hosts_of(&st) {
        let want = if host["bk_host_id"].as_i64() == Some(gone) { 310 } else { 9 };
        assert_eq!(host["status"], want, "{host}");
    }
}

async fn agent_lost_mid_task_is_310(mut h: Harness) {
    let i = h.add_agent("127.0.0.30", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo begun; sleep 300", &hosts, json!({})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let step = job["step_instance_id"].as_i64().unwrap();
    let hh = &h;
    let hs = &hosts;
    wait_for(
        "output to arrive",
        Duration::from_secs(10),
        || async move { hh.logs(id, step, hs).await.values().any(|l| l.contains("begun")) },
    )
    .await;
    h.stop_agent(i).await;
    let st = h.wait_finished(id, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 4);
    assert_eq!(hosts_of(&st)[0]["status"], 310, "{st}");
    let logs = h.logs(id, step, &h.host_ids().await).await;
    assert!(logs.values().next().unwrap().contains("begun"), "output before the loss is kept");
}

async fn start_task_false_then_start(mut h: Harness) {
    h.add_agent("127.0.0.31", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo later", &hosts, json!({"start_task": "False"})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let st = h.status(id).await;
    assert_eq!((st["finished"].as_bool(), st["job_instance"]["status"].as_i64()), (Some(false), Some(1)));
    assert_eq!(hosts_of(&st)[0]["status"], 5);
    let op = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": id, "operation_code": 2});
    let (_, v) = h.post("operate_job_instance", op.clone()).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(id, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3);
    let (_, v) = h.post("operate_job_instance", op).await;
    assert_eq!(v["code"], 1241015, "{v}");
}

async fn callback_is_posted_when_the_job_ends(mut h: Harness) {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, String)>(4);
    let app = axum::Router::new().route(
        "/cb",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let _ = tx.send((ct, body)).await;
                // Refuse the JSON attempt, as an old receiver would, to see the form retry.
                axum::http::StatusCode::BAD_REQUEST
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    h.add_agent("127.0.0.32", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo cb", &hosts, json!({"callback_url": cb})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let (ct1, body1) = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    let (ct2, body2) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(ct1, "application/json");
    assert_eq!(ct2, "application/x-www-form-urlencoded");
    assert_eq!(body1, body2);
    let v: serde_json::Value = serde_json::from_str(&body1).unwrap();
    assert_eq!(v["job_instance_id"], id);
    assert_eq!(v["status"], 3);
    assert_eq!(v["step_instances"][0]["step_instance_id"], job["step_instance_id"]);
}

async fn topology_and_dynamic_group_targets(mut h: Harness) {
    h.add_agent("127.0.0.33", Some(10), Some(100), &[("role", "web")]).await;
    h.add_agent("127.0.0.34", Some(10), Some(101), &[("role", "db")]).await;
    h.add_agent("127.0.0.35", Some(11), Some(102), &[("role", "web")]).await;
    h.wait_connected(3).await;
    let run = |target: serde_json::Value| {
        let h = &h;
        async move {
            let (_, v) = h
                .post(
                    "fast_execute_script",
                    json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo t"), "script_language": 1,
                           "account_alias": USER, "target_server": target}),
                )
                .await;
            assert_eq!(v["code"], 0, "{v}");
            let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
            let mut ips: Vec<String> = hosts_of(&st).iter().map(|x| x["ip"].as_str().unwrap().to_string()).collect();
            ips.sort();
            ips
        }
    };
    assert_eq!(run(json!({"topo_node_list": [{"id": 10, "node_type": "set"}]})).await, ["127.0.0.33", "127.0.0.34"]);
    assert_eq!(run(json!({"topo_node_list": [{"id": 102, "node_type": "module"}]})).await, ["127.0.0.35"]);
    assert_eq!(run(json!({"topo_node_list": [{"id": 1, "node_type": "biz"}]})).await.len(), 3);

    let r = h
        .http
        .post(format!("{}/api/shoal/v1/dynamic_groups", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .json(&json!({"bk_scope_type": "biz", "bk_scope_id": "1", "id": "webs", "name": "web servers", "selector": "role=web"}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(run(json!({"dynamic_group_list": [{"id": "webs"}]})).await, ["127.0.0.33", "127.0.0.35"]);
    let (_, v) = h
        .post(
            "fast_execute_script",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo t"), "script_language": 1,
                   "account_alias": USER, "target_server": {"dynamic_group_list": [{"id": "nope"}]}}),
        )
        .await;
    assert_eq!(v["code"], 1211003, "{v}");
}

async fn output_cap_keeps_head_and_tail(h: Harness) {
    // A server with a small cap.
    drop(h);
    let Some(mut h) = Harness::start(Backend::Sqlite).await else { return };
    h.config.output_cap_bytes = 4096;
    h.restart_server().await;
    h.add_agent("127.0.0.36", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo FIRST; for i in $(seq 1 3000); do echo line-$i; done; echo LAST", &hosts, json!({})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    h.wait_finished(id, Duration::from_secs(20)).await;
    let logs = h.logs(id, job["step_instance_id"].as_i64().unwrap(), &hosts).await;
    let out = logs.values().next().unwrap();
    assert!(out.starts_with("FIRST\n"), "{out}");
    assert!(out.trim_end().ends_with("LAST"), "{out}");
    assert!(out.contains("bytes of output dropped"), "{out}");
    assert!(out.len() < 4096 + 200, "{}", out.len());
}

async fn server_restart_mid_job_loses_nothing(mut h: Harness) {
    const HOSTS: usize = 100;
    for i in 0..HOSTS {
        h.add_agent(&format!("127.0.1.{}", i + 1), None, None, &[]).await;
    }
    h.wait_connected(HOSTS).await;
    let hosts = h.host_ids().await;
    assert_eq!(hosts.len(), HOSTS);
    let job = h.execute("echo start-$(hostname); sleep 2; echo done", &hosts, json!({})).await;
    let id = job["job_instance_id"].as_i64().unwrap();
    let step = job["step_instance_id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A hundred agents must find the new server; give them time on a busy machine.
    h.config.agent_lost_grace_secs = 30;
    h.restart_server().await;
    let st = h.wait_finished(id, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let results = hosts_of(&st);
    assert_eq!(results.len(), HOSTS);
    assert!(results.iter().all(|r| r["status"] == 9), "{st}");
    let logs = h.logs(id, step, &hosts).await;
    assert_eq!(logs.len(), HOSTS);
    for (host, out) in logs {
        assert!(out.starts_with("start-") && out.ends_with("done\n") && out.matches("done").count() == 1, "host {host}: {out:?}");
    }
}
