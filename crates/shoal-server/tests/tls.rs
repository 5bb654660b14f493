//! TLS on the server's listener: an agent that trusts the server's CA connects and runs jobs;
//! one that does not, or that speaks plain text, is refused; and an agent refuses plain
//! `http://` unless told `--insecure`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shoal_agent::session::connect::{dial, tls_connector, Target};
use shoal_agent::session::error::StartError;
use shoal_agent::{AgentConfig, HostFacts};
use shoal_server::ServerConfig;
use tokio::sync::watch;

const TOKEN: &str = "tls-token";

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A CA and a server certificate for localhost / 127.0.0.1 signed by it.
fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

struct TlsServer {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    shared: Arc<shoal_server::Shared>,
    stop: watch::Sender<bool>,
    ca: std::path::PathBuf,
}

async fn start() -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (cert, key, ca) = (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("ca.pem"));
    std::fs::write(&cert, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: Some(dir.path().join("server")),
        agent_token: Some(TOKEN.into()),
        bootstrap_app: Some("tls-app:tls-secret".into()),
        tls_cert: Some(cert),
        tls_key: Some(key),
        heartbeat_secs: 2,
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = shoal_server::prepare(config).await.unwrap();
    let (stop, rx) = watch::channel(false);
    let mut rx2 = rx.clone();
    tokio::spawn(shoal_server::serve(shared.clone(), listener, async move {
        let _ = rx2.wait_for(|v| *v).await;
    }));
    drop(rx);
    TlsServer { dir, addr, shared, stop, ca }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn facts(ip: &str) -> HostFacts {
    HostFacts {
        bk_biz_id: 1,
        bk_cloud_id: 0,
        ip: ip.into(),
        set_id: None,
        module_id: None,
        labels: BTreeMap::new(),
        hostname: "tls-host".into(),
        os: "linux".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_with_the_ca_connects_and_runs_over_tls() {
    let s = start().await;
    let url = format!("https://localhost:{}", s.addr.port());
    let mut cfg = AgentConfig::new(vec![url.clone()], TOKEN.into(), s.dir.path().join("agent"), facts("127.0.0.71"));
    cfg.ca_file = Some(s.ca.clone());
    cfg.insecure = false;
    let (agent_stop, rx) = watch::channel(false);
    let agent = tokio::spawn(shoal_agent::run(cfg, async move {
        let mut rx = rx;
        let _ = rx.wait_for(|v| *v).await;
    }));
    let g = s.shared.gateway.clone();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    while g.connected_set().is_empty() {
        assert!(tokio::time::Instant::now() < end, "agent did not connect over TLS");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The API answers over TLS to a client that trusts the CA.
    let ca = reqwest::Certificate::from_pem(std::fs::read(&s.ca).unwrap().as_slice()).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let auth = json!({"bk_app_code": "tls-app", "bk_app_secret": "tls-secret", "bk_username": "u"}).to_string();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let post = |name: &str, body: Value| {
        let http = http.clone();
        let auth = auth.clone();
        let url = format!("{url}/api/v3/{name}");
        async move { http.post(url).header("X-Bkapi-Authorization", auth).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let current = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();
    let v = post(
        "create_account",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": current, "alias": user, "type": 1, "category": 1}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let host = *g.connected_set().iter().next().unwrap();
    use base64::Engine;
    let script = base64::engine::general_purpose::STANDARD.encode("echo over-tls");
    let v = post(
        "fast_execute_script",
        json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": script, "script_language": 1,
        "account_alias": user, "target_server": {"host_id_list": [host]}}),
    )
    .await;
    assert_eq!(v["code"], 0, "{v}");
    let job = v["data"]["job_instance_id"].as_i64().unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = post("get_job_instance_status", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job})).await;
        if v["data"]["finished"] == true {
            assert_eq!(v["data"]["job_instance"]["status"], 3, "{v}");
            break;
        }
        assert!(tokio::time::Instant::now() < end, "job over TLS did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = agent_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_or_plain_text_clients_are_refused() {
    let s = start().await;
    let port = s.addr.port();
    // The agent verifies the server: without the CA (public roots only) the handshake fails.
    let target = Target::parse(&format!("https://localhost:{port}"), false).unwrap();
    let untrusted = tls_connector(None).unwrap();
    let err = dial(&target, Some(&untrusted)).await.err().expect("an untrusted certificate is refused");
    assert!(err.to_string().to_lowercase().contains("tls") || err.to_string().contains("certificate"), "{err}");
    // A certificate for another name is refused too, even with the right CA.
    let trusted = tls_connector(Some(&s.ca)).unwrap();
    let wrong_name = Target::parse(&format!("https://127.0.0.2:{port}"), false).unwrap();
    assert!(dial(&wrong_name, Some(&trusted)).await.is_err());
    assert!(dial(&target, Some(&trusted)).await.is_ok(), "the right CA and name connect");

    // Plain text to the TLS listener gets no answer.
    let plain = Target::parse(&format!("http://127.0.0.1:{port}"), true).unwrap();
    assert!(dial(&plain, None).await.is_err(), "a plain-text WebSocket is refused");
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_err(), "plain HTTP gets no answer");

    // And the agent refuses plain http itself unless told it may.
    assert!(matches!(Target::parse(&format!("http://127.0.0.1:{port}"), false), Err(StartError::PlainHttp { .. })));
    assert!(s.shared.gateway.connected_set().is_empty());
}

/// The caller client reaches a server signed by a private CA once given the CA (`--ca` of the
/// CLI); without it the failure names the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_trusts_a_private_ca_when_given_it() {
    use shoal_client::{Client, ClientConfig, PathStyle};
    let s = start().await;
    let cfg = ClientConfig {
        url: format!("https://localhost:{}", s.addr.port()),
        app_code: "tls-app".into(),
        app_secret: "tls-secret".into(),
        username: "tester".into(),
        token: None,
        style: PathStyle::Gateway,
        timeout: Duration::from_secs(10),
        language: Some("en".into()),
    };
    let plain = Client::new(cfg.clone()).unwrap().with_retry(shoal_client::RetryPolicy { attempts: 1, ..Default::default() });
    let e = plain.hosts(Some(1), None).await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let pem = std::fs::read(&s.ca).unwrap();
    let trusting = Client::new(cfg.clone()).unwrap().with_ca_pem(&pem).unwrap();
    let hosts: Value = trusting.hosts(Some(1), None).await.unwrap();
    assert_eq!(hosts["total"], 0, "{hosts}");
    // Uploads (`shoal push`) go over the same trust.
    let local = s.dir.path().join("payload.txt");
    std::fs::write(&local, "over tls").unwrap();
    let slots = trusting.upload_urls(&shoal_client::Scope::biz(1), &["payload.txt".to_string()]).await.unwrap();
    let up = trusting.upload_file(&slots["payload.txt"], &local, |_| {}).await;
    assert!(up.is_ok(), "{up:?}");
    assert!(Client::new(cfg).unwrap().with_ca_pem(b"not a certificate").is_err());
}
