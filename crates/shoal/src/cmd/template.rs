//! `shoal template …`: job templates as YAML files — apply, diff, export, history, rollback,
//! approvals — and running their plans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_client::{Client, Scope};

use crate::cli::ClientArgs;
use crate::client_config::{self, Resolved};

#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Create or change templates from a YAML (or JSON) file; prints what changed.
    Apply {
        /// The template document (YAML).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Change summary kept in the history.
        #[arg(short = 'm', long)]
        summary: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What `apply -f FILE` would change, or the changes between two versions: `diff NAME V1 V2`.
    Diff {
        /// The template document (YAML).
        #[arg(short = 'f', long, conflicts_with_all = ["name", "from", "to"])]
        file: Option<PathBuf>,
        /// The template's name.
        name: Option<String>,
        /// The version to compare from (vN or N).
        from: Option<String>,
        /// The version to compare to (vN or N).
        to: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a template (current version, or --version N) as YAML that `apply` accepts back.
    Export {
        /// The template's name.
        name: String,
        #[arg(long)]
        version: Option<i64>,
        /// Write the document to this file instead of standard output.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Versions of a template: author, time, state, summary, changes.
    History {
        /// The template's name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make an earlier version current again (as a new version; history is kept).
    Rollback {
        /// The template's name.
        name: String,
        version: String,
        /// What the change is for (kept in the history).
        #[arg(short = 'm', long)]
        summary: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Templates of the business.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Changes waiting for approval.
    Approvals {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a pending version (not your own).
    Approve(Review),
    /// Reject a pending version.
    Reject(Review),
    /// Run a plan of a template (`default` unless --plan) and follow it.
    Run {
        /// The template's name.
        name: String,
        /// The plan to run.
        #[arg(long, default_value = "default")]
        plan: String,
        /// Variable values, NAME=VALUE; repeatable.
        #[arg(long = "var")]
        vars: Vec<String>,
        /// Do not wait; print the job id.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct Review {
    /// The template's name.
    name: String,
    version: String,
    /// A comment kept with the decision.
    #[arg(short = 'm', long)]
    comment: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
}

fn version_number(s: &str) -> anyhow::Result<i64> {
    s.trim_start_matches(['v', 'V']).parse().with_context(|| format!("{s:?} is not a version (e.g. 3 or v3)"))
}

/// Documents in a file: one YAML document per template (`---` separated), or JSON.
pub fn read_documents(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        return Ok(match v {
            Value::Array(items) => items,
            other => vec![other],
        });
    }
    let mut out = vec![];
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    anyhow::ensure!(!out.is_empty(), "{} holds no template", path.display());
    Ok(out)
}

fn scoped(r: &Resolved, extra: Value) -> Value {
    let mut v = json!({"bk_scope_type": "biz", "bk_scope_id": r.biz.to_string()});
    for (k, x) in extra.as_object().into_iter().flatten() {
        v[k] = x.clone();
    }
    v
}

fn show(x: &Option<Value>) -> String {
    match x {
        None => "∅".into(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(v) => {
            let s = v.to_string();
            if s.len() > 80 {
                format!("{}…", &s[..s.char_indices().nth(79).map_or(s.len(), |(i, _)| i)])
            } else {
                s
            }
        }
    }
}

fn print_changes(changes: &Value) {
    let list = changes.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("  (no changes)");
    }
    for c in list {
        let (b, a) = (c.get("before").cloned().filter(|v| !v.is_null()), c.get("after").cloned().filter(|v| !v.is_null()));
        let mark = match (&b, &a) {
            (None, Some(_)) => "+",
            (Some(_), None) => "-",
            _ => "~",
        };
        println!("  {mark} {}: {} → {}", c["path"].as_str().unwrap_or(""), show(&b), show(&a));
    }
}

async fn call(client: &Client, path: &str, get: bool, params: Value) -> anyhow::Result<Value> {
    Ok(client.shoal(path, get, params).await?)
}

pub async fn run(cmd: TemplateCommand) -> anyhow::Result<u8> {
    match cmd {
        TemplateCommand::Apply { file, summary, client } => {
            let r = client_config::resolve(&client)?;
            let mut results = vec![];
            for doc in read_documents(&file)? {
                let out = call(&r.client, "templates/apply", false, scoped(&r, json!({"document": doc, "summary": summary}))).await?;
                if !client.json {
                    let state = out["state"].as_str().unwrap_or("");
                    let verb = if out["changed"] == true { format!("v{} ({state})", out["version"]) } else { "unchanged".into() };
                    println!("{}: {verb}", out["name"].as_str().unwrap_or(""));
                    if out["changed"] == true {
                        print_changes(&out["changes"]);
                    }
                    if state == "pending" && out["changed"] == true {
                        println!(
                            "  waiting for approval: shoal template approve {} {}",
                            out["name"].as_str().unwrap_or(""),
                            out["version"]
                        );
                    }
                }
                results.push(out);
            }
            if client.json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            }
            Ok(0)
        }
        TemplateCommand::Diff { file, name, from, to, client } => {
            let r = client_config::resolve(&client)?;
            if let Some(file) = file {
                let mut changed = false;
                for doc in read_documents(&file)? {
                    let out = call(&r.client, "templates/diff", false, scoped(&r, json!({"document": doc}))).await?;
                    changed |= out["changed"] == true;
                    if client.json {
                        println!("{}", serde_json::to_string_pretty(&out)?);
                    } else {
                        let what = if out["exists"] == true { "" } else { " (new)" };
                        println!("{}{what}:", out["name"].as_str().unwrap_or(""));
                        print_changes(&out["changes"]);
                    }
                }
                // Like diff(1): 1 when there are differences.
                return Ok(changed as u8);
            }
            let (name, from, to) = match (name, from, to) {
                (Some(n), Some(f), Some(t)) => (n, version_number(&f)?, version_number(&t)?),
                _ => anyhow::bail!("give -f FILE, or NAME FROM TO (e.g. deploy v3 v5)"),
            };
            let out = call(&r.client, "templates/version_diff", true, scoped(&r, json!({"name": name, "from": from, "to": to}))).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{name} v{from} → v{to}:");
                print_changes(&out["changes"]);
            }
            Ok(0)
        }
        TemplateCommand::Export { name, version, output, client } => {
            let r = client_config::resolve(&client)?;
            let out = call(&r.client, "templates/export", true, scoped(&r, json!({"name": name, "version": version}))).await?;
            let text = if client.json { serde_json::to_string_pretty(&out["document"])? } else { serde_yaml::to_string(&out["document"])? };
            match output {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(0)
        }
        TemplateCommand::History { name, client } => {
            let r = client_config::resolve(&client)?;
            let out = call(&r.client, "templates/history", true, scoped(&r, json!({"name": name}))).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(0);
            }
            println!("{:<8} {:<11} {:<20} {:<12} {:<12} SUMMARY", "VERSION", "STATE", "TIME (UTC)", "AUTHOR", "REVIEWER");
            for v in out["versions"].as_array().into_iter().flatten() {
                println!(
                    "v{:<7} {:<11} {:<20} {:<12} {:<12} {}",
                    v["version"].to_string(),
                    v["state"].as_str().unwrap_or(""),
                    shoal_core::time::human(v["created_at"].as_i64().unwrap_or(0)),
                    v["author"].as_str().unwrap_or(""),
                    v["reviewer"].as_str().unwrap_or("-"),
                    v["summary"].as_str().unwrap_or("")
                );
                if let Some(c) = v["review_comment"].as_str().filter(|c| !c.is_empty()) {
                    println!("{:>9}review: {c}", "");
                }
            }
            Ok(0)
        }
        TemplateCommand::Rollback { name, version, summary, client } => {
            let r = client_config::resolve(&client)?;
            let v = version_number(&version)?;
            let out =
                call(&r.client, "templates/rollback", false, scoped(&r, json!({"name": name, "version": v, "summary": summary}))).await?;
            println!("{name}: v{} restored as v{} ({})", v, out["version"], out["state"].as_str().unwrap_or(""));
            Ok(0)
        }
        TemplateCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let out = call(&r.client, "templates", true, scoped(&r, json!({}))).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(0);
            }
            println!("{:<6} {:<28} {:<8} {:<8} {:<9} DESCRIPTION", "ID", "NAME", "CURRENT", "LATEST", "APPROVAL");
            for t in out["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<28} v{:<7} v{:<7} {:<9} {}",
                    t["id"].to_string(),
                    t["name"].as_str().unwrap_or(""),
                    t["current_version"].to_string(),
                    t["latest_version"].to_string(),
                    if t["needs_approval"] == true { "required" } else { "-" },
                    t["description"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        TemplateCommand::Approvals { client } => {
            let r = client_config::resolve(&client)?;
            let out = call(&r.client, "approvals", true, scoped(&r, json!({}))).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(0);
            }
            if out["total"] == 0 {
                println!("nothing is waiting for approval");
            }
            for v in out["data"].as_array().into_iter().flatten() {
                println!(
                    "{} v{} by {} — {}",
                    v["template"].as_str().unwrap_or(""),
                    v["version"],
                    v["author"].as_str().unwrap_or(""),
                    v["summary"].as_str().unwrap_or("")
                );
                print_changes(&v["changes"]);
            }
            Ok(0)
        }
        TemplateCommand::Approve(rv) => review(rv, true).await,
        TemplateCommand::Reject(rv) => review(rv, false).await,
        TemplateCommand::Run { name, plan, vars, no_wait, client } => {
            let r = client_config::resolve(&client)?;
            let plans: Value = r.client.call("get_job_plan_list", scoped(&r, json!({"name": plan, "length": 1000}))).await?;
            let templates = call(&r.client, "templates", true, scoped(&r, json!({}))).await?;
            let tid = templates["data"].as_array().into_iter().flatten().find(|t| t["name"] == name.as_str()).map(|t| t["id"].clone());
            let tid = tid.with_context(|| format!("no template named {name:?}"))?;
            let plan_id = plans["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["job_template_id"] == tid && p["name"] == plan.as_str())
                .and_then(|p| p["id"].as_i64())
                .with_context(|| format!("template {name:?} has no plan {plan:?}"))?;
            let mut overrides = BTreeMap::new();
            for v in &vars {
                let (k, val) = v.split_once('=').with_context(|| format!("--var {v:?} is not NAME=VALUE"))?;
                overrides.insert(k.to_string(), val.to_string());
            }
            let list: Vec<Value> = overrides.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
            let job: Value =
                r.client.call("execute_job_plan", scoped(&r, json!({"job_plan_id": plan_id, "global_var_list": list}))).await?;
            let id = job["job_instance_id"].as_i64().context("no job id in the answer")?;
            if no_wait {
                println!("job {id} started");
                return Ok(0);
            }
            super::run::show_job(&r.client, &Scope::biz(r.biz), id, client.json).await
        }
    }
}

async fn review(rv: Review, approve: bool) -> anyhow::Result<u8> {
    let r = client_config::resolve(&rv.client)?;
    let v = version_number(&rv.version)?;
    let path = if approve { "approvals/approve" } else { "approvals/reject" };
    let out = call(&r.client, path, false, scoped(&r, json!({"name": rv.name, "version": v, "comment": rv.comment}))).await?;
    println!("{} v{v}: {}", rv.name, out["state"].as_str().unwrap_or(""));
    Ok(0)
}
