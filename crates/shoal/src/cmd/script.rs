//! `shoal script …`: the script library — list, show, add a script or a new version from a
//! file, publish, disable.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use shoal_proto::status::ScriptLanguage;

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum ScriptCommand {
    /// Scripts of the business (or --public).
    List {
        /// The public scripts (admin) instead of the business's.
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Versions of a script (by name or id) and their states; --content prints the given
    /// version's text.
    Show {
        /// The script's name or id.
        #[arg(value_name = "NAME_OR_ID")]
        script_id: String,
        /// The public scripts (admin) instead of the business's.
        #[arg(long)]
        public: bool,
        /// Print the text of this version (e.g. 1.2).
        #[arg(long)]
        content: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a script (with --name) or a new version of one (with --script-id) from a file; new
    /// versions are drafts until published.
    Add {
        /// The script file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Name of the new script.
        #[arg(long, required_unless_present = "script_id")]
        name: Option<String>,
        /// The script (name or id).
        #[arg(long)]
        script_id: Option<String>,
        #[arg(long)]
        version: String,
        /// Language: shell, python, perl or powershell [default: from the file extension, else shell].
        #[arg(long)]
        lang: Option<String>,
        /// What the script is for.
        #[arg(long, default_value = "")]
        description: String,
        /// The public scripts (admin) instead of the business's.
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a version online (the previous online version goes offline).
    Publish {
        /// The script (name or id).
        script_id: String,
        /// The version's id (VERSION_ID in `shoal script show`).
        version_id: i64,
        /// The public scripts (admin) instead of the business's.
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a version for good.
    Disable {
        /// The script (name or id).
        script_id: String,
        /// The version's id (VERSION_ID in `shoal script show`).
        version_id: i64,
        /// The public scripts (admin) instead of the business's.
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const STATES: [&str; 4] = ["draft", "online", "offline", "disabled"];

fn api(name: &str, public: bool) -> String {
    if public {
        name.replacen("_script", "_public_script", 1)
    } else {
        name.to_string()
    }
}

fn params(biz: i64, public: bool, extra: Value) -> Value {
    let mut v = if public { json!({}) } else { json!({"bk_scope_type": "biz", "bk_scope_id": biz.to_string()}) };
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

pub async fn run(cmd: ScriptCommand) -> anyhow::Result<u8> {
    match cmd {
        ScriptCommand::List { public, client } => {
            let r = client_config::resolve(&client)?;
            let page: Value = r.client.call(&api("get_script_list", public), params(r.biz, public, json!({"length": 1000}))).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(0);
            }
            println!("{:<34} {:<24} {:<11} {:<8} DESCRIPTION", "ID", "NAME", "LANGUAGE", "ONLINE");
            for s in page["data"].as_array().into_iter().flatten() {
                let lang = s["script_language"].as_i64().and_then(|l| ScriptLanguage::from_i32(l as i32)).map_or("?", ScriptLanguage::name);
                let online = s["online_script_version_id"].as_i64().map_or("-".into(), |v| v.to_string());
                println!(
                    "{:<34} {:<24} {:<11} {:<8} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or(""),
                    lang,
                    online,
                    s["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        ScriptCommand::Show { script_id, public, content, client } => {
            let r = client_config::resolve(&client)?;
            let script_id = script_id_of(&r.client, r.biz, public, &script_id).await?;
            if let Some(version) = content {
                let v: Value = r
                    .client
                    .call(
                        &api("get_script_version_detail", public),
                        params(r.biz, public, json!({"script_id": script_id, "version": version})),
                    )
                    .await?;
                print!("{}", v["content"].as_str().unwrap_or(""));
                return Ok(0);
            }
            let page: Value = r
                .client
                .call(&api("get_script_version_list", public), params(r.biz, public, json!({"script_id": script_id, "length": 1000})))
                .await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(0);
            }
            println!("{:<10} {:<14} {:<10} {:<20} {:<12} NOTE", "VERSION_ID", "VERSION", "STATE", "CHANGED (UTC)", "BY");
            for v in page["data"].as_array().into_iter().flatten() {
                let state = v["status"].as_u64().and_then(|s| STATES.get(s as usize)).copied().unwrap_or("?");
                println!(
                    "{:<10} {:<14} {:<10} {:<20} {:<12} {}",
                    v["id"].to_string(),
                    v["version"].as_str().unwrap_or(""),
                    state,
                    shoal_core::time::human(v["last_modify_time"].as_i64().unwrap_or(0)),
                    v["last_modify_user"].as_str().unwrap_or(""),
                    v["version_desc"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        ScriptCommand::Add { file, name, script_id, version, lang, description, public, client } => {
            let r = client_config::resolve(&client)?;
            let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let content = shoal_client::b64(&text);
            let v: Value = match script_id {
                Some(id) => {
                    r.client
                        .call(
                            &api("create_script_version", public),
                            params(r.biz, public, json!({"script_id": id, "content": content, "version": version})),
                        )
                        .await?
                }
                None => {
                    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
                    let lang = match &lang {
                        Some(l) => ScriptLanguage::from_name(l).with_context(|| format!("unknown language {l:?}"))?,
                        None => ScriptLanguage::from_name(ext).unwrap_or(ScriptLanguage::Shell),
                    };
                    let body = json!({"name": name, "script_language": lang as i32, "content": content, "version": version, "description": description});
                    r.client.call(&api("create_script", public), params(r.biz, public, body)).await?
                }
            };
            println!(
                "script {} version {} ({}) added as a draft; publish it with: shoal script publish {} {}",
                v["script_id"].as_str().unwrap_or(""),
                v["version"].as_str().unwrap_or(""),
                v["id"],
                v["script_id"].as_str().unwrap_or(""),
                v["id"]
            );
            Ok(0)
        }
        ScriptCommand::Publish { script_id, version_id, public, client } => {
            set_state(script_id, version_id, public, client, "publish_script_version").await
        }
        ScriptCommand::Disable { script_id, version_id, public, client } => {
            set_state(script_id, version_id, public, client, "disable_script_version").await
        }
    }
}

/// The id of the script named `name_or_id` (a name first, else taken as an id).
async fn script_id_of(client: &shoal_client::Client, biz: i64, public: bool, name_or_id: &str) -> anyhow::Result<String> {
    let page: Value = client.call(&api("get_script_list", public), params(biz, public, json!({"length": 1000}))).await?;
    let found = page["data"].as_array().into_iter().flatten().find(|s| s["name"] == name_or_id).and_then(|s| s["id"].as_str());
    Ok(found.unwrap_or(name_or_id).to_string())
}

async fn set_state(script_id: String, version_id: i64, public: bool, client: ClientArgs, name: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(&client)?;
    let script_id = script_id_of(&r.client, r.biz, public, &script_id).await?;
    let v: Value =
        r.client.call(&api(name, public), params(r.biz, public, json!({"script_id": script_id, "script_version_id": version_id}))).await?;
    let state = v["status"].as_u64().and_then(|s| STATES.get(s as usize)).copied().unwrap_or("?");
    println!("script {script_id} version {version_id}: {state}");
    Ok(0)
}
