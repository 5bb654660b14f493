//! `shoal group create|list|delete`: dynamic groups, saved host selections of a business
//! (sets, modules, a label selector) that `shoal run --group ID` targets.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Save a group (or replace the group of --id): hosts in any of the sets or modules given
    /// whose labels match the selector.
    Create {
        /// The group's name.
        name: String,
        /// Its id (letters, digits, - and _) [default: a new random id].
        #[arg(long)]
        id: Option<String>,
        /// Set ids; repeatable, comma-separated.
        #[arg(long = "set", value_delimiter = ',')]
        sets: Vec<i64>,
        /// Module ids; repeatable, comma-separated.
        #[arg(long = "module", value_delimiter = ',')]
        modules: Vec<i64>,
        /// Label selector, e.g. role=web,env!=prod.
        #[arg(long)]
        selector: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Groups of the business.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a group by id.
    Delete {
        /// The group's id (see `shoal group list`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn ids(v: &Value) -> String {
    let list: Vec<String> = v.as_array().into_iter().flatten().map(Value::to_string).collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

pub async fn run(cmd: GroupCommand) -> anyhow::Result<u8> {
    match cmd {
        GroupCommand::Create { name, id, sets, modules, selector, client } => {
            anyhow::ensure!(
                !sets.is_empty() || !modules.is_empty() || selector.is_some(),
                "an empty group would hold every host: give --set, --module or --selector"
            );
            let r = client_config::resolve(&client)?;
            let body = json!({"bk_scope_type": "biz", "bk_scope_id": r.biz.to_string(), "id": id, "name": name,
                              "set_ids": sets, "module_ids": modules, "selector": selector});
            let g: Value = r.client.shoal("dynamic_groups", false, body).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&g)?);
            } else {
                let id = g["id"].as_str().unwrap_or("");
                println!("group {id} ({name}) saved in business {}; run on it with: shoal run --group {id} -c 'uptime'", r.biz);
            }
            Ok(0)
        }
        GroupCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let page: Value =
                r.client.shoal("dynamic_groups", true, json!({"bk_scope_type": "biz", "bk_scope_id": r.biz.to_string()})).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(0);
            }
            println!("{:<34} {:<20} {:<12} {:<12} SELECTOR", "ID", "NAME", "SETS", "MODULES");
            for g in page["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<34} {:<20} {:<12} {:<12} {}",
                    g["id"].as_str().unwrap_or(""),
                    g["name"].as_str().unwrap_or(""),
                    ids(&g["set_ids"]),
                    ids(&g["module_ids"]),
                    g["selector"].as_str().filter(|s| !s.is_empty()).unwrap_or("-")
                );
            }
            Ok(0)
        }
        GroupCommand::Delete { id, client } => {
            let r = client_config::resolve(&client)?;
            let body = json!({"bk_scope_type": "biz", "bk_scope_id": r.biz.to_string(), "id": id});
            let _: Value = r.client.shoal("dynamic_groups/delete", false, body).await?;
            println!("group {id} deleted");
            Ok(0)
        }
    }
}
