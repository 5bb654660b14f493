//! Errors as the CLI binary prints them against a server process: a server signed by a
//! private CA (the cause, and `--ca` as the way out), and a caller without a role in the
//! business (who lacks it and the exact grant that fixes it).

mod common;

use std::time::Duration;

use common::*;

const ROOT: (&str, &str) = ("root-app", "root-secret");

#[test]
fn tls_and_missing_roles_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = private_ca(&pki);
    let port = free_port();
    let _server = Kids(vec![tls_server_cmd(port, &dir.path().join("data"), &pki, ROOT, "t").spawn().unwrap()]);
    wait_until("the server", Duration::from_secs(30), || listening(port));
    let url = format!("https://127.0.0.1:{port}");
    let home = dir.path().join("home");
    let as_app = |code: &str, secret: &str| {
        let mut c = bare_cli(&home);
        c.env("SHOAL_URL", &url).env("SHOAL_APP_CODE", code).env("SHOAL_APP_SECRET", secret).env("SHOAL_USERNAME", "tester");
        c
    };

    // Without the CA: the certificate is the cause, and --ca the way out.
    let o = as_app(ROOT.0, ROOT.1).args(["job", "list"]).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("cannot reach the server at {url}")), "{t}");
    assert!(t.to_lowercase().contains("certificate"), "the TLS cause: {t}");
    assert!(t.contains("--ca CA.pem") && t.contains("SHOAL_CA"), "{t}");
    // With it (flag or environment), the call goes through.
    let o = as_app(ROOT.0, ROOT.1).args(["job", "list", "--ca"]).arg(&ca).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = as_app(ROOT.0, ROOT.1).args(["job", "list"]).env("SHOAL_CA", &ca).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // An app without a role in the business: JOB's code, who lacks what, the grant to give.
    let o = as_app(ROOT.0, ROOT.1).args(["app", "create", "ci"]).env("SHOAL_CA", &ca).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let secret = String::from_utf8_lossy(&o.stdout).trim().split_once(':').unwrap().1.to_string();
    let o = as_app("ci", &secret).args(["job", "list", "--biz", "4"]).env("SHOAL_CA", &ca).output().unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("error 9900403: app ci has no role that allows this in business 4"), "{t}");
    assert!(t.contains("'shoal app grant ci --role run --biz 4'"), "{t}");
    assert!(!t.contains("IAM"), "BlueKing's wording stays in the API: {t}");
    // Granted, it works.
    let o = as_app(ROOT.0, ROOT.1).args(["app", "grant", "ci", "--role", "run", "--biz", "4"]).env("SHOAL_CA", &ca).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = as_app("ci", &secret).args(["job", "list", "--biz", "4"]).env("SHOAL_CA", &ca).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // A user (token) without a role: the user grant.
    let o =
        with_stdin(as_app(ROOT.0, ROOT.1).args(["user", "create", "bob", "--password-stdin"]).env("SHOAL_CA", &ca), "bobs-long-password\n");
    assert!(o.status.success(), "{}", text(&o));
    let o = as_app(ROOT.0, ROOT.1).args(["user", "token", "create", "--user", "bob"]).env("SHOAL_CA", &ca).output().unwrap();
    let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let mut c = bare_cli(&home);
    let o = c.args(["job", "list"]).env("SHOAL_URL", &url).env("SHOAL_TOKEN", &token).env("SHOAL_CA", &ca).output().unwrap();
    let t = text(&o);
    assert!(t.contains("error 9900403: user bob has no role that allows this in business 1"), "{t}");
    assert!(t.contains("'shoal user grant bob --role run --biz 1'"), "{t}");
}
