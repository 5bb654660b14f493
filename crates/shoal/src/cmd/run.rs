//! `shoal run`: submit through the JOB v3 API, follow with a progress bar, print results
//! grouped. Exits 1 when any host did not succeed.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use shoal_client::{Client, Scope};
use shoal_proto::jobv3::{IpDto, JobInstanceStatus, ServerDto, TopoNode};
use shoal_proto::status::{host_status, RunStatus, ScriptLanguage};

use crate::cli::{RunArgs, TargetArgs};
use crate::client_config::{self, current_os_user};
use crate::output;

pub fn parse_ip(s: &str) -> anyhow::Result<IpDto> {
    let (cloud, ip) = match s.split_once(':') {
        Some((c, ip)) => (c.trim().parse::<i64>().with_context(|| format!("bad cloud id in {s:?}"))?, ip.trim()),
        None => (0, s.trim()),
    };
    anyhow::ensure!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip:?} is not an IPv4 address");
    Ok(IpDto { bk_cloud_id: Some(cloud), ip: Some(ip.to_string()), bk_host_id: None })
}

pub fn parse_topo(s: &str) -> anyhow::Result<TopoNode> {
    let (ty, id) = s.split_once(':').with_context(|| format!("topology node {s:?} must be biz:ID, set:ID or module:ID"))?;
    anyhow::ensure!(matches!(ty, "biz" | "set" | "module"), "topology node type {ty:?} must be biz, set or module");
    Ok(TopoNode { id: Some(id.parse().with_context(|| format!("bad id in {s:?}"))?), node_type: Some(ty.to_string()) })
}

/// The targets, the union of every flag exactly as written. JOB ignores `ip_list` when
/// `host_id_list` is given, so addresses given alongside host ids are turned into host ids
/// here (an address that is no registered host is an error, not a silent drop).
pub async fn target(a: &TargetArgs, client: &Client, biz: i64) -> anyhow::Result<ServerDto> {
    let mut t = ServerDto::default();
    let mut ids = a.hosts.clone();
    let ips = a.ips.iter().map(|s| parse_ip(s)).collect::<anyhow::Result<Vec<_>>>()?;
    if a.selector.is_some() || a.all {
        let hosts: Value = client.hosts(Some(biz), a.selector.as_deref()).await?;
        let found: Vec<i64> = hosts["data"].as_array().into_iter().flatten().filter_map(|h| h["bk_host_id"].as_i64()).collect();
        anyhow::ensure!(!found.is_empty(), "no registered host of business {biz} matches");
        ids.extend(found);
    }
    if !ids.is_empty() && !ips.is_empty() {
        let hosts: Value = client.hosts(Some(biz), None).await?;
        let known: Vec<&Value> = hosts["data"].as_array().into_iter().flatten().collect();
        for ip in &ips {
            let (cloud, addr) = (ip.bk_cloud_id.unwrap_or(0), ip.ip.as_deref().unwrap_or(""));
            let id = known
                .iter()
                .find(|h| h["ip"].as_str() == Some(addr) && h["bk_cloud_id"].as_i64().unwrap_or(0) == cloud)
                .and_then(|h| h["bk_host_id"].as_i64())
                .with_context(|| format!("{cloud}:{addr} is not a registered host of business {biz}"))?;
            ids.push(id);
        }
    } else if !ips.is_empty() {
        t.ip_list = Some(ips);
    }
    if !ids.is_empty() {
        ids.sort_unstable();
        ids.dedup();
        t.host_id_list = Some(ids);
    }
    if !a.topo.is_empty() {
        t.topo_node_list = Some(a.topo.iter().map(|s| parse_topo(s)).collect::<anyhow::Result<_>>()?);
    }
    anyhow::ensure!(!t.is_empty(), "no targets: give --host, --ip, --topo, --selector or --all");
    Ok(t)
}

