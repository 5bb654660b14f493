//! `shoal-bench`: the benchmark suite behind BENCHMARKS.md. Every scenario starts its own
//! server (in this process, or the release `shoal server` as a child when its memory is
//! measured) and a simulated fleet of real agent sessions over loopback WebSockets, and
//! prints each figure as the median of several runs. Run it through `scripts/bench`.
#![forbid(unsafe_code)]

mod files;
mod harness;
mod sustained;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;
use shoal_agent::fleet::{Fleet, FleetConfig};
use shoal_agent::{Executor, InstantExecutor, OutboxMode, ProcessExecutor};

use harness::{host_results, median, percentile, raise_nofile, Api, Child};

#[derive(Parser)]
#[command(about = "Shoal benchmark suite (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs simulated agents until stdin closes (a helper process of `fanout`: one process
    /// may only hold so many sockets).
    Fleet {
        #[arg(long, value_delimiter = ',')]
        servers: Vec<String>,
        #[arg(long)]
        count: usize,
        /// Index of the first agent (its IP and state dir).
        #[arg(long, default_value_t = 0)]
        first: usize,
        #[arg(long, default_value_t = 6)]
        output_bytes: usize,
        #[arg(long)]
        dir: std::path::PathBuf,
        /// File steps are fetched from the server and verified by SHA-256 (not placed).
        #[arg(long)]
        verify_files: bool,
    },
    /// Trivial script on N simulated hosts: submit → finished.
    Fanout {
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
        hosts: Vec<usize>,
        #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite,postgres")]
        store: Vec<StoreKind>,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Sequential one-host jobs on a real `shoal agent` process running real processes; also
    /// that agent's RSS idle and busy.
    Latency {
        #[arg(long, default_value_t = 1000)]
        jobs: usize,
    },
    /// Output ingest: `mb` MB from each of N simulated hosts, server memory.
    Ingest {
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        #[arg(long, default_value_t = 1)]
        mb: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// One `batch_get_job_instance_ip_log` of N hosts with `mb` MB of output each (the
    /// server's log budget raised so every log is in the answer): server memory growth.
    Logread {
        #[arg(long, default_value_t = 200)]
        hosts: usize,
        #[arg(long, default_value_t = 5)]
        mb: usize,
    },
    /// `get_job_instance_status` latency while polled concurrently.
    Api {
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        #[arg(long, default_value_t = 32)]
        pollers: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Also decode every answer into a JSON tree inside the timed part.
        #[arg(long)]
        decode: bool,
    },
    /// Jobs submitted at a fixed rate on the same hosts: how long after its last host
    /// result each step ends, and how many submissions were refused as overloaded.
    Sustained {
        #[arg(long, default_value_t = 20)]
        hosts: usize,
        /// Jobs per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 300)]
        secs: u64,
        #[arg(long, value_enum, default_value = "sqlite")]
        store: StoreKind,
        #[arg(long, value_enum, default_value = "instant")]
        work: sustained::Work,
    },
    /// Server memory per connected idle agent.
    Footprint {
        #[arg(long, default_value_t = 10000)]
        agents: usize,
    },
    /// One file of `mb` MiB to N real `shoal agent` processes, against `cp` into N
    /// directories (and Ansible's `copy` with `--ansible`).
    Files {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        #[arg(long, default_value_t = 100)]
        mb: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        ansible: bool,
        /// The server's `p2p_direct` (0: peer-to-peer off) [default: the server's default].
        #[arg(long)]
        p2p_direct: Option<usize>,
    },
    /// The same real-process job on N hosts through Shoal and through Ansible ad-hoc
    /// (`ansible` must be on PATH; local connection, forks 50).
    /// One file of `mb` MiB to N simulated hosts, each fetching it from the server and
    /// verifying its SHA-256 (nothing is written on the hosts' side).
    FilesSim {
        #[arg(long, default_value_t = 10_000)]
        hosts: usize,
        #[arg(long, default_value_t = 10)]
        mb: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    Ansible {
        #[arg(long, default_value_t = 200)]
        hosts: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let limit = raise_nofile(250_000);
    eprintln!("open-file limit: {limit}");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Fanout { hosts, store, runs } => {
                for s in &store {
                    for &n in &hosts {
                        fanout(*s, n, runs).await?;
                    }
                }
                Ok(())
            }
            Cmd::Fleet { servers, count, first, output_bytes, dir, verify_files } => {
                run_fleet(servers, count, first, output_bytes, dir, verify_files).await
            }
            Cmd::Latency { jobs } => latency(jobs).await,
            Cmd::Ingest { hosts, mb, runs } => ingest(hosts, mb, runs).await,
            Cmd::Logread { hosts, mb } => logread(hosts, mb).await,
            Cmd::Api { hosts, pollers, secs, decode } => api_load(hosts, pollers, secs, decode).await,
            Cmd::Sustained { hosts, rate, secs, store, work } => sustained::sustained(store, hosts, rate, secs, work).await,
            Cmd::Footprint { agents } => footprint(agents).await,
            Cmd::Ansible { hosts, runs } => ansible(hosts, runs).await,
            Cmd::Files { agents, mb, runs, ansible, p2p_direct } => files::files(agents, mb, runs, ansible, p2p_direct).await,
            Cmd::FilesSim { hosts, mb, runs } => files::files_sim(hosts, mb, runs).await,
        }
    })
}

