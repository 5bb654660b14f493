//! File distribution: one file of `mb` MiB to N real `shoal agent` processes on this machine,
//! against `cp` of the same file into N directories (then `sync`, as each agent syncs what
//! it placed), and optionally Ansible's `copy` module (local connection, forks 50). The
//! server's peak RSS is sampled throughout.
//!
//! All agents share this machine's disk, but each has a target directory of its own, as each
//! host of a fleet has: the step's target directory is bind-mounted, in a mount namespace of
//! the agent's own (`unshare`), over a directory of that agent. So the disk does N full
//! writes and keeps N files, as `cp` does. Where namespaces cannot be made (not root), the
//! agents share the one directory, each renaming its file over the others'. An agent that
//! finds the file already in place with the same hash skips it; how many did is printed (the
//! target directories are emptied before each run).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use crate::harness::{self, median, Child};

/// Writes `mb` MiB of a repeating pattern to `path`.
fn make_source(path: &Path, mb: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let block: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    for i in 0..mb {
        let mut b = block.clone();
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        f.write_all(&b)?;
    }
    f.flush()?;
    Ok(())
}

async fn upload(server: &Child, file: &Path) -> anyhow::Result<String> {
    let name = "bench.bin";
    let v = server
        .api
        .post("generate_local_file_upload_url", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "file_name_list": [name]}))
        .await?;
    let slot = &v["url_map"][name];
    let url = slot["upload_url"].as_str().context("upload_url")?;
    let f = tokio::fs::File::open(file).await?;
    let stream = futures_util::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let r = reqwest::Client::new().put(url).body(reqwest::Body::wrap_stream(stream)).send().await?;
    if !r.status().is_success() {
        bail!("upload: HTTP {}", r.status());
    }
    Ok(slot["path"].as_str().context("path")?.to_string())
}

/// Starts `n` agents, each seeing a directory of its own (`<dir>/hosts/<i>`) at `target`
/// where it can (see the module's notes). Returns them and the directories files land in.
fn start_agents(server: &Child, dir: &Path, n: usize, target: &Path) -> anyhow::Result<(Vec<std::process::Child>, Vec<PathBuf>)> {
    std::fs::create_dir_all(target)?;
    let own = own_namespaces(dir, target);
    if !own {
        println!("# agents share one target directory (no mount namespaces here)");
    }
    let mut kids = Vec::with_capacity(n);
    let mut dirs = Vec::with_capacity(n);
    for i in 0..n {
        let state = dir.join(format!("agent-{i}"));
        let mut cmd = if own {
            let mine = dir.join("hosts").join(i.to_string());
            std::fs::create_dir_all(&mine)?;
            let mut c = std::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c", r#"mount --bind "$1" "$2" && shift 2 && exec "$@""#, "sh"])
                .arg(&mine)
                .arg(target)
                .arg(harness::shoal_bin()?);
            dirs.push(mine);
            c
        } else {
            std::process::Command::new(harness::shoal_bin()?)
        };
        let kid = cmd
            .args(["agent", "--server", &server.url, "--token", harness::TOKEN, "--bk-biz-id", "1"])
            .arg("--ip")
            .arg(format!("127.0.{}.{}", 3 + i / 250, 1 + i % 250))
            .arg("--state-dir")
            .arg(&state)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(std::fs::File::create(dir.join(format!("agent-{i}.log")))?))
            .spawn()
            .context("starting shoal agent")?;
        kids.push(kid);
    }
    if !own {
        dirs.push(target.to_path_buf());
    }
    Ok((kids, dirs))
}

/// Whether a process here can be given a directory of its own at `target`.
fn own_namespaces(dir: &Path, target: &Path) -> bool {
    let probe = dir.join("probe");
    let ok = std::fs::create_dir_all(&probe).is_ok()
        && std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", r#"mount --bind "$1" "$2" && touch "$2/seen""#, "sh"])
            .arg(&probe)
            .arg(target)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        && probe.join("seen").exists()
        && !target.join("seen").exists();
    let _ = std::fs::remove_dir_all(&probe);
    ok
}

