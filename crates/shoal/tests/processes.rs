//! The `shoal` binary as people run it: a server process, agent processes, and the client
//! commands; the server is killed with SIGKILL mid-job and started again.

mod common;

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const APP: &str = "proc-app";
const SECRET: &str = "proc-secret";
const TOKEN: &str = "proc-token";

fn start_server(port: u16, data: &Path, log: &Path) -> Child {
    server_cmd(port, data, (APP, SECRET), TOKEN)
        .env("SHOAL_AGENT_LOST_GRACE_SECS", "5")
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap()
}

fn start_agent(port: u16, ip: &str, module: usize, role: &str, state: &Path) -> Child {
    agent_cmd(port, ip, state, TOKEN)
        .args(["--set", "1", "--module", &module.to_string(), "--label", &format!("role={role}")])
        .spawn()
        .unwrap()
}

fn client(port: u16, args: &[&str]) -> Output {
    cli_cmd(port, (APP, SECRET)).args(args).output().unwrap()
}

#[test]
fn server_agents_cli_and_a_kill_9_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut kids = Kids(vec![start_server(port, &data, &log)]);
    wait_until("server to listen", Duration::from_secs(30), || listening(port));

    let ips = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
    for (i, ip) in ips.iter().enumerate() {
        let role = if i == 0 { "web" } else { "db" };
        kids.0.push(start_agent(port, ip, i + 1, role, &dir.path().join(format!("agent{i}"))));
    }
    wait_until("three hosts alive", Duration::from_secs(30), || {
        let o = client(port, &["host", "list", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == 3)
    });

    // An account for the OS user tests run as, through the JOB API as any caller would.
    let me = whoami();
    let http = post_json(
        port,
        (APP, SECRET),
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    assert_eq!(http["code"], 0, "{http}");

    // Grouped output, exit code 0.
    let o = client(port, &["run", "--all", "-c", "echo same-answer"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("3 hosts · success (9) · exit 0"), "{out}");
    assert_eq!(out.matches("same-answer").count(), 1, "identical answers print once: {out}");

    // Failure: exit 1 and the failing group first.
    let o = client(port, &["run", "--selector", "role=db", "-c", "echo bad; exit 4"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("2 hosts · non-zero exit (104) · exit 4"), "{out}");

    // Python through --lang, by topology, as JSON.
    let o = client(
        port,
        &["run", "--topo", "module:1", "--lang", "python", "-c", "import sys; print('py', sys.argv[1])", "--param", "x", "--json"],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(v["hosts"][0]["output"], "py x\n");

    // Kill the server with SIGKILL in the middle of a job; start it again; nothing is lost.
    let o = client(port, &["run", "--all", "--no-wait", "--json", "-c", "echo begin; sleep 2; echo end"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    let job = v["job_instance_id"].as_i64().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    kids.0[0].kill().unwrap();
    kids.0[0].wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    kids.0[0] = start_server(port, &data, &log);
    wait_until("server back", Duration::from_secs(30), || listening(port));
    wait_until("job to finish after the restart", Duration::from_secs(60), || {
        let o = client(port, &["job", "status", &job, "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v["finished"] == true
    });
    let o = client(port, &["job", "logs", &job, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["status"], 3, "{v}");
    for h in v["hosts"].as_array().unwrap() {
        assert_eq!(h["status"], 9, "{v}");
        assert_eq!(h["output"], "begin\nend\n", "{v}");
    }

    // Terminate from the CLI.
    let o = client(port, &["run", "--all", "--no-wait", "--json", "-c", "sleep 300"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let job = v["job_instance_id"].as_i64().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(300));
    let o = client(port, &["job", "terminate", &job]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until("terminated", Duration::from_secs(30), || {
        let o = client(port, &["job", "status", &job, "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v["job_instance"]["status"] == 11
    });
    let o = client(port, &["job", "list"]);
    let row = |l: &str| l.split_whitespace().next() == Some(job.as_str()) && l.contains("terminated");
    assert!(text(&o).lines().any(row), "the job's row, by id: {}", text(&o));
}

#[test]
fn templates_from_yaml_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut kids = Kids(vec![start_server(port, &dir.path().join("data"), &dir.path().join("server.log"))]);
    wait_until("server to listen", Duration::from_secs(30), || listening(port));
    kids.0.push(start_agent(port, "127.0.0.55", 1, "web", &dir.path().join("agent")));
    wait_until("host alive", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&client(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null);
        v["data"].as_array().is_some_and(|a| a.iter().any(|h| h["alive"] == 1))
    });
    let me = whoami();
    let acc = post_json(
        port,
        (APP, SECRET),
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    assert_eq!(acc["code"], 0, "{acc}");

    let yaml = format!(
        r#"name: rollout
description: greet, confirm, finish
variables:
  - name: WHO
    type: string
    value: world
  - name: PASS
    type: password
    value: sup3r-s3cret
steps:
  - name: greet
    script:
      content: |
        echo "hello $WHO ($PASS)"
      account: {me}
      target:
        topo_node_list: [{{id: 1, node_type: biz}}]
  - name: gate
    confirm:
      message: go on?
  - name: finish
    script:
      language: python
      content: print("done")
      account: {me}
      target:
        topo_node_list: [{{id: 1, node_type: biz}}]
plans:
  - name: default
"#
    );
    let file = dir.path().join("rollout.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let o = client(port, &["template", "apply", "-f", file.to_str().unwrap(), "-m", "first"]);
    assert!(o.status.success() && text(&o).contains("rollout: v1 (current)"), "{}", text(&o));
    // A password typed in again always differs (diff is no equality oracle); `******` keeps it.
    let o = client(port, &["template", "diff", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "a typed password shows as changed: {}", text(&o));
    std::fs::write(&file, yaml.replace("sup3r-s3cret", "'******'")).unwrap();
    let o = client(port, &["template", "diff", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "no changes: {}", text(&o));

    let o = client(port, &["template", "run", "rollout", "--var", "WHO=shoal", "--no-wait"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let job = out.split_whitespace().nth(1).unwrap().to_string();
    wait_until("the confirmation step", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&client(port, &["job", "status", &job, "--json"]).stdout).unwrap_or(Value::Null);
        v["job_instance"]["status"] == 7
    });
    let o = client(port, &["job", "confirm", &job]);
    assert!(o.status.success(), "{}", text(&o));
    wait_until("the job to end", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&client(port, &["job", "status", &job, "--json"]).stdout).unwrap_or(Value::Null);
        v["finished"] == true
    });
    let o = client(port, &["job", "logs", &job]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("hello shoal (******)") && !out.contains("sup3r-s3cret"), "{out}");
    assert!(out.contains("step 2: gate (confirmation)") && out.contains("done"), "{out}");

    // A change, its history, and an export that applies back unchanged.
    std::fs::write(&file, yaml.replace("value: world", "value: everyone")).unwrap();
    let o = client(port, &["template", "apply", "-f", file.to_str().unwrap(), "-m", "greet everyone"]);
    assert!(text(&o).contains("rollout: v2 (current)") && text(&o).contains("variables[WHO].value"), "{}", text(&o));
    let o = client(port, &["template", "history", "rollout"]);
    assert!(text(&o).contains("greet everyone") && text(&o).contains("superseded"), "{}", text(&o));
    let o = client(port, &["template", "diff", "rollout", "v1", "v2"]);
    assert!(text(&o).contains("\"world\" → \"everyone\""), "{}", text(&o));
    let exported = dir.path().join("exported.yaml");
    let o = client(port, &["template", "export", "rollout", "-o", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = client(port, &["template", "apply", "-f", exported.to_str().unwrap()]);
    assert!(text(&o).contains("rollout: unchanged"), "{}", text(&o));
    let o = client(port, &["template", "rollback", "rollout", "v1"]);
    assert!(text(&o).contains("v1 restored as v3"), "{}", text(&o));
}

#[test]
fn a_file_step_from_a_yaml_template() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut kids = Kids(vec![start_server(port, &dir.path().join("data"), &dir.path().join("server.log"))]);
    wait_until("server to listen", Duration::from_secs(30), || listening(port));
    kids.0.push(start_agent(port, "127.0.0.56", 1, "web", &dir.path().join("agent")));
    wait_until("host alive", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&client(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null);
        v["data"].as_array().is_some_and(|a| a.iter().any(|h| h["alive"] == 1))
    });
    let me = whoami();
    let acc = post_json(
        port,
        (APP, SECRET),
        "/api/v3/create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": me, "alias": me, "type": 1, "category": 1}),
    );
    assert_eq!(acc["code"], 0, "{acc}");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.conf"), "port=80\n").unwrap();
    let dest = dir.path().join("dest/conf");

    let yaml = format!(
        r#"name: ship
variables:
  - name: HOSTS
    type: host_list
    server:
      topo_node_list: [{{id: 1, node_type: biz}}]
steps:
  - name: copy
    file:
      sources:
        - files: [{src}/app.conf]
          account: {me}
          target: {{variable: HOSTS}}
      destination:
        path: {dest}
        account: {me}
        target: {{variable: HOSTS}}
      mode: force
      download_speed_limit: 10
"#,
        src = src.display(),
        dest = dest.display()
    );
    let file = dir.path().join("ship.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let o = client(port, &["template", "apply", "-f", file.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("ship: v1 (current)"), "{}", text(&o));
    let o = client(port, &["template", "run", "ship", "--no-wait"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let job = out.split_whitespace().nth(1).unwrap().to_string();
    wait_until("the job to end", Duration::from_secs(30), || {
        let v: Value = serde_json::from_slice(&client(port, &["job", "status", &job, "--json"]).stdout).unwrap_or(Value::Null);
        v["finished"] == true
    });
    let v: Value = serde_json::from_slice(&client(port, &["job", "status", &job, "--json"]).stdout).unwrap();
    assert_eq!((v["job_instance"]["status"].as_i64(), v["step_instance_list"][0]["type"].as_i64()), (Some(3), Some(2)), "{v}");
    assert_eq!(std::fs::read_to_string(dest.join("app.conf")).unwrap(), "port=80\n");

    // The export is YAML that applies back unchanged; a bad file step is refused with its field.
    let exported = dir.path().join("exported.yaml");
    let o = client(port, &["template", "export", "ship", "-o", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = client(port, &["template", "apply", "-f", exported.to_str().unwrap()]);
    assert!(text(&o).contains("ship: unchanged"), "{}", text(&o));
    std::fs::write(&file, yaml.replace("mode: force", "mode: careful")).unwrap();
    let o = client(port, &["template", "apply", "-f", file.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("steps[0].file.mode"), "{}", text(&o));
}
