//! Global string variables set by scripts: a plan step's script changes a string variable,
//! the steps after it run with the new value, and `get_job_instance_global_var_value`
//! answers each script step's values as they stood after it (bk-job's shape). Passwords,
//! arrays and host lists are never taken from a script nor reported. Real server, real
//! agents, on both stores.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shoal_proto::agent::{AgentMsg, ExitReason, RunTask, ServerMsg, TaskExit};

on_both_stores!(
    a_script_sets_a_variable_for_the_steps_after_it,
    values_survive_an_agent_restart_between_exit_and_ack,
    the_server_bounds_and_masks_what_an_agent_reports
);

fn steps_of(st: &Value) -> Vec<i64> {
    st["step_instance_list"].as_array().unwrap().iter().map(|s| s["step_instance_id"].as_i64().unwrap()).collect()
}

async fn run_plan(h: &Harness, doc: Value) -> i64 {
    let plan = h.apply_template(doc).await["plans"][0]["id"].as_i64().unwrap();
    let (_, r) = h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan})).await;
    assert_eq!(r["code"], 0, "{r}");
    r["data"]["job_instance_id"].as_i64().unwrap()
}

async fn var_values(h: &Harness, job: i64) -> Value {
    let (_, v) = h.get("get_job_instance_global_var_value", &format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job}")).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"].clone()
}

fn strings(pairs: &[(&str, &str)]) -> Value {
    pairs.iter().map(|(n, v)| json!({"name": n, "value": v, "type": 1})).collect()
}

