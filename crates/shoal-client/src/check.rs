//! `shoal check`: run a check script on hosts, read every host's answer and report per host
//! and per item (the AgentChecker flow, generalised).
//!
//! A check script prints one JSON line (the contract, see `docs/checks.md`):
//! `{"status": bool, "data": [{"module": str, "item": str, "status": bool, "message": str}]}`.
//! The built-in script ([`BUILTIN_SCRIPT`]) checks the Shoal agent and, when asked, the
//! bkunifylogbeat log collector with the original's item codes.
//!
//! The run is recorded on the server (`/api/shoal/v1/checks`) under the key (check, sorted
//! hosts): `wait` → `started` → `finish`, readable while it runs; a second run on the same
//! key while one runs is refused with 500006.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_proto::code::Lang;
use shoal_proto::jobv3::JobInstanceStatus;
use shoal_proto::status::{host_status, ScriptLanguage};

use crate::{Client, ClientError, Host, HostRef, Result, Scope, TargetMode, WaitPolicy};

/// The built-in check script (POSIX sh).
pub const BUILTIN_SCRIPT: &str = include_str!("check/agent_check.sh");
/// Name (and record key part) of the built-in check.
pub const BUILTIN_NAME: &str = "shoal-agent";

/// One item of a check script's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckItem {
    pub module: String,
    pub item: String,
    pub status: bool,
    #[serde(default)]
    pub message: String,
}

/// A check script's answer: one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutput {
    pub status: bool,
    pub data: Vec<CheckItem>,
}

/// A host's output split into answers and lines that are not one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOutput {
    pub answers: Vec<CheckOutput>,
    /// Non-empty lines that are not a valid answer, with why.
    pub bad_lines: Vec<(String, String)>,
}

/// Reads every non-empty line of a host's output as an answer of the contract.
pub fn parse_output(log: &str) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    for line in log.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<CheckOutput>(line) {
            Ok(a) => out.answers.push(a),
            Err(e) => out.bad_lines.push((line.chars().take(500).collect(), e.to_string())),
        }
    }
    out
}

/// The label of an item code in the caller's language: the original's `CHECK_AGENT_STEP`
/// labels, Shoal's own items, else the code itself (custom scripts).
pub fn label(item: &str, lang: Lang) -> String {
    let (zh, en) = match item {
        "bin_file" => ("检查二进制文件是否存在", "check the binary file exists"),
        "process" => ("检查进程是否存在", "check the process is running"),
        "main_config" => ("检查主配置是否存在及正确", "check the main config exists and is correct"),
        "config" => ("检查配置是否正确", "check the sub config is correct"),
        "hosted" => ("检查采集插件是否被gse_agent托管", "check the collector is hosted by gse_agent"),
        "socket" => ("检查socket文件是否存在", "check the socket file exists"),
        "healthz" => ("执行healthz自检查查看结果", "run the healthz self-check"),
        "socket_queue_status" => ("检查socket队列状态", "check the socket queue status"),
        "dataserver_port" => ("检查data server端口是否存在", "check the data server port exists"),
        "version" => ("检查版本是否一致", "check the version"),
        "state_dir" => ("检查状态目录", "check the state directory"),
        "server" => ("检查服务端是否可达", "check the server is reachable"),
        "disk_space" => ("检查磁盘剩余空间", "check free disk space"),
        "clock_skew" => ("检查与服务端的时钟偏差", "check clock skew against the server"),
        other => return other.to_string(),
    };
    match lang {
        Lang::Zh => zh.to_string(),
        Lang::En => en.to_string(),
    }
}

/// Options of the built-in check's log collector part (the original's script options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorOptions {
    pub gse_path: String,
    pub subscription_id: i64,
    pub ipc_socket_file: String,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions { gse_path: "/usr/local/gse/".into(), subscription_id: 0, ipc_socket_file: "/var/run/ipc.state.report".into() }
    }
}

/// Which script a check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckScript {
    /// The built-in agent check.
    Builtin {
        /// URL of the server as the hosts reach it (`/healthz` is fetched).
        server_url: Option<String>,
        expect_version: Option<String>,
        min_free_mb: u64,
        collector: Option<CollectorOptions>,
    },
    /// A script of the caller's honouring the contract.
    Custom { name: String, content: String, language: i32, param: Option<String> },
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub script: CheckScript,
    pub hosts: Vec<HostRef>,
    pub mode: TargetMode,
    /// Execution account alias.
    pub account: String,
    /// Script timeout on each host, seconds.
    pub timeout_secs: i64,
    /// How long to follow the job before reporting unfinished hosts as timed out.
    pub deadline: Duration,
    /// Largest tolerated difference between a host's clock and the server's.
    pub max_skew_secs: i64,
    pub lang: Lang,
}

