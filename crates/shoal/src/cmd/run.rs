//! `shoal run`: submit through the JOB v3 API, follow with a progress bar (or stream each
//! host's output with `--follow`), print results grouped. Exits 1 when any host did not
//! succeed. Ctrl-C terminates the job or detaches from it (`--on-interrupt`); `shoal job
//! watch` re-attaches. A job waiting for a confirmation says who may give it and how.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use shoal_client::{Client, Scope};
use shoal_proto::jobv3::{DynamicGroupRef, FastExecuteScriptReq, IpDto, JobInstanceStatus, ScopeReq, ServerDto, TopoNode};
use shoal_proto::status::{host_status, step_type, RunStatus, ScriptLanguage};

use crate::cli::{OnInterrupt, RollingModeArg, RunArgs, TargetArgs};
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
        match &a.selector {
            Some(sel) => anyhow::ensure!(
                !found.is_empty(),
                "no registered host of business {biz} matches --selector {sel:?} — see the labels with 'shoal host list --biz {biz}'"
            ),
            None => anyhow::ensure!(!found.is_empty(), "business {biz} has no registered host — see 'shoal host list --all-biz'"),
        }
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
    if !a.groups.is_empty() {
        t.dynamic_group_list = Some(a.groups.iter().map(|id| DynamicGroupRef { id: Some(id.clone()) }).collect());
    }
    anyhow::ensure!(!t.is_empty(), "no targets: give --host, --ip, --topo, --selector, --group or --all");
    Ok(t)
}

fn language(a: &RunArgs) -> anyhow::Result<ScriptLanguage> {
    if let Some(l) = &a.lang {
        return ScriptLanguage::from_name(l).with_context(|| {
            // `--lang zh` meant for the messages (as in tools whose --lang is the UI's).
            let ui = crate::errors::is_ui_lang(l);
            let hint = if ui { format!("; for messages in that language use --ui-lang {l} (or SHOAL_LANG={l})") } else { String::new() };
            format!("{l:?} is not a script language: --lang takes shell, python, perl or powershell{hint}")
        });
    }
    let ext = a.file.as_ref().and_then(|f| f.extension()).and_then(|e| e.to_str()).unwrap_or("");
    Ok(ScriptLanguage::from_name(ext).unwrap_or(ScriptLanguage::Shell))
}

/// A library script named on the command line: `NAME` (or its id) runs the online version,
/// `NAME@VERSION` that version. The business's scripts first, then public ones.
async fn library_script(client: &Client, biz: i64, spec: &str) -> anyhow::Result<(Option<String>, Option<i64>)> {
    let (name, version) = match spec.rsplit_once('@') {
        Some((n, v)) if !v.is_empty() => (n, Some(v)),
        _ => (spec, None),
    };
    for public in [false, true] {
        let (list, detail) = if public {
            ("get_public_script_list", "get_public_script_version_detail")
        } else {
            ("get_script_list", "get_script_version_detail")
        };
        let scope = if public { json!({}) } else { json!({"bk_scope_type": "biz", "bk_scope_id": biz.to_string()}) };
        let mut params = scope.clone();
        params["length"] = json!(1000);
        let page: Value = client.call(list, params).await?;
        let found = page["data"].as_array().into_iter().flatten().find(|s| s["name"] == name || s["id"] == name);
        let Some(id) = found.and_then(|s| s["id"].as_str()) else { continue };
        let Some(version) = version else { return Ok((Some(id.to_string()), None)) };
        let mut params = scope;
        params["script_id"] = json!(id);
        params["version"] = json!(version);
        let v: Value = client.call(detail, params).await.with_context(|| format!("script {name:?} has no version {version:?}"))?;
        let vid = v["id"].as_i64().with_context(|| format!("script {name:?} has no version {version:?}"))?;
        return Ok((None, Some(vid)));
    }
    anyhow::bail!(
        "no script named {name:?} in business {biz} or among the public scripts — list them with 'shoal script list --biz {biz}' (--public)"
    )
}

