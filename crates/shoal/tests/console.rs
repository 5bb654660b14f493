//! The web console in a real browser: `shoal server` and three `shoal agent` processes, two
//! users (an operator with grants in business 1, an admin who approves), jobs waiting at a
//! confirmation, and
//! `tests/console/console.mjs` driving headless Chromium through Playwright against them.
//!
//! A second test puts a finished job of 50,000 hosts in the store the server reads, and
//! `tests/console/scale.mjs` opens it: the page stays responsive with a bounded DOM.
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
use shoal_proto::agent::{HostFacts, TaskKey};
use shoal_store::{AuditEvent, JobUpdate, NewJob, NewStep, StepUpdate, TargetHost, TaskChange};

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

/// The spec directory, or `None` (with a notice) when the browser test cannot run here.
fn spec_dir() -> Option<PathBuf> {
    let spec_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    if let Some(why) = browser_missing(&spec_dir) {
        if std::env::var("SHOAL_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("browser tests required (SHOAL_REQUIRE_BROWSER=1), but {why}");
        }
        eprintln!("SKIPPED: the console browser test: {why}");
        return None;
    }
    Some(spec_dir)
}

/// Runs `spec` (a script in the spec directory) with `envs`; fails the test unless it ends
/// with "all passed".
fn run_spec(spec_dir: &Path, spec: &str, envs: &[(&str, String)]) {
    let out = std::process::Command::new("node")
        .arg(spec_dir.join(spec))
        .current_dir(spec_dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let printed = text(&out);
    eprintln!("{printed}");
    assert!(out.status.success(), "the browser test {spec} failed:\n{printed}");
    assert!(printed.contains("all passed"), "{printed}");
}

/// Output cap of the test servers: above the 5 MB log the browser opens.
const OUTPUT_CAP: &str = "8388608";

#[test]
fn the_console_in_a_browser() {
    let Some(spec_dir) = spec_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "console-agent-token";
    let mut kids = Kids(vec![]);
    kids.0.push(server_cmd(port, &dir.path().join("data"), APP, token).env("SHOAL_OUTPUT_CAP_BYTES", OUTPUT_CAP).spawn().unwrap());
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

    // Set 1 and module 2 have names: the quick-execution tree shows them.
    for (kind, id, name) in [("set", 1, "prod"), ("module", 2, "mysql")] {
        let v = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "kind": kind, "id": id, "name": name});
        ok(&post_json(port, APP, "/api/shoal/v1/topo_names", v), "name the topology");
    }

    // An execution account, an operator with grants in business 1, an admin who approves.
    create_account(port);
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
    // Its plan has a variable: the cron made from it on the page gets a value for it.
    let doc = json!({"name": "gate", "variables": [{"name": "WHO", "type": "string", "value": "nobody"}],
                     "steps": [{"name": "go?", "confirm": {"message": "ship it?", "users": ["ops"]}}]});
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
    let path = |p: &Path| p.display().to_string();
    run_spec(
        &spec_dir,
        "console.mjs",
        &[
            ("SHOAL_URL", format!("http://127.0.0.1:{port}")),
            ("SHOAL_USER", "ops".into()),
            ("SHOAL_PASSWORD", password.into()),
            ("SHOAL_APPROVER", "lead".into()),
            ("SHOAL_APPROVER_PASSWORD", approver_password.into()),
            ("SHOAL_HOSTS", ips.join(",")),
            ("SHOAL_GATE", path(&gate)),
            ("SHOAL_TEMPLATE", "deploy-web".into()),
            ("SHOAL_CONFIRM_JOBS", waiting.join(",")),
            ("SHOAL_CRON_PLAN", plan.to_string()),
            ("SHOAL_FILES_DIR", path(&dir.path().join("placed"))),
            ("SHOAL_SCREENSHOT", path(&shot)),
        ],
    );
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "a screenshot of the job page at {}", shot.display());

    // What the browser did is what the server recorded.
    let v =
        post_json(port, APP, "/api/shoal/v1/templates/history", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "name": "deploy-web"}));
    let versions = v["data"]["versions"].as_array().cloned().unwrap_or_default();
    assert!(versions.iter().any(|x| x["state"] != "pending" && x["reviewer"] == "lead"), "lead reviewed the change: {v}");
    drop(kids);
}

/// Hosts of the big job.
const BIG: usize = 50_000;
/// One host in every `FAIL_EVERY` of the big job fails (exit 2) with another answer.
const FAIL_EVERY: usize = 1_000;
/// One host in every `OTHER_EVERY` of the big job succeeds with another answer: a second
/// success group, the same status and exit code as the first.
const OTHER_EVERY: usize = 10;

/// `10.<a>.<b>.<c>` for host number `i` of the big job.
fn big_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65_536, (i / 256) % 256, i % 256)
}