/// Empties each agent's target directory (never the mount point itself: removing it would
/// take it away from the agents' namespaces).
fn empty(dirs: &[PathBuf]) -> anyhow::Result<()> {
    for d in dirs {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

/// How many hosts' file logs say the file was already in place.
async fn skipped(server: &Child, job: i64, step: i64, hosts: &[i64]) -> anyhow::Result<usize> {
    let mut n = 0;
    for part in hosts.chunks(500) {
        let v = server
            .api
            .post(
                "batch_get_job_instance_ip_log",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "host_id_list": part}),
            )
            .await?;
        for h in v["file_task_logs"].as_array().into_iter().flatten() {
            if h["file_logs"].as_array().into_iter().flatten().any(|l| l["log_content"].as_str().is_some_and(|c| c.contains("not fetched")))
            {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// What the server's `shoal_blob_bytes_served_total` says.
async fn served_bytes(server: &Child) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{}/metrics", server.url)).await?.text().await?;
    let line = text.lines().find(|l| l.starts_with("shoal_blob_bytes_served_total ")).context("no blob bytes counter")?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

pub async fn files(agents: usize, mb: usize, runs: usize, ansible: bool, p2p_direct: Option<usize>) -> anyhow::Result<()> {
    // On the disk the build lives on (not a tmpfs).
    let base = std::env::current_dir()?.join("target").join("bench-files");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let p2p = p2p_direct.map(|n| n.to_string());
    let env: Vec<(&str, &str)> = p2p.as_deref().map(|n| ("SHOAL_P2P_DIRECT", n)).into_iter().collect();
    let server = Child::start_with(dir.path(), None, &env).await?;
    let target = dir.path().join("target");
    let (mut kids, dirs) = start_agents(&server, dir.path(), agents, &target)?;
    let result = async {
        let hosts = server.wait_agents(agents, Duration::from_secs(120)).await?;
        let src = dir.path().join("source.bin");
        make_source(&src, mb)?;
        let path = upload(&server, &src).await?;
        let mut shoal = Vec::new();
        let mut skips = Vec::new();
        let mut peak = 0;
        let mut served = Vec::new();
        for _ in 0..runs {
            empty(&dirs)?;
            // Each timed run, Shoal's and cp's, starts with nothing left to write back (the
            // source, the blob, an earlier run's files).
            std::process::Command::new("sync").status()?;
            let before = served_bytes(&server).await?;
            let sampler = crate::sample_rss(server.pid());
            let t0 = Instant::now();
            let v = server
                .api
                .post(
                    "fast_transfer_file",
                    json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account_alias": harness::ALIAS,
                        "file_target_path": target.to_str().unwrap(),
                        "file_source_list": [{"file_list": [path], "file_type": 2}],
                        "target_server": {"host_id_list": hosts}}),
                )
                .await?;
            let job = v["job_instance_id"].as_i64().context("job id")?;
            let step = v["step_instance_id"].as_i64().context("step id")?;
            let (st, seen) = server.api.wait_finished(job, Duration::from_millis(50), Duration::from_secs(3600)).await?;
            shoal.push((seen - t0).as_secs_f64());
            peak = peak.max(sampler.finish().await);
            let (ok, total) = harness::host_results(&st);
            if ok != agents || total != agents {
                bail!("job {job}: {ok} of {total} hosts succeeded");
            }
            for d in &dirs {
                let sizes: Vec<u64> = std::fs::read_dir(d)?.map(|e| Ok(e?.metadata()?.len())).collect::<std::io::Result<_>>()?;
                if sizes != [(mb as u64) << 20] {
                    bail!("job {job}: {} holds files of {sizes:?} bytes, not one of {mb} MiB", d.display());
                }
            }
            skips.push(skipped(&server, job, step, &hosts).await?);
            served.push((served_bytes(&server).await? - before) as f64 / (1024.0 * 1024.0));
        }
        empty(&dirs)?;
        // `cp` into as many directories, then `sync`: its runs one after another, after all
        // of Shoal's, and after one run that is not timed. On this shared disk the first `cp`
        // after Shoal's runs takes two to three times as long as the next ones (and a Shoal
        // run after a `cp` run is no slower): the baseline is `cp` at its fastest.
        let mut cp = Vec::new();
        for run in 0..=runs {
            let dirs = dir.path().join("cp");
            let _ = std::fs::remove_dir_all(&dirs);
            std::process::Command::new("sync").status()?;
            let t0 = Instant::now();
            for i in 0..agents {
                let d = dirs.join(i.to_string());
                std::fs::create_dir_all(&d)?;
                let s = std::process::Command::new("cp").arg(&src).arg(&d).status()?;
                if !s.success() {
                    bail!("cp failed");
                }
            }
            std::process::Command::new("sync").status()?;
            if run > 0 {
                cp.push(t0.elapsed().as_secs_f64());
            }
            std::fs::remove_dir_all(&dirs)?;
        }
        let (s, c) = (median(shoal.clone()), median(cp.clone()));
        let secs = |v: &[f64]| v.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>();
        println!(
            "files agents={agents} mb={mb} runs={runs} p2p_direct={} shoal_median_s={s:.2} cp_median_s={c:.2} ratio_shoal_over_cp={:.2} server_rss_peak_kib={peak} server_sent_mib={:?} skipped_hosts={skips:?} all_shoal_s={:?} all_cp_s={:?}",
            p2p_direct.map_or("default".to_string(), |n| n.to_string()),
            s / c,
            served.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>(),
            secs(&shoal),
            secs(&cp)
        );
        if ansible {
            let a = ansible_copy(dir.path(), &src, agents, runs)?;
            println!("files-ansible hosts={agents} mb={mb} runs={runs} shoal_median_s={s:.2} ansible_median_s={a:.2} ratio_shoal_over_ansible={:.3}", s / a);
        }
        anyhow::Ok(())
    }
    .await;
    for k in &mut kids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(k.id() as i32), nix::sys::signal::Signal::SIGTERM);
    }
    for k in &mut kids {
        let _ = k.wait();
    }
    result
}

