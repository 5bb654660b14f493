//! `shoal biz-set …`: business sets and their member businesses (admin). A `biz_set` scope
//! reaches its members' hosts only; a set that is not defined reaches none.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum BizSetCommand {
    /// Create or replace a set: its id (8000000–9999999) and member businesses.
    Set {
        /// The business set's id.
        id: i64,
        /// Member business ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<i64>,
        /// The business set's name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every set with its members.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a set: its scope reaches no host from then on.
    Delete {
        /// The business set's id.
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(cmd: BizSetCommand) -> anyhow::Result<u8> {
    match cmd {
        BizSetCommand::Set { id, members, name, client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("biz_sets", false, json!({"id": id, "members": members, "name": name})).await?;
            println!("business set {} ({}): businesses {}", v["id"], v["name"].as_str().unwrap_or(""), v["members"]);
        }
        BizSetCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.shoal("biz_sets", true, json!({})).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{:<10} {:<20} MEMBERS", "ID", "NAME");
            for s in v["data"].as_array().into_iter().flatten() {
                println!("{:<10} {:<20} {}", s["id"], s["name"].as_str().unwrap_or(""), s["members"]);
            }
        }
        BizSetCommand::Delete { id, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.shoal("biz_sets/delete", false, json!({"id": id})).await?;
            println!("business set {id} deleted");
        }
    }
    Ok(0)
}