fn language(a: &RunArgs) -> anyhow::Result<ScriptLanguage> {
    if let Some(l) = &a.lang {
        return ScriptLanguage::from_name(l).with_context(|| format!("unknown language {l:?}: use shell, python, perl or powershell"));
    }
    let ext = a.file.as_ref().and_then(|f| f.extension()).and_then(|e| e.to_str()).unwrap_or("");
    Ok(ScriptLanguage::from_name(ext).unwrap_or(ScriptLanguage::Shell))
}

pub async fn run(a: RunArgs) -> anyhow::Result<u8> {
    let r = client_config::resolve(&a.client)?;
    let script: Vec<u8> = match (&a.command, &a.file) {
        (Some(c), _) => c.clone().into_bytes(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => anyhow::bail!("nothing to run: give -c 'command' or -f script"),
    };
    let lang = language(&a)?;
    let scope = Scope::biz(r.biz);
    let target = target(&a.targets, &r.client, r.biz).await?;
    let account = a.account.clone().unwrap_or_else(current_os_user);
    let job = r.client.run_script(&scope, lang as i32, &script, a.param.as_deref(), &account, target, a.timeout, a.name.clone()).await?;
    if a.no_wait {
        if a.client.json {
            println!("{}", serde_json::to_string_pretty(&job)?);
        } else {
            println!("job {} started (step {})", job.job_instance_id, job.step_instance_id.unwrap_or_default());
        }
        return Ok(0);
    }
    show_job(&r.client, &scope, job.job_instance_id, a.client.json).await
}

/// Follow a job to its end, then print it; shared by `shoal run`, `shoal job status` and
/// `shoal dev --run`.
pub async fn show_job(client: &Client, scope: &Scope, job_id: i64, json: bool) -> anyhow::Result<u8> {
    let bar = if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} [{bar:30}] {pos}/{len} hosts done · {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(job_id.to_string());
    let st = client
        .wait(scope, job_id, None, |st: &JobInstanceStatus| {
            let hosts: Vec<_> = st.step_instance_list.iter().flat_map(|s| s.step_ip_result_list.iter().flatten()).collect();
            bar.set_length(hosts.len() as u64);
            bar.set_position(hosts.iter().filter(|h| host_status::is_final(h.status)).count() as u64);
            let failed = hosts.iter().filter(|h| host_status::is_final(h.status) && !host_status::is_success(h.status)).count();
            bar.set_message(format!("{failed} failed"));
        })
        .await?;
    bar.finish_and_clear();
    print_job(client, scope, &st, json).await
}

pub async fn print_job(client: &Client, scope: &Scope, st: &JobInstanceStatus, json: bool) -> anyhow::Result<u8> {
    let mut logs = vec![];
    for step in &st.step_instance_list {
        let ids: Vec<i64> = step.step_ip_result_list.iter().flatten().map(|h| h.bk_host_id).collect();
        if !ids.is_empty() {
            let got = client.host_logs(scope, st.job_instance.job_instance_id, step.step_instance_id, &ids).await?;
            logs.extend(got.into_iter().map(|l| (step.step_instance_id, l)));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&output::to_json(st, &logs))?);
    } else {
        let by_host: std::collections::HashMap<(i64, i64), &str> =
            logs.iter().map(|(step, l)| ((*step, l.bk_host_id), l.log_content.as_str())).collect();
        let multi = st.step_instance_list.len() > 1;
        println!();
        for (i, step) in st.step_instance_list.iter().enumerate() {
            if multi {
                let status = RunStatus::from_i32(step.status).map_or("unknown", RunStatus::label);
                let kind = if step.step_type == shoal_proto::status::step_type::CONFIRM { " (confirmation)" } else { "" };
                println!("── step {}: {}{kind} · {status}", i + 1, step.name);
            }
            let outcomes: Vec<output::HostOutcome> = step
                .step_ip_result_list
                .iter()
                .flatten()
                .map(|h| output::HostOutcome {
                    host: h,
                    output: by_host.get(&(step.step_instance_id, h.bk_host_id)).copied().unwrap_or(""),
                })
                .collect();
            output::print_groups(&output::group(&outcomes));
        }
        println!("{}", output::summary(st));
    }
    let ok = st.job_instance.status == RunStatus::Success as i32;
    Ok(if ok { 0 } else { 1 })
}
