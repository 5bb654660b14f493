//! The day-2 CLI against a real server and real agents: removing dead (and, forced, live)
//! hosts, dynamic groups as targets, library scripts run by name, rolling runs, and errors
//! that say what to do next (in English, or Chinese by flag or locale).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const APP: &str = "day2-app";
const SECRET: &str = "day2-secret";
const TOKEN: &str = "day2-token";

fn cli(port: u16) -> Command {
    let mut c = cli_cmd(port, (APP, SECRET));
    c.stdin(Stdio::null()).env_remove("LANG").env_remove("LC_ALL").env_remove("LC_MESSAGES");
    c
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).output().unwrap()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)))
}

fn hosts(port: u16) -> Vec<Value> {
    serde_json::from_slice::<Value>(&run(port, &["host", "list", "--json"]).stdout)
        .ok()
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
}

fn id_of(port: u16, ip: &str) -> String {
    hosts(port).iter().find(|h| h["ip"] == ip).unwrap_or_else(|| panic!("no host {ip}"))["bk_host_id"].to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ips_of(o: &Output) -> Vec<String> {
    let mut ips: Vec<String> = json_of(o)["hosts"].as_array().unwrap().iter().map(|h| h["ip"].as_str().unwrap().to_string()).collect();
    ips.sort();
    ips.dedup();
    ips
}

#[test]
fn day_two() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    for (ip, role) in [("127.0.0.91", "web"), ("127.0.0.92", "db"), ("127.0.0.93", "db")] {
        let agent = agent_cmd(port, ip, &dir.path().join(ip), TOKEN).args(["--label", &format!("role={role}")]).spawn().unwrap();
        kids.0.push(agent);
    }
    wait_until("three agents", Duration::from_secs(30), || hosts(port).iter().filter(|h| h["alive"] == 1).count() == 3);
    let o = run(port, &["account", "create", &whoami()]);
    assert!(o.status.success(), "{}", text(&o));
    let web = id_of(port, "127.0.0.91");

    // An empty business says where the hosts are.
    let o = run(port, &["host", "list", "--biz", "2"]);
    assert!(
        o.status.success() && text(&o).contains("no host is registered in business 2; hosts are registered in business 1: give --biz 1"),
        "{}",
        text(&o)
    );

    // Errors say what to do next, keep JOB's code, and speak Chinese when asked.
    let o = run(port, &["run", "--host", "9999", "-c", "true"]);
    let t = text(&o);
    assert!(
        !o.status.success()
            && t.contains("error 1243053: host 9999 is not registered in business 1 — list hosts with 'shoal host list --biz 1'"),
        "{t}"
    );
    let o = run(port, &["--ui-lang", "zh", "run", "--host", "9999", "-c", "true"]);
    assert!(text(&o).contains("错误 1243053：主机 9999 未在业务 1 中注册"), "{}", text(&o));
    let o = cli(port).args(["run", "--host", "9999", "-c", "true"]).env("LANG", "zh_CN.UTF-8").output().unwrap();
    assert!(text(&o).contains("错误 1243053"), "{}", text(&o));
    let o = run(port, &["run", "--host", &web, "--account", "nobody", "-c", "true"]);
    assert!(text(&o).contains("error 1244003: there is no execution account \"nobody\" in business 1"), "{}", text(&o));
    let o = cli(port).args(["host", "list"]).env("SHOAL_APP_SECRET", "wrong").output().unwrap();
    assert!(text(&o).contains("did not accept these credentials"), "{}", text(&o));
    let o = run(port, &["run", "--selector", "role==nomatch", "-c", "true"]);
    assert!(
        !o.status.success() && text(&o).contains("no registered host of business 1 matches --selector \"role==nomatch\""),
        "{}",
        text(&o)
    );

    // Rolling: one host per batch.
    let o = run(port, &["run", "--json", "--selector", "role=db", "--batch", "1", "--mode", "ignore", "-c", "echo rolled"]);
    assert!(o.status.success(), "{}", text(&o));
    let job = json_of(&o)["job_instance_id"].to_string();
    let st = json_of(&run(port, &["job", "status", &job, "--json"]));
    assert_eq!(st["step_instance_list"][0]["total_batch"], 2, "{st}");
    let o = run(port, &["run", "--all", "--batch", "0%", "-c", "true"]);
    assert!(text(&o).contains("error 1244026") && text(&o).contains("--batch takes sizes like"), "{}", text(&o));

    // Dynamic groups: saved, listed, targeted, deleted.
    let o = run(port, &["group", "create", "databases", "--id", "dbs", "--selector", "role=db"]);
    assert!(o.status.success() && text(&o).contains("shoal run --group dbs"), "{}", text(&o));
    let o = run(port, &["group", "list"]);
    assert!(text(&o).contains("dbs") && text(&o).contains("databases") && text(&o).contains("role=db"), "{}", text(&o));
    let o = run(port, &["run", "--json", "--group", "dbs", "--host", &web, "-c", "echo grouped"]);
    assert_eq!(ips_of(&o), ["127.0.0.91", "127.0.0.92", "127.0.0.93"], "{}", text(&o));
    let o = run(port, &["group", "delete", "dbs"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&run(port, &["group", "list"])).contains("databases"));

    // Library scripts by name: the online version, or NAME@VERSION.
    let v1 = dir.path().join("hello.sh");
    std::fs::write(&v1, "echo hello v1\n").unwrap();
    let o = run(port, &["script", "add", "-f", v1.to_str().unwrap(), "--name", "hello", "--version", "1.0"]);
    assert!(o.status.success(), "{}", text(&o));
    let publish: Vec<String> = text(&o).rsplit("shoal script publish ").next().unwrap().split_whitespace().map(str::to_string).collect();
    let o = run(port, &["script", "publish", "hello", &publish[1]]);
    assert!(o.status.success() && text(&o).contains("online"), "{}", text(&o));
    let o = run(port, &["script", "show", "hello"]);
    assert!(o.status.success() && text(&o).contains("1.0") && text(&o).contains("online"), "{}", text(&o));
    let v2 = dir.path().join("hello2.sh");
    std::fs::write(&v2, "echo hello v2\n").unwrap();
    let o = run(port, &["script", "add", "-f", v2.to_str().unwrap(), "--script-id", &publish[0], "--version", "2.0"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(port, &["run", "--json", "--host", &web, "--script", "hello"]);
    assert_eq!(json_of(&o)["hosts"][0]["output"], "hello v1\n", "{}", text(&o));
    let o = run(port, &["run", "--json", "--host", &web, "--script", "hello@1.0", "--param", "--fast \"a b\""]);
    assert_eq!(json_of(&o)["hosts"][0]["output"], "hello v1\n", "{}", text(&o));
    let o = run(port, &["run", "--host", &web, "--script", "nope"]);
    assert!(!o.status.success() && text(&o).contains("no script named \"nope\""), "{}", text(&o));

    // Custom dangerous-command rules: added, checked against, enforced, turned off, deleted.
    let o = run(port, &["danger", "rule", "add", "--expression", "forbidden-word", "--description", "the word"]);
    assert!(o.status.success() && text(&o).contains("rule 1 added"), "{}", text(&o));
    let o = run(port, &["danger", "rule", "list"]);
    assert!(text(&o).contains("intercept") && text(&o).contains("forbidden-word"), "{}", text(&o));
    let risky = dir.path().join("risky.sh");
    std::fs::write(&risky, "#!/bin/bash\necho ok\necho forbidden-word\n").unwrap();
    let o = run(port, &["danger", "check", "-f", risky.to_str().unwrap()]);
    assert!(o.status.code() == Some(1) && text(&o).contains("risky.sh:3: echo forbidden-word (the word)"), "{}", text(&o));
    let o = run(port, &["run", "--host", &web, "-c", "echo forbidden-word"]);
    assert!(text(&o).contains("error 1244019: the script matches a dangerous-command rule"), "{}", text(&o));
    let o = run(port, &["danger", "rule", "disable", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(port, &["run", "--host", &web, "-c", "echo forbidden-word"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(port, &["danger", "rule", "delete", "1"]);
    assert!(o.status.success() && !text(&run(port, &["danger", "rule", "list"])).contains("forbidden-word"), "{}", text(&o));

    // A dead host: every --all run fails on it until it is removed.
    let dead = id_of(port, "127.0.0.93");
    kids.0[3].kill().unwrap();
    kids.0[3].wait().unwrap();
    wait_until("the host lost", Duration::from_secs(60), || hosts(port).iter().any(|h| h["ip"] == "127.0.0.93" && h["alive"] == 0));
    let o = run(port, &["host", "list"]);
    let line = text(&o).lines().find(|l| l.contains("127.0.0.93")).unwrap().to_string();
    assert!(line.contains(" lost "), "{line}");
    let o = run(port, &["run", "--all", "--timeout", "20", "-c", "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = run(port, &["host", "remove", &dead]);
    assert!(o.status.success() && text(&o).contains(&format!("host {dead} (0:127.0.0.93) removed")), "{}", text(&o));
    assert!(!hosts(port).iter().any(|h| h["ip"] == "127.0.0.93"));
    let o = run(port, &["run", "--all", "-c", "true"]);
    assert!(o.status.success(), "{}", text(&o));
    // A connected host is refused without --force, then removed and its agent disconnected.
    let db = id_of(port, "127.0.0.92");
    let o = run(port, &["host", "remove", &db]);
    assert!(!o.status.success() && text(&o).contains("is connected") && text(&o).contains("--force"), "{}", text(&o));
    assert!(hosts(port).iter().any(|h| h["ip"] == "127.0.0.92"));
    let o = run(port, &["host", "remove", &db, "--force"]);
    assert!(o.status.success() && text(&o).contains("removed and disconnected"), "{}", text(&o));
    assert!(!hosts(port).iter().any(|h| h["ip"] == "127.0.0.92"));
    let o = run(port, &["run", "--all", "--json", "-c", "true"]);
    assert_eq!(ips_of(&o), ["127.0.0.91"], "{}", text(&o));
}

/// Sets and modules get names (agents report only ids): `host list` shows them beside the ids.
#[test]
fn sets_and_modules_have_names() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let agent = agent_cmd(port, "127.0.0.95", &dir.path().join("a"), TOKEN).args(["--set", "3", "--module", "7"]).spawn().unwrap();
    kids.0.push(agent);
    wait_until("the agent", Duration::from_secs(30), || hosts(port).iter().any(|h| h["alive"] == 1));
    let o = run(port, &["host", "list"]);
    let row = |o: &Output| stdout(o).lines().find(|l| l.contains("127.0.0.95")).unwrap_or_default().to_string();
    assert!(o.status.success() && !row(&o).contains("web-tier"), "{}", text(&o));

    let o = run(port, &["host", "name", "--set", "3", "web-tier"]);
    assert!(o.status.success() && stdout(&o).contains("set 3 of business 1 is named \"web-tier\""), "{}", text(&o));
    let o = run(port, &["host", "name", "--module", "7", "nginx"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(port, &["host", "list"]);
    assert!(row(&o).contains("web-tier(3)") && row(&o).contains("nginx(7)"), "{}", text(&o));
    let h = hosts(port).into_iter().find(|h| h["ip"] == "127.0.0.95").unwrap();
    assert_eq!((h["set_name"].as_str(), h["module_name"].as_str()), (Some("web-tier"), Some("nginx")), "{h}");
    // Another business's set 3 is not this one.
    let o = run(port, &["host", "name", "--biz", "2", "--set", "3", "other"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(row(&run(port, &["host", "list"])).contains("web-tier(3)"));
    // An empty name removes it; a set and a module at once is refused.
    let o = run(port, &["host", "name", "--set", "3", ""]);
    assert!(o.status.success() && stdout(&o).contains("has no name now"), "{}", text(&o));
    let o = run(port, &["host", "list"]);
    assert!(!row(&o).contains("web-tier") && row(&o).contains("nginx(7)"), "{}", text(&o));
    let o = run(port, &["host", "name", "--set", "3", "--module", "7", "x"]);
    assert!(!o.status.success(), "{}", text(&o));
    // Named in the audit trail.
    let o = run(port, &["audit", "list", "--action", "name_topology"]);
    assert!(o.status.success() && stdout(&o).contains("name_topology"), "{}", text(&o));
}

/// A revoked agent's host leaves the fleet: no longer listed, no longer in `--all`, so the
/// next `shoal run --all` succeeds on the hosts that are left.
#[test]
fn a_revoked_agent_leaves_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    for ip in ["127.0.0.96", "127.0.0.97"] {
        kids.0.push(agent_cmd(port, ip, &dir.path().join(ip), TOKEN).args(["--label", "role=web"]).spawn().unwrap());
    }
    wait_until("two agents", Duration::from_secs(30), || hosts(port).iter().filter(|h| h["alive"] == 1).count() == 2);
    let o = run(port, &["account", "create", &whoami()]);
    assert!(o.status.success(), "{}", text(&o));
    let gone = id_of(port, "127.0.0.97");
    let o = run(port, &["agent-revoke", "--host-id", &gone]);
    assert!(o.status.success(), "{}", text(&o));

    assert!(!hosts(port).iter().any(|h| h["ip"] == "127.0.0.97"), "{:?}", hosts(port));
    assert!(!stdout(&run(port, &["host", "list"])).contains("127.0.0.97"));
    let o = run(port, &["run", "--all", "--json", "--timeout", "20", "-c", "true"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ips_of(&o), ["127.0.0.96"], "{}", text(&o));
    // Named explicitly, it is no host of the business any more.
    let o = run(port, &["run", "--host", &gone, "-c", "true"]);
    assert!(!o.status.success() && text(&o).contains(&format!("host {gone} is not registered")), "{}", text(&o));

    // A selector that matches nothing says so, and which labels there are.
    let o = run(port, &["host", "list", "--selector", "role=db"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no registered host of business 1 matches --selector \"role=db\""), "{}", text(&o));
    assert!(text(&o).contains("role=web"), "the labels in use: {}", text(&o));
}

/// `--lang` of `shoal run` is the script's language; the messages' language has a flag of
/// its own that works after any subcommand.
#[test]
fn the_script_language_and_the_message_language_do_not_clash() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let _kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let o = run(port, &["account", "create", &whoami()]);
    assert!(o.status.success(), "{}", text(&o));
    // Chinese messages from a flag after the subcommand.
    let o = run(port, &["run", "--ui-lang", "zh", "--host", "9999", "-c", "true"]);
    assert!(text(&o).contains("错误 1243053"), "{}", text(&o));
    let o = cli(port).args(["run", "--host", "9999", "-c", "true"]).env("SHOAL_LANG", "zh").output().unwrap();
    assert!(text(&o).contains("错误 1243053"), "SHOAL_LANG: {}", text(&o));
    // `shoal run --lang zh`: not a script language; the error names the flag that was meant.
    let o = run(port, &["run", "--lang", "zh", "--host", "9999", "-c", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("\"zh\" is not a script language") && text(&o).contains("--ui-lang zh"), "{}", text(&o));
    // The script's language still works as before.
    let o = run(port, &["run", "--lang", "python", "--host", "9999", "-c", "print(1)"]);
    assert!(text(&o).contains("error 1243053"), "{}", text(&o));
}
