//! `shoal app …`, `shoal audit …` and `shoal agent-revoke`: trust administration through the
//! Shoal API (an admin app's credentials).

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Apps, with whether they are admins or revoked (secrets are never shown again).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create an app; its secret is printed once.
    Create {
        /// The app's code.
        code: String,
        /// What the app is for.
        #[arg(long)]
        description: Option<String>,
        /// Full rights on every scope and the platform.
        #[arg(long)]
        admin: bool,
        /// A trusted gateway: its bk_username is believed (like BlueKing's ESB / API gateway).
        #[arg(long)]
        trusted_gateway: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make an app a trusted gateway (it may assert bk_username for others), or stop (--no).
    Trust {
        /// The app's code.
        code: String,
        /// Take the trust back: the app acts as itself again.
        #[arg(long)]
        no: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace an app's secret; the new one is printed once, the old stops working.
    Rotate {
        /// The app's code.
        code: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue an access token for an app (the caller's own app without CODE): what BlueKing
    /// callers send as `access_token` instead of the app's code and secret. Printed once.
    Token {
        /// The app [default: the caller's own].
        code: Option<String>,
        /// Lifetime in seconds (1 day by default, at most 90 days).
        #[arg(long)]
        expires_in: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke an app access token by its id (as `shoal app token` printed it).
    RevokeToken {
        /// The token's id (as `shoal app token` printed it).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke an app: its secret stops working and its grants are dropped.
    Revoke {
        /// The app's code.
        code: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Grant a role (run, manage, approve, admin) in a business (--biz, or --all-biz).
    Grant(GrantArgs),
    /// Take a role back.
    Ungrant(GrantArgs),
    /// Let an app run as an execution account (alias, or * for all) in a business. The grant
    /// follows that account: deleted and created again under the alias, it is not granted.
    GrantAccount(AccountGrantArgs),
    /// Take an execution account back.
    UngrantAccount(AccountGrantArgs),
    /// Roles and account grants, of one app or all.
    Grants {
        /// Only this app [default: every app].
        code: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct GrantArgs {
    /// The app's code.
    pub code: String,
    /// Role: run, manage, approve or admin.
    #[arg(long)]
    pub role: String,
    /// Every business instead of the one of --biz.
    #[arg(long)]
    pub all_biz: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct AccountGrantArgs {
    /// The app's code.
    pub code: String,
    /// Account alias (it must exist), or * for every account of the business.
    #[arg(long)]
    pub alias: String,
    /// Every business instead of the one of --biz.
    #[arg(long)]
    pub all_biz: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Audit events, filtered.
    List {
        /// Events at or after this time (ms since the epoch).
        #[arg(long)]
        since: Option<i64>,
        /// Events at or before this time (ms since the epoch).
        #[arg(long)]
        until: Option<i64>,
        /// Only events of this user.
        #[arg(long)]
        user: Option<String>,
        /// Only events of this app.
        #[arg(long)]
        app: Option<String>,
        /// Only events of this action (e.g. fast_execute_script).
        #[arg(long)]
        action: Option<String>,
        /// Only events of this business.
        #[arg(long = "scope-biz")]
        scope_biz: Option<i64>,
        /// How many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check the keyed chain; exits 1 when an event was edited, inserted, reordered or
    /// removed, or the chain was recomputed without the server's audit key.
    Verify {
        /// A head exported earlier (`SEQ:HASH`, from `audit export`): the chain must still
        /// contain it, which catches the tail cut off together with a rewritten head.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every chained event as JSON lines, in chain order, up to the chain's head; the head
    /// (`SEQ:HASH`) is printed last on stderr, to keep somewhere the database is not, for
    /// `audit verify --expect-head`.
    Export {
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Also write the head (`SEQ:HASH`) to this file.
        #[arg(long)]
        head_out: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct RevokeAgentArgs {
    /// Host id of the agent.
    #[arg(long, conflicts_with = "agent_id", required_unless_present = "agent_id")]
    pub host_id: Option<i64>,
    /// Agent id (from its state dir).
    #[arg(long)]
    pub agent_id: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn show(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn app(cmd: AppCommand) -> anyhow::Result<u8> {
    match cmd {
        AppCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("apps", true, json!({})).await?;
            if client.json {
                return show(&v).map(|()| 0);
            }
            let gateways: Value = r.client.shoal("apps/trust", true, json!({})).await?;
            let gateways: Vec<&str> = gateways["data"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!("{:<24} {:<6} {:<8} {:<8} DESCRIPTION", "CODE", "ADMIN", "GATEWAY", "REVOKED");
            for a in v["data"].as_array().into_iter().flatten() {
                let code = a["code"].as_str().unwrap_or("");
                println!(
                    "{:<24} {:<6} {:<8} {:<8} {}",
                    code,
                    if a["admin"] == true { "yes" } else { "no" },
                    if gateways.contains(&code) { "yes" } else { "no" },
                    if a["revoked"] == true { "yes" } else { "no" },
                    a["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        AppCommand::Create { code, description, admin, trusted_gateway, client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("apps", false, json!({"code": code, "description": description, "admin": admin})).await?;
            if trusted_gateway {
                let _: Value = r.client.shoal("apps/trust", false, json!({"code": code, "trusted": true})).await?;
                eprintln!("app {code} is a trusted gateway");
            }
            eprintln!("app {code} created; its secret is shown only now:");
            println!("{}:{}", v["code"].as_str().unwrap_or(""), v["secret"].as_str().unwrap_or(""));
            Ok(0)
        }
        AppCommand::Rotate { code, client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("apps/rotate", false, json!({"code": code})).await?;
            eprintln!("new secret of {code}; the old one no longer works:");
            println!("{}:{}", v["code"].as_str().unwrap_or(""), v["secret"].as_str().unwrap_or(""));
            Ok(0)
        }
        AppCommand::Token { code, expires_in, client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("apps/access_tokens", false, json!({"app_code": code, "expires_in": expires_in})).await?;
            eprintln!(
                "access token {} of app {}, valid for {} s; it is shown only now:",
                v["id"].as_str().unwrap_or(""),
                v["app_code"].as_str().unwrap_or(""),
                v["expires_in"]
            );
            println!("{}", v["access_token"].as_str().unwrap_or(""));
            Ok(0)
        }
        AppCommand::RevokeToken { id, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.shoal("apps/access_tokens/revoke", false, json!({"id": id})).await?;
            println!("access token {id} revoked");
            Ok(0)
        }
        AppCommand::Revoke { code, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.shoal("apps/revoke", false, json!({"code": code})).await?;
            println!("app {code} revoked");
            Ok(0)
        }
        AppCommand::Trust { code, no, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.shoal("apps/trust", false, json!({"code": code, "trusted": !no})).await?;
            println!("app {code} {}", if no { "acts as itself" } else { "is a trusted gateway" });
            Ok(0)
        }
        AppCommand::Grant(g) => grant(g, "grants").await,
        AppCommand::Ungrant(g) => grant(g, "grants/delete").await,
        AppCommand::GrantAccount(g) => grant_account(g, "account_grants").await,
        AppCommand::UngrantAccount(g) => grant_account(g, "account_grants/delete").await,
        AppCommand::Grants { code, client } => {
            let r = client_config::resolve(&client)?;
            let q = json!({"app_code": code});
            let roles: Value = r.client.shoal("grants", true, q.clone()).await?;
            let accounts: Value = r.client.shoal("account_grants", true, q).await?;
            if client.json {
                return show(&json!({"roles": roles["data"], "accounts": accounts["data"]})).map(|()| 0);
            }
            println!("{:<24} {:<10} {:<8} WHAT", "APP", "SCOPE", "ID");
            for g in roles["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<10} {:<8} role {}",
                    g["app_code"].as_str().unwrap_or(""),
                    g["bk_scope_type"].as_str().unwrap_or(""),
                    g["bk_scope_id"].as_str().unwrap_or(""),
                    g["role"].as_str().unwrap_or("")
                );
            }
            for g in accounts["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<10} {:<8} account {}",
                    g["app_code"].as_str().unwrap_or(""),
                    g["bk_scope_type"].as_str().unwrap_or(""),
                    g["bk_scope_id"].as_str().unwrap_or(""),
                    g["alias"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
    }
}

async fn grant(g: GrantArgs, path: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(&g.client)?;
    let scope_id = if g.all_biz { "*".to_string() } else { r.biz.to_string() };
    let body = json!({"app_code": g.code, "bk_scope_type": "biz", "bk_scope_id": scope_id, "role": g.role});
    let v: Value = r.client.shoal(path, false, body).await?;
    show(&v).map(|()| 0)
}

async fn grant_account(g: AccountGrantArgs, path: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(&g.client)?;
    let scope_id = if g.all_biz { "*".to_string() } else { r.biz.to_string() };
    let body = json!({"app_code": g.code, "bk_scope_type": "biz", "bk_scope_id": scope_id, "alias": g.alias});
    let v: Value = r.client.shoal(path, false, body).await?;
    show(&v).map(|()| 0)
}

pub async fn audit(cmd: AuditCommand) -> anyhow::Result<u8> {
    match cmd {
        AuditCommand::List { since, until, user, app, action, scope_biz, limit, client } => {
            let r = client_config::resolve(&client)?;
            let q = json!({"time_start": since, "time_end": until, "username": user, "app_code": app, "action": action,
                           "bk_scope_type": scope_biz.map(|_| "biz"), "bk_scope_id": scope_biz.map(|b| b.to_string()), "length": limit});
            let v: Value = r.client.shoal("audit", true, strip_nulls(q)).await?;
            if client.json {
                return show(&v).map(|()| 0);
            }
            println!("{:<6} {:<14} {:<16} {:<12} {:<10} {:<28} RESOURCE", "SEQ", "TIME", "APP", "USER", "SCOPE", "ACTION");
            for e in v["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<14} {:<16} {:<12} {:<10} {:<28} {}",
                    e["seq"],
                    e["time"],
                    e["app_code"].as_str().unwrap_or(""),
                    e["username"].as_str().unwrap_or(""),
                    format!("{}:{}", e["bk_scope_type"].as_str().unwrap_or(""), e["bk_scope_id"].as_str().unwrap_or("")),
                    e["action"].as_str().unwrap_or(""),
                    e["resource_id"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        AuditCommand::Verify { expect_head, client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("audit/verify", true, strip_nulls(json!({"expect_head": expect_head}))).await?;
            if client.json {
                show(&v)?;
            } else if v["ok"] == true {
                println!(
                    "audit chain intact: {} events checked ({} from before the audit key); head {}",
                    v["checked"],
                    v["legacy"],
                    v["head"].as_str().unwrap_or("(empty)")
                );
            } else {
                println!("AUDIT CHAIN BROKEN at event #{}: {}", v["broken_at"], v["reason"].as_str().unwrap_or(""));
            }
            Ok(if v["ok"] == true { 0 } else { 1 })
        }
        AuditCommand::Export { out, head_out, client } => {
            let r = client_config::resolve(&client)?;
            // The head first: the export stops there, and is only worth keeping if the chain
            // verifies.
            let v: Value = r.client.shoal("audit/verify", true, json!({})).await?;
            if v["ok"] != true {
                eprintln!("AUDIT CHAIN BROKEN at event #{}: {}", v["broken_at"], v["reason"].as_str().unwrap_or(""));
                return Ok(1);
            }
            let head = v["head"].as_str().map(String::from);
            let last: i64 = head.as_deref().and_then(|h| h.split_once(':')).and_then(|(s, _)| s.parse().ok()).unwrap_or(0);
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut after = 0i64;
            let mut n = 0u64;
            'pages: while after < last {
                let v: Value = r.client.shoal("audit", true, json!({"after_seq": after, "length": 1000})).await?;
                let page = v["data"].as_array().cloned().unwrap_or_default();
                if page.is_empty() {
                    break;
                }
                for e in &page {
                    let seq = e["seq"].as_i64().unwrap_or(after);
                    if seq > last {
                        break 'pages;
                    }
                    writeln!(sink, "{}", serde_json::to_string(e)?)?;
                    after = after.max(seq);
                    n += 1;
                }
            }
            sink.flush()?;
            eprintln!("{n} audit events exported");
            if let Some(h) = &head {
                if let Some(p) = &head_out {
                    std::fs::write(p, format!("{h}\n"))?;
                }
                eprintln!("head {h}");
            }
            Ok(0)
        }
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    v
}

pub async fn revoke_agent(a: RevokeAgentArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(&a.client)?;
    let body = strip_nulls(json!({"bk_host_id": a.host_id, "agent_id": a.agent_id}));
    let v: Value = r.client.shoal("agents/revoke", false, body).await?;
    println!("agent {} revoked", v["agent_id"].as_str().unwrap_or(""));
    Ok(0)
}
