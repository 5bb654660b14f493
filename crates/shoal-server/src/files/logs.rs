//! A file task's output is its file log: one JSON [`FileEvent`] per line, the last event of
//! a file being its state. [`file_logs`] folds them into JOB's `file_logs` entries
//! (`EsbFileLogV3DTO`): sizes, speeds and progress as the strings JOB shows.

use serde_json::{json, Value};
use shoal_proto::agent::{FileEvent, FileHost};

/// `1.0 Bytes`, `12.5 KB`, `3.0 MB` as JOB writes sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["Bytes", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn host(h: &Option<FileHost>) -> Value {
    match h {
        Some(h) => json!({"bk_host_id": h.bk_host_id, "bk_cloud_id": h.bk_cloud_id, "ip": h.ip}),
        None => Value::Null,
    }
}

/// The events in `log` (lines that are not events, such as the agent's own notes, are
/// skipped), the last one of each (mode, destination) kept, in first-seen order.
pub fn fold(log: &str) -> Vec<FileEvent> {
    let mut out: Vec<FileEvent> = Vec::new();
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<FileEvent>(line) else { continue };
        match out.iter_mut().find(|o| o.mode == e.mode && o.dest_path == e.dest_path && o.src_path == e.src_path) {
            Some(slot) => *slot = e,
            None => out.push(e),
        }
    }
    out
}

/// JOB's `file_logs` of one target host (`dest`) from its task's output.
pub fn file_logs(log: &str, dest: &FileHost) -> Vec<Value> {
    fold(log)
        .into_iter()
        .map(|e| {
            let progress = e.done.saturating_mul(100).checked_div(e.size).map_or(100, |p| p.min(100));
            let speed = format!("{} KB/s", e.speed / 1024);
            let time = shoal_core::time::human(e.time_ms);
            let state = match e.status {
                4 => "success",
                5 => "failed",
                3 => "downloading",
                2 => "uploading",
                _ => "waiting",
            };
            let log_content = format!(
                "[{time}] FileName: {} FileSize: {} State: {state} Speed: {speed} Progress: {progress}% Detail: {}",
                e.dest_path,
                human_size(e.size),
                e.message
            );
            let mut v = json!({
                "mode": e.mode,
                "src_ip": host(&e.src_host),
                "src_path": e.src_path,
                "status": e.status,
                "log_content": log_content,
                "size": human_size(e.size),
                "speed": speed,
                "process": format!("{progress}%"),
            });
            if e.mode == 1 {
                v["dest_ip"] = json!({"bk_host_id": dest.bk_host_id, "bk_cloud_id": dest.bk_cloud_id, "ip": dest.ip});
                v["dest_path"] = Value::String(e.dest_path);
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(dest: &str, status: u8, done: u64) -> String {
        serde_json::to_string(&FileEvent {
            mode: 1,
            src_path: "a.txt".into(),
            src_host: None,
            dest_path: dest.into(),
            status,
            size: 2048,
            done,
            speed: 4096,
            time_ms: 0,
            message: "m".into(),
        })
        .unwrap()
    }

    #[test]
    fn the_last_event_of_each_file_is_its_state() {
        let log = format!("{}\n[shoal] a note\n{}\n{}\n{}\n", ev("/t/a", 1, 0), ev("/t/b", 1, 0), ev("/t/a", 3, 1024), ev("/t/a", 4, 2048));
        let logs = file_logs(&log, &FileHost { bk_host_id: 7, bk_cloud_id: 0, ip: "10.0.0.7".into() });
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0]["dest_path"], "/t/a");
        assert_eq!(logs[0]["status"], 4);
        assert_eq!(logs[0]["process"], "100%");
        assert_eq!(logs[0]["size"], "2.0 KB");
        assert_eq!(logs[0]["speed"], "4 KB/s");
        assert_eq!(logs[0]["dest_ip"]["bk_host_id"], 7);
        assert_eq!(logs[1]["status"], 1);
        assert!(logs[0]["log_content"].as_str().unwrap().contains("FileName: /t/a"));
    }

    #[test]
    fn sizes_read_as_job_writes_them() {
        assert_eq!(human_size(1), "1.0 Bytes");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(3 << 20), "3.0 MB");
    }
}