impl CheckOptions {
    pub fn name(&self) -> String {
        match &self.script {
            CheckScript::Builtin { collector: Some(c), .. } => format!("{BUILTIN_NAME}+bkunifylogbeat:{}", c.subscription_id),
            CheckScript::Builtin { .. } => BUILTIN_NAME.to_string(),
            CheckScript::Custom { name, .. } => name.clone(),
        }
    }

    fn script(&self) -> (String, i32, Option<String>) {
        match &self.script {
            CheckScript::Builtin { server_url, expect_version, min_free_mb, collector } => {
                let mut p = vec![format!("--min-free-mb={min_free_mb}")];
                if let Some(u) = server_url {
                    p.push(format!("--server={}", shell_quote(u)));
                }
                if let Some(v) = expect_version {
                    p.push(format!("--expect-version={}", shell_quote(v)));
                }
                if let Some(c) = collector {
                    // The original's parameter string.
                    p.push(format!("--subscription_id={}", c.subscription_id));
                    p.push(format!("--ipc_socket_file={}", shell_quote(&c.ipc_socket_file)));
                    p.push(format!("--gse_path={}", shell_quote(&c.gse_path)));
                }
                (BUILTIN_SCRIPT.to_string(), ScriptLanguage::Shell as i32, Some(p.join(" ")))
            }
            CheckScript::Custom { content, language, param, .. } => (content.clone(), *language, param.clone()),
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:=@,+".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A host's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Answered and every item passed.
    Ok,
    /// Answered; some item failed.
    Failed,
    /// The script did not run to an answer there (agent down, timeout, …).
    NoAnswer,
    /// Ran, but printed no valid answer.
    BadOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportItem {
    pub module: String,
    pub item: String,
    pub label: String,
    pub status: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub host: Host,
    pub verdict: Verdict,
    /// JOB host status (9 success, 310 agent error, 102 timeout, …), 0 when unknown.
    pub job_status: i32,
    pub exit_code: i32,
    pub items: Vec<ReportItem>,
    /// Why there is no answer, and output lines that are not one.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub hosts: usize,
    pub ok: usize,
    pub failed: usize,
    pub no_answer: usize,
    pub bad_output: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub check_id: String,
    pub check: String,
    pub job_instance_id: i64,
    pub step_instance_id: i64,
    pub hosts: Vec<HostReport>,
    /// Failures of the run itself (submit refused, deadline passed, …).
    pub errors: Vec<String>,
    pub summary: Summary,
}

impl Report {
    /// Every host answered and passed, and the run had no error.
    pub fn all_ok(&self) -> bool {
        self.errors.is_empty() && self.hosts.iter().all(|h| h.verdict == Verdict::Ok)
    }
}

fn why_no_answer(status: i32, lang: Lang) -> String {
    let (zh, en) = match status {
        host_status::AGENT_ERROR | host_status::GSE_AGENT_ERROR => {
            ("Agent异常：主机上的代理未连接", "agent down: no agent connected for this host")
        }
        host_status::SCRIPT_TIMEOUT => ("脚本执行超时", "timed out on the host"),
        host_status::WAITING | host_status::RUNNING => ("截止时间已到，仍未完成", "still running when the deadline passed"),
        host_status::TERMINATE_SUCCESS | host_status::SCRIPT_TERMINATE => ("作业被终止", "the job was terminated"),
        host_status::GSE_USER_ERROR => ("执行账号在主机上不存在", "the execution account does not exist on the host"),
        host_status::SCRIPT_FAILED => ("脚本无法启动", "the script could not start"),
        host_status::SUBMIT_FAILED => ("任务下发失败", "dispatch failed"),
        _ => ("未知状态", "unexpected status"),
    };
    let text = match lang {
        Lang::Zh => zh,
        Lang::En => en,
    };
    format!("{text} ({} {status})", host_status::label(status))
}

/// Judge the built-in `clock_skew` item: the host's epoch must fall within the job's run on
/// the server's clock, give or take `max_skew_secs`.
fn judge_clock(item: &mut ReportItem, st: &JobInstanceStatus, max_skew_secs: i64) {
    let Some(epoch) = item.message.strip_prefix("host_epoch=").and_then(|e| e.trim().parse::<i64>().ok()) else {
        return;
    };
    let job = &st.job_instance;
    let from = job.start_time.unwrap_or(job.create_time) / 1000;
    let to = job.end_time.map(|t| (t + 999) / 1000).unwrap_or(from);
    let skew = if epoch < from {
        epoch - from
    } else if epoch > to {
        epoch - to
    } else {
        0
    };
    item.status = skew.abs() <= max_skew_secs;
    item.message = match skew {
        0 => "host clock agrees with the server".to_string(),
        s if s < 0 => format!("host clock {}s behind the server (tolerance {max_skew_secs}s)", -s),
        s => format!("host clock {s}s ahead of the server (tolerance {max_skew_secs}s)"),
    };
}

/// Build the per-host report from the job's final status and logs.
pub fn build_report(
    hosts: &[Host],
    st: Option<&JobInstanceStatus>,
    logs: &BTreeMap<i64, String>,
    builtin: bool,
    max_skew_secs: i64,
    lang: Lang,
) -> Vec<HostReport> {
    let results: BTreeMap<i64, &shoal_proto::jobv3::HostResultDto> = st
        .iter()
        .flat_map(|s| s.step_instance_list.iter())
        .flat_map(|s| s.step_ip_result_list.iter().flatten())
        .map(|h| (h.bk_host_id, h))
        .collect();
    hosts
        .iter()
        .map(|h| {
            let mut r =
                HostReport { host: h.clone(), verdict: Verdict::NoAnswer, job_status: 0, exit_code: 0, items: vec![], problems: vec![] };
            let Some(res) = results.get(&h.bk_host_id) else {
                r.problems.push(match lang {
                    Lang::Zh => "作业中没有该主机".into(),
                    Lang::En => "not part of the job".into(),
                });
                return r;
            };
            r.job_status = res.status;
            r.exit_code = res.exit_code;
            let log = logs.get(&h.bk_host_id).map(String::as_str).unwrap_or("");
            let parsed = parse_output(log);
            // The script ran to an end: its answer counts even with a non-zero exit.
            let ran = matches!(res.status, host_status::SUCCESS | host_status::SCRIPT_NOT_ZERO_EXIT_CODE | host_status::FAILED);
            if !ran {
                r.problems.push(why_no_answer(res.status, lang));
                r.problems.extend(parsed.bad_lines.iter().map(|(l, _)| format!("output: {l}")));
                return r;
            }
            for a in &parsed.answers {
                for i in &a.data {
                    let mut item = ReportItem {
                        module: i.module.clone(),
                        item: i.item.clone(),
                        label: label(&i.item, lang),
                        status: i.status,
                        message: i.message.clone(),
                    };
                    if builtin && i.item == "clock_skew" {
                        if let Some(st) = st {
                            judge_clock(&mut item, st, max_skew_secs);
                        }
                    }
                    r.items.push(item);
                }
            }
            for (line, err) in &parsed.bad_lines {
                r.problems.push(format!("not a check answer: {line} ({err})"));
            }
            r.verdict = if parsed.answers.is_empty() {
                if parsed.bad_lines.is_empty() {
                    r.problems.push(match lang {
                        Lang::Zh => "没有输出".into(),
                        Lang::En => "no output".into(),
                    });
                }
                Verdict::BadOutput
            } else if parsed.answers.iter().all(|a| a.status) && r.items.iter().all(|i| i.status) && parsed.bad_lines.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Failed
            };
            if r.exit_code != 0 && r.verdict == Verdict::Ok {
                r.verdict = Verdict::Failed;
                r.problems.push(format!("exit code {}", r.exit_code));
            }
            r
        })
        .collect()
}

pub fn summarize(hosts: &[HostReport]) -> Summary {
    let n = |v: Verdict| hosts.iter().filter(|h| h.verdict == v).count();
    Summary {
        hosts: hosts.len(),
        ok: n(Verdict::Ok),
        failed: n(Verdict::Failed),
        no_answer: n(Verdict::NoAnswer),
        bad_output: n(Verdict::BadOutput),
    }
}

fn ok_word(ok: bool, lang: Lang) -> &'static str {
    match (ok, lang) {
        (true, Lang::En) => "ok",
        (false, Lang::En) => "failed",
        (true, Lang::Zh) => "成功",
        (false, Lang::Zh) => "失败",
    }
}

fn verdict_word(v: Verdict, lang: Lang) -> &'static str {
    match (v, lang) {
        (Verdict::Ok, Lang::En) => "ok",
        (Verdict::Failed, Lang::En) => "failed",
        (Verdict::NoAnswer, Lang::En) => "no answer",
        (Verdict::BadOutput, Lang::En) => "bad output",
        (Verdict::Ok, Lang::Zh) => "成功",
        (Verdict::Failed, Lang::Zh) => "失败",
        (Verdict::NoAnswer, Lang::Zh) => "无应答",
        (Verdict::BadOutput, Lang::Zh) => "输出无法解析",
    }
}

