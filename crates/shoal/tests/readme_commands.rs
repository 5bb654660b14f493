//! Every `shoal` command shown in README.md's shell blocks, and every line `shoal dev` prints
//! to type next, runs as printed against a real server and real agents and exits 0. Commands
//! are parsed from the README (continuations joined, comments dropped, `a | b` alternatives
//! run one by one, `[optional]` parts included); ids, ports and paths that name a reader's own
//! fleet are replaced by this fleet's, files they name are made, and `deploy.yaml` is a
//! runnable template of the README's shape (the README's example names a reader's script and
//! uploads). Anything else runs as written, so a new README command must work as printed. Not
//! run: the daemons (started here with the same flags) and template approve/reject (a second
//! author; covered by the template tests).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const APP: &str = "readme-app";
const SECRET: &str = "readme-secret";
const TOKEN: &str = "readme-token";

/// Commands of the README's `sh` blocks, one per alternative, in order.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut out = vec![];
    let mut in_sh = false;
    let mut joined = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = strip_comment(line);
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            continue;
        }
        joined.push_str(&line);
        let full = std::mem::take(&mut joined);
        let full = full.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut prefix = String::new();
        for alt in split_alternatives(&full) {
            let alt = alt.trim().to_string();
            if alt.starts_with("shoal ") {
                prefix = alt.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
                out.push(alt);
            } else if !prefix.is_empty() && !alt.is_empty() && !alt.contains('=') && alt.split_whitespace().count() > 0 {
                // `shoal template approvals | approve NAME v7`: the same command group.
                out.push(format!("{prefix} {alt}"));
            } else if let Some((env, _)) = alt.split_once(" shoal ").filter(|(e, _)| e.split_whitespace().all(|w| w.contains('='))) {
                let _ = env;
                out.push(alt); // `SHOAL_X=… shoal server …`
            } else if let Some(rest) = alt.strip_prefix("cargo run -p shoal -- ") {
                out.push(format!("cargo run -p shoal -- {rest}"));
            }
        }
    }
    out
}

/// The line without a trailing `# comment` (outside quotes).
fn strip_comment(line: &str) -> String {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() || i == 0 && c == '#' => return line[..i].trim_end().to_string(),
            _ => {}
        }
        prev = c;
    }
    line.trim_end().to_string()
}

/// `a | b | c` outside quotes.
fn split_alternatives(line: &str) -> Vec<String> {
    let (mut single, mut double) = (false, false);
    let mut parts = vec![String::new()];
    for c in line.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '|' if !single && !double => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    parts
}

/// The business the README's agent registers in (`shoal agent … --bk-biz-id N`).
fn readme_biz() -> i64 {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "--bk-biz-id").expect("the README starts an agent with --bk-biz-id");
    words[at + 1].parse().unwrap()
}

/// The fleet the README's commands run against: hosts in the business the README's agent
/// registers in. The CLI gets no business but what the README's commands say, so a command
/// that works only with a `--biz` or `SHOAL_BIZ` the README does not show fails here.
struct World {
    port: u16,
    work: PathBuf,
    hosts: Vec<i64>,
    kids: Kids,
    pending_agent: bool,
    biz: i64,
}

impl World {
    fn cli(&self) -> Command {
        let mut c = cli_cmd(self.port, (APP, SECRET));
        c.current_dir(&self.work).stdin(Stdio::null());
        c
    }

    fn json(&self, args: &[&str]) -> Value {
        let o = self.cli().args(args).arg("--json").output().unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{args:?}: {}", text(&o)))
    }

    fn api(&self, name: &str, body: Value) -> Value {
        let mut body = body;
        body["bk_scope_type"] = json!("biz");
        body["bk_scope_id"] = json!(self.biz.to_string());
        let v = post_json(self.port, (APP, SECRET), &format!("/api/v3/{name}"), body);
        assert_eq!(v["result"], true, "{name}: {v}");
        v["data"].clone()
    }

