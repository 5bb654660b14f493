//! `scripts/install` into a temporary root, and the systemd units it ships.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{text, BIN};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn install(args: &[&str]) -> std::process::Output {
    let out = Command::new(repo().join("scripts/install")).args(args).output().unwrap();
    assert!(out.status.success(), "scripts/install {args:?} failed: {}", text(&out));
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn install_into_a_root_keeps_config_and_uninstalls() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let r = root.to_str().unwrap();
    install(&["--root", r, "--binary", BIN, "--prefix", "/opt/shoal/bin"]);

    // The binary, where --prefix says, and it runs.
    let bin = root.join("opt/shoal/bin/shoal");
    assert_eq!(mode(&bin), 0o755);
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("shoal "), "{}", text(&v));

    // Configuration from the shipped examples; the agent's is the owner's alone.
    let etc = root.join("etc/shoal");
    assert_eq!(read(&etc.join("server.toml")), read(&repo().join("shoal.example.toml")));
    assert_eq!(mode(&etc.join("server.toml")), 0o640);
    assert_eq!(read(&etc.join("agent.toml")), read(&repo().join("dist/agent.example.toml")));
    assert_eq!(mode(&etc.join("agent.toml")), 0o600);

    // The server's system user, in the root's own user database.
    let passwd = read(&root.join("etc/passwd"));
    let line = passwd.lines().find(|l| l.starts_with("shoal:")).unwrap_or_else(|| panic!("no shoal user: {passwd}"));
    let fields: Vec<&str> = line.split(':').collect();
    assert!(fields[6].ends_with("nologin"), "{line}");
    assert_eq!(fields[5], "/var/lib/shoal");

    // Data dirs: the server's belongs to its user, nobody else may enter either.
    assert_eq!(mode(&root.join("var/lib/shoal")), 0o700);
    assert_eq!(mode(&root.join("var/lib/shoal-agent")), 0o700);
    if is_root() {
        assert_eq!(std::fs::metadata(root.join("var/lib/shoal")).unwrap().uid().to_string(), fields[2]);
    }

    // Units, started from the installed binary.
    let units = root.join("etc/systemd/system");
    assert!(read(&units.join("shoal-server.service")).contains("\nExecStart=/opt/shoal/bin/shoal server\n"));
    assert!(read(&units.join("shoal-agent.service")).contains("\nExecStart=/opt/shoal/bin/shoal agent\n"));

    // Man pages (one per subcommand) and completions, made by the binary.
    let man = root.join("usr/local/share/man/man1");
    assert!(read(&man.join("shoal.1")).contains(".TH shoal 1"));
    assert!(read(&man.join("shoal-server.1")).contains("\\-\\-config"));
    assert!(read(&root.join("usr/share/bash-completion/completions/shoal")).contains("complete -F _shoal"));
    assert!(read(&root.join("usr/share/zsh/site-functions/_shoal")).starts_with("#compdef shoal"));
    assert!(read(&root.join("usr/share/fish/vendor_completions.d/shoal.fish")).contains("complete -c shoal"));

    // A second install keeps the operator's configuration.
    std::fs::write(etc.join("server.toml"), "listen = \"0.0.0.0:9999\"\n").unwrap();
    let out = install(&["--root", r, "--binary", BIN, "--prefix", "/opt/shoal/bin"]);
    assert!(text(&out).contains("kept"), "{}", text(&out));
    assert_eq!(read(&etc.join("server.toml")), "listen = \"0.0.0.0:9999\"\n");

    // Uninstall: the program goes, configuration, data and the user stay.
    install(&["--root", r, "--prefix", "/opt/shoal/bin", "--uninstall"]);
    assert!(!bin.exists());
    assert!(!units.join("shoal-server.service").exists() && !units.join("shoal-agent.service").exists());
    assert!(!man.join("shoal.1").exists() && !man.join("shoal-server.1").exists());
    assert!(etc.join("server.toml").exists() && root.join("var/lib/shoal").exists());
    assert!(read(&root.join("etc/passwd")).contains("shoal:"));

    // --purge: everything.
    install(&["--root", r, "--prefix", "/opt/shoal/bin", "--uninstall", "--purge"]);
    assert!(!etc.exists() && !root.join("var/lib/shoal").exists() && !root.join("var/lib/shoal-agent").exists());
    assert!(!read(&root.join("etc/passwd")).contains("shoal:"));
}

