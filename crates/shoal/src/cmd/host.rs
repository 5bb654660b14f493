//! `shoal host list`, `shoal host move`, `shoal host remove`, `shoal host name`.

use clap::Args;
use serde_json::{json, Value};

use crate::cli::{ClientArgs, HostCommand};
use crate::client_config;

#[derive(Args, Debug)]
pub struct MoveArgs {
    /// The host to rebind.
    #[arg(long)]
    pub host_id: i64,
    /// New IPv4 address.
    #[arg(long)]
    pub ip: Option<String>,
    /// New cloud area id.
    #[arg(long)]
    pub cloud: Option<i64>,
    /// New set id.
    #[arg(long = "set")]
    pub set_id: Option<i64>,
    /// New module id.
    #[arg(long = "module")]
    pub module_id: Option<i64>,
    /// (`--biz B` moves the host to business B.)
    #[command(flatten)]
    pub client: ClientArgs,
}

async fn move_host(a: MoveArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        a.ip.is_some() || a.cloud.is_some() || a.set_id.is_some() || a.module_id.is_some() || a.client.biz.is_some(),
        "nothing to move: give --biz, --set, --module, --ip or --cloud"
    );
    let r = client_config::resolve(&a.client)?;
    let mut body = json!({"bk_host_id": a.host_id, "bk_biz_id": a.client.biz, "bk_cloud_id": a.cloud, "ip": a.ip,
                          "set_id": a.set_id, "module_id": a.module_id});
    if let Some(m) = body.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    let h: Value = r.client.shoal("hosts/move", false, body).await?;
    if a.client.json {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(0);
    }
    let opt = |v: &Value| v.as_i64().map(|i| i.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "host {} is now business {}, {}:{}, set {}, module {}; start its agent with the same facts",
        h["bk_host_id"],
        h["bk_biz_id"],
        h["bk_cloud_id"],
        h["ip"].as_str().unwrap_or(""),
        opt(&h["set_id"]),
        opt(&h["module_id"])
    );
    Ok(0)
}

