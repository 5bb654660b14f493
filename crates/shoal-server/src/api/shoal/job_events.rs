//! `GET /api/shoal/v1/jobs/{job_instance_id}/events?bk_biz_id=…` (or `bk_scope_type` +
//! `bk_scope_id`): a job, live, as `text/event-stream`.
//!
//! Authenticated like every call (a console cookie needs its CSRF header, so the console
//! reads it with `fetch`, not `EventSource`) and authorised like `get_job_instance_status`.
//! Events:
//! - `snapshot` at once and again whenever the job changed ([`crate::engine::events`]), at
//!   most [`SNAPSHOTS_PER_SEC`] a second: the job, its steps, and each step's host results
//!   **grouped** by status + exit code + identical output ([`shoal_proto::grouping`]) — a
//!   group has its host count, at most `hosts_per_group` hosts listed (a parameter, 1 to
//!   [`MAX_HOSTS_PER_GROUP`], default [`HOSTS_PER_GROUP`]) and the start of its
//!   output, so a 50,000-host step is a few groups, not 50,000 rows;
//! - `end` once the job is finished (after its last snapshot); the stream then closes.
//!
//! A host's output is read once, when its task is final (it no longer changes), and kept as a
//! hash for the life of the stream; hosts still running are grouped by status alone.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::code::Lang;
use shoal_proto::jobv3::{HostResultDto, ScopeReq};
use shoal_proto::status::{host_status, RunStatus};
use shoal_store::StepRow;
use tokio::sync::broadcast::error::RecvError;

use crate::api::{envelope, internal, params, Ctx};
use crate::Shared;

/// Hosts listed per group (the rest are counted).
pub const HOSTS_PER_GROUP: usize = 100;
/// The most hosts listed per group a caller may ask for.
pub const MAX_HOSTS_PER_GROUP: usize = 1000;
/// Snapshots sent per second at most, however often the job changes.
pub const SNAPSHOTS_PER_SEC: u64 = 5;
/// Bytes of a group's output sent with it.
const OUTPUT_PREVIEW: usize = 4096;
/// Host logs read per store call.
const LOG_READ_CHUNK: usize = 500;
/// A comment line at least this often keeps proxies from closing a quiet stream (and more
/// often when the server's own idle deadline is shorter).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Outputs of final host tasks seen so far: (step, run, host) → output hash; hash → preview.
#[derive(Default)]
struct Outputs {
    hashes: HashMap<(i64, i32, i64), u64>,
    previews: HashMap<u64, (String, bool)>,
}

