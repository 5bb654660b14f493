//! `shoal push` (alias `shoal cp`): upload local files through upload URLs, place them on the
//! targets with one `fast_transfer_file`, follow each host's progress in bytes, print the
//! results grouped as `shoal run` does. Exits 1 when any host did not get its files.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;
use shoal_client::files::file_status;
use shoal_client::{Client, HostFileLogs, Scope, TransferMode, UploadTransfer};
use shoal_proto::jobv3::{HostResultDto, JobInstanceStatus};
use shoal_proto::status::{host_status, RunStatus};

use crate::cli::{ClientArgs, TargetArgs};
use crate::client_config::{self, current_os_user};
use crate::output;

#[derive(Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Local files to copy. A directory stands for the files in it; it may not hold
    /// sub-directories with files, as the files of one push land in one target directory.
    #[arg(required_unless_present = "from_source", value_name = "LOCAL_FILE")]
    pub files: Vec<PathBuf>,
    /// A file of a file source, `CODE:PATH` (bkrepo: `project/repo/path`; S3:
    /// `bucket/key`); the server reads it once (see `shoal file-source`). Repeatable.
    #[arg(long = "from-source", value_name = "CODE:PATH")]
    pub from_source: Vec<String>,
    /// Absolute directory on the target hosts.
    #[arg(long = "to-dir", value_name = "DIR", required = true)]
    pub to_dir: String,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Fail a host whose target directory does not exist (default: create it).
    #[arg(long)]
    pub strict: bool,
    /// Download speed limit per host, in MB/s.
    #[arg(long, value_name = "MBPS")]
    pub limit: Option<i64>,
    /// Execution account alias the files are written as [default: the current OS user].
    #[arg(long)]
    pub account: Option<String>,
    /// Name of the file on the targets (one file only).
    #[arg(long)]
    pub name: Option<String>,
    /// Timeout of the transfer, in seconds.
    #[arg(long)]
    pub timeout: Option<i64>,
}

/// A local file to push.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalFile {
    path: PathBuf,
    /// Its name on the targets.
    name: String,
    size: u64,
}

fn readable(path: &Path) -> anyhow::Result<u64> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(f.metadata().with_context(|| format!("cannot read {}", path.display()))?.len())
}

fn name_of(path: &Path) -> anyhow::Result<String> {
    let name = path.file_name().and_then(|n| n.to_str()).with_context(|| format!("{}: not a file name Shoal can send", path.display()))?;
    Ok(name.to_string())
}

/// Every file behind `args`, each readable, each with a distinct name. A directory stands for
/// the files directly in it; files further down would need their relative paths on the
/// targets, which a transfer's file names cannot carry, so they are refused by name.
fn collect(args: &[PathBuf]) -> anyhow::Result<Vec<LocalFile>> {
    let mut out = Vec::new();
    for arg in args {
        let meta = std::fs::metadata(arg).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such file or directory", arg.display()),
            _ => anyhow::anyhow!("cannot read {}: {e}", arg.display()),
        })?;
        if meta.is_file() {
            out.push(LocalFile { path: arg.clone(), name: name_of(arg)?, size: readable(arg)? });
        } else if meta.is_dir() {
            let mut nested = Vec::new();
            let mut found = 0;
            let mut entries: Vec<_> = std::fs::read_dir(arg)
                .with_context(|| format!("cannot read directory {}", arg.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read directory {}", arg.display()))?;
            entries.sort();
            for path in entries {
                let m = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
                if m.is_file() {
                    out.push(LocalFile { name: name_of(&path)?, size: readable(&path)?, path });
                    found += 1;
                } else if m.is_dir() && holds_files(&path)? {
                    nested.push(path);
                }
            }
            if let Some(sub) = nested.first() {
                anyhow::bail!(
                    "{} holds files in sub-directories ({}): the files of one push land in one target directory and \
                     their names cannot carry sub-paths; push each sub-directory with its own --to-dir",
                    arg.display(),
                    sub.display()
                );
            }
            anyhow::ensure!(found > 0, "{}: the directory holds no file", arg.display());
        } else {
            anyhow::bail!("{}: not a regular file or directory", arg.display());
        }
    }
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for f in &out {
        if let Some(first) = seen.insert(&f.name, &f.path) {
            anyhow::bail!("{} and {} would both land as {:?}", first.display(), f.path.display(), f.name);
        }
    }
    Ok(out)
}

