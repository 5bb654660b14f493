//! The trust commands as an admin runs them against a server process: `shoal app …` (secret
//! shown once, works, stops working when rotated or revoked), `shoal audit verify` (exit 1
//! after a row is edited in the database) and `shoal audit export` (JSON lines).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shoal(url: &str, app: &str, secret: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SHOAL_URL", url)
        .env("SHOAL_APP_CODE", app)
        .env("SHOAL_APP_SECRET", secret)
        .env("SHOAL_USERNAME", "admin")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn start(data: &Path, port: u16) -> Kid {
    Kid(Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("SHOAL_BOOTSTRAP_APP", "root-app:root-secret")
        .env("SHOAL_AGENT_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

#[test]
fn apps_and_audit_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = start(&data, port);
    let url = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let admin = |args: &[&str]| shoal(&url, "root-app", "root-secret", args);

    let o = admin(&["app", "create", "ci", "--description", "the CI"]);
    assert!(o.status.success(), "{}", text(&o));
    let cred = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (code, secret) = cred.split_once(':').expect("code:secret on stdout");
    assert_eq!(code, "ci");
    let o = admin(&["app", "grant", "ci", "--role", "run", "--biz", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = admin(&["app", "grants", "ci"]);
    assert!(text(&o).contains("role run"), "{}", text(&o));
    let o = admin(&["app", "list"]);
    assert!(text(&o).contains("ci") && !text(&o).contains(secret), "{}", text(&o));

    // The new app can use the API; it cannot administer.
    let o = shoal(&url, "ci", secret, &["job", "list", "--biz", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = shoal(&url, "ci", secret, &["app", "list"]);
    assert!(!o.status.success() && text(&o).contains("9900403"), "{}", text(&o));

    let o = admin(&["app", "rotate", "ci"]);
    assert!(o.status.success(), "{}", text(&o));
    let (_, new_secret) = String::from_utf8_lossy(&o.stdout).trim().split_once(':').map(|(a, b)| (a.to_string(), b.to_string())).unwrap();
    assert!(!shoal(&url, "ci", secret, &["job", "list"]).status.success(), "the old secret stops working");
    assert!(shoal(&url, "ci", &new_secret, &["job", "list"]).status.success());
    assert!(admin(&["app", "revoke", "ci"]).status.success());
    assert!(!shoal(&url, "ci", &new_secret, &["job", "list"]).status.success(), "a revoked app is refused");

    // Audit: intact, exported, then broken by an edit in the database.
    let o = admin(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("audit.jsonl");
    let o = admin(&["audit", "export", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = lines.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create_app", "grant_role", "rotate_app", "revoke_app"]);
    let o = admin(&["audit", "list", "--action", "revoke_app"]);
    assert!(text(&o).contains("revoke_app"), "{}", text(&o));

    let db = data.join("shoal.db");
    let edit = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect('{}'); c.execute(\"UPDATE audit_events SET username = 'mallory' WHERE seq = 2\"); c.commit()",
            db.display()
        ))
        .status();
    if !edit.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPING the tamper step: python3 with sqlite3 is not available");
        return;
    }
    let o = admin(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("BROKEN at event #2"), "{}", text(&o));
}
