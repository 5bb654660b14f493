//! What an operator types all day, against a real server and two real agents: targets are
//! the union of the flags as written, parameters may start with dashes, `==` selects like
//! `=`, a bad `SHOAL_BIZ` is an error, a pipe closed early ends the CLI quietly, and
//! execution accounts are made from the CLI.

mod common;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const APP: &str = "day-app";
const SECRET: &str = "day-secret";
const TOKEN: &str = "day-token";

fn cli(port: u16) -> Command {
    cli_cmd(port, (APP, SECRET))
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).output().unwrap()
}

fn hosts_of(o: &Output) -> Vec<String> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)));
    let mut ips: Vec<String> = v["hosts"].as_array().unwrap().iter().map(|h| h["ip"].as_str().unwrap_or("").to_string()).collect();
    ips.sort();
    ips
}

#[test]
fn everyday_cli() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    for (ip, role) in [("127.0.0.71", "web"), ("127.0.0.72", "db")] {
        let agent = agent_cmd(port, ip, &dir.path().join(ip), TOKEN).args(["--label", &format!("role={role}")]).spawn().unwrap();
        kids.0.push(agent);
    }
    let list = || -> Value { serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null) };
    wait_until("both agents", Duration::from_secs(30), || {
        list()["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == 2)
    });
    // A fresh server has no execution account; the CLI makes one.
    let o = run(port, &["account", "list"]);
    assert!(text(&o).contains("no execution account yet: shoal account create root"), "{}", text(&o));
    let me = whoami();
    let o = run(port, &["account", "create", &me, "--alias", "ops"]);
    assert!(o.status.success() && text(&o).contains(&format!("account ops (#1) runs scripts as {me}")), "{}", text(&o));
    let o = run(port, &["account", "create", &me]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(port, &["account", "list"]);
    assert!(text(&o).contains("ops") && text(&o).contains(&me), "{}", text(&o));
    let o = run(port, &["account", "delete", "ops"]);
    assert!(o.status.success() && text(&o).contains("account ops (#1) deleted"), "{}", text(&o));
    let o = run(port, &["account", "delete", "ops"]);
    assert!(!o.status.success() && text(&o).contains("no execution account \"ops\""), "{}", text(&o));
    let hosts = list();
    let web_id = hosts["data"].as_array().unwrap().iter().find(|h| h["ip"] == "127.0.0.71").unwrap()["bk_host_id"].to_string();

    // --host and --ip together: both hosts, not just the --host one.
    let o = run(port, &["run", "--json", "--host", &web_id, "--ip", "0:127.0.0.72", "-c", "echo hi"]);
    assert_eq!(hosts_of(&o), ["127.0.0.71", "127.0.0.72"], "{}", text(&o));
    // A selector and an address: the union too.
    let o = run(port, &["run", "--json", "--selector", "role=web", "--ip", "127.0.0.72", "-c", "echo hi"]);
    assert_eq!(hosts_of(&o), ["127.0.0.71", "127.0.0.72"], "{}", text(&o));
    // An address that is no host is an error, not dropped.
    let o = run(port, &["run", "--json", "--host", &web_id, "--ip", "0:10.9.9.9", "-c", "echo hi"]);
    assert!(!o.status.success() && text(&o).contains("0:10.9.9.9 is not a registered host of business 1"), "{}", text(&o));

    // Parameters that start with dashes and hold quotes.
    let o = run(port, &["run", "--json", "--host", &web_id, "--param", "--fast \"a b\"", "-c", "printf '<%s>' \"$@\""]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["hosts"][0]["output"], "<--fast><a b>", "{v}");

    // `==` selects like `=`.
    let o = run(port, &["run", "--json", "--selector", "role==web", "-c", "echo hi"]);
    assert_eq!(hosts_of(&o), ["127.0.0.71"], "{}", text(&o));

    // A business id that is not a number is an error, not business 1.
    let o = cli(port).args(["host", "list"]).env("SHOAL_BIZ", "abc").output().unwrap();
    assert!(!o.status.success() && text(&o).contains("SHOAL_BIZ=\"abc\" is not a business id"), "{}", text(&o));

    // `shoal run … | head -1`: the reader goes away early; the CLI ends quietly.
    let mut child =
        cli(port).args(["run", "--host", &web_id, "-c", "seq 1 20000"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 1];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{err}");
}

/// Daemon logs written to a file (or a journal) carry no terminal colour codes.
#[test]
fn daemon_logs_in_a_file_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("server.log");
    let server = Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    drop(kids);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a log file: {text:?}");
}

/// A server that is not there, or a URL without a scheme: the CLI says what is wrong.
#[test]
fn unreachable_servers_and_bad_urls_are_explained() {
    let port = free_port();
    let o = cli(port).args(["host", "list"]).output().unwrap();
    let t = text(&o);
    let said = format!("cannot reach the server at http://127.0.0.1:{port}: connection refused — is `shoal server` running?");
    assert!(!o.status.success() && t.contains(&said), "{t}");
    let o = cli(port).args(["host", "list"]).env("SHOAL_URL", "localhost:8080").output().unwrap();
    let t = text(&o);
    assert!(!o.status.success() && t.contains("must look like http://host:port"), "{t}");
    assert!(t.contains("give the scheme, e.g. --url http://127.0.0.1:8080"), "{t}");
}
