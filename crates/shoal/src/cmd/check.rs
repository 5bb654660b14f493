//! `shoal check`: run the built-in agent check (or a custom check script) on hosts and
//! report per host and per item; `shoal check show ID` reads a check record, also while it
//! runs; `shoal check list` the latest ones. Exit codes: 0 every host passed, 1 some host did
//! not, 2 error, 3 a check on the same hosts is already running (500006).

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use shoal_client::check::{self, CheckOptions, CheckScript, CollectorOptions};
use shoal_client::{Client, ClientError, HostRef, Scope, TargetMode};
use shoal_proto::code::Lang;
use shoal_proto::status::ScriptLanguage;

use crate::cli::ClientArgs;
use crate::client_config::{self, current_os_user};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub command: Option<CheckCommand>,
    #[command(flatten)]
    pub run: CheckRunArgs,
}

#[derive(Subcommand, Debug)]
pub enum CheckCommand {
    /// Show a check record (its progress while it runs, its report once finished).
    Show {
        /// The check record's id (check_…).
        check_id: String,
        /// Message language: zh or en [default: from SHOAL_LANGUAGE or LANG].
        #[arg(long)]
        language: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Latest check records of the business.
    List {
        /// How many records, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug, Default)]
pub struct CheckRunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Target host ids; repeatable, comma-separated.
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<i64>,
    /// Target by IP, as cloud:ip or ip (cloud 0); repeatable.
    #[arg(long = "ip", value_delimiter = ',')]
    pub ips: Vec<String>,
    /// Target hosts whose labels match, e.g. env=prod,role!=db.
    #[arg(long)]
    pub selector: Option<String>,
    /// Target every registered host of the business.
    #[arg(long)]
    pub all: bool,
    /// Name the hosts to the server by IP (`ip_list`) instead of by host id.
    #[arg(long)]
    pub by_ip: bool,
    /// A custom check script honouring the JSON contract (docs/checks.md) instead of the
    /// built-in agent check.
    #[arg(long)]
    pub script: Option<std::path::PathBuf>,
    /// Name of the custom check [default: the script's file name].
    #[arg(long)]
    pub name: Option<String>,
    /// Language of the custom script: shell, python, perl, powershell [default: from the extension].
    #[arg(long)]
    pub lang: Option<String>,
    /// Parameters of the custom script.
    #[arg(long)]
    pub param: Option<String>,
    /// Also check the bkunifylogbeat log collector of this subscription (built-in check).
    #[arg(long)]
    pub subscription_id: Option<i64>,
    /// GSE install path for the collector checks.
    #[arg(long, default_value = "/usr/local/gse/")]
    pub gse_path: String,
    /// GSE IPC socket for the collector checks.
    #[arg(long, default_value = "/var/run/ipc.state.report")]
    pub ipc_socket_file: String,
    /// Server URL as the hosts reach it, for the reachability item [default: --url].
    #[arg(long)]
    pub server_url: Option<String>,
    /// Agent version expected [default: this binary's].
    #[arg(long)]
    pub expect_version: Option<String>,
    /// Free space wanted in each agent's state dir, MB.
    #[arg(long, default_value_t = 100)]
    pub min_free_mb: u64,
    /// Largest tolerated clock difference between a host and the server, seconds.
    #[arg(long, default_value_t = 30)]
    pub max_skew: i64,
    /// Execution account alias [default: the current OS user].
    #[arg(long)]
    pub account: Option<String>,
    /// Script timeout on each host, seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: i64,
    /// How long to wait for the hosts, seconds [default: timeout + 30].
    #[arg(long)]
    pub deadline: Option<u64>,
    /// Message language: zh or en [default: from SHOAL_LANGUAGE or LANG].
    #[arg(long)]
    pub language: Option<String>,
}

fn lang_of(flag: Option<&str>) -> Lang {
    let chosen = flag.map(String::from).or_else(|| std::env::var("SHOAL_LANGUAGE").ok()).or_else(|| std::env::var("LANG").ok());
    match chosen {
        Some(l) if l.to_ascii_lowercase().starts_with("zh") => Lang::Zh,
        _ => Lang::En,
    }
}

/// The resolved client with `Blueking-Language` set to `lang`.
fn client_in(client: &Client, lang: Lang) -> anyhow::Result<Client> {
    let mut cfg = client.config().clone();
    cfg.language = Some(match lang {
        Lang::Zh => "zh-cn".into(),
        Lang::En => "en".into(),
    });
    Ok(Client::new(cfg)?)
}

fn exit_for(e: &ClientError) -> u8 {
    if e.code() == 500006 {
        3
    } else {
        2
    }
}

pub async fn run(a: CheckArgs) -> anyhow::Result<u8> {
    match a.command {
        Some(CheckCommand::Show { check_id, language, client }) => show(&check_id, lang_of(language.as_deref()), &client).await,
        Some(CheckCommand::List { limit, client }) => list(limit, &client).await,
        None => run_check(a.run).await,
    }
}

async fn hosts_of(a: &CheckRunArgs, client: &Client, biz: i64) -> anyhow::Result<Vec<HostRef>> {
    let mut hosts: Vec<HostRef> = a.hosts.iter().map(|id| HostRef::id(*id)).collect();
    for s in &a.ips {
        let ip = super::run::parse_ip(s)?;
        hosts.push(HostRef { bk_cloud_id: ip.bk_cloud_id, ip: ip.ip, bk_host_id: None });
    }
    if a.all || a.selector.is_some() {
        let v: Value = client.hosts(Some(biz), a.selector.as_deref()).await?;
        let found: Vec<i64> = v["data"].as_array().into_iter().flatten().filter_map(|h| h["bk_host_id"].as_i64()).collect();
        anyhow::ensure!(!found.is_empty(), "no registered host of business {biz} matches");
        hosts.extend(found.into_iter().map(HostRef::id));
    }
    anyhow::ensure!(!hosts.is_empty(), "no hosts: give --host, --ip, --selector or --all");
    Ok(hosts)
}

async fn run_check(a: CheckRunArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(&a.client)?;
    let lang = lang_of(a.language.as_deref());
    let client = client_in(&r.client, lang)?;
    let scope = Scope::biz(r.biz);
    let script = match &a.script {
        Some(path) => {
            let content = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let language = match &a.lang {
                Some(l) => ScriptLanguage::from_name(l).with_context(|| format!("unknown language {l:?}"))?,
                None => ScriptLanguage::from_name(ext).unwrap_or(ScriptLanguage::Shell),
            };
            let name = a.name.clone().unwrap_or_else(|| path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
            CheckScript::Custom { name, content, language: language as i32, param: a.param.clone() }
        }
        None => CheckScript::Builtin {
            server_url: Some(a.server_url.clone().unwrap_or_else(|| client.config().url.clone())),
            expect_version: Some(a.expect_version.clone().unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())),
            min_free_mb: a.min_free_mb,
            collector: a.subscription_id.filter(|s| *s != 0).map(|subscription_id| CollectorOptions {
                gse_path: a.gse_path.clone(),
                subscription_id,
                ipc_socket_file: a.ipc_socket_file.clone(),
            }),
        },
    };
    let hosts = hosts_of(&a, &client, r.biz).await?;
    let opts = CheckOptions {
        script,
        hosts,
        mode: if a.by_ip { TargetMode::Ip } else { TargetMode::HostId },
        account: a.account.clone().unwrap_or_else(current_os_user),
        timeout_secs: a.timeout,
        deadline: Duration::from_secs(a.deadline.unwrap_or(a.timeout.max(1) as u64 + 30)),
        max_skew_secs: a.max_skew,
        lang,
    };
    let json = a.client.json;
    let report = match client
        .run_check(&scope, &opts, |id| {
            if !json {
                eprintln!("check record {id} (shoal check show {id})");
            }
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&json!({"result": false, "code": e.code(), "message": e.to_string()}))?);
            } else {
                eprintln!("error [{}]: {e}", e.code());
            }
            return Ok(exit_for(&e));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", check::render(&report, lang));
    }
    Ok(if report.all_ok() { 0 } else { 1 })
}

