//! `shoal agent`: the program on every host. It dials the server over a WebSocket, runs the
//! scripts it is sent as the requested OS user, and streams their output back in bounded,
//! numbered chunks, keeping on disk whatever the server has not acknowledged yet.
//!
//! # Layout
//! - [`session`]: the connection to the server — dial (ws / wss with rustls), `Hello` →
//!   `Welcome`, heartbeat and dead-link detection, reconnect with backoff over the server list,
//!   and the on-disk outbox of results not yet acknowledged (`session/outbox.rs`). The agent's
//!   state is owned by one task (`session/agent.rs`); every running script is its own task
//!   (`session/runner.rs`) talking to it over a bounded channel.
//! - [`exec`]: running one script — interpreter lookup, the account to run as (the only
//!   `unsafe` code lives in `exec/privileges.rs`), a new process group, one pipe for stdout and
//!   stderr, timeout / cancel → SIGTERM, grace, SIGKILL to the whole group, and the exit reason.
//! - [`logs`]: turning output into chunks (64 KiB or 100 ms) with sequence numbers, capped to a
//!   head and a tail with a marker for what was dropped in between.
//!
//! - [`fleet`]: many simulated agents in one process (real sessions, a pluggable
//!   [`Executor`]) for measuring the server.
//!
//! Entry points: [`run`] with an [`AgentConfig`], and [`primary_ipv4`] for callers building
//! [`HostFacts`].
//!
//! `unsafe` is denied workspace-wide and forbidden in every module of this crate except
//! `exec::privileges`, which must call `setgroups`/`setgid`/`setuid` between fork and exec.
//! (A crate-level `forbid` could not be relaxed there, hence each file says `#![forbid]`.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use shoal_proto::agent::HostFacts;

pub mod exec;
pub mod files;
pub mod fleet;
pub mod logs;
pub mod session;

pub use session::executor::{Executor, InstantExecutor, ProcessExecutor, VerifyingExecutor};
pub use session::run;

/// Where the agent keeps results the server has not acknowledged yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutboxMode {
    /// In `state_dir`: results survive an agent restart (the normal agent).
    #[default]
    Disk,
    /// In memory: results survive reconnects but not a restart. For simulated fleets, where
    /// thousands of agents share one process and one disk.
    Memory,
}

/// How the agent finds, authenticates to and talks with the server, and where it keeps state.
#[derive(Clone)]
pub struct AgentConfig {
    /// Base URLs like `http://127.0.0.1:8080` or `https://shoal.example`; tried in turn.
    pub servers: Vec<String>,
    /// Enrolment token, sent in `Hello.token` until the first welcome, then forgotten (an
    /// enrolled agent's credential opens its hellos; empty is fine then). Never logged.
    pub token: String,
    /// Agent identity, task records, outbox and script files; created if missing.
    pub state_dir: PathBuf,
    /// What this host registers as.
    pub facts: HostFacts,
    /// PEM CA bundle for `https` servers; without it the webpki roots are used.
    pub ca_file: Option<PathBuf>,
    /// Accept plain `http` (`ws://`) servers. When false an `http` URL is an error at start.
    pub insecure: bool,
    /// Time between SIGTERM and SIGKILL when a task's process group is killed.
    pub kill_grace: Duration,
    /// Cap of the exponential reconnect backoff (which starts at 200 ms, with jitter).
    pub reconnect_max: Duration,
    /// Where unacknowledged results are kept (default: on disk).
    pub outbox: OutboxMode,
    /// Carries out tasks; `None` runs real processes ([`ProcessExecutor`]).
    pub executor: Option<Arc<dyn Executor>>,
    /// Where this host serves the files it holds to other targets of the same file
    /// (peer-to-peer fan-out, TLS; only to holders of the file's swarm secret), e.g.
    /// `0.0.0.0:0` (any free port, the default); `None`: never (files come from the server).
    pub peer_listen: Option<String>,
}

impl AgentConfig {
    /// A config with defaults: plain http accepted, 3 s kill grace, 10 s reconnect cap,
    /// webpki roots.
    pub fn new(servers: Vec<String>, token: String, state_dir: PathBuf, facts: HostFacts) -> Self {
        AgentConfig {
            servers,
            token,
            state_dir,
            facts,
            ca_file: None,
            insecure: true,
            kill_grace: Duration::from_secs(3),
            reconnect_max: Duration::from_secs(10),
            outbox: OutboxMode::Disk,
            executor: None,
            peer_listen: Some("0.0.0.0:0".into()),
        }
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("servers", &self.servers)
            .field("token", &"<redacted>")
            .field("state_dir", &self.state_dir)
            .field("facts", &self.facts)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .field("kill_grace", &self.kill_grace)
            .field("reconnect_max", &self.reconnect_max)
            .field("outbox", &self.outbox)
            .field("executor", &self.executor.as_ref().map_or("process", |_| "custom"))
            .finish()
    }
}

/// The host's primary IPv4 address: the source address the kernel would pick for an outside
/// destination (a UDP "connect" sends nothing). `None` without a usable route.
pub fn primary_ipv4() -> Option<String> {
    let sock = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    sock.connect(("10.255.255.255", 1)).ok()?;
    match sock.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_loopback() => Some(ip.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_token() {
        let c = AgentConfig::new(vec![], "s3cret".into(), "/tmp/x".into(), HostFacts::default());
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(c.insecure);
        assert_eq!(c.kill_grace, Duration::from_secs(3));
    }

    #[test]
    fn primary_ipv4_is_an_address_or_none() {
        if let Some(ip) = primary_ipv4() {
            assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        }
    }
}
