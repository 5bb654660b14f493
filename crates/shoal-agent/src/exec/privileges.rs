//! Switching a child to the execution account.
//!
//! `unsafe` is allowed here and nowhere else in the crate: `pre_exec` runs a closure in the
//! forked child before `exec`, which Rust cannot check. The closure only makes three system
//! calls on values computed before the fork (no allocation, no locks), which is what is
//! allowed between `fork` and `exec` in a multi-threaded program. std's `Command::uid/gid`
//! would do the switch safely but clears the supplementary groups, and scripts need the
//! account's groups.
#![allow(unsafe_code)]

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};

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
