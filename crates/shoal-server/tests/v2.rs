//! The JOB v2 ESB API and the auth forms BlueKing callers send, replayed from the callers'
//! code against a real server and real agents:
//! - bk-nodeman `apps/backend/agent/tasks.py::collect_log`: v2 `fast_execute_script` with v2
//!   fields mixed with a v3 `target_server`, then v2 `get_job_instance_log` polled until
//!   `data[0].status == 3`, reading `data[0].step_results[0].ip_logs[0].log_content` — through
//!   the ESB path (`/api/c/compapi/v2/job/<name>/`), bk-job's gateway
//!   (`/api/job/v2/job-execute/<name>`) and the backend path (`/esb/api/v2/<name>`);
//! - bk-sops' node-log view (`get_job_instance_log` by GET, the whole envelope shown);
//! - v2 `get_job_instance_status` / `get_step_instance_status`;
//! - v2 `fast_execute_script`'s `bk_callback_url` called back when the job ends;
//! - v2 `get_job_instance_log` with hosts in more than one (status, tag) group, and on file
//!   steps (each host's file log text, as bk-job's `FileExecuteObjectLogContent`);
//! - `access_token` accepted in the header, body and query; `bk_token` / `bk_ticket` refused.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn with_credentials(mut body: Value) -> Value {
    body["bk_app_code"] = json!(APP);
    body["bk_app_secret"] = json!(SECRET);
    body["bk_username"] = json!(USER);
    body
}

/// POST to the ESB v2 path with credentials in the body, as bk-nodeman's `client_v2` does.
async fn v2_post(h: &Harness, name: &str, body: Value) -> (u16, Value) {
    let r = h.http.post(format!("{}/api/c/compapi/v2/job/{name}/", h.url)).json(&with_credentials(body)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// GET on the ESB v2 path with everything in the query string.
async fn v2_get(h: &Harness, name: &str, query: &str) -> (u16, Value) {
    let url = format!("{}/api/c/compapi/v2/job/{name}/?{query}&bk_app_code={APP}&bk_app_secret={SECRET}&bk_username={USER}", h.url);
    let r = h.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `yyyy-MM-dd HH:mm:ss`, as bk-job's v2 answers write times.
fn is_v2_time(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    s.len() == 19
        && s.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        })
}

/// The path forms a v2 call arrives on.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// ESB: `/api/c/compapi/v2/job/<name>/`, credentials in the body (bk-nodeman's `client_v2`).
    Esb,
    /// bk-job's own gateway: `/api/job/v2/<module>/<name>`, credentials in the header.
    JobGateway,
    /// The backend path the gateway rewrites to: `/esb/api/v2/<name>`.
    Backend,
}

const VIAS: [Via; 3] = [Via::Esb, Via::JobGateway, Via::Backend];

