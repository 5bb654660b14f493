//! Admitting an agent's hello: the one door every agent session passes through.
//!
//! - A hello over the limits below is refused before anything is looked up.
//! - An agent id with a credential on record must present it; the token is neither needed
//!   nor looked at. Its hello must then agree with the facts its host was bound to at
//!   enrolment (address, business, set, module): only an admin changes those
//!   (`shoal host move`). A disagreeing hello is refused, with the reason, and audited. What
//!   an agent may still report (labels, hostname, os, version) is refreshed.
//! - A new agent id enrols with the server's own token (admitted at once, any business) or an
//!   issued one (bound to a business or not, maybe single-use or expiring, maybe holding the
//!   agent pending until an admin accepts it). Token use, credential, host and audit event are
//!   one transaction; the address is unique by a database constraint, so of two racing
//!   enrolments of one address exactly one wins.
//! - A pending agent is told so and comes back later; it gets no session, hence no tasks.

use sha2::{Digest, Sha256};
use shoal_proto::agent::{Hello, HostFacts, Reject};
use shoal_store::hosts::{BoundHost, EnrolRefusal, EnrolToken, Enrolment, HostState};
use shoal_store::{AuditEvent, StoreError};

use crate::Shared;

/// Most labels an agent may report.
pub const MAX_LABELS: usize = 64;
/// Longest label key (a DNS label, as Kubernetes' name part).
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 255;
/// Longest hostname and os string.
pub const MAX_NAME: usize = 255;
pub const MAX_VERSION: usize = 64;
pub const MAX_AGENT_ID: usize = 128;
/// Most tasks a hello may list as known to the agent.
pub const MAX_KNOWN_TASKS: usize = 10_000;

fn refuse(message: impl Into<String>) -> Reject {
    Reject { message: message.into(), retry: false }
}

fn server_error(e: StoreError) -> Reject {
    tracing::error!(error = %e, "admitting an agent");
    Reject { message: "server error".into(), retry: true }
}

/// Compare without an early exit on the first differing byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The stored form of an issued enrolment token.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token)
}

/// A new enrolment token: `shoal-at-` and 64 hex digits (244 random bits).
pub fn new_token() -> String {
    format!("shoal-at-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Limits on what an agent reports, checked before anything is stored or looked up.
pub fn check_limits(hello: &Hello) -> Result<(), String> {
    let f = &hello.facts;
    if hello.agent_id.is_empty() || hello.agent_id.len() > MAX_AGENT_ID {
        return Err(format!("agent id must be 1 to {MAX_AGENT_ID} bytes"));
    }
    if f.ip.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(format!("ip {:?} is not an IPv4 address", truncated(&f.ip)));
    }
    if f.labels.len() > MAX_LABELS {
        return Err(format!("{} labels; at most {MAX_LABELS} are allowed", f.labels.len()));
    }
    for (k, v) in &f.labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY || k.chars().any(char::is_control) {
            return Err(format!("label key {:?} must be 1 to {MAX_LABEL_KEY} bytes without control characters", truncated(k)));
        }
        if v.len() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
            return Err(format!("label {k:?}: value must be at most {MAX_LABEL_VALUE} bytes without control characters"));
        }
    }
    for (what, s, max) in
        [("hostname", &f.hostname, MAX_NAME), ("os", &f.os, MAX_NAME), ("agent version", &hello.agent_version, MAX_VERSION)]
    {
        if s.len() > max || s.chars().any(char::is_control) {
            return Err(format!("{what} must be at most {max} bytes without control characters"));
        }
    }
    if hello.known_tasks.len() > MAX_KNOWN_TASKS {
        return Err(format!("{} known tasks; at most {MAX_KNOWN_TASKS}", hello.known_tasks.len()));
    }
    Ok(())
}

fn truncated(s: &str) -> String {
    s.chars().take(40).collect()
}

/// How the hello's claim differs from the bound facts, if it does.
fn disagreement(bound: &BoundHost, f: &HostFacts) -> Option<String> {
    let h = &bound.host;
    let enrolled = format!("{}:{}", h.bk_cloud_id, h.ip);
    let opt = |v: Option<i64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    let claim = if (f.bk_cloud_id, f.ip.as_str()) != (h.bk_cloud_id, h.ip.as_str()) {
        format!("ip {}:{}", f.bk_cloud_id, f.ip)
    } else if f.bk_biz_id != h.bk_biz_id {
        format!("business {} (enrolled in business {})", f.bk_biz_id, h.bk_biz_id)
    } else if f.set_id != h.set_id {
        format!("set {} (enrolled in set {})", opt(f.set_id), opt(h.set_id))
    } else if f.module_id != h.module_id {
        format!("module {} (enrolled in module {})", opt(f.module_id), opt(h.module_id))
    } else {
        return None;
    };
    Some(format!(
        "hello claims {claim} but this agent is enrolled as host {} at {enrolled}; an admin must run `shoal host move --host-id {}`",
        h.bk_host_id, h.bk_host_id
    ))
}

