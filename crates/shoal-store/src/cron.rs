//! Cron jobs and their fires.
//!
//! A cron row holds what to run (a plan and the variables it sets), when (a crontab
//! expression or one execute time, in a time zone), whether it is enabled and the next due
//! time (`next_fire`, ms). Every fire is claimed in one transaction that moves `next_fire`
//! on only if it still holds the due time being fired, and inserts the fire's
//! `(cron_id, due_time)` row, unique: two replicas (or a restarted server) never claim one due
//! time twice. The job a fire starts is linked to its fire row in the job's own creation
//! transaction ([`firing`]), so a job never exists without its fire saying so.
//!
//! A claim is a lease ([`FireLease`]: the fire and its `attempt`). The job's creation
//! commits only while its fire is still `claimed` under the same attempt, so a claim left by
//! a server that died before creating the job can be taken over
//! ([`CronStore::take_over_cron_fire`] bumps the attempt) and run by another, and the first
//! claimer, were it only slow, can no longer create a second job: one job per due time.

use async_trait::async_trait;

use crate::{AuditEvent, Result};

/// A cron job as stored. Times are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CronRow {
    pub id: i64,
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    pub job_plan_id: i64,
    /// 5-field crontab expression (minute hour day month weekday), for repeating crons.
    pub expression: Option<String>,
    /// Unix seconds of a one-shot cron.
    pub execute_time: Option<i64>,
    /// IANA time zone the expression is read in.
    pub time_zone: String,
    /// JSON array of the plan variables this cron sets.
    pub variables: String,
    pub enabled: bool,
    /// `run_once` | `skip`: what a fire missed while no server ran does.
    pub missed_policy: String,
    /// The due time fired next (ms); `None` while disabled or done.
    pub next_fire: Option<i64>,
    pub creator: String,
    /// Who its jobs run as: the principal that last saved or started it.
    pub run_as: CronActor,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

/// A principal as a cron records it: `app` | `user` | `gateway`, the app it called
/// through, and its name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CronActor {
    pub kind: String,
    pub app: String,
    pub name: String,
}

/// Filters of [`CronStore::list_crons`]; times in milliseconds, both ends inclusive.
#[derive(Debug, Clone, Default)]
pub struct CronQuery {
    pub scope_type: String,
    pub scope_id: String,
    /// Part of the name.
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub creator: Option<String>,
    pub last_modify_user: Option<String>,
    pub create_time: Option<(i64, i64)>,
    pub last_modify_time: Option<(i64, i64)>,
    pub start: i64,
    pub length: i64,
}

/// What happened to one due time of a cron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronFireRow {
    pub id: i64,
    pub cron_id: i64,
    /// The due time (ms).
    pub due_time: i64,
    /// Fired late, after no server ran at its due time.
    pub missed: bool,
    pub claimed_by: String,
    pub claimed_at: i64,
    /// How many times the claim was taken over from a claimer that did not create its job.
    pub attempt: i64,
    /// `claimed` | `started` | `failed` | `skipped`.
    pub outcome: String,
    pub job_instance_id: Option<i64>,
    pub error: Option<String>,
}

/// A due time to claim ([`CronStore::claim_cron_fire`]).
#[derive(Debug, Clone)]
pub struct FireClaim<'a> {
    pub cron_id: i64,
    /// The `next_fire` the claimer read: the claim holds only if it is still that.
    pub due_time: i64,
    /// The due time after this one; `None` ends the cron (a one-shot): it is disabled.
    pub next: Option<i64>,
    pub missed: bool,
    /// Record the fire as skipped (no job) instead of claimed.
    pub skip: bool,
    pub claimer: &'a str,
    pub now: i64,
}

/// A claim on a fire: the fire's id and the attempt it was claimed under. Only the holder
/// of the current attempt can create the fire's job or record its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FireLease {
    pub fire_id: i64,
    pub attempt: i64,
}

tokio::task_local! {
    /// The fire whose job is being created in this task.
    pub static FIRING: FireLease;
}

