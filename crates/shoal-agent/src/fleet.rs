//! A simulated fleet: many agents in one process, each the real agent session ([`crate::run`])
//! over its own WebSocket, with distinct host facts and its own state dir under one base
//! directory. Tasks are carried out by a shared [`Executor`] — usually an
//! [`crate::InstantExecutor`] answering at once with output of a chosen size — so one process
//! can stand in for thousands of hosts when measuring the server.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::agent::HostFacts;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{AgentConfig, Executor, OutboxMode};

/// What every simulated agent shares.
#[derive(Clone)]
pub struct FleetConfig {
    /// Server base URLs. Agent `i` lists them all, starting at `servers[i % len]`, so agents
    /// spread over several listeners or replicas and fail over to the others.
    pub servers: Vec<String>,
    /// Enrolment token. Never logged.
    pub token: String,
    /// Each agent's state dir is `base_dir/agent-<i>`.
    pub base_dir: PathBuf,
    pub bk_biz_id: i64,
    /// Agent `i` registers as IP `first_ip + i`.
    pub first_ip: Ipv4Addr,
    /// Carries out every agent's tasks.
    pub executor: Arc<dyn Executor>,
    /// Where unacknowledged results are kept; [`OutboxMode::Memory`] spares the disk.
    pub outbox: OutboxMode,
    pub reconnect_max: Duration,
    /// Agents started before the next wave, so thousands of handshakes do not all land in
    /// the server's accept queue at once.
    pub wave: usize,
    /// Pause between waves.
    pub wave_pause: Duration,
}

impl FleetConfig {
    /// Defaults: business 1, IPs from 10.0.0.1, in-memory outbox, waves of 500 every 20 ms.
    pub fn new(servers: Vec<String>, token: String, base_dir: PathBuf, executor: Arc<dyn Executor>) -> Self {
        FleetConfig {
            servers,
            token,
            base_dir,
            bk_biz_id: 1,
            first_ip: Ipv4Addr::new(10, 0, 0, 1),
            executor,
            outbox: OutboxMode::Memory,
            reconnect_max: Duration::from_secs(1),
            wave: 500,
            wave_pause: Duration::from_millis(20),
        }
    }

    /// The IP agent `i` registers as.
    pub fn ip_of(&self, i: usize) -> String {
        Ipv4Addr::from(u32::from(self.first_ip).wrapping_add(i as u32)).to_string()
    }

    /// The config of agent `i`.
    pub fn agent(&self, i: usize) -> AgentConfig {
        let ip = self.ip_of(i);
        let facts = HostFacts {
            bk_biz_id: self.bk_biz_id,
            bk_cloud_id: 0,
            ip: ip.clone(),
            hostname: format!("sim-{i}"),
            os: "linux".into(),
            ..HostFacts::default()
        };
        let n = self.servers.len().max(1);
        let servers = (0..self.servers.len()).map(|k| self.servers[(i + k) % n].clone()).collect();
        let mut cfg = AgentConfig::new(servers, self.token.clone(), self.base_dir.join(format!("agent-{i}")), facts);
        cfg.reconnect_max = self.reconnect_max;
        cfg.outbox = self.outbox;
        cfg.executor = Some(self.executor.clone());
        cfg
    }
}

/// Running simulated agents; stopped by [`Fleet::stop`] or when dropped.
pub struct Fleet {
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    /// How many agents were started.
    pub size: usize,
}

impl Fleet {
    /// Starts `count` agents (in waves, see [`FleetConfig::wave`]).
    pub async fn start(config: &FleetConfig, count: usize) -> Fleet {
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for i in 0..count {
            if i > 0 && config.wave > 0 && i % config.wave == 0 {
                tokio::time::sleep(config.wave_pause).await;
            }
            let mut rx = stop.subscribe();
            tasks.spawn(crate::run(config.agent(i), async move {
                let _ = rx.wait_for(|v| *v).await;
            }));
        }
        Fleet { stop, tasks, size: count }
    }

    /// Agents that ended on their own (a server refused them for good), with why.
    pub fn failures(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(done) = self.tasks.try_join_next() {
            match done {
                Ok(Ok(())) => out.push("agent stopped".to_string()),
                Ok(Err(e)) => out.push(e.to_string()),
                Err(e) => out.push(e.to_string()),
            }
        }
        out
    }

    /// Stops every agent and waits (at most `within`) for them to end.
    pub async fn stop(mut self, within: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(within, async { while self.tasks.join_next().await.is_some() {} }).await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstantExecutor;

    #[test]
    fn agents_get_distinct_ips_dirs_and_rotated_servers() {
        let exec = Arc::new(InstantExecutor::default());
        let c = FleetConfig::new(vec!["http://a:1".into(), "http://b:1".into()], "t".into(), "/tmp/f".into(), exec);
        let a0 = c.agent(0);
        let a1 = c.agent(1);
        assert_eq!(a0.facts.ip, "10.0.0.1");
        assert_eq!(c.ip_of(255), "10.0.1.0");
        assert_ne!(a0.state_dir, a1.state_dir);
        assert_eq!(a0.servers, vec!["http://a:1", "http://b:1"]);
        assert_eq!(a1.servers, vec!["http://b:1", "http://a:1"]);
        assert_eq!(a0.outbox, OutboxMode::Memory);
        assert!(a0.executor.is_some());
    }
}
