//! `shoal agent`, and the admin side of agents: `shoal agent-token`, `shoal agent-accept`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_agent::AgentConfig;
use shoal_proto::agent::HostFacts;

use crate::cli::{AgentArgs, ClientArgs};
use crate::client_config;

/// The environment variable an agent reads its enrolment token from.
pub const TOKEN_ENV: &str = "SHOAL_AGENT_TOKEN";

/// The enrolment token: `--token-file`, else `SHOAL_AGENT_TOKEN`, else `--token` (with a
/// warning: argv is world-readable in /proc). Empty when none is given, which suits an agent
/// already enrolled (its credential is in the state dir).
fn enrolment_token(file: Option<&Path>, flag: Option<String>, env: Option<String>) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading --token-file {}", path.display()))?;
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the token file is readable by other users; make it 0600");
            }
        }
        let token = text.trim().to_string();
        anyhow::ensure!(!token.is_empty(), "--token-file {} is empty", path.display());
        return Ok(token);
    }
    if let Some(t) = env.filter(|t| !t.trim().is_empty()) {
        return Ok(t.trim().to_string());
    }
    if let Some(t) = flag {
        tracing::warn!("--token is visible to every local user in /proc/*/cmdline; use --token-file or {TOKEN_ENV}");
        return Ok(t);
    }
    Ok(String::new())
}

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
    let s = crate::agent_config::load(&a, Path::new(crate::agent_config::DEFAULT_PATH))?;
    if a.print_config {
        print!("{}", crate::agent_config::effective_toml(&s)?);
        return Ok(0);
    }
    let ip = match s.ip {
        Some(ip) => ip,
        None => shoal_agent::primary_ipv4().context("cannot tell this host's IPv4; pass --ip")?,
    };
    anyhow::ensure!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "--ip {ip:?} is not an IPv4 address");
    for url in &s.server {
        anyhow::ensure!(url.starts_with("http://") || url.starts_with("https://"), "--server {url:?} must start with http:// or https://");
        anyhow::ensure!(
            !url.starts_with("http://") || s.insecure || is_loopback_url(url),
            "--server {url:?} is plain http: use https (with --ca) or pass --insecure"
        );
    }
    let facts = HostFacts {
        bk_biz_id: s.bk_biz_id,
        bk_cloud_id: s.bk_cloud_id,
        ip,
        set_id: s.set,
        module_id: s.module,
        labels: s.labels,
        hostname: hostname(),
        os: std::env::consts::OS.to_string(),
    };
    let token = enrolment_token(s.token_file.as_deref(), a.token, std::env::var(TOKEN_ENV).ok())?;
    let mut cfg = AgentConfig::new(s.server, token, s.state_dir, facts);
    cfg.ca_file = s.ca;
    cfg.peer_listen = (s.peer_listen != "off").then_some(s.peer_listen);
    // Past the check above, an http:// server is either loopback or allowed by --insecure;
    // with only https:// servers the agent refuses plain text outright.
    cfg.insecure = s.insecure || cfg.servers.iter().any(|u| u.starts_with("http://"));
    shoal_agent::run(cfg, super::shutdown_signal()).await?;
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum AgentTokenCommand {
    /// Issue a token; it is printed once and only its hash is kept.
    Create(TokenCreateArgs),
    /// Issued tokens (never their text).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token: no new agent enrols with it (enrolled ones are not affected).
    Revoke {
        /// Token id (from `shoal agent-token list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// Expires after this long: 90s, 30m, 12h, 7d.
    #[arg(long, value_parser = parse_duration_secs)]
    pub expires_in: Option<i64>,
    /// Enrols one agent only.
    #[arg(long)]
    pub single_use: bool,
    /// Agents it enrols wait for `shoal agent-accept` before they get any task.
    #[arg(long)]
    pub pending: bool,
    /// What the token is for.
    #[arg(long)]
    pub description: Option<String>,
    /// (`--biz B` binds the token to business B: it cannot enrol a host claiming another.
    /// Without it, the token enrols into any business.)
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct AcceptArgs {
    /// Host id of the pending agent (see `shoal host list --pending`).
    #[arg(long, conflicts_with = "agent_id", required_unless_present = "agent_id")]
    pub host_id: Option<i64>,
    /// Agent id of the pending agent.
    #[arg(long)]
    pub agent_id: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `90s`, `30m`, `12h`, `7d`, or plain seconds.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 12h or 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

fn without_nulls(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    v
}

pub async fn token(cmd: AgentTokenCommand) -> anyhow::Result<u8> {
    match cmd {
        AgentTokenCommand::Create(a) => {
            let r = client_config::resolve(&a.client)?;
            let body = without_nulls(json!({
                "bk_biz_id": a.client.biz, "expires_in_secs": a.expires_in, "single_use": a.single_use,
                "pending": a.pending, "description": a.description,
            }));
            let v: Value = r.client.shoal("agent_tokens", false, body).await?;
            if a.client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{}", v["token"].as_str().unwrap_or(""));
            eprintln!(
                "token {} created (business {}, {}{}{}); it is shown only now: put it in a 0600 file for --token-file",
                v["id"],
                v["bk_biz_id"].as_i64().map_or_else(|| "any".to_string(), |b| b.to_string()),
                if a.single_use { "single-use" } else { "multi-use" },
                if a.pending { ", holds agents pending" } else { "" },
                v["expires_at"].as_i64().map(|t| format!(", expires at {t} ms")).unwrap_or_default(),
            );
            Ok(0)
        }
        AgentTokenCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("agent_tokens", true, json!({})).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!(
                "{:<6} {:<6} {:<8} {:<8} {:<6} {:<15} {:<8} DESCRIPTION",
                "ID", "BIZ", "PENDING", "USE", "USES", "EXPIRES_AT", "REVOKED"
            );
            for t in v["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<6} {:<8} {:<8} {:<6} {:<15} {:<8} {}",
                    t["id"],
                    t["bk_biz_id"].as_i64().map_or_else(|| "any".to_string(), |b| b.to_string()),
                    if t["pending"].as_bool() == Some(true) { "yes" } else { "no" },
                    if t["single_use"].as_bool() == Some(true) { "single" } else { "multi" },
                    t["uses"],
                    t["expires_at"].as_i64().map_or_else(|| "-".to_string(), |x| x.to_string()),
                    if t["revoked_at"].is_null() { "no" } else { "yes" },
                    t["description"].as_str().unwrap_or(""),
                );
            }
            Ok(0)
        }
        AgentTokenCommand::Revoke { id, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.shoal("agent_tokens/revoke", false, json!({"id": id})).await?;
            println!("token {id} revoked");
            Ok(0)
        }
    }
}

pub async fn accept(a: AcceptArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(&a.client)?;
    let body = without_nulls(json!({"bk_host_id": a.host_id, "agent_id": a.agent_id}));
    let v: Value = r.client.shoal("agents/accept", false, body).await?;
    println!("host {} accepted (agent {})", v["bk_host_id"], v["agent_id"].as_str().unwrap_or(""));
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
    use super::{enrolment_token, is_loopback_url, parse_duration_secs};

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("2h"), Ok(7200));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert_eq!(parse_duration_secs("15"), Ok(15));
        assert!(parse_duration_secs("1w").is_err() && parse_duration_secs("0s").is_err() && parse_duration_secs("h").is_err());
    }

    #[test]
    fn the_token_comes_from_the_file_then_the_environment_then_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(enrolment_token(Some(&file), None, Some("from-env".into())).unwrap(), "from-file");
        assert_eq!(enrolment_token(None, Some("flag".into()), Some("from-env".into())).unwrap(), "from-env");
        assert_eq!(enrolment_token(None, Some("flag".into()), None).unwrap(), "flag");
        assert_eq!(enrolment_token(None, None, None).unwrap(), "", "an enrolled agent needs none");
        assert!(enrolment_token(Some(&dir.path().join("missing")), None, None).is_err());
    }

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