    /// A job started with `shoal run --no-wait`, then waited for until `until` holds.
    fn job(&self, args: &[&str], until: impl Fn(&Value) -> bool) -> i64 {
        let o = self.cli().args(["run", "--no-wait", "--json"]).args(args).output().unwrap();
        let id = serde_json::from_slice::<Value>(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)))["job_instance_id"].as_i64().unwrap();
        wait_until(&format!("job {id}"), Duration::from_secs(60), || until(&self.json(&["job", "status", &id.to_string()])));
        id
    }

    /// [`TEMPLATE`] targeting this fleet's business.
    fn template(&self) -> String {
        TEMPLATE.replace("id: BIZ,", &format!("id: {},", self.biz))
    }

    fn template_job(&self, plan: &str) -> i64 {
        let o = self.cli().args(["template", "run", "deploy-collector", "--plan", plan, "--no-wait"]).output().unwrap();
        let id: i64 =
            text(&o).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("template run: {}", text(&o)));
        wait_until(&format!("job {id} to wait"), Duration::from_secs(60), || {
            self.json(&["job", "status", &id.to_string()])["job_instance"]["status"] == 7
        });
        id
    }
}

/// `shoal agent` of business `biz` at `ip` (output discarded).
fn agent_in(biz: i64, port: u16, ip: &str, state: &Path, token: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["agent", "--server", &format!("http://127.0.0.1:{port}"), "--bk-biz-id", &biz.to_string(), "--ip", ip, "--state-dir"])
        .arg(state)
        .env("SHOAL_AGENT_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const TEMPLATE: &str = r#"name: deploy-collector
variables:
  - {name: VERSION, type: string, value: "1.4.2", required: true}
steps:
  - name: install
    script:
      content: echo "installing $VERSION"
      account: root
      target: {topo_node_list: [{id: BIZ, node_type: biz}]}
  - name: go-ahead
    confirm: {message: "Collector installed; restart?"}
plans:
  - name: default
    steps: [install]
  - name: gated
"#;

/// What the README command becomes here, or why it is not run.
fn adapt(w: &mut World, cmd: &str) -> Result<String, &'static str> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let verb = words.get(1).copied().unwrap_or("");
    let sub = words.get(2).copied().unwrap_or("");
    if cmd.contains("shoal server ") || verb == "agent" {
        return Err("a daemon: this test starts the server and agents itself, with these flags");
    }
    if (verb == "file-source" && (sub == "create" || sub == "update")) || cmd.contains("--from-source") {
        return Err(
            "needs a bkrepo or S3-compatible server at the README's address (tests/file_source_cli.rs runs these against real ones)",
        );
    }
    if verb == "template" && (sub == "approve" || sub == "reject") {
        return Err("needs a pending change and an approver who is not its author (tests/processes.rs, shoal-server tests/templates.rs)");
    }
    if let Some(rest) = cmd.strip_prefix("cargo run -p shoal -- dev ") {
        // The binary cargo would build and run, on a free port and its own data dir.
        let port = free_port();
        return Ok(format!("shoal dev --listen 127.0.0.1:{port} --data-dir {}/dev-run {rest}", w.work.display()));
    }
    let (a, b, d) = (w.hosts[0], w.hosts[1], w.hosts[3]);
    let mut c = cmd.replace(['[', ']'], "");
    // This fleet's hosts, jobs, tokens and paths for the README's examples.
    c = c.replace("--host 12,13", &format!("--host {a},{b}")).replace("--host 12", &format!("--host {a}"));
    for dir in ["/etc/nginx", "/opt/app/bin", "/srv/dl", "/etc/app"] {
        std::fs::create_dir_all(w.work.join(&dir[1..])).unwrap();
        c = c.replace(&format!("--to-dir {dir}"), &format!("--to-dir {}{dir}", w.work.display()));
    }
    // Scripts that need software this machine lacks (the command line is what is shown).
    c = c.replace("'systemctl is-active nginx'", "'echo active'").replace("'apt-get -y upgrade'", "'echo upgraded'");
    c = c.replace("'systemctl restart app'", "'echo restarted'");
    let job = |c: &str, id: i64| c.replace(" 42", &format!(" {id}"));
    match (verb, sub) {
        ("job", "status" | "logs" | "watch") => {
            let id = w.job(&["--all", "-c", "echo done"], |s| s["finished"] == true);
            c = job(&c, id);
        }
        ("job", "terminate") => c = job(&c, w.job(&["--all", "-c", "sleep 600"], |s| s["job_instance"]["status"] == 2)),
        ("job", "continue") => {
            let id = w.job(&["--all", "--batch", "1", "--mode", "confirm", "-c", "true"], |s| s["job_instance"]["status"] == 7);
            c = job(&c, id);
        }
        ("job", "retry") => c = job(&c, w.job(&["--all", "-c", "exit 3"], |s| s["finished"] == true)),
        ("job", "confirm" | "reject") => c = job(&c, w.template_job("gated")),
        ("host", "remove") => c = c.replace(" 13", &format!(" {d}")),
        ("agent-token", "revoke") => {
            // A token of its own to revoke (the README's pending token enrols an agent next).
            let o = w.cli().args(["agent-token", "create", "--biz", &w.biz.to_string()]).output().unwrap();
            assert!(o.status.success(), "{}", text(&o));
            let tokens = w.json(&["agent-token", "list"]);
            let id = tokens["data"].as_array().unwrap().iter().filter_map(|t| t["id"].as_i64()).max().unwrap().to_string();
            c = c.replace(" 4", &format!(" {id}"));
        }
        ("agent-token", "create") => w.pending_agent = true,
        ("agent-accept", _) => {
            let pending = w.json(&["host", "list", "--pending"]);
            let id = pending["data"][0]["bk_host_id"].to_string();
            c = c.replace("--host-id 31", &format!("--host-id {id}"));
        }
        ("script", "publish" | "show") => {
            let list = w.json(&["script", "list"]);
            let s = list["data"].as_array().unwrap().iter().find(|s| s["name"] == "check-disk").unwrap().clone();
            let id = s["id"].as_str().unwrap().to_string();
            let versions = w.json(&["script", "show", &id]);
            let vid = versions["data"][0]["id"].to_string();
            c = c.replace("<script_id>", &id).replace("<version_id>", &vid);
        }
        ("template", "diff") if c.contains(" v3 v5") => {
            for v in 2..=5 {
                let yaml = w.template().replace("1.4.2", &format!("1.4.{}", v + 2));
                write(&w.work, "deploy-v.yaml", &yaml);
                let o = w.cli().args(["template", "apply", "-f", "deploy-v.yaml", "-m", "next"]).output().unwrap();
                assert!(o.status.success(), "{}", text(&o));
            }
        }
        ("cron", "create") => {
            let plans = w.api("get_job_plan_list", json!({"length": 100}));
            let id = plans["data"].as_array().unwrap().iter().find(|p| p["name"] == "default").unwrap()["id"].to_string();
            c = c.replace("--plan 7", &format!("--plan {id}"));
        }
        ("cron", _) => {
            let crons = w.json(&["cron", "list"]);
            let found = crons.as_array().into_iter().flatten().find(|p| p["name"] == "nightly");
            let id = found.unwrap_or_else(|| panic!("no cron nightly: {crons}"))["id"].to_string();
            c = c.replace(" 3", &format!(" {id}"));
        }
        ("user", "create") if c.contains("--password-stdin") => c = format!("printf 'a-long-password-1\\n' | {c}"),
        ("credential", "create") if c.contains("--secret-stdin") && !c.contains(" < ") => c = format!("printf 'a-repo-password\\n' | {c}"),
        ("user", "token") if words.get(3) == Some(&"list") || words.get(3) == Some(&"revoke") => {
            // As alice, with the token the README's `user token create --user alice` printed.
            let token = std::fs::read_to_string(w.work.join("alice-token")).unwrap();
            let spare = w.cli().args(["user", "token", "create", "--user", "alice", "--name", "spare"]).output().unwrap();
            assert!(spare.status.success(), "{}", text(&spare));
            let list = w.json(&["user", "token", "list", "--user", "alice"]);
            let id = list["data"].as_array().unwrap().iter().find(|t| t["name"] == "spare").unwrap()["id"].as_str().unwrap().to_string();
            c = format!("SHOAL_TOKEN={} {}", token.trim(), c.replace("<id>", &id));
        }
        ("user", "passwd") => {
            let token = std::fs::read_to_string(w.work.join("alice-token")).unwrap();
            c = format!("SHOAL_TOKEN={} {c}", token.trim());
        }
        ("app", "trust") => {
            let o = w.cli().args(["app", "create", "esb"]).output().unwrap();
            assert!(o.status.success(), "{}", text(&o));
        }
        ("check", "show") => {
            let list = w.json(&["check", "list"]);
            let id = list["data"][0]["check_id"].as_str().unwrap().to_string();
            c = c.replace("check_3f1c…", &id);
        }
        _ => {}
    }
    if w.pending_agent && verb == "host" && sub == "list" && c.contains("--pending") {
        // The token just created (printed once) enrols an agent that waits for acceptance.
        let tokens = w.json(&["agent-token", "list"]);
        assert!(tokens["data"].as_array().is_some_and(|t| !t.is_empty()), "{tokens}");
        let token = std::fs::read_to_string(w.work.join("pending-token")).unwrap();
        let state = w.work.join("pending-agent");
        let agent = agent_in(w.biz, w.port, "10.0.0.30", &state, token.trim()).spawn().unwrap();
        w.kids.0.push(agent);
        wait_until("the pending agent", Duration::from_secs(30), || {
            w.json(&["host", "list", "--pending"])["data"].as_array().is_some_and(|a| !a.is_empty())
        });
    }
    Ok(c)
}