async fn a_script_sets_a_variable_for_the_steps_after_it(mut h: Harness) {
    h.add_agent("127.0.0.61", None, None, &[]).await;
    h.add_agent("127.0.0.62", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    // Each host's script can tell which task it is by its private directory's name.
    let whoami = r#"$(basename "$(dirname "$SHOAL_VARS_FILE")")"#;
    let doc = json!({
        "name": "script-vars",
        "variables": [
            {"name": "VERSION", "type": "string", "value": "1.0"},
            {"name": "NOTE", "type": "string", "value": "keep"},
            {"name": "TOKEN", "type": "password", "value": "s3cret-token"},
            {"name": "PORTS", "type": "index_array", "value": "80 443"},
            {"name": "TARGETS", "type": "host_list", "server": {"host_id_list": hosts}}
        ],
        "steps": [
            {"name": "set", "script": {"content": format!("echo \"was $VERSION\"\nVERSION=2.0\nTOKEN=changed\nPORTS=(1)\nLAST={whoami}\n"),
                                       "account": USER, "target": {"variable": "TARGETS"}}},
            {"name": "use", "script": {"content": format!("echo \"v=$VERSION\"\nNOTE=\"by-{whoami}\"\n"), "account": USER, "target": {"variable": "TARGETS"}}},
            {"name": "show", "script": {"content": "echo \"v=$VERSION n=$NOTE t=$TOKEN p=${PORTS[*]}\"\n", "account": USER, "target": {"host_id_list": [hosts[1]]}}}
        ],
        "plans": [{"name": "default"}]
    });
    let job = run_plan(&h, doc).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let steps = steps_of(&st);
    let logs = h.logs(job, steps[0], &hosts).await;
    assert!(logs.values().all(|l| l.trim() == "was 1.0"), "{logs:?}");
    let logs = h.logs(job, steps[1], &hosts).await;
    assert!(logs.values().all(|l| l.trim() == "v=2.0"), "the next step sees what the script left: {logs:?}");
    // The step's value is the one set by the host with the lowest id.
    let note = format!("by-{}-0-{}.d", steps[1], hosts[0]);
    let logs = h.logs(job, steps[2], &hosts[1..]).await;
    assert_eq!(logs[&hosts[1]].trim(), format!("v=2.0 n={note} t=****** p=80 443"), "a password or array a script changed is not carried");

    let got = var_values(&h, job).await;
    let want = json!({"job_instance_id": job, "step_instance_var_list": [
        {"step_instance_id": steps[0], "global_var_list": strings(&[("VERSION", "2.0"), ("NOTE", "keep")])},
        {"step_instance_id": steps[1], "global_var_list": strings(&[("VERSION", "2.0"), ("NOTE", &note)])},
        {"step_instance_id": steps[2], "global_var_list": strings(&[("VERSION", "2.0"), ("NOTE", &note)])}
    ]});
    assert_eq!(got, want);
    let text = got.to_string();
    assert!(!text.contains("TOKEN") && !text.contains("changed") && !text.contains("PORTS") && !text.contains("LAST"), "{text}");
}

/// The agent keeps the values with the exit in its outbox: an agent restarted after the
/// script ended and before the server acknowledged its exit resends them, and they count
/// once.
async fn values_survive_an_agent_restart_between_exit_and_ack(mut h: Harness) {
    let ip = "127.0.0.63";
    h.add_agent(ip, None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of(ip).await;
    let marks = h.dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let go = marks.join("go");
    let started = marks.join("started");
    let first = format!(
        "touch {started}\nwhile [ ! -e {go} ]; do sleep 0.05; done\nVERSION=after-restart\n",
        started = started.display(),
        go = go.display()
    );
    let doc = json!({
        "name": "restart-vars",
        "variables": [{"name": "VERSION", "type": "string", "value": "1.0"}],
        "steps": [
            {"name": "wait", "script": {"content": first, "account": USER, "target": {"host_id_list": [host]}}},
            {"name": "use", "script": {"content": "echo \"v=$VERSION\"\n", "account": USER, "target": {"host_id_list": [host]}}}
        ],
        "plans": [{"name": "default"}]
    });
    let job = run_plan(&h, doc).await;
    let steps = steps_of(&h.status(job).await);
    wait_for("the first script to start", Duration::from_secs(30), || {
        let started = started.clone();
        async move { started.exists() }
    })
    .await;
    // The server goes away; the script ends; its exit (with the value) waits in the outbox.
    h.stop_server().await;
    std::fs::write(&go, b"").unwrap();
    let exit = h.agents[0].state_dir.join("outbox").join(format!("{}-0-{host}", steps[0])).join("exit.json");
    wait_for("the exit in the agent's outbox", Duration::from_secs(30), || {
        let exit = exit.clone();
        async move { std::fs::read_to_string(&exit).is_ok_and(|t| t.contains("after-restart")) }
    })
    .await;
    // The agent restarts (same state dir), then the server comes back.
    h.stop_agent(0).await;
    h.add_agent(ip, None, None, &[]).await;
    h.restart_server().await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    assert_eq!(h.logs(job, steps[1], &[host]).await[&host].trim(), "v=after-restart");
    let outputs = h.shared.store.step_var_outputs(job).await.unwrap();
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!((outputs[0].step_instance_id, outputs[0].name.as_str(), outputs[0].value.as_str()), (steps[0], "VERSION", "after-restart"));
    let got = var_values(&h, job).await;
    assert_eq!(got["step_instance_var_list"][0]["global_var_list"], strings(&[("VERSION", "after-restart")]), "{got}");
}

async fn next_run(ws: &mut shoal_agent::session::connect::Ws) -> RunTask {
    loop {
        match raw_agent::next_msg(ws).await {
            Some(ServerMsg::Run(r)) => return r,
            Some(_) => continue,
            None => panic!("no task sent to the agent"),
        }
    }
}

fn exit_of(run: &RunTask, vars: &[(&str, String)]) -> AgentMsg {
    let now = shoal_core::time::now_ms();
    AgentMsg::Exit(TaskExit {
        key: run.key,
        reason: ExitReason::Exited,
        exit_code: Some(0),
        start_ms: now,
        end_ms: now,
        chunks: 0,
        dropped_bytes: 0,
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    })
}

/// Whatever an agent sends: a plan's password is masked in a value as in output, a
/// password or unknown name is never taken, and more than 64 KiB is dropped whole.
async fn the_server_bounds_and_masks_what_an_agent_reports(h: Harness) {
    let (mut rogue, m) = raw_agent::greet(&h, raw_agent::hello("vars-rogue", "127.0.0.64", Some(&"v".repeat(64)))).await;
    let host = match m {
        Some(ServerMsg::Welcome(w)) => w.bk_host_id,
        other => panic!("the agent should enrol: {other:?}"),
    };
    let step = |name: &str| json!({"name": name, "script": {"content": "true\n", "account": USER, "target": {"host_id_list": [host]}}});
    let doc = json!({
        "name": "rogue-vars",
        "variables": [
            {"name": "V", "type": "string", "value": "1"},
            {"name": "W", "type": "string", "value": "1"},
            {"name": "TOKEN", "type": "password", "value": "hunter2-pw"}
        ],
        "steps": [step("one"), step("two"), step("three")],
        "plans": [{"name": "default"}]
    });
    let job = run_plan(&h, doc).await;
    let run = next_run(&mut rogue).await;
    let sent = [("V", "has hunter2-pw inside".to_string()), ("TOKEN", "leak".to_string()), ("NOT_A_VAR", "x".to_string())];
    raw_agent::send(&mut rogue, &exit_of(&run, &sent)).await;
    let run = next_run(&mut rogue).await;
    let script = String::from_utf8_lossy(&run.script).into_owned();
    assert!(script.contains("V='has ****** inside'") && script.contains("W='1'"), "{script}");
    assert!(script.contains("TOKEN='hunter2-pw'") && !script.contains("leak") && !script.contains("NOT_A_VAR"), "{script}");
    // Over the bound: none of it.
    raw_agent::send(&mut rogue, &exit_of(&run, &[("W", "x".repeat(64 * 1024))])).await;
    let run = next_run(&mut rogue).await;
    assert!(String::from_utf8_lossy(&run.script).contains("W='1'"));
    raw_agent::send(&mut rogue, &exit_of(&run, &[])).await;
    let st = h.wait_finished(job, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let list = var_values(&h, job).await["step_instance_var_list"].clone();
    let after = strings(&[("V", "has ****** inside"), ("W", "1")]);
    assert_eq!(
        list.as_array().unwrap().iter().map(|s| s["global_var_list"].clone()).collect::<Vec<_>>(),
        vec![after.clone(), after.clone(), after]
    );
}
