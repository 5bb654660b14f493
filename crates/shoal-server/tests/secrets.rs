//! Sensitive script parameters (`is_param_sensitive=1`) reach the script but never the logs
//! (every level, server and agent), the API answers, or the database at rest.

#[macro_use]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::json;

on_both_stores!(sensitive_params_stay_secret, a_sensitive_param_stays_out_of_argv_and_output);

const SECRET_VALUE: &str = "Zq9-sensitive-VALUE-41x";

/// Everything every test of this binary logs, at TRACE.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn sensitive_params_stay_secret(mut h: Harness) {
    let logs = captured();
    h.add_agent("127.0.0.81", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    // The script gets the value (it checks it) but does not print it.
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(SECRET_VALUE));
    let script = format!("#!/bin/bash\n[ \"$(printf %s \"$1\" | sha256sum | cut -c1-64)\" = '{digest}' ] && echo param-received");
    let data = h.execute(&script, &hosts, json!({"script_param": b64(SECRET_VALUE), "is_param_sensitive": 1})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    let out = h.logs(job, step, &hosts).await;
    assert!(out.values().all(|l| l.contains("param-received")), "the script received the value: {out:?}");

    // Answers.
    let answers = [
        st.to_string(),
        h.get("get_job_instance_list", &history_query("1")).await.1.to_string(),
        h.post(
            "get_job_instance_ip_log",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "bk_host_id": hosts[0]}),
        )
        .await
        .1
        .to_string(),
    ];
    for a in &answers {
        assert!(!a.contains(SECRET_VALUE) && !a.contains(&b64(SECRET_VALUE)), "answer leaks the value: {a}");
    }

    // At rest: what the step row holds is sealed.
    let args: Vec<String> = match &h.config.database_url {
        Some(url) => {
            let p = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT args FROM step_instances").fetch_all(&p).await.unwrap()
        }
        None => {
            let path = h.config.data_dir.clone().unwrap().join("shoal.db");
            let p = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query_scalar("SELECT args FROM step_instances").fetch_all(&p).await.unwrap()
        }
    };
    assert!(!args.is_empty());
    for a in &args {
        assert!(a.contains("shoal-sealed:v2:") && !a.contains(SECRET_VALUE), "stored in clear: {a}");
    }
    if h.config.database_url.is_none() {
        // Every byte of the SQLite files, WAL included.
        let dir = h.config.data_dir.clone().unwrap();
        for path in files_under(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(SECRET_VALUE), "{} holds the value in clear", path.display());
        }
    }

    // Logs, at TRACE, of everything this process ran.
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(text.contains("job created"), "logs were captured");
    assert!(!text.contains(SECRET_VALUE) && !text.contains(&b64(SECRET_VALUE)), "a log line carries the value");
}

/// Every process's command line on this host that holds `needle`.
fn cmdlines_with(needle: &str) -> Vec<String> {
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                out.push(String::from_utf8_lossy(&bytes).replace('\0', " "));
            }
        }
    }
    out
}

async fn a_sensitive_param_stays_out_of_argv_and_output(mut h: Harness) {
    let _logs = captured();
    h.add_agent("127.0.0.82", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let value = "Argv-secret-7731 with space";
    let (started, go) = (h.dir.path().join("started"), h.dir.path().join("go"));
    // The script holds until the test has looked at every command line on the host.
    let script = format!(
        "#!/bin/bash\ntouch {s}\nwhile [ ! -e {g} ]; do sleep 0.05; done\necho \"n=$# first=$1 second=$2\"",
        s = started.display(),
        g = go.display()
    );
    let param = format!("'{value}' plain-arg");
    let data = h.execute(&script, &hosts, json!({"script_param": b64(&param), "is_param_sensitive": 1})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    wait_for("the script to start", Duration::from_secs(20), || {
        let started = started.clone();
        async move { started.exists() }
    })
    .await;
    let seen = cmdlines_with("Argv-secret-7731");
    std::fs::write(&go, b"").unwrap();
    assert!(seen.is_empty(), "a sensitive parameter is in a command line: {seen:?}");
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    // The script got both parameters, and its output masks them.
    let out = h.logs(job, step, &hosts).await;
    assert_eq!(out[&hosts[0]], "n=2 first=****** second=******\n");

    // Python gets them on stdin through a bootstrap, and runs as `__main__`.
    let py =
        "from __future__ import annotations\nimport sys\nprint(len(sys.argv), sys.argv[1] == 'Argv-secret-' + '7731 with space', __name__)";
    let data = h.execute(py, &hosts, json!({"script_language": 4, "script_param": b64(&param), "is_param_sensitive": 1})).await;
    let (job, step) = (data["job_instance_id"].as_i64().unwrap(), data["step_instance_id"].as_i64().unwrap());
    let st = h.wait_finished(job, Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    assert_eq!(h.logs(job, step, &hosts).await[&hosts[0]], "3 True __main__\n");
}
