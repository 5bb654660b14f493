//! People as principals, on SQLite and PostgreSQL: users with argon2id passwords, personal
//! API tokens and login sessions; apps that are not trusted gateways act as themselves
//! whatever `bk_username` they send; grants to users; approvals and confirmations bound to an
//! authenticated principal.

#[macro_use]
mod common;

use common::*;
use serde_json::{json, Value};

on_both_stores!(
    self_approval_under_another_name_is_refused,
    run_only_app_cannot_confirm_as_cto,
    user_token_calls_the_api_and_is_the_audit_user,
    disabled_user_revoked_token_and_ended_session_get_401,
    bootstrap_app_still_asserts_bk_username,
    grants_to_users_apply_directly_and_through_a_gateway,
    password_is_an_argon2id_phc_string_and_login_checks_it
);

/// A Shoal API call with explicit app credentials (`bk_username` = `user`).
async fn as_app(h: &Harness, app: &str, secret: &str, user: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": user}).to_string();
    let url = match path.strip_prefix("shoal/") {
        Some(p) => format!("{}/api/shoal/v1/{p}", h.url),
        None => format!("{}/api/v3/{path}", h.url),
    };
    let req = if body.is_null() { h.http.get(url) } else { h.http.post(url).json(&body) };
    let r = req.header("X-Bkapi-Authorization", auth).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A call with a bearer token (GET when `body` is null).
async fn as_token(h: &Harness, token: &str, path: &str, body: Value) -> (u16, Value) {
    let url = match path.strip_prefix("shoal/") {
        Some(p) => format!("{}/api/shoal/v1/{p}", h.url),
        None => format!("{}/api/v3/{path}", h.url),
    };
    let req = if body.is_null() { h.http.get(url) } else { h.http.post(url).json(&body) };
    let r = req.bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// As the bootstrap app (a trusted gateway) for `user`; asserts success.
async fn admin(h: &Harness, path: &str, body: Value) -> Value {
    let (status, v) = as_app(h, APP, SECRET, USER, path, body).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{path}: {v}");
    v["data"].clone()
}

/// A new app (not a gateway) with `roles` in business 1; returns its secret.
async fn app_with_roles(h: &Harness, code: &str, roles: &[&str]) -> String {
    let secret = admin(h, "shoal/apps", json!({"code": code})).await["secret"].as_str().unwrap().to_string();
    for r in roles {
        admin(h, "shoal/grants", json!({"app_code": code, "bk_scope_type": "biz", "bk_scope_id": "1", "role": r})).await;
    }
    secret
}

/// A user created by the admin, with a personal API token; returns the token.
async fn user_with_token(h: &Harness, name: &str) -> String {
    admin(h, "shoal/users", json!({"username": name, "password": "a long enough password"})).await;
    admin(h, "shoal/users/tokens", json!({"username": name, "name": "test"})).await["token"].as_str().unwrap().to_string()
}

async fn run_plan(h: &Harness, plan: i64) -> i64 {
    let (_, v) = h.post("execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan})).await;
    assert_eq!(v["code"], 0, "{v}");
    v["data"]["job_instance_id"].as_i64().unwrap()
}

/// Waits for the job to wait at its confirmation; returns the step id.
async fn waiting(h: &Harness, job: i64) -> i64 {
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let st = h.status(job).await;
        if st["job_instance"]["status"] == 7 {
            return st["step_instance_list"][0]["step_instance_id"].as_i64().unwrap();
        }
        assert!(tokio::time::Instant::now() < end, "job {job} never waited for confirmation: {st}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

async fn login(h: &Harness, user: &str, password: &str) -> (u16, Value) {
    let r =
        h.http.post(format!("{}/api/shoal/v1/login", h.url)).json(&json!({"username": user, "password": password})).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn grant(who: &str, role: &str, biz: &str) -> Value {
    json!({"app_code": who, "bk_scope_type": "biz", "bk_scope_id": biz, "role": role})
}

async fn self_approval_under_another_name_is_refused(h: Harness) {
    let secret = app_with_roles(&h, "mallory", &["manage", "approve"]).await;
    let doc = json!({"name": "guarded", "needs_approval": true, "steps": [{"name": "ok", "confirm": {"message": "go?"}}]});
    let (_, v) = as_app(
        &h,
        "mallory",
        &secret,
        "mallory",
        "shoal/templates/apply",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc}),
    )
    .await;
    assert_eq!(v["data"]["state"], "pending", "{v}");
    let review = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "guarded", "version": 1});
    let (_, v) = as_app(&h, "mallory", &secret, "mallory2", "shoal/approvals/approve", review.clone()).await;
    assert_eq!(v["code"], 1241010, "a non-gateway app has no other name to approve under: {v}");
    let (_, v) = as_app(&h, "mallory", &secret, "mallory2", "shoal/approvals/reject", review.clone()).await;
    assert_eq!(v["code"], 1241010, "{v}");
    let hist = admin(&h, "shoal/templates/history?bk_scope_type=biz&bk_scope_id=1&name=guarded", Value::Null).await;
    assert_eq!(hist["versions"][0]["author"], "app:mallory", "the change is the app's own: {hist}");
    assert_eq!(hist["versions"][0]["state"], "pending");

    // Another principal (a user with approve) may approve it.
    let token = user_with_token(&h, "reviewer").await;
    admin(&h, "shoal/grants", grant("user:reviewer", "approve", "1")).await;
    let (_, v) = as_token(&h, &token, "shoal/approvals/approve", review).await;
    assert_eq!(v["data"]["state"], "current", "{v}");
}

async fn run_only_app_cannot_confirm_as_cto(h: Harness) {
    let doc = json!({"name": "gate", "steps": [{"name": "ok", "confirm": {"message": "go?", "users": ["cto"]}}]});
    let out = admin(&h, "shoal/templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc})).await;
    let plan = out["plans"][0]["id"].as_i64().unwrap();
    let job = run_plan(&h, plan).await;
    let step = waiting(&h, job).await;
    let op = |code: i32| json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "operation_code": code});

    let secret = app_with_roles(&h, "runner", &["run"]).await;
    for code in [6, 9] {
        let (_, v) = as_app(&h, "runner", &secret, "cto", "operate_step_instance", op(code)).await;
        assert_eq!(v["code"], 1244016, "a run-only app is not the cto: {v}");
    }
    assert_eq!(waiting(&h, job).await, step, "still waiting");

    // The cto, authenticated as themselves, confirms.
    let token = user_with_token(&h, "cto").await;
    admin(&h, "shoal/grants", grant("user:cto", "run", "1")).await;
    let (_, v) = as_token(&h, &token, "operate_step_instance", op(6)).await;
    assert_eq!(v["code"], 0, "{v}");
    let st = h.wait_finished(job, std::time::Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");

    // A trusted gateway relays the person it vouches for (BlueKing's model).
    let job = run_plan(&h, plan).await;
    let step = waiting(&h, job).await;
    let (_, v) = as_app(
        &h,
        APP,
        SECRET,
        "cto",
        "operate_step_instance",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "operation_code": 9}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
}

async fn user_token_calls_the_api_and_is_the_audit_user(h: Harness) {
    let token = user_with_token(&h, "dave").await;
    admin(&h, "shoal/grants", grant("user:dave", "admin", "1")).await;
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": "daveos", "alias": "dave-acct", "type": 1, "category": 1});
    let (status, v) = as_token(&h, &token, "create_account", body).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    let ev = admin(&h, "shoal/audit?action=create_account&username=dave", Value::Null).await;
    assert_eq!(ev["total"], 1, "{ev}");
    assert_eq!((ev["data"][0]["username"].as_str(), ev["data"][0]["app_code"].as_str()), (Some("dave"), Some("user:dave")));

    // A non-gateway app's event is its own, whatever bk_username it sent.
    let secret = app_with_roles(&h, "ci", &["admin"]).await;
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": "ciuser", "alias": "ci-acct", "type": 1, "category": 1});
    let (_, v) = as_app(&h, "ci", &secret, "dave", "create_account", body).await;
    assert_eq!(v["code"], 0, "{v}");
    let ev = admin(&h, "shoal/audit?action=create_account&app_code=ci", Value::Null).await;
    assert_eq!(ev["data"][0]["username"], "app:ci", "{ev}");
    // bk_username is still required on an app call (JOB's 1247002).
    let auth = json!({"bk_app_code": "ci", "bk_app_secret": secret}).to_string();
    let r = h.http.get(format!("{}/api/v3/get_account_list?bk_scope_type=biz&bk_scope_id=1", h.url)).header("X-Bkapi-Authorization", auth);
    let r = r.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 1247002);

    // Once trusted as a gateway, its bk_username is believed.
    admin(&h, "shoal/apps/trust", json!({"code": "ci", "trusted": true})).await;
    let (_, v) = as_app(
        &h,
        "ci",
        &secret,
        "frank",
        "shoal/dynamic_groups",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "g", "selector": "a=b"}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = as_app(&h, "ci", &secret, "frank", "get_job_instance_list", history("2")).await;
    assert_eq!(v["code"], 9900403, "{v}");
    assert!(v["message"].as_str().unwrap().contains("frank"), "{v}");
}

async fn disabled_user_revoked_token_and_ended_session_get_401(h: Harness) {
    let token = user_with_token(&h, "erin").await;
    admin(&h, "shoal/grants", grant("user:erin", "run", "1")).await;
    let list = history("1");
    assert_eq!(works(&h, &token).await.0, 200);
    admin(&h, "shoal/users/disable", json!({"username": "erin"})).await;
    let (status, v) = works(&h, &token).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)), "{v}");
    let (status, _) = as_app(&h, APP, SECRET, "erin", "get_job_instance_list", list.clone()).await;
    assert_eq!(status, 401, "a gateway cannot speak for a disabled user");
    assert_eq!(login(&h, "erin", "a long enough password").await.0, 401);
    admin(&h, "shoal/users/enable", json!({"username": "erin"})).await;
    assert_eq!(works(&h, &token).await.0, 200);

    // Revoked token.
    let (_, mine) = as_token(&h, &token, "shoal/users/tokens", Value::Null).await;
    let id = mine["data"]["data"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = as_token(&h, &token, "shoal/users/tokens/revoke", json!({"id": id})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(works(&h, &token).await.0, 401);
    assert_eq!(as_token(&h, "shoal_pat_made_up", "get_job_instance_list", list.clone()).await.0, 401);

    // Sessions: login, refresh (rotation), logout, expiry.
    let (_, s) = login(&h, "erin", "a long enough password").await;
    let s1 = s["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(works(&h, &s1).await.0, 200);
    let (_, r) = as_token(&h, &s1, "shoal/session/refresh", json!({})).await;
    let s2 = r["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(works(&h, &s1).await.0, 401, "the rotated-out session is dead");
    assert_eq!(works(&h, &s2).await.0, 200);
    let (_, v) = as_token(&h, &s2, "shoal/logout", json!({})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(works(&h, &s2).await.0, 401);
    let (secret, mut row) =
        shoal_server::auth::token::issue("erin", shoal_store::users::TokenKind::Session, "login", Some(shoal_core::time::now_ms() - 1));
    row.created_at -= 1000;
    h.shared.store.create_token(&row).await.unwrap();
    assert_eq!(works(&h, &secret).await.0, 401, "an expired session");
    // A password change ends every session.
    let s3 = login(&h, "erin", "a long enough password").await.1["data"]["token"].as_str().unwrap().to_string();
    admin(&h, "shoal/users/passwd", json!({"username": "erin", "password": "another long password"})).await;
    assert_eq!(works(&h, &s3).await.0, 401);
}

async fn bootstrap_app_still_asserts_bk_username(h: Harness) {
    let (_, v) = h.post("get_job_instance_list", history("1")).await;
    assert_eq!(v["code"], 0);
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": "x", "alias": "bk-acct", "type": 1, "category": 1});
    let (_, v) = as_app(&h, APP, SECRET, "bk-ops-person", "create_account", body).await;
    assert_eq!(v["code"], 0, "{v}");
    let ev = admin(&h, "shoal/audit?action=create_account", Value::Null).await;
    let last = ev["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["username"].as_str(), last["app_code"].as_str()), (Some("bk-ops-person"), Some(APP)));
    // ESB style too.
    let (status, v) = h.post_esb("get_job_instance_list", history("1")).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)));
    // A gateway cannot speak as an app principal.
    let (status, v) = as_app(&h, APP, SECRET, "app:ci", "get_job_instance_list", history("1")).await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1247002)));
}

