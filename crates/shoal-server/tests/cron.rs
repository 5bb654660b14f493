//! Cron jobs: JOB v3's save_cron & co, and the scheduler firing each due time once — on a
//! real agent, across a restart, with missed fires following their cron's policy, and with
//! two replicas on one PostgreSQL.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    save_cron_answers_job_codes,
    a_one_shot_cron_runs_its_plan_on_an_agent,
    a_restart_never_fires_twice_and_missed_fires_follow_the_policy,
    a_fire_claimed_by_a_server_that_died_runs_exactly_once,
    a_fire_runs_as_its_last_editor_with_their_grants_as_they_are,
    a_sealed_value_that_does_not_open_fails_the_fire
);

const SCOPE: (&str, &str) = ("biz", "1");

fn scoped(mut body: Value) -> Value {
    body["bk_scope_type"] = json!(SCOPE.0);
    body["bk_scope_id"] = json!(SCOPE.1);
    body
}

/// A plan of one script step on `hosts` that prints its variables.
fn plan_doc(hosts: &[i64]) -> Value {
    json!({
        "name": "cron-plan",
        "variables": [
            {"name": "WHO", "type": "string", "value": "nobody"},
            {"name": "PW", "type": "password", "value": "plan-default-pw"}
        ],
        "steps": [{"name": "hello", "script": {"content": "#!/bin/bash\necho \"cron ran for $WHO pw=$PW\"", "account": USER,
                   "target": {"host_id_list": hosts}}}],
        "plans": [{"name": "default"}]
    })
}

async fn save(h: &Harness, body: Value) -> Value {
    h.post("save_cron", scoped(body)).await.1
}

async fn detail(h: &Harness, id: i64) -> Value {
    let (_, v) = h.get("get_cron_detail", &format!("bk_scope_type=biz&bk_scope_id=1&id={id}")).await;
    v
}

async fn set_status(h: &Harness, id: i64, status: i32) -> Value {
    h.post("update_cron_status", scoped(json!({"id": id, "status": status}))).await.1
}

/// Jobs a cron started, through `get_job_instance_list`'s `job_cron_id`.
async fn cron_jobs(h: &Harness, id: i64) -> Vec<Value> {
    let mut q = history("1");
    q["job_cron_id"] = json!(id);
    let (_, v) = h.post("get_job_instance_list", q).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"]["data"].as_array().cloned().unwrap_or_default()
}

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or(-1)
}