/// POST a v2 call through `via`.
async fn v2_via(h: &Harness, via: Via, module: &str, name: &str, body: Value) -> (u16, Value) {
    let r = match via {
        Via::Esb => return v2_post(h, name, body).await,
        Via::JobGateway => h.http.post(format!("{}/api/job/v2/{module}/{name}", h.url)),
        Via::Backend => h.http.post(format!("{}/esb/api/v2/{name}", h.url)),
    };
    let r = r.header("X-Bkapi-Authorization", h.auth_header()).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// bk-nodeman's poll: `get_job_instance_log` until the first step's status is 3 (success).
async fn poll_log_until_success(h: &Harness, job_id: i64) -> Value {
    poll_log_via(h, Via::Esb, job_id).await
}

async fn poll_log_via(h: &Harness, via: Via, job_id: i64) -> Value {
    for _ in 0..600 {
        let (status, v) = v2_via(h, via, "job-execute", "get_job_instance_log", json!({"bk_biz_id": 1, "job_instance_id": job_id})).await;
        assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{via:?}: {v}");
        if v["data"][0]["status"] == 3 {
            return v["data"].clone();
        }
        assert!(!matches!(v["data"][0]["status"].as_i64(), Some(4 | 5 | 9 | 10 | 11)), "the job failed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job_id} did not succeed");
}

/// bk-nodeman's `collect_log` through `via`: v2 `fast_execute_script` with v2 fields mixed
/// with a v3 `target_server`, the log polled, then the same job through v2 status.
async fn nodeman_loop(h: &Harness, via: Via, host_id: i64) {
    // The p-agent log collector of bk-nodeman: a Python script with its own shebang, its
    // arguments (a password among them) sensitive, the account named by its OS user.
    let script = "#!/opt/py36/bin/python\n# -*- encoding:utf-8 -*-\nimport sys\nprint('collected <setup_agent.sh.debug> & ' + ' '.join(sys.argv[1:]))\n";
    let params = "-l 10.0.2.9 -p 22 -a root -i s3cret -d http://nodeman/download/";
    let body = json!({
        "bk_biz_id": 1,
        "script_content": b64(script),
        "script_param": b64(params),
        "script_timeout": 300,
        "account": current_user(),
        "is_param_sensitive": 1,
        "script_type": 4,
        "target_server": {"ip_list": [{"bk_cloud_id": 0, "ip": "10.0.2.1", "host_id": host_id}]},
    });
    let (status, v) = v2_via(h, via, "job-execute", "fast_execute_script", body).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{via:?}: {v}");
    let job_id = v["data"]["job_instance_id"].as_i64().unwrap();
    assert!(v["data"]["step_instance_id"].as_i64().is_some(), "{v}");
    let data = poll_log_via(h, via, job_id).await;
    let output = data[0]["step_results"][0]["ip_logs"][0]["log_content"].as_str().unwrap();
    // The arguments were sensitive: they reach the script but never its log.
    assert!(output.starts_with("collected &lt;setup_agent.sh.debug&gt; &amp; ") && output.ends_with('\n'), "{output}");
    assert!(!output.contains("s3cret") && output.contains("******"), "{output}");
    let step = &data[0];
    assert_eq!(step["is_finished"], true, "{step}");
    let group = &step["step_results"][0];
    assert_eq!((group["ip_status"].as_i64(), group["tag"].as_str()), (Some(9), Some("")), "{group}");
    let ip_log = &group["ip_logs"][0];
    assert_eq!((ip_log["ip"].as_str(), ip_log["bk_cloud_id"].as_i64(), ip_log["exit_code"].as_i64()), (Some("10.0.2.1"), Some(0), Some(0)));
    assert_eq!(ip_log["execute_count"], 0, "{ip_log}");
    assert!(is_v2_time(&ip_log["start_time"]) && is_v2_time(&ip_log["end_time"]), "{ip_log}");
    assert!(ip_log["total_time"].as_f64().is_some_and(|t| t >= 0.0), "{ip_log}");

    // The same job through v2 status.
    let (_, v) = v2_via(h, via, "job-execute", "get_job_instance_status", json!({"bk_biz_id": 1, "job_instance_id": job_id})).await;
    assert_eq!(v["code"], 0, "{via:?}: {v}");
    let st = &v["data"];
    assert_eq!(st["is_finished"], true, "{st}");
    let job = &st["job_instance"];
    assert_eq!((job["job_instance_id"].as_i64(), job["status"].as_i64(), job["bk_job_id"].as_i64()), (Some(job_id), Some(3), Some(-1)));
    assert_eq!((job["bk_biz_id"].as_i64(), job["bk_scope_type"].as_str(), job["start_way"].as_i64()), (Some(1), Some("biz"), Some(2)));
    assert!(is_v2_time(&job["create_time"]), "{job}");
    let step = &st["blocks"][0]["step_instances"][0];
    assert_eq!(job["current_step_instance_id"], step["step_instance_id"]);
    assert_eq!(step["step_ip_status"], json!([{"ip": "10.0.2.1", "bk_cloud_id": 0, "status": 9}]), "{step}");
    assert_eq!((step["status"].as_i64(), step["step_id"].as_i64(), step["type"].as_i64()), (Some(3), Some(-1), Some(1)));

    let step_id = step["step_instance_id"].as_i64().unwrap();
    let (_, v) = v2_via(
        h,
        via,
        "job-execute",
        "get_step_instance_status",
        json!({"bk_biz_id": 1, "job_instance_id": job_id, "step_instance_id": step_id}),
    )
    .await;
    assert_eq!(v["code"], 0, "{via:?}: {v}");
    assert_eq!(v["data"]["is_finished"], true);
    assert_eq!(v["data"]["step_instance_detail"]["target_ips"], "0:10.0.2.1");
    let groups = v["data"]["step_instance_analyse_result"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!((groups[0]["result_type"].as_i64(), groups[0]["count"].as_i64()), (Some(9), Some(1)));
    assert_eq!(groups[0]["ip_list"][0]["bk_host_id"].as_i64(), Some(host_id));
}

async fn nodeman_collect_log(mut h: Harness) {
    h.add_agent("10.0.2.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let host_id = h.host_id_of("10.0.2.1").await;
    for via in VIAS {
        nodeman_loop(&h, via, host_id).await;
    }
    // What bk-job refuses, in its order and with its field names.
    let base = json!({"bk_biz_id": 1, "script_content": b64("echo hi"), "script_type": 1, "account": current_user(),
                      "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.2.1"}]});
    let mut no_type = base.clone();
    no_type["script_type"] = json!(9);
    let mut no_target = base.clone();
    no_target.as_object_mut().unwrap().remove("ip_list");
    let mut no_account = base.clone();
    no_account.as_object_mut().unwrap().remove("account");
    let mut unknown_account = base.clone();
    unknown_account["account"] = json!("nobody-here");
    for (body, field, code) in [
        (no_type, "script_type", 1241005),
        (no_target, "ip_list|custom_query_id|target_server", 1241007),
        (no_account, "account", 1241004),
        (unknown_account, "nobody-here", 1244003),
    ] {
        let (status, v) = v2_post(&h, "fast_execute_script", body).await;
        assert_eq!((status, v["result"].as_bool(), v["code"].as_i64()), (200, Some(false), Some(code)), "{v}");
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
    }
    // The top-level v2 `ip_list` alone is a target too.
    let (_, v) = v2_post(&h, "fast_execute_script", base).await;
    assert_eq!(v["code"], 0, "{v}");
}

async fn sops_node_log(mut h: Harness) {
    h.add_agent("10.0.3.1", None, None, &[]).await;
    h.add_agent("10.0.3.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo '<b>node</b> & done'", &hosts, json!({})).await;
    let job_id = job["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job_id, Duration::from_secs(60)).await;
    // bk-sops `get_job_instance_log`: `client.job.get_job_instance_log({bk_scope_type,
    // bk_scope_id, bk_biz_id, job_instance_id})` (older releases send `bk_biz_id` only), the
    // envelope handed to the page as is.
    let (_, old_form) = v2_get(&h, "get_job_instance_log", &format!("bk_biz_id=1&job_instance_id={job_id}")).await;
    let (status, v) =
        v2_get(&h, "get_job_instance_log", &format!("bk_scope_type=biz&bk_scope_id=1&bk_biz_id=1&job_instance_id={job_id}")).await;
    assert_eq!(old_form["data"], v["data"]);
    assert_eq!((status, v["result"].as_bool(), v["code"].as_i64()), (200, Some(true), Some(0)), "{v}");
    let steps = v["data"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{v}");
    assert_eq!((steps[0]["status"].as_i64(), steps[0]["is_finished"].as_bool()), (Some(3), Some(true)));
    assert_eq!(steps[0]["step_instance_id"], job["step_instance_id"]);
    // Both hosts share a status and a tag: one group of two.
    let groups = steps[0]["step_results"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    let mut ips: Vec<&str> = groups[0]["ip_logs"].as_array().unwrap().iter().map(|l| l["ip"].as_str().unwrap()).collect();
    ips.sort_unstable();
    assert_eq!(ips, ["10.0.3.1", "10.0.3.2"]);
    for l in groups[0]["ip_logs"].as_array().unwrap() {
        assert_eq!(l["log_content"], "&lt;b&gt;node&lt;/b&gt; &amp; done\n", "{l}");
    }
    // A job of another business does not exist for this one; a missing id is named.
    let (_, v) = v2_get(&h, "get_job_instance_log", &format!("bk_biz_id=2&job_instance_id={job_id}")).await;
    assert_eq!(v["result"], false, "{v}");
    let (_, v) = v2_get(&h, "get_job_instance_log", "bk_biz_id=1").await;
    assert_eq!((v["result"].as_bool(), v["code"].as_i64()), (Some(false), Some(1241007)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("job_instance_id"), "{v}");
    // The backend path form answers the same.
    let r = h
        .http
        .post(format!("{}/esb/api/v2/get_job_instance_status", h.url))
        .json(&with_credentials(json!({"bk_biz_id": 1, "job_instance_id": job_id})))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["code"].as_i64(), v["data"]["is_finished"].as_bool()), (Some(0), Some(true)), "{v}");
    // Not served yet: said so, in JOB's envelope.
    let (status, v) = v2_post(&h, "fast_execute_sql", json!({"bk_biz_id": 1})).await;
    assert_eq!((status, v["result"].as_bool()), (404, Some(false)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("fast_execute_sql"), "{v}");
    // v2 accounts: the OS accounts of the business, with bk-job's fields.
    let (_, v) = v2_get(&h, "get_os_account", "bk_biz_id=1").await;
    assert_eq!(v["code"], 0, "{v}");
    let a = v["data"].as_array().unwrap().iter().find(|a| a["alias"] == USER).cloned().unwrap();
    assert_eq!((a["account"].as_str(), a["os"].as_str(), a["bk_biz_id"].as_i64()), (Some(current_user().as_str()), Some("Linux"), Some(1)));
    assert!(is_v2_time(&a["create_time"]), "{a}");
}

/// POST to a Shoal API path as the test app.
async fn shoal_post(h: &Harness, path: &str, body: Value) -> Value {
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/{path}", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .json(&body)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

async fn access_token_and_login_tickets(h: Harness) {
    let v = shoal_post(&h, "apps/access_tokens", json!({"expires_in": 3600})).await;
    assert_eq!(v["code"], 0, "{v}");
    let token = v["data"]["access_token"].as_str().unwrap().to_string();
    let token_id = v["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["data"]["app_code"], APP);
    // Only its hash is kept.
    let listed = h
        .http
        .get(format!("{}/api/shoal/v1/apps/access_tokens", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .send()
        .await
        .unwrap();
    let listed: Value = listed.json().await.unwrap();
    assert!(listed["data"].as_array().unwrap().iter().any(|t| t["id"] == token_id.as_str()), "{listed}");
    assert!(!listed.to_string().contains(&token), "{listed}");

    let get_accounts = |header: Option<Value>, query: String| {
        let mut r = h.http.get(format!("{}/api/v3/get_account_list?bk_biz_id=1{query}", h.url));
        if let Some(hd) = header {
            r = r.header("X-Bkapi-Authorization", hd.to_string());
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // The header, the query string, and (below) the body.
    let (status, v) = get_accounts(Some(json!({"access_token": token})), String::new()).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    let (status, v) = get_accounts(None, format!("&access_token={token}")).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    let r = h
        .http
        .post(format!("{}/api/c/compapi/v2/job/get_os_account/", h.url))
        .json(&json!({"access_token": token, "bk_biz_id": 1}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
    assert!(v["data"].as_array().unwrap().iter().any(|a| a["alias"] == USER), "{v}");
    // With a bk_username the usual rules of the app apply; with another app's code it is refused.
    let (status, v) = get_accounts(Some(json!({"access_token": token, "bk_username": USER})), String::new()).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    let (status, v) = get_accounts(Some(json!({"access_token": token, "bk_app_code": "other-app"})), String::new()).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)), "{v}");
    let (status, v) = get_accounts(Some(json!({"access_token": "shoal_at_made-up"})), String::new()).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)), "{v}");

    // A login ticket alone is refused, naming what to send instead: in the body, the header,
    // the query string or a cookie.
    let check_refused = |status: u16, v: &Value| {
        assert_eq!((status, v["result"].as_bool(), v["code"].as_i64()), (401, Some(false), Some(1240005)), "{v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains("bk_token") && m.contains("access_token") && m.contains("bk_app_secret"), "{v}");
    };
    let r = h
        .http
        .post(format!("{}/api/c/compapi/v2/job/get_job_instance_log/", h.url))
        .json(&json!({"bk_token": "abc", "bk_biz_id": 1, "job_instance_id": 1}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    check_refused(status, &r.json().await.unwrap());
    let (status, v) = get_accounts(Some(json!({"bk_app_code": APP, "bk_ticket": "abc"})), String::new()).await;
    check_refused(status, &v);
    let (status, v) = get_accounts(None, format!("&bk_app_code={APP}&bk_token=abc&bk_username={USER}")).await;
    check_refused(status, &v);
    let r = h
        .http
        .get(format!("{}/api/v3/get_account_list?bk_biz_id=1", h.url))
        .header("Cookie", "bk_token=abc; lang=en")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    check_refused(status, &r.json().await.unwrap());
    // App credentials with a ticket in place of the user's name: the user is what is missing.
    let (status, v) = get_accounts(None, format!("&bk_app_code={APP}&bk_app_secret={SECRET}&bk_token=abc")).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1247002)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("bk_username"), "{v}");
    // App credentials sent with a ticket still work (the ticket is not needed).
    let (status, v) = get_accounts(None, format!("&bk_app_code={APP}&bk_app_secret={SECRET}&bk_username={USER}&bk_token=abc")).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");

    // Expired, then revoked: refused on the next call.
    h.sql(&format!("UPDATE app_access_tokens SET expires_at = 1 WHERE id = '{token_id}'")).await;
    let (status, v) = get_accounts(Some(json!({"access_token": token})), String::new()).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)), "{v}");
    let v = shoal_post(&h, "apps/access_tokens", json!({})).await;
    assert_eq!(v["data"]["expires_in"].as_i64(), Some(86400), "{v}");
    let second = v["data"]["access_token"].as_str().unwrap().to_string();
    let second_id = v["data"]["id"].clone();
    let (_, v) = get_accounts(Some(json!({"access_token": second})), String::new()).await;
    assert_eq!(v["code"], 0, "{v}");
    let v = shoal_post(&h, "apps/access_tokens/revoke", json!({"id": second_id})).await;
    assert_eq!(v["code"], 0, "{v}");
    let (status, v) = get_accounts(Some(json!({"access_token": second})), String::new()).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)), "{v}");
    // Lifetimes are bounded.
    let v = shoal_post(&h, "apps/access_tokens", json!({"expires_in": 100 * 86400})).await;
    assert_eq!(v["result"], false, "{v}");
}

/// The v2 log text of the only host of a finished job's first step.
async fn only_log(h: &Harness, job_id: i64) -> String {
    let data = poll_log_until_success(h, job_id).await;
    data[0]["step_results"][0]["ip_logs"][0]["log_content"].as_str().unwrap().to_string()
}

fn biz(extra: Value) -> Value {
    let mut body = json!({"bk_scope_type": "biz", "bk_scope_id": "1"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Scripts, plans and job operations through v2: a v2 script is a script's online version,
/// a v2 job is a plan.
async fn library_and_plans(mut h: Harness) {
    h.add_agent("10.0.4.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let host = h.host_id_of("10.0.4.1").await;

    let (_, v) = h
        .post("create_script", biz(json!({"name": "hello", "script_language": 1, "content": b64("echo \"v2 <$1>\""), "version": "1.0"})))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let (script_id, version_id) = (v["data"]["script_id"].clone(), v["data"]["id"].as_i64().unwrap());
    let (_, v) = h.post("publish_script_version", biz(json!({"script_id": script_id, "script_version_id": version_id}))).await;
    assert_eq!(v["code"], 0, "{v}");
    // A script with only a draft is not listed.
    let (_, v) =
        h.post("create_script", biz(json!({"name": "draft-only", "script_language": 1, "content": b64("true"), "version": "1"}))).await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = h
        .post("create_public_script", json!({"name": "shared", "script_language": 1, "content": b64("echo shared"), "version": "p1"}))
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let (public_script, public_version) = (v["data"]["script_id"].clone(), v["data"]["id"].as_i64().unwrap());
    let (_, v) = h.post("publish_public_script_version", json!({"script_id": public_script, "script_version_id": public_version})).await;
    assert_eq!(v["code"], 0, "{v}");

    let (_, v) = v2_get(&h, "get_script_list", "bk_biz_id=1").await;
    assert_eq!(v["code"], 0, "{v}");
    let page = &v["data"];
    assert_eq!((page["start"].as_i64(), page["total_record_size"].as_i64()), (Some(0), Some(1)), "{v}");
    let s = &page["data"][0];
    assert_eq!((s["id"].as_i64(), s["name"].as_str(), s["version"].as_str()), (Some(version_id), Some("hello"), Some("1.0")));
    assert_eq!((s["public"].as_bool(), s["type"].as_i64(), s["bk_biz_id"].as_i64()), (Some(false), Some(1), Some(1)));
    assert_eq!(s["content"], Value::Null);
    assert!(is_v2_time(&s["create_time"]), "{s}");
    let (_, v) = v2_get(&h, "get_script_list", "bk_biz_id=1&return_script_content=true&start=0&length=5").await;
    assert_eq!((v["data"]["page_size"].as_i64(), v["data"]["data"][0]["content"].as_str()), (Some(5), Some("echo \"v2 <$1>\"")), "{v}");
    for (name, query) in [("get_public_script_list", "bk_biz_id=1"), ("get_script_list", "bk_biz_id=1&is_public=true")] {
        let (_, v) = v2_get(&h, name, query).await;
        let rows = v["data"]["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{v}");
        assert_eq!(
            (rows[0]["id"].as_i64(), rows[0]["public"].as_bool(), rows[0]["bk_biz_id"].clone()),
            (Some(public_version), Some(true), Value::Null)
        );
    }
    let (_, v) = v2_get(&h, "get_script_detail", &format!("bk_biz_id=1&id={version_id}")).await;
    assert_eq!((v["data"]["name"].as_str(), v["data"]["content"].as_str()), (Some("hello"), Some("echo \"v2 <$1>\"")), "{v}");
    let (_, v) = v2_get(&h, "get_script_detail", "bk_biz_id=1").await;
    assert_eq!(v["code"], 1241007, "{v}");

    // v2's `script_id` is a version id.
    let (_, v) = v2_post(
        &h,
        "fast_execute_script",
        json!({"bk_biz_id": 1, "script_id": version_id, "script_param": b64("x"), "account": USER,
                                                           "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.4.1"}]}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(only_log(&h, v["data"]["job_instance_id"].as_i64().unwrap()).await, "v2 &lt;x&gt;\n");

    // Plans.
    let doc = json!({
        "name": "v2-plans",
        "variables": [
            {"name": "TARGETS", "type": "host_list", "server": {"host_id_list": [host]}},
            {"name": "NOTE", "type": "string", "value": "hi"}
        ],
        "steps": [{"name": "say", "script": {"content": "echo note=$NOTE", "account": USER, "target": {"variable": "TARGETS"}}}],
        "plans": [{"name": "nightly"}]
    });
    let plan = h.apply_template(doc).await["plans"][0]["id"].as_i64().unwrap();
    let (_, v) = v2_get(&h, "get_job_list", "bk_biz_id=1&name=night").await;
    assert_eq!(v["code"], 0, "{v}");
    let rows = v["data"]["data"].as_array().unwrap();
    assert_eq!((rows.len(), rows[0]["bk_job_id"].as_i64(), rows[0]["name"].as_str()), (1, Some(plan), Some("nightly")), "{v}");
    let (_, v) = v2_get(&h, "get_job_list", "bk_biz_id=1&name=nothing-like-it").await;
    assert_eq!(v["data"]["total_record_size"], 0, "{v}");
    // Date filters, as bk-job's v2 takes them: an end date includes its day.
    let (_, v) = v2_get(&h, "get_job_list", "bk_biz_id=1&name=night").await;
    let today = v["data"]["data"][0]["create_time"].as_str().unwrap()[..10].to_string();
    let (_, v) = v2_get(&h, "get_job_list", &format!("bk_biz_id=1&create_time_start={today}&create_time_end={today}")).await;
    assert_eq!(v["data"]["total_record_size"], 1, "{v}");
    let (_, v) = v2_get(&h, "get_job_list", "bk_biz_id=1&last_modify_time_end=2000-01-01").await;
    assert_eq!(v["data"]["total_record_size"], 0, "{v}");
    let (_, v) = v2_get(&h, "get_job_list", "bk_biz_id=1&create_time_start=yesterday").await;
    assert_eq!(v["code"], 1241010, "{v}");
    let (_, v) = v2_get(&h, "get_job_detail", &format!("bk_biz_id=1&bk_job_id={plan}")).await;
    assert_eq!(v["code"], 0, "{v}");
    let d = &v["data"];
    assert_eq!((d["bk_job_id"].as_i64(), d["name"].as_str()), (Some(plan), Some("nightly")), "{d}");
    let step = &d["steps"][0];
    assert_eq!(
        (step["script_content"].as_str(), step["account"].as_str(), step["type"].as_i64()),
        (Some("echo note=$NOTE"), Some(USER), Some(1)),
        "{step}"
    );
    let var = |name: &str| d["global_vars"].as_array().unwrap().iter().find(|g| g["name"] == name).cloned().unwrap();
    assert_eq!(var("NOTE")["value"], "hi");
    assert_eq!(var("TARGETS")["ip_list"][0]["ip"], "10.0.4.1", "{d}");

    let (_, v) = v2_post(
        &h,
        "execute_job",
        json!({"bk_biz_id": 1, "bk_job_id": plan, "global_vars": [
            {"name": "NOTE", "value": "from-v2"},
            {"name": "TARGETS", "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.4.1"}]}
        ]}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let job_id = v["data"]["job_instance_id"].as_i64().unwrap();
    assert!(v["data"]["job_instance_name"].is_string(), "{v}");
    assert_eq!(only_log(&h, job_id).await, "note=from-v2\n");
    let (_, v) = v2_post(&h, "get_job_instance_status", json!({"bk_biz_id": 1, "job_instance_id": job_id})).await;
    assert_eq!(v["data"]["job_instance"]["bk_job_id"].as_i64(), Some(plan), "{v}");
    assert_eq!(v["data"]["blocks"][0]["step_instances"][0]["step_id"].as_i64(), Some(1), "{v}");
    for (body, field) in [
        (json!({"bk_biz_id": 1}), "bk_job_id"),
        (json!({"bk_biz_id": 1, "bk_job_id": plan, "global_vars": [{"value": "x"}]}), "global_vars.id|global_vars.name"),
    ] {
        let (_, v) = v2_post(&h, "execute_job", body).await;
        assert_eq!((v["code"].as_i64(), v["message"].as_str().is_some_and(|m| m.contains(field))), (Some(1241005), true), "{v}");
    }

    // Terminating a running job.
    let job = h.execute("sleep 30", &[host], json!({})).await;
    let job_id = job["job_instance_id"].as_i64().unwrap();
    wait_for("the job to run", Duration::from_secs(20), || async { h.status(job_id).await["job_instance"]["status"] == 2 }).await;
    let (_, v) = v2_post(&h, "operate_job_instance", json!({"bk_biz_id": 1, "job_instance_id": job_id, "operation_code": 1})).await;
    assert_eq!((v["code"].as_i64(), v["data"]["job_instance_id"].as_i64()), (Some(0), Some(job_id)), "{v}");
    let st = h.wait_finished(job_id, Duration::from_secs(30)).await;
    assert_ne!(st["job_instance"]["status"], 3, "{st}");
}

on_both_stores!(
    nodeman_collect_log,
    sops_node_log,
    access_token_and_login_tickets,
    library_and_plans,
    v2_cron,
    v2_files,
    v2_callback_url_is_called_back,
    v2_log_groups_hosts_by_status_and_tag
);

/// Every row of the compatibility matrix in `docs/jobv3.md` against the router: an API
/// marked served (or partly, saying how it differs) answers something other than 404, one marked not served
/// answers 404 in JOB's envelope; and the matrix lists every API bk-job's gateway has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matrix() {
    let Some(h) = Harness::start(Backend::Sqlite).await else { return };
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/jobv3.md")).unwrap();
    let mut section = String::new();
    let mut rows: std::collections::BTreeMap<String, usize> = Default::default();
    for line in doc.lines() {
        if let Some(s) = line.strip_prefix("### ") {
            section = s.trim().to_string();
            continue;
        }
        if !matches!(section.as_str(), "v2" | "v3" | "v4") || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (name, state, notes) = (cells[1].trim_matches('`'), cells[2], cells[3]);
        let path = match section.as_str() {
            "v3" if notes.starts_with("system only") => format!("/api/v3/system/{name}"),
            "v3" => format!("/api/v3/{name}"),
            "v2" => format!("/api/c/compapi/v2/job/{name}/"),
            _ => format!("/api/v4/{name}"),
        };
        let r = h
            .http
            .post(format!("{}{path}", h.url))
            .header("X-Bkapi-Authorization", h.auth_header())
            .json(&json!({"bk_scope_type": "biz", "bk_scope_id": "1", "bk_biz_id": 1}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        match state {
            "served" => assert_ne!(status, 404, "{path} is marked {state}: {v}"),
            "partly" => {
                assert_ne!(status, 404, "{path} is marked {state}: {v}");
                assert!(!notes.is_empty(), "{path} is marked partly: the row must say how it differs");
            }
            "not served" => assert_eq!((status, v["result"].as_bool()), (404, Some(false)), "{path} is marked {state}: {v}"),
            other => panic!("{path}: unknown state {other:?}"),
        }
        *rows.entry(section.clone()).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, usize> =
        [("v2".to_string(), 21), ("v3".to_string(), 75), ("v4".to_string(), 9)].into();
    assert_eq!(rows, expected);
}

/// A v2 log answer carries at most `log_read_budget_bytes` of log text: past it, a host's
/// `log_content` says where to read the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_answer_is_bounded() {
    let Some(mut h) = Harness::start_with(Backend::Sqlite, |c| c.log_read_budget_bytes = 1000).await else { return };
    h.add_agent("10.0.5.1", None, None, &[]).await;
    h.add_agent("10.0.5.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let hosts = h.host_ids().await;
    let job = h.execute("head -c 1500 /dev/zero | tr '\\0' x; echo", &hosts, json!({})).await;
    let job_id = job["job_instance_id"].as_i64().unwrap();
    h.wait_finished(job_id, Duration::from_secs(60)).await;
    let (_, v) = v2_get(&h, "get_job_instance_log", &format!("bk_biz_id=1&job_instance_id={job_id}")).await;
    assert_eq!(v["code"], 0, "{v}");
    let mut contents: Vec<String> = v["data"][0]["step_results"][0]["ip_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["log_content"].as_str().unwrap().to_string())
        .collect();
    contents.sort_by_key(String::len);
    assert_eq!(contents.len(), 2, "{v}");
    assert!(contents[0].starts_with("[log omitted") && contents[0].contains("1000-byte budget"), "{v}");
    assert_eq!(contents[1], format!("{}\n", "x".repeat(1500)));
}

/// v2 cron: `save_cron` (create disabled, update by `cron_id`), `update_cron_status`,
/// `get_cron_list` in v2's names, on the v3 scheduler's rows.
async fn v2_cron(h: Harness) {
    let doc = json!({
        "name": "v2-cron",
        "steps": [{"name": "say", "script": {"content": "echo tick", "account": USER, "target": {"host_id_list": [1]}}}],
        "plans": [{"name": "ticks"}]
    });
    let plan = h.apply_template(doc).await["plans"][0]["id"].as_i64().unwrap();
    // bk-job's validation, in its words.
    for (body, field) in [
        (json!({"bk_biz_id": 1, "cron_name": "x", "cron_expression": "* * * * *"}), "bk_job_id"),
        (json!({"bk_biz_id": 1, "bk_job_id": plan, "cron_expression": "* * * * *"}), "cron_name"),
        (json!({"bk_biz_id": 1, "bk_job_id": plan, "cron_name": "x"}), "cron_expression"),
        (json!({"bk_biz_id": 1, "cron_id": 5}), "bk_job_id/cron_name/cron_expression"),
    ] {
        let (_, v) = v2_post(&h, "save_cron", body).await;
        assert_eq!((v["code"].as_i64(), v["message"].as_str().is_some_and(|m| m.contains(field))), (Some(1241010), true), "{v}");
    }
    let (_, v) =
        v2_post(&h, "save_cron", json!({"bk_biz_id": 1, "bk_job_id": plan, "cron_name": "nightly", "cron_expression": "0/5 * * * ?"}))
            .await;
    assert_eq!(v["code"], 0, "{v}");
    let id = v["data"]["cron_id"].as_i64().unwrap();
    assert_eq!((v["data"]["cron_name"].clone(), v["data"]["bk_job_id"].clone()), (Value::Null, Value::Null), "only the id: {v}");
    let (_, v) = v2_get(&h, "get_cron_list", "bk_biz_id=1").await;
    assert_eq!(v["code"], 0, "{v}");
    let row = &v["data"][0];
    assert_eq!(
        (
            row["cron_id"].as_i64(),
            row["cron_name"].as_str(),
            row["bk_job_id"].as_i64(),
            row["cron_status"].as_i64(),
            row["bk_biz_id"].as_i64()
        ),
        (Some(id), Some("nightly"), Some(plan), Some(2), Some(1)),
        "a new cron is paused: {v}"
    );
    assert_eq!(row["cron_expression"], "0/5 * * * *", "in bk-job's form: {row}");
    assert!(is_v2_time(&row["create_time"]) && is_v2_time(&row["last_modify_time"]), "{row}");
    let (_, v) = v2_post(&h, "update_cron_status", json!({"bk_biz_id": 1, "cron_id": id, "cron_status": 1})).await;
    assert_eq!((v["code"].as_i64(), v["data"]["cron_id"].as_i64()), (Some(0), Some(id)), "{v}");
    let (_, v) = v2_post(&h, "update_cron_status", json!({"bk_biz_id": 1, "cron_id": id, "cron_status": 7})).await;
    assert_eq!(v["code"], 1241002, "{v}");
    let (_, v) = v2_post(&h, "get_cron_list", json!({"bk_biz_id": 1, "cron_status": 2})).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0), "{v}");
    // An update of one field keeps the others, and pauses the cron (bk-job's v2 saveCron).
    let (_, v) = v2_post(&h, "save_cron", json!({"bk_biz_id": 1, "cron_id": id, "cron_name": "hourly"})).await;
    assert_eq!((v["code"].as_i64(), v["data"]["cron_id"].as_i64()), (Some(0), Some(id)), "{v}");
    let (_, v) = v2_post(&h, "get_cron_list", json!({"bk_biz_id": 1, "cron_id": id})).await;
    let row = &v["data"][0];
    assert_eq!(
        (row["cron_name"].as_str(), row["cron_status"].as_i64(), row["cron_expression"].as_str()),
        (Some("hourly"), Some(2), Some("0/5 * * * *")),
        "{v}"
    );
    let (_, v) = v2_post(&h, "get_cron_list", json!({"bk_biz_id": 1, "create_time_start": "yesterday"})).await;
    assert_eq!(v["code"], 1241010, "{v}");
}

/// v2 `push_config_file` and `fast_push_file` (files on a source host) place files on targets.
async fn v2_files(mut h: Harness) {
    h.add_agent("10.0.6.1", None, None, &[]).await;
    h.add_agent("10.0.6.2", None, None, &[]).await;
    h.wait_connected(2).await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    let ips = json!([{"bk_cloud_id": 0, "ip": "10.0.6.1"}, {"bk_cloud_id": 0, "ip": "10.0.6.2"}]);
    let (_, v) = v2_post(
        &h,
        "push_config_file",
        json!({"bk_biz_id": 1, "account": USER, "file_target_path": format!("{dir}/conf"),
               "file_list": [{"file_name": "app.conf", "content": b64("port=80\n")}], "ip_list": ips}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    assert!(v["data"]["job_instance_name"].is_string() && v["data"].get("step_instance_id").is_none(), "{v}");
    let config_job = v["data"]["job_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(config_job, Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    assert_eq!(std::fs::read_to_string(out.path().join("conf/app.conf")).unwrap(), "port=80\n");
    // The v2 log of a file step: per target host, its file log as text (one line per file,
    // as v3's `file_logs[].log_content`), HTML-escaped, as bk-job's FileExecuteObjectLogContent.
    let (_, v) = v2_get(&h, "get_job_instance_log", &format!("bk_biz_id=1&job_instance_id={config_job}")).await;
    assert_eq!(v["code"], 0, "{v}");
    let step = &v["data"][0];
    assert_eq!((step["status"].as_i64(), step["is_finished"].as_bool()), (Some(3), Some(true)), "{v}");
    let groups = step["step_results"].as_array().unwrap();
    assert_eq!((groups.len(), groups[0]["ip_status"].as_i64()), (1, Some(9)), "{v}");
    let logs = groups[0]["ip_logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "{v}");
    for l in logs {
        let text = l["log_content"].as_str().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "one file: {l}");
        assert!(lines[0].starts_with('[') && text.ends_with('\n'), "{l}");
        assert!(lines[0].contains(&format!("FileName: {dir}/conf/app.conf")) && lines[0].contains("State: success"), "{l}");
        let (_, v3) = h
            .get(
                "get_job_instance_ip_log",
                &format!(
                    "bk_scope_type=biz&bk_scope_id=1&job_instance_id={config_job}&step_instance_id={}&bk_cloud_id=0&ip={}",
                    step["step_instance_id"],
                    l["ip"].as_str().unwrap()
                ),
            )
            .await;
        assert_eq!(v3["data"]["file_logs"][0]["log_content"].as_str(), Some(lines[0]), "the same text as v3's file log: {v3}");
    }

    let src = out.path().join("src.bin");
    std::fs::write(&src, b"payload from a host").unwrap();
    let (_, v) = v2_post(
        &h,
        "fast_push_file",
        json!({"bk_biz_id": 1, "account": USER, "file_target_path": format!("{dir}/copy"),
               "file_source": [{"files": [src.display().to_string()], "account": USER, "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.6.1"}]}],
               "ip_list": ips}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(v["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    assert_eq!(std::fs::read(out.path().join("copy/src.bin")).unwrap(), b"payload from a host");
    // An unknown account is JOB's "account does not exist".
    let (_, v) = v2_post(
        &h,
        "fast_push_file",
        json!({"bk_biz_id": 1, "account": "nobody-here", "file_target_path": format!("{dir}/x"),
               "file_source": [{"files": [src.display().to_string()], "account": USER, "ip_list": ips}], "ip_list": ips}),
    )
    .await;
    assert_eq!(v["result"], false, "{v}");
    let (_, v) = v2_post(&h, "fast_push_file", json!({"bk_biz_id": 1, "account": USER, "file_target_path": "/tmp", "ip_list": ips})).await;
    assert_eq!(v["code"], 1241004, "{v}");
}

/// v2 `fast_execute_script` with `bk_callback_url`: the URL is posted to when the job ends.
async fn v2_callback_url_is_called_back(mut h: Harness) {
    h.add_agent("10.0.12.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let (url, got) = callback_sink().await;
    let (_, v) = v2_post(
        &h,
        "fast_execute_script",
        json!({"bk_biz_id": 1, "script_content": b64("echo called back"), "script_type": 1, "account": USER,
               "ip_list": [{"bk_cloud_id": 0, "ip": "10.0.12.1"}], "bk_callback_url": url}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let job_id = v["data"]["job_instance_id"].as_i64().unwrap();
    let step_id = v["data"]["step_instance_id"].as_i64().unwrap();
    let cb = callback_of(&got, job_id).await;
    assert_eq!(cb["status"], 3, "{cb}");
    assert_eq!(cb["step_instances"], json!([{"step_instance_id": step_id, "status": 3}]), "{cb}");
}

/// Two hosts succeed and one fails: v2 `get_job_instance_log` answers two (status, tag)
/// groups, each host in the group of its own result.
async fn v2_log_groups_hosts_by_status_and_tag(mut h: Harness) {
    for ip in ["10.0.13.1", "10.0.13.2", "10.0.13.3"] {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(3).await;
    let hosts = h.host_ids().await;
    // The script's path names the agent's state dir: it fails on 10.0.13.2 only.
    let job = h.execute("case \"$0\" in *agent-10.0.13.2/*) echo failing; exit 1;; esac; echo fine", &hosts, json!({})).await;
    let job_id = job["job_instance_id"].as_i64().unwrap();
    let st = h.wait_finished(job_id, Duration::from_secs(60)).await;
    assert_eq!(st["job_instance"]["status"], 4, "{st}");
    let (_, v) = v2_get(&h, "get_job_instance_log", &format!("bk_biz_id=1&job_instance_id={job_id}")).await;
    assert_eq!(v["code"], 0, "{v}");
    let step = &v["data"][0];
    assert_eq!((step["status"].as_i64(), step["is_finished"].as_bool()), (Some(4), Some(true)), "{v}");
    let groups = step["step_results"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v}");
    let group = |status: i64| groups.iter().find(|g| g["ip_status"] == status).cloned().unwrap_or_else(|| panic!("no {status}: {v}"));
    let ok = group(9);
    let mut ips: Vec<&str> = ok["ip_logs"].as_array().unwrap().iter().map(|l| l["ip"].as_str().unwrap()).collect();
    ips.sort_unstable();
    assert_eq!(ips, ["10.0.13.1", "10.0.13.3"], "{ok}");
    assert!(ok["ip_logs"].as_array().unwrap().iter().all(|l| l["log_content"] == "fine\n" && l["exit_code"] == 0), "{ok}");
    let failed = group(104);
    assert_eq!(failed["tag"], "", "{failed}");
    let logs = failed["ip_logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1, "{failed}");
    assert_eq!(
        (logs[0]["ip"].as_str(), logs[0]["exit_code"].as_i64(), logs[0]["log_content"].as_str()),
        (Some("10.0.13.2"), Some(1), Some("failing\n"))
    );
}
