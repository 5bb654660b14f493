//! Callback sender: drains the outbox the engine fills when a job ends. As JOB does, a
//! callback is POSTed as JSON and, if the answer is not HTTP 200, once more with the same
//! body as `application/x-www-form-urlencoded`; then it is done either way. Each callback is
//! claimed by one replica before it is sent, so several replicas post it once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Engine;

/// How long a claimed callback is left to its claimer (a send takes at most two 10 s tries).
const CLAIM_LEASE: Duration = Duration::from_secs(60);

pub async fn sender(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "callback client");
            return;
        }
    };
    // Claims are per replica (or per server on SQLite); a claim older than the lease is
    // taken over, so a callback whose sender died is still posted.
    let claimer = engine.gateway.replica_id().map_or_else(|| "local".to_string(), str::to_string);
    loop {
        let now = shoal_core::time::now_ms();
        match engine.store.claim_callbacks(&claimer, now, now - CLAIM_LEASE.as_millis() as i64, 64).await {
            Ok(rows) => {
                for row in rows {
                    let first = client.post(&row.url).header("content-type", "application/json").body(row.body.clone()).send().await;
                    let ok = matches!(&first, Ok(r) if r.status().as_u16() == 200);
                    let attempts = if ok {
                        1
                    } else {
                        let _ = client
                            .post(&row.url)
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(row.body.clone())
                            .send()
                            .await;
                        2
                    };
                    tracing::info!(job_instance_id = row.job_instance_id, attempts, ok, "callback sent");
                    if let Err(e) = engine.store.finish_callback(row.id, attempts).await {
                        tracing::error!(error = %e, "marking callback done");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading callbacks"),
        }
        tokio::select! {
            _ = engine.callbacks.notified() => {}
            // Also look now and then, for callbacks queued by another replica or before a restart.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = stop.changed() => return,
        }
    }
}
