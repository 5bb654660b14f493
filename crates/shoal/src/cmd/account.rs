//! `shoal account list | create | delete`: execution accounts, the OS users scripts run as,
//! by alias per business (JOB's `create_account` / `get_account_list` / `delete_account`).
//! A fresh server has none: `shoal account create root` (or the user jobs should run as)
//! comes before the first `shoal run`.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// The business's execution accounts.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add an execution account: scripts may then run as this OS user (admin).
    Create {
        /// The OS user scripts run as, e.g. root.
        user: String,
        /// The name jobs use for it (`--account` of `shoal run`) [default: the user name].
        #[arg(long)]
        alias: Option<String>,
        /// What the account is for.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove an execution account by alias (admin).
    Delete {
        /// The account's alias.
        alias: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn scope(biz: i64) -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": biz.to_string()})
}

async fn accounts(r: &client_config::Resolved) -> anyhow::Result<Vec<Value>> {
    let mut body = scope(r.biz);
    body["length"] = json!(1000);
    let page: Value = r.client.call("get_account_list", body).await?;
    Ok(page["data"].as_array().cloned().unwrap_or_default())
}

pub async fn run(cmd: AccountCommand) -> anyhow::Result<u8> {
    match cmd {
        AccountCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let list = accounts(&r).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            if list.is_empty() {
                println!("business {} has no execution account yet: shoal account create root", r.biz);
                return Ok(0);
            }
            println!("{:<6} {:<24} {:<16} {:<8} DESCRIPTION", "ID", "ALIAS", "OS USER", "OS");
            for a in &list {
                println!(
                    "{:<6} {:<24} {:<16} {:<8} {}",
                    a["id"],
                    a["alias"].as_str().unwrap_or(""),
                    a["account"].as_str().unwrap_or(""),
                    a["os"].as_str().unwrap_or("-"),
                    a["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        AccountCommand::Create { user, alias, description, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = scope(r.biz);
            body["account"] = json!(user);
            body["alias"] = json!(alias.clone().unwrap_or_else(|| user.clone()));
            body["type"] = json!(1);
            body["category"] = json!(1);
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let a: Value = r.client.call("create_account", body).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!("account {} (#{}) runs scripts as {} in business {}", a["alias"].as_str().unwrap_or(""), a["id"], user, r.biz);
            }
            Ok(0)
        }
        AccountCommand::Delete { alias, client } => {
            let r = client_config::resolve(&client)?;
            let list = accounts(&r).await?;
            let Some(id) = list.iter().find(|a| a["alias"] == alias.as_str()).and_then(|a| a["id"].as_i64()) else {
                anyhow::bail!("business {} has no execution account {alias:?} (see shoal account list)", r.biz);
            };
            let mut body = scope(r.biz);
            body["id"] = json!(id);
            let _: Value = r.client.call("delete_account", body).await?;
            println!("account {alias} (#{id}) deleted");
            Ok(0)
        }
    }
}