fn agent_event(hello: &Hello, biz: i64, action: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        time: shoal_core::time::now_ms(),
        app_code: String::new(),
        username: format!("agent:{}", hello.agent_id),
        scope_type: "biz".into(),
        scope_id: biz.to_string(),
        action: action.into(),
        resource_id: hello.agent_id.clone(),
        detail: detail.to_string(),
    }
}

fn pending_reject(host_id: i64) -> Reject {
    Reject {
        message: format!("this agent is pending acceptance as host {host_id}: an admin must run `shoal agent-accept --host-id {host_id}`"),
        retry: true,
    }
}

/// Admits `hello`: the host id of a session to open, or the refusal to send.
pub async fn admit(shared: &Shared, hello: &Hello) -> Result<i64, Reject> {
    check_limits(hello).map_err(|why| {
        tracing::warn!(agent_id = %truncated(&hello.agent_id), %why, "agent hello over the limits; refused");
        refuse(format!("hello refused: {why}"))
    })?;
    let store = &shared.store;
    let (agent_id, ip) = (&hello.agent_id, &hello.facts.ip);
    let now = shoal_core::time::now_ms();
    match store.agent_credential(agent_id).await.map_err(server_error)? {
        Some((_, _, true)) => {
            tracing::warn!(%agent_id, %ip, "revoked agent refused");
            Err(refuse("agent revoked"))
        }
        Some((salt, hash, false)) => {
            if !hello.credential.as_deref().is_some_and(|c| same(&hash, &crate::auth::hash_secret(&salt, c))) {
                tracing::warn!(%agent_id, %ip, "agent id presented without its credential; refused");
                return Err(refuse("invalid agent credential"));
            }
            let Some(bound) = store.bound_host(agent_id).await.map_err(server_error)? else {
                tracing::warn!(%agent_id, %ip, "enrolled agent without a current host; refused");
                return Err(refuse("this agent has no current host (it was superseded); revoke it and enrol the host afresh"));
            };
            let host_id = bound.host.bk_host_id;
            if let Some(why) = disagreement(&bound, &hello.facts) {
                tracing::warn!(%agent_id, %ip, host_id, %why, "agent hello disagrees with its enrolled host; refused");
                let claimed = serde_json::json!({"bk_cloud_id": hello.facts.bk_cloud_id, "ip": ip, "bk_biz_id": hello.facts.bk_biz_id,
                    "set_id": hello.facts.set_id, "module_id": hello.facts.module_id});
                let detail = serde_json::json!({"bk_host_id": host_id, "claimed": claimed, "reason": why});
                store.audit(&agent_event(hello, bound.host.bk_biz_id, "agent_hello_refused", detail)).await.map_err(server_error)?;
                return Err(refuse(why));
            }
            if bound.state == HostState::Pending {
                return Err(pending_reject(host_id));
            }
            store.refresh_host(host_id, &hello.facts, &hello.agent_version, now).await.map_err(server_error)?;
            Ok(host_id)
        }
        None => enrol(shared, hello, now).await,
    }
}

