//! `shoal credential`, `shoal file-source` and `shoal push --from-source` against a real
//! server and agent, with a bkrepo generic-download peer served by this test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::Value;

const APP: &str = "fs-app";
const SECRET: &str = "fs-secret";
const TOKEN: &str = "fs-token";

fn cli(port: u16) -> Command {
    cli_cmd(port, (APP, SECRET))
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).output().unwrap()
}

/// Runs the CLI with `input` on its standard input.
fn run_with_stdin(port: u16, args: &[&str], input: &str) -> Output {
    let mut child = cli(port).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A bkrepo generic-download peer on a thread: `GET /generic/<path>` with basic auth
/// `user:pass`, serving `files`; one request per connection.
fn bkrepo(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:pass"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("authorization: ").or_else(|| line.strip_prefix("Authorization: ")) {
                    auth = v.trim().to_string();
                }
            }
            let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
            let found = files.iter().find(|(p, _)| format!("/generic/{p}") == path);
            let (status, body): (&str, Vec<u8>) = match found {
                _ if auth != want => ("401 Unauthorized", b"{}".to_vec()),
                Some((_, b)) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"{}".to_vec()),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
            let _ = conn.flush();
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        }
    });
    port
}

#[test]
fn credentials_sources_and_push_from_a_source() {
    let pkg: Vec<u8> = (0..300_000u32).map(|i| (i % 199) as u8).collect();
    let repo = bkrepo(vec![("proj/generic/pkg.tgz", pkg.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN)
        .env("SHOAL_FILE_SOURCE_ALLOWED_BASE_URLS", format!("http://127.0.0.1:{repo}"))
        .spawn()
        .unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    kids.0.push(agent_cmd(port, "127.0.0.91", &dir.path().join("agent"), TOKEN).spawn().unwrap());
    let list = || -> Value { serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null) };
    wait_until("the agent", Duration::from_secs(30), || list()["data"].as_array().is_some_and(|a| a.iter().any(|h| h["alive"] == 1)));
    let o = run(port, &["account", "create", &whoami()]);
    assert!(o.status.success(), "{}", text(&o));

    // A credential, its password from standard input.
    let o = run_with_stdin(
        port,
        &["credential", "create", "--name", "repo", "--type", "USERNAME_PASSWORD", "--user", "user", "--secret-stdin", "--json"],
        "pass\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let created: Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let o = run(port, &["credential", "create", "--name", "bad", "--type", "USERNAME_PASSWORD", "--user", "user"]);
    assert!(!o.status.success() && text(&o).contains("credential_password"), "{}", text(&o));
    let o = run(port, &["credential", "list"]);
    let out = stdout(&o);
    assert!(out.contains(&id) && out.contains("USERNAME_PASSWORD"), "{out}");
    assert!(!out.contains("pass\n") && !text(&o).contains("\"pass\""), "{out}");
    let o = run(port, &["credential", "update", &id, "--description", "the repo's reader"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&run(port, &["credential", "list"])).contains("the repo's reader"));

    // A file source on it; the server's own address would be refused without the admin's list.
    let base = format!("http://127.0.0.1:{repo}");
    let o = run(port, &["file-source", "create", "repo", "--base-url", &base, "--credential", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(port, &["file-source", "create", "meta", "--base-url", "http://169.254.169.254", "--credential", &id]);
    assert!(!o.status.success() && text(&o).contains("file_source_allowed_base_urls"), "{}", text(&o));
    let o = run(port, &["file-source", "update", "repo", "--alias", "the repo"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&run(port, &["file-source", "list"]));
    assert!(out.contains("repo") && out.contains("BLUEKING_ARTIFACTORY") && out.contains(&base), "{out}");
    let o = run(port, &["file-source", "list", "--json"]);
    let sources: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sources[0]["alias"], "the repo", "{sources}");

    // push --from-source: the server reads the file once, the host gets it.
    let dest = dir.path().join("dest");
    let o = run(port, &["push", "--from-source", "repo:proj/generic/pkg.tgz", "--to-dir", dest.to_str().unwrap(), "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read(dest.join("pkg.tgz")).unwrap(), pkg);
    assert!(stdout(&o).contains("1/1 hosts succeeded"), "{}", text(&o));

    // A missing file: the host fails with the reason, exit 1.
    let o = run(port, &["push", "--from-source", "repo:proj/generic/none.tgz", "--to-dir", dest.to_str().unwrap(), "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stdout(&o).contains("none.tgz does not exist"), "{}", text(&o));
    // A malformed argument is refused before anything is sent.
    let o = run(port, &["push", "--from-source", "repo", "--to-dir", "/tmp/x", "--all"]);
    assert!(!o.status.success() && text(&o).contains("CODE:PATH"), "{}", text(&o));
}