#[test]
fn dry_run_prints_the_steps_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = install(&["--root", root.to_str().unwrap(), "--binary", BIN, "--dry-run"]);
    let said = text(&out);
    assert!(said.contains(&format!("+ install -m 0755 {BIN} {}/usr/local/bin/shoal", root.display())), "{said}");
    assert!(said.contains("shoal-agent.service"), "{said}");
    assert!(!root.exists(), "a dry run made {}", root.display());
    // Without --binary it builds the release binary first, from the locked dependencies.
    let out = install(&["--root", root.to_str().unwrap(), "--dry-run"]);
    assert!(text(&out).contains("+ cargo build --release --locked -p shoal"), "{}", text(&out));
    assert!(!root.exists());
}

/// Everything under `root`, as paths relative to it.
fn tree(root: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_client_gets_the_program_only_and_an_agent_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let client = dir.path().join("client");
    let out = install(&["--root", client.to_str().unwrap(), "--binary", BIN, "--client-only"]);
    let files = tree(&client);
    assert!(files.contains(&"usr/local/bin/shoal".to_string()), "{files:#?}");
    assert!(files.iter().any(|f| f.ends_with("man1/shoal.1")) && files.iter().any(|f| f.ends_with("completions/shoal")), "{files:#?}");
    for absent in ["etc/shoal", "var/lib/shoal", "var/lib/shoal-agent", "etc/systemd", "usr/lib/sysusers.d", "etc/passwd"] {
        assert!(!client.join(absent).exists(), "a client install made {absent}: {files:#?}");
    }
    assert!(!text(&out).contains("systemctl"), "{}", text(&out));

    let agent = dir.path().join("agent");
    let out = install(&["--root", agent.to_str().unwrap(), "--binary", BIN, "--agent-only"]);
    assert!(agent.join("usr/local/bin/shoal").exists());
    assert_eq!(read(&agent.join("etc/shoal/agent.toml")), read(&repo().join("dist/agent.example.toml")));
    assert_eq!(mode(&agent.join("etc/shoal/agent.toml")), 0o600);
    assert_eq!(mode(&agent.join("var/lib/shoal-agent")), 0o700);
    assert!(agent.join("etc/systemd/system/shoal-agent.service").exists());
    for absent in ["etc/shoal/server.toml", "var/lib/shoal", "etc/systemd/system/shoal-server.service", "usr/lib/sysusers.d/shoal.conf"] {
        assert!(!agent.join(absent).exists(), "an agent install made {absent}: {:#?}", tree(&agent));
    }
    let passwd = std::fs::read_to_string(agent.join("etc/passwd")).unwrap_or_default();
    assert!(!passwd.contains("shoal:"), "an agent needs no server user: {passwd}");
    assert!(text(&out).contains("shoal-agent") && !text(&out).contains("shoal-server"), "{}", text(&out));
    // Both at once makes no sense.
    let both = Command::new(repo().join("scripts/install")).args(["--client-only", "--agent-only", "--dry-run"]).output().unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
}

/// `scripts/install` as a user who is not root (root's tests drop to `nobody`).
fn as_a_user(args: &[&str], home: &Path) -> std::process::Output {
    let script = repo().join("scripts/install");
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(&script);
        c
    } else {
        Command::new(&script)
    };
    c.args(args).env("HOME", home).env_remove("XDG_DATA_HOME").output().unwrap()
}

#[test]
fn a_user_is_told_to_become_root_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    }
    // Into the running system, as a user: refused at once (nothing built, nothing written).
    let out = as_a_user(&[], &home);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("root") && said.contains("sudo -E scripts/install") && said.contains("--root DIR"), "{said}");
    assert!(said.contains("--client-only"), "a user install is offered: {said}");
    assert!(!said.contains("building"), "{said}");
    let out = as_a_user(&["--agent-only", "--binary", BIN], &home);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A client for oneself: into ~/.local, no root needed.
    let out = as_a_user(&["--client-only", "--binary", BIN], &home);
    assert!(out.status.success(), "{}", text(&out));
    let bin = home.join(".local/bin/shoal");
    assert_eq!(mode(&bin), 0o755);
    assert!(read(&home.join(".local/share/man/man1/shoal.1")).contains(".TH shoal 1"));
    assert!(read(&home.join(".local/share/bash-completion/completions/shoal")).contains("complete -F _shoal"));
    assert!(read(&home.join(".local/share/fish/vendor_completions.d/shoal.fish")).contains("complete -c shoal"));
    assert!(text(&out).contains(".local/bin"), "{}", text(&out));
}