/// The fire of the job being created in this task, if any: `create_job` marks it started
/// with the job's id in the job's transaction, and creates nothing when the lease is no
/// longer the fire's ([`crate::StoreError::Conflict`]).
pub fn firing() -> Option<FireLease> {
    FIRING.try_with(|l| *l).ok()
}

#[async_trait]
pub trait CronStore {
    /// Insert a cron (its id is chosen here) with its audit event; returns the id.
    async fn create_cron(&self, c: &CronRow, event: &AuditEvent) -> Result<i64>;
    /// Replace what a cron runs, when and as whom (all but id, scope, creator and create
    /// time) with its audit event; false when there is no such cron.
    async fn update_cron(&self, c: &CronRow, event: &AuditEvent) -> Result<bool>;
    /// Enable (with its first due time; its jobs then run as `by`) or disable a cron, with
    /// its audit event.
    async fn set_cron_enabled(&self, id: i64, next_fire: Option<i64>, by: &CronActor, now: i64, event: &AuditEvent) -> Result<bool>;
    async fn get_cron(&self, id: i64) -> Result<Option<CronRow>>;
    /// One page of a scope's crons (newest first) and how many match.
    async fn list_crons(&self, q: &CronQuery) -> Result<(i64, Vec<CronRow>)>;
    /// Delete a cron with its audit event (its fires stay, as history); false when none.
    async fn delete_cron(&self, id: i64, event: &AuditEvent) -> Result<bool>;
    /// Enabled crons whose next due time is at or before `now`.
    async fn due_crons(&self, now: i64) -> Result<Vec<CronRow>>;
    /// Claim one due time: the lease on its fire (attempt 0), or `None` when it was taken (by
    /// another replica, or the cron changed since it was read).
    async fn claim_cron_fire(&self, c: &FireClaim<'_>) -> Result<Option<FireLease>>;
    /// Fires still `claimed` (no job, no failure recorded) whose claim was made before
    /// `claimed_before` (ms), oldest first.
    async fn stale_cron_fires(&self, claimed_before: i64, limit: i64) -> Result<Vec<CronFireRow>>;
    /// Take over the claim of `fire` as read (still `claimed`, at its attempt): the new lease,
    /// or `None` when it changed since (another took it over, or its job was created).
    async fn take_over_cron_fire(&self, fire: &CronFireRow, claimer: &str, now: i64) -> Result<Option<FireLease>>;
    /// Record that a claimed fire could not start its job (nothing when the lease is no
    /// longer the fire's).
    async fn fail_cron_fire(&self, lease: FireLease, error: &str) -> Result<()>;
    /// The latest fires of a cron, newest first.
    async fn cron_fires(&self, cron_id: i64, limit: i64) -> Result<Vec<CronFireRow>>;
}

/// Implements [`CronStore`] for `$store` (a struct with `pool` and `audit_key` fields).
macro_rules! impl_cron_store {
    ($store:ident, $db:ty) => {
        mod cron_store_impl {
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};

            use crate::cron::{CronActor, CronFireRow, CronQuery, CronRow, CronStore, FireClaim, FireLease};
            use crate::{AuditEvent, DbContext, Result};

            type DbRow = <$db as sqlx::Database>::Row;

            const CRON_COLS: &str = "id, scope_type, scope_id, name, job_plan_id, expression, execute_time, time_zone, variables, enabled, \
                                     missed_policy, next_fire, creator, run_as_kind, run_as_app, run_as, create_time, last_modify_user, last_modify_time";
            const FIRE_COLS: &str = "id, cron_id, due_time, missed, claimed_by, claimed_at, attempt, outcome, job_instance_id, error";

            fn cron_of(r: &DbRow) -> Result<CronRow> {
                let enabled: i64 = r.try_get("enabled").op("decode cron")?;
                Ok(CronRow {
                    id: r.try_get("id").op("decode cron")?,
                    scope_type: r.try_get("scope_type").op("decode cron")?,
                    scope_id: r.try_get("scope_id").op("decode cron")?,
                    name: r.try_get("name").op("decode cron")?,
                    job_plan_id: r.try_get("job_plan_id").op("decode cron")?,
                    expression: r.try_get("expression").op("decode cron")?,
                    execute_time: r.try_get("execute_time").op("decode cron")?,
                    time_zone: r.try_get("time_zone").op("decode cron")?,
                    variables: r.try_get("variables").op("decode cron")?,
                    enabled: enabled != 0,
                    missed_policy: r.try_get("missed_policy").op("decode cron")?,
                    next_fire: r.try_get("next_fire").op("decode cron")?,
                    creator: r.try_get("creator").op("decode cron")?,
                    run_as: CronActor {
                        kind: r.try_get("run_as_kind").op("decode cron")?,
                        app: r.try_get("run_as_app").op("decode cron")?,
                        name: r.try_get("run_as").op("decode cron")?,
                    },
                    create_time: r.try_get("create_time").op("decode cron")?,
                    last_modify_user: r.try_get("last_modify_user").op("decode cron")?,
                    last_modify_time: r.try_get("last_modify_time").op("decode cron")?,
                })
            }

            fn fire_of(r: &DbRow) -> Result<CronFireRow> {
                let missed: i64 = r.try_get("missed").op("decode cron fire")?;
                Ok(CronFireRow {
                    id: r.try_get("id").op("decode cron fire")?,
                    cron_id: r.try_get("cron_id").op("decode cron fire")?,
                    due_time: r.try_get("due_time").op("decode cron fire")?,
                    missed: missed != 0,
                    claimed_by: r.try_get("claimed_by").op("decode cron fire")?,
                    claimed_at: r.try_get("claimed_at").op("decode cron fire")?,
                    attempt: r.try_get("attempt").op("decode cron fire")?,
                    outcome: r.try_get("outcome").op("decode cron fire")?,
                    job_instance_id: r.try_get("job_instance_id").op("decode cron fire")?,
                    error: r.try_get("error").op("decode cron fire")?,
                })
            }

            fn filters<'a>(q: &mut QueryBuilder<'a, $db>, f: &'a CronQuery) {
                q.push(" WHERE scope_type = ").push_bind(&f.scope_type).push(" AND scope_id = ").push_bind(&f.scope_id);
                if let Some(n) = &f.name {
                    q.push(" AND name LIKE ").push_bind(format!("%{}%", n.replace('%', "\\%").replace('_', "\\_"))).push(" ESCAPE '\\'");
                }
                if let Some(e) = f.enabled {
                    q.push(" AND enabled = ").push_bind(e as i64);
                }
                if let Some(c) = &f.creator {
                    q.push(" AND creator = ").push_bind(c);
                }
                if let Some(u) = &f.last_modify_user {
                    q.push(" AND last_modify_user = ").push_bind(u);
                }
                if let Some((a, b)) = f.create_time {
                    q.push(" AND create_time >= ").push_bind(a).push(" AND create_time <= ").push_bind(b);
                }
                if let Some((a, b)) = f.last_modify_time {
                    q.push(" AND last_modify_time >= ").push_bind(a).push(" AND last_modify_time <= ").push_bind(b);
                }
            }

            #[async_trait]
            impl CronStore for super::$store {
                async fn create_cron(&self, c: &CronRow, event: &AuditEvent) -> Result<i64> {
                    let mut tx = self.pool.begin().await.op("begin create cron")?;
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO crons (scope_type, scope_id, name, job_plan_id, expression, execute_time, time_zone, variables, enabled, \
                         missed_policy, next_fire, creator, run_as_kind, run_as_app, run_as, create_time, last_modify_user, last_modify_time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
                    )
                    .bind(&c.scope_type)
                    .bind(&c.scope_id)
                    .bind(&c.name)
                    .bind(c.job_plan_id)
                    .bind(&c.expression)
                    .bind(c.execute_time)
                    .bind(&c.time_zone)
                    .bind(&c.variables)
                    .bind(c.enabled as i64)
                    .bind(&c.missed_policy)
                    .bind(c.next_fire)
                    .bind(&c.creator)
                    .bind(&c.run_as.kind)
                    .bind(&c.run_as.app)
                    .bind(&c.run_as.name)
                    .bind(c.create_time)
                    .bind(&c.last_modify_user)
                    .bind(c.last_modify_time)
                    .fetch_one(&mut *tx)
                    .await
                    .op("insert cron")?;
                    let mut event = event.clone();
                    event.resource_id = id.to_string();
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, &event).await?;
                    tx.commit().await.op("commit create cron")?;
                    Ok(id)
                }

                async fn update_cron(&self, c: &CronRow, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin update cron")?;
                    let r = sqlx::query(
                        "UPDATE crons SET name = $1, job_plan_id = $2, expression = $3, execute_time = $4, time_zone = $5, variables = $6, \
                         enabled = $7, missed_policy = $8, next_fire = $9, last_modify_user = $10, last_modify_time = $11, \
                         run_as_kind = $12, run_as_app = $13, run_as = $14 WHERE id = $15",
                    )
                    .bind(&c.name)
                    .bind(c.job_plan_id)
                    .bind(&c.expression)
                    .bind(c.execute_time)
                    .bind(&c.time_zone)
                    .bind(&c.variables)
                    .bind(c.enabled as i64)
                    .bind(&c.missed_policy)
                    .bind(c.next_fire)
                    .bind(&c.last_modify_user)
                    .bind(c.last_modify_time)
                    .bind(&c.run_as.kind)
                    .bind(&c.run_as.app)
                    .bind(&c.run_as.name)
                    .bind(c.id)
                    .execute(&mut *tx)
                    .await
                    .op("update cron")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit update cron")?;
                    Ok(true)
                }

                async fn set_cron_enabled(&self, id: i64, next_fire: Option<i64>, by: &CronActor, now: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin set cron status")?;
                    // Starting makes the starter the one its jobs run as; pausing changes nobody.
                    let r = sqlx::query(
                        "UPDATE crons SET enabled = $1, next_fire = $2, last_modify_user = $3, last_modify_time = $4, \
                         run_as_kind = CASE WHEN $1 = 1 THEN $5 ELSE run_as_kind END, \
                         run_as_app = CASE WHEN $1 = 1 THEN $6 ELSE run_as_app END, \
                         run_as = CASE WHEN $1 = 1 THEN $3 ELSE run_as END WHERE id = $7",
                    )
                    .bind(next_fire.is_some() as i64)
                    .bind(next_fire)
                    .bind(&by.name)
                    .bind(now)
                    .bind(&by.kind)
                    .bind(&by.app)
                    .bind(id)
                        .execute(&mut *tx)
                        .await
                        .op("set cron status")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit set cron status")?;
                    Ok(true)
                }

                async fn get_cron(&self, id: i64) -> Result<Option<CronRow>> {
                    let row = sqlx::query(&format!("SELECT {CRON_COLS} FROM crons WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get cron")?;
                    row.as_ref().map(cron_of).transpose()
                }

                async fn list_crons(&self, f: &CronQuery) -> Result<(i64, Vec<CronRow>)> {
                    let mut cq = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM crons");
                    filters(&mut cq, f);
                    let total: i64 = cq.build_query_scalar().fetch_one(&self.pool).await.op("count crons")?;
                    let mut q = QueryBuilder::<$db>::new(format!("SELECT {CRON_COLS} FROM crons"));
                    filters(&mut q, f);
                    q.push(" ORDER BY id DESC LIMIT ").push_bind(f.length).push(" OFFSET ").push_bind(f.start);
                    let rows = q.build().fetch_all(&self.pool).await.op("list crons")?;
                    Ok((total, rows.iter().map(cron_of).collect::<Result<_>>()?))
                }

                async fn delete_cron(&self, id: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin delete cron")?;
                    let r = sqlx::query("DELETE FROM crons WHERE id = $1").bind(id).execute(&mut *tx).await.op("delete cron")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit delete cron")?;
                    Ok(true)
                }

                async fn due_crons(&self, now: i64) -> Result<Vec<CronRow>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {CRON_COLS} FROM crons WHERE enabled = 1 AND next_fire IS NOT NULL AND next_fire <= $1 ORDER BY next_fire, id"
                    ))
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .op("due crons")?;
                    rows.iter().map(cron_of).collect()
                }

                async fn claim_cron_fire(&self, c: &FireClaim<'_>) -> Result<Option<FireLease>> {
                    let mut tx = self.pool.begin().await.op("begin claim cron fire")?;
                    // The compare-and-set: a replica that read the same due time finds it
                    // moved on (PostgreSQL re-checks the row after the winner commits).
                    let moved = sqlx::query("UPDATE crons SET next_fire = $1, enabled = $2 WHERE id = $3 AND enabled = 1 AND next_fire = $4")
                        .bind(c.next)
                        .bind(c.next.is_some() as i64)
                        .bind(c.cron_id)
                        .bind(c.due_time)
                        .execute(&mut *tx)
                        .await
                        .op("move cron on")?;
                    if moved.rows_affected() == 0 {
                        return Ok(None);
                    }
                    // The unique (cron_id, due_time) is the backstop: a due time seen again
                    // (a cron disabled and enabled within one period) is never fired twice.
                    let id: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO cron_fires (cron_id, due_time, missed, claimed_by, claimed_at, outcome) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (cron_id, due_time) DO NOTHING RETURNING id",
                    )
                    .bind(c.cron_id)
                    .bind(c.due_time)
                    .bind(c.missed as i64)
                    .bind(c.claimer)
                    .bind(c.now)
                    .bind(if c.skip { "skipped" } else { "claimed" })
                    .fetch_optional(&mut *tx)
                    .await
                    .op("insert cron fire")?;
                    // Moving on is kept either way: that due time is dealt with.
                    tx.commit().await.op("commit claim cron fire")?;
                    Ok(id.map(|fire_id| FireLease { fire_id, attempt: 0 }))
                }

                async fn stale_cron_fires(&self, claimed_before: i64, limit: i64) -> Result<Vec<CronFireRow>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {FIRE_COLS} FROM cron_fires WHERE outcome = 'claimed' AND claimed_at < $1 ORDER BY claimed_at, id LIMIT $2"
                    ))
                    .bind(claimed_before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .op("stale cron fires")?;
                    rows.iter().map(fire_of).collect()
                }

                async fn take_over_cron_fire(&self, fire: &CronFireRow, claimer: &str, now: i64) -> Result<Option<FireLease>> {
                    // The compare-and-set on the attempt: of two that read the same claim, one
                    // moves it on; the job's creation checks the attempt it holds.
                    let r = sqlx::query(
                        "UPDATE cron_fires SET attempt = attempt + 1, claimed_by = $1, claimed_at = $2 \
                         WHERE id = $3 AND outcome = 'claimed' AND attempt = $4",
                    )
                    .bind(claimer)
                    .bind(now)
                    .bind(fire.id)
                    .bind(fire.attempt)
                    .execute(&self.pool)
                    .await
                    .op("take over cron fire")?;
                    Ok((r.rows_affected() == 1).then(|| FireLease { fire_id: fire.id, attempt: fire.attempt + 1 }))
                }

                async fn fail_cron_fire(&self, lease: FireLease, error: &str) -> Result<()> {
                    sqlx::query("UPDATE cron_fires SET outcome = 'failed', error = $1 WHERE id = $2 AND outcome = 'claimed' AND attempt = $3")
                        .bind(error)
                        .bind(lease.fire_id)
                        .bind(lease.attempt)
                        .execute(&self.pool)
                        .await
                        .op("fail cron fire")?;
                    Ok(())
                }

                async fn cron_fires(&self, cron_id: i64, limit: i64) -> Result<Vec<CronFireRow>> {
                    let rows = sqlx::query(&format!("SELECT {FIRE_COLS} FROM cron_fires WHERE cron_id = $1 ORDER BY due_time DESC, id DESC LIMIT $2"))
                        .bind(cron_id)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                        .op("cron fires")?;
                    rows.iter().map(fire_of).collect()
                }
            }
        }
    };
}
pub(crate) use impl_cron_store;
