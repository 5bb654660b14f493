//! The OS user a task runs as.
//!
//! A root agent can run scripts as any existing user (with that user's groups); any other agent
//! only as itself. Scripts never silently run as someone else.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{geteuid, getgrouplist, Gid, Uid, User};

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups, computed before fork (empty when not switching).
    pub groups: Vec<Gid>,
    /// `HOME` for the script.
    pub home: PathBuf,
    /// Working directory: the home if it exists, else `/tmp`.
    pub workdir: PathBuf,
    /// Whether the child must switch user (the agent runs as root).
    pub switch: bool,
    /// The account's login shell (`SHELL` for the script); `/bin/sh` when none is set.
    pub shell: PathBuf,
}

/// Looks `name` up. `Err` is the `[shoal]` log line for the task. Blocking (NSS).
pub fn resolve(name: &str) -> Result<Account, String> {
    let me = geteuid();
    if me.is_root() {
        let user = match User::from_name(name) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("[shoal] user {name:?} does not exist on this host")),
            Err(e) => return Err(format!("[shoal] could not look up user {name:?}: {e}")),
        };
        let cname = CString::new(name).map_err(|_| format!("[shoal] user {name:?} does not exist on this host"))?;
        let groups = getgrouplist(&cname, user.gid).map_err(|e| format!("[shoal] could not list the groups of user {name:?}: {e}"))?;
        Ok(account(user, groups, true))
    } else {
        let current = match User::from_uid(me) {
            Ok(Some(u)) => u,
            _ => return Err(format!("[shoal] the agent cannot tell which user it runs as (uid {me})")),
        };
        if current.name != name {
            return Err(format!(
                "[shoal] the agent runs as {:?} and cannot switch to user {name:?}; run the agent as root to use other accounts",
                current.name
            ));
        }
        Ok(account(current, Vec::new(), false))
    }
}

fn account(user: User, groups: Vec<Gid>, switch: bool) -> Account {
    let workdir = if user.dir.is_dir() { user.dir.clone() } else { Path::new("/tmp").to_path_buf() };
    let shell = if user.shell.as_os_str().is_empty() { PathBuf::from("/bin/sh") } else { user.shell };
    Account { name: user.name, uid: user.uid, gid: user.gid, groups, home: user.dir, workdir, switch, shell }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_is_refused_with_a_readable_line() {
        let err = resolve("no-such-user-shoal-test").unwrap_err();
        if geteuid().is_root() {
            assert_eq!(err, "[shoal] user \"no-such-user-shoal-test\" does not exist on this host");
        } else {
            assert!(err.contains("cannot switch"), "{err}");
        }
    }

    #[test]
    fn the_current_user_resolves() {
        let me = User::from_uid(geteuid()).unwrap().unwrap();
        let a = resolve(&me.name).unwrap();
        assert_eq!(a.uid, me.uid);
        assert!(a.workdir.is_dir());
    }
}
