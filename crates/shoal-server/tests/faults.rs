//! Faults with real processes and a real filesystem: the embedded store's disk fills up in
//! the middle of a job with large output (a tmpfs this test mounts). While it is full the
//! API says the service is unavailable and `/healthz` says why; agents keep what was not
//! acknowledged; once space returns the server goes on without a restart, and every host's
//! every numbered line arrives exactly once, no script having run twice.

#[macro_use]
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// About 1.3 MB of output per host: three hosts' output exceeds by far the 1 MiB left free
/// plus whatever room SQLite's write-ahead log already holds from the server's start (it is
/// reused in place, so a smaller job could fit without taking a new block).
const LINES: usize = 15000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_mid_job_loses_nothing_and_runs_nothing_twice() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(mnt.path()).status().is_ok_and(|s| s.success());
    if !mounted {
        assert!(std::env::var("CI").is_err(), "CI must be able to mount a tmpfs for the full-disk test");
        eprintln!("skipping: cannot mount a tmpfs (needs root)");
        return;
    }
    let _mount = Mount(mnt.path().to_path_buf());
    let data = mnt.path().join("server");
    let Some(mut h) = Harness::start_with(Backend::Sqlite, |c| c.data_dir = Some(data.clone())).await else { return };
    for ip in ["127.0.0.101", "127.0.0.102", "127.0.0.103"] {
        h.add_agent(ip, None, None, &[]).await;
    }
    h.wait_connected(3).await;
    let hosts = h.host_ids().await;

    // Leave about 1 MiB free: three hosts × ~1.3 MiB of output will not fit.
    let ballast = mnt.path().join("ballast");
    let free = nix_free(mnt.path());
    std::fs::write(&ballast, vec![0u8; free.saturating_sub(1024 * 1024) as usize]).unwrap();

    // Each line numbered and marked with the script's PID: a second run would show twice.
    let script =
        format!("for i in $(seq 1 {LINES}); do echo \"$$ line $i padding-padding-padding-padding-padding-padding-padding-padding\"; done");
    let job = h.execute(&script, &hosts, json!({})).await;
    let (job, step) = (job["job_instance_id"].as_i64().unwrap(), job["step_instance_id"].as_i64().unwrap());

    // The disk fills: health says why, and a new submission is refused as unavailable.
    let url = h.url.clone();
    wait_for("/healthz to report the full disk", Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            match reqwest::get(format!("{url}/healthz")).await {
                Ok(r) => r.status().as_u16() == 503 && r.text().await.unwrap_or_default().contains("full"),
                Err(_) => false,
            }
        }
    })
    .await;
    // Whatever small space a rolled-back batch left is taken too. A new submission then either
    // fits in space the store already holds (and is a real job), or is refused as unavailable
    // with the reason — never a generic internal error, never a job that silently vanishes.
    let plug = mnt.path().join("plug");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&plug).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let (status, v) = h
        .post(
            "fast_execute_script",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64("echo second"),
            "script_language": 1, "account_alias": USER, "target_server": {"host_id_list": hosts}}),
        )
        .await;
    let second = match (status, v["code"].as_i64()) {
        (503, Some(1240001)) => {
            assert!(v["message"].as_str().unwrap_or("").contains("full"), "{v}");
            None
        }
        (200, Some(0)) => Some(v["data"]["job_instance_id"].as_i64().unwrap()),
        _ => panic!("a submission on a full disk answered {status}: {v}"),
    };

    // Space returns: no restart, the job finishes, health is back.
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&plug).unwrap();
    let st = h.wait_finished(job, Duration::from_secs(120)).await;
    assert_eq!(st["job_instance"]["status"], 3, "{st}");
    if let Some(second) = second {
        let st = h.wait_finished(second, Duration::from_secs(60)).await;
        assert_eq!(st["job_instance"]["status"], 3, "the job accepted on a full disk: {st}");
    }
    assert_eq!(reqwest::get(format!("{}/healthz", h.url)).await.unwrap().status().as_u16(), 200);

    let logs = h.logs(job, step, &hosts).await;
    for host in &hosts {
        let text = &logs[host];
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), LINES, "host {host}: {} lines, not {LINES}", lines.len());
        let pids: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(pids.len(), 1, "host {host}: the script ran {} times", pids.len());
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l.split(' ').nth(2), Some((i + 1).to_string().as_str()), "host {host}: line {} is {l:?}", i + 1);
        }
    }
}

/// Free bytes of the filesystem at `path`.
fn nix_free(path: &std::path::Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
}
