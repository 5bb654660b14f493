//! `shoal danger builtin list | disable NAME | enable NAME`: the built-in dangerous-command
//! checks (rm -rf /, mkfs on a device, …), which block every matching job unless an admin
//! turns one off. Admin app credentials; every change is audited by the server.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum DangerCommand {
    /// The built-in checks.
    #[command(subcommand)]
    Builtin(BuiltinCommand),
}

#[derive(Subcommand, Debug)]
pub enum BuiltinCommand {
    /// Each built-in check: name, whether it blocks, what it catches.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a built-in check from blocking (it is no longer reported either).
    Disable {
        /// The built-in check's name (see `shoal danger builtin list`).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a built-in check block again.
    Enable {
        /// The built-in check's name (see `shoal danger builtin list`).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(cmd: DangerCommand) -> anyhow::Result<u8> {
    let DangerCommand::Builtin(cmd) = cmd;
    match cmd {
        BuiltinCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("danger/builtins", true, json!({})).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{:<18} {:<8} DESCRIPTION", "NAME", "ENABLED");
            for b in v.as_array().into_iter().flatten() {
                println!(
                    "{:<18} {:<8} {}",
                    b["name"].as_str().unwrap_or(""),
                    if b["enabled"] == true { "yes" } else { "no" },
                    b["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        BuiltinCommand::Disable { name, client } => toggle(&client, "disable", &name).await,
        BuiltinCommand::Enable { name, client } => toggle(&client, "enable", &name).await,
    }
}

async fn toggle(client: &ClientArgs, op: &str, name: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(client)?;
    let v: Value = r.client.shoal(&format!("danger/builtins/{op}"), false, json!({"name": name})).await?;
    let state = if v["enabled"] == true { "blocks" } else { "no longer blocks" };
    let note = if v["changed"] == true { "" } else { " (unchanged)" };
    println!("built-in {name} {state}{note}");
    Ok(0)
}
