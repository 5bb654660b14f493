//! `shoal biz-set …` against a server process: define, list and delete a business set.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn business_sets_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Kids(vec![Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("SHOAL_BOOTSTRAP_APP", "root-app:root-secret")
        .env("SHOAL_AGENT_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()]);
    let url = format!("http://127.0.0.1:{port}");
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let shoal = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SHOAL_URL", &url)
            .env("SHOAL_APP_CODE", "root-app")
            .env("SHOAL_APP_SECRET", "root-secret")
            .env("SHOAL_USERNAME", "admin")
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
    let o = shoal(&["biz-set", "set", "8000001", "--members", "2,3", "--name", "prod"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = shoal(&["biz-set", "list"]);
    assert!(o.status.success() && text(&o).contains("8000001") && text(&o).contains("[2,3]"), "{}", text(&o));
    let o = shoal(&["biz-set", "set", "12", "--members", "2"]);
    assert!(!o.status.success(), "a business id is not a set id: {}", text(&o));
    let o = shoal(&["biz-set", "delete", "8000001"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = shoal(&["biz-set", "list"]);
    assert!(!text(&o).contains("8000001"), "{}", text(&o));
}