/// The human report: per host a verdict, one line per item `[module] [label] [ok|failed]
/// message`, the problems, then the summary.
pub fn render(report: &Report, lang: Lang) -> String {
    let mut out = String::new();
    let mut push = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for e in &report.errors {
        push(format!("error: {e}"));
    }
    for h in &report.hosts {
        let mark = if h.verdict == Verdict::Ok { "✔" } else { "✘" };
        push(format!("{mark} {} — {}", h.host, verdict_word(h.verdict, lang)));
        for i in &h.items {
            let msg = if i.message.is_empty() { String::new() } else { format!(" {}", i.message) };
            push(format!("  [{}] [{}] [{}]{msg}", i.module, label(&i.item, lang), ok_word(i.status, lang)));
        }
        for p in &h.problems {
            push(format!("  ! {p}"));
        }
    }
    let s = &report.summary;
    push(match lang {
        Lang::En => format!(
            "check {} ({}): {} hosts · {} ok · {} failed · {} no answer · {} bad output · job {}",
            report.check, report.check_id, s.hosts, s.ok, s.failed, s.no_answer, s.bad_output, report.job_instance_id
        ),
        Lang::Zh => format!(
            "检查 {} ({})：共 {} 台主机 · {} 台成功 · {} 台失败 · {} 台无应答 · {} 台输出无法解析 · 作业 {}",
            report.check, report.check_id, s.hosts, s.ok, s.failed, s.no_answer, s.bad_output, report.job_instance_id
        ),
    });
    out
}

