//! `shoal check` as operators run it: a server process, agent processes (one stopped), a host
//! printing garbage, the built-in check, a custom check, records, and a refused concurrent run.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const APP: &str = "check-app";
const SECRET: &str = "check-secret";
const TOKEN: &str = "check-token";

fn cli(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("SHOAL_URL", format!("http://127.0.0.1:{port}"))
        .env("SHOAL_APP_CODE", APP)
        .env("SHOAL_APP_SECRET", SECRET)
        .env("SHOAL_USERNAME", "tester")
        .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
        .env("SHOAL_LANGUAGE", "en")
        .env_remove("SHOAL_BIZ");
    c
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port, args).output().unwrap()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON: {}", text(o)))
}

fn start_agent(port: u16, ip: &str, state: &Path) -> Child {
    Command::new(BIN)
        .args(["agent", "--server", &format!("http://127.0.0.1:{port}"), "--bk-biz-id", "1", "--ip", ip, "--state-dir"])
        .arg(state)
        .env("SHOAL_AGENT_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn alive_ips(port: u16) -> Vec<String> {
    let v: Value = serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null);
    v["data"].as_array().into_iter().flatten().filter(|h| h["alive"] == 1).filter_map(|h| h["ip"].as_str().map(String::from)).collect()
}

fn host_id(port: u16, ip: &str) -> String {
    let v: Value = serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap();
    v["data"].as_array().unwrap().iter().find(|h| h["ip"] == ip).unwrap()["bk_host_id"].to_string()
}

#[test]
fn check_a_fleet_with_a_stopped_agent_and_a_garbage_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SHOAL_BOOTSTRAP_APP", format!("{APP}:{SECRET}"))
        .env("SHOAL_AGENT_TOKEN", TOKEN)
        .env("SHOAL_AGENT_LOST_GRACE_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("server to listen", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    for (i, ip) in ["127.0.0.61", "127.0.0.62", "127.0.0.63"].iter().enumerate() {
        kids.0.push(start_agent(port, ip, &dir.path().join(format!("agent-{}", 61 + i))));
    }
    wait_until("three hosts alive", Duration::from_secs(30), || alive_ips(port).len() == 3);
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();
    let acc = post_json(
        port,
        (APP, SECRET),
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    assert_eq!(acc["code"], 0, "{acc}");
    let (a, b) = (host_id(port, "127.0.0.61"), host_id(port, "127.0.0.62"));

    // The built-in check on a healthy fleet: every item of every host passes.
    let o = run(port, &["check", "--all", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_of(&o);
    assert_eq!(v["summary"]["ok"], 3, "{v}");
    let o = run(port, &["check", "--all"]);
    let out = text(&o);
    assert!(out.contains("[shoal_agent] [check the version] [ok] shoal "), "{out}");
    assert!(out.contains("3 hosts · 3 ok · 0 failed · 0 no answer · 0 bad output"), "{out}");

    // One agent stopped, one host printing garbage.
    kids.0[3].kill().unwrap();
    kids.0[3].wait().unwrap();
    wait_until("agent 63 gone", Duration::from_secs(30), || !alive_ips(port).contains(&"127.0.0.63".to_string()));
    let script = dir.path().join("app-check.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$0\" in\n  */agent-62/*) echo 'garbage here'; echo 'Traceback: boom' ;;\n  *) echo '{\"status\": true, \"data\": [{\"module\": \"app\", \"item\": \"ping\", \"status\": true, \"message\": \"pong\"}]}' ;;\nesac\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();
    let o = run(port, &["check", "--all", "--script", script]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("✔ 0:127.0.0.61") && out.contains("[app] [ping] [ok] pong"), "{out}");
    assert!(out.contains("✘ 0:127.0.0.62") && out.contains("bad output"), "{out}");
    assert!(out.contains("! not a check answer: garbage here") && out.contains("! not a check answer: Traceback: boom"), "{out}");
    assert!(out.contains("✘ 0:127.0.0.63") && out.contains("no answer") && out.contains("agent down"), "{out}");
    assert!(out.contains("3 hosts · 1 ok · 0 failed · 1 no answer · 1 bad output"), "{out}");
    // The same in Chinese.
    let o = run(port, &["check", "--all", "--script", script, "--language", "zh"]);
    let out = text(&o);
    assert!(out.contains("[app] [ping] [成功] pong") && out.contains("无应答"), "{out}");

    // A second run on the same hosts while the first runs: refused with 500006 (exit 3).
    let slow = dir.path().join("slow.sh");
    std::fs::write(&slow, "sleep 3; echo '{\"status\": true, \"data\": []}'\n").unwrap();
    let slow = slow.to_str().unwrap();
    let hosts = format!("{a},{b}");
    let mut first =
        cli(port, &["check", "--host", &hosts, "--script", slow, "--json"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut id = String::new();
    wait_until("the first run to start", Duration::from_secs(30), || {
        let v = json_of(&run(port, &["check", "list", "--json"]));
        match v["data"].as_array().and_then(|d| d.iter().find(|r| r["check"] == "slow.sh" && r["status"] == "started")) {
            Some(r) => {
                id = r["check_id"].as_str().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    let o = run(port, &["check", "--host", &format!("{b},{a}"), "--script", slow]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("500006"), "{}", text(&o));
    let o = run(port, &["check", "show", &id]);
    assert!(text(&o).contains("· started ·"), "readable while running: {}", text(&o));
    let done = first.wait().unwrap();
    assert_eq!(done.code(), Some(0));
    let mut out = String::new();
    std::io::Read::read_to_string(first.stdout.as_mut().unwrap(), &mut out).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["check_id"].as_str(), v["summary"]["ok"].as_i64()), (Some(id.as_str()), Some(2)), "{v}");
    let o = run(port, &["check", "show", &id, "--json"]);
    let rec = json_of(&o);
    assert_eq!((rec["status"].as_str(), rec["finished"].as_bool()), (Some("finish"), Some(true)), "{rec}");
    assert_eq!(rec["report"]["summary"]["ok"], 2);
}