async fn grants_to_users_apply_directly_and_through_a_gateway(h: Harness) {
    let token = user_with_token(&h, "gina").await;
    let list = history;
    let (_, v) = as_token(&h, &token, "get_job_instance_list", list("1")).await;
    assert_eq!(v["code"], 9900403, "no grant yet: {v}");
    admin(&h, "shoal/grants", grant("user:gina", "run", "1")).await;
    let (_, v) = as_token(&h, &token, "get_job_instance_list", list("1")).await;
    assert_eq!(v["code"], 0, "{v}");
    let (_, v) = as_token(&h, &token, "get_job_instance_list", list("2")).await;
    assert_eq!(v["code"], 9900403, "{v}");
    let (_, v) = as_token(&h, &token, "shoal/apps", Value::Null).await;
    assert_eq!(v["code"], 9900403, "not a platform admin: {v}");
    let grants = admin(&h, "shoal/grants?app_code=user:gina", Value::Null).await;
    assert_eq!(grants["total"], 1, "{grants}");

    // Through the (admin) bootstrap gateway: a Shoal user gets their own grants, not the app's.
    let (_, v) = as_app(&h, APP, SECRET, "gina", "get_job_instance_list", list("2")).await;
    assert_eq!(v["code"], 9900403, "{v}");
    let (_, v) = as_app(&h, APP, SECRET, "gina", "get_job_instance_list", list("1")).await;
    assert_eq!(v["code"], 0, "{v}");
    // A person Shoal does not know gets the gateway's grants (today's BlueKing behaviour).
    let (_, v) = as_app(&h, APP, SECRET, "not-a-shoal-user", "get_job_instance_list", list("2")).await;
    assert_eq!(v["code"], 0, "{v}");
    // Grants to a user who does not exist are refused.
    let (_, v) = as_app(&h, APP, SECRET, USER, "shoal/grants", grant("user:nobody", "run", "1")).await;
    assert_ne!(v["code"], 0, "{v}");

    // An admin user may administer the platform with their own token.
    admin(&h, "shoal/users", json!({"username": "root-person", "password": "a long enough password", "admin": true})).await;
    let t = admin(&h, "shoal/users/tokens", json!({"username": "root-person"})).await["token"].as_str().unwrap().to_string();
    let (_, v) = as_token(&h, &t, "shoal/users", Value::Null).await;
    assert_eq!(v["data"]["total"], 2, "{v}");
}