async fn save_cron_answers_job_codes(mut h: Harness) {
    h.add_agent("127.0.0.91", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plan = h.apply_template(plan_doc(&hosts)).await["plans"][0]["id"].as_i64().unwrap();
    let later = shoal_core::time::now_ms() / 1000 + 3600;

    // Validation, with JOB's codes.
    assert_eq!(code(&save(&h, json!({"name": "n", "expression": "* * * * *"})).await), 1241004, "job_plan_id is required");
    assert_eq!(code(&save(&h, json!({"job_plan_id": plan, "expression": "* * * * *"})).await), 1241004, "name is required");
    assert_eq!(code(&save(&h, json!({"job_plan_id": plan, "name": "n"})).await), 1241007, "a schedule is required");
    assert_eq!(code(&save(&h, json!({"job_plan_id": 0, "name": "n", "expression": "* * * * *"})).await), 1241005);
    assert_eq!(code(&save(&h, json!({"job_plan_id": plan, "name": "x".repeat(61), "expression": "* * * * *"})).await), 1241005);
    for bad in ["? 0 * * *", "0 0 1? * *", "0 0 1 * 1", "* * * *", "0 0 L * *", "99 * * * *"] {
        let v = save(&h, json!({"job_plan_id": plan, "name": "n", "expression": bad})).await;
        assert_eq!(code(&v), 1241010, "{bad}: {v}");
    }
    let v = save(&h, json!({"job_plan_id": plan, "name": "n", "execute_time": 1_000_000})).await;
    assert_eq!(code(&v), 1245006, "an execute time in the past: {v}");
    let v = save(&h, json!({"job_plan_id": plan, "name": "n", "execute_time": later, "execute_time_zone": "Mars/Olympus"})).await;
    assert_eq!(code(&v), 1241010, "{v}");
    let v =
        save(&h, json!({"job_plan_id": plan, "name": "n", "expression": "* * * * *", "global_var_list": [{"name": "NOPE", "value": "1"}]}))
            .await;
    assert_eq!(code(&v), 1241005, "an unknown variable: {v}");
    let v = save(&h, json!({"job_plan_id": plan, "name": "n", "expression": "* * * * *", "missed_policy": "sometimes"})).await;
    assert_eq!(code(&v), 1241005, "{v}");
    let v = save(&h, json!({"job_plan_id": 999_999, "name": "n", "expression": "* * * * *"})).await;
    assert_eq!(code(&v), 1244012, "{v}");
    assert_eq!(code(&save(&h, json!({"id": 999_999, "name": "n"})).await), 1245001);
    assert_eq!(code(&h.post("update_cron_status", scoped(json!({"status": 1}))).await.1), 1241007);
    assert_eq!(code(&h.post("delete_cron", scoped(json!({"id": 999_999}))).await.1), 1245001);
    assert_eq!(code(&detail(&h, 999_999).await), 1245001);

    // Created disabled, in the shape of EsbCronInfoV3DTO (seconds), variables resolved by name;
    // the expression answered in bk-job's form (Quartz's `?` written back as `*`).
    let v = save(
        &h,
        json!({"job_plan_id": plan, "name": "every-five", "expression": "0/5 * * * ?", "execute_time_zone": "Asia/Shanghai",
               "global_var_list": [{"id": 1, "value": "ops"}, {"name": "PW", "value": "cron-secret"}]}),
    )
    .await;
    assert_eq!(code(&v), 0, "{v}");
    let d = &v["data"];
    let id = d["id"].as_i64().unwrap();
    // save_cron writes a paused cron's status as 2 (bk-job's toEsbCronInfoV3Response); the
    // list and the detail write 0 (its toEsbCronInfoV3).
    assert_eq!((d["status"].as_i64(), d["next_fire_time"].as_i64()), (Some(2), None), "a new cron is saved disabled: {d}");
    assert_eq!(detail(&h, id).await["data"]["status"], 0);
    assert_eq!(
        (d["job_plan_id"].as_i64(), d["expression"].as_str(), d["execute_time_zone"].as_str()),
        (Some(plan), Some("0/5 * * * *"), Some("Asia/Shanghai"))
    );
    assert_eq!((d["creator"].as_str(), d["missed_policy"].as_str()), (Some(USER), Some("run_once")));
    let now_s = shoal_core::time::now_ms() / 1000;
    assert!((d["create_time"].as_i64().unwrap() - now_s).abs() < 60, "seconds, not milliseconds: {d}");
    let vars = d["global_var_list"].as_array().unwrap();
    assert_eq!(vars[0], json!({"id": 1, "name": "WHO", "value": "ops", "type": 1, "server": null}));
    assert_eq!((vars[1]["name"].as_str(), vars[1]["value"].as_str(), vars[1]["type"].as_i64()), (Some("PW"), Some("******"), Some(4)));
    assert!(!v.to_string().contains("cron-secret"));

    // Sent back as read (the password masked) with another value changed: the sealed
    // password stays as it was, not the mask.
    let stored_pw = |vars: String| {
        let vars: Vec<Value> = serde_json::from_str(&vars).unwrap();
        vars.into_iter().find(|x| x["name"] == "PW").map(|x| x["value"].clone()).unwrap_or(Value::Null)
    };
    let before = stored_pw(h.shared.store.get_cron(id).await.unwrap().unwrap().variables);
    assert!(before.as_str().is_some_and(|v| v.starts_with("shoal-sealed:")), "{before}");
    let mut read = d["global_var_list"].clone();
    read[0]["value"] = json!("ops-2");
    let v = save(&h, json!({"id": id, "global_var_list": read})).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(v["data"]["global_var_list"][0]["value"], "ops-2", "{v}");
    assert_eq!(stored_pw(h.shared.store.get_cron(id).await.unwrap().unwrap().variables), before);

    // The list (paged, filtered as bk-job), then start and pause.
    let (_, l) = h.get("get_cron_list", "bk_scope_type=biz&bk_scope_id=1&name=five").await;
    assert_eq!((l["data"]["total"].as_i64(), l["data"]["data"][0]["id"].as_i64()), (Some(1), Some(id)), "{l}");
    assert_eq!(l["data"]["data"][0]["global_var_list"], Value::Null, "the list leaves variables out");
    let (_, l) = h.get("get_cron_list", "bk_scope_type=biz&bk_scope_id=1&status=1").await;
    assert_eq!(l["data"]["total"], 0, "{l}");
    let (_, l) = h.get("get_cron_list", &format!("bk_scope_type=biz&bk_scope_id=1&id={id}&start=1")).await;
    assert_eq!((l["data"]["total"].as_i64(), l["data"]["data"].as_array().map(Vec::len)), (Some(1), Some(0)));
    let (_, other) = h.get("get_cron_list", "bk_scope_type=biz&bk_scope_id=2").await;
    assert_eq!(other["data"]["total"], 0, "crons belong to their scope: {other}");

    let r = set_status(&h, id, 1).await;
    assert_eq!(code(&r), 0, "{r}");
    assert_eq!(r["data"]["id"], id);
    assert_eq!(r["data"]["name"], Value::Null, "bk-job answers the id alone");
    let d = detail(&h, id).await;
    assert_eq!((d["data"]["status"].as_i64(), d["data"]["expression"].as_str()), (Some(1), Some("0/5 * * * *")), "{d}");
    let next = d["data"]["next_fire_time"].as_i64().unwrap();
    assert!(next > now_s && next <= now_s + 301 && next % 300 == 0, "next five-minute mark: {next}");
    let (_, l) = h.get("get_cron_list", "bk_scope_type=biz&bk_scope_id=1&status=1").await;
    assert_eq!(l["data"]["total"], 1, "{l}");
    assert_eq!(l["data"]["data"][0]["expression"], "0/5 * * * *", "{l}");
    assert_eq!(code(&set_status(&h, id, 2).await), 0);
    let d = detail(&h, id).await;
    assert_eq!((d["data"]["status"].as_i64(), d["data"]["next_fire_time"].as_i64()), (Some(0), None));

    // Saving a running cron pauses it, as bk-job's saveCron does: started again, then edited.
    assert_eq!(code(&set_status(&h, id, 1).await), 0);
    let v = save(&h, json!({"id": id, "expression": "0 12 * JAN,jul MON-FRI"})).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!((v["data"]["status"].as_i64(), v["data"]["next_fire_time"].as_i64()), (Some(2), None), "{v}");
    assert_eq!(v["data"]["expression"], "0 12 * 1,7 1-5", "names answered as numbers, as bk-job: {v}");
    let d = detail(&h, id).await;
    assert_eq!((d["data"]["status"].as_i64(), d["data"]["next_fire_time"].as_i64()), (Some(0), None), "{d}");
    assert_eq!(d["data"]["expression"], "0 12 * 1,7 1-5", "{d}");
    let (_, l) = h.get("get_cron_list", "bk_scope_type=biz&bk_scope_id=1&status=1").await;
    assert_eq!(l["data"]["total"], 0, "{l}");
    assert_eq!(shoal_server::engine::cron::tick(&h.shared, (next + 86_400 * 40) * 1000).await.unwrap(), 0, "a paused cron fires nothing");

    // Update by id: a one-shot replaces the expression; the plan's variables still apply.
    let v = save(&h, json!({"id": id, "execute_time": later, "missed_policy": "skip"})).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!((v["data"]["expression"].clone(), v["data"]["execute_time"].as_i64()), (Value::Null, Some(later)));
    assert_eq!(v["data"]["missed_policy"], "skip");

    assert_eq!(code(&h.post("delete_cron", scoped(json!({"id": id}))).await.1), 0);
    assert_eq!(code(&detail(&h, id).await), 1245001);
}

async fn a_one_shot_cron_runs_its_plan_on_an_agent(mut h: Harness) {
    h.add_agent("127.0.0.92", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plan = h.apply_template(plan_doc(&hosts)).await["plans"][0]["id"].as_i64().unwrap();
    let at = shoal_core::time::now_ms() / 1000 + 3;
    let v = save(
        &h,
        json!({"job_plan_id": plan, "name": "once", "execute_time": at,
               "global_var_list": [{"name": "WHO", "value": "cron"}, {"name": "PW", "value": "cron-secret"}]}),
    )
    .await;
    assert_eq!(code(&v), 0, "{v}");
    let id = v["data"]["id"].as_i64().unwrap();
    assert_eq!(code(&set_status(&h, id, 1).await), 0);

    wait_for("the cron's job", Duration::from_secs(30), || async { !cron_jobs(&h, id).await.is_empty() }).await;
    let jobs = cron_jobs(&h, id).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!((job["launch_mode"].as_i64(), job["job_plan_id"].as_i64()), (Some(3), Some(plan)), "{job}");
    assert_eq!(job["operator"], USER, "it runs as the cron's creator");
    assert!(job["create_time"].as_i64().unwrap() >= at * 1000, "not before its time: {job}");
    let job_id = job["job_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job_id, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let step = st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
    let logs = h.logs(job_id, step, &hosts).await;
    assert_eq!(logs.values().next().unwrap(), "cron ran for cron pw=******\n", "the cron's values reach the script, masked");

    // A one-shot is done: disabled, its fire recorded with the job.
    let d = detail(&h, id).await["data"].clone();
    assert_eq!((d["status"].as_i64(), d["next_fire_time"].as_i64()), (Some(0), None), "{d}");
    let fires = d["fire_list"].as_array().unwrap();
    assert_eq!(fires.len(), 1, "{d}");
    assert_eq!((fires[0]["outcome"].as_str(), fires[0]["job_instance_id"].as_i64()), (Some("started"), Some(job_id)));
    assert_eq!((fires[0]["due_time"].as_i64(), fires[0]["missed"].as_bool()), (Some(at), Some(false)));
    // Other jobs are not the cron's.
    h.execute("echo manual", &hosts, json!({})).await;
    assert_eq!(cron_jobs(&h, id).await.len(), 1);
}

/// Drives the scheduler with a chosen clock: every minute for two crons, one per policy.
async fn a_restart_never_fires_twice_and_missed_fires_follow_the_policy(h: Harness) {
    // The same store kind again, with a scheduler that looks on its own only at start.
    let backend = if h.config.database_url.is_some() { Backend::Postgres } else { Backend::Sqlite };
    drop(h);
    let mut h = Harness::start_with(backend, |c| c.cron_poll_ms = 3_600_000).await.unwrap();
    h.add_agent("127.0.0.93", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plan = h.apply_template(plan_doc(&hosts)).await["plans"][0]["id"].as_i64().unwrap();
    let mut crons = vec![];
    for policy in ["run_once", "skip"] {
        let v = save(&h, json!({"job_plan_id": plan, "name": policy, "expression": "* * * * *", "missed_policy": policy})).await;
        assert_eq!(code(&v), 0, "{v}");
        let id = v["data"]["id"].as_i64().unwrap();
        assert_eq!(code(&set_status(&h, id, 1).await), 0);
        crons.push(id);
    }
    let (once, skip) = (crons[0], crons[1]);
    let due = detail(&h, once).await["data"]["next_fire_time"].as_i64().unwrap() * 1000;
    assert_eq!(detail(&h, skip).await["data"]["next_fire_time"].as_i64().unwrap() * 1000, due);

    // On time, both fire.
    let started = shoal_server::engine::cron::tick(&h.shared, due + 500).await.unwrap();
    assert_eq!(started, 2);
    // The same moment again, after a restart: nothing fires twice.
    h.restart_server().await;
    assert_eq!(shoal_server::engine::cron::tick(&h.shared, due + 800).await.unwrap(), 0);
    assert_eq!((cron_jobs(&h, once).await.len(), cron_jobs(&h, skip).await.len()), (1, 1));

    // Three minutes with no server: the next due time is found late.
    let late = due + 3 * 60_000 + 5_000;
    assert_eq!(shoal_server::engine::cron::tick(&h.shared, late).await.unwrap(), 1, "run_once runs the missed fire once");
    assert_eq!(shoal_server::engine::cron::tick(&h.shared, late + 1).await.unwrap(), 0);
    assert_eq!((cron_jobs(&h, once).await.len(), cron_jobs(&h, skip).await.len()), (2, 1));
    for (id, outcome) in [(once, "started"), (skip, "skipped")] {
        let d = detail(&h, id).await["data"].clone();
        let fires = d["fire_list"].as_array().unwrap();
        assert_eq!(fires.len(), 2, "{d}");
        assert_eq!((fires[0]["due_time"].as_i64(), fires[0]["missed"].as_bool()), (Some(due / 1000 + 60), Some(true)), "{d}");
        assert_eq!(fires[0]["outcome"], outcome, "{d}");
        assert_eq!(fires[1]["outcome"], "started", "{d}");
        // The next due time is after the late tick, not one of the missed ones.
        assert_eq!(d["next_fire_time"].as_i64().unwrap() * 1000, due + 4 * 60_000, "{d}");
    }
    for job in cron_jobs(&h, once).await {
        let st = h.wait_finished(job["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
        assert_eq!(st["job_instance"]["status"], 3, "{st}");
    }
}

/// The window between claiming a due time and creating its job: a server that claimed a
/// fire and died there left it `claimed` with no job. A scheduler started later runs it,
/// exactly once however many look at once, when the claim is older than
/// `cron_reclaim_secs`; a younger claim may still be creating its job and is left alone.
async fn a_fire_claimed_by_a_server_that_died_runs_exactly_once(h: Harness) {
    let backend = if h.config.database_url.is_some() { Backend::Postgres } else { Backend::Sqlite };
    drop(h);
    let mut h = Harness::start_with(backend, |c| c.cron_poll_ms = 3_600_000).await.unwrap();
    h.add_agent("127.0.0.97", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plan = h.apply_template(plan_doc(&hosts)).await["plans"][0]["id"].as_i64().unwrap();
    let t = shoal_core::time::now_ms() / 1000 + 86_400;
    let v = save(&h, json!({"job_plan_id": plan, "name": "orphan", "execute_time": t})).await;
    let id = v["data"]["id"].as_i64().unwrap();
    assert_eq!(code(&set_status(&h, id, 1).await), 0);

    // What the scheduler of the server that died did: the due time claimed, then nothing.
    let (due, claimed_at) = (t * 1000, t * 1000 + 100);
    let claim = shoal_store::FireClaim {
        cron_id: id,
        due_time: due,
        next: None,
        missed: false,
        skip: false,
        claimer: "replica-that-died",
        now: claimed_at,
    };
    assert!(h.shared.store.claim_cron_fire(&claim).await.unwrap().is_some());
    h.restart_server().await;

    let tick = |now: i64| shoal_server::engine::cron::tick(&h.shared, now);
    assert_eq!(tick(claimed_at + 1_000).await.unwrap(), 0, "a young claim may still be creating its job");
    assert!(cron_jobs(&h, id).await.is_empty());
    let later = claimed_at + 10 * 60_000;
    let (a, b) = tokio::join!(tick(later), tick(later));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "two schedulers at once: one job");
    assert_eq!(tick(later + 60_000).await.unwrap(), 0);
    let jobs = cron_jobs(&h, id).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job_id = jobs[0]["job_instance_id"].as_i64().unwrap();
    assert_eq!(jobs[0]["launch_mode"], 3, "{jobs:?}");
    let d = detail(&h, id).await["data"].clone();
    let fires = d["fire_list"].as_array().unwrap();
    assert_eq!(fires.len(), 1, "{d}");
    assert_eq!((fires[0]["outcome"].as_str(), fires[0]["job_instance_id"].as_i64()), (Some("started"), Some(job_id)), "{d}");
    assert_eq!(fires[0]["due_time"].as_i64(), Some(t), "{d}");
    let st = h.wait_finished(job_id, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
}

/// A Shoal API call as `app`.
async fn shoal_as(h: &Harness, app: &str, secret: &str, path: &str, body: Value) -> Value {
    let auth = json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": USER}).to_string();
    let r = h.http.post(format!("{}/api/shoal/v1/{path}", h.url)).header("X-Bkapi-Authorization", auth).json(&body).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{path}: {v}");
    v["data"].clone()
}

/// A JOB v3 call as `app` (not a gateway: it acts as itself).
async fn call_as(h: &Harness, app: &str, secret: &str, name: &str, body: Value) -> Value {
    let auth = json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": "someone-else"}).to_string();
    let r = h.http.post(format!("{}/api/v3/{name}", h.url)).header("X-Bkapi-Authorization", auth).json(&scoped(body)).send().await.unwrap();
    r.json().await.unwrap()
}

async fn a_fire_runs_as_its_last_editor_with_their_grants_as_they_are(mut h: Harness) {
    h.add_agent("127.0.0.95", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plan = h.apply_template(plan_doc(&hosts)).await["plans"][0]["id"].as_i64().unwrap();
    let secret = shoal_as(&h, APP, SECRET, "apps", json!({"code": "ops"})).await["secret"].as_str().unwrap().to_string();
    for role in ["manage", "run"] {
        shoal_as(&h, APP, SECRET, "grants", json!({"app_code": "ops", "bk_scope_type": "biz", "bk_scope_id": "1", "role": role})).await;
    }
    shoal_as(&h, APP, SECRET, "account_grants", json!({"app_code": "ops", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": USER}))
        .await;
    // Two one-shots far ahead (the scheduler is driven with a chosen clock): one the app
    // creates, one an admin creates and starts and the app then edits.
    let t = shoal_core::time::now_ms() / 1000 + 86_400;
    let v = call_as(&h, "ops", &secret, "save_cron", json!({"job_plan_id": plan, "name": "ops-own", "execute_time": t})).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(v["data"]["creator"], "app:ops", "an app acting as itself creates as itself");
    let own = v["data"]["id"].as_i64().unwrap();
    assert_eq!(code(&call_as(&h, "ops", &secret, "update_cron_status", json!({"id": own, "status": 1})).await), 0);
    let v = save(&h, json!({"job_plan_id": plan, "name": "admins", "execute_time": t + 60})).await;
    let edited = v["data"]["id"].as_i64().unwrap();
    assert_eq!(code(&set_status(&h, edited, 1).await), 0);
    let v = call_as(&h, "ops", &secret, "save_cron", json!({"id": edited, "name": "admins, edited by ops"})).await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(
        (v["data"]["creator"].as_str(), v["data"]["last_modify_user"].as_str(), v["data"]["status"].as_i64()),
        (Some(USER), Some("app:ops"), Some(2)),
        "an edit pauses the cron"
    );
    assert_eq!(code(&call_as(&h, "ops", &secret, "update_cron_status", json!({"id": edited, "status": 1})).await), 0);

    assert_eq!(shoal_server::engine::cron::tick(&h.shared, t * 1000 + 100).await.unwrap(), 1);
    let jobs = cron_jobs(&h, own).await;
    assert_eq!(jobs[0]["operator"], "app:ops", "{jobs:?}");

    // The edited cron runs as its editor, not its admin creator: the app is revoked, so it
    // starts no job, and says why.
    shoal_as(&h, APP, SECRET, "apps/revoke", json!({"code": "ops"})).await;
    assert_eq!(shoal_server::engine::cron::tick(&h.shared, (t + 60) * 1000 + 100).await.unwrap(), 0);
    assert!(cron_jobs(&h, edited).await.is_empty());
    let d = detail(&h, edited).await["data"].clone();
    let fire = &d["fire_list"][0];
    assert_eq!((fire["outcome"].as_str(), fire["job_instance_id"].as_i64()), (Some("failed"), None), "{d}");
    assert!(fire["error"].as_str().unwrap().starts_with("9900403"), "{d}");
}

async fn a_sealed_value_that_does_not_open_fails_the_fire(mut h: Harness) {
    h.add_agent("127.0.0.96", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let plan = h.apply_template(plan_doc(&hosts)).await["plans"][0]["id"].as_i64().unwrap();
    let t = shoal_core::time::now_ms() / 1000 + 86_400;
    let v = save(
        &h,
        json!({"job_plan_id": plan, "name": "pw", "execute_time": t, "global_var_list": [{"name": "PW", "value": "cron-secret"}]}),
    )
    .await;
    let id = v["data"]["id"].as_i64().unwrap();
    assert_eq!(code(&set_status(&h, id, 1).await), 0);
    // The password is sealed at rest; damaged, it must not run as the plan's default instead.
    h.sql("UPDATE crons SET variables = REPLACE(variables, 'shoal-sealed:v2:', 'shoal-sealed:v2:AAAA')").await;
    assert_eq!(shoal_server::engine::cron::tick(&h.shared, t * 1000 + 100).await.unwrap(), 0);
    assert!(cron_jobs(&h, id).await.is_empty());
    let fire = detail(&h, id).await["data"]["fire_list"][0].clone();
    assert_eq!(fire["outcome"], "failed", "{fire}");
    assert!(fire["error"].as_str().unwrap().starts_with("1240002"), "{fire}");
}

/// Two replicas on one PostgreSQL, both looking for due crons every 20 ms: each cron's due
/// time starts one job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_fire_each_due_time_once_on_postgres() {
    let Some(db) = postgres_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str| shoal_server::ServerConfig {
        secret_key_file: Some(dir.path().join("secret-key")),
        audit_key_file: Some(dir.path().join("audit-key")),
        cron_poll_ms: 20,
        ..test_config(dir.path().join(name), Some(db.to_string()))
    };
    let a = Server::start(config("a")).await;
    let b = Server::start(config("b")).await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    api_a.create_account(USER, &current_user()).await;
    let _agent = Agent::start(vec![a.url.clone(), b.url.clone()], dir.path().join("agent"), Agent::facts("127.0.0.94"));
    let store = shoal_store::open(&db).await.unwrap();
    wait_for("the agent's host", Duration::from_secs(30), || {
        let store = store.clone();
        async move { !store.list_hosts(Some(1)).await.unwrap().is_empty() }
    })
    .await;
    let hosts: Vec<i64> = store.list_hosts(Some(1)).await.unwrap().iter().map(|h| h.bk_host_id).collect();
    let http = reqwest::Client::new();
    let applied: Value = http
        .post(format!("{}/api/shoal/v1/templates/apply", a.url))
        .header("X-Bkapi-Authorization", json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": USER}).to_string())
        .json(&json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": plan_doc(&hosts)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plan = applied["data"]["plans"][0]["id"].as_i64().unwrap();

    // Several crons due at the same second, saved and started through either replica.
    let at = shoal_core::time::now_ms() / 1000 + 3;
    let mut ids = vec![];
    for i in 0..4 {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        let d = api
            .post(
                "save_cron",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan, "name": format!("race-{i}"), "execute_time": at}),
            )
            .await;
        let id = d["id"].as_i64().unwrap();
        api.post("update_cron_status", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "id": id, "status": 1})).await;
        ids.push(id);
    }
    let fired = |id: i64| {
        let api = api_b.clone();
        async move { api.post("get_cron_detail", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "id": id})).await["status"] == json!(0) }
    };
    for &id in &ids {
        wait_for("the cron fired", Duration::from_secs(30), || fired(id)).await;
    }
    for &id in &ids {
        let mut q = history("1");
        q["job_cron_id"] = json!(id);
        let jobs = api_a.post("get_job_instance_list", q).await;
        assert_eq!(jobs["total"], 1, "cron {id}: {jobs}");
        let fires = store.cron_fires(id, 10).await.unwrap();
        assert_eq!(fires.len(), 1, "cron {id}: {fires:?}");
        assert_eq!(fires[0].outcome, "started", "{fires:?}");
        let job = fires[0].job_instance_id.unwrap();
        wait_for("the cron's job finished", Duration::from_secs(30), || {
            let api = api_a.clone();
            async move { api.status(job).await["finished"] == json!(true) }
        })
        .await;
        assert_eq!(api_a.status(job).await["job_instance"]["status"], 3);
    }
}
