//! The workspace's own promises: the declared `rust-version` is every crate's and covers what
//! the locked dependencies need, and `scripts/test` hands its arguments to the test runner
//! (skipping PostgreSQL's tests, visibly, when there is no PostgreSQL).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn manifest(path: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `1.89` or `1.89.0` as `[1, 89, 0]`.
fn version(v: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = v.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("not a version: {v}"))).collect();
    parts.resize(3, 0);
    parts
}

fn declared() -> String {
    let root = manifest(&repo().join("Cargo.toml"));
    root["workspace"]["package"]["rust-version"].as_str().expect("[workspace.package] rust-version").to_string()
}

#[test]
fn every_crate_declares_the_workspace_rust_version() {
    let mut missing = vec![];
    for entry in std::fs::read_dir(repo().join("crates")).unwrap() {
        let path = entry.unwrap().path().join("Cargo.toml");
        if !path.exists() {
            continue;
        }
        let m = manifest(&path);
        let inherited = m["package"].get("rust-version").and_then(|v| v.get("workspace")).and_then(|v| v.as_bool());
        if inherited != Some(true) {
            missing.push(path.display().to_string());
        }
    }
    assert!(missing.is_empty(), "without rust-version.workspace = true: {missing:?}");
}

/// The highest `rust-version` among the locked dependencies built for this platform, when
/// cargo can tell without the network.
#[test]
fn the_rust_version_covers_the_locked_dependencies() {
    let target = format!("{}-unknown-linux-{}", std::env::consts::ARCH, if cfg!(target_env = "musl") { "musl" } else { "gnu" });
    let out = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", &target])
        .current_dir(repo())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("--offline") {
        eprintln!("NOTICE: the dependencies' manifests are not all on this machine; not determinable offline: {err}");
        return;
    }
    assert!(out.status.success(), "cargo metadata: {err}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&str> = meta["workspace_members"].as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
    let (mut highest, mut who) = (vec![0], String::new());
    for p in meta["packages"].as_array().unwrap() {
        let Some(v) = p["rust_version"].as_str() else { continue };
        if members.contains(&p["id"].as_str().unwrap_or("")) {
            continue;
        }
        if version(v) > highest {
            (highest, who) = (version(v), format!("{} {} needs {v}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()));
        }
    }
    let declared = declared();
    assert!(version(&declared) >= highest, "rust-version {declared} is too old: {who}");
    // Each member says so too (cargo reports the inherited value).
    for p in meta["packages"].as_array().unwrap().iter().filter(|p| members.contains(&p["id"].as_str().unwrap_or(""))) {
        let theirs = p["rust_version"].as_str().map(version);
        assert_eq!(theirs, Some(version(&declared)), "{}", p["name"]);
    }
}

/// `scripts/test` with a `cargo` that records what it is asked.
fn scripts_test(args: &[&str], nextest: bool, database: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let fake = dir.path().join("cargo");
    let nextest_version = if nextest { "exit 0" } else { "exit 101" };
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1 $2\" = \"nextest --version\" ]; then {nextest_version}; fi\nprintf '%s\\n' \"$*\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(repo().join("scripts/test"))
        .args(args)
        .env("PATH", format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default()))
        .env("SHOAL_TEST_DATABASE_URL", database)
        .env_remove("SHOAL_REQUIRE_POSTGRES")
        .env_remove("CI")
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/test {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(&log).unwrap_or_default().trim().to_string(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn scripts_test_passes_its_arguments_to_the_runner() {
    let reachable = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = format!("postgres://postgres@127.0.0.1:{}/test", reachable.local_addr().unwrap().port());
    let down = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());

    // Everything, or one crate: the arguments go through, and -p narrows the scope.
    let (call, _) = scripts_test(&[], true, &up);
    assert_eq!(call, "nextest run --workspace --no-fail-fast");
    let (call, _) = scripts_test(&["-p", "shoal-agent", "--test", "exec", "--", "--nocapture"], true, &up);
    assert_eq!(call, "nextest run --no-fail-fast -p shoal-agent --test exec -- --nocapture");
    let (call, _) = scripts_test(&["--package=shoal-core"], true, &up);
    assert_eq!(call, "nextest run --no-fail-fast --package=shoal-core");

    // No PostgreSQL: its tests are filtered out (reported as skipped) and a notice says why;
    // a filter of the caller's own is narrowed, never widened.
    let (call, notice) = scripts_test(&["-p", "shoal-store"], true, &down);
    assert_eq!(call, "nextest run --no-fail-fast -E not test(/postgres/) -p shoal-store");
    assert!(notice.contains("SKIPPED"), "{notice}");
    let (call, _) = scripts_test(&["-E", "test(/hosts/)", "-p", "shoal-store"], true, &down);
    assert_eq!(call, "nextest run --no-fail-fast -E (test(/hosts/)) and not test(/postgres/) -p shoal-store");

    // Without nextest: cargo test, the skip after the caller's own test arguments.
    let (call, _) = scripts_test(&["-p", "shoal-core"], false, &down);
    assert_eq!(call, "test --no-fail-fast -p shoal-core -- --skip postgres");
    let (call, _) = scripts_test(&["-p", "shoal-core", "--", "--nocapture"], false, &down);
    assert_eq!(call, "test --no-fail-fast -p shoal-core -- --nocapture --skip postgres");
    drop(reachable);
}
