//! `shoal login` and `shoal config init --ca` against a server process serving HTTPS with a
//! certificate of a private CA: the password is read without echo (or from stdin), the
//! client config is written (0600) with a personal API token and the CA, and every later
//! command works from that file alone.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const APP: (&str, &str) = ("root-app", "root-secret");

/// A TLS server with user alice (password `alice-long-password`); answers its URL and CA.
fn serve(dir: &std::path::Path) -> (Kids, String, std::path::PathBuf) {
    let pki = dir.join("pki");
    let ca = private_ca(&pki);
    let port = free_port();
    let kids = Kids(vec![tls_server_cmd(port, &dir.join("data"), &pki, APP, "t").spawn().unwrap()]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let url = format!("https://127.0.0.1:{port}");
    let o = with_stdin(
        bare_cli(dir)
            .args(["user", "create", "alice", "--password-stdin", "--url", &url, "--ca"])
            .arg(&ca)
            .env("SHOAL_APP_CODE", APP.0)
            .env("SHOAL_APP_SECRET", APP.1),
        "alice-long-password\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    (kids, url, ca)
}

#[test]
fn login_writes_the_client_config_with_a_token_and_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, ca) = serve(dir.path());
    let home = dir.path().join("home");
    let file = home.join("xdg/shoal/config.toml");

    // A wrong password: refused, nothing written.
    let o = with_stdin(
        bare_cli(&home).args(["login", "--url", &url, "--username", "alice", "--password-stdin", "--ca"]).arg(&ca),
        "not-her-password\n",
    );
    assert!(!o.status.success() && text(&o).contains("user name or password"), "{}", text(&o));
    assert!(!file.exists());

    // The right one, with the CA and a default business: the file holds a token, no password.
    let o = with_stdin(
        bare_cli(&home).args(["login", "--url", &url, "--username", "alice", "--password-stdin", "--biz", "3", "--ca"]).arg(&ca),
        "alice-long-password\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("logged in to") && text(&o).contains(&file.display().to_string()), "{}", text(&o));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let written: toml::Table = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["url"].as_str(), Some(url.as_str()));
    assert_eq!(written["username"].as_str(), Some("alice"));
    assert_eq!(written["biz"].as_integer(), Some(3));
    assert_eq!(written["ca"].as_str(), Some(ca.canonicalize().unwrap().to_str().unwrap()));
    let token = written["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("shoal_pat_"), "a lasting personal token, not an 8-hour session: {written:?}");
    assert!(!written.contains_key("app_code") && !std::fs::read_to_string(&file).unwrap().contains("alice-long-password"));

    // Every later command works from the file alone: alice sees the token login made.
    let o = bare_cli(&home).args(["user", "token", "list", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tokens: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = tokens["data"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.len() == 1 && names[0].starts_with("shoal login"), "{tokens}");
    assert!(!tokens["data"][0]["expire_time"].is_null(), "login's token expires: {tokens}");

    // Logging in again replaces the credentials and keeps the other settings.
    let o = with_stdin(bare_cli(&home).args(["login", "--username", "alice", "--password-stdin"]), "alice-long-password\n");
    assert!(o.status.success(), "the URL and CA come from the file: {}", text(&o));
    let again: toml::Table = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(again["token"].as_str(), Some(token.as_str()));
    assert_eq!((again["biz"].as_integer(), again["url"].as_str()), (Some(3), Some(url.as_str())));
}

#[test]
fn config_init_writes_the_ca_and_the_cli_trusts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, ca) = serve(dir.path());
    let home = dir.path().join("home");
    let o = bare_cli(&home)
        .args(["config", "init", "--url", &url, "--app-code", APP.0, "--ca"])
        .arg(&ca)
        .env("SHOAL_APP_SECRET", APP.1)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let written: toml::Table = toml::from_str(&std::fs::read_to_string(home.join("xdg/shoal/config.toml")).unwrap()).unwrap();
    assert_eq!(written["ca"].as_str(), Some(ca.canonicalize().unwrap().to_str().unwrap()));
    let o = bare_cli(&home).args(["user", "list"]).output().unwrap();
    assert!(o.status.success() && text(&o).contains("alice"), "{}", text(&o));
    // A CA file that is not there is refused when the file is written, not at the next call.
    let o = bare_cli(&home)
        .args(["config", "init", "--force", "--url", &url, "--app-code", APP.0, "--ca", "/nonexistent/ca.pem"])
        .env("SHOAL_APP_SECRET", APP.1)
        .output()
        .unwrap();
    assert!(!o.status.success() && text(&o).contains("/nonexistent/ca.pem"), "{}", text(&o));
}

/// On a terminal, login asks for what is missing; the password is not echoed.
#[test]
fn login_asks_for_the_password_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, ca) = serve(dir.path());
    let home = dir.path().join("home");
    let cmd = format!("{BIN} login --url {url} --username alice --ca {}", ca.display());
    // `script` runs the CLI on a terminal of its own.
    let mut c = std::process::Command::new("script");
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .env("LANG", "C.UTF-8")
        .env("SHELL", "/bin/sh");
    let Ok(mut child) = c.args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    else {
        eprintln!("script(1) is not installed: the terminal dialogue is not tested");
        return;
    };
    // Type the password only once the prompt is there (echo is off by then).
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("password of alice") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "no password prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdin.take().unwrap().write_all(b"alice-long-password\n").unwrap();
    out.read_to_end(&mut seen).unwrap();
    assert!(child.wait().unwrap().success(), "{}", String::from_utf8_lossy(&seen));
    let said = String::from_utf8_lossy(&seen);
    assert!(said.contains("logged in to"), "{said}");
    assert!(!said.contains("alice-long-password"), "the password was echoed: {said}");
    assert!(std::fs::read_to_string(home.join("xdg/shoal/config.toml")).unwrap().contains("token = \"shoal_pat_"));
}