fn holds_files(dir: &Path) -> anyhow::Result<bool> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))? {
        let p = e.with_context(|| format!("cannot read directory {}", dir.display()))?.path();
        let m = std::fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if m.is_file() || (m.is_dir() && holds_files(&p)?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `CODE:PATH` arguments grouped by source code, in the order given.
fn source_files(args: &[String]) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for a in args {
        let (code, path) = a.split_once(':').filter(|(c, p)| !c.is_empty() && !p.trim_matches('/').is_empty()).ok_or_else(|| {
            anyhow::anyhow!("--from-source {a:?}: give CODE:PATH, e.g. repo:project/generic/pkg.tgz (see shoal file-source list)")
        })?;
        match out.iter_mut().find(|(c, _)| c == code) {
            Some((_, paths)) => paths.push(path.to_string()),
            None => out.push((code.to_string(), vec![path.to_string()])),
        }
    }
    Ok(out)
}

pub async fn run(a: PushArgs) -> anyhow::Result<u8> {
    let files = if a.files.is_empty() { vec![] } else { collect(&a.files)? };
    let sources = source_files(&a.from_source)?;
    let count = files.len() + sources.iter().map(|(_, p)| p.len()).sum::<usize>();
    anyhow::ensure!(a.name.is_none() || count == 1, "--name renames one file; {count} files were given");
    if let Some(n) = &a.name {
        anyhow::ensure!(!n.is_empty() && !n.contains('/') && n != "." && n != "..", "--name {n:?} must be a plain file name");
    }
    anyhow::ensure!(a.to_dir.starts_with('/'), "--to-dir {:?} must be an absolute directory", a.to_dir);
    if let Some(l) = a.limit {
        anyhow::ensure!(l > 0, "--limit {l}: give a speed in MB/s above 0");
    }
    let r = client_config::resolve(&a.client)?;
    let scope = Scope::biz(r.biz);
    let target = super::run::target(&a.targets, &r.client, r.biz).await?;
    let account = a.account.clone().unwrap_or_else(current_os_user);
    let tty = !a.client.json && std::io::stderr().is_terminal();
    let quiet = a.client.json;

    // Upload each file once, whatever the number of targets.
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let slots = if names.is_empty() { Default::default() } else { r.client.upload_urls(&scope, &names).await? };
    let mut paths = Vec::with_capacity(files.len());
    let mut by_path: BTreeMap<String, &LocalFile> = BTreeMap::new();
    for f in &files {
        let slot = &slots[&f.name];
        let bar = if tty { ProgressBar::new(f.size) } else { ProgressBar::hidden() };
        bar.set_style(bytes_style());
        bar.set_prefix(format!("upload {}", f.name));
        let b = bar.clone();
        let node = r.client.upload_file(slot, &f.path, move |n| b.set_position(n)).await?;
        bar.finish_and_clear();
        if !tty && !quiet {
            eprintln!("uploaded {} ({})", f.path.display(), HumanBytes(node.size));
        }
        paths.push(slot.path.clone());
        by_path.insert(slot.path.clone(), f);
    }

    let t = UploadTransfer {
        paths,
        target_dir: a.to_dir.clone(),
        target,
        account_alias: account,
        mode: if a.strict { TransferMode::Strict } else { TransferMode::Force },
        download_limit_mb: a.limit,
        target_name: a.name.clone(),
        timeout_secs: a.timeout,
        task_name: None,
        sources,
    };
    let job = r.client.transfer_uploads(&scope, &t).await?;
    let step = job.step_instance_id.context("the server answered no step id for the transfer")?;
    let (st, logs) = follow(&r.client, &scope, job.job_instance_id, step, &by_path, tty, quiet).await?;

    if a.client.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&st, &logs))?);
    } else {
        print_results(&st, &logs, &by_path);
    }
    Ok(if st.job_instance.status == RunStatus::Success as i32 { 0 } else { 1 })
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:24} [{bar:30}] {bytes}/{total_bytes} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Bars shown at most; further hosts count in the summary line only.
const MAX_HOST_BARS: usize = 20;

fn hosts_of(st: &JobInstanceStatus) -> Vec<&HostResultDto> {
    st.step_instance_list.iter().flat_map(|s| s.step_ip_result_list.iter().flatten()).collect()
}

