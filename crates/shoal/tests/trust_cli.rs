//! The trust commands as an admin runs them against a server process: `shoal app …` (secret
//! shown once, works, stops working when rotated or revoked), `shoal audit verify` (exit 1
//! after every kind of tampering in the database, including the tail cut off with the head
//! rewritten, caught with `--expect-head`) and `shoal audit export` (JSON lines and the head).

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

    // Audit: intact, exported with its head, then broken by tampering in the database.
    let o = admin(&["audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("audit.jsonl");
    let head_file = dir.path().join("audit.head");
    let o = admin(&["audit", "export", "--out", out.to_str().unwrap(), "--head-out", head_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let actions: Vec<&str> = lines.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create_app", "grant_role", "denied:apps", "rotate_app", "revoke_app"]);
    let head = std::fs::read_to_string(&head_file).unwrap().trim().to_string();
    assert!(text(&o).contains(&format!("head {head}")), "{}", text(&o));
    assert_eq!(head, format!("5:{}", lines[4]["hash"].as_str().unwrap()));
    let o = admin(&["audit", "list", "--action", "revoke_app"]);
    assert!(text(&o).contains("revoke_app"), "{}", text(&o));
    let o = admin(&["audit", "verify", "--expect-head", &head]);
    assert!(o.status.success(), "{}", text(&o));

    let db = data.join("shoal.db");
    let sql = |stmts: &str| {
        Command::new("python3")
            .arg("-c")
            .arg(format!("import sqlite3; c = sqlite3.connect('{}'); c.executescript(\"{stmts}\"); c.commit()", db.display()))
            .status()
            .is_ok_and(|s| s.success())
    };
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify"];
        args.extend_from_slice(extra);
        admin(&args)
    };
    if !sql("SELECT 1;") {
        eprintln!("SKIPPING the tamper steps: python3 with sqlite3 is not available");
        return;
    }
    let h4 = lines[3]["hash"].as_str().unwrap();
    let broken = |o: &Output, at: &str| {
        assert_eq!(o.status.code(), Some(1), "{}", text(o));
        assert!(text(o).contains(&format!("BROKEN at event #{at}")), "{}", text(o));
    };
    // Edited.
    assert!(sql("UPDATE audit_events SET username = 'mallory' WHERE seq = 2;"));
    broken(&verify(&[]), "2");
    assert!(sql("UPDATE audit_events SET username = 'admin' WHERE seq = 2;"));
    assert!(verify(&[]).status.success());
    // Reordered.
    assert!(sql("UPDATE audit_events SET seq = 100 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = 100;"));
    broken(&verify(&[]), "2");
    assert!(sql("UPDATE audit_events SET seq = 100 WHERE seq = 2; UPDATE audit_events SET seq = 2 WHERE seq = 3; UPDATE audit_events SET seq = 3 WHERE seq = 100;"));
    // Recomputed with plain SHA-256 after an edit (the whole chain and the head).
    let rechain = r#"
import sqlite3, hashlib, json
c = sqlite3.connect('DB')
prev = ''
for r in c.execute('SELECT seq, time, app_code, username, scope_type, scope_id, action, resource_id, detail FROM audit_events ORDER BY seq').fetchall():
    h = hashlib.sha256(json.dumps([prev] + list(r), separators=(',', ':'), ensure_ascii=False).encode()).hexdigest()
    c.execute('UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?', (prev, h, r[0]))
    c.execute('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1', (r[0], h))
    prev = h
c.commit()
"#;
    assert!(sql("UPDATE audit_events SET username = 'mallory' WHERE seq = 2;"));
    let recomputed = Command::new("python3").arg("-c").arg(rechain.replace("DB", &db.display().to_string())).status().unwrap();
    assert!(recomputed.success());
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("does not end in a keyed event"), "{}", text(&o));
    // Put the genuine chain back from the export: intact again.
    for e in &lines {
        let stmt = format!(
            "UPDATE audit_events SET username = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
            e["username"].as_str().unwrap(),
            e["prev_hash"].as_str().unwrap(),
            e["hash"].as_str().unwrap(),
            e["seq"]
        );
        assert!(sql(&stmt));
    }
    assert!(sql(&format!("UPDATE audit_head SET seq = 5, hash = '{}' WHERE id = 1;", lines[4]["hash"].as_str().unwrap())));
    assert!(verify(&[]).status.success(), "{}", text(&verify(&[])));
    // Truncated at the tail with the head rewritten: passes alone, fails against the head.
    assert!(sql(&format!("DELETE FROM audit_events WHERE seq = 5; UPDATE audit_head SET seq = 4, hash = '{h4}' WHERE id = 1;")));
    assert!(verify(&[]).status.success());
    broken(&verify(&["--expect-head", &head]), "5");
    // A forged event without a chain position (the NOT NULL constraint dropped first).
    assert!(sql("CREATE TABLE loose AS SELECT * FROM audit_events; DROP TABLE audit_events; ALTER TABLE loose RENAME TO audit_events; \
                 INSERT INTO audit_events (id, time, app_code, username, scope_type, scope_id, action, resource_id, detail, seq, prev_hash, hash) \
                 VALUES (999, 1, 'root-app', 'mallory', '', '', 'grant_role', '', '{}', NULL, '', '');"));
    let o = verify(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no chain position"), "{}", text(&o));
}

/// A server on a free port of `data`, once it accepts connections: (it, its URL, the port).
fn serving(data: &Path) -> (Kid, String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = start(data, port);
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}"), port)
}

/// One GET with an `X-Bkapi-Authorization` header; the raw HTTP answer.
fn get_with(port: u16, path: &str, authorization: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bkapi-Authorization: {authorization}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `shoal app token`: an app's access token, printed once, accepted in place of the app's
/// secret, revoked with `shoal app revoke-token`.
#[test]
fn app_access_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, port) = serving(&dir.path().join("data"));
    let admin = |args: &[&str]| shoal(&url, "root-app", "root-secret", args);
    let o = admin(&["app", "create", "ci"]);
    assert!(o.status.success(), "{}", text(&o));
    let cred = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (_, secret) = cred.split_once(':').unwrap();
    assert!(admin(&["app", "grant", "ci", "--role", "run", "--biz", "1"]).status.success());

    // An app issues its own token; it works where the secret did.
    let o = shoal(&url, "ci", secret, &["app", "token"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(token.starts_with("shoal_at_") && text(&o).contains("of app ci"), "{}", text(&o));
    let answer = get_with(port, "/api/v3/get_account_list?bk_biz_id=1", &format!("{{\"access_token\":\"{token}\"}}"));
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"code\":0"), "{answer}");
    // Not for another app.
    let o = shoal(&url, "ci", secret, &["app", "token", "root-app"]);
    assert!(!o.status.success() && text(&o).contains("9900403"), "{}", text(&o));

    // An admin issues one for the app and revokes it by its id.
    let o = admin(&["app", "token", "ci", "--expires-in", "600"]);
    assert!(o.status.success(), "{}", text(&o));
    let second = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let id = err.split_whitespace().nth(2).expect("access token <id> of app …").to_string();
    assert!(admin(&["app", "revoke-token", &id]).status.success());
    let answer = get_with(port, "/api/v3/get_account_list?bk_biz_id=1", &format!("{{\"access_token\":\"{second}\"}}"));
    assert!(answer.starts_with("HTTP/1.1 401") && answer.contains("1240005"), "{answer}");
    // Lifetimes are bounded.
    assert!(!admin(&["app", "token", "ci", "--expires-in", "99999999"]).status.success());
}
