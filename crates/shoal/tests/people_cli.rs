//! `shoal user …` against a server process: an admin creates a user (password printed once,
//! or from stdin), grants a role and issues a token; the user's CLI works with SHOAL_TOKEN
//! alone and stops when the token is revoked; `shoal app create --trusted-gateway`.

use std::io::Write;
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

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Run the CLI with `env` (and nothing from the environment of the test), `stdin` piped in.
fn shoal(url: &str, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env_clear().env("SHOAL_URL", url).env("HOME", "/nonexistent").env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn users_and_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = Kid(Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SHOAL_BOOTSTRAP_APP", "root-app:root-secret")
        .env("SHOAL_AGENT_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let url = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let root = [("SHOAL_APP_CODE", "root-app"), ("SHOAL_APP_SECRET", "root-secret"), ("SHOAL_USERNAME", "admin")];
    let admin = |args: &[&str]| shoal(&url, &root, args, "");

    let o = admin(&["user", "create", "dave"]);
    assert!(o.status.success(), "{}", text(&o));
    let password = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(password.len() >= 10, "a generated password on stdout: {}", text(&o));
    let o = shoal(&url, &root, &["user", "create", "erin", "--password-stdin"], "erin's long password\n");
    assert!(o.status.success() && o.stdout.is_empty(), "{}", text(&o));
    let o = admin(&["user", "grant", "dave", "--role", "run", "--biz", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = admin(&["user", "list"]);
    assert!(text(&o).contains("dave") && text(&o).contains("erin") && !text(&o).contains(&password), "{}", text(&o));
    let o = admin(&["user", "token", "create", "--user", "dave", "--name", "ci", "--expires-in", "30d"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(token.starts_with("shoal_pat_"), "{}", text(&o));

    // dave's CLI with the token alone.
    let dave = [("SHOAL_TOKEN", token.as_str())];
    let o = shoal(&url, &dave, &["job", "list", "--biz", "1"], "");
    assert!(o.status.success(), "{}", text(&o));
    let o = shoal(&url, &dave, &["user", "list"], "");
    assert!(!o.status.success() && text(&o).contains("9900403"), "{}", text(&o));
    let o = shoal(&url, &dave, &["user", "token", "list", "--json"], "");
    assert!(o.status.success(), "{}", text(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = listed["data"][0]["id"].as_str().unwrap().to_string();
    assert!(!text(&o).contains(&token), "tokens are never listed");
    let o = shoal(&url, &dave, &["user", "token", "revoke", &id], "");
    assert!(o.status.success(), "{}", text(&o));
    let o = shoal(&url, &dave, &["job", "list", "--biz", "1"], "");
    assert!(!o.status.success() && text(&o).contains("1240005"), "{}", text(&o));

    // An app created as a trusted gateway.
    let o = admin(&["app", "create", "esb", "--trusted-gateway"]);
    assert!(o.status.success() && text(&o).contains("trusted gateway"), "{}", text(&o));
    let o = admin(&["app", "list"]);
    let line = |o: &Output, code: &str| String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with(code)).unwrap_or("").to_string();
    assert!(line(&o, "esb ").split_whitespace().nth(2) == Some("yes"), "{}", text(&o));
    assert!(line(&o, "root-app ").split_whitespace().nth(2) == Some("yes"), "the bootstrap app is a gateway: {}", text(&o));
    let o = admin(&["app", "trust", "esb", "--no"]);
    assert!(o.status.success() && text(&o).contains("acts as itself"), "{}", text(&o));
}
