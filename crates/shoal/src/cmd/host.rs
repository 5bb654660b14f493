//! `shoal host list`.

use serde_json::Value;

use crate::cli::HostCommand;
use crate::client_config;

pub async fn run(cmd: HostCommand) -> anyhow::Result<u8> {
    match cmd {
        HostCommand::List { selector, all_biz, client } => {
            let r = client_config::resolve(&client)?;
            let biz = (!all_biz).then_some(r.biz);
            let hosts: Value = r.client.hosts(biz, selector.as_deref()).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&hosts)?);
                return Ok(0);
            }
            println!(
                "{:<8} {:<6} {:<16} {:<6} {:<6} {:<6} {:<8} {:<20} LABELS",
                "HOST_ID", "BIZ", "IP", "CLOUD", "SET", "MODULE", "ALIVE", "HOSTNAME"
            );
            let opt = |v: &Value| v.as_i64().map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            for h in hosts["data"].as_array().into_iter().flatten() {
                let labels: Vec<String> =
                    h["labels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
                println!(
                    "{:<8} {:<6} {:<16} {:<6} {:<6} {:<6} {:<8} {:<20} {}",
                    h["bk_host_id"].to_string(),
                    h["bk_biz_id"].to_string(),
                    h["ip"].as_str().unwrap_or(""),
                    h["bk_cloud_id"].to_string(),
                    opt(&h["set_id"]),
                    opt(&h["module_id"]),
                    if h["alive"].as_i64() == Some(1) { "yes" } else { "no" },
                    h["hostname"].as_str().unwrap_or(""),
                    labels.join(",")
                );
            }
            Ok(0)
        }
    }
}
