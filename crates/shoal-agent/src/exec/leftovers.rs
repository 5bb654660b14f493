//! Where a started task's processes are — kept in its task record — and what a restarted
//! agent does about a task that was running when it stopped: kill whatever is left of it,
//! so a task the server is told was lost can never still have an effect later.
//!
//! The task's cgroup holds all of it. Without one, its process group is killed, but only
//! when the group is provably the task's: same boot, and the group leader's pid is either
//! gone (a pid is not reused while a group of that id exists) or still the same process
//! (same start time).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::cgroup::TaskCgroup;

/// How long a restarted agent waits for a killed task's cgroup to empty.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Where a task's processes are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whereabouts {
    /// The task's cgroup (decided before the script starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    /// Process group of the script (once started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
    /// `/proc/sys/kernel/random/boot_id` when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Start time of the group leader, in clock ticks since boot (`/proc/<pid>/stat` field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_start: Option<u64>,
}

impl Whereabouts {
    /// A script just started as the leader of group `pgid`. Blocking (reads /proc).
    pub fn started(cgroup: Option<PathBuf>, pgid: i32) -> Whereabouts {
        Whereabouts { cgroup, pgid: Some(pgid), boot_id: boot_id(), leader_start: start_ticks(pgid) }
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name, which may hold
/// spaces).
fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state); field 22 is the 20th after it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills what is left of a task that was running when the agent stopped. Blocking (up to a
/// few seconds). Returns what was done, for the task's log.
pub fn stop(w: &Whereabouts) -> String {
    if let Some(path) = w.cgroup.as_ref().filter(|p| p.is_dir()) {
        let cg = TaskCgroup::at(path);
        let (found, empty) = cg.kill_all(KILL_WAIT);
        cg.remove();
        return match (found, empty) {
            (0, _) => "no process of it was left".to_string(),
            (n, true) => format!("its {n} remaining process{} were killed", plural(n)),
            (n, false) => format!("its {n} remaining process{} were killed, but the cgroup is not empty yet", plural(n)),
        };
    }
    let Some(pgid) = w.pgid else {
        return "it had not started a process".to_string();
    };
    if w.boot_id.is_some() && w.boot_id != boot_id() {
        return "the host has restarted since, so no process of it is left".to_string();
    }
    match start_ticks(pgid) {
        Some(now) if w.leader_start.is_some_and(|then| then != now) => {
            return "no process of it was left (its process id now belongs to another process)".to_string();
        }
        _ => {}
    }
    let n = group_members(pgid).len();
    if n == 0 {
        return "no process of it was left".to_string();
    }
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {
            format!("its {n} remaining process{} were killed (its process group only: it had no cgroup)", plural(n))
        }
        Err(e) => format!("its process group {pgid} could not be killed: {e}"),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "es"
    }
}

/// Live (non-zombie) processes in group `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let f: Vec<&str> = rest.split_whitespace().take(3).collect();
            f.len() == 3 && f[0] != "Z" && f[2] == pgid.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_leftover_process_group_is_killed_and_a_reused_pid_is_not() {
        let mut child = std::process::Command::new("sleep").arg("60").process_group(0).spawn().unwrap();
        let pid = child.id() as i32;
        let w = Whereabouts::started(None, pid);
        assert!(w.leader_start.is_some() && w.boot_id.is_some());

        // The same pid with another start time is someone else's process: left alone.
        let other = Whereabouts { leader_start: w.leader_start.map(|t| t + 1), ..w.clone() };
        assert!(stop(&other).contains("another process"));
        assert_eq!(group_members(pid).len(), 1);
        // Another boot: nothing of it can be left.
        let rebooted = Whereabouts { boot_id: Some("x".into()), ..w.clone() };
        assert!(stop(&rebooted).contains("restarted"));
        assert_eq!(group_members(pid).len(), 1);

        let note = stop(&w);
        assert!(note.contains("its 1 remaining process were killed"), "{note}");
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        assert_eq!(stop(&w), "no process of it was left");
        assert_eq!(stop(&Whereabouts::default()), "it had not started a process");
    }
}
