//! Signals to a whole task: its process group, and its cgroup when it has one (which also
//! holds the `setsid` daemons and re-parented children that left the group).
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::cgroup::TaskCgroup;

/// Everything of one task.
#[derive(Debug, Clone)]
pub struct Target {
    /// Process group of the script (its pid: it is the leader).
    pub pgid: i32,
    pub cgroup: Option<TaskCgroup>,
}

impl Target {
    /// Sends `signal` to every process of the task.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.pgid, signal);
        if let Some(cg) = &self.cgroup {
            cg.signal(signal);
        }
    }

    /// Whether any process of the task (zombies of the group included) is still there.
    pub fn alive(&self) -> bool {
        group_alive(self.pgid) || self.cgroup.as_ref().is_some_and(TaskCgroup::populated)
    }
}

/// Sends `signal` to every process in group `pgid`; a group already gone is not an error.
pub fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, %signal, error = %e, "could not signal the process group"),
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}