/// The `rolling_config` of `--batch` and `--mode`.
fn rolling(a: &RunArgs) -> Option<Value> {
    let expr = a.batch.as_ref()?;
    let mode = match a.mode.unwrap_or(RollingModeArg::Pause) {
        RollingModeArg::Pause => 1,
        RollingModeArg::Ignore => 2,
        RollingModeArg::Confirm => 3,
    };
    Some(json!({"expression": expr, "mode": mode, "type": 1}))
}

pub async fn run(a: RunArgs) -> anyhow::Result<u8> {
    // A wrong flag is said before anything is asked of the server.
    let lang = language(&a)?;
    let r = client_config::resolve(&a.client)?;
    let scope = Scope::biz(r.biz);
    let mut req = FastExecuteScriptReq {
        scope: ScopeReq { bk_scope_type: Some(scope.scope_type.clone()), bk_scope_id: Some(scope.scope_id.clone()), bk_biz_id: None },
        ..Default::default()
    };
    match (&a.command, &a.file, &a.script) {
        (Some(c), _, _) => req.script_content = Some(shoal_client::b64(c)),
        (None, Some(f), _) => {
            req.script_content = Some(shoal_client::b64(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?))
        }
        (None, None, Some(spec)) => (req.script_id, req.script_version_id) = library_script(&r.client, r.biz, spec).await?,
        (None, None, None) => anyhow::bail!("nothing to run: give -c 'command', -f script or --script NAME"),
    }
    if req.script_content.is_some() {
        req.script_language = Some(lang as i32);
    }
    req.target_server = Some(target(&a.targets, &r.client, r.biz).await?);
    req.account_alias = Some(a.account.clone().unwrap_or_else(current_os_user));
    req.script_param = a.param.as_deref().filter(|p| !p.is_empty()).map(shoal_client::b64);
    req.timeout = a.timeout;
    req.task_name = a.name.clone();
    req.rolling_config = rolling(&a);
    let job = r.client.fast_execute_script(&req).await?;
    if a.no_wait {
        if a.client.json {
            println!("{}", serde_json::to_string_pretty(&job)?);
        } else {
            println!("job {} started (step {})", job.job_instance_id, job.step_instance_id.unwrap_or_default());
        }
        return Ok(0);
    }
    let how = Watch { follow: a.follow, json: a.client.json, on_interrupt: a.on_interrupt };
    watch(&r.client, &scope, job.job_instance_id, how).await
}

/// Follow a job to its end, then print it; shared by `shoal run`, `shoal template run` and
/// `shoal dev --run`.
pub async fn show_job(client: &Client, scope: &Scope, job_id: i64, json: bool) -> anyhow::Result<u8> {
    watch(client, scope, job_id, Watch { follow: false, json, on_interrupt: None }).await
}

/// How a job is followed.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Stream each host's output as it arrives.
    pub follow: bool,
    pub json: bool,
    pub on_interrupt: Option<OnInterrupt>,
}

/// Exit status after detaching on Ctrl-C (128 + SIGINT, as a shell reports it).
const DETACHED: u8 = 130;