/// The release binary carries no symbols (`strip = true`): the README gives its size.
#[test]
fn the_release_profile_strips_the_binary() {
    let root: toml::Table = toml::from_str(&read(&repo().join("Cargo.toml"))).unwrap();
    let strip = &root["profile"]["release"]["strip"];
    assert!(strip.as_bool() == Some(true) || strip.as_str() == Some("symbols"), "strip = {strip}");
}

#[test]
fn bad_options_are_refused() {
    for args in [&["--frobnicate"][..], &["--purge"], &["--prefix", "relative/bin"]] {
        let out = Command::new(repo().join("scripts/install")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    // A binary that is not there is an error before anything is installed.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = Command::new(repo().join("scripts/install"))
        .args(["--root", root.to_str().unwrap(), "--binary", "/nonexistent/shoal"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/shoal"), "{}", text(&out));
    assert!(!root.join("usr").exists());
}

/// `Key=value` lines of a unit's `[section]`.
fn section(unit: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{name}]");
        } else if inside && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

fn has(unit: &str, sec: &str, key: &str, value: &str) -> bool {
    section(unit, sec).iter().any(|(k, v)| k == key && v == value)
}

#[test]
fn the_units_hold_what_the_services_need() {
    let server = read(&repo().join("dist/systemd/shoal-server.service"));
    let agent = read(&repo().join("dist/systemd/shoal-agent.service"));
    // Agent: tasks live in child cgroups and outlive a restart of the agent.
    assert!(has(&agent, "Service", "Delegate", "yes"), "{agent}");
    assert!(has(&agent, "Service", "KillMode", "process"), "{agent}");
    assert!(has(&agent, "Service", "ExecStart", "/usr/local/bin/shoal agent"));
    assert!(has(&agent, "Service", "Environment", "SHOAL_CONFIG=/etc/shoal/agent.toml"));
    // Server: its own user, restarted after a crash, its state dir only.
    assert!(has(&server, "Service", "User", "shoal"));
    assert!(has(&server, "Service", "Restart", "on-failure"));
    assert!(has(&server, "Service", "ExecStart", "/usr/local/bin/shoal server"));
    assert!(has(&server, "Service", "Environment", "SHOAL_CONFIG=/etc/shoal/server.toml"));
    assert!(has(&server, "Service", "StateDirectory", "shoal"));
    assert!(has(&server, "Service", "ProtectSystem", "strict"));
    assert!(has(&server, "Service", "NoNewPrivileges", "yes"));
    // /etc/shoal is made when missing (root's, the service may read it).
    for unit in [&server, &agent] {
        assert!(has(unit, "Service", "ConfigurationDirectory", "shoal"), "{unit}");
    }
    // The agent runs operators' scripts as root: what would confine the agent would confine
    // every script (package installs, sudo, services, kernel modules), so it is left off —
    // and the unit says why.
    for key in ["NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "CapabilityBoundingSet", "RestrictSUIDSGID"] {
        assert!(!section(&agent, "Service").iter().any(|(k, _)| k == key), "{key} would confine every script: {agent}");
        assert!(agent.contains(&format!("# {key}")) || agent.contains(key), "the agent unit says why {key} is off: {agent}");
    }
    for unit in [&server, &agent] {
        assert!(has(unit, "Install", "WantedBy", "multi-user.target"));
        assert!(
            has(unit, "Unit", "After", "network-online.target")
                || section(unit, "Unit").iter().any(|(k, v)| k == "After" && v.contains("network-online.target"))
        );
    }
}

/// systemd's own parser, where there is one: every key known, every value valid.
#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: checked by the_units_hold_what_the_services_need only");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's program exists: point the units at the built binary.
    for unit in ["shoal-server.service", "shoal-agent.service"] {
        let text = read(&repo().join("dist/systemd").join(unit)).replace("/usr/local/bin/shoal", BIN);
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("shoal-server.service"))
        .arg(dir.path().join("shoal-agent.service"))
        .output()
        .unwrap();
    // It warns (and still exits 0) about unknown keys and bad values: any output fails.
    assert!(out.status.success() && text(&out).trim().is_empty(), "systemd-analyze verify: {}", text(&out));
}
