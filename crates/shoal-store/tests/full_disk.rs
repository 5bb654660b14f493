//! A full disk under the embedded store (a small tmpfs this test mounts): a write that fails
//! says so, a write that says Ok is durable, and once space returns the store writes again
//! without a restart. Needs root to mount; under CI (`CI=true`) not being able to is a failure.

use std::process::Command;
use std::sync::Arc;

use shoal_proto::agent::TaskKey;
use shoal_store::*;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Option<Mount> {
    let ok =
        Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").is_err(), "CI must be able to mount a tmpfs for the full-disk test");
        eprintln!("skipping: cannot mount a tmpfs (needs root)");
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

fn job() -> NewJob {
    NewJob {
        scope_type: "biz".into(),
        scope_id: "1".into(),
        name: "big".into(),
        operator: "alice".into(),
        app_code: "app".into(),
        task_type: 1,
        launch_mode: 2,
        create_time: 1,
        callback_url: None,
        steps: vec![NewStep {
            name: "big".into(),
            step_type: 1,
            language: 1,
            script: b"yes".to_vec(),
            timeout_secs: 60,
            account_id: 1,
            account_user: "root".into(),
            targets: (1..=4).map(|i| TargetHost { bk_host_id: i, ip: format!("10.0.0.{i}"), bk_cloud_id: 0 }).collect(),
            ..Default::default()
        }],
        plan: None,
        audit: AuditEvent {
            time: 1,
            app_code: "a".into(),
            username: "u".into(),
            scope_type: "biz".into(),
            scope_id: "1".into(),
            action: "t".into(),
            ..Default::default()
        },
        quota: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_an_error_never_a_silent_success() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(dir.path(), "3m") else { return };
    let url = format!("sqlite://{}", dir.path().join("shoal.db").display());
    let store: Arc<dyn Store> = open(&url).await.unwrap();
    let (_, steps) = store.create_job(&job()).await.unwrap();
    let step = steps[0];
    store.update_step(&StepUpdate { id: step, status: Some(2), start_time: Some(2), end_time: None }).await.unwrap();

    // Numbered 16 KiB chunks, four hosts, until the disk is full and a bit beyond.
    let chunk = |host: i64, seq: u64| {
        format!("{host}:{seq}:").into_bytes().into_iter().chain(std::iter::repeat_n(b'x', 16 * 1024)).collect::<Vec<u8>>()
    };
    let mut acked: Vec<(i64, u64)> = Vec::new();
    let mut failures = 0;
    let mut seq = 0u64;
    while failures < 20 && seq < 2000 {
        let batch: Vec<TaskChange> = (1..=4).map(|h| TaskChange::Log { key: TaskKey::new(step, 0, h), seq, data: chunk(h, seq) }).collect();
        // A write that waits on a lock left behind by a failed one would hang here.
        let applied = tokio::time::timeout(std::time::Duration::from_secs(20), store.apply(&batch, u64::MAX)).await;
        match applied.expect("a write hung on the lock of a failed commit") {
            Ok(_) => acked.extend((1..=4).map(|h| (h, seq))),
            Err(_) => failures += 1,
        }
        seq += 1;
    }
    assert!(failures > 0, "the disk never filled");

    // Space comes back: the same store writes again, without a restart.
    let grown = Command::new("mount").args(["-o", "remount,size=64m"]).arg(dir.path()).status().unwrap();
    assert!(grown.success());
    let mut recovered = false;
    for _ in 0..50 {
        let batch: Vec<TaskChange> = (1..=4).map(|h| TaskChange::Log { key: TaskKey::new(step, 0, h), seq, data: chunk(h, seq) }).collect();
        let applied = tokio::time::timeout(std::time::Duration::from_secs(20), store.apply(&batch, u64::MAX)).await;
        if applied.expect("a write hung once space returned").is_ok() {
            acked.extend((1..=4).map(|h| (h, seq)));
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not write again once space returned");
    drop(store);

    // Every acknowledged chunk is in the database, read through a fresh connection.
    let fresh: Arc<dyn Store> = open(&url).await.unwrap();
    let logs = fresh.read_logs(step, 0, &[1, 2, 3, 4]).await.unwrap();
    let text: std::collections::HashMap<i64, String> =
        logs.into_iter().map(|(h, b)| (h, String::from_utf8_lossy(&b).into_owned())).collect();
    let missing: Vec<&(i64, u64)> = acked.iter().filter(|(h, s)| !text.get(h).is_some_and(|t| t.contains(&format!("{h}:{s}:")))).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged chunks were lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}
