//! Operating Shoal from the command line: config files found where a service manager and an
//! operator put them, `shoal config init/show`, JSON logs, completions and man pages.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, listening, text, wait_until, Kids, BIN};

/// The CLI with a home of its own: no SHOAL_* settings from the test's environment.
fn cli(home: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    isolate(&mut c, home);
    c
}

fn isolate(c: &mut Command, home: &std::path::Path) {
    c.env("HOME", home).env("XDG_CONFIG_HOME", home.join("xdg"));
    for v in [
        "SHOAL_URL",
        "SHOAL_APP_CODE",
        "SHOAL_APP_SECRET",
        "SHOAL_TOKEN",
        "SHOAL_USERNAME",
        "SHOAL_BIZ",
        "SHOAL_CLIENT_CONFIG",
        "SHOAL_CONFIG",
    ] {
        c.env_remove(v);
    }
}

#[test]
fn server_agent_and_client_run_from_their_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Server: every setting in the file SHOAL_CONFIG names, logs as JSON lines.
    let server_toml = dir.path().join("server.toml");
    std::fs::write(
        &server_toml,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nbootstrap_app = \"ops:ops-secret\"\nagent_token = \"enrol-me\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let server_log = dir.path().join("server.log");
    let mut kids = Kids(vec![]);
    kids.0.push(
        cli(dir.path())
            .args(["server", "--log-format", "json"])
            .env("SHOAL_CONFIG", &server_toml)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&server_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the server listens", Duration::from_secs(30), || listening(port));

    // Agent: every setting in the file --config names.
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "server = [\"http://127.0.0.1:{port}\"]\nbk_biz_id = 1\nip = \"127.0.0.31\"\nstate_dir = \"{}\"\n[labels]\nrole = \"from-file\"\n",
            dir.path().join("agent").display()
        ),
    )
    .unwrap();
    kids.0.push(
        cli(dir.path())
            .args(["agent", "--config"])
            .arg(&agent_toml)
            .env("SHOAL_AGENT_TOKEN", "enrol-me")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Client: `config init` writes $XDG_CONFIG_HOME/shoal/config.toml, 0600, from flags and
    // the secret from the environment; every later command reads it.
    let out = cli(dir.path())
        .args(["config", "init", "--url", &format!("http://127.0.0.1:{port}"), "--app-code", "ops", "--username", "tester"])
        .env("SHOAL_APP_SECRET", "ops-secret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let file = dir.path().join("xdg/shoal/config.toml");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&file).unwrap().contains("app_secret = \"ops-secret\""));

    // Run again, it refuses to overwrite.
    let again = cli(dir.path()).args(["config", "init", "--app-code", "x"]).env("SHOAL_APP_SECRET", "y").output().unwrap();
    assert!(!again.status.success() && text(&again).contains("--force"), "{}", text(&again));

    // show: the effective settings, where each comes from, the secret redacted.
    let out = cli(dir.path()).args(["config", "show"]).env("SHOAL_BIZ", "1").output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("ops-secret"), "{shown}");
    assert!(shown.contains("app_secret = \"<redacted>\"  # config file"), "{shown}");
    assert!(shown.contains(&format!("url = \"http://127.0.0.1:{port}\"  # config file")), "{shown}");
    assert!(shown.contains("biz = 1  # env SHOAL_BIZ"), "{shown}");
    let out = cli(dir.path()).args(["config", "show", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(v["app_code"]["value"], "ops");
    assert_eq!(v["app_secret"]["value"], "<redacted>");
    assert_eq!(v["file"]["exists"], true);

    // The settings in the file reach the server: the agent's host, with its file's label.
    wait_until("the agent's host is listed", Duration::from_secs(30), || {
        let out = cli(dir.path()).args(["host", "list", "--json"]).output().unwrap();
        out.status.success() && text(&out).contains("127.0.0.31") && text(&out).contains("from-file")
    });
    // A flag still wins over the file: a wrong URL fails.
    let out = cli(dir.path()).args(["host", "list", "--url", "http://127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));

    // Every line the server logged is a JSON object with a level and a message.
    drop(kids);
    let log = std::fs::read_to_string(&server_log).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.iter().any(|l| l.contains("shoal server listening")), "{log}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
}

#[test]
fn the_daemons_read_etc_style_files_named_by_shoal_config() {
    let dir = tempfile::tempdir().unwrap();
    let server_toml = dir.path().join("server.toml");
    std::fs::write(&server_toml, "listen = \"127.0.0.1:7111\"\ndata_dir = \"/srv/shoal-test\"\n").unwrap();
    let out = cli(dir.path()).args(["server", "--print-config"]).env("SHOAL_CONFIG", &server_toml).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("listen = \"127.0.0.1:7111\""), "{}", text(&out));
    assert!(text(&out).contains(&format!("# config file {}", server_toml.display())), "{}", text(&out));
    // --config wins over SHOAL_CONFIG; a named file that is missing is an error.
    let out = cli(dir.path())
        .args(["server", "--print-config", "--config", "/nonexistent/server.toml"])
        .env("SHOAL_CONFIG", &server_toml)
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("/nonexistent/server.toml"), "{}", text(&out));

    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(&agent_toml, "server = [\"https://shoal.example:8080\"]\nbk_biz_id = 4\nbk_cloud_id = 2\n").unwrap();
    let out = cli(dir.path()).args(["agent", "--print-config", "--bk-biz-id", "5"]).env("SHOAL_CONFIG", &agent_toml).output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("server = [\"https://shoal.example:8080\"]"), "{shown}");
    assert!(shown.contains("bk_biz_id = 5") && shown.contains("bk_cloud_id = 2"), "a flag wins over the file: {shown}");
    // No file and no flags: the error says what is missing.
    let out = cli(dir.path()).args(["agent", "--print-config", "--config", "/nonexistent/agent.toml"]).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("/nonexistent/agent.toml"), "{}", text(&out));
}