#[test]
fn every_readme_command_and_every_dev_hint_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());

    // `shoal dev`: every line it prints to type next.
    let dev_port = free_port();
    let mut dev = Command::new(BIN)
        .args(["dev", "--agents", "2", "--listen", &format!("127.0.0.1:{dev_port}"), "--data-dir"])
        .arg(dir.path().join("dev"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut hints = vec![];
    let mut grab = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("Ctrl-C stops everything") {
            break;
        }
        if line.contains("In another terminal") {
            grab = true;
            continue;
        }
        if grab && !line.trim().is_empty() && !line.contains("Or through the JOB v3 API") {
            hints.push(line);
        }
    }
    let _dev = Kids(vec![dev]);
    let script = hints.join("\n");
    assert!(script.contains("export SHOAL_URL=") && script.contains("shoal run --all") && script.contains("curl -s"), "{script}");
    let mut sh = String::from("set -e\n");
    for line in script.split('\n') {
        sh.push_str(line);
        sh.push('\n');
    }
    // Run as printed, after `cargo run`: the built binary is not on the PATH.
    let o = Command::new("sh")
        .arg("-c")
        .arg(&sh)
        .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
        .env_remove("SHOAL_BIZ")
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(o.status.success() && text(&o).contains("\"result\":true"), "shoal dev's hints:\n{sh}\n{}", text(&o));

    // The README's fleet: its agent's business, hosts with the README's addresses, set, module, labels.
    let biz = readme_biz();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let fleet: [(&str, &[&str]); 4] = [
        ("10.0.0.5", &["--set", "3", "--module", "7", "--label", "role=web"]),
        ("10.0.0.7", &["--label", "role=db"]),
        ("10.0.0.6", &["--set", "3", "--label", "role=web", "--label", "env=prod"]),
        ("10.0.0.9", &["--label", "role=spare"]),
    ];
    for (ip, extra) in fleet {
        let state = dir.path().join(ip);
        kids.0.push(agent_in(biz, port, ip, &state, TOKEN).args(extra).spawn().unwrap());
    }
    let mut w = World { port, work: work.clone(), hosts: vec![], kids, pending_agent: false, biz };
    wait_until("four agents", Duration::from_secs(30), || {
        w.json(&["host", "list"])["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == 4)
    });
    let list = w.json(&["host", "list"]);
    for (ip, _) in fleet {
        w.hosts.push(list["data"].as_array().unwrap().iter().find(|h| h["ip"] == ip).unwrap()["bk_host_id"].as_i64().unwrap());
    }
    let o = w.cli().args(["account", "create", "root", "--alias", "deploy"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The files the README's commands name.
    write(&work, "fix.sh", "echo fixed\n");
    write(&work, "check.py", "import sys\nprint('checked', sys.argv[1:])\n");
    write(&work, "check.sh", "df -h / >/dev/null && echo disk ok\n");
    write(
        &work,
        "mine.sh",
        "echo '{\"status\": true, \"data\": [{\"module\": \"disk\", \"item\": \"root\", \"status\": true, \"message\": \"ok\"}]}'\n",
    );
    write(&work, "nginx.conf", "events {}\n");
    write(&work, "mime.types", "types {}\n");
    write(&work, "release/app", "binary\n");
    write(&work, "build.tar.gz", "tarball\n");
    write(&work, "app.conf", "key = value\n");
    write(&work, "deploy.sh", "#!/bin/bash\nsystemctl restart app\n");
    write(&work, "deploy.yaml", &w.template());
    write(&work, "sk.txt", "an-s3-secret-key\n");
    std::fs::create_dir_all(work.join("etc/app")).unwrap();

    let commands = readme_commands();
    assert!(commands.len() > 50, "{commands:#?}");
    let mut ran = 0;
    for cmd in &commands {
        let line = match adapt(&mut w, cmd) {
            Ok(line) => line,
            Err(why) => {
                eprintln!("not run: {cmd} ({why})");
                continue;
            }
        };
        let o: Output = w
            .cli()
            .arg("-c")
            .arg(&line)
            .env("PATH", &path)
            .env_remove("SHOAL_CLIENT_CONFIG")
            .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
            .program_sh()
            .output()
            .unwrap();
        if cmd.contains("--subscription-id") {
            // No bkunifylogbeat on this machine: the check says so, per host, and exits 1.
            assert!(o.status.code() == Some(1) && text(&o).contains("bkunifylogbeat does not exist"), "{}", text(&o));
        } else {
            assert!(o.status.success(), "README: {cmd}\nran: {line}\n{}", text(&o));
        }
        if cmd.starts_with("shoal agent-accept") {
            // The accepted agent connects at its next retry.
            wait_until("the accepted agent", Duration::from_secs(60), || {
                w.json(&["host", "list"])["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == 5)
            });
        }
        if cmd.starts_with("shoal user token create") {
            std::fs::write(work.join("alice-token"), String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        }
        if cmd.starts_with("shoal agent-token create") {
            std::fs::write(work.join("pending-token"), String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        }
        ran += 1;
    }
    assert!(ran > 50, "{ran} commands ran");
}

/// `Command::new("sh")` carrying the settings of a CLI command.
trait ProgramSh {
    fn program_sh(&mut self) -> Command;
}

impl ProgramSh for Command {
    fn program_sh(&mut self) -> Command {
        let mut sh = Command::new("sh");
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        if let Some(d) = self.get_current_dir() {
            sh.current_dir(d);
        }
        sh.args(self.get_args()).stdin(Stdio::null());
        sh
    }
}
