//! A cgroup (v2) per task, so that timeout, terminate and agent recovery reach every process
//! a script started — `setsid` daemons and re-parented background children included — and
//! not only its process group.
//!
//! ```text
//! <cgroup2 mount><agent's own cgroup>/shoal-agent-<agent id>/     the agent's tasks
//!                                      └── <step>-<execute>-<host>/ one task's processes
//! ```
//! The child joins its cgroup between fork and exec (`privileges::join_cgroup`), so nothing
//! it starts can escape by forking early. A task's cgroup is removed when it is empty; a
//! script that exits normally may leave a service it started running, and its cgroup stays
//! until that service ends (a restarted agent removes the empty ones). The agent's own
//! directory exists only while it holds task cgroups.
//!
//! Where the agent cannot make cgroups (no cgroup2 hierarchy mounted, no permission), tasks
//! run in a process group only and each task's log says so.
#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_proto::agent::TaskKey;

/// Where this agent's tasks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Each task in a cgroup under this directory.
    Cgroups(PathBuf),
    /// Each task in a process group only; why cgroups are unavailable.
    ProcessGroup { why: String },
}

impl Placement {
    /// Finds the cgroup2 hierarchy from `/proc/self/mountinfo` and the agent's own cgroup
    /// from `/proc/self/cgroup`, and makes `shoal-agent-<name>` under it. Blocking.
    pub fn detect(name: &str) -> Placement {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let Some(mount) = v2_mount(&mountinfo) else {
            return Placement::ProcessGroup { why: "no cgroup2 hierarchy is mounted".into() };
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|c| own_v2_cgroup(&c));
        let Some(own) = own else {
            return Placement::ProcessGroup { why: "the agent's own cgroup2 path is unknown".into() };
        };
        let dir = mount.join(own.trim_start_matches('/')).join(format!("shoal-agent-{name}"));
        // Made once to learn whether the agent may; made again by the first task.
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&dir);
                Placement::Cgroups(dir)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Placement::Cgroups(dir),
            Err(e) => Placement::ProcessGroup { why: format!("cannot create cgroup {}: {e}", dir.display()) },
        }
    }

    /// The cgroup a task gets, if tasks get one.
    pub fn task_cgroup(&self, key: &TaskKey) -> Option<PathBuf> {
        match self {
            Placement::Cgroups(dir) => Some(dir.join(key.to_string())),
            Placement::ProcessGroup { .. } => None,
        }
    }

    /// Removes task cgroups left empty (their tasks and services have ended), and the
    /// agent's own directory when nothing is left in it (at start and at shutdown). Blocking.
    pub fn sweep(&self) {
        let Placement::Cgroups(dir) = self else { return };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    // Busy (a service still runs in it) is fine: it stays.
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// The mount point of the cgroup2 hierarchy in a `/proc/self/mountinfo` text. Fields: id,
/// parent, major:minor, root, mount point, options, optional fields, `-`, fs type, ….
fn v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount)))
    })
}

/// The agent's cgroup2 path from `/proc/self/cgroup` (the `0::<path>` line).
fn own_v2_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_string())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], digits) {
            out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One task's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCgroup {
    pub path: PathBuf,
}

impl TaskCgroup {
    /// Makes the cgroup, and the agent's directory above it (an existing one, from an earlier
    /// attempt, is reused). Blocking.
    pub fn create(path: PathBuf) -> io::Result<TaskCgroup> {
        let mut tries = 0;
        loop {
            if let Some(parent) = path.parent() {
                match std::fs::create_dir(parent) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TaskCgroup { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(TaskCgroup { path }),
                // Another task's end removed the agent's directory in between: again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// A handle on a cgroup made earlier (agent recovery).
    pub fn at(path: &Path) -> TaskCgroup {
        TaskCgroup { path: path.to_path_buf() }
    }

    /// `cgroup.procs` opened for writing: a child that writes "0" to it joins the cgroup.
    pub fn procs_for_join(&self) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new().write(true).open(self.path.join("cgroup.procs"))
    }

    /// Processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is in the cgroup (`cgroup.events`: `populated 1`).
    pub fn populated(&self) -> bool {
        match std::fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(t) => t.lines().any(|l| l.trim() == "populated 1"),
            Err(_) => !self.pids().is_empty(),
        }
    }

    /// Sends `signal` to every process in the cgroup; SIGKILL through `cgroup.kill`, which
    /// also reaches processes forked meanwhile (one by one on kernels before 5.14).
    pub fn signal(&self, signal: Signal) {
        if signal == Signal::SIGKILL && std::fs::write(self.path.join("cgroup.kill"), b"1").is_ok() {
            return;
        }
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGKILL to everything in the cgroup (again while it is not empty), then waits up to
    /// `within` for it to be empty. How many processes there were; whether it is empty now.
    /// Blocking.
    pub fn kill_all(&self, within: Duration) -> (usize, bool) {
        let found = self.pids().len();
        let end = Instant::now() + within;
        loop {
            self.signal(Signal::SIGKILL);
            if !self.populated() {
                return (found, true);
            }
            if Instant::now() >= end {
                return (found, false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the cgroup if it is empty (`false` if something still runs in it), and the
    /// agent's directory above it when no other task cgroup is left there.
    pub fn remove(&self) -> bool {
        let mut tries = 0;
        let removed = loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => break true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break true,
                // A process that just exited can hold the cgroup busy for a moment after it
                // was reaped; a process still running in it holds it for good.
                Err(_) if tries < 50 && !self.populated() => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => break false,
            }
        };
        if removed {
            if let Some(parent) = self.path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_mount_is_found_in_a_hybrid_layout() {
        let mi = "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n\
                  35 25 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                  36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n\
                  37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd\n";
        assert_eq!(v2_mount(mi), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(v2_mount("36 35 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(v2_mount("37 35 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), None);
        assert_eq!(v2_mount("36 35 0:31 / /mnt/my\\040cg rw - cgroup2 none rw\n"), Some(PathBuf::from("/mnt/my cg")));
    }

    #[test]
    fn the_own_cgroup_is_the_unified_line() {
        let c = "9:name=systemd:/\n4:memory:/x/y\n0::/system.slice/shoal-agent.service\n";
        assert_eq!(own_v2_cgroup(c).as_deref(), Some("/system.slice/shoal-agent.service"));
        assert_eq!(own_v2_cgroup("4:memory:/x\n"), None);
    }
}