#[test]
fn completions_and_man_pages_cover_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [("bash", "complete -F _shoal"), ("zsh", "#compdef shoal"), ("fish", "complete -c shoal")] {
        let out = cli(dir.path()).args(["completions", shell]).output().unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && script.contains(marker), "{shell}: {}", text(&out));
        for sub in ["server", "agent", "config", "run"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let bad = cli(dir.path()).args(["completions", "tcsh"]).output().unwrap();
    assert!(!bad.status.success());

    let out = cli(dir.path()).arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && page.contains(".TH shoal 1") && page.contains("completions"), "{}", text(&out));
    let pages = dir.path().join("man1");
    let out = cli(dir.path()).args(["man", "--dir"]).arg(&pages).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let agent = std::fs::read_to_string(pages.join("shoal-agent.1")).unwrap();
    assert!(agent.contains("\\-\\-log\\-format") && agent.contains("\\-\\-config"), "{agent}");
    assert!(pages.join("shoal-config-init.1").exists());
}

#[test]
fn config_init_reads_secrets_from_stdin_or_asks_on_a_terminal() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xdg/shoal/config.toml");

    // A user's token on standard input.
    let mut child = cli(dir.path())
        .args(["config", "init", "--url", "http://shoal.example:8080", "--token-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"tok-123\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("token = \"tok-123\"") && !written.contains("app_code"), "{written}");

    // Nothing given and no terminal: an error that says what to give, and no file.
    std::fs::remove_file(&file).unwrap();
    let out = cli(dir.path()).args(["config", "init"]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("--app-code"), "{}", text(&out));
    assert!(!file.exists());

    // On a terminal (script(1) gives it one) it asks for each setting.
    let mut script = Command::new("script");
    isolate(&mut script, dir.path());
    let spawned = script
        .args(["-qec", &format!("{BIN} config init"), "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("script(1) is not installed: the terminal dialogue is not tested");
        return;
    };
    child.stdin.take().unwrap().write_all(b"http://shoal.example:8080\nops\ns3cr3t\nalice\n2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("secret of app ops"), "{}", text(&out));
    let written: toml::Table = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let get = |k: &str| written.get(k).map(|v| v.to_string()).unwrap_or_default();
    assert_eq!(get("url"), "\"http://shoal.example:8080\"");
    assert_eq!(
        (get("app_code"), get("app_secret"), get("username"), get("biz")),
        ("\"ops\"".into(), "\"s3cr3t\"".into(), "\"alice\"".into(), "2".into())
    );
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
}

/// On a terminal the daemons' log lines are coloured, unless NO_COLOR is set (no-color.org).
#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script(1) is not installed: colour on a terminal is not tested");
        return;
    }
    let logs = |no_color: Option<&str>| {
        let port = free_port();
        let data = dir.path().join(format!("data-{port}"));
        let pidfile = dir.path().join(format!("pid-{port}"));
        let cmd = format!("echo $$ > {}; exec {BIN} server --listen 127.0.0.1:{port} --data-dir {}", pidfile.display(), data.display());
        let mut c = Command::new("script");
        isolate(&mut c, dir.path());
        c.args(["-qec", &cmd, "/dev/null"]).env("SHELL", "/bin/sh").env_remove("NO_COLOR").env_remove("RUST_LOG");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Stop it once it listens (the terminal has its lines by then).
        wait_until("the server listens", Duration::from_secs(30), || listening(port));
        std::thread::sleep(Duration::from_millis(300));
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let out = child.wait_with_output().unwrap();
        text(&out)
    };
    let coloured = logs(None);
    assert!(coloured.contains("shoal server listening") && coloured.contains('\u{1b}'), "colour on a terminal: {coloured:?}");
    for v in ["1", "yes"] {
        let plain = logs(Some(v));
        assert!(plain.contains("shoal server listening") && !plain.contains('\u{1b}'), "NO_COLOR={v}: {plain:?}");
    }
    // An empty NO_COLOR counts as unset.
    assert!(logs(Some("")).contains('\u{1b}'));
}