async fn show(id: &str, lang: Lang, args: &ClientArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(args)?;
    let client = client_in(&r.client, lang)?;
    let rec = match client.check_record(id).await {
        Ok(rec) => rec,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.code());
            return Ok(exit_for(&e));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
        return Ok(0);
    }
    let state = if rec.expired { format!("{} (expired)", rec.status) } else { rec.status.clone() };
    println!("check {} ({}) · {state} · by {} · {} hosts", rec.check, rec.check_id, rec.operator, rec.hosts.len());
    match &rec.report {
        Some(report) => print!("{}", check::render(report, lang)),
        None => {
            for line in &rec.infos {
                println!("{line}");
            }
            if rec.job_instance_id > 0 {
                let st = client.job_status(&Scope::biz(r.biz), rec.job_instance_id, true).await;
                if let Ok(st) = st {
                    let hosts: Vec<_> = st.step_instance_list.iter().flat_map(|s| s.step_ip_result_list.iter().flatten()).collect();
                    let done = hosts.iter().filter(|h| shoal_proto::status::host_status::is_final(h.status)).count();
                    println!("job {}: {done}/{} hosts done", rec.job_instance_id, hosts.len());
                }
            }
        }
    }
    Ok(0)
}

async fn list(limit: i64, args: &ClientArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(args)?;
    let v: Value =
        r.client.shoal("checks", true, json!({"bk_scope_type": "biz", "bk_scope_id": r.biz.to_string(), "limit": limit})).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("{:<40} {:<8} {:<6} {:<8} CHECK", "CHECK_ID", "STATUS", "HOSTS", "JOB");
    for c in v["data"].as_array().into_iter().flatten() {
        println!(
            "{:<40} {:<8} {:<6} {:<8} {}",
            c["check_id"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or(""),
            c["hosts"].as_array().map(Vec::len).unwrap_or(0),
            c["job_instance_id"].to_string(),
            c["check"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}
