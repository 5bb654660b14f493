//! `shoal push` (and its alias `shoal cp`) against a real server and two real agents: files
//! land with their content, results are grouped as `shoal run` groups them, progress goes to
//! stderr as plain lines on a pipe, a strict push into a missing directory fails each host
//! with the reason, and bad local input is refused before anything is sent.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

const APP: &str = "push-app";
const SECRET: &str = "push-secret";
const TOKEN: &str = "push-token";

fn cli(port: u16) -> Command {
    cli_cmd(port, (APP, SECRET))
}

fn run(port: u16, args: &[&str]) -> Output {
    cli(port).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn push_files_to_two_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_cmd(port, &dir.path().join("data"), (APP, SECRET), TOKEN).spawn().unwrap();
    let mut kids = Kids(vec![server]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    for ip in ["127.0.0.81", "127.0.0.82"] {
        kids.0.push(agent_cmd(port, ip, &dir.path().join(ip), TOKEN).spawn().unwrap());
    }
    let list = || -> Value { serde_json::from_slice(&run(port, &["host", "list", "--json"]).stdout).unwrap_or(Value::Null) };
    wait_until("both agents", Duration::from_secs(30), || {
        list()["data"].as_array().is_some_and(|a| a.iter().filter(|h| h["alive"] == 1).count() == 2)
    });
    let o = run(port, &["account", "create", &whoami()]);
    assert!(o.status.success(), "{}", text(&o));

    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let big: Vec<u8> = (0..900_000u32).map(|i| (i % 249) as u8).collect();
    std::fs::write(src.join("big.bin"), &big).unwrap();
    std::fs::write(src.join("app.conf"), "port = 8080\n").unwrap();

    // Two files to both hosts, through a pipe.
    let dest = dir.path().join("dest/sub");
    let o = run(
        port,
        &[
            "push",
            src.join("big.bin").to_str().unwrap(),
            src.join("app.conf").to_str().unwrap(),
            "--to-dir",
            dest.to_str().unwrap(),
            "--all",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(dest.join("app.conf")).unwrap(), "port = 8080\n");
    let out = stdout(&o);
    // One group: both hosts, the same two files.
    assert!(out.contains("✔ 2 hosts · success (9)"), "{out}");
    assert!(out.contains("127.0.0.81 (#") && out.contains("127.0.0.82 (#"), "{out}");
    assert!(out.contains(&format!("│ {}/big.bin (878.91 KiB)", dest.display())), "{out}");
    assert!(out.contains(&format!("│ {}/app.conf (12 B)", dest.display())), "{out}");
    assert!(out.contains("2/2 hosts succeeded"), "{out}");
    // Progress on a pipe: plain lines on stderr, no terminal control codes.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("uploaded {}", src.join("big.bin").display())), "{err}");
    assert!(err.contains("127.0.0.81 (#") && err.contains("success 878.92 KiB/878.92 KiB"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");

    // A directory, renamed-free, with the `cp` alias and JSON output.
    let dest2 = dir.path().join("dest2");
    let o = run(port, &["cp", "--json", src.to_str().unwrap(), "--to-dir", dest2.to_str().unwrap(), "--ip", "127.0.0.81"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(v["hosts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["hosts"][0]["status"], 9, "{v}");
    assert_eq!(v["hosts"][0]["file_logs"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(std::fs::read(dest2.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(dest2.join("app.conf")).unwrap(), "port = 8080\n");

    // --name renames the one file.
    let o =
        run(port, &["push", src.join("app.conf").to_str().unwrap(), "--to-dir", dest2.to_str().unwrap(), "--name", "other.conf", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(dest2.join("other.conf")).unwrap(), "port = 8080\n");

    // Strict mode into a missing directory: every host fails, with the reason; exit 1.
    let missing = dir.path().join("missing/dir");
    let o = run(port, &["push", "--strict", src.join("app.conf").to_str().unwrap(), "--to-dir", missing.to_str().unwrap(), "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("✘ 2 hosts · "), "{out}");
    assert!(out.contains("(202)"), "{out}");
    assert!(out.contains(&format!("│ {}/app.conf: failed: ", missing.display())) && out.contains("does not exist"), "{out}");
    assert!(out.contains("0/2 hosts succeeded"), "{out}");
    assert!(!missing.exists());

    // Bad local input is refused before anything is sent.
    let o = run(port, &["push", dir.path().join("nope.txt").to_str().unwrap(), "--to-dir", "/tmp/x", "--all"]);
    assert!(!o.status.success() && text(&o).contains("nope.txt: no such file or directory"), "{}", text(&o));
    let o = run(port, &["push", src.join("app.conf").to_str().unwrap(), "--to-dir", "/tmp/x"]);
    assert!(
        !o.status.success() && text(&o).contains("no targets: give --host, --ip, --topo, --selector, --group or --all"),
        "{}",
        text(&o)
    );
    let o = run(
        port,
        &[
            "push",
            src.join("app.conf").to_str().unwrap(),
            src.join("big.bin").to_str().unwrap(),
            "--to-dir",
            "/tmp/x",
            "--name",
            "n",
            "--all",
        ],
    );
    assert!(!o.status.success() && text(&o).contains("--name renames one file"), "{}", text(&o));
    let o = run(port, &["push", src.join("app.conf").to_str().unwrap(), "--to-dir", "relative/dir", "--all"]);
    assert!(!o.status.success() && text(&o).contains("must be an absolute directory"), "{}", text(&o));
    std::fs::create_dir_all(src.join("nested/deeper")).unwrap();
    std::fs::write(src.join("nested/deeper/x"), "x").unwrap();
    let o = run(port, &["push", src.to_str().unwrap(), "--to-dir", "/tmp/x", "--all"]);
    assert!(!o.status.success() && text(&o).contains("cannot carry sub-paths"), "{}", text(&o));
}
