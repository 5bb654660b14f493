//! "Job N changed": the hub the console's live job page listens on
//! (`GET /api/shoal/v1/jobs/{id}/events`).
//!
//! Publishers never wait: the ingest writer, after each commit, names the steps whose host
//! tasks changed; the engine names the job whose status it changed (start, step states,
//! terminate, confirm, finish). A notice carries ids only; a listener re-reads the job from
//! the store, so a listener that falls behind (the channel is bounded and drops the oldest
//! notices) loses nothing but intermediate states: it treats a lag as "changed" and reads
//! the latest.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Notices kept for a slow listener before the oldest are dropped.
const CAPACITY: usize = 1024;

/// What changed in one commit or engine action.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    pub jobs: Vec<i64>,
    pub steps: Vec<i64>,
}

impl Changed {
    /// Whether the notice concerns job `job` (or one of its steps).
    pub fn touches(&self, job: i64, steps: &[i64]) -> bool {
        self.jobs.contains(&job) || self.steps.iter().any(|s| steps.contains(s))
    }
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Changed>>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub { tx: broadcast::channel(CAPACITY).0 }
    }
}

impl Hub {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Changed>> {
        self.tx.subscribe()
    }

    /// Tell listeners; never waits (no listener: nothing to do).
    pub fn publish(&self, changed: Changed) {
        if self.tx.receiver_count() > 0 && !(changed.jobs.is_empty() && changed.steps.is_empty()) {
            let _ = self.tx.send(Arc::new(changed));
        }
    }

    pub fn job(&self, id: i64) {
        self.publish(Changed { jobs: vec![id], steps: vec![] });
    }

    pub fn steps(&self, mut ids: Vec<i64>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        self.publish(Changed { jobs: vec![], steps: ids });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_listener_is_told_it_lagged_and_publishers_never_wait() {
        let hub = Hub::default();
        hub.job(1); // nobody listens: dropped at once
        let mut rx = hub.subscribe();
        for i in 0..(CAPACITY as i64 + 10) {
            hub.steps(vec![i, i]);
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(_))));
        let next = rx.recv().await.unwrap();
        assert_eq!(next.steps.len(), 1, "ids are deduplicated");
        assert!(Changed { jobs: vec![], steps: vec![7] }.touches(1, &[6, 7]));
        assert!(!Changed { jobs: vec![2], steps: vec![] }.touches(1, &[6, 7]));
    }
}
