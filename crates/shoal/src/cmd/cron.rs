//! `shoal cron list | show | create | update | enable | disable | delete`: cron jobs, a plan
//! run on a crontab expression or once at a time, as their creator (JOB's `save_cron`,
//! `update_cron_status`, `get_cron_list`, `get_cron_detail`, `delete_cron`). Saving leaves a
//! cron disabled, as JOB's `save_cron` does: `create` and `update` start it only with
//! `--enable`.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::ClientArgs;
use crate::client_config;

#[derive(Subcommand, Debug)]
pub enum CronCommand {
    /// The business's crons.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One cron: its schedule, variables and latest fires.
    Show {
        /// The cron's id (see `shoal cron list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a cron running a plan (disabled unless --enable).
    Create {
        /// The plan to run (its id, see `shoal template plans`).
        #[arg(long)]
        plan: i64,
        /// The cron's name.
        #[arg(long)]
        name: String,
        /// 5-field crontab: minute hour day month weekday, e.g. "30 2 * * *".
        #[arg(long, conflicts_with = "at", required_unless_present = "at")]
        expression: Option<String>,
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a cron: name, plan, schedule, time zone or variable values (saving pauses it;
    /// --enable starts it again).
    Update {
        /// The cron's id (see `shoal cron list`).
        id: i64,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Another plan to run (its values set before are dropped).
        #[arg(long)]
        plan: Option<i64>,
        /// A new 5-field crontab: minute hour day month weekday (replaces a one-shot time).
        #[arg(long, conflicts_with = "at")]
        expression: Option<String>,
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a cron.
    Enable {
        /// The cron's id (see `shoal cron list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause a cron.
    Disable {
        /// The cron's id (see `shoal cron list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a cron (its jobs and fire history stay).
    Delete {
        /// The cron's id (see `shoal cron list`).
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What `create` and `update` both set.
#[derive(clap::Args, Debug)]
pub struct Settings {
    /// Run once at this time instead of on a crontab: Unix seconds, or +N for N seconds from now.
    #[arg(long)]
    at: Option<String>,
    /// IANA time zone of the expression [default for a new cron: the server's].
    #[arg(long)]
    time_zone: Option<String>,
    /// A plan variable's value, NAME=VALUE (repeatable); on update, the values not named are kept.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A fire missed while no server ran: run_once (the default for a new cron) or skip.
    #[arg(long)]
    missed: Option<String>,
    /// Start it once saved (saving leaves it paused).
    #[arg(long)]
    enable: bool,
}

impl Settings {
    /// Writes the one-shot time, time zone and missed-fire policy given into `body`.
    fn fill(&self, body: &mut Value) -> anyhow::Result<()> {
        if let Some(at) = &self.at {
            body["execute_time"] = json!(parse_at(at)?);
        }
        if let Some(tz) = &self.time_zone {
            body["execute_time_zone"] = json!(tz);
        }
        if let Some(m) = &self.missed {
            body["missed_policy"] = json!(m);
        }
        Ok(())
    }

    fn changes_something(&self) -> bool {
        self.at.is_some() || self.time_zone.is_some() || !self.vars.is_empty() || self.missed.is_some()
    }
}

/// Saves `body` (JOB's `save_cron`), starts the cron if asked, and says so.
async fn save(r: &client_config::Resolved, client: &ClientArgs, body: Value, enable: bool, done: &str) -> anyhow::Result<u8> {
    let c: Value = r.client.call("save_cron", body).await?;
    let id = c["id"].as_i64().unwrap_or(0);
    if enable {
        let _: Value = r.client.call("update_cron_status", scoped(r.biz, json!({"id": id, "status": 1}))).await?;
    }
    if client.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        let state = if enable { "running" } else { "paused: shoal cron enable" };
        println!("cron #{id} {} {done} ({state})", c["name"].as_str().unwrap_or(""));
    }
    Ok(0)
}

fn scoped(biz: i64, mut body: Value) -> Value {
    body["bk_scope_type"] = json!("biz");
    body["bk_scope_id"] = json!(biz.to_string());
    body
}

/// `--var NAME=VALUE` flags as `global_var_list` entries.
fn var_list(vars: &[String]) -> anyhow::Result<Vec<Value>> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((n, value)) => Ok(json!({"name": n, "value": value})),
            None => anyhow::bail!("--var {v:?}: give NAME=VALUE"),
        })
        .collect()
}

/// The cron's values as read (`get_cron_detail`), with `given` replacing those of the same
/// name: `save_cron` replaces the whole list. A password read back masked keeps its value.
fn merged_vars(read: &Value, given: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = read["global_var_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| !given.iter().any(|g| g["name"] == v["name"]))
        .map(|v| {
            if v["server"].is_null() {
                json!({"name": v["name"], "value": v["value"]})
            } else {
                json!({"name": v["name"], "server": v["server"]})
            }
        })
        .collect();
    out.extend(given);
    out
}

/// `--at`: Unix seconds, or `+N` seconds from now.
fn parse_at(at: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("--at {at:?}: give Unix seconds, or +N for N seconds from now");
    match at.strip_prefix('+') {
        Some(n) => Ok(shoal_core::time::now_ms() / 1000 + n.parse::<i64>().map_err(|_| bad())?),
        None => at.parse().map_err(|_| bad()),
    }
}

fn status_word(c: &Value) -> &'static str {
    if c["status"] == 1 {
        "running"
    } else {
        "paused"
    }
}

fn schedule(c: &Value) -> String {
    match (c["expression"].as_str(), c["execute_time"].as_i64()) {
        (Some(e), _) => format!("{e} ({})", c["execute_time_zone"].as_str().unwrap_or("")),
        (None, Some(t)) => format!("once at {} UTC", shoal_core::time::human(t * 1000)),
        _ => "-".into(),
    }
}

fn when(secs: &Value) -> String {
    secs.as_i64().map_or_else(|| "-".into(), |t| format!("{} UTC", shoal_core::time::human(t * 1000)))
}

pub async fn run(cmd: CronCommand) -> anyhow::Result<u8> {
    match cmd {
        CronCommand::List { client } => {
            let r = client_config::resolve(&client)?;
            let page: Value = r.client.call("get_cron_list", scoped(r.biz, json!({"length": 1000}))).await?;
            let list = page["data"].as_array().cloned().unwrap_or_default();
            if client.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(0);
            }
            if list.is_empty() {
                println!("business {} has no cron", r.biz);
                return Ok(0);
            }
            println!("{:<6} {:<24} {:<8} {:<6} {:<36} NEXT", "ID", "NAME", "STATUS", "PLAN", "SCHEDULE");
            for c in &list {
                println!(
                    "{:<6} {:<24} {:<8} {:<6} {:<36} {}",
                    c["id"],
                    c["name"].as_str().unwrap_or(""),
                    status_word(c),
                    c["job_plan_id"],
                    schedule(c),
                    when(&c["next_fire_time"])
                );
            }
            Ok(0)
        }
        CronCommand::Show { id, client } => {
            let r = client_config::resolve(&client)?;
            let c: Value = r.client.call("get_cron_detail", scoped(r.biz, json!({"id": id}))).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
                return Ok(0);
            }
            println!("cron #{} {} ({}), plan #{}", c["id"], c["name"].as_str().unwrap_or(""), status_word(&c), c["job_plan_id"]);
            println!("schedule: {}", schedule(&c));
            println!("next fire: {}", when(&c["next_fire_time"]));
            println!("missed fires: {}", c["missed_policy"].as_str().unwrap_or(""));
            println!("creator: {}", c["creator"].as_str().unwrap_or(""));
            for v in c["global_var_list"].as_array().into_iter().flatten() {
                let value = if v["server"].is_null() { v["value"].to_string() } else { v["server"].to_string() };
                println!("var {} = {value}", v["name"].as_str().unwrap_or(""));
            }
            let fires = c["fire_list"].as_array().cloned().unwrap_or_default();
            if fires.is_empty() {
                println!("no fire yet");
            }
            for f in &fires {
                let job = f["job_instance_id"].as_i64().map_or_else(String::new, |j| format!(" job {j}"));
                let late = if f["missed"] == true { " (missed)" } else { "" };
                let error = f["error"].as_str().map_or_else(String::new, |e| format!(": {e}"));
                println!("fire {}{late} {}{job}{error}", when(&f["due_time"]), f["outcome"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
        CronCommand::Create { plan, name, expression, settings, client } => {
            let r = client_config::resolve(&client)?;
            let mut body = scoped(r.biz, json!({"job_plan_id": plan, "name": name}));
            if let Some(e) = expression {
                body["expression"] = json!(e);
            }
            settings.fill(&mut body)?;
            let list = var_list(&settings.vars)?;
            if !list.is_empty() {
                body["global_var_list"] = json!(list);
            }
            save(&r, &client, body, settings.enable, "created").await
        }
        CronCommand::Update { id, name, plan, expression, settings, client } => {
            if name.is_none() && plan.is_none() && expression.is_none() && !settings.changes_something() {
                anyhow::bail!("nothing to change: give --name, --plan, --expression, --at, --time-zone, --var or --missed");
            }
            let given = var_list(&settings.vars)?;
            let r = client_config::resolve(&client)?;
            let mut body = scoped(r.biz, json!({"id": id}));
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(e) = expression {
                body["expression"] = json!(e);
            }
            if let Some(p) = plan {
                body["job_plan_id"] = json!(p);
            }
            settings.fill(&mut body)?;
            if !given.is_empty() {
                // Values of another plan do not carry over; of the same plan, the others are kept.
                let read: Value =
                    if plan.is_some() { Value::Null } else { r.client.call("get_cron_detail", scoped(r.biz, json!({"id": id}))).await? };
                body["global_var_list"] = json!(merged_vars(&read, given));
            }
            save(&r, &client, body, settings.enable, "updated").await
        }
        CronCommand::Enable { id, client } => set_status(id, client, true).await,
        CronCommand::Disable { id, client } => set_status(id, client, false).await,
        CronCommand::Delete { id, client } => {
            let r = client_config::resolve(&client)?;
            let _: Value = r.client.call("delete_cron", scoped(r.biz, json!({"id": id}))).await?;
            println!("cron #{id} deleted");
            Ok(0)
        }
    }
}

async fn set_status(id: i64, client: ClientArgs, start: bool) -> anyhow::Result<u8> {
    let r = client_config::resolve(&client)?;
    let _: Value = r.client.call("update_cron_status", scoped(r.biz, json!({"id": id, "status": if start { 1 } else { 2 }}))).await?;
    let c: Value = r.client.call("get_cron_detail", scoped(r.biz, json!({"id": id}))).await?;
    if start {
        println!("cron #{id} running; next fire {}", when(&c["next_fire_time"]));
    } else {
        println!("cron #{id} paused");
    }
    Ok(0)
}
