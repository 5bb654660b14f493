//! The web console's server side, on SQLite and PostgreSQL: pages served from the binary with
//! their security headers; cookie sessions that count only with their CSRF token; a job's
//! live event stream (grouped host results, then `end`).

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    cookie_sessions_need_their_csrf_token,
    console_pages_are_served_with_their_headers,
    a_job_streams_grouped_snapshots_then_ends
);

async fn admin(h: &Harness, path: &str, body: Value) -> Value {
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/{path}", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .json(&body)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 0, "{path}: {v}");
    v["data"].clone()
}

/// Console login: (the cookie's `name=value`, the whole Set-Cookie, the answer's data).
async fn console_login(h: &Harness, user: &str, password: &str) -> (String, String, Value) {
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/console/login", h.url))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers().get("set-cookie").expect("a cookie is set").to_str().unwrap().to_string();
    let v: Value = r.json().await.unwrap();
    (set.split(';').next().unwrap().to_string(), set, v["data"].clone())
}

/// `GET users/tokens` (any user may list their own) with a cookie and maybe a CSRF header.
async fn with_cookie(h: &Harness, cookie: &str, csrf: Option<&str>) -> (u16, Value) {
    let mut req = h.http.get(format!("{}/api/shoal/v1/users/tokens", h.url)).header("cookie", cookie);
    if let Some(c) = csrf {
        req = req.header("x-shoal-csrf", c);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn session_of(h: &Harness, cookie: &str) -> (u16, Value) {
    let r = h.http.get(format!("{}/api/shoal/v1/console/session", h.url)).header("cookie", cookie).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn cookie_sessions_need_their_csrf_token(h: Harness) {
    admin(&h, "users", json!({"username": "ann", "password": "a long enough password"})).await;
    let (cookie, set, data) = console_login(&h, "ann", "a long enough password").await;
    assert!(cookie.starts_with("shoal_session=shoal_ses_"), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    assert_eq!((data["username"].as_str(), data["is_admin"].as_bool()), (Some("ann"), Some(false)));
    assert!(data.get("token").is_none(), "the session token stays in the cookie: {data}");
    let csrf = data["csrf_token"].as_str().unwrap().to_string();

    assert_eq!(with_cookie(&h, &cookie, None).await.0, 401, "a cookie alone is refused");
    assert_eq!(with_cookie(&h, &cookie, Some("0123")).await.0, 401, "a wrong CSRF token is refused");
    let (_, _, other) = console_login(&h, "ann", "a long enough password").await;
    assert_eq!(with_cookie(&h, &cookie, other["csrf_token"].as_str()).await.0, 401, "another session's token is refused");
    let (status, v) = with_cookie(&h, &cookie, Some(&csrf)).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");

    // A reload: the session answers who is logged in, with the token.
    let (status, v) = session_of(&h, &cookie).await;
    assert_eq!((status, v["data"]["csrf_token"].as_str(), v["data"]["username"].as_str()), (200, Some(csrf.as_str()), Some("ann")));
    assert_eq!(session_of(&h, "shoal_session=shoal_ses_nothing").await.0, 401);

    // Another site's form cannot log the browser in (as anyone): JSON only.
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/console/login", h.url))
        .form(&[("username", "ann"), ("password", "a long enough password")])
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none(), "a form post logs nobody in");
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["code"], 0, "{v}");

    // A failed login sets no cookie and is audited.
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/console/login", h.url))
        .json(&json!({"username": "ann", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // Logout revokes the session and clears the cookie.
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/console/logout", h.url))
        .header("cookie", &cookie)
        .header("x-shoal-csrf", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cleared = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cleared.starts_with("shoal_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(with_cookie(&h, &cookie, Some(&csrf)).await.0, 401, "a logged-out cookie is dead");
    assert_eq!(session_of(&h, &cookie).await.0, 401);

    // A disabled user's cookie is refused.
    let (cookie, _, data) = console_login(&h, "ann", "a long enough password").await;
    let csrf = data["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(with_cookie(&h, &cookie, Some(&csrf)).await.0, 200);
    admin(&h, "users/disable", json!({"username": "ann"})).await;
    assert_eq!(with_cookie(&h, &cookie, Some(&csrf)).await.0, 401, "a disabled user's cookie is refused");
    assert_eq!(session_of(&h, &cookie).await.0, 401);

    let q = shoal_store::trust::AuditQuery { username: Some("ann".into()), limit: 1000, ..Default::default() };
    let events = h.shared.store.audit_events(&q).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    for a in ["login", "login_failed", "logout"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

async fn console_pages_are_served_with_their_headers(h: Harness) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(format!("{}/", h.url)).send().await.unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/console/");
    for path in ["/console/", "/console/jobs/12", "/console"] {
        let r = http.get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(r.text().await.unwrap().contains("/console/app.js"));
    }
    let r = http.get(format!("{}/console/pages/job.js", h.url)).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = http.get(format!("{}/console/pages/job.js", h.url)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304, "an unchanged asset is not sent again");
    assert_eq!(http.get(format!("{}/console/nothing.js", h.url)).send().await.unwrap().status(), 404);
}

/// Server-sent events read off a response: (name, data) as they come.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if name.is_empty() {
                    continue; // a keepalive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.resp.chunk()).await.expect("an event within 60 s").unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn a_job_streams_grouped_snapshots_then_ends(mut h: Harness) {
    h.add_agent("10.0.0.1", None, None, &[]).await;
    h.add_agent("10.0.0.2", None, None, &[]).await;
    h.add_agent("10.0.0.3", None, None, &[]).await;
    h.wait_connected(3).await;
    let hosts = h.host_ids().await;
    // The job runs until told to go on.
    let gate = h.dir.path().join("go");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done\necho same", gate.display());
    let job = h.execute(&script, &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();

    // Refused without credentials, and for a job of another business.
    let url = format!("{}/api/shoal/v1/jobs/{job}/events?bk_scope_type=biz&bk_scope_id=1", h.url);
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 401);
    let other = format!("{}/api/shoal/v1/jobs/{job}/events?bk_scope_type=biz&bk_scope_id=2", h.url);
    let r = h.http.get(&other).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["code"], 0, "{v}");

    let resp = h.http.get(&url).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut events = Events { resp, buf: String::new() };
    let (name, first) = events.next().await.unwrap();
    assert_eq!(name, "snapshot");
    assert_eq!(first["job_instance_id"], job);
    assert_eq!(first["finished"], false, "{first}");
    let step = &first["steps"][0];
    assert_eq!(step["host_count"], 3, "{step}");
    let counted: i64 = step["groups"].as_array().unwrap().iter().map(|g| g["host_count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 3, "every host is in a group: {step}");

    std::fs::write(&gate, "").unwrap();
    let mut last = first;
    loop {
        let (name, v) = events.next().await.expect("the stream ends with `end`");
        match name.as_str() {
            "snapshot" => last = v,
            "end" => {
                assert_eq!(v["job_instance_id"], job);
                break;
            }
            other => panic!("unexpected event {other}: {v}"),
        }
    }
    assert_eq!(last["finished"], true, "the last snapshot is the finished job: {last}");
    assert_eq!(last["status"], 3, "{last}");
    let groups = last["steps"][0]["groups"].as_array().unwrap().clone();
    assert_eq!(groups.len(), 1, "identical answers are one group: {groups:?}");
    assert_eq!(
        (groups[0]["status"].as_i64(), groups[0]["exit_code"].as_i64(), groups[0]["host_count"].as_i64()),
        (Some(9), Some(0), Some(3))
    );
    assert_eq!(groups[0]["output"], "same\n");
    assert_eq!(groups[0]["hosts"].as_array().unwrap().len(), 3);
    assert!(events.next().await.is_none(), "the stream closes after `end`");

    // A finished job: one snapshot, then `end` at once; as many hosts listed per group as asked.
    let resp = h.http.get(format!("{url}&hosts_per_group=2")).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    let mut events = Events { resp, buf: String::new() };
    let (name, snap) = events.next().await.unwrap();
    assert_eq!(name, "snapshot");
    let group = &snap["steps"][0]["groups"][0];
    assert_eq!((group["host_count"].as_i64(), group["hosts"].as_array().map(Vec::len)), (Some(3), Some(2)), "{group}");
    assert_eq!(events.next().await.unwrap().0, "end");
    // Every host of a group, by the key its snapshot gave (the list a snapshot cuts short);
    // a key no group has lists none; another business does not reach the job.
    let ask = |scope_id: &str, key: &str| {
        json!({"bk_scope_type": "biz", "bk_scope_id": scope_id, "job_instance_id": job,
               "step_instance_id": snap["steps"][0]["step_instance_id"], "key": key})
    };
    let all = admin(&h, "job_group_hosts", ask("1", group["key"].as_str().unwrap())).await;
    let mut listed: Vec<i64> = all["hosts"].as_array().unwrap().iter().map(|x| x["bk_host_id"].as_i64().unwrap()).collect();
    listed.sort_unstable();
    let mut expected = hosts.clone();
    expected.sort_unstable();
    assert_eq!((all["host_count"].as_i64(), listed), (Some(3), expected), "{all}");
    assert_eq!(admin(&h, "job_group_hosts", ask("1", "104:2:0")).await["host_count"], 0);
    let r = h
        .http
        .post(format!("{}/api/shoal/v1/job_group_hosts", h.url))
        .header("X-Bkapi-Authorization", h.auth_header())
        .json(&ask("2", group["key"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["code"], 0, "another business: {v}");
    // A user without a grant in the business is refused the stream, as get_job_instance_status
    // refuses them; their cookie counts only with its CSRF token here too.
    admin(&h, "users", json!({"username": "outsider", "password": "a long enough password"})).await;
    let (cookie, _, data) = console_login(&h, "outsider", "a long enough password").await;
    let r = h.http.get(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 401, "no CSRF token");
    let r = h.http.get(&url).header("cookie", &cookie).header("x-shoal-csrf", data["csrf_token"].as_str().unwrap()).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 9900403, "no grant in business 1 (as JOB answers it, HTTP {status}): {v}");
    for bad in ["0", "1001", "x"] {
        let r = h.http.get(format!("{url}&hosts_per_group={bad}")).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert_ne!(v["code"], 0, "hosts_per_group={bad}: {v}");
    }
}

/// The listener closes connections idle for the request timeout; a stream waiting on a quiet
/// job speaks before that, so it lives until the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiet_stream_outlives_the_idle_deadline() {
    let Some(mut h) = Harness::start_with(Backend::Sqlite, |c| {
        c.request_timeout_secs = 1;
        c.header_read_timeout_secs = 1;
    })
    .await
    else {
        return;
    };
    h.add_agent("10.0.0.1", None, None, &[]).await;
    h.wait_connected(1).await;
    let gate = h.dir.path().join("go");
    let job = h.execute(&format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display()), &h.host_ids().await, json!({})).await
        ["job_instance_id"]
        .as_i64()
        .unwrap();
    let url = format!("{}/api/shoal/v1/jobs/{job}/events?bk_scope_type=biz&bk_scope_id=1", h.url);
    let resp = h.http.get(&url).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    let mut events = Events { resp, buf: String::new() };
    assert_eq!(events.next().await.unwrap().0, "snapshot");
    // Quiet for longer than the idle deadline (2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::write(&gate, "").unwrap();
    loop {
        match events.next().await {
            Some((name, _)) if name == "end" => break,
            Some(_) => {}
            None => panic!("the stream was closed before the job ended"),
        }
    }
}

/// A simulated fleet of 500 agents (the real session code, an instant executor): the stream
/// sends groups, not hosts — one group of 500 with 100 listed, a few KB a snapshot however
/// many results arrive — and at most 5 snapshots a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_job_streams_groups_not_hosts() {
    use shoal_agent::fleet::{Fleet, FleetConfig};
    const HOSTS: usize = 500;
    let Some(h) = Harness::start(Backend::Sqlite).await else { return };
    let exec = std::sync::Arc::new(shoal_agent::InstantExecutor { output_bytes: 200, exit_code: 0 });
    let config = FleetConfig::new(vec![h.url.clone()], TOKEN.into(), h.dir.path().join("fleet"), exec);
    let fleet = Fleet::start(&config, HOSTS).await;
    h.wait_connected(HOSTS).await;
    let hosts = h.host_ids().await;
    let job = h.execute("echo simulated", &hosts, json!({})).await["job_instance_id"].as_i64().unwrap();
    let url = format!("{}/api/shoal/v1/jobs/{job}/events?bk_scope_type=biz&bk_scope_id=1", h.url);
    let started = std::time::Instant::now();
    let resp = h.http.get(&url).header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    let mut events = Events { resp, buf: String::new() };
    let mut snapshots = 0;
    let mut last = Value::Null;
    loop {
        let (name, v) = events.next().await.expect("the stream ends with `end`");
        if name == "end" {
            break;
        }
        snapshots += 1;
        assert!(v.to_string().len() < 32 * 1024, "a snapshot of {HOSTS} hosts is groups, not rows: {} bytes", v.to_string().len());
        last = v;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(f64::from(snapshots) <= elapsed * 5.0 + 2.0, "{snapshots} snapshots in {elapsed:.2} s: coalesced to 5 a second");
    let groups = last["steps"][0]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!((groups[0]["host_count"].as_u64(), groups[0]["hosts"].as_array().map(Vec::len)), (Some(HOSTS as u64), Some(100)));
    assert!(groups[0]["output"].as_str().unwrap().starts_with("shoal simulated output"));
    fleet.stop(Duration::from_secs(10)).await;
}
