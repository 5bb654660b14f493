//! The cron scheduler: fires each enabled cron exactly once per due time, across replicas
//! and restarts.
//!
//! Every `cron_poll_ms` the scheduler reads the enabled crons whose next due time
//! (`next_fire`) has come, and claims each due time in the store before doing anything
//! ([`shoal_store::CronStore::claim_cron_fire`]): the claim moves `next_fire` on only if it
//! still holds that due time, and inserts the fire's unique `(cron, due time)` row, in one
//! transaction. A replica (or a restarted server) that read the same due time finds it taken.
//! The job is the cron's plan run through [`crate::engine::admission`] as the cron's creator,
//! or the principal that saved or started it since (their grants as they are now), with
//! `launch_mode` 3; its creation marks the fire started in the same transaction, and a
//! refusal is recorded on the fire.
//!
//! A server can stop between the claim and the job's creation. The claim is a lease
//! ([`shoal_store::FireLease`]), and the job's creation commits only under the fire's current
//! lease: a fire still `claimed` after `cron_reclaim_secs` is taken over (the store moves its
//! attempt on, once however many replicas try) and its job created then, while the first
//! claimer, had it only been slow, can no longer create one. So every claimed due time ends
//! in exactly one job, or in a recorded failure.
//!
//! A due time found more than `cron_misfire_secs` late was missed while no server ran: the
//! cron's missed-fire policy runs it once (however many due times passed, they are one late
//! fire) or skips it, and the fire is recorded either way. A one-shot cron (an execute time)
//! is disabled by its fire.
//!
//! Expressions are bk-job's: 5-field crontab (`minute hour day month weekday`), read in the
//! cron's IANA time zone; what Quartz cannot run after bk-job's fix-up (both a day of month
//! and a day of week, `?`, `L`, `W`, `#`) is refused when saved.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone as _;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use shoal_core::{JobError, Scope};
use shoal_proto::code::Lang;
use shoal_proto::status::launch_mode;
use shoal_proto::ErrorCode;
use shoal_store::{CronFireRow, CronRow, FireClaim, FireLease, StoreError};
use tokio::sync::watch;

use crate::api::v3::job_plan::{self, GlobalVarReq, PlanRun};
use crate::api::Ctx;
use crate::auth::Caller;
use crate::{ServerConfig, Shared};

/// Missed-fire policy: run a missed due time once, late.
pub const MISSED_RUN_ONCE: &str = "run_once";
/// Missed-fire policy: record a missed due time as skipped.
pub const MISSED_SKIP: &str = "skip";
/// Fires left claimed without their job taken over in one look.
const RECLAIM_BATCH: i64 = 100;

