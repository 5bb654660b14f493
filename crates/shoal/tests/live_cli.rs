//! Live and interruptible runs against a real server and real agents: `shoal run --follow`
//! streams each host's lines as they come, Ctrl-C terminates the job or detaches from it,
//! `shoal job watch` re-attaches, and a job waiting for a confirmation says who may give it
//! and the command to do it.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const APP: &str = "live-app";
const SECRET: &str = "live-secret";
const TOKEN: &str = "live-token";
const IPS: [&str; 2] = ["127.0.0.81", "127.0.0.82"];

fn cli(port: u16) -> Command {
    let mut c = cli_cmd(port, (APP, SECRET));
    c.stdin(Stdio::null());
    c
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).output().unwrap()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(o)))
}

/// A server and two agents, with an execution account for the OS user.
fn fleet(dir: &Path) -> (u16, Kids) {
    let port = free_port();
    let server = server_cmd(port, &dir.join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    for ip in IPS {
        kids.0.push(agent_cmd(port, ip, &dir.join(ip), TOKEN).spawn().unwrap());
    }
    wait_until("both agents", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null);
        v["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == 2)
    });
    let o = run(port, &["account", "create", &whoami()]);
    assert!(o.status.success(), "{}", text(&o));
    (port, kids)
}

/// The newest job's id and status.
fn newest_job(port: u16) -> Option<(i64, i64)> {
    let v = json_of(&run(port, &["job", "list", "--json", "--limit", "1"]));
    let j = v["data"].as_array()?.first()?.clone();
    Some((j["job_instance_id"].as_i64()?, j["status"].as_i64()?))
}

fn job_status(port: u16, id: i64) -> i64 {
    json_of(&run(port, &["job", "status", &id.to_string(), "--json"]))["job_instance"]["status"].as_i64().unwrap()
}

