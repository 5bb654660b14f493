//! A hung agent (SIGSTOP: its socket stays open, nothing answers) is noticed from the
//! application, not from TCP: the server closes the silent session after three heartbeats
//! and the host shows as not alive (its running tasks then end 310 after the grace).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn a_stopped_agent_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SHOAL_BOOTSTRAP_APP", "app:secret")
        .env("SHOAL_AGENT_TOKEN", "tok")
        .env("SHOAL_HEARTBEAT_SECS", "1")
        .env("SHOAL_AGENT_LOST_GRACE_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let agent = Command::new(BIN)
        .args(["agent", "--server", &url, "--bk-biz-id", "1", "--ip", "127.0.0.7", "--state-dir"])
        .arg(dir.path().join("agent"))
        .env("SHOAL_AGENT_TOKEN", "tok")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_pid = agent.id() as i32;
    kids.0.push(agent);

    let client = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SHOAL_URL", &url)
            .env("SHOAL_APP_CODE", "app")
            .env("SHOAL_APP_SECRET", "secret")
            .env("SHOAL_USERNAME", "tester")
            .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
            .env_remove("SHOAL_BIZ")
            .output()
            .unwrap()
    };
    let alive = || {
        let o = client(&["host", "list", "--biz", "1", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v["data"][0]["alive"].as_i64() == Some(1)
    };
    wait_until("the agent to connect", Duration::from_secs(30), alive);
    // Stop the agent: its connection stays open, it answers nothing.
    assert!(signal(agent_pid, "STOP"));
    wait_until("the server to drop the silent agent", Duration::from_secs(30), || !alive());
    let _ = signal(agent_pid, "CONT");
}

/// Send a signal with kill(1).
fn signal(pid: i32, sig: &str) -> bool {
    Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().is_ok_and(|s| s.success())
}
