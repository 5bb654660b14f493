//! Finalization in the commit of the last host result: when [`crate::Store::apply`] makes a
//! step run's last task final, the same commit gives the step its final status and, when
//! that ends the job, the job its final status and its callback. The engine only starts a
//! next step. Before, the engine did it after the commit with a dozen queries and two more
//! write transactions per step, one step after another behind the single ingest writer; on
//! SQLite, whose one write lock every job submission also takes, finalization fell minutes
//! behind under a steady stream of jobs.
//!
//! Steps rolling in batches are left to the engine (it starts their next batch).
//!
//! On SQLite writers are serialised, so the check "no task left unfinished" inside the
//! batch's transaction sees every other commit. On PostgreSQL two replicas may commit the last
//! two results of a step at once, each not seeing the other's: there the check runs in a
//! second transaction after the batch's commit, so the later one sees both, and the
//! conditional step update lets exactly one of them end the step.

use shoal_proto::status::RunStatus;

/// The statuses a step keeps once it has one (JOB's finished statuses).
pub fn finished_statuses() -> Vec<i32> {
    RunStatus::ALL.into_iter().filter(|s| s.is_finished()).map(i32::from).collect()
}

/// The step status of a run whose tasks are all final.
pub fn step_end(host_statuses: impl IntoIterator<Item = i32>, stopping: bool, ignore_error: bool) -> RunStatus {
    match shoal_core::outcome::step_status(host_statuses, stopping) {
        RunStatus::Fail if ignore_error => RunStatus::IgnoreError,
        s => s,
    }
}