fn instant(output_bytes: usize) -> Arc<dyn Executor> {
    Arc::new(InstantExecutor { output_bytes, exit_code: 0 })
}

fn fleet_config(servers: Vec<String>, dir: &std::path::Path, executor: Arc<dyn Executor>) -> FleetConfig {
    FleetConfig::new(servers, harness::TOKEN.into(), dir.join("fleet"), executor)
}

/// Runs one job on `hosts` and checks every host succeeded; returns submit → finished.
async fn timed_job(api: &Api, script: &str, hosts: &[i64], poll: Duration, within: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let job = api.execute(script, hosts).await?;
    // Submit → `finished`; checking every host's result comes after.
    let (st, seen) = api.wait_finished(job, poll, within).await?;
    let took = seen - t0;
    let (ok, total) = host_results(&st);
    if ok != hosts.len() || total != hosts.len() {
        bail!("job {job}: {ok} of {total} host results successful, expected {}", hosts.len());
    }
    Ok(took)
}

async fn database(store: StoreKind) -> anyhow::Result<Option<String>> {
    Ok(match store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(harness::fresh_postgres().await?),
    })
}

/// Agents per helper process and per server process: the open-file limit here is 20,000
/// per process and cannot be raised without CAP_SYS_RESOURCE.
const AGENTS_PER_PROCESS: usize = 12_500;

async fn run_fleet(
    servers: Vec<String>,
    count: usize,
    first: usize,
    output_bytes: usize,
    dir: std::path::PathBuf,
    verify_files: bool,
) -> anyhow::Result<()> {
    let mut executor = instant(output_bytes);
    if verify_files {
        let tls = shoal_agent::session::connect::client_config(None)?;
        let fetcher = shoal_agent::files::Fetcher::new(&servers, tls)?;
        // Sockets: every agent's session, plus this many downloads at once.
        let fetch_slots = Arc::new(tokio::sync::Semaphore::new(2_000));
        executor = Arc::new(shoal_agent::VerifyingExecutor { inner: executor, fetcher, fetch_slots });
    }
    let mut cfg = fleet_config(servers, &dir, executor);
    cfg.first_ip = std::net::Ipv4Addr::from(u32::from(cfg.first_ip) + first as u32);
    cfg.base_dir = dir.join(format!("fleet-{first}"));
    let fleet = Fleet::start(&cfg, count).await;
    // Until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
    fleet.stop(Duration::from_secs(20)).await;
    Ok(())
}

/// Helper processes running `count` simulated agents spread over `servers`.
pub(crate) struct FleetProcs(Vec<std::process::Child>);

impl FleetProcs {
    fn start(servers: &[String], count: usize, output_bytes: usize, dir: &std::path::Path) -> anyhow::Result<FleetProcs> {
        Self::start_with(servers, count, output_bytes, dir, false)
    }