/// Follow a job until it ends, then print it. Ctrl-C terminates the job (and goes on
/// following it to its end) or detaches, as `how.on_interrupt` says or the user answers.
pub async fn watch(client: &Client, scope: &Scope, job_id: i64, how: Watch) -> anyhow::Result<u8> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let policy = match how.on_interrupt {
        Some(OnInterrupt::Ask) | None if interactive => OnInterrupt::Ask,
        Some(OnInterrupt::Ask) | None => OnInterrupt::Detach,
        Some(p) => p,
    };
    let show_bar = !how.json && !how.follow && std::io::stderr().is_terminal();
    let bar = if show_bar { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} [{bar:30}] {pos}/{len} hosts done · {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(job_id.to_string());
    let biz = scope.biz_id().unwrap_or(0);
    let reattach = format!("shoal job watch {job_id} --biz {biz}{}", if how.follow { " --follow" } else { "" });
    // Listening from here on: a Ctrl-C as soon as output shows is ours, not the default death.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let follow = follow_job(client, scope, job_id, how.follow, &bar);
    tokio::pin!(follow);
    let mut terminating = false;
    let st = loop {
        tokio::select! {
            st = &mut follow => break st?,
            _ = sigint.recv() => {
                let choice = if terminating {
                    OnInterrupt::Detach
                } else if policy == OnInterrupt::Ask {
                    bar.suspend(ask_on_interrupt)
                } else {
                    policy
                };
                if choice == OnInterrupt::Terminate {
                    client.operate_job(scope, job_id, 1).await?;
                    bar.suspend(|| eprintln!("job {job_id}: terminating; Ctrl-C again to stop waiting for it"));
                    terminating = true;
                    continue;
                }
                bar.finish_and_clear();
                eprintln!("detached; job {job_id} runs on. Re-attach with: {reattach}");
                return Ok(DETACHED);
            }
        }
    };
    bar.finish_and_clear();
    if how.follow && !how.json {
        println!("{}", crate::output::summary(&st));
        return Ok(if st.job_instance.status == RunStatus::Success as i32 { 0 } else { 1 });
    }
    print_job(client, scope, &st, how.json).await
}

/// "terminate the job or detach?", answered on the terminal; anything but t means detach.
fn ask_on_interrupt() -> OnInterrupt {
    eprint!("\nterminate the job or detach (it runs on)? [t/d] ");
    let mut line = String::new();
    match std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line) {
        Ok(_) if line.trim().to_ascii_lowercase().starts_with('t') => OnInterrupt::Terminate,
        _ => OnInterrupt::Detach,
    }
}

/// What has been printed of one host's output in one step.
#[derive(Default)]
struct Stream {
    /// Bytes of the log printed (or held in `partial`).
    seen: usize,
    /// The end of the log after its last newline, printed once the line is complete.
    partial: String,
    /// The host's task was final when its log was last read: nothing more will come.
    done: bool,
}

