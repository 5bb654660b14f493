//! `shoal agent`.

use std::collections::BTreeMap;

use anyhow::Context;
use shoal_agent::AgentConfig;
use shoal_proto::agent::HostFacts;

use crate::cli::AgentArgs;

pub fn parse_labels(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').with_context(|| format!("label {l:?} is not k=v"))?;
            anyhow::ensure!(!k.trim().is_empty(), "label {l:?} has an empty key");
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

pub async fn run(a: AgentArgs) -> anyhow::Result<u8> {
    let ip = match a.ip {
        Some(ip) => ip,
        None => shoal_agent::primary_ipv4().context("cannot tell this host's IPv4; pass --ip")?,
    };
    anyhow::ensure!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "--ip {ip:?} is not an IPv4 address");
    for s in &a.server {
        anyhow::ensure!(s.starts_with("http://") || s.starts_with("https://"), "--server {s:?} must start with http:// or https://");
        anyhow::ensure!(
            !s.starts_with("http://") || a.insecure || is_loopback_url(s),
            "--server {s:?} is plain http: use https (with --ca) or pass --insecure"
        );
    }
    let facts = HostFacts {
        bk_biz_id: a.bk_biz_id,
        bk_cloud_id: a.bk_cloud_id,
        ip,
        set_id: a.set_id,
        module_id: a.module_id,
        labels: parse_labels(&a.labels)?,
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
    };
    let mut cfg = AgentConfig::new(a.server, a.token, a.state_dir, facts);
    cfg.ca_file = a.ca;
    // Past the check above, an http:// server is either loopback or allowed by --insecure;
    // with only https:// servers the agent refuses plain text outright.
    cfg.insecure = a.insecure || cfg.servers.iter().any(|s| s.starts_with("http://"));
    shoal_agent::run(cfg, super::shutdown_signal()).await?;
    Ok(0)
}

/// Whether `s` names a loopback address (127.0.0.0/8, ::1, localhost), parsed as a URL so
/// that `http://127.0.0.1@evil.example/` or `http://127.0.0.1.evil.example/` do not pass.
fn is_loopback_url(s: &str) -> bool {
    match url::Url::parse(s).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn loopback_is_parsed_not_prefix_matched() {
        assert!(is_loopback_url("http://127.0.0.1:8080"));
        assert!(is_loopback_url("http://localhost/"));
        assert!(is_loopback_url("http://[::1]:9"));
        assert!(!is_loopback_url("http://127.0.0.1@evil.example/"));
        assert!(!is_loopback_url("http://127.0.0.1.evil.example/"));
        assert!(!is_loopback_url("http://10.0.0.5:8080"));
        assert!(!is_loopback_url("not a url"));
    }
}