/// The check record on the server, as `/api/shoal/v1/checks/<id>` answers it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CheckRecord {
    pub check_id: String,
    pub check: String,
    pub status: String,
    pub finished: bool,
    #[serde(default)]
    pub expired: bool,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub job_instance_id: i64,
    #[serde(default)]
    pub step_instance_id: i64,
    #[serde(default)]
    pub infos: Vec<String>,
    #[serde(default)]
    pub report: Option<Report>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub update_time: i64,
    #[serde(default)]
    pub expire_time: i64,
}

/// Records of the run on the server.
struct Record<'a> {
    client: &'a Client,
    id: String,
    run_id: String,
    ttl_secs: i64,
}

impl Record<'_> {
    async fn update(&self, fields: Value) -> Result<()> {
        let mut body = json!({"run_id": self.run_id, "ttl_secs": self.ttl_secs});
        if let (Some(b), Value::Object(f)) = (body.as_object_mut(), fields) {
            b.extend(f);
        }
        let _: Value = self.client.shoal(&format!("checks/{}/update", self.id), false, body).await?;
        Ok(())
    }
}

impl Client {
    /// Read a check record (while it runs, too).
    pub async fn check_record(&self, id: &str) -> Result<CheckRecord> {
        self.shoal(&format!("checks/{id}"), true, json!({})).await
    }

