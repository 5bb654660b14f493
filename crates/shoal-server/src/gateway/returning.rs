//! Agents expected back after a start: the hosts whose agent still had a session when the
//! server last stopped or died (their `alive` flag is still set; see the end of a session in
//! [`super::ws`]). For the reconnect grace period after the start, a task for such a host is
//! not failed at dispatch (310): it is left running, the agent gets it when it reconnects
//! ([`crate::engine::Engine::resume_host`]), and the sweep at the end of the grace period
//! fails it if the agent never came back. A restart waits the same on both stores, without
//! leaning on a dead replica's sessions looking alive for a few seconds on PostgreSQL.

use std::collections::HashSet;

use tokio::time::Instant;

use super::Gateway;

/// The hosts awaited, until when.
pub(super) struct Returning {
    until: Instant,
    hosts: HashSet<i64>,
}

impl Gateway {
    /// At start, before agents can connect: await every host whose agent was connected.
    pub async fn expect_returning(&self) {
        let hosts = match self.store.list_hosts(None).await {
            Ok(hosts) => hosts,
            Err(e) => {
                tracing::error!(error = %e, "reading the hosts to await after the start");
                return;
            }
        };
        let hosts: HashSet<i64> = hosts.iter().filter(|h| h.alive).map(|h| h.bk_host_id).collect();
        if !hosts.is_empty() {
            tracing::info!(
                hosts = hosts.len(),
                grace_secs = self.config.agent_lost_grace_secs,
                "awaiting agents connected before the start"
            );
        }
        *self.returning.lock().expect("returning lock") = Some(Returning { until: Instant::now() + self.config.agent_lost_grace(), hosts });
    }

    /// Hosts whose agent may still come back after the start (empty once the grace is over).
    pub fn returning_set(&self) -> HashSet<i64> {
        let mut returning = self.returning.lock().expect("returning lock");
        match returning.as_ref() {
            Some(r) if Instant::now() < r.until => r.hosts.clone(),
            _ => {
                *returning = None;
                HashSet::new()
            }
        }
    }
}