/// 50,000 hosts of business 1 (ten sets of five modules), and a finished job on all of them
/// written through the store as the server writes them: job and step created, the run
/// started, each host's output and exit applied in batches. Returns the job's id.
async fn seed_big_job(url: &str, audit_key: [u8; 32]) -> i64 {
    let store = shoal_store::open_keyed(url, shoal_store::trust::AuditKey::from_bytes(audit_key)).await.unwrap();
    let now = shoal_core::time::now_ms();
    let mut targets = Vec::with_capacity(BIG);
    for i in 0..BIG {
        let facts = HostFacts {
            bk_biz_id: 1,
            bk_cloud_id: 0,
            ip: big_ip(i),
            set_id: Some(1 + (i % 10) as i64),
            module_id: Some(1 + (i % 50) as i64),
            hostname: format!("node-{i:05}"),
            os: "linux".into(),
            ..Default::default()
        };
        let id = store.upsert_host(&format!("big-agent-{i}"), &facts, "test", now).await.unwrap();
        targets.push(TargetHost { bk_host_id: id, ip: facts.ip, bk_cloud_id: 0 });
    }
    let audit = AuditEvent {
        time: now,
        app_code: APP.0.into(),
        username: "tester".into(),
        scope_type: "biz".into(),
        scope_id: "1".into(),
        action: "fast_execute_script".into(),
        ..Default::default()
    };
    let job = NewJob {
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: "fleet-check".into(),
        operator: "tester".into(),
        app_code: APP.0.into(),
        task_type: 1,
        launch_mode: 2,
        create_time: now,
        callback_url: None,
        steps: vec![NewStep {
            name: "check nginx".into(),
            step_type: 1,
            language: 1,
            script: b"nginx -v".to_vec(),
            timeout_secs: 60,
            account_id: 1,
            account_user: "root".into(),
            targets: targets.clone(),
            ..Default::default()
        }],
        plan: None,
        audit,
        quota: Default::default(),
    };
    let (job_id, steps) = store.create_job(&job).await.unwrap();
    let step = steps[0];
    store.update_job(&JobUpdate { id: job_id, status: Some(2), start_time: Some(now), ..Default::default() }).await.unwrap();
    store.update_step(&StepUpdate { id: step, status: Some(2), start_time: Some(now), end_time: None }).await.unwrap();
    store.apply(&[TaskChange::RunStarted { step_instance_id: step, execute_count: 0, batch: None, at: now }], u64::MAX).await.unwrap();
    for (n, chunk) in targets.chunks(2_000).enumerate() {
        let mut batch = Vec::with_capacity(chunk.len() * 2);
        for (j, t) in chunk.iter().enumerate() {
            let i = n * 2_000 + j;
            let key = TaskKey::new(step, 0, t.bk_host_id);
            let failed = i % FAIL_EVERY == FAIL_EVERY / 2;
            let out = if failed {
                "nginx: [emerg] open() \"/etc/nginx/nginx.conf\" failed\n"
            } else if i % OTHER_EVERY == 3 {
                "nginx version: nginx/1.25.3\n"
            } else {
                "nginx version: nginx/1.24.0\n"
            };
            batch.push(TaskChange::Log { key, seq: 0, data: out.as_bytes().to_vec() });
            batch.push(TaskChange::Finished {
                key,
                status: if failed { 104 } else { 9 },
                exit_code: if failed { 2 } else { 0 },
                error_code: 0,
                start_time: Some(now),
                end_time: now + 40,
                dropped_bytes: 0,
                vars: Default::default(),
            });
        }
        store.apply(&batch, u64::MAX).await.unwrap();
    }
    let j = store.get_job(job_id).await.unwrap().unwrap();
    assert_eq!(j.status, 4, "the big job ended failed (some hosts failed)");
    job_id
}

#[test]
fn a_job_of_50000_hosts_in_a_browser() {
    let Some(spec_dir) = spec_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The server's audit key, made here so what the seeding writes verifies under it.
    let key = [7u8; 32];
    std::fs::write(data.join("audit-key"), format!("{}\n", key.iter().map(|b| format!("{b:02x}")).collect::<String>())).unwrap();
    let url = format!("sqlite://{}", data.join("shoal.db").display());
    let job_id = tokio::runtime::Runtime::new().unwrap().block_on(seed_big_job(&url, key));

    let port = free_port();
    let mut kids = Kids(vec![]);
    kids.0.push(server_cmd(port, &data, APP, "big-agent-token").spawn().unwrap());
    wait_until("the server listens", Duration::from_secs(60), || listening(port));
    for (kind, id, name) in [("set", 1, "edge"), ("module", 1, "nginx")] {
        let v = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "kind": kind, "id": id, "name": name});
        ok(&post_json(port, APP, "/api/shoal/v1/topo_names", v), "name the topology");
    }
    let password = "viewer's long password";
    ok(&post_json(port, APP, "/api/shoal/v1/users", json!({"username": "viewer", "password": password})), "create viewer");
    let g = json!({"app_code": "user:viewer", "bk_scope_type": "biz", "bk_scope_id": "1", "role": "run"});
    ok(&post_json(port, APP, "/api/shoal/v1/grants", g), "grant");
    // The viewer may run jobs as an account: the page starts one on 45,000 of the hosts.
    create_account(port);
    let g = json!({"app_code": "user:viewer", "bk_scope_type": "biz", "bk_scope_id": "1", "alias": "*"});
    ok(&post_json(port, APP, "/api/shoal/v1/account_grants", g), "account grant");
    run_spec(
        &spec_dir,
        "scale.mjs",
        &[
            ("SHOAL_URL", format!("http://127.0.0.1:{port}")),
            ("SHOAL_USER", "viewer".into()),
            ("SHOAL_PASSWORD", password.into()),
            ("SHOAL_JOB", job_id.to_string()),
            ("SHOAL_HOST_COUNT", BIG.to_string()),
            ("SHOAL_FAILED_COUNT", (BIG / FAIL_EVERY).to_string()),
            ("SHOAL_OTHER_COUNT", (BIG / OTHER_EVERY).to_string()),
            // Host 253 answered otherwise (253 % 10 == 3); no other host's IP contains its IP.
            ("SHOAL_OTHER_IP", big_ip(253)),
            ("SHOAL_LAST_IP", big_ip(BIG - 1)),
        ],
    );
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

/// An execution account in business 1 named after the user running the tests.
fn create_account(port: u16) {
    let me = whoami();
    let v = post_json(
        port,
        APP,
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    ok(&v, "create_account");
}