fn sigint(child: &Child) {
    let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

/// Reads lines from `r` until one satisfies `f` for each of `wanted`; returns what was read.
fn read_until(r: &mut impl BufRead, wanted: &[&str]) -> String {
    let mut seen = String::new();
    let mut left: Vec<&str> = wanted.to_vec();
    while !left.is_empty() {
        let mut line = String::new();
        let n = r.read_line(&mut line).unwrap();
        assert!(n > 0, "the output ended before {left:?}: {seen}");
        left.retain(|w| !line.contains(w));
        seen.push_str(&line);
    }
    seen
}

#[test]
fn follow_streams_and_ctrl_c_terminates_or_detaches() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _kids) = fleet(dir.path());
    let gate = dir.path().join("gate");
    let gated = format!("echo first; while [ ! -e {} ]; do sleep 0.1; done; echo second", gate.display());

    // Lines show while the job runs: the job cannot end before the gate file exists.
    let mut child =
        cli(port).args(["run", "--all", "--follow", "-c", &gated]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, &["127.0.0.81: first", "127.0.0.82: first"]);
    let (job, status) = newest_job(port).unwrap();
    assert_eq!(status, 2, "job {job} runs while its first lines are shown");
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("127.0.0.81: second") && rest.contains("127.0.0.82: second"), "{rest}");
    assert!(!rest.contains(": first"), "a line is printed once: {rest}");
    std::fs::remove_file(&gate).unwrap();

    // Ctrl-C with --on-interrupt terminate: the job is terminated, the CLI shows its end.
    let mut child = cli(port)
        .args(["run", "--all", "--follow", "--on-interrupt", "terminate", "-c", "echo up; sleep 600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, &["127.0.0.81: up", "127.0.0.82: up"]);
    let (job, _) = newest_job(port).unwrap();
    sigint(&child);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("job {job}: terminating")), "{err}");
    let st = job_status(port, job);
    assert!(st == 3 || st == 4 || st == 8 || st == 11, "job {job} ended by the terminate, status {st}");

    // Not on a terminal and no flag: Ctrl-C detaches; the job runs on, and the CLI says how
    // to re-attach; `shoal job watch --follow` does, to the job's end.
    let mut child = cli(port).args(["run", "--all", "-c", &gated]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until("the job to run", Duration::from_secs(30), || newest_job(port).is_some_and(|(j, s)| j > job && s == 2));
    let (job, _) = newest_job(port).unwrap();
    sigint(&child);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    let reattach = format!("shoal job watch {job} --biz 1");
    assert!(err.contains(&format!("detached; job {job} runs on. Re-attach with: {reattach}")), "{err}");
    assert_eq!(job_status(port, job), 2, "the detached job runs on");
    let mut watch = cli(port).args(["job", "watch", &job.to_string(), "--follow"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(watch.stdout.take().unwrap());
    read_until(&mut out, &["127.0.0.81: first", "127.0.0.82: first"]);
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(watch.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("127.0.0.82: second"), "{rest}");
    assert_eq!(job_status(port, job), 3);
    // Watching a finished job shows it at once.
    let o = run(port, &["job", "watch", &job.to_string()]);
    assert!(o.status.success() && text(&o).contains("second"), "{}", text(&o));
}

#[test]
fn a_job_waiting_for_confirmation_says_who_and_how() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _kids) = fleet(dir.path());
    let me = whoami();
    let yaml = format!(
        r#"name: gated
steps:
  - name: greet
    script:
      content: echo hello
      account: {me}
      target:
        topo_node_list: [{{id: 1, node_type: biz}}]
  - name: gate
    confirm:
      message: is the canary healthy?
      users: [alice, tester]
  - name: finish
    script:
      content: echo finished
      account: {me}
      target:
        topo_node_list: [{{id: 1, node_type: biz}}]
plans:
  - name: default
"#
    );
    let file = dir.path().join("gated.yaml");
    std::fs::write(&file, yaml).unwrap();
    let o = run(port, &["template", "apply", "-f", file.to_str().unwrap(), "-m", "first"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut child = cli(port).args(["template", "run", "gated"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let said = read_until(&mut err, &["waits for a confirmation", "who may confirm", "to confirm: "]);
    assert!(said.contains("at step \"gate\": is the canary healthy?"), "{said}");
    assert!(said.contains("who may confirm: alice, tester"), "{said}");
    let command = said.lines().find_map(|l| l.trim().strip_prefix("to confirm: ")).unwrap().to_string();
    let (job, _) = newest_job(port).unwrap();
    assert!(command.starts_with(&format!("shoal job confirm {job} --step ")) && command.ends_with(" --biz 1"), "{command}");
    // `shoal job status` says the same.
    let o = run(port, &["job", "status", &job.to_string()]);
    assert!(text(&o).contains("who may confirm: alice, tester") && text(&o).contains(&command), "{}", text(&o));
    // The command works as printed.
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let o = run(port, &args);
    assert!(o.status.success(), "{}", text(&o));
    let status = child.wait().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success() && out.contains("finished"), "{out}");
}

/// On a terminal, Ctrl-C asks; answering `t` terminates the job. The terminal is a real
/// pseudo-terminal (util-linux `script`, which the test needs), the Ctrl-C a typed ^C.
#[test]
fn ctrl_c_on_a_terminal_asks() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (port, _kids) = fleet(dir.path());
    // `exec`: the shell `script` starts must not stay in between; a shell that waits while
    // the terminal's ^C arrives dies of it (dash does) and reports 130 for the CLI.
    let inner = format!("exec {BIN} run --all -c 'echo up; sleep 600'");
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("SHELL", "/bin/sh")
        // The progress bar (which the test waits for) is drawn only on a terminal that says
        // what it is.
        .env("TERM", "xterm")
        .env("SHOAL_URL", format!("http://127.0.0.1:{port}"))
        .env("SHOAL_APP_CODE", APP)
        .env("SHOAL_APP_SECRET", SECRET)
        .env("SHOAL_USERNAME", "tester")
        .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
        .env_remove("SHOAL_BIZ")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The terminal's output, read on a thread so that a missing prompt fails the test
    // instead of hanging it.
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |what: &str, seen: &mut String| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !seen.contains(what) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("no {what:?} on the terminal: {seen}"),
            }
        }
    };
    // The progress bar shows once the CLI follows the job (and listens for ^C).
    wait_for("hosts done", &mut seen);
    let (job, status) = newest_job(port).unwrap();
    assert_eq!(status, 2);
    input.write_all(b"\x03").unwrap();
    input.flush().unwrap();
    wait_for("terminate the job or detach", &mut seen);
    input.write_all(b"t\n").unwrap();
    input.flush().unwrap();
    let mut rest = String::new();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(60)) {
        rest.push_str(&String::from_utf8_lossy(&bytes));
    }
    let status = child.wait().unwrap();
    assert!(rest.contains(&format!("job {job}: terminating")), "{seen}{rest}");
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    let st = job_status(port, job);
    assert!(st == 3 || st == 4 || st == 8 || st == 11, "job {job} ended by the terminate, status {st}");
}

/// A rolling run with `--mode confirm` says when it waits between batches and the command
/// that lets it go on; that command works as printed.
#[test]
fn a_rolling_run_waiting_between_batches_says_how_to_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _kids) = fleet(dir.path());
    let mut child = cli(port)
        .args(["run", "--all", "--batch", "1", "--mode", "confirm", "-c", "echo rolled"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let said = read_until(&mut err, &["waits for a go-ahead", "to go on: "]);
    assert!(said.contains("after batch 1 of 2"), "{said}");
    let command = said.lines().find_map(|l| l.trim().strip_prefix("to go on:")).unwrap().trim().to_string();
    let (job, _) = newest_job(port).unwrap();
    assert!(command.starts_with(&format!("shoal job continue {job} --step ")) && command.ends_with(" --biz 1"), "{command}");
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let o = run(port, &args);
    assert!(o.status.success(), "{}", text(&o));
    let status = child.wait().unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success() && out.contains("rolled"), "{out}");
}