pub async fn stream(
    State(shared): State<Arc<Shared>>,
    Path(job_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let rid = uuid::Uuid::new_v4().simple().to_string();
    let lang = Lang::from_header(headers.get("blueking-language").and_then(|v| v.to_str().ok()));
    match open(shared, &job_id, &method, &uri, &headers, lang, &rid).await {
        Ok(resp) => resp,
        Err(e) => envelope::render(Err(e), lang, &rid),
    }
}

async fn open(
    shared: Arc<Shared>,
    job_id: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    lang: Lang,
    rid: &str,
) -> Result<Response, JobError> {
    let params = params::collect(method, uri, headers, &Bytes::new())?;
    let caller = crate::auth::authenticate(shared.store.as_ref(), &shared.config.sealing_key, headers, &params, false).await?;
    let listed = match params.get("hosts_per_group") {
        None => HOSTS_PER_GROUP,
        Some(v) => v
            .as_str()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .or_else(|| v.as_u64().map(|n| n as usize))
            .filter(|n| (1..=MAX_HOSTS_PER_GROUP).contains(n))
            .ok_or_else(|| JobError::illegal("hosts_per_group"))?,
    };
    let ctx = Ctx { shared: shared.clone(), caller, lang, request_id: rid.to_string(), origin: None };
    let out = authorise(&ctx, job_id, params).await;
    if let Err(e) = &out {
        crate::api::authz::record_denial(&ctx, "jobs/events", e).await;
    }
    let job = out?;
    let secrets = crate::api::v3::get_job_instance_ip_log::passwords(&ctx, job.id).await?;
    // Subscribed before the first read, so no change between the two is missed.
    let rx = shared.gateway.events.subscribe();
    let stop = shared.gateway.stop_signal();
    let (tx, body_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(run(shared, job.id, listed, secrets, rx, stop, tx));
    let body = futures_util::stream::unfold(body_rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

async fn authorise(ctx: &Ctx, job_id: &str, params: Value) -> Result<shoal_store::JobRow, JobError> {
    let scope: ScopeReq = crate::api::decode(params)?;
    let scope = Scope::resolve(&scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let id = job_id.parse::<i64>().ok();
    crate::api::v3::job_in_scope(ctx, &scope, id).await
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn run(
    shared: Arc<Shared>,
    job_id: i64,
    listed: usize,
    secrets: Vec<String>,
    mut rx: tokio::sync::broadcast::Receiver<Arc<crate::engine::events::Changed>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut outputs = Outputs::default();
    let gap = Duration::from_millis(1000 / SNAPSHOTS_PER_SEC);
    // The listener closes a connection idle for the request timeout plus the header read
    // timeout (`conn`): speak well before that.
    let idle_ms = (shared.config.request_timeout_secs + shared.config.header_read_timeout_secs).saturating_mul(1000);
    let keepalive = KEEPALIVE.min(Duration::from_millis(idle_ms / 2).max(Duration::from_millis(500)));
    loop {
        let (snap, finished, step_ids) = match snapshot(&shared, job_id, listed, &secrets, &mut outputs).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(event("error", &json!({"code": e.code.0}))).await;
                return;
            }
        };
        if tx.send(event("snapshot", &snap)).await.is_err() {
            return;
        }
        if finished {
            let _ = tx.send(event("end", &json!({"job_instance_id": job_id}))).await;
            return;
        }
        let sent = tokio::time::Instant::now();
        // Wait for a change of this job (a lag may have hidden one: count it as one).
        loop {
            let changed = tokio::select! {
                r = rx.recv() => match r {
                    Ok(c) => c.touches(job_id, &step_ids),
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                () = tokio::time::sleep(keepalive) => {
                    if tx.send(Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        return;
                    }
                    false
                }
                () = async { let _ = stop.wait_for(|s| *s).await; } => return,
                () = tx.closed() => return,
            };
            if changed {
                break;
            }
        }
        // Coalesce: changes arriving within the gap make one snapshot.
        tokio::time::sleep_until(sent + gap).await;
    }
}

/// The job now: (snapshot, finished, its step ids).
async fn snapshot(
    shared: &Shared,
    job_id: i64,
    listed: usize,
    secrets: &[String],
    outputs: &mut Outputs,
) -> Result<(Value, bool, Vec<i64>), JobError> {
    let store = &shared.store;
    let job = store.get_job(job_id).await.map_err(internal("get job"))?.ok_or_else(JobError::internal)?;
    let steps = store.get_steps(job_id).await.map_err(internal("get steps"))?;
    let mut list = Vec::with_capacity(steps.len());
    for s in &steps {
        list.push(step_json(shared, s, listed, secrets, outputs).await?);
    }
    let finished = RunStatus::from_i32(job.status).is_some_and(RunStatus::is_finished);
    let total = |a: Option<i64>, b: Option<i64>| Some(b? - a?);
    let snap = json!({
        "job_instance_id": job.id, "name": job.name, "status": job.status, "finished": finished,
        "bk_scope_type": job.scope_type, "bk_scope_id": job.scope_id, "operator": job.operator,
        "create_time": job.create_time, "start_time": job.start_time, "end_time": job.end_time,
        "total_time": total(job.start_time, job.end_time), "steps": list,
    });
    Ok((snap, finished, steps.iter().map(|s| s.id).collect()))
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The step run's host results with the hash of each final one's output (read once into
/// `outputs`), ready for [`shoal_proto::grouping::group`].
async fn results(
    shared: &Shared,
    s: &StepRow,
    secrets: &[String],
    outputs: &mut Outputs,
) -> Result<Vec<(HostResultDto, Option<u64>)>, JobError> {
    let store = &shared.store;
    let tasks = store.host_tasks(s.id, s.execute_count).await.map_err(internal("host tasks"))?;
    // Outputs of tasks that became final since the last snapshot.
    let fresh: Vec<i64> = tasks
        .iter()
        .filter(|t| host_status::is_final(t.status) && !outputs.hashes.contains_key(&(s.id, s.execute_count, t.bk_host_id)))
        .map(|t| t.bk_host_id)
        .collect();
    for chunk in fresh.chunks(LOG_READ_CHUNK) {
        let logs = store.read_logs(s.id, s.execute_count, chunk).await.map_err(internal("read logs"))?;
        let mut seen: HashMap<i64, u64> = HashMap::new();
        for (host, bytes) in logs {
            let bytes = crate::engine::variables::mask_bytes(bytes, secrets);
            let h = hash_of(&bytes);
            outputs.previews.entry(h).or_insert_with(|| {
                let cut = bytes.len() > OUTPUT_PREVIEW;
                (String::from_utf8_lossy(&bytes[..bytes.len().min(OUTPUT_PREVIEW)]).into_owned(), cut)
            });
            seen.insert(host, h);
        }
        let empty = hash_of(b"");
        outputs.previews.entry(empty).or_insert_with(|| (String::new(), false));
        for host in chunk {
            outputs.hashes.insert((s.id, s.execute_count, *host), seen.get(host).copied().unwrap_or(empty));
        }
    }
    Ok(tasks
        .iter()
        .map(|t| {
            let dto = HostResultDto {
                bk_host_id: t.bk_host_id,
                ip: t.ip.clone(),
                bk_cloud_id: t.bk_cloud_id,
                status: t.status,
                tag: String::new(),
                exit_code: t.exit_code,
                error_code: t.error_code,
                start_time: t.start_time,
                end_time: t.end_time,
                total_time: None,
            };
            (dto, outputs.hashes.get(&(s.id, s.execute_count, t.bk_host_id)).copied())
        })
        .collect())
}

/// A group's key: status, exit code and output hash (what makes hosts one group).
fn group_key(status: i32, exit_code: i32, output: Option<u64>) -> String {
    format!("{}:{}:{:x}", status, exit_code, output.unwrap_or(0))
}

fn host_ref(h: &HostResultDto) -> Value {
    json!({"bk_host_id": h.bk_host_id, "ip": h.ip, "bk_cloud_id": h.bk_cloud_id})
}

async fn step_json(shared: &Shared, s: &StepRow, listed: usize, secrets: &[String], outputs: &mut Outputs) -> Result<Value, JobError> {
    let store = &shared.store;
    let results = results(shared, s, secrets, outputs).await?;
    let groups = shoal_proto::grouping::group(results.iter().map(|(h, o)| (h, *o)));
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            let (output, truncated) = g.output.and_then(|h| outputs.previews.get(&h)).cloned().unwrap_or_default();
            let hosts: Vec<Value> = g.hosts.iter().take(listed).map(|h| host_ref(h)).collect();
            json!({"status": g.status, "status_label": host_status::label(g.status), "exit_code": g.exit_code,
                   "host_count": g.hosts.len(), "hosts": hosts, "output": output, "output_truncated": truncated,
                   "key": group_key(g.status, g.exit_code, g.output)})
        })
        .collect();
    let rolling = store.step_rolling(s.id).await.map_err(internal("step rolling"))?;
    let done = results.iter().filter(|(h, _)| host_status::is_final(h.status)).count();
    Ok(json!({
        "step_instance_id": s.id, "name": s.name, "type": s.step_type, "status": s.status, "execute_count": s.execute_count,
        "start_time": s.start_time, "end_time": s.end_time, "host_count": results.len(), "finished_hosts": done,
        "current_batch": rolling.as_ref().map(|r| r.current_batch), "total_batch": rolling.as_ref().map(|r| r.total_batches),
        "groups": groups,
    }))
}

#[derive(serde::Deserialize)]
struct GroupHostsReq {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "shoal_proto::lenient::opt_i64")]
    job_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "shoal_proto::lenient::opt_i64")]
    step_instance_id: Option<i64>,
    #[serde(default, deserialize_with = "shoal_proto::lenient::opt_string")]
    key: Option<String>,
}

/// `GET|POST job_group_hosts {scope, job_instance_id, step_instance_id, key}`: every host of
/// one group of a step's current run — the group whose `key` a snapshot gave — grouped as
/// the stream groups them (an empty list once no host has that status, exit code and
/// output any more). Authorised like the stream.
pub async fn group_hosts(ctx: &Ctx, params: Value) -> crate::api::ApiResult {
    let req: GroupHostsReq = crate::api::decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let job = crate::api::v3::job_in_scope(ctx, &scope, req.job_instance_id).await?;
    let step_id = req.step_instance_id.ok_or_else(|| JobError::missing_or_illegal("step_instance_id"))?;
    let key = req.key.filter(|k| !k.is_empty()).ok_or_else(|| JobError::missing("key"))?;
    let steps = ctx.shared.store.get_steps(job.id).await.map_err(internal("get steps"))?;
    let step = steps.iter().find(|s| s.id == step_id).ok_or_else(|| JobError::new(shoal_proto::ErrorCode::STEP_INSTANCE_NOT_EXIST))?;
    let secrets = crate::api::v3::get_job_instance_ip_log::passwords(ctx, job.id).await?;
    let results = results(&ctx.shared, step, &secrets, &mut Outputs::default()).await?;
    let groups = shoal_proto::grouping::group(results.iter().map(|(h, o)| (h, *o)));
    let hosts: Vec<Value> = groups
        .iter()
        .find(|g| group_key(g.status, g.exit_code, g.output) == key)
        .map(|g| g.hosts.iter().map(|h| host_ref(h)).collect())
        .unwrap_or_default();
    Ok(json!({"job_instance_id": job.id, "step_instance_id": step.id, "key": key, "host_count": hosts.len(), "hosts": hosts}))
}