    /// Run a check end to end; `on_record` gets the record id as soon as it exists.
    /// Failures of the run after the record is opened (a refused submit, a deadline) end up
    /// in `Report::errors` and in the record, not as `Err`.
    pub async fn run_check(&self, scope: &Scope, opts: &CheckOptions, mut on_record: impl FnMut(&str)) -> Result<Report> {
        let hosts = self.resolve_hosts(scope, &opts.hosts).await?;
        let name = opts.name();
        let ttl_secs = (opts.deadline.as_secs() as i64).max(opts.timeout_secs) + 1800;
        let opened: Value = self
            .shoal(
                "checks",
                false,
                json!({"bk_scope_type": scope.scope_type, "bk_scope_id": scope.scope_id, "check": name,
                       "hosts": hosts.iter().map(Host::key).collect::<Vec<_>>(), "ttl_secs": ttl_secs}),
            )
            .await?;
        let id = opened["check_id"].as_str().unwrap_or_default().to_string();
        let run_id = opened["run_id"].as_str().unwrap_or_default().to_string();
        on_record(&id);
        let rec = Record { client: self, id: id.clone(), run_id, ttl_secs };
        let mut report = Report {
            check_id: id.clone(),
            check: name.clone(),
            job_instance_id: 0,
            step_instance_id: 0,
            hosts: vec![],
            errors: vec![],
            summary: Summary::default(),
        };
        let outcome = self.check_job(scope, opts, &hosts, &rec, &mut report).await;
        if let Err(e) = outcome {
            report.errors.push(format!("[{}] {e}", e.code()));
        }
        if report.hosts.is_empty() {
            report.hosts = build_report(&hosts, None, &BTreeMap::new(), false, opts.max_skew_secs, opts.lang);
            for h in &mut report.hosts {
                h.problems = vec![report.errors.first().cloned().unwrap_or_else(|| "the check did not run".into())];
            }
        }
        report.summary = summarize(&report.hosts);
        let infos: Vec<String> = render(&report, opts.lang).lines().map(|l| format!("[info] [report] {l}")).collect();
        let report_json = serde_json::to_value(&report).map_err(|e| ClientError::Validation(e.to_string()))?;
        rec.update(json!({"status": "finish", "infos": infos, "report": report_json})).await?;
        Ok(report)
    }

    async fn check_job(&self, scope: &Scope, opts: &CheckOptions, hosts: &[Host], rec: &Record<'_>, report: &mut Report) -> Result<()> {
        rec.update(json!({"status": "started", "infos": [format!("[info] [start] check {} on {} hosts", report.check, hosts.len())]}))
            .await?;
        let (script, language, param) = opts.script();
        let target = crate::target_of(hosts, opts.mode);
        let job = self
            .execute_script(
                &script,
                target,
                scope,
                &opts.account,
                &format!("check {}", report.check),
                param.as_deref(),
                language,
                opts.timeout_secs,
            )
            .await?;
        let step = job.step_instance_id.unwrap_or_default();
        report.job_instance_id = job.job_instance_id;
        report.step_instance_id = step;
        rec.update(json!({"job_instance_id": job.job_instance_id, "step_instance_id": step,
                          "infos": [format!("[info] [execute] job {} step {step}", job.job_instance_id)]}))
            .await?;
        let st = match self.wait_job(scope, job.job_instance_id, &WaitPolicy::within(opts.deadline), |_| {}).await {
            Ok(st) => st,
            Err(ClientError::Deadline { waited, .. }) => {
                report
                    .errors
                    .push(format!("job {} did not finish within {waited:.0?}; unfinished hosts are reported as such", job.job_instance_id));
                self.job_status(scope, job.job_instance_id, true).await?
            }
            Err(e) => return Err(e),
        };
        let ids: Vec<i64> = hosts.iter().map(|h| h.bk_host_id).collect();
        let logs = self.host_logs(scope, job.job_instance_id, step, &ids).await?;
        let by_host: BTreeMap<i64, String> = logs.logs.iter().map(|l| (l.bk_host_id, l.log_content.clone())).collect();
        let builtin = matches!(opts.script, CheckScript::Builtin { .. });
        report.hosts = build_report(hosts, Some(&st), &by_host, builtin, opts.max_skew_secs, opts.lang);
        for h in &mut report.hosts {
            if logs.missing.contains(&h.host.bk_host_id) && h.verdict != Verdict::Ok {
                h.problems.push("the server returned no log for this host".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_answers_or_reported() {
        let p = parse_output("{\"status\": true, \"data\": [{\"module\": \"m\", \"item\": \"i\", \"status\": true, \"message\": \"x\"}]}\n\nTraceback (most recent call last):\n{\"status\": 1}\n");
        assert_eq!(p.answers.len(), 1);
        assert_eq!(p.bad_lines.len(), 2);
        assert_eq!(p.bad_lines[0].0, "Traceback (most recent call last):");
    }

    #[test]
    fn labels_follow_the_language() {
        assert_eq!(label("process", Lang::Zh), "检查进程是否存在");
        assert_eq!(label("process", Lang::En), "check the process is running");
        assert_eq!(label("my_item", Lang::En), "my_item");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/local/gse/"), "/usr/local/gse/");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }
}
