//! Callback sender: drains the outbox the engine fills when a job ends. As JOB does, a
//! callback is POSTed as JSON and, if the answer is not HTTP 200, once more with the same
//! body as `application/x-www-form-urlencoded`; then it is done either way. Each callback is
//! claimed by one replica before it is sent, so several replicas post it once.
//!
//! A callback URL is a request the server makes on a caller's behalf, so it is fenced
//! ([`CallbackPolicy`]): only http/https, and when `callback_allowed_base_urls` is set only
//! under one of them (like JOB's `allowedBaseUrls`); loopback, link-local (cloud metadata),
//! private, shared and multicast addresses are refused unless an allowed base URL names that
//! host explicitly. The host is resolved at send time, every address it resolves to is
//! checked, and the request goes to the checked address (no second lookup to rebind).
//! Redirects are never followed. Callbacks are sent concurrently, each with a time limit,
//! so a slow endpoint delays nobody else's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shoal_core::JobError;
use tokio::sync::{watch, Semaphore};
use url::Url;

use super::Engine;

/// How long a claimed callback is left to its claimer (a send takes at most two 10 s tries).
const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// Time limit of one POST (connect, send, answer).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Callbacks in flight at once.
const CONCURRENT_SENDS: usize = 32;

/// Where callbacks may go (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct CallbackPolicy {
    allowed: Vec<Url>,
}

fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..=127).contains(&o[1])) // shared address space (CGNAT)
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
        }
    }
}

fn invalid(u: &str, why: &str) -> JobError {
    JobError::bad_request(format!("callback_url is invalid: {u} ({why})"))
}

impl CallbackPolicy {
    /// Parse the allowed base URLs; a bad one is a configuration error.
    pub fn new(allowed: &[String]) -> anyhow::Result<CallbackPolicy> {
        let allowed = allowed
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let u = Url::parse(s.trim()).map_err(|e| anyhow::anyhow!("callback_allowed_base_urls: {s:?}: {e}"))?;
                anyhow::ensure!(
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some(),
                    "callback_allowed_base_urls: {s:?} is not an http(s) URL"
                );
                Ok(u)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(CallbackPolicy { allowed })
    }

    /// The allowed base URL `u` falls under: same scheme and host, same port when the base
    /// names one, and a path under the base's path.
    fn base_of(&self, u: &Url) -> Option<&Url> {
        self.allowed.iter().find(|b| {
            b.scheme() == u.scheme()
                && b.host_str().map(str::to_ascii_lowercase) == u.host_str().map(str::to_ascii_lowercase)
                && (b.port().is_none() || b.port_or_known_default() == u.port_or_known_default())
                && (u.path().starts_with(b.path()) || b.path() == "/")
        })
    }

    /// Check a URL as submitted: its form, the allow-list, and a literal address's range.
    pub fn check(&self, raw: &str) -> Result<Url, JobError> {
        shoal_core::validate::check_callback_url(raw)?;
        let u = Url::parse(raw).map_err(|_| invalid(raw, "not a URL"))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || !u.username().is_empty() || u.password().is_some() {
            return Err(invalid(raw, "http or https with a host and no user info"));
        }
        let explicitly_allowed = self.base_of(&u).is_some();
        if !self.allowed.is_empty() && !explicitly_allowed {
            return Err(invalid(raw, "not under an allowed base URL"));
        }
        if !explicitly_allowed {
            let literal = match u.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            };
            if literal.is_some_and(forbidden_ip)
                || u.host_str().is_some_and(|h| h.eq_ignore_ascii_case("localhost") || h.ends_with(".localhost"))
            {
                return Err(invalid(raw, "loopback, link-local and private addresses are not allowed"));
            }
        }
        Ok(u)
    }

    /// Resolve the URL's host and pick an address the policy allows; an explicitly allowed
    /// base URL may resolve anywhere.
    pub async fn resolve(&self, u: &Url) -> Result<SocketAddr, String> {
        let host = u.host_str().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = u.port_or_known_default().ok_or("no port")?;
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("resolving {host}: {e}"))?.collect();
        let explicitly_allowed = self.base_of(u).is_some();
        if !explicitly_allowed {
            if let Some(bad) = addrs.iter().find(|a| forbidden_ip(a.ip())) {
                return Err(format!("{host} resolves to {} (loopback, link-local or private)", bad.ip()));
            }
        }
        addrs.first().copied().ok_or_else(|| format!("{host} has no address"))
    }
}