    /// [`FleetProcs::start`]; `verify_files`: file steps are fetched and verified.
    pub(crate) fn start_with(
        servers: &[String],
        count: usize,
        output_bytes: usize,
        dir: &std::path::Path,
        verify_files: bool,
    ) -> anyhow::Result<FleetProcs> {
        let mut procs = Vec::new();
        let mut first = 0;
        while first < count {
            let n = AGENTS_PER_PROCESS.min(count - first);
            // Rotate so each process spreads its agents over every server.
            let child = std::process::Command::new(std::env::current_exe()?)
                .args(["fleet", "--servers", &servers.join(","), "--count", &n.to_string(), "--first", &first.to_string()])
                .args(["--output-bytes", &output_bytes.to_string(), "--dir"])
                .arg(dir)
                .args(verify_files.then_some("--verify-files"))
                .stdin(std::process::Stdio::piped())
                .spawn()?;
            procs.push(child);
            first += n;
        }
        Ok(FleetProcs(procs))
    }
}

impl Drop for FleetProcs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            drop(c.stdin.take());
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

async fn fanout(store: StoreKind, hosts: usize, runs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = database(store).await?;
    // One server process holds at most AGENTS_PER_PROCESS agents; beyond, replicas on
    // PostgreSQL (SQLite is one server).
    let replicas = hosts.div_ceil(AGENTS_PER_PROCESS + 1000);
    if replicas > 1 && store == StoreKind::Sqlite {
        println!("fanout store={store:?} hosts={hosts}: not measurable here: one server process cannot hold {hosts} sockets under the 20,000 open-file limit, and SQLite is one server");
        return Ok(());
    }
    let mut servers = Vec::new();
    for r in 0..replicas {
        servers.push(Child::start(&dir.path().join(format!("replica-{r}")), db.clone()).await?);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let t0 = Instant::now();
    let _fleet = FleetProcs::start(&urls, hosts, 6, dir.path())?;
    let ids = servers[0].wait_agents(hosts, Duration::from_secs(600)).await?;
    let connect = t0.elapsed();
    let api = &servers[0].api;
    // One warm-up job, not counted.
    timed_job(api, "echo hello", &ids, Duration::from_millis(5), Duration::from_secs(300)).await?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = timed_job(api, "echo hello", &ids, Duration::from_millis(5), Duration::from_secs(300)).await?;
        times.push(t.as_secs_f64());
    }
    let med = median(times.clone());
    println!(
        "fanout store={store:?} hosts={hosts} replicas={replicas} runs={runs} median_s={med:.3} all_s={:?} (fleet connected in {:.1}s)",
        times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>(),
        connect.as_secs_f64()
    );
    Ok(())
}

async fn latency(jobs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Child::start(dir.path(), None).await?;
    let state = dir.path().join("agent");
    let mut agent = std::process::Command::new(harness::shoal_bin()?)
        .args(["agent", "--server", &server.url, "--token", harness::TOKEN, "--bk-biz-id", "1", "--ip", "127.0.0.50", "--state-dir"])
        .arg(&state)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(std::fs::File::create(dir.path().join("agent.log"))?))
        .spawn()
        .context("starting shoal agent")?;
    let pid = agent.id() as i32;
    let result = async {
        let hosts = server.wait_agents(1, Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle_rss, _) = harness::memory_kib(pid);
        // Warm-up.
        timed_job(&server.api, "echo ok", &hosts, Duration::from_millis(1), Duration::from_secs(30)).await?;
        let mut lat = Vec::with_capacity(jobs);
        let mut busy_rss = 0;
        for i in 0..jobs {
            lat.push(timed_job(&server.api, "echo ok", &hosts, Duration::from_millis(1), Duration::from_secs(30)).await?.as_secs_f64() * 1000.0);
            if i % 50 == 0 {
                busy_rss = busy_rss.max(harness::memory_kib(pid).0);
            }
        }
        // Busy with output: 5 MB through the log pipeline.
        timed_job(&server.api, "head -c 5000000 /dev/zero | tr '\\0' x", &hosts, Duration::from_millis(5), Duration::from_secs(60)).await?;
        let (_, hwm) = harness::memory_kib(pid);
        lat.sort_by(f64::total_cmp);
        println!(
            "latency jobs={jobs} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} agent_rss_idle_kib={idle_rss} agent_rss_busy_kib={busy_rss} agent_hwm_kib={hwm}",
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            lat.last().copied().unwrap_or_default()
        );
        Ok(())
    }
    .await;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    let _ = agent.wait();
    result
}