/// A new agent id: the token, then one transaction in the store.
async fn enrol(shared: &Shared, hello: &Hello, now: i64) -> Result<i64, Reject> {
    let (agent_id, ip) = (&hello.agent_id, &hello.facts.ip);
    if hello.token.is_empty() {
        tracing::warn!(%agent_id, %ip, "new agent without an enrolment token");
        return Err(refuse("enrolment token missing: start the agent with --token-file or SHOAL_AGENT_TOKEN"));
    }
    if hello.token.len() > 256 {
        return Err(refuse("invalid enrolment token"));
    }
    let Some(credential) = hello.credential.as_deref().filter(|c| (32..=256).contains(&c.len())) else {
        tracing::warn!(%agent_id, %ip, "agent without a credential; refused");
        return Err(refuse("agent credential missing: upgrade the agent"));
    };
    let hash = token_hash(&hello.token);
    let token = if same(&hello.token, &shared.agent_token) { EnrolToken::Server } else { EnrolToken::Issued { token_hash: &hash } };
    let salt = uuid::Uuid::new_v4().simple().to_string();
    let secret_hash = crate::auth::hash_secret(&salt, credential);
    let f = &hello.facts;
    let detail =
        serde_json::json!({"ip": ip, "bk_cloud_id": f.bk_cloud_id, "set_id": f.set_id, "module_id": f.module_id, "hostname": f.hostname});
    let e = Enrolment {
        agent_id,
        salt: &salt,
        secret_hash: &secret_hash,
        facts: f,
        version: &hello.agent_version,
        token,
        now,
        event: agent_event(hello, f.bk_biz_id, "enroll_agent", detail),
    };
    match shared.store.enrol_agent(&e).await.map_err(server_error)? {
        Ok(done) if done.pending => {
            tracing::info!(%agent_id, %ip, host_id = done.host_id, token_id = done.token_id, "agent enrolled; pending acceptance");
            Err(pending_reject(done.host_id))
        }
        Ok(done) => {
            tracing::info!(%agent_id, %ip, host_id = done.host_id, token_id = done.token_id, "agent enrolled");
            shared.store.set_host_alive(done.host_id, true, now).await.map_err(server_error)?;
            Ok(done.host_id)
        }
        Err(EnrolRefusal::AgentIdTaken) => Err(Reject { message: EnrolRefusal::AgentIdTaken.to_string(), retry: true }),
        Err(why) => {
            tracing::warn!(%agent_id, %ip, biz = f.bk_biz_id, %why, "enrolment refused");
            // Refusals to a holder of a valid token are audited; a wrong token is only logged
            // (anyone can send one, and the trail is not theirs to fill).
            if matches!(why, EnrolRefusal::AddressTaken | EnrolRefusal::TokenBusiness { .. }) {
                let detail = serde_json::json!({"ip": ip, "bk_cloud_id": f.bk_cloud_id, "reason": why.to_string()});
                shared.store.audit(&agent_event(hello, f.bk_biz_id, "enroll_agent_refused", detail)).await.map_err(server_error)?;
            }
            Err(refuse(why.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            protocol: shoal_proto::agent::PROTOCOL_VERSION,
            token: String::new(),
            agent_id: "a".into(),
            agent_version: "1".into(),
            facts: HostFacts { ip: "10.0.0.1".into(), ..Default::default() },
            known_tasks: vec![],
            credential: None,
        }
    }

    #[test]
    fn limits_on_what_an_agent_reports() {
        assert!(check_limits(&hello()).is_ok());
        let mut h = hello();
        h.facts.labels = (0..=MAX_LABELS).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_limits(&h).unwrap_err().contains("65 labels"));
        let mut h = hello();
        h.facts.labels.insert("k".repeat(64), "v".into());
        assert!(check_limits(&h).unwrap_err().contains("label key"));
        let mut h = hello();
        h.facts.labels.insert("k".into(), "v".repeat(256));
        assert!(check_limits(&h).unwrap_err().contains("value"));
        let mut h = hello();
        h.facts.hostname = "h".repeat(256);
        assert!(check_limits(&h).unwrap_err().contains("hostname"));
        let mut h = hello();
        h.facts.ip = "10.0.0.1; rm".into();
        assert!(check_limits(&h).unwrap_err().contains("IPv4"));
    }

    #[test]
    fn a_disagreement_names_the_claim_and_the_remedy() {
        let bound = BoundHost {
            host: shoal_store::HostRow {
                bk_host_id: 4,
                agent_id: "a".into(),
                bk_biz_id: 2,
                bk_cloud_id: 0,
                ip: "10.0.0.5".into(),
                set_id: None,
                module_id: Some(3),
                labels: Default::default(),
                hostname: String::new(),
                os: String::new(),
                agent_version: String::new(),
                alive: true,
                last_seen: 0,
            },
            state: HostState::Active,
            enrolled_by: None,
        };
        let mut f = HostFacts { bk_biz_id: 2, ip: "10.0.0.5".into(), module_id: Some(3), ..Default::default() };
        assert_eq!(disagreement(&bound, &f), None);
        f.ip = "10.0.0.9".into();
        assert_eq!(
            disagreement(&bound, &f).unwrap(),
            "hello claims ip 0:10.0.0.9 but this agent is enrolled as host 4 at 0:10.0.0.5; an admin must run `shoal host move --host-id 4`"
        );
        f.ip = "10.0.0.5".into();
        f.bk_biz_id = 3;
        assert!(disagreement(&bound, &f).unwrap().contains("business 3 (enrolled in business 2)"));
        f.bk_biz_id = 2;
        f.module_id = Some(9);
        assert!(disagreement(&bound, &f).unwrap().contains("module 9"));
    }
}