async fn password_is_an_argon2id_phc_string_and_login_checks_it(h: Harness) {
    let created = admin(&h, "shoal/users", json!({"username": "hank"})).await;
    let generated = created["password"].as_str().expect("a generated password is answered once").to_string();
    let row = h.shared.store.get_user("hank").await.unwrap().unwrap();
    assert!(row.password_hash.starts_with("$argon2id$v=19$"), "{}", row.password_hash);
    assert!(!row.password_hash.contains(&generated));
    let users = admin(&h, "shoal/users", Value::Null).await;
    assert!(!users.to_string().contains("argon2"), "hashes are never answered: {users}");

    let (status, v) = login(&h, "hank", "wrong password!").await;
    assert_eq!((status, v["code"].as_i64()), (401, Some(1240005)));
    let (status, v) = login(&h, "hank", &generated).await;
    assert_eq!(status, 200, "{v}");
    let session = v["data"]["token"].as_str().unwrap().to_string();
    assert!(session.starts_with("shoal_ses_"));
    assert_eq!(login(&h, "nobody", "whatever password").await.0, 401);
    // One's own password needs the current one.
    let (_, v) = as_token(&h, &session, "shoal/users/passwd", json!({"password": "my own new password"})).await;
    assert_eq!(v["code"], 1241004, "{v}");
    let (_, v) =
        as_token(&h, &session, "shoal/users/passwd", json!({"password": "my own new password", "current_password": generated})).await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(login(&h, "hank", "my own new password").await.0, 200);
    let ev = admin(&h, "shoal/audit?action=login_failed", Value::Null).await;
    assert_eq!(ev["total"], 2, "failed logins are audited: {ev}");
}

async fn works(h: &Harness, token: &str) -> (u16, Value) {
    as_token(h, token, "get_job_instance_list", history("1")).await
}
