//! `sustained`: jobs submitted at a fixed rate for a while, each on the same simulated hosts
//! (instant executor, or real processes with `--work process`). Measures how long after a step's last host result the step ends
//! (step `end_time` minus the latest host `end_time`, from the store once everything has
//! drained), and counts the submissions the server refused as overloaded (JOB's running-job
//! quota codes) instead of letting that lag grow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use shoal_agent::fleet::Fleet;
use shoal_agent::{Executor, ProcessExecutor};
use shoal_proto::ErrorCode;

use crate::harness::{percentile, Child};
use crate::{database, fleet_config, instant, StoreKind};

/// What one submission got.
enum Submitted {
    Job(i64),
    Overloaded,
    Refused(i64, String),
}

/// The answers that mean "not now": the running-job quotas, which the server also answers
/// when its store cannot keep up.
fn is_overload(code: i64) -> bool {
    [ErrorCode::RUNNING_JOB_EXCEED_SYSTEM_QUOTA, ErrorCode::RUNNING_JOB_EXCEED_SCOPE_QUOTA, ErrorCode::RUNNING_JOB_EXCEED_APP_QUOTA]
        .iter()
        .any(|c| i64::from(c.0) == code)
}

/// What the simulated hosts run.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Work {
    /// Answer at once (the instant executor).
    Instant,
    /// Run the script as a real process (`echo hello`), as a real agent does: the machine
    /// is then busy, as it is when the agents share it.
    Process,
}

pub async fn sustained(store: StoreKind, hosts: usize, rate: f64, secs: u64, work: Work) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Child::start(dir.path(), database(store).await?).await?;
    let executor: Arc<dyn Executor> = match work {
        Work::Instant => instant(6),
        Work::Process => {
            let scripts = dir.path().join("scripts");
            std::fs::create_dir_all(&scripts)?;
            {
                // Each task in its cgroup where this host allows it, as a real agent does.
                let placement = shoal_agent::exec::cgroup::Placement::detect("bench-sustained");
                Arc::new(ProcessExecutor { env: shoal_agent::exec::ExecEnv::new(scripts, Duration::from_secs(1), placement) })
            }
        }
    };
    let fleet = Fleet::start(&fleet_config(vec![server.url.clone()], dir.path(), executor), hosts).await;
    let ids = server.wait_agents(hosts, Duration::from_secs(120)).await?;

    // Open loop: a submission every 1/rate s whatever the previous ones are doing.
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut inflight = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let (api, ids) = (server.api.clone(), ids.clone());
        inflight.spawn(async move {
            let t = Instant::now();
            let got = match api.try_execute("echo hello", &ids).await? {
                Ok(job) => Submitted::Job(job),
                Err((code, _)) if is_overload(code) => Submitted::Overloaded,
                Err((code, v)) => Submitted::Refused(code, v.to_string()),
            };
            anyhow::Ok((got, t.elapsed().as_secs_f64() * 1000.0))
        });
    }
    let stopped = Instant::now();
    let (mut jobs, mut overloaded, mut submit_ms) = (Vec::new(), 0, Vec::new());
    while let Some(r) = inflight.join_next().await {
        let (got, ms) = r??;
        submit_ms.push(ms);
        match got {
            Submitted::Job(j) => jobs.push(j),
            Submitted::Overloaded => overloaded += 1,
            Submitted::Refused(code, v) => bail!("submission refused with {code}: {v}"),
        }
    }

    // Drain: every accepted job ends.
    let st = server.store();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !st.active_jobs().await?.is_empty() {
        if Instant::now() > deadline {
            bail!("jobs still running 30 minutes after submissions stopped");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = stopped.elapsed().as_secs_f64();

    let mut lag_ms = Vec::with_capacity(jobs.len());
    for &job in &jobs {
        for step in st.get_steps(job).await? {
            let tasks = st.host_tasks(step.id, step.execute_count).await?;
            let last_host = tasks.iter().filter_map(|t| t.end_time).max();
            if tasks.iter().any(|t| t.status != shoal_proto::status::host_status::SUCCESS) {
                bail!("job {job}: a host did not succeed");
            }
            if let (Some(step_end), Some(host_end)) = (step.end_time, last_host) {
                lag_ms.push((step_end - host_end) as f64);
            }
        }
    }
    lag_ms.sort_by(f64::total_cmp);
    submit_ms.sort_by(f64::total_cmp);
    println!(
        "sustained store={store:?} hosts={hosts} rate={rate} secs={secs} work={work:?} submitted={} accepted={} overloaded={overloaded} \
         step_lag_p50_ms={:.0} step_lag_p99_ms={:.0} step_lag_max_ms={:.0} submit_p50_ms={:.1} submit_p99_ms={:.1} drained_after_s={drained:.1}",
        submit_ms.len(),
        jobs.len(),
        percentile(&lag_ms, 50.0),
        percentile(&lag_ms, 99.0),
        lag_ms.last().copied().unwrap_or(f64::NAN),
        percentile(&submit_ms, 50.0),
        percentile(&submit_ms, 99.0),
    );
    fleet.stop(Duration::from_secs(30)).await;
    Ok(())
}