/// Implements `finalize_sql::end_steps` for `$db`, used by `apply`.
macro_rules! impl_finalize {
    ($db:ty) => {
        pub(crate) mod finalize_sql {
            use shoal_proto::agent::TaskKey;
            use shoal_proto::status::RunStatus;
            use sqlx::{QueryBuilder, Row};

            use crate::finalize::{finished_statuses, step_end};
            use crate::{DbContext, EndedStep, Result};

            type Conn = <$db as sqlx::Database>::Connection;

            /// Ends the step runs of `finals` that have no unfinished task left, with their job
            /// when they end it. Returns them, and the rolling step runs left to the engine.
            pub(crate) async fn end_steps(conn: &mut Conn, finals: &[TaskKey], now: i64) -> Result<(Vec<EndedStep>, Vec<(i64, i32)>)> {
                let runs: std::collections::BTreeSet<(i64, i32)> = finals.iter().map(|k| (k.step_instance_id, k.execute_count)).collect();
                let (mut ended, mut rolling) = (Vec::new(), Vec::new());
                for (step_id, execute_count) in runs {
                    let row = sqlx::query(
                        "SELECT s.job_instance_id, s.step_order, s.status, s.execute_count, j.stopping, j.callback_url, \
                         COALESCE(e.ignore_error, 0) AS ignore_error, \
                         CAST(CASE WHEN r.step_instance_id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS rolls \
                         FROM step_instances s JOIN job_instances j ON j.id = s.job_instance_id \
                         LEFT JOIN step_extras e ON e.step_instance_id = s.id \
                         LEFT JOIN step_rolling r ON r.step_instance_id = s.id WHERE s.id = $1",
                    )
                    .bind(step_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .op("read an ending step")?;
                    let Some(row) = row else { continue };
                    let get = |c: &str| row.try_get::<i64, _>(c).op("decode an ending step");
                    // A retried rolling step runs all its hosts at once (execute count > 0).
                    if get("rolls")? != 0 && execute_count == 0 {
                        rolling.push((step_id, execute_count));
                        continue;
                    }
                    if get("status")? != RunStatus::Running as i64 || get("execute_count")? != i64::from(execute_count) {
                        continue;
                    }
                    // Stops at the first unfinished task (partial index `host_tasks_unfinished`):
                    // a big step is read whole only once, when it ends.
                    let unfinished: Option<i64> = sqlx::query_scalar(
                        "SELECT step_instance_id FROM host_tasks WHERE step_instance_id = $1 AND execute_count = $2 AND status IN (5, 7) LIMIT 1",
                    )
                    .bind(step_id)
                    .bind(i64::from(execute_count))
                    .fetch_optional(&mut *conn)
                    .await
                    .op("look for unfinished tasks")?;
                    if unfinished.is_some() {
                        continue;
                    }
                    let statuses: Vec<i64> = sqlx::query_scalar("SELECT status FROM host_tasks WHERE step_instance_id = $1 AND execute_count = $2")
                        .bind(step_id)
                        .bind(i64::from(execute_count))
                        .fetch_all(&mut *conn)
                        .await
                        .op("read an ending step's tasks")?;
                    let (job_id, order, stopping) = (get("job_instance_id")?, get("step_order")?, get("stopping")? != 0);
                    let status = step_end(statuses.iter().map(|s| *s as i32), stopping, get("ignore_error")? != 0);
                    let mut q = QueryBuilder::<$db>::new("UPDATE step_instances SET status = ");
                    q.push_bind(status as i64).push(", end_time = ").push_bind(now).push(" WHERE id = ").push_bind(step_id);
                    q.push(" AND status NOT IN (");
                    let mut sep = q.separated(", ");
                    for s in finished_statuses() {
                        sep.push_bind(i64::from(s));
                    }
                    q.push(")");
                    if q.build().execute(&mut *conn).await.op("end a step")?.rows_affected() == 0 {
                        continue;
                    }
                    let next: Option<i64> = sqlx::query_scalar("SELECT id FROM step_instances WHERE job_instance_id = $1 AND step_order > $2 LIMIT 1")
                        .bind(job_id)
                        .bind(order)
                        .fetch_optional(&mut *conn)
                        .await
                        .op("look for a next step")?;
                    let job_status = shoal_core::outcome::after_step(status, stopping, next.is_some());
                    let mut callback = false;
                    if let Some(end) = job_status {
                        let url: Option<String> = row.try_get("callback_url").op("decode an ending step")?;
                        callback = end_job(conn, job_id, end, url, now).await?;
                    }
                    ended.push(EndedStep {
                        step_instance_id: step_id,
                        job_instance_id: job_id,
                        step_order: order as i32,
                        status: status as i32,
                        hosts: statuses.len(),
                        job_status: job_status.map(|s| s as i32),
                        callback,
                    });
                }
                Ok((ended, rolling))
            }

            /// The job's end (unless it already ended) and its callback; true when a callback
            /// was queued.
            async fn end_job(conn: &mut Conn, job_id: i64, status: RunStatus, url: Option<String>, now: i64) -> Result<bool> {
                let r = sqlx::query("UPDATE job_instances SET status = $1, end_time = $2 WHERE id = $3 AND status IN ($4, $5, $6)")
                    .bind(status as i64)
                    .bind(now)
                    .bind(job_id)
                    .bind(RunStatus::Running as i64)
                    .bind(RunStatus::WaitingUser as i64)
                    .bind(RunStatus::Stopping as i64)
                    .execute(&mut *conn)
                    .await
                    .op("end a job")?;
                let Some(url) = url.filter(|_| r.rows_affected() > 0) else { return Ok(false) };
                let steps = sqlx::query("SELECT id, status FROM step_instances WHERE job_instance_id = $1 ORDER BY step_order")
                    .bind(job_id)
                    .fetch_all(&mut *conn)
                    .await
                    .op("read a job's steps")?;
                let steps: Vec<(i64, i32)> = steps
                    .iter()
                    .map(|s| Ok((s.try_get("id").op("decode step")?, s.try_get::<i64, _>("status").op("decode step")? as i32)))
                    .collect::<Result<_>>()?;
                let body = shoal_proto::jobv3::CallbackBody::encode(job_id, status as i32, steps);
                sqlx::query("INSERT INTO callbacks (job_instance_id, url, body, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(job_id)
                    .bind(url)
                    .bind(body)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .op("enqueue callback")?;
                Ok(true)
            }
        }
    };
}
pub(crate) use impl_finalize;