/// Polls a job until it is finished: the progress bar, a notice for each step that waits for
/// a user, and with `follow` each host's new output lines, `IP: line`. Logs are read only for
/// hosts running now or that ended since the last look.
async fn follow_job(client: &Client, scope: &Scope, job_id: i64, follow: bool, bar: &ProgressBar) -> anyhow::Result<JobInstanceStatus> {
    let mut delay = Duration::from_millis(50);
    let mut streams: HashMap<(i64, i64), Stream> = HashMap::new();
    let mut told: HashSet<(i64, i32, Option<i32>)> = HashSet::new();
    loop {
        let st = client.job_status(scope, job_id, true).await?;
        let hosts: Vec<_> = st.step_instance_list.iter().flat_map(|s| s.step_ip_result_list.iter().flatten()).collect();
        bar.set_length(hosts.len() as u64);
        bar.set_position(hosts.iter().filter(|h| host_status::is_final(h.status)).count() as u64);
        let failed = hosts.iter().filter(|h| host_status::is_final(h.status) && !host_status::is_success(h.status)).count();
        bar.set_message(format!("{failed} failed"));
        for step in &st.step_instance_list {
            let waiting = step.status == RunStatus::WaitingUser as i32;
            if waiting && !st.finished && told.insert((step.step_instance_id, step.execute_count, step.current_batch)) {
                let notice = waiting_notice(client, scope, job_id, step).await;
                bar.suspend(|| eprintln!("{notice}"));
            }
        }
        if follow {
            for step in &st.step_instance_list {
                print_new_output(client, scope, job_id, step, &mut streams).await?;
            }
        }
        if st.finished {
            return Ok(st);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

async fn print_new_output(
    client: &Client,
    scope: &Scope,
    job_id: i64,
    step: &shoal_proto::jobv3::StepInstanceDto,
    streams: &mut HashMap<(i64, i64), Stream>,
) -> anyhow::Result<()> {
    if step.step_type == step_type::CONFIRM {
        return Ok(());
    }
    let mut want = vec![];
    let mut final_now = HashMap::new();
    for h in step.step_ip_result_list.iter().flatten() {
        let s = streams.entry((step.step_instance_id, h.bk_host_id)).or_default();
        let fin = host_status::is_final(h.status);
        if !fin {
            s.done = false; // running (again, after a retry)
        }
        if h.status == host_status::RUNNING || (fin && !s.done && h.start_time.is_some()) {
            want.push(h.bk_host_id);
            final_now.insert(h.bk_host_id, (fin, h.ip.clone()));
        }
    }
    if want.is_empty() {
        return Ok(());
    }
    let logs = client.host_logs(scope, job_id, step.step_instance_id, &want).await?;
    let mut out = String::new();
    for l in &logs.logs {
        let Some(&(fin, ref ip)) = final_now.get(&l.bk_host_id) else { continue };
        let s = streams.entry((step.step_instance_id, l.bk_host_id)).or_default();
        let content = l.log_content.as_str();
        if content.len() < s.seen || !content.is_char_boundary(s.seen) {
            // Rewritten (a retry started over): print it anew.
            s.seen = 0;
            s.partial.clear();
        }
        s.partial.push_str(&content[s.seen..]);
        s.seen = content.len();
        while let Some(i) = s.partial.find('\n') {
            out.push_str(&format!("{ip}: {}\n", &s.partial[..i]));
            s.partial.drain(..=i);
        }
        if fin {
            if !s.partial.is_empty() {
                out.push_str(&format!("{ip}: {}\n", s.partial));
                s.partial.clear();
            }
            s.done = true;
        }
    }
    for id in &logs.missing {
        if final_now.get(id).is_some_and(|f| f.0) {
            streams.entry((step.step_instance_id, *id)).or_default().done = true;
        }
    }
    if !out.is_empty() {
        print!("{out}");
        std::io::Write::flush(&mut std::io::stdout())?;
    }
    Ok(())
}

/// What a step waiting for a user waits for, who may give it and the command to do it.
pub(crate) async fn waiting_notice(client: &Client, scope: &Scope, job_id: i64, step: &shoal_proto::jobv3::StepInstanceDto) -> String {
    let biz = scope.biz_id().unwrap_or(0);
    let sid = step.step_instance_id;
    if step.step_type != step_type::CONFIRM {
        // A rolling step between batches (mode confirm).
        let batch = step.current_batch.map(|b| format!(" after batch {b} of {}", step.total_batch.unwrap_or(0))).unwrap_or_default();
        return format!(
            "job {job_id} waits for a go-ahead{batch} (step {:?}).\n  to go on:  shoal job continue {job_id} --step {sid} --biz {biz}\n  to stop:   shoal job terminate {job_id} --biz {biz}",
            step.name
        );
    }
    let params = json!({"bk_scope_type": scope.scope_type, "bk_scope_id": scope.scope_id, "job_instance_id": job_id});
    let info: Option<Value> = client.shoal("job_confirmation", true, params).await.ok();
    let entry = info.as_ref().and_then(|v| v["data"].as_array()?.iter().find(|e| e["step_instance_id"] == sid).cloned());
    let message =
        entry.as_ref().and_then(|e| e["message"].as_str()).filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default();
    let users: Vec<&str> = entry.as_ref().and_then(|e| e["users"].as_array()).into_iter().flatten().filter_map(Value::as_str).collect();
    let who = match (&entry, users.is_empty()) {
        (None, _) => "the step's confirmers".to_string(),
        (Some(_), true) => format!("anyone who may run jobs in business {biz}"),
        (Some(_), false) => users.join(", "),
    };
    format!(
        "job {job_id} waits for a confirmation at step {:?}{message}\n  who may confirm: {who}\n  to confirm: shoal job confirm {job_id} --step {sid} --biz {biz}\n  to reject:  shoal job reject {job_id} --step {sid} --biz {biz}",
        step.name
    )
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