async fn ingest(hosts: usize, mb: usize, runs: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Child::start(dir.path(), None).await?;
    let bytes = mb * 1_000_000;
    let fleet = Fleet::start(&fleet_config(vec![server.url.clone()], dir.path(), instant(bytes)), hosts).await;
    let ids = server.wait_agents(hosts, Duration::from_secs(120)).await?;
    let (rss_before, _) = harness::memory_kib(server.pid());
    let mut rates = Vec::new();
    let mut peak = 0;
    for _ in 0..runs {
        let sampler = sample_rss(server.pid());
        let t = timed_job(&server.api, "echo simulated", &ids, Duration::from_millis(20), Duration::from_secs(600)).await?;
        peak = peak.max(sampler.finish().await);
        rates.push((hosts * bytes) as f64 / 1e6 / t.as_secs_f64());
    }
    println!(
        "ingest hosts={hosts} mb_each={mb} runs={runs} median_mb_s={:.1} all={:?} server_rss_before_kib={rss_before} server_rss_peak_kib={peak}",
        median(rates.clone()),
        rates.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>()
    );
    fleet.stop(Duration::from_secs(30)).await;
    Ok(())
}

async fn logread(hosts: usize, mb: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Child::start_with(dir.path(), None, &[("SHOAL_LOG_READ_BUDGET_BYTES", "100000000000")]).await?;
    let bytes = mb * 1_000_000;
    let fleet = Fleet::start(&fleet_config(vec![server.url.clone()], dir.path(), instant(bytes)), hosts).await;
    let ids = server.wait_agents(hosts, Duration::from_secs(120)).await?;
    let job = server.api.execute("echo simulated", &ids).await?;
    let (st, _) = server.api.wait_finished(job, Duration::from_millis(100), Duration::from_secs(600)).await?;
    let step = st["step_instance_list"][0]["step_instance_id"].as_i64().context("no step")?;
    // Let the ingest's garbage go back and the WAL settle before the baseline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_before, _) = harness::memory_kib(server.pid());
    let sampler = sample_rss(server.pid());
    let t = Instant::now();
    let data = server
        .api
        .post(
            "batch_get_job_instance_ip_log",
            serde_json::json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job, "step_instance_id": step, "host_id_list": ids}),
        )
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let peak = sampler.finish().await;
    let logs = data["script_task_logs"].as_array().context("no logs")?;
    let full = logs.iter().filter(|l| l["log_content"].as_str().is_some_and(|c| c.len() == bytes)).count();
    anyhow::ensure!(full == hosts, "{full} of {hosts} logs complete");
    println!(
        "logread hosts={hosts} mb_each={mb} secs={secs:.2} server_rss_before_kib={rss_before} server_rss_peak_kib={peak} growth_mb={:.1}",
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );
    fleet.stop(Duration::from_secs(30)).await;
    Ok(())
}

/// Samples a process's RSS every 50 ms until finished; returns the peak (KiB).
pub(crate) struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

