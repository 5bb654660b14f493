//! `shoal user …`: people as principals, through the Shoal API. An admin creates users
//! (the password is generated and printed once, or read from stdin), disables them and grants
//! them roles; a user (`SHOAL_TOKEN`) manages their own API tokens and password.

use std::io::BufRead;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Users, with whether they are admins or disabled.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a user (admin); a generated password is printed once.
    Create {
        /// The user's name.
        username: String,
        /// A platform admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a password: a user's (admin), or your own (stdin: current password, then the new
    /// one). A generated one is printed once. Every login session of the user ends.
    Passwd {
        /// Whose password (admin) [default: your own].
        username: Option<String>,
        /// Read the password(s) from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a user (admin): their tokens and sessions stop working.
    Disable {
        /// The user's name.
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enable a disabled user again (admin).
    Enable {
        /// The user's name.
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Grant a user a role (run, manage, approve, admin) in a business (admin).
    Grant(UserGrantArgs),
    /// Take a role back.
    Ungrant(UserGrantArgs),
    /// Let a user run as an execution account (alias, or * for all) in a business (admin).
    GrantAccount(UserAccountGrantArgs),
    /// Take an execution account back.
    UngrantAccount(UserAccountGrantArgs),
    /// Personal API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token (yours, or --user's as an admin); it is printed once.
    Create {
        /// A name to recognise the token by.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime: 3600, 90s, 30m, 12h, 30d [default: until revoked].
        #[arg(long)]
        expires_in: Option<String>,
        /// Create it for this user (admin) [default: yourself].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tokens (yours, or --user's, or everyone's as an admin); never the tokens themselves.
    List {
        /// Another user's tokens (admin) [default: your own].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (see `shoal user token list`).
        id: String,
        /// The token's owner (admin) [default: yourself].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct UserGrantArgs {
    /// The user's name.
    pub username: String,
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
pub struct UserAccountGrantArgs {
    /// The user's name.
    pub username: String,
    /// Account alias, or * for every account of the business.
    #[arg(long)]
    pub alias: String,
    /// Every business instead of the one of --biz.
    #[arg(long)]
    pub all_biz: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Seconds from `3600`, `90s`, `30m`, `12h`, `30d`.
pub fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num.parse().map_err(|_| anyhow::anyhow!("not a duration: {s:?} (e.g. 30d, 12h)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => anyhow::bail!("unknown unit in {s:?}: use s, m, h or d"),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| anyhow::anyhow!("duration out of range: {s:?}"))
}

fn stdin_lines(n: usize) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for line in std::io::stdin().lock().lines().take(n) {
        out.push(line?.trim_end_matches(['\r', '\n']).to_string());
    }
    anyhow::ensure!(out.len() == n, "expected {n} line(s) on stdin");
    Ok(out)
}

fn show(v: &Value) -> anyhow::Result<u8> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
    v
}

pub async fn run(cmd: UserCommand) -> anyhow::Result<u8> {
    match cmd {
        UserCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("users", true, json!({})).await?;
            if client.json {
                return show(&v);
            }
            println!("{:<24} {:<6} {:<9} CREATED BY", "USER", "ADMIN", "DISABLED");
            for u in v["data"].as_array().into_iter().flatten() {
                let yes = |b: &Value| if *b == true { "yes" } else { "no" };
                println!(
                    "{:<24} {:<6} {:<9} {}",
                    u["username"].as_str().unwrap_or(""),
                    yes(&u["admin"]),
                    yes(&u["disabled"]),
                    u["created_by"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        UserCommand::Create { username, admin, password_stdin, client } => {
            let password = if password_stdin { Some(stdin_lines(1)?.remove(0)) } else { None };
            let r = client_config::resolve(&client)?;
            let body = strip_nulls(json!({"username": username, "admin": admin, "password": password}));
            let v: Value = r.client.shoal("users", false, body).await?;
            match v["password"].as_str() {
                Some(p) => {
                    eprintln!("user {username} created; the password is shown only now:");
                    println!("{p}");
                }
                None => eprintln!("user {username} created"),
            }
            Ok(0)
        }
        UserCommand::Passwd { username, password_stdin, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = json!({"username": username});
            if password_stdin {
                // Your own password: the current one first. An admin gives only the new one.
                let lines = stdin_lines(if username.is_none() { 2 } else { 1 })?;
                match lines.as_slice() {
                    [current, new] => {
                        body["current_password"] = json!(current);
                        body["password"] = json!(new);
                    }
                    [new] => body["password"] = json!(new),
                    _ => unreachable!("stdin_lines checks the count"),
                }
            }
            let v: Value = r.client.shoal("users/passwd", false, strip_nulls(body)).await?;
            let who = v["username"].as_str().unwrap_or("");
            match v["password"].as_str() {
                Some(p) => {
                    eprintln!("new password of {who}, shown only now (every session ended):");
                    println!("{p}");
                }
                None => eprintln!("password of {who} changed (every session ended)"),
            }
            Ok(0)
        }
        UserCommand::Disable { username, client } => toggle(&username, &client, "users/disable").await,
        UserCommand::Enable { username, client } => toggle(&username, &client, "users/enable").await,
        UserCommand::Grant(g) => grant(g, "grants").await,
        UserCommand::Ungrant(g) => grant(g, "grants/delete").await,
        UserCommand::GrantAccount(g) => grant_account(g, "account_grants").await,
        UserCommand::UngrantAccount(g) => grant_account(g, "account_grants/delete").await,
        UserCommand::Token(t) => token(t).await,
    }
}

async fn toggle(username: &str, client: &ClientArgs, path: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(client)?;
    let v: Value = r.client.shoal(path, false, json!({"username": username})).await?;
    println!("user {username} {}", if v["disabled"] == true { "disabled" } else { "enabled" });
    Ok(0)
}

async fn grant(g: UserGrantArgs, path: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(&g.client)?;
    let scope_id = if g.all_biz { "*".to_string() } else { r.biz.to_string() };
    let body = json!({"app_code": format!("user:{}", g.username), "bk_scope_type": "biz", "bk_scope_id": scope_id, "role": g.role});
    let v: Value = r.client.shoal(path, false, body).await?;
    show(&v)
}

async fn grant_account(g: UserAccountGrantArgs, path: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(&g.client)?;
    let scope_id = if g.all_biz { "*".to_string() } else { r.biz.to_string() };
    let body = json!({"app_code": format!("user:{}", g.username), "bk_scope_type": "biz", "bk_scope_id": scope_id, "alias": g.alias});
    let v: Value = r.client.shoal(path, false, body).await?;
    show(&v)
}

async fn token(cmd: TokenCommand) -> anyhow::Result<u8> {
    match cmd {
        TokenCommand::Create { name, expires_in, user, client } => {
            let expires_in = expires_in.as_deref().map(parse_duration).transpose()?;
            let r = client_config::resolve(&client)?;
            let body = strip_nulls(json!({"name": name, "expires_in": expires_in, "username": user}));
            let v: Value = r.client.shoal("users/tokens", false, body).await?;
            eprintln!(
                "token {} of {} created; it is shown only now (use it as SHOAL_TOKEN):",
                v["id"].as_str().unwrap_or(""),
                v["username"].as_str().unwrap_or("")
            );
            println!("{}", v["token"].as_str().unwrap_or(""));
            Ok(0)
        }
        TokenCommand::List { user, client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("users/tokens", true, strip_nulls(json!({"username": user}))).await?;
            if client.json {
                return show(&v);
            }
            println!("{:<14} {:<20} {:<16} {:<15} {:<15} REVOKED", "ID", "USER", "NAME", "CREATED", "EXPIRES");
            for t in v["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<14} {:<20} {:<16} {:<15} {:<15} {}",
                    t["id"].as_str().unwrap_or(""),
                    t["username"].as_str().unwrap_or(""),
                    t["name"].as_str().unwrap_or(""),
                    t["create_time"],
                    if t["expire_time"].is_null() { "never".to_string() } else { t["expire_time"].to_string() },
                    if t["revoked"] == true { "yes" } else { "no" }
                );
            }
            Ok(0)
        }
        TokenCommand::Revoke { id, user, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.shoal("users/tokens/revoke", false, strip_nulls(json!({"id": id, "username": user}))).await?;
            println!("token {id} revoked");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86400);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3600);
        assert_eq!(parse_duration("3600").unwrap(), 3600);
        assert!(parse_duration("5w").is_err() && parse_duration("0").is_err() && parse_duration("d").is_err());
    }
}
