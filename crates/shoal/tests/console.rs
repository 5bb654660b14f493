//! The web console in a real browser: `shoal server` and three `shoal agent` processes, two
//! users (an operator with grants in business 1, an admin who approves), jobs waiting at a
//! confirmation, and
//! `tests/console/console.mjs` driving headless Chromium through Playwright against them.
//!
//! Needs `/usr/bin/chromium` (Debian's `chromium`) and `npm ci` in `tests/console`; without
//! them the test says so and passes, unless `SHOAL_REQUIRE_BROWSER=1` (CI), when it fails.
//! The job page's screenshot goes to `$SHOAL_CONSOLE_SCREENSHOT` (README's is
//! `docs/img/console-job.png`), else under the target directory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::json;

const APP: (&str, &str) = ("console-root", "console-root-secret");

fn browser_missing(spec_dir: &Path) -> Option<String> {
    let chromium = std::env::var("SHOAL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !spec_dir.join("node_modules/playwright-core").exists() {
        return Some(format!("{} has no node_modules/playwright-core (npm ci there)", spec_dir.display()));
    }
    if std::process::Command::new("node").arg("--version").output().is_err() {
        return Some("node is missing (apt-get install nodejs npm)".into());
    }
    None
}

fn ok(v: &serde_json::Value, what: &str) {
    assert_eq!(v["code"], 0, "{what}: {v}");
}

#[test]
fn the_console_in_a_browser() {
    let spec_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    if let Some(why) = browser_missing(&spec_dir) {
        if std::env::var("SHOAL_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("browser tests required (SHOAL_REQUIRE_BROWSER=1), but {why}");
        }
        eprintln!("SKIPPED: the console browser test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "console-agent-token";
    let mut kids = Kids(vec![]);
    kids.0.push(server_cmd(port, &dir.path().join("data"), APP, token).spawn().unwrap());
    wait_until("the server listens", Duration::from_secs(60), || listening(port));
    let ips = ["10.61.0.1", "10.61.0.2", "10.61.0.3"];
    for (i, ip) in ips.iter().enumerate() {
        // Two web hosts in module 1, a db host in module 2 (set 1): the page targets by both.
        let (module, role) = if i < 2 { ("1", "web") } else { ("2", "db") };
        let mut agent = agent_cmd(port, ip, &dir.path().join(format!("agent-{ip}")), token);
        agent.args(["--set", "1", "--module", module, "--label", &format!("role={role}")]);
        kids.0.push(agent.spawn().unwrap());
    }
    wait_until("three agents alive", Duration::from_secs(60), || {
        let v = post_json(port, APP, "/api/shoal/v1/hosts", json!({"bk_biz_id": 1}));
        v["data"]["data"].as_array().is_some_and(|h| h.iter().filter(|h| h["alive"] == 1).count() == 3)
    });

    // An execution account, an operator with grants in business 1, an admin who approves.
    let me = whoami();
    let v = post_json(
        port,
        APP,
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    ok(&v, "create_account");
    let password = "operator's long password";
    ok(&post_json(port, APP, "/api/shoal/v1/users", json!({"username": "ops", "password": password})), "create ops");
    for role in ["run", "manage"] {
        let g = json!({"app_code": "user:ops", "bk_scope_type": "biz", "bk_scope_id": "1", "role": role});
        ok(&post_json(port, APP, "/api/shoal/v1/grants", g), "grant");
    }
    let g = json!({"app_code": "user:ops", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": "*"});
    ok(&post_json(port, APP, "/api/shoal/v1/account_grants", g), "account grant");
    let approver_password = "approver's long password";
    ok(
        &post_json(port, APP, "/api/shoal/v1/users", json!({"username": "lead", "password": approver_password, "admin": true})),
        "create lead",
    );
    // A template change waiting for approval.
    let doc = json!({"name": "deploy-web", "needs_approval": true, "steps": [{"name": "ok", "confirm": {"message": "go?"}}]});
    let v = post_json(port, APP, "/api/shoal/v1/templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc}));
    ok(&v, "apply template");
    assert_eq!(v["data"]["state"], "pending", "{v}");

    // Two jobs waiting at a confirmation ops may give: one to confirm, one to reject.
    let doc = json!({"name": "gate", "steps": [{"name": "go?", "confirm": {"message": "ship it?", "users": ["ops"]}}]});
    let v = post_json(port, APP, "/api/shoal/v1/templates/apply", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc}));
    ok(&v, "apply gate");
    let plan = v["data"]["plans"][0]["id"].as_i64().unwrap();
    let waiting: Vec<String> = (0..2)
        .map(|_| {
            let v =
                post_json(port, APP, "/api/v3/execute_job_plan", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_plan_id": plan}));
            ok(&v, "execute_job_plan");
            v["data"]["job_instance_id"].as_i64().unwrap().to_string()
        })
        .collect();

    let shot = std::env::var("SHOAL_CONSOLE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-job.png"));
    let _ = std::fs::remove_file(&shot);
    let gate = dir.path().join("gate");
    let out = std::process::Command::new("node")
        .arg(spec_dir.join("console.mjs"))
        .current_dir(&spec_dir)
        .env("SHOAL_URL", format!("http://127.0.0.1:{port}"))
        .env("SHOAL_USER", "ops")
        .env("SHOAL_PASSWORD", password)
        .env("SHOAL_APPROVER", "lead")
        .env("SHOAL_APPROVER_PASSWORD", approver_password)
        .env("SHOAL_HOSTS", ips.join(","))
        .env("SHOAL_GATE", &gate)
        .env("SHOAL_TEMPLATE", "deploy-web")
        .env("SHOAL_CONFIRM_JOBS", waiting.join(","))
        .env("SHOAL_FILES_DIR", dir.path().join("placed"))
        .env("SHOAL_SCREENSHOT", &shot)
        .output()
        .unwrap();
    let printed = text(&out);
    eprintln!("{printed}");
    assert!(out.status.success(), "the browser test failed:\n{printed}");
    assert!(printed.contains("all passed"), "{printed}");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "a screenshot of the job page at {}", shot.display());

    // What the browser did is what the server recorded.
    let v =
        post_json(port, APP, "/api/shoal/v1/templates/history", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "deploy-web"}));
    let versions = v["data"]["versions"].as_array().cloned().unwrap_or_default();
    assert!(versions.iter().any(|x| x["state"] != "pending" && x["reviewer"] == "lead"), "lead reviewed the change: {v}");
    drop(kids);
}

#[test]
fn shoal_dev_prints_the_console_and_a_user_to_log_in_with() {
    let dir = tempfile::tempdir().unwrap();
    let dev = || {
        let out = std::process::Command::new(BIN)
            .args(["dev", "--listen", "127.0.0.1:0", "--agents", "1", "--run", "true", "--data-dir"])
            .arg(dir.path().join("dev"))
            .output()
            .unwrap();
        let printed = text(&out);
        assert!(out.status.success(), "{printed}");
        let line = printed
            .lines()
            .find(|l| l.contains("web console"))
            .unwrap_or_else(|| panic!("the console URL is printed: {printed}"))
            .to_string();
        assert!(line.contains("http://127.0.0.1:") && line.contains("/console/"), "{line}");
        line.split("log in as dev / ").nth(1).unwrap_or_else(|| panic!("a user to log in with: {line}")).trim_end_matches(')').to_string()
    };
    let password = dev();
    assert!(password.len() >= 16, "{password}");
    assert_eq!(dev(), password, "the dev user keeps its password across starts");
}
