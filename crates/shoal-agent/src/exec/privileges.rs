//! What a child does between fork and exec: join its task's cgroup, then switch to the
//! execution account.
//!
//! `unsafe` is allowed here and nowhere else in the crate: `pre_exec` runs a closure in the
//! forked child before `exec`, which Rust cannot check. The closures only make system calls
//! on values computed before the fork (no allocation, no locks), which is what is allowed
//! between `fork` and `exec` in a multi-threaded program. std's `Command::uid/gid`
//! would do the switch safely but clears the supplementary groups, and scripts need the
//! account's groups.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use nix::unistd::{setgid, setgroups, setuid, write, Gid, Uid};

/// Makes `cmd`'s child move itself into the cgroup whose `cgroup.procs` is `procs` (opened
/// by the parent) before anything else, so nothing it starts is ever outside it. Register it
/// before [`run_as`]: moving needs the agent's privileges.
pub(super) fn join_cgroup(cmd: &mut tokio::process::Command, procs: OwnedFd) {
    // SAFETY: one write(2) of a static buffer to a descriptor opened before the fork; the
    // error conversion does not allocate. Writing "0" moves the writing process.
    unsafe {
        cmd.pre_exec(move || {
            write(&procs, b"0")?;
            Ok(())
        });
    }
}

/// Makes `cmd`'s child drop to `uid`/`gid` with the supplementary `groups`, in the only safe
/// order: groups and gid while still privileged, uid last.
pub(super) fn run_as(cmd: &mut tokio::process::Command, uid: Uid, gid: Gid, groups: Vec<Gid>) {
    // SAFETY: the closure is async-signal-safe: setgroups, setgid and setuid are plain system
    // calls on data captured before the fork, and error conversion does not allocate
    // (`io::Error::from(Errno)` is a raw OS error).
    unsafe {
        cmd.pre_exec(move || {
            setgroups(&groups)?;
            setgid(gid)?;
            setuid(uid)?;
            Ok(())
        });
    }
}
