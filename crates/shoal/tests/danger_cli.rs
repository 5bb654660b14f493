//! `shoal danger builtin list | disable | enable` as an admin runs them against a server
//! process: the state is kept, shown, and a non-admin app is refused.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shoal(url: &str, app: &str, secret: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SHOAL_URL", url)
        .env("SHOAL_APP_CODE", app)
        .env("SHOAL_APP_SECRET", secret)
        .env("SHOAL_USERNAME", "admin")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn start(data: &Path, port: u16) -> Kid {
    Kid(Command::new(BIN)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("SHOAL_BOOTSTRAP_APP", "root-app:root-secret")
        .env("SHOAL_AGENT_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap())
}

#[test]
fn builtins_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = start(&data, port);
    let url = format!("http://127.0.0.1:{port}");
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let admin = |args: &[&str]| shoal(&url, "root-app", "root-secret", args);

    let o = admin(&["danger", "builtin", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    let line = |o: &Output, name: &str| text(o).lines().find(|l| l.starts_with(name)).map(str::to_string).unwrap_or_default();
    assert!(line(&o, "rm-root").contains(" yes "), "{}", text(&o));

    let o = admin(&["danger", "builtin", "disable", "rm-root"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no longer blocks"), "{}", text(&o));
    let o = admin(&["danger", "builtin", "list"]);
    assert!(line(&o, "rm-root").contains(" no "), "{}", text(&o));
    assert!(line(&o, "mkfs-device").contains(" yes "), "{}", text(&o));

    let o = admin(&["danger", "builtin", "disable", "no-such-check"]);
    assert!(!o.status.success(), "{}", text(&o));

    // Another app, even with every role in a business, is not a platform admin.
    let o = admin(&["app", "create", "ci"]);
    assert!(o.status.success(), "{}", text(&o));
    let creds = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let (code, secret) = creds.split_once(':').unwrap();
    let o = shoal(&url, code, secret, &["danger", "builtin", "enable", "rm-root"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("9900403") || text(&o).to_lowercase().contains("permission"), "{}", text(&o));

    let o = admin(&["danger", "builtin", "enable", "rm-root"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = admin(&["danger", "builtin", "list"]);
    assert!(line(&o, "rm-root").contains(" yes "), "{}", text(&o));
}
