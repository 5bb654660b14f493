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
    // Without --binary it builds the release binary first.
    let out = install(&["--root", root.to_str().unwrap(), "--dry-run"]);
    assert!(text(&out).contains("+ cargo build --release -p shoal"), "{}", text(&out));
    assert!(!root.exists());
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
