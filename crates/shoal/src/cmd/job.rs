//! `shoal job status|logs|terminate|confirm|reject|retry|continue|watch|list`.

use serde_json::Value;
use shoal_client::Scope;
use shoal_proto::status::{host_status, RunStatus};

use super::run::print_job;
use crate::cli::JobCommand;
use crate::client_config;

pub async fn run(cmd: JobCommand) -> anyhow::Result<u8> {
    match cmd {
        JobCommand::Status { job_instance_id, client } => {
            let r = client_config::resolve(&client)?;
            let scope = Scope::biz(r.biz);
            let st = r.client.job_status(&scope, job_instance_id, true).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(0);
            }
            println!("{}", crate::output::summary(&st));
            for step in &st.step_instance_list {
                for h in step.step_ip_result_list.iter().flatten() {
                    println!(
                        "  {:<16} #{:<6} {:<3} {:<18} exit {}",
                        h.ip,
                        h.bk_host_id,
                        h.status,
                        host_status::label(h.status),
                        h.exit_code
                    );
                }
            }
            for step in st.step_instance_list.iter().filter(|s| s.status == RunStatus::WaitingUser as i32) {
                println!("{}", super::run::waiting_notice(&r.client, &scope, job_instance_id, step).await);
            }
            Ok(if st.finished && st.job_instance.status != RunStatus::Success as i32 { 1 } else { 0 })
        }
        JobCommand::Logs { job_instance_id, hosts, client } => {
            let r = client_config::resolve(&client)?;
            let scope = Scope::biz(r.biz);
            let mut st = r.client.job_status(&scope, job_instance_id, true).await?;
            if !hosts.is_empty() {
                for s in &mut st.step_instance_list {
                    if let Some(l) = &mut s.step_ip_result_list {
                        l.retain(|h| hosts.contains(&h.bk_host_id));
                    }
                }
            }
            print_job(&r.client, &scope, &st, client.json).await
        }
        JobCommand::Terminate { job_instance_id, client } => {
            let r = client_config::resolve(&client)?;
            r.client.operate_job(&Scope::biz(r.biz), job_instance_id, 1).await?;
            println!("job {job_instance_id}: terminating");
            Ok(0)
        }
        JobCommand::Confirm { job_instance_id, step, client } => operate(job_instance_id, step, 6, &[7], client).await,
        JobCommand::Reject { job_instance_id, step, client } => operate(job_instance_id, step, 9, &[7], client).await,
        JobCommand::Retry { job_instance_id, all, step, client } => {
            operate(job_instance_id, step, if all { 8 } else { 2 }, &[4, 11], client).await
        }
        JobCommand::Continue { job_instance_id, step, client } => operate(job_instance_id, step, 13, &[7], client).await,
        JobCommand::Watch { job_instance_id, follow, on_interrupt, client } => {
            let r = client_config::resolve(&client)?;
            let how = super::run::Watch { follow, json: client.json, on_interrupt };
            super::run::watch(&r.client, &Scope::biz(r.biz), job_instance_id, how).await
        }
        JobCommand::List { limit, client } => {
            let r = client_config::resolve(&client)?;
            let page: Value = r.client.job_list(&Scope::biz(r.biz), 0, limit).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(0);
            }
            println!("{:<8} {:<20} {:<22} {:<10} NAME", "ID", "CREATED (UTC)", "STATUS", "OPERATOR");
            for j in page["data"].as_array().into_iter().flatten() {
                let status = j["status"].as_i64().and_then(|s| RunStatus::from_i32(s as i32)).map_or("?", RunStatus::label);
                println!(
                    "{:<8} {:<20} {:<22} {:<10} {}",
                    j["job_instance_id"].to_string(),
                    shoal_core::time::human(j["create_time"].as_i64().unwrap_or(0)),
                    status,
                    j["operator"].as_str().unwrap_or(""),
                    j["name"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
    }
}

/// `operate_step_instance` on the given step, or on the job's step in one of `states`.
async fn operate(job: i64, step: Option<i64>, code: i32, states: &[i64], client: crate::cli::ClientArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(&client)?;
    let scope = Scope::biz(r.biz);
    let step = match step {
        Some(s) => s,
        None => {
            let st = r.client.job_status(&scope, job, false).await?;
            let found = st.step_instance_list.iter().find(|s| states.contains(&(s.status as i64)));
            match found {
                Some(s) => s.step_instance_id,
                None => anyhow::bail!("job {job} has no step in a state this applies to; give --step"),
            }
        }
    };
    let body = serde_json::json!({"bk_scope_type": scope.scope_type, "bk_scope_id": scope.scope_id,
                                  "job_instance_id": job, "step_instance_id": step, "operation_code": code});
    let _: Value = r.client.call("operate_step_instance", body).await?;
    println!("job {job}, step {step}: done");
    Ok(0)
}
