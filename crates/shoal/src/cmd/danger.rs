//! `shoal danger builtin list | disable NAME | enable NAME`: the built-in dangerous-command
//! checks (rm -rf /, mkfs on a device, …), which block every matching job unless an admin
//! turns one off. Admin app credentials; every change is audited by the server.
//! `shoal danger rule list | add | delete | enable | disable`: custom rules (JOB's
//! `*_dangerous_rule` APIs); `shoal danger check -f FILE`: a script against them all.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum DangerCommand {
    /// The built-in checks.
    #[command(subcommand)]
    Builtin(BuiltinCommand),
    /// Custom rules: regular expressions that block (intercept) or only record (scan) a
    /// matching script line (admin).
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Check a script against the rules and built-in checks without running it; exits 1 when
    /// anything matches.
    Check {
        /// The script file.
        #[arg(short = 'f', long)]
        file: std::path::PathBuf,
        /// Language: shell, python, perl or powershell [default: from the file extension, else shell].
        #[arg(long)]
        lang: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What a custom rule does on a match.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RuleAction {
    /// Record the match; the job runs.
    Scan,
    /// Refuse the job (1244019).
    Intercept,
}

#[derive(Subcommand, Debug)]
pub enum RuleCommand {
    /// Every custom rule.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a rule, enabled at once unless --disabled.
    Add {
        /// Regular expression matched against each script line.
        #[arg(long)]
        expression: String,
        /// What a match does.
        #[arg(long, value_enum, default_value = "intercept")]
        action: RuleAction,
        /// Languages the rule applies to; comma-separated [default: shell].
        #[arg(long = "lang", value_delimiter = ',', default_value = "shell")]
        langs: Vec<String>,
        /// What the rule catches, shown with each match.
        #[arg(long, default_value = "")]
        description: String,
        /// Keep the new rule off (JOB's default) until `shoal danger rule enable`.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a rule.
    Delete {
        /// The rule's id (see `shoal danger rule list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Turn a rule on.
    Enable {
        /// The rule's id (see `shoal danger rule list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Turn a rule off.
    Disable {
        /// The rule's id (see `shoal danger rule list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
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

fn language(name: &str) -> anyhow::Result<i32> {
    shoal_proto::status::ScriptLanguage::from_name(name)
        .map(|l| l as i32)
        .ok_or_else(|| anyhow::anyhow!("unknown language {name:?}: use shell, python, perl or powershell"))
}

async fn rule(cmd: RuleCommand) -> anyhow::Result<u8> {
    match cmd {
        RuleCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let v: Value = r.client.call("get_dangerous_rule_list", json!({})).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{:<6} {:<10} {:<8} {:<30} DESCRIPTION", "ID", "ACTION", "ENABLED", "EXPRESSION");
            for x in v.as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<10} {:<8} {:<30} {}",
                    x["id"].to_string(),
                    if x["action"] == 2 { "intercept" } else { "scan" },
                    if x["status"] == 1 { "yes" } else { "no" },
                    x["expression"].as_str().unwrap_or(""),
                    x["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        RuleCommand::Add { expression, action, langs, description, disabled, client } => {
            let r = client_config::resolve(&client)?;
            let langs = langs.iter().map(|l| language(l)).collect::<anyhow::Result<Vec<_>>>()?;
            let action = match action {
                RuleAction::Scan => 1,
                RuleAction::Intercept => 2,
            };
            let body = json!({"expression": expression, "script_language_list": langs, "description": description, "action": action});
            let v: Value = r.client.call("create_dangerous_rule", body).await?;
            if !disabled {
                let _: Value = r.client.call("enable_dangerous_rule", json!({"id": v["id"]})).await?;
            }
            println!("rule {} added{}: {expression}", v["id"], if disabled { " (disabled)" } else { "" });
            Ok(0)
        }
        RuleCommand::Delete { id, client } => rule_op(&client, "delete_dangerous_rule", id, "deleted").await,
        RuleCommand::Enable { id, client } => rule_op(&client, "enable_dangerous_rule", id, "enabled").await,
        RuleCommand::Disable { id, client } => rule_op(&client, "disable_dangerous_rule", id, "disabled").await,
    }
}

async fn rule_op(client: &ClientArgs, api: &str, id: i64, done: &str) -> anyhow::Result<u8> {
    let r = client_config::resolve(client)?;
    let _: Value = r.client.call(api, json!({"id": id})).await?;
    println!("rule {id} {done}");
    Ok(0)
}

async fn check(file: &std::path::Path, lang: Option<&str>, client: &ClientArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(client)?;
    let text = std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let lang = match lang {
        Some(l) => language(l)?,
        None => language(ext).unwrap_or(shoal_proto::status::ScriptLanguage::Shell as i32),
    };
    let v: Value = r.client.call("check_script", json!({"script_language": lang, "content": shoal_client::b64(&text)})).await?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v.as_array().is_none_or(|a| a.is_empty()) {
        println!("{}: nothing dangerous found", file.display());
    } else {
        for f in v.as_array().into_iter().flatten() {
            println!(
                "{}:{}: {} ({})",
                file.display(),
                f["line"],
                f["line_content"].as_str().unwrap_or("").trim(),
                f["description"].as_str().unwrap_or("")
            );
        }
    }
    Ok(u8::from(v.as_array().is_some_and(|a| !a.is_empty())))
}

pub async fn run(cmd: DangerCommand) -> anyhow::Result<u8> {
    let cmd = match cmd {
        DangerCommand::Builtin(cmd) => cmd,
        DangerCommand::Rule(cmd) => return rule(cmd).await,
        DangerCommand::Check { file, lang, client } => return check(&file, lang.as_deref(), &client).await,
    };
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