/// POST `body` to `url` as JSON, then once as a form if the answer was not 200. Answers the
/// number of attempts and whether one got 200.
async fn post(policy: &CallbackPolicy, raw_url: &str, body: &str) -> (i64, bool) {
    let url = match policy.check(raw_url) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(url = %raw_url, error = %e.message(shoal_proto::code::Lang::En), "callback refused");
            return (0, false);
        }
    };
    let addr = match policy.resolve(&url).await {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(url = %raw_url, %why, "callback refused");
            return (0, false);
        }
    };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SEND_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .resolve(&host, addr)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "callback client");
            return (0, false);
        }
    };
    let first = client.post(url.clone()).header("content-type", "application/json").body(body.to_string()).send().await;
    if matches!(&first, Ok(r) if r.status().as_u16() == 200) {
        return (1, true);
    }
    let second = client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body.to_string()).send().await;
    (2, matches!(&second, Ok(r) if r.status().as_u16() == 200))
}

pub async fn sender(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let policy = engine.callback_policy.clone();
    let slots = Arc::new(Semaphore::new(CONCURRENT_SENDS));
    // Claims are per replica (or per server on SQLite); a claim older than the lease is
    // taken over, so a callback whose sender died is still posted.
    let claimer = engine.gateway.replica_id().map_or_else(|| "local".to_string(), str::to_string);
    loop {
        let now = shoal_core::time::now_ms();
        let free = slots.available_permits() as i64;
        if free > 0 {
            match engine.store.claim_callbacks(&claimer, now, now - CLAIM_LEASE.as_millis() as i64, free).await {
                Ok(rows) => {
                    for row in rows {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let (engine, policy) = (engine.clone(), policy.clone());
                        tokio::spawn(async move {
                            let (attempts, ok) = post(&policy, &row.url, &row.body).await;
                            tracing::info!(job_instance_id = row.job_instance_id, attempts, ok, "callback sent");
                            if let Err(e) = engine.store.finish_callback(row.id, attempts.max(1)).await {
                                tracing::error!(error = %e, "marking callback done");
                                engine.gateway.metrics.store_error("callback");
                            }
                            drop(permit);
                            // A slot is free: look for more at once.
                            engine.callbacks.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading callbacks");
                    engine.gateway.metrics.store_error("callback");
                }
            }
        }
        tokio::select! {
            _ = engine.callbacks.notified() => {}
            // Also look now and then, for callbacks queued by another replica or before a restart.
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_refused_unless_allowed_by_name() {
        let open = CallbackPolicy::default();
        for bad in [
            "http://127.0.0.1:8080/cb",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/x",
            "http://192.168.0.1/",
            "http://172.16.5.5/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://localhost:9000/",
            "http://100.100.100.200/",
            "ftp://example.com/",
            "http://user:pw@example.com/",
        ] {
            assert!(open.check(bad).is_err(), "{bad} accepted");
        }
        assert!(open.check("https://hooks.example.com/job").is_ok());

        let fenced = CallbackPolicy::new(&["http://127.0.0.1".into(), "https://hooks.example.com/bk/".into()]).unwrap();
        assert!(fenced.check("http://127.0.0.1:4567/cb").is_ok(), "an allowed base names the host");
        assert!(fenced.check("https://hooks.example.com/bk/job?x=1").is_ok());
        assert!(fenced.check("https://hooks.example.com/other").is_err(), "outside the base path");
        assert!(fenced.check("https://example.org/").is_err(), "not under a base");
        assert!(fenced.check("http://127.0.0.1.evil.example/").is_err(), "a prefix of the host is not the host");
        assert!(fenced.check("http://169.254.169.254/").is_err());
        assert!(CallbackPolicy::new(&["not a url".into()]).is_err());
    }
}
