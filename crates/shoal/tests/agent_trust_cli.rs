//! Agent trust as an operator runs it, with `shoal` processes: the token from a file or the
//! environment never reaches a job (not in any /proc/*/cmdline, not in the agent's environ as
//! seen by another user, not in the job's environment); the agent's state is private;
//! `shoal agent-token` (business-bound, single-use, pending, revoked), `shoal host list
//! --pending`, `shoal agent-accept`, and `shoal host move` with the agent refused until it
//! says the same.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const APP: &str = "ident-app";
const SECRET: &str = "ident-secret";

fn start_server(port: u16, data: &Path, token: &str) -> Child {
    Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("SHOAL_BOOTSTRAP_APP", format!("{APP}:{SECRET}"))
        .env("SHOAL_AGENT_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// An agent process; `token` is how it gets its token.
enum Tok<'a> {
    File(&'a Path),
    Env(&'a str),
    None,
}

fn agent(port: u16, ip: &str, biz: i64, module: Option<i64>, state: &Path, tok: Tok<'_>) -> Command {
    let mut c = Command::new(BIN);
    c.args(["agent", "--server", &format!("http://127.0.0.1:{port}"), "--bk-biz-id", &biz.to_string(), "--ip", ip, "--state-dir"])
        .arg(state)
        .env_remove("SHOAL_AGENT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(m) = module {
        c.args(["--module", &m.to_string()]);
    }
    match tok {
        Tok::File(p) => {
            c.arg("--token-file").arg(p);
        }
        Tok::Env(t) => {
            c.env("SHOAL_AGENT_TOKEN", t);
        }
        Tok::None => {}
    }
    c
}

/// Runs an agent that must be refused for good; what it printed.
fn refused_agent(mut c: Command) -> String {
    let mut child = c.spawn().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the agent was not refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    text(&out)
}

fn client(port: u16, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SHOAL_URL", format!("http://127.0.0.1:{port}"))
        .env("SHOAL_APP_CODE", APP)
        .env("SHOAL_APP_SECRET", SECRET)
        .env("SHOAL_USERNAME", "admin")
        .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
        .env_remove("SHOAL_BIZ")
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json(port: u16, args: &[&str]) -> Value {
    serde_json::from_str(&ok(client(port, args))).unwrap()
}

fn hosts(port: u16, biz: &str) -> Vec<Value> {
    json(port, &["host", "list", "--biz", biz, "--json"])["data"].as_array().cloned().unwrap_or_default()
}

fn alive(port: u16, biz: &str, ip: &str) -> bool {
    hosts(port, biz).iter().any(|h| h["ip"] == ip && h["alive"] == 1)
}

fn host_id(port: u16, biz: &str, ip: &str) -> i64 {
    hosts(port, biz).iter().find(|h| h["ip"] == ip).and_then(|h| h["bk_host_id"].as_i64()).expect("host listed")
}

fn account(port: u16, os_user: &str) {
    let body =
        serde_json::json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": os_user, "alias": os_user, "type": 1, "category": 1});
    let o = Command::new("curl")
        .args(["-s", "-X", "POST", &format!("http://127.0.0.1:{port}/api/v3/create_account"), "-H", "Content-Type: application/json"])
        .args([
            "-H",
            &format!("X-Bkapi-Authorization: {{\"bk_app_code\":\"{APP}\",\"bk_app_secret\":\"{SECRET}\",\"bk_username\":\"admin\"}}"),
        ])
        .args(["-d", &body.to_string()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"code\":0"), "{}", text(&o));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_job_cannot_read_the_agent_token_and_state_is_private() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPING: switching a job to another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Accounts the agent switches to must reach their script file under the state dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let token = format!("srv-token-{}", std::process::id());
    let port = free_port();
    let mut kids = Kids(vec![start_server(port, &dir.path().join("data"), &token)]);
    wait_until("server to listen", Duration::from_secs(30), || listening(port));

    let token_file = dir.path().join("agent-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (state_a, state_b) = (dir.path().join("agent-a"), dir.path().join("agent-b"));
    let a = agent(port, "127.0.0.61", 1, None, &state_a, Tok::File(&token_file)).stderr(Stdio::null()).spawn().unwrap();
    let b = agent(port, "127.0.0.62", 1, None, &state_b, Tok::Env(&token)).stderr(Stdio::null()).spawn().unwrap();
    let pids = format!("{} {}", a.id(), b.id());
    kids.0.extend([a, b]);
    wait_until("both agents", Duration::from_secs(30), || alive(port, "1", "127.0.0.61") && alive(port, "1", "127.0.0.62"));

    account(port, "nobody");
    let me = whoami();
    account(port, &me);
    // As another user: every command line on the host, and the agents' environments.
    let script = format!(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done; \
         for p in {pids}; do cat /proc/$p/environ 2>&1; echo; done; env; echo read-done"
    );
    let o = client(port, &["run", "--biz", "1", "--account", "nobody", "--ip", "127.0.0.61,127.0.0.62", "-c", &script]);
    let out = text(&o);
    assert!(out.contains("read-done") && out.contains("--token-file"), "the job did read /proc: {out}");
    assert!(out.contains("Permission denied"), "another user's environ is closed: {out}");
    assert!(!out.contains(&token), "the token leaked to a job: {out}");
    assert!(!out.contains("SHOAL_AGENT_TOKEN"), "{out}");
    // As the agent's own user: the job's environment has no trace of the agent's.
    let o = client(port, &["run", "--biz", "1", "--account", &me, "--ip", "127.0.0.62", "-c", "env; echo env-done"]);
    let out = text(&o);
    assert!(out.contains("env-done") && out.contains("PATH="), "{out}");
    // Only the file a script may leave its variables in (its own private directory).
    let agent_vars: Vec<&str> = out.lines().filter(|l| l.contains("SHOAL_") && !l.contains("SHOAL_VARS_FILE=")).collect();
    assert!(!out.contains(&token) && agent_vars.is_empty(), "{out}");

    // The agent's state is its own.
    for state in [&state_a, &state_b] {
        assert_eq!(mode(state) & 0o066, 0, "state dir not listable by others: {:o}", mode(state));
        for private in ["tasks", "outbox"] {
            assert_eq!(mode(&state.join(private)), 0o700, "{private}");
        }
        for file in ["agent_id", "agent_credential"] {
            assert_eq!(mode(&state.join(file)), 0o600, "{file}");
        }
    }
}

#[test]
fn enrolment_tokens_acceptance_and_moves_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut kids = Kids(vec![start_server(port, &dir.path().join("data"), "server-token")]);
    wait_until("server to listen", Duration::from_secs(30), || listening(port));
    let state = |n: &str| dir.path().join(n);
    let write_token = |name: &str, t: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, t).unwrap();
        p
    };

    // A single-use token for business 2: not for business 3, once for business 2.
    let once = ok(client(port, &["agent-token", "create", "--biz", "2", "--single-use", "--description", "rack 7"])).trim().to_string();
    assert!(once.starts_with("shoal-at-"), "{once}");
    let once_file = write_token("once", &once);
    let out = refused_agent(agent(port, "127.0.0.71", 3, None, &state("c3"), Tok::File(&once_file)));
    assert!(out.contains("enrolment token is for business 2; hello claims business 3"), "{out}");
    kids.0.push(agent(port, "127.0.0.72", 2, Some(20), &state("c2"), Tok::File(&once_file)).stderr(Stdio::null()).spawn().unwrap());
    wait_until("the business-2 host", Duration::from_secs(30), || alive(port, "2", "127.0.0.72"));
    let out = refused_agent(agent(port, "127.0.0.73", 2, None, &state("c2b"), Tok::File(&once_file)));
    assert!(out.contains("single-use enrolment token already used"), "{out}");

    // A token that holds agents pending.
    let held = ok(client(port, &["agent-token", "create", "--biz", "1", "--pending", "--expires-in", "1h"])).trim().to_string();
    let mut held_agent = agent(port, "127.0.0.74", 1, None, &state("p"), Tok::Env(&held));
    kids.0.push(held_agent.stderr(Stdio::null()).spawn().unwrap());
    wait_until("the pending agent", Duration::from_secs(30), || {
        json(port, &["host", "list", "--pending", "--json"])["data"].as_array().is_some_and(|a| a.iter().any(|h| h["ip"] == "127.0.0.74"))
    });
    assert!(hosts(port, "1").is_empty(), "a pending host is not listed");
    let pending = json(port, &["host", "list", "--pending", "--json"]);
    let pid = pending["data"][0]["bk_host_id"].as_i64().unwrap();
    let o = client(port, &["run", "--biz", "1", "--ip", "127.0.0.74", "-c", "echo never"]);
    assert!(!o.status.success(), "a pending host takes no job: {}", text(&o));
    let out = ok(client(port, &["agent-accept", "--host-id", &pid.to_string()]));
    assert!(out.contains(&format!("host {pid} accepted")), "{out}");
    wait_until("the accepted agent", Duration::from_secs(30), || alive(port, "1", "127.0.0.74"));

    // Tokens are listed without their text; a revoked one enrols nobody.
    let list = ok(client(port, &["agent-token", "list"]));
    assert!(list.contains("rack 7") && !list.contains(&once) && !list.contains(&held), "{list}");
    let tokens = json(port, &["agent-token", "list", "--json"]);
    let held_id = tokens["data"].as_array().unwrap().iter().find(|t| t["pending"] == true).unwrap()["id"].as_i64().unwrap();
    ok(client(port, &["agent-token", "revoke", &held_id.to_string()]));
    let out = refused_agent(agent(port, "127.0.0.75", 1, None, &state("r"), Tok::Env(&held)));
    assert!(out.contains("enrolment token revoked"), "{out}");

    // A move is an admin act; the agent must then say the same, or it is refused.
    let id = host_id(port, "2", "127.0.0.72");
    let out = ok(client(port, &["host", "move", "--host-id", &id.to_string(), "--biz", "5", "--module", "50"]));
    assert!(out.contains("business 5"), "{out}");
    let out = refused_agent(agent(port, "127.0.0.72", 2, Some(20), &state("c2"), Tok::None));
    assert!(out.contains(&format!("an admin must run `shoal host move --host-id {id}`")), "{out}");
    let o = client(port, &["host", "move", "--host-id", &id.to_string(), "--ip", "127.0.0.74"]);
    assert!(!o.status.success() && text(&o).contains("belongs to another host"), "{}", text(&o));
}
