//! Helpers for tests that run the `shoal` binary as processes.

#![allow(dead_code)]

use std::process::{Child, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shoal");

/// Child processes, stopped when the test ends however it ends: SIGTERM (so agents clean up
/// after themselves), then SIGKILL for what has not exited within 5 s.
pub struct Kids(pub Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if !matches!(c.try_wait(), Ok(None)) {
                continue; // already gone (and maybe reaped: its pid may be someone else's now)
            }
            let _ = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        let end = Instant::now() + Duration::from_secs(5);
        for c in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Everything a process printed.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A JOB API call over a plain socket, as an app with `bk_username` "tester"; the JSON answer.
pub fn post_json(port: u16, (app, secret): (&str, &str), path: &str, body: serde_json::Value) -> serde_json::Value {
    use std::io::{Read, Write};
    let body = body.to_string();
    let auth = serde_json::json!({"bk_app_code": app, "bk_app_secret": secret, "bk_username": "tester"});
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Bkapi-Authorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|_| panic!("bad answer: {resp}"))
}

/// The OS user the tests run as.
pub fn whoami() -> String {
    String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string()
}

/// `shoal server` on 127.0.0.1:`port` with its data in `data`, a bootstrap app and an
/// enrolment token, output discarded (callers add flags, env or a log file).
pub fn server_cmd(port: u16, data: &std::path::Path, (app, secret): (&str, &str), token: &str) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("SHOAL_BOOTSTRAP_APP", format!("{app}:{secret}"))
        .env("SHOAL_AGENT_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// `shoal agent` of business 1 at `ip`, dialling the server on `port`, output discarded
/// (callers add labels, topology or another business).
pub fn agent_cmd(port: u16, ip: &str, state: &std::path::Path, token: &str) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.args(["agent", "--server", &format!("http://127.0.0.1:{port}"), "--bk-biz-id", "1", "--ip", ip, "--state-dir"])
        .arg(state)
        .env("SHOAL_AGENT_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// The CLI as `app` with user "tester" against the server on `port`: no client config file,
/// no `SHOAL_BIZ` from the environment.
pub fn cli_cmd(port: u16, (app, secret): (&str, &str)) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.env("SHOAL_URL", format!("http://127.0.0.1:{port}"))
        .env("SHOAL_APP_CODE", app)
        .env("SHOAL_APP_SECRET", secret)
        .env("SHOAL_USERNAME", "tester")
        .env("SHOAL_CLIENT_CONFIG", "/nonexistent")
        .env_remove("SHOAL_BIZ");
    c
}

/// A private CA and a certificate for 127.0.0.1 / localhost signed by it, written into `dir`
/// as `ca.pem`, `cert.pem` and `key.pem`; answers the CA's path.
pub fn private_ca(dir: &std::path::Path) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    dir.join("ca.pem")
}

/// `shoal server` serving HTTPS with a certificate of [`private_ca`] from `pki` (see
/// [`server_cmd`]).
pub fn tls_server_cmd(port: u16, data: &std::path::Path, pki: &std::path::Path, app: (&str, &str), token: &str) -> std::process::Command {
    let mut c = server_cmd(port, data, app, token);
    c.arg("--tls-cert").arg(pki.join("cert.pem")).arg("--tls-key").arg(pki.join("key.pem"));
    c
}

/// The CLI with nothing from the test's environment: a home of its own (`HOME`,
/// `XDG_CONFIG_HOME` under `home`), no `SHOAL_*` settings, English messages.
pub fn bare_cli(home: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .env("LANG", "C.UTF-8");
    c
}

/// Runs `c` with `input` on its standard input.
pub fn with_stdin(c: &mut std::process::Command, input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}
