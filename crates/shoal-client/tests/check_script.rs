//! The built-in check script run directly with `sh`, on a fake GSE install: the collector
//! items keep the original's codes and messages, and the output honours the contract.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use shoal_client::check::{parse_output, CheckItem, BUILTIN_SCRIPT};

/// A child in its own process group; the whole group is killed on drop (the fake daemon's
/// `sleep` included).
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        // Signalled directly: procps-ng's `kill -KILL -PGID` reads a group id starting with 1
        // as group -1, i.e. every process the caller may signal.
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run(script: &Path, args: &[&str]) -> BTreeMap<(String, String), CheckItem> {
    let out = Command::new("sh").arg(script).args(args).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = parse_output(&text);
    assert!(parsed.bad_lines.is_empty(), "{text}");
    assert_eq!(parsed.answers.len(), 1, "one line of JSON: {text}");
    let answer = &parsed.answers[0];
    assert_eq!(answer.status, answer.data.iter().all(|i| i.status));
    answer.data.iter().map(|i| ((i.module.clone(), i.item.clone()), i.clone())).collect()
}

#[test]
fn collector_items_on_a_fake_gse_install() {
    let dir = tempfile::tempdir().unwrap();
    let gse = dir.path().join("gse");
    let bin = gse.join("plugins/bin/bkunifylogbeat");
    let etc = gse.join("plugins/etc/bkunifylogbeat");
    write(&bin, "#!/bin/sh\nif [ \"$1\" = healthz ]; then echo \"healthy: 3 tasks\"; exit 0; fi\nwhile :; do sleep 1; done\n");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(
        &gse.join("plugins/etc/bkunifylogbeat.conf"),
        &format!("logging.level: info\nbkunifylogbeat.multi_config:\n  - path: {}\n    file_pattern: \"*.conf\"\n\n", etc.display()),
    );
    write(&etc.join("bkunifylogbeat_sub_123_x.conf"), "");
    write(&gse.join("agent/etc/procinfo.json"), "[{\"name\": \"bkunifylogbeat\"}]");
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("outbox")).unwrap();
    let script = state.join("scripts/check.sh");
    write(&script, BUILTIN_SCRIPT);
    let gse_arg = format!("--gse_path={}/", gse.display());
    let ipc = dir.path().join("ipc.state.report");
    let ipc_arg = format!("--ipc_socket_file={}", ipc.display());
    let key = |m: &str, i: &str| (m.to_string(), i.to_string());

    // Not running, and only the sub-config of subscription 123: `_sub_12` must not match it.
    let items = run(&script, &["--subscription_id=12", &gse_arg, &ipc_arg]);
    assert!(items[&key("bkunifylogbeat", "bin_file")].status);
    assert_eq!(items[&key("bkunifylogbeat", "process")].message, "bkunifylogbeat is not running");
    assert!(items[&key("bkunifylogbeat", "main_config")].status, "{:?}", items[&key("bkunifylogbeat", "main_config")]);
    assert!(!items[&key("bkunifylogbeat", "config")].status);
    assert!(items[&key("bkunifylogbeat", "hosted")].status);
    assert_eq!(
        (items[&key("bkunifylogbeat", "healthz")].status, items[&key("bkunifylogbeat", "healthz")].message.as_str()),
        (true, "healthy: 3 tasks")
    );
    assert!(!items[&key("gse_agent", "socket")].status);
    for item in ["process", "socket_queue_status", "dataserver_port"] {
        assert!(items.contains_key(&key("gse_agent", item)), "{item}");
    }
    // The agent's own items are there too.
    for item in ["bin_file", "process", "state_dir", "disk_space", "clock_skew"] {
        assert!(items.contains_key(&key("shoal_agent", item)), "{item}");
    }
    assert!(items[&key("shoal_agent", "state_dir")].status, "the state dir is found from the script's path");

    // Running from the GSE path, with its sub-config.
    write(&etc.join("bkunifylogbeat_sub_12_y.conf"), "");
    let _beat = Kill(
        std::os::unix::process::CommandExt::process_group(Command::new(&bin).current_dir(&gse).stdout(Stdio::null()), 0).spawn().unwrap(),
    );
    std::fs::write(&ipc, "").unwrap();
    let mut items = run(&script, &["--subscription_id=12", &gse_arg, &ipc_arg]);
    for _ in 0..50 {
        if items[&key("bkunifylogbeat", "process")].status {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        items = run(&script, &["--subscription_id=12", &gse_arg, &ipc_arg]);
    }
    let process = &items[&key("bkunifylogbeat", "process")];
    assert!(process.status && process.message.starts_with("cpu_usage: "), "{process:?}");
    assert_eq!(items[&key("bkunifylogbeat", "config")].message, "real_config_name: bkunifylogbeat_sub_12_y.conf");
    assert!(items[&key("gse_agent", "socket")].status);

    // Subscription 0: the collector is not checked, as the original.
    let items = run(&script, &["--subscription_id=0", &gse_arg]);
    assert!(items.keys().all(|(m, _)| m == "shoal_agent"), "{:?}", items.keys());
}

#[test]
fn messages_are_escaped_into_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("state/scripts/check.sh");
    write(&script, BUILTIN_SCRIPT);
    // A server URL with quotes and backslashes ends up in a message.
    let items = run(&script, &["--server=http://127.0.0.1:1/\"a\\b", "--min-free-mb=999999999"]);
    let server = &items[&("shoal_agent".to_string(), "server".to_string())];
    assert!(!server.status && server.message.contains("\"a\\b"), "{server:?}");
    assert!(!items[&("shoal_agent".to_string(), "disk_space".to_string())].status);
}
