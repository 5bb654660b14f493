//! Callback sender: drains the outbox the engine fills when a job ends. As JOB does, a
//! callback is POSTed as JSON and, if the answer is not HTTP 200, once more with the same
//! body as `application/x-www-form-urlencoded`; then it is done either way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Engine;

pub async fn sender(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "callback client");
            return;
        }
    };
    loop {
        match engine.store.pending_callbacks(64).await {
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