/// `mb` MiB to `hosts` simulated hosts (helper processes of real agent sessions whose file
/// steps fetch the blob from the server and check its SHA-256, writing nothing): submit →
/// finished, every host verified.
pub async fn files_sim(hosts: usize, mb: usize, runs: usize) -> anyhow::Result<()> {
    let base = std::env::current_dir()?.join("target").join("bench-files");
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let server = Child::start(dir.path(), None).await?;
    let t0 = Instant::now();
    let _fleet = crate::FleetProcs::start_with(std::slice::from_ref(&server.url), hosts, 0, dir.path(), true)?;
    let ids = server.wait_agents(hosts, Duration::from_secs(600)).await?;
    let connect = t0.elapsed().as_secs_f64();
    let src = dir.path().join("source.bin");
    make_source(&src, mb)?;
    let path = upload(&server, &src).await?;
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..runs {
        let sampler = crate::sample_rss(server.pid());
        let t0 = Instant::now();
        let v = server
            .api
            .post(
                "fast_transfer_file",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account_alias": harness::ALIAS, "file_target_path": "/nowhere",
                    "file_source_list": [{"file_list": [path], "file_type": 2}], "target_server": {"host_id_list": ids}}),
            )
            .await?;
        let job = v["job_instance_id"].as_i64().context("job id")?;
        let (st, seen) = server.api.wait_finished(job, Duration::from_millis(200), Duration::from_secs(3600)).await?;
        times.push((seen - t0).as_secs_f64());
        peak = peak.max(sampler.finish().await);
        let (ok, total) = harness::host_results(&st);
        if ok != hosts || total != hosts {
            bail!("job {job}: {ok} of {total} hosts fetched and verified the file");
        }
    }
    let med = median(times.clone());
    println!(
        "files-sim hosts={hosts} mb={mb} runs={runs} median_s={med:.2} served_gib={:.1} server_rss_peak_kib={peak} all_s={:?} (fleet connected in {connect:.1}s)",
        (hosts * mb) as f64 / 1024.0,
        times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>()
    );
    Ok(())
}

/// Ansible's `copy` of `src` to `hosts` simulated hosts (local connection, forks 50), each
/// into a directory of its own: the median wall time.
fn ansible_copy(dir: &Path, src: &Path, hosts: usize, runs: usize) -> anyhow::Result<f64> {
    let ansible = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("ansible")).find(|a| a.exists()))
        .context("ansible not found on PATH")?;
    let python = ansible.with_file_name("python3");
    let inventory = dir.join("inventory.ini");
    let mut inv = String::from("[bench]\n");
    for i in 0..hosts {
        inv.push_str(&format!("sim{i} ansible_connection=local ansible_python_interpreter={}\n", python.display()));
    }
    std::fs::write(&inventory, inv)?;
    let dest: PathBuf = dir.join("ansible");
    let mut times = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&dest);
        let t = Instant::now();
        let out = std::process::Command::new("ansible")
            .args(["bench", "-i"])
            .arg(&inventory)
            .args(["-f", "50", "-m", "copy", "-a"])
            .arg(format!("src={} dest={}/{{{{ inventory_hostname }}}}/", src.display(), dest.display()))
            .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", dir.join("ansible-remote"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .context("running ansible")?;
        std::process::Command::new("sync").status()?;
        let took = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        let changed = text.matches("| CHANGED").count();
        if !out.status.success() || changed != hosts {
            bail!("ansible copy: {changed} of {hosts} hosts changed\n{}", String::from_utf8_lossy(&out.stderr));
        }
        times.push(took);
    }
    let _ = std::fs::remove_dir_all(&dest);
    Ok(median(times))
}