/// Parses a 5-field crontab expression as bk-job accepts it (its `CronCheckUtil`): what
/// its Unix-to-Quartz fix-up cannot express is refused with the reason.
pub fn parse_expression(expr: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err("should be a 5-field crontab expression: minute hour day month weekday, like 0/5 * * * *".into());
    }
    let plain = |f: &str| f.chars().all(|c| c.is_ascii_digit() || "*,/-".contains(c));
    let named = |f: &str| f.chars().all(|c| c.is_ascii_alphanumeric() || "*,/-".contains(c));
    // A lone `?` in the day of month or day of week is Quartz's "no specific value", as in
    // bk-job's own example `0/5 * * * ?`: the same as `*` there.
    let (minute, hour, month) = (fields[0], fields[1], fields[3]);
    let dom = if fields[2] == "?" { "*" } else { fields[2] };
    let dow = if fields[4] == "?" { "*" } else { fields[4] };
    let expr = &[minute, hour, dom, month, dow].join(" ");
    if !plain(minute) || !plain(hour) || !plain(dom) || !named(month) || !named(dow) || dow.to_ascii_uppercase().contains('L') {
        return Err("only numbers, names, * , / and - are supported (no ? L W #)".into());
    }
    // Quartz runs a day of month or a day of week, never both.
    if dom != "*" && dow != "*" {
        return Err("a day of month and a day of week cannot both be set".into());
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .sloppy_ranges(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// An expression as bk-job answers it: what its `CronExpressionUtil.fixExpressionForUser`
/// gives back for the Quartz form it stored (cron-utils' Unix-to-Quartz mapping and back):
/// fields one space apart, Quartz's `?` written `*`, month and weekday names as numbers
/// (`JAN` 1, `SUN` 0), and weekday 7 as 0.
pub fn user_form(expr: &str) -> String {
    const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let value = |v: &str, names: &[&str], first: usize| -> String {
        let up = v.to_ascii_uppercase();
        names.iter().position(|n| *n == up).map_or_else(|| v.to_string(), |i| (i + first).to_string())
    };
    let field = |f: &str, names: &[&str], first: usize, weekday: bool| -> String {
        if f == "?" {
            return "*".into();
        }
        let part = |p: &str| -> String {
            let (base, step) = match p.split_once('/') {
                Some((b, s)) => (b, Some(s)),
                None => (p, None),
            };
            let base = match base.split_once('-') {
                Some((a, b)) => format!("{}-{}", value(a, names, first), value(b, names, first)),
                None if weekday && base == "7" => "0".into(),
                None => value(base, names, first),
            };
            step.map_or(base.clone(), |s| format!("{base}/{s}"))
        };
        f.split(',').map(part).collect::<Vec<_>>().join(",")
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return expr.to_string();
    }
    [
        field(fields[0], &[], 0, false),
        field(fields[1], &[], 0, false),
        field(fields[2], &[], 0, false),
        field(fields[3], &MONTHS, 1, false),
        field(fields[4], &DAYS, 0, true),
    ]
    .join(" ")
}

/// The time zone a cron is saved with: the one given (an IANA name), else the server's
/// `cron_time_zone`, else this machine's zone, else UTC.
pub fn time_zone(given: Option<&str>, config: &ServerConfig) -> Result<String, JobError> {
    if let Some(name) = given.map(str::trim).filter(|n| !n.is_empty()) {
        return match name.parse::<Tz>() {
            Ok(_) => Ok(name.to_string()),
            Err(_) => {
                Err(JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec!["execute_time_zone".into(), "not an IANA time zone".into()]))
            }
        };
    }
    let local = iana_time_zone::get_timezone().ok().filter(|z| z.parse::<Tz>().is_ok());
    Ok(config.cron_time_zone.clone().or(local).unwrap_or_else(|| "UTC".into()))
}

/// The first due time of `expr` strictly after `after_ms`, in milliseconds.
pub fn next_after(cron: &Cron, zone: &str, after_ms: i64) -> Option<i64> {
    let tz: Tz = zone.parse().ok()?;
    let t = tz.timestamp_millis_opt(after_ms).single()?;
    cron.find_next_occurrence(&t, false).ok().map(|d| d.timestamp_millis())
}

/// When an enabled cron is due first, counted from `now_ms`: the next time its expression
/// matches, or its execute time (1245006 when that has passed).
pub fn first_due(c: &CronRow, now_ms: i64) -> Result<i64, JobError> {
    match (&c.expression, c.execute_time) {
        (Some(expr), _) => {
            let cron = parse_expression(expr)
                .map_err(|why| JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec!["expression".into(), why]))?;
            next_after(&cron, &c.time_zone, now_ms).ok_or_else(|| JobError::illegal("expression"))
        }
        (None, Some(t)) if t.saturating_mul(1000) > now_ms => Ok(t * 1000),
        (None, Some(_)) => Err(JobError::new(ErrorCode::CRON_JOB_TIME_PASSED)),
        (None, None) => Err(JobError::missing_or_illegal("expression|execute_time")),
    }
}