/// A host's bytes in place of all it has to receive, from its file logs.
fn host_bytes(logs: Option<&HostFileLogs>, by_path: &BTreeMap<String, &LocalFile>) -> (u64, u64) {
    let total: u64 = by_path.values().map(|f| f.size).sum();
    let done = logs
        .map(|l| {
            l.file_logs
                .iter()
                .filter(|f| f.mode == 1)
                .filter_map(|f| {
                    let size = by_path.get(&f.src_path)?.size;
                    Some(if f.status == file_status::DONE { size } else { size * f.percent() / 100 })
                })
                .sum()
        })
        .unwrap_or(0);
    (done, total)
}

fn host_state(h: &HostResultDto, logs: Option<&HostFileLogs>) -> &'static str {
    if host_status::is_final(h.status) {
        return host_status::label(h.status);
    }
    let files = logs.map(|l| l.file_logs.as_slice()).unwrap_or_default();
    if files.iter().any(|f| f.status == file_status::DOWNLOADING || f.status == file_status::UPLOADING) {
        "downloading"
    } else if h.status == host_status::RUNNING {
        "running"
    } else {
        "waiting"
    }
}

/// Poll the job and its file logs until it ends; show each host's progress on the way (bars
/// on a terminal, a line per change otherwise).
async fn follow(
    client: &Client,
    scope: &Scope,
    job_id: i64,
    step_id: i64,
    by_path: &BTreeMap<String, &LocalFile>,
    tty: bool,
    quiet: bool,
) -> anyhow::Result<(JobInstanceStatus, Vec<HostFileLogs>)> {
    let multi = MultiProgress::new();
    let summary = if tty { multi.add(ProgressBar::new(0)) } else { ProgressBar::hidden() };
    summary.set_style(
        ProgressStyle::with_template("{spinner} job {prefix}: {pos}/{len} hosts done · {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    summary.set_prefix(job_id.to_string());
    let mut bars: BTreeMap<i64, ProgressBar> = BTreeMap::new();
    let mut printed: HashMap<i64, (&'static str, u64)> = HashMap::new();
    let mut delay = Duration::from_millis(50);
    loop {
        let st = client.job_status(scope, job_id, true).await?;
        let hosts = hosts_of(&st);
        let ids: Vec<i64> = hosts.iter().map(|h| h.bk_host_id).collect();
        let logs = if ids.is_empty() { vec![] } else { client.file_logs(scope, job_id, step_id, &ids).await? };
        let by_host: HashMap<i64, &HostFileLogs> = logs.iter().map(|l| (l.bk_host_id, l)).collect();
        summary.set_length(hosts.len() as u64);
        summary.set_position(hosts.iter().filter(|h| host_status::is_final(h.status)).count() as u64);
        let failed = hosts.iter().filter(|h| host_status::is_final(h.status) && !host_status::is_success(h.status)).count();
        summary.set_message(format!("{failed} failed"));
        for h in &hosts {
            let l = by_host.get(&h.bk_host_id).copied();
            let (done, total) = host_bytes(l, by_path);
            let state = host_state(h, l);
            if tty {
                if bars.len() < MAX_HOST_BARS || bars.contains_key(&h.bk_host_id) {
                    let bar = bars.entry(h.bk_host_id).or_insert_with(|| {
                        let b = multi.add(ProgressBar::new(total));
                        b.set_style(bytes_style());
                        b.set_prefix(format!("{} (#{})", h.ip, h.bk_host_id));
                        b
                    });
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(state);
                }
            } else if !quiet {
                // One line per change of state, and per tenth of the bytes.
                let key = (state, done.saturating_mul(10).checked_div(total).unwrap_or(10));
                if printed.insert(h.bk_host_id, key) != Some(key) {
                    eprintln!("{} (#{}): {state} {}/{}", h.ip, h.bk_host_id, HumanBytes(done), HumanBytes(total));
                }
            }
        }
        if st.finished {
            for b in bars.values() {
                b.finish_and_clear();
            }
            summary.finish_and_clear();
            return Ok((st, logs));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// What a host's file logs say, the same text for hosts that fared the same (no times, no
/// host names), so they group.
fn host_text(logs: Option<&HostFileLogs>, by_path: &BTreeMap<String, &LocalFile>) -> String {
    let Some(l) = logs else { return String::new() };
    let mut lines = Vec::new();
    // A source that could not be read (a missing file, a refused credential) says why.
    for f in l.file_logs.iter().filter(|f| f.mode == 0 && f.status == file_status::FAILED) {
        lines.push(format!("source {}: failed: {}", f.src_path, f.detail()));
    }
    for f in l.file_logs.iter().filter(|f| f.mode == 1) {
        let dest = f.dest_path.clone().unwrap_or_else(|| by_path.get(&f.src_path).map_or(f.src_path.clone(), |l| l.name.clone()));
        let size = by_path.get(&f.src_path).map_or(f.size.clone(), |l| HumanBytes(l.size).to_string());
        lines.push(match f.status {
            file_status::DONE => format!("{dest} ({size})"),
            file_status::FAILED => format!("{dest}: failed: {}", f.detail()),
            _ => format!("{dest}: not done ({})", f.detail()),
        });
    }
    lines.join("\n")
}

fn print_results(st: &JobInstanceStatus, logs: &[HostFileLogs], by_path: &BTreeMap<String, &LocalFile>) {
    let by_host: HashMap<i64, &HostFileLogs> = logs.iter().map(|l| (l.bk_host_id, l)).collect();
    let hosts = hosts_of(st);
    let texts: Vec<String> = hosts.iter().map(|h| host_text(by_host.get(&h.bk_host_id).copied(), by_path)).collect();
    let outcomes: Vec<output::HostOutcome> = hosts.iter().zip(&texts).map(|(h, t)| output::HostOutcome { host: h, output: t }).collect();
    println!();
    output::print_groups(&output::group(&outcomes));
    println!("{}", output::summary(st));
}

fn to_json(st: &JobInstanceStatus, logs: &[HostFileLogs]) -> serde_json::Value {
    let by_host: HashMap<i64, &HostFileLogs> = logs.iter().map(|l| (l.bk_host_id, l)).collect();
    let hosts: Vec<_> = hosts_of(st)
        .iter()
        .map(|h| {
            let files = by_host.get(&h.bk_host_id).map(|l| l.file_logs.clone()).unwrap_or_default();
            json!({"bk_host_id": h.bk_host_id, "ip": h.ip, "bk_cloud_id": h.bk_cloud_id, "status": h.status, "file_logs": files})
        })
        .collect();
    json!({"job_instance_id": st.job_instance.job_instance_id, "name": st.job_instance.name, "status": st.job_instance.status,
           "finished": st.finished, "hosts": hosts})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_files_are_code_and_path() {
        let got = source_files(&["repo:p/r/a.tgz".into(), "s3:bkt/k".into(), "repo:p/r/b.tgz".into()]).unwrap();
        assert_eq!(
            got,
            vec![
                ("repo".to_string(), vec!["p/r/a.tgz".to_string(), "p/r/b.tgz".to_string()]),
                ("s3".to_string(), vec!["bkt/k".to_string()])
            ]
        );
        for bad in ["repo", ":p/r/a", "repo:", "repo:/"] {
            assert!(source_files(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.txt"), "aa").unwrap();
        std::fs::create_dir(d.join("conf")).unwrap();
        std::fs::write(d.join("conf/x.conf"), "x").unwrap();
        std::fs::write(d.join("conf/y.conf"), "yy").unwrap();
        std::fs::create_dir(d.join("conf/empty")).unwrap();
        let got = collect(&[d.join("a.txt"), d.join("conf")]).unwrap();
        let names: Vec<(&str, u64)> = got.iter().map(|f| (f.name.as_str(), f.size)).collect();
        assert_eq!(names, [("a.txt", 2), ("x.conf", 1), ("y.conf", 2)]);

        let e = collect(&[d.join("nope.txt")]).unwrap_err().to_string();
        assert!(e.contains("nope.txt: no such file or directory"), "{e}");
        let e = collect(&[d.join("a.txt/inside")]).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("a.txt/inside"), "{e}");
        nix::unistd::mkfifo(&d.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = collect(&[d.join("pipe")]).unwrap_err().to_string();
        assert!(e.contains("pipe: not a regular file or directory"), "{e}");
        let e = collect(&[d.join("conf/empty")]).unwrap_err().to_string();
        assert!(e.contains("holds no file"), "{e}");
        let e = collect(&[d.join("conf/x.conf"), d.join("conf")]).unwrap_err().to_string();
        assert!(e.contains("would both land as \"x.conf\""), "{e}");
        std::fs::create_dir_all(d.join("conf/sub/deeper")).unwrap();
        std::fs::write(d.join("conf/sub/deeper/z"), "z").unwrap();
        let e = collect(&[d.join("conf")]).unwrap_err().to_string();
        assert!(e.contains("sub-directories") && e.contains("cannot carry sub-paths"), "{e}");
    }
}
