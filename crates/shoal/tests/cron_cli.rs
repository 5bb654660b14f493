//! `shoal cron …` against a server process and an agent process: a one-shot cron created
//! from the command line runs its plan on the agent, and shows its fire; crons are listed,
//! updated (name, schedule, values), paused and deleted.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const APP: &str = "cron-app";
const SECRET: &str = "cron-secret";
const TOKEN: &str = "cron-token";

fn cli(port: u16) -> Command {
    cli_cmd(port, (APP, SECRET))
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).output().unwrap()
}

#[test]
fn crons_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).env("SHOAL_CRON_POLL_MS", "100").spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    kids.0.push(agent_cmd(port, "127.0.0.81", &dir.path().join("agent"), TOKEN).spawn().unwrap());
    let hosts = || -> Value { serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null) };
    wait_until("the agent", Duration::from_secs(30), || hosts()["data"].as_array().is_some_and(|a| a.iter().any(|h| h["alive"] == 1)));
    let host = hosts()["data"][0]["bk_host_id"].as_i64().unwrap();
    let o = run(port, &["account", "create", &whoami(), "--alias", "tester"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc = json!({
        "name": "cli-cron",
        "variables": [{"name": "WHO", "type": "string", "value": "nobody"}],
        "steps": [{"name": "hello", "script": {"content": "echo \"hello from cron to $WHO\"", "account": "tester", "target": {"host_id_list": [host]}}}],
        "plans": [{"name": "default"}]
    });
    let applied = post_json(
        port,
        (APP, SECRET),
        "/api/shoal/v1/templates/apply",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "document": doc}),
    );
    let plan = applied["data"]["plans"][0]["id"].as_i64().unwrap_or_else(|| panic!("{applied}")).to_string();

    let o = run(port, &["cron", "list"]);
    assert!(o.status.success() && text(&o).contains("business 1 has no cron"), "{}", text(&o));
    // A bad expression is the server's error, shown.
    let o = run(port, &["cron", "create", "--plan", &plan, "--name", "bad", "--expression", "0 0 L * *"]);
    assert!(!o.status.success() && text(&o).contains("1241010"), "{}", text(&o));

    let o = run(port, &["cron", "create", "--plan", &plan, "--name", "nightly", "--expression", "30 2 * * *", "--time-zone", "UTC"]);
    assert!(o.status.success() && text(&o).contains("created (paused: shoal cron enable)"), "{}", text(&o));
    let o = run(port, &["cron", "create", "--plan", &plan, "--name", "soon", "--at", "+2", "--var", "WHO=the-cli", "--enable"]);
    assert!(o.status.success() && text(&o).contains("created (running)"), "{}", text(&o));
    let soon: String = text(&o).split_whitespace().nth(1).unwrap().trim_start_matches('#').to_string();

    wait_until("the one-shot's job", Duration::from_secs(30), || text(&run(port, &["cron", "show", &soon])).contains(" started job "));
    let show = text(&run(port, &["cron", "show", &soon]));
    assert!(show.contains("(paused)") && show.contains("var WHO = \"the-cli\""), "{show}");
    let job = show.split(" started job ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    wait_until("the job's result", Duration::from_secs(30), || {
        text(&run(port, &["job", "logs", &job])).contains("hello from cron to the-cli")
    });

    let o = run(port, &["cron", "list"]);
    let list = text(&o);
    assert!(list.contains("nightly") && list.contains("30 2 * * * (UTC)") && list.contains("soon") && list.contains("once at"), "{list}");
    let nightly = list.lines().find(|l| l.contains("nightly")).unwrap().split_whitespace().next().unwrap().to_string();
    let o = run(port, &["cron", "enable", &nightly]);
    assert!(o.status.success() && text(&o).contains("running; next fire ") && text(&o).contains(":30:00 UTC"), "{}", text(&o));

    // Update: a new name, schedule and value; saving pauses a running cron, as JOB does.
    let o = run(port, &["cron", "update", &nightly, "--name", "nightly-3am", "--expression", "0 3 * * 1-5", "--var", "WHO=ops"]);
    assert!(
        o.status.success() && text(&o).contains(&format!("cron #{nightly} nightly-3am updated (paused: shoal cron enable)")),
        "{}",
        text(&o)
    );
    let show = text(&run(port, &["cron", "show", &nightly]));
    assert!(show.contains("nightly-3am (paused)") && show.contains("schedule: 0 3 * * 1-5 (UTC)"), "{show}");
    assert!(show.contains("var WHO = \"ops\""), "{show}");
    // A one-shot time instead, started again at once; the values set before are kept.
    let o = run(port, &["cron", "update", &nightly, "--at", "+3600", "--enable"]);
    assert!(o.status.success() && text(&o).contains("updated (running)"), "{}", text(&o));
    let show = text(&run(port, &["cron", "show", &nightly]));
    assert!(show.contains("(running)") && show.contains("schedule: once at ") && show.contains("var WHO = \"ops\""), "{show}");
    let o = run(port, &["cron", "update", &nightly, "--var", "NOPE=1"]);
    assert!(!o.status.success() && text(&o).contains("1241005"), "an unknown variable is the server's error: {}", text(&o));
    let o = run(port, &["cron", "update", &nightly]);
    assert!(!o.status.success() && text(&o).contains("nothing to change"), "{}", text(&o));
    let o = run(port, &["cron", "disable", &nightly]);
    assert!(o.status.success() && text(&o).contains("paused"), "{}", text(&o));
    let o = run(port, &["cron", "delete", &nightly]);
    assert!(o.status.success() && text(&o).contains(&format!("cron #{nightly} deleted")), "{}", text(&o));
    let o = run(port, &["cron", "show", &nightly]);
    assert!(!o.status.success() && text(&o).contains("1245001"), "{}", text(&o));
}
