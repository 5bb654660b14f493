//! Exactly once across agent crashes, and "the whole tree" of a task: a real server, a real
//! agent, real scripts that start `setsid` daemons and background children.
//!
//! - An agent killed with SIGKILL mid-task: the restarted agent kills what is left of the
//!   task (daemons included) and reports it once, as lost (310); nothing of it runs later.
//! - A timeout stops every process the script started, `setsid` ones included.
//! - A script that exits normally may leave a service running: that is how jobs start
//!   services, and it keeps working.

mod common;

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const APP: &str = "crash-app";
const SECRET: &str = "crash-secret";
const TOKEN: &str = "crash-token";

fn start_server(port: u16, data: &Path) -> Child {
    server_cmd(port, data, (APP, SECRET), TOKEN).env("SHOAL_AGENT_LOST_GRACE_SECS", "60").spawn().unwrap()
}

fn start_agent(port: u16, state: &Path) -> Child {
    agent_cmd(port, "127.0.0.31", state, TOKEN).spawn().unwrap()
}

fn client(port: u16, args: &[&str]) -> Output {
    cli_cmd(port, (APP, SECRET)).args(args).output().unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)))
}

fn alive(port: u16) -> bool {
    let v: Value = serde_json::from_slice(&client(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null);
    v["data"].as_array().is_some_and(|a| a.iter().any(|h| h["alive"] == 1))
}

/// Starts `script` on every host without waiting; the job id.
fn submit(port: u16, script: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "--all", "--no-wait", "--json", "-c", script];
    args.extend_from_slice(extra);
    let v = json(&client(port, &args));
    v["job_instance_id"].as_i64().unwrap_or_else(|| panic!("{v}")).to_string()
}

/// Waits for the job to finish; its logs answer (status, hosts with status and output).
fn finished(port: u16, job: &str) -> Value {
    wait_until("the job to finish", Duration::from_secs(60), || {
        let v: Value = serde_json::from_slice(&client(port, &["job", "status", job, "--json"]).stdout).unwrap_or(Value::Null);
        v["finished"] == true
    });
    json(&client(port, &["job", "logs", job, "--json"]))
}

/// A server and one agent, ready; the agent's state dir and a dir for the scripts' marks.
struct Rig {
    dir: tempfile::TempDir,
    port: u16,
    kids: Kids,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("marks");
        std::fs::create_dir(&marks).unwrap();
        let port = free_port();
        let kids = Kids(vec![start_server(port, &dir.path().join("data"))]);
        wait_until("the server to listen", Duration::from_secs(30), || listening(port));
        let mut rig = Rig { dir, port, kids };
        rig.kids.0.push(start_agent(port, &rig.agent_state()));
        wait_until("the agent to connect", Duration::from_secs(30), || alive(port));
        let me = whoami();
        let body = json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1});
        let acc = post_json(port, (APP, SECRET), "/api/v3/create_account", body);
        assert_eq!(acc["code"], 0, "{acc}");
        rig
    }

    fn agent_state(&self) -> std::path::PathBuf {
        self.dir.path().join("agent")
    }

    fn mark(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("marks").join(name)
    }
}

#[test]
fn a_task_running_when_the_agent_is_killed_is_stopped_and_reported_once() {
    let mut rig = Rig::start();
    let (started, late_main, late_daemon, late_child) =
        (rig.mark("started"), rig.mark("late-main"), rig.mark("late-daemon"), rig.mark("late-child"));
    let script = format!(
        "setsid sh -c 'sleep 4; touch {d}' >/dev/null 2>&1 </dev/null &\n\
         (sleep 4; touch {c}) &\n\
         echo begin; touch {s}\n\
         sleep 4; touch {m}\n",
        d = late_daemon.display(),
        c = late_child.display(),
        s = started.display(),
        m = late_main.display()
    );
    let job = submit(rig.port, &script, &[]);
    wait_until("the script to start", Duration::from_secs(30), || started.exists());
    // Output is flushed to the agent's outbox every 100 ms; let "begin" get there.
    std::thread::sleep(Duration::from_millis(500));

    // SIGKILL the agent mid-task, and start it again on the same state dir.
    rig.kids.0[1].kill().unwrap();
    rig.kids.0[1].wait().unwrap();
    rig.kids.0[1] = start_agent(rig.port, &rig.agent_state());

    let v = finished(rig.port, &job);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{v}");
    assert_eq!(hosts[0]["status"], 310, "lost with the agent: {v}");
    let out = hosts[0]["output"].as_str().unwrap();
    assert!(out.starts_with("begin\n"), "{out}");
    assert_eq!(out.matches("the agent restarted while this task was running").count(), 1, "{out}");
    assert!(out.contains("were killed"), "the note says what was done about the leftovers: {out}");

    // Nothing of the task runs after it was reported.
    std::thread::sleep(Duration::from_secs(5));
    for late in [&late_main, &late_daemon, &late_child] {
        assert!(!late.exists(), "{} ran after the task was reported lost", late.display());
    }
    // The answer is final: still exactly one host, still 310.
    let again = json(&client(rig.port, &["job", "logs", &job, "--json"]));
    assert_eq!(again["hosts"], v["hosts"]);
}

#[test]
fn a_timeout_stops_setsid_descendants_too() {
    let rig = Rig::start();
    let (started, late) = (rig.mark("started"), rig.mark("late-daemon"));
    let script = format!(
        "setsid sh -c 'sleep 3; touch {l}' >/dev/null 2>&1 </dev/null &\n\
         touch {s}; sleep 300\n",
        l = late.display(),
        s = started.display()
    );
    let job = submit(rig.port, &script, &["--timeout", "1"]);
    let v = finished(rig.port, &job);
    assert!(started.exists());
    assert_eq!(v["hosts"][0]["status"], 102, "timed out: {v}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!late.exists(), "a setsid daemon of a timed-out task kept running");
}

#[test]
fn a_service_started_by_a_script_that_exits_keeps_running() {
    let rig = Rig::start();
    let service = rig.mark("service");
    let script = format!("nohup setsid sh -c 'sleep 2; touch {}' >/dev/null 2>&1 </dev/null &\necho started\n", service.display());
    let job = submit(rig.port, &script, &[]);
    let v = finished(rig.port, &job);
    assert_eq!(v["hosts"][0]["status"], 9, "{v}");
    assert_eq!(v["hosts"][0]["output"], "started\n", "{v}");
    wait_until("the service the script started", Duration::from_secs(10), || service.exists());
}