/// Starts the scheduler; it stops when `stop` turns true.
pub fn spawn(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(shared.config.cron_poll_ms.max(10));
    tokio::spawn(async move {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = tick(&shared, shoal_core::time::now_ms()).await {
                tracing::warn!(error = %e, "cron scheduler: reading due crons failed; trying again");
                shared.gateway.metrics.store_error("cron");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    });
}

/// Who this replica is when it claims a fire.
fn claimer(shared: &Shared) -> String {
    shared.gateway.replica_id().map_or_else(|| "local".to_string(), str::to_string)
}

/// Deals with every cron due at `now`: claims each due time, then starts its job (or
/// records the skip); then takes over fires left claimed without their job for longer than
/// `cron_reclaim_secs` and starts theirs. Returns how many jobs it started.
pub async fn tick(shared: &Arc<Shared>, now: i64) -> Result<usize, StoreError> {
    let store = &shared.store;
    let misfire_ms = shared.config.cron_misfire_secs.saturating_mul(1000) as i64;
    let me = claimer(shared);
    let mut started = 0;
    for c in store.due_crons(now).await? {
        let Some(due) = c.next_fire else { continue };
        let missed = now - due > misfire_ms;
        // Due times that passed meanwhile are this one fire; the next is after now.
        let next = match &c.expression {
            Some(expr) => match parse_expression(expr) {
                Ok(cron) => next_after(&cron, &c.time_zone, now.max(due)),
                Err(why) => {
                    tracing::error!(cron_id = c.id, %why, "stored cron expression no longer parses; the cron stops");
                    None
                }
            },
            None => None,
        };
        let skip = missed && c.missed_policy == MISSED_SKIP;
        let claim = FireClaim { cron_id: c.id, due_time: due, next, missed, skip, claimer: &me, now };
        let Some(lease) = store.claim_cron_fire(&claim).await? else {
            tracing::debug!(cron_id = c.id, due_time = due, "cron fire taken by another replica");
            continue;
        };
        if skip {
            tracing::info!(cron_id = c.id, due_time = due, "missed cron fire skipped (policy skip)");
            continue;
        }
        started += fire(shared, &c, due, missed, lease).await? as usize;
    }
    started += reclaim(shared, now, &me).await?;
    Ok(started)
}

/// Takes over the fires claimed before `now - cron_reclaim_secs` that have neither a job
/// nor a failure (their claimer stopped in between) and starts their jobs.
async fn reclaim(shared: &Arc<Shared>, now: i64, me: &str) -> Result<usize, StoreError> {
    let store = &shared.store;
    let bound = now.saturating_sub(shared.config.cron_reclaim_secs.saturating_mul(1000) as i64);
    let mut started = 0;
    for f in store.stale_cron_fires(bound, RECLAIM_BATCH).await? {
        let Some(lease) = store.take_over_cron_fire(&f, me, now).await? else {
            tracing::debug!(cron_id = f.cron_id, due_time = f.due_time, "left cron fire taken over by another replica");
            continue;
        };
        tracing::warn!(cron_id = f.cron_id, due_time = f.due_time, claimed_by = %f.claimed_by, attempt = lease.attempt,
            "cron fire claimed without its job: taken over");
        started += fire_left(shared, &f, lease).await? as usize;
    }
    Ok(started)
}

/// Starts the job of a fire taken over, if its cron still exists.
async fn fire_left(shared: &Arc<Shared>, f: &CronFireRow, lease: FireLease) -> Result<bool, StoreError> {
    match shared.store.get_cron(f.cron_id).await? {
        Some(c) => fire(shared, &c, f.due_time, f.missed, lease).await,
        None => {
            shared.store.fail_cron_fire(lease, "the cron was deleted before its job was created").await?;
            Ok(false)
        }
    }
}

/// Creates the job of one claimed fire under its lease; a refusal is recorded on the fire.
/// True when the job was created.
async fn fire(shared: &Arc<Shared>, c: &CronRow, due: i64, missed: bool, lease: FireLease) -> Result<bool, StoreError> {
    let out = shoal_store::cron::FIRING.scope(lease, run(shared, c, due)).await;
    match out {
        Ok(job_id) => {
            tracing::info!(cron_id = c.id, due_time = due, missed, job_instance_id = job_id, "cron fired");
            Ok(true)
        }
        Err(e) => {
            let why = format!("{}: {}", e.code.0, e.message(Lang::En));
            tracing::warn!(cron_id = c.id, due_time = due, error = %why, "cron fire refused");
            // Under a lease no longer the fire's this records nothing: its new holder decides.
            shared.store.fail_cron_fire(lease, &why).await?;
            Ok(false)
        }
    }
}

/// Runs the cron's plan as the principal it runs as.
async fn run(shared: &Arc<Shared>, c: &CronRow, due: i64) -> Result<i64, JobError> {
    let caller = run_as(shared, c).await?;
    let ctx = Ctx { shared: shared.clone(), caller, lang: Lang::En, request_id: format!("cron-{}-{due}", c.id), origin: None };
    let scope = Scope { scope_type: c.scope_type.clone(), scope_id: c.scope_id.clone() };
    let vars: Vec<GlobalVarReq> = serde_json::from_str(&c.variables).map_err(crate::api::internal("decode cron variables"))?;
    let vars = open_values(shared, &scope, vars)?;
    let plan = PlanRun {
        job_plan_id: Some(c.job_plan_id),
        global_vars: &vars,
        callback_url: None,
        start: true,
        launch_mode: launch_mode::CRON,
        audit_action: "cron_fire",
        audit_extra: serde_json::json!({"cron_id": c.id, "due_time": due}),
    };
    let out = job_plan::run_plan(&ctx, &scope, plan).await.map(|(id, _)| id);
    // A refusal at a fire is evidence as much as one of a request.
    if let Err(e) = &out {
        crate::api::authz::record_denial(&ctx, "cron_fire", e).await;
    }
    out
}

/// The principal a cron's jobs run as (the one that last saved or started it), as it stands
/// now: a removed or disabled user, a revoked app, or an app no longer a trusted gateway runs
/// nothing.
async fn run_as(shared: &Shared, c: &CronRow) -> Result<Caller, JobError> {
    let store = &shared.store;
    let who = &c.run_as;
    let gone = || JobError::with(ErrorCode::BK_PERMISSION_DENIED, who.name.clone());
    match who.kind.as_str() {
        "user" => match store.get_user(&who.name).await.map_err(crate::api::internal("get cron principal"))? {
            Some(u) if u.disabled_at.is_none() => Ok(Caller::user(&u.username, u.is_admin, None)),
            _ => Err(gone()),
        },
        "app" => {
            let apps = store.list_apps().await.map_err(crate::api::internal("get cron principal"))?;
            let live = apps.iter().any(|a| a.code == who.app && a.revoked_at.is_none());
            match store.get_app(&who.app).await.map_err(crate::api::internal("get cron principal"))? {
                Some(a) if live => Ok(Caller::app(&a.code, a.is_admin)),
                _ => Err(gone()),
            }
        }
        "gateway" => {
            let app = store.get_app(&who.app).await.map_err(crate::api::internal("get cron principal"))?.ok_or_else(gone)?;
            let (gateway, user) = store.gateway_and_user(&app.code, &who.name).await.map_err(crate::api::internal("get cron principal"))?;
            if !gateway || user.as_ref().is_some_and(|u| u.disabled_at.is_some()) {
                return Err(gone());
            }
            Ok(Caller::gateway(&app, &who.name, user.as_ref()))
        }
        _ => Err(gone()),
    }
}

/// Authenticated data of a cron's sealed variable values.
pub fn value_aad(scope: &Scope, name: &str) -> Vec<u8> {
    crate::secrets::aad(&["cron", &scope.scope_type, &scope.scope_id, name])
}

/// The cron's variable values with sealed ones opened (a value that does not open fails
/// the fire: it never runs with the plan's default instead).
fn open_values(shared: &Shared, scope: &Scope, mut vars: Vec<GlobalVarReq>) -> Result<Vec<GlobalVarReq>, JobError> {
    for v in &mut vars {
        if let (Some(value), Some(name)) = (&v.value, &v.name) {
            if crate::secrets::is_sealed(value) {
                let open =
                    shared.config.sealing_key.open(value, &value_aad(scope, name)).map_err(crate::api::internal("open cron variable"))?;
                v.value = Some(open);
            }
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bk_job_expressions() {
        for ok in
            ["0/5 * * * *", "*/5 * * * *", "30 2 * * 1-5", "0 0 1 * *", "15 10 * JAN,JUL *", "0 12 * * MON", "0/5 * * * ?", "0 0 ? * 1"]
        {
            assert!(parse_expression(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * *",
            "0 0 * * * *",
            "? 0 * * *",
            "0 0 1? * *",
            "0 0 L * *",
            "0 0 * * 5L",
            "0 0 * * 1#2",
            "0 0 1 * 1",
            "61 * * * *",
            "@daily",
            "",
        ] {
            assert!(parse_expression(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expressions_in_bk_jobs_answer_form() {
        for (given, answered) in [
            ("0/5 * * * ?", "0/5 * * * *"),
            ("0/5  *  * * *", "0/5 * * * *"),
            ("*/5 * * * *", "*/5 * * * *"),
            ("0 0 ? * 1", "0 0 * * 1"),
            ("15 10 * JAN,jul *", "15 10 * 1,7 *"),
            ("0 12 * * MON-FRI", "0 12 * * 1-5"),
            ("0 12 * * sun,7", "0 12 * * 0,0"),
            ("0 12 * * MON-FRI/2", "0 12 * * 1-5/2"),
            ("30 2 1-15 * *", "30 2 1-15 * *"),
        ] {
            assert_eq!(user_form(given), answered, "{given}");
        }
    }

    #[test]
    fn next_due_in_a_zone() {
        let cron = parse_expression("30 2 * * *").unwrap();
        // 2026-01-01T00:00:00Z; 02:30 in Shanghai (UTC+8) was 2025-12-31T18:30Z, so the next is the day after.
        let t0 = 1_767_225_600_000;
        let next = next_after(&cron, "Asia/Shanghai", t0).unwrap();
        assert_eq!(next, t0 + (18 * 60 + 30) * 60_000);
        assert_eq!(next_after(&cron, "UTC", t0).unwrap(), t0 + 150 * 60_000);
        // Strictly after: a due time is never its own successor.
        assert_eq!(next_after(&cron, "UTC", t0 + 150 * 60_000).unwrap(), t0 + (24 * 60 + 150) * 60_000);
    }
}