pub async fn run(cmd: HostCommand) -> anyhow::Result<u8> {
    match cmd {
        HostCommand::Move(a) => move_host(a).await,
        HostCommand::Remove { host_ids, force, client } => remove_hosts(&host_ids, force, &client).await,
        HostCommand::Name { set, module, name, client } => name_topology(set, module, &name, &client).await,
        HostCommand::List { selector, all_biz, pending, client } => {
            let r = client_config::resolve(&client)?;
            let biz = (!all_biz).then_some(r.biz);
            let hosts: Value = if pending {
                r.client.shoal("agents/pending", true, json!({})).await?
            } else {
                r.client.hosts(biz, selector.as_deref()).await?
            };
            if client.json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
                return Ok(0);
            }
            if pending {
                println!(
                    "{:<8} {:<6} {:<16} {:<6} {:<6} {:<6} {:<38} HOSTNAME",
                    "HOST_ID", "BIZ", "IP", "CLOUD", "SET", "MODULE", "AGENT_ID"
                );
                let opt = |v: &Value| v.as_i64().map(|i| i.to_string()).unwrap_or_else(|| "-".into());
                for h in hosts["data"].as_array().into_iter().flatten() {
                    println!(
                        "{:<8} {:<6} {:<16} {:<6} {:<6} {:<6} {:<38} {}",
                        h["bk_host_id"].to_string(),
                        h["bk_biz_id"].to_string(),
                        h["ip"].as_str().unwrap_or(""),
                        h["bk_cloud_id"].to_string(),
                        opt(&h["set_id"]),
                        opt(&h["module_id"]),
                        h["agent_id"].as_str().unwrap_or(""),
                        h["hostname"].as_str().unwrap_or("")
                    );
                }
                return Ok(0);
            }
            let none = hosts["data"].as_array().is_none_or(|a| a.is_empty());
            if let (true, Some(sel)) = (none, selector.as_deref()) {
                // Say so, and which labels there are to select by.
                let all: Value = r.client.hosts(biz, None).await.unwrap_or(Value::Null);
                let mut labels: Vec<String> = all["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|h| h["labels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))))
                    .collect();
                labels.sort();
                labels.dedup();
                let scope = biz.map_or_else(|| "of any business".to_string(), |b| format!("of business {b}"));
                let known = match labels.len() {
                    0 => "no host there has labels (agents set them with --label k=v)".to_string(),
                    n if n > 20 => format!("labels in use: {} … ({n} in all)", labels[..20].join(", ")),
                    _ => format!("labels in use: {}", labels.join(", ")),
                };
                eprintln!("no registered host {scope} matches --selector {sel:?}; {known}");
                return Ok(0);
            }
            if none && biz.is_some() && selector.is_none() {
                // Say where the hosts are rather than print an empty table.
                let all: Value = r.client.hosts(None, None).await.unwrap_or(Value::Null);
                let mut elsewhere: Vec<i64> =
                    all["data"].as_array().into_iter().flatten().filter_map(|h| h["bk_biz_id"].as_i64()).collect();
                elsewhere.sort_unstable();
                elsewhere.dedup();
                let list: Vec<String> = elsewhere.iter().map(i64::to_string).collect();
                match elsewhere.first() {
                    Some(b) => eprintln!(
                        "no host is registered in business {}; hosts are registered in business {}: give --biz {b} (or set SHOAL_BIZ, or biz in 'shoal config init')",
                        r.biz,
                        list.join(", ")
                    ),
                    None => eprintln!("no host is registered in business {} yet: start an agent with --bk-biz-id {}", r.biz, r.biz),
                }
                return Ok(0);
            }
            println!(
                "{:<8} {:<6} {:<16} {:<6} {:<6} {:<6} {:<8} {:<20} LABELS",
                "HOST_ID", "BIZ", "IP", "CLOUD", "SET", "MODULE", "STATE", "HOSTNAME"
            );
            let opt = |v: &Value| v.as_i64().map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            // A named set or module shows as `name(id)`.
            let topo = |id: &Value, name: &Value| match name.as_str() {
                Some(n) => format!("{n}({})", opt(id)),
                None => opt(id),
            };
            for h in hosts["data"].as_array().into_iter().flatten() {
                let labels: Vec<String> =
                    h["labels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
                println!(
                    "{:<8} {:<6} {:<16} {:<6} {:<6} {:<6} {:<8} {:<20} {}",
                    h["bk_host_id"].to_string(),
                    h["bk_biz_id"].to_string(),
                    h["ip"].as_str().unwrap_or(""),
                    h["bk_cloud_id"].to_string(),
                    topo(&h["set_id"], &h["set_name"]),
                    topo(&h["module_id"], &h["module_name"]),
                    if h["alive"].as_i64() == Some(1) { "alive" } else { "lost" },
                    h["hostname"].as_str().unwrap_or(""),
                    labels.join(",")
                );
            }
            Ok(0)
        }
    }
}

/// Names (or, with "", unnames) a set or module of the business.
async fn name_topology(set: Option<i64>, module: Option<i64>, name: &str, client: &ClientArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(client)?;
    let (kind, id) = match (set, module) {
        (Some(id), _) => ("set", id),
        (None, Some(id)) => ("module", id),
        (None, None) => anyhow::bail!("give --set ID or --module ID"),
    };
    let body = json!({"bk_scope_type": "biz", "bk_scope_id": r.biz.to_string(), "kind": kind, "id": id, "name": name});
    let v: Value =
        r.client.shoal("topo_names", false, body).await.map_err(|e| anyhow::anyhow!(crate::errors::explain(&anyhow::Error::new(e))))?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if name.trim().is_empty() {
        println!("{kind} {id} of business {} has no name now", r.biz);
    } else {
        println!("{kind} {id} of business {} is named {:?}", r.biz, name.trim());
    }
    Ok(0)
}

/// Removes each host; a connected one is refused without `force`. Exits 1 when any was not
/// removed.
async fn remove_hosts(ids: &[i64], force: bool, client: &ClientArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(client)?;
    let mut failed = 0;
    for id in ids {
        let body = json!({"bk_host_id": id, "force": force});
        match r.client.shoal::<Value>("hosts/remove", false, body).await {
            Ok(h) if client.json => println!("{}", serde_json::to_string_pretty(&h)?),
            Ok(h) => println!(
                "host {id} ({}:{}) removed{}; its agent is revoked",
                h["bk_cloud_id"],
                h["ip"].as_str().unwrap_or(""),
                if h["was_connected"] == json!(true) { " and disconnected" } else { "" }
            ),
            Err(e) => {
                failed += 1;
                let mut msg = crate::errors::explain(&anyhow::Error::new(e));
                if msg.contains("is connected") {
                    msg.push_str(&format!(" (shoal host remove {id} --force)"));
                }
                eprintln!("error: {msg}");
            }
        }
    }
    Ok(u8::from(failed > 0))
}