pub(crate) fn sample_rss(pid: i32) -> Sampler {
    let (stop, mut rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(harness::memory_kib(pid).0);
            tokio::select! {
                _ = &mut rx => return peak,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    Sampler { stop, task }
}

impl Sampler {
    pub(crate) async fn finish(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

async fn api_load(hosts: usize, pollers: usize, secs: u64, decode: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Child::start(dir.path(), None).await?;
    let fleet = Fleet::start(&fleet_config(vec![server.url.clone()], dir.path(), instant(100)), hosts).await;
    let ids = server.wait_agents(hosts, Duration::from_secs(120)).await?;
    let job = server.api.execute("echo hello", &ids).await?;
    server.api.wait_finished(job, Duration::from_millis(20), Duration::from_secs(60)).await?;
    // What every answer must be: the full answer, checked once here.
    let expected = server.api.status_bytes(job, true).await?;
    let full: Value = serde_json::from_slice(&expected)?;
    if host_results(&full["data"]) != (hosts, hosts) {
        bail!("the status does not hold {hosts} successful host results");
    }
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..pollers {
        let (api, expected) = (server.api.clone(), expected.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                // Timed: request → whole answer read, as an HTTP load tool times it. With
                // `--decode`, also decoding it into a JSON tree, which on this machine is
                // client work on the server's two cores.
                if decode {
                    api.status(job, true).await?;
                } else {
                    let got = api.status_bytes(job, true).await?;
                    // The answer differs only in its request id.
                    if got.len() != expected.len() || !got.starts_with(br#"{"result":true,"code":0"#) {
                        bail!("unexpected answer: {}", String::from_utf8_lossy(&got[..got.len().min(300)]));
                    }
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = tasks.join_next().await {
        lat.extend(r??);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "api hosts={hosts} pollers={pollers} secs={secs} decode={decode} requests={} rps={:.0} p50_ms={:.2} p99_ms={:.2}",
        lat.len(),
        lat.len() as f64 / secs as f64,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0)
    );
    fleet.stop(Duration::from_secs(30)).await;
    Ok(())
}

async fn footprint(agents: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Child::start(dir.path(), None).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = harness::memory_kib(server.pid());
    let fleet = Fleet::start(&fleet_config(vec![server.url.clone()], dir.path(), instant(0)), agents).await;
    server.wait_agents(agents, Duration::from_secs(300)).await?;
    // Let connection set-up garbage settle; then read it several times.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(harness::memory_kib(server.pid()).0 as f64);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after = median(samples);
    let per = (after - before as f64) * 1024.0 / agents as f64;
    println!("footprint agents={agents} server_rss_before_kib={before} server_rss_after_kib={after:.0} bytes_per_idle_agent={per:.0}");
    fleet.stop(Duration::from_secs(30)).await;
    Ok(())
}

async fn ansible(hosts: usize, runs: usize) -> anyhow::Result<()> {
    let script = "uname -sr; id -un";
    let dir = tempfile::tempdir()?;
    let server = Child::start(dir.path(), None).await?;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts)?;
    // Each task in its cgroup where this host allows it, as a real agent does.
    let placement = shoal_agent::exec::cgroup::Placement::detect("bench");
    let env = shoal_agent::exec::ExecEnv::new(scripts, Duration::from_secs(1), placement);
    let real: Arc<dyn Executor> = Arc::new(ProcessExecutor { env });
    let mut cfg = fleet_config(vec![server.url.clone()], dir.path(), real);
    cfg.outbox = OutboxMode::Disk;
    let fleet = Fleet::start(&cfg, hosts).await;
    let ids = server.wait_agents(hosts, Duration::from_secs(120)).await?;
    let mut shoal = Vec::new();
    for _ in 0..runs {
        shoal.push(timed_job(&server.api, script, &ids, Duration::from_millis(5), Duration::from_secs(120)).await?.as_secs_f64());
    }
    fleet.stop(Duration::from_secs(30)).await;

    // The Python ansible runs on (its own virtualenv's), not whatever discovery finds.
    let ansible = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("ansible")).find(|a| a.exists()))
        .context("ansible not found on PATH")?;
    let python = ansible.with_file_name("python3");
    let inventory = dir.path().join("inventory.ini");
    let mut inv = String::from("[bench]\n");
    for i in 0..hosts {
        inv.push_str(&format!("sim{i} ansible_connection=local ansible_python_interpreter={}\n", python.display()));
    }
    std::fs::write(&inventory, inv)?;
    let mut ans = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = std::process::Command::new("ansible")
            .args(["bench", "-i"])
            .arg(&inventory)
            .args(["-f", "50", "-m", "shell", "-a", script])
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_LOCAL_TEMP", dir.path().join("ansible-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", dir.path().join("ansible-remote"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .context("running ansible (is ansible-core installed?)")?;
        let took = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        let changed = text.matches("| CHANGED").count();
        if !out.status.success() || changed != hosts {
            let tail: String = text.lines().take(10).collect::<Vec<_>>().join("\n");
            bail!("ansible: {changed} of {hosts} hosts answered; {tail}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        ans.push(took);
    }
    let (s, a) = (median(shoal.clone()), median(ans.clone()));
    println!("ansible hosts={hosts} runs={runs} shoal_median_s={s:.3} ansible_median_s={a:.3} ratio_shoal_over_ansible={:.4}", s / a);
    Ok(())
}
