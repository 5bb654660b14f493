//! Storage for several server replicas on one database: which replica holds each agent's
//! session, messages routed to the replica holding an agent, replica liveness and the
//! removal of dead replicas, the lost-agent sweep across replicas, and the claim that lets
//! exactly one replica finalize a step. A separate trait ([`ScaleStore`], a supertrait of [`crate::Store`]) with its SQL
//! written once in [`impl_scale_store!`] and instantiated per backend.
//!
//! Only PostgreSQL is shared ([`ScaleStore::is_shared`]); its LISTEN/NOTIFY wakes the holding
//! replica ([`ScaleStore::listen`]). On SQLite there is one server and these tables stay
//! unused except for the step claim.

use async_trait::async_trait;
use shoal_proto::agent::TaskKey;
use tokio::sync::mpsc;

use crate::Result;

/// A message for an agent held by another replica.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedMessage {
    /// The replica holding the agent's session.
    pub replica_id: String,
    pub host_id: i64,
    /// The `ServerMsg`, as JSON.
    pub body: String,
}

#[async_trait]
pub trait ScaleStore: Send + Sync {
    /// Whether several servers may share this store (PostgreSQL). When false (SQLite) there
    /// is one server and sessions are only known in its memory.
    fn is_shared(&self) -> bool;

    /// Records that `replica` is alive at `now`. False when it had no row (its first beat,
    /// or it was silent so long that it was removed as dead).
    async fn replica_heartbeat(&self, replica: &str, started_at: i64, now: i64) -> Result<bool>;
    /// A replica stopping cleanly: its sessions are closed at `now` and its row removed.
    async fn replica_stopped(&self, replica: &str, now: i64) -> Result<()>;

    /// Removes the replicas whose heartbeat is older than `dead_before`, as dead since
    /// `ttl_ms` after their last beat: the sessions they held are closed as of then (so the
    /// lost-agent rule still fails their hosts' tasks), and the messages routed to replicas
    /// that are gone are deleted. Answers how many replicas were removed.
    async fn remove_dead_replicas(&self, dead_before: i64, ttl_ms: i64) -> Result<u64>;

    /// An agent session opened on `replica` (it replaces whatever session the host had).
    async fn session_opened(&self, host_id: i64, replica: &str, conn_id: i64, now: i64) -> Result<()>;
    /// A session `replica` still holds after it was removed as dead: recorded again unless
    /// the host has opened a session elsewhere since.
    async fn session_reclaimed(&self, host_id: i64, replica: &str, conn_id: i64, now: i64) -> Result<()>;
    /// The session closed, if it is still the host's current one.
    async fn session_closed(&self, host_id: i64, replica: &str, conn_id: i64, now: i64) -> Result<()>;
    /// Open sessions on replicas whose heartbeat is at or after `alive_after`: (host, replica).
    async fn live_sessions(&self, alive_after: i64) -> Result<Vec<(i64, String)>>;
    /// Ids of the replicas whose heartbeat is at or after `alive_after`.
    async fn live_replicas(&self, alive_after: i64) -> Result<Vec<String>>;
    /// The replica holding `host_id`'s open session, if that replica is alive.
    async fn session_holder(&self, host_id: i64, alive_after: i64) -> Result<Option<String>>;

    /// Queues messages for other replicas and wakes each of them (NOTIFY on its channel).
    async fn route(&self, msgs: &[RoutedMessage], now: i64) -> Result<()>;
    /// Takes (deletes and returns, oldest first) the messages queued for `replica`.
    async fn take_routed(&self, replica: &str) -> Result<Vec<RoutedMessage>>;

    /// Unfinished tasks of running steps whose host has no live session: closed before
    /// `closed_before`, or held by a replica whose heartbeat is older than `dead_before`.
    async fn lost_tasks(&self, closed_before: i64, dead_before: i64) -> Result<Vec<TaskKey>>;

    /// Sets a step's final status unless it already has one of `finished`; true when this
    /// call did it. Two replicas completing the same step: exactly one gets true.
    async fn claim_step_end(&self, step_id: i64, status: i32, end_time: i64, finished: &[i32]) -> Result<bool>;

    /// Moves a step that has not started (blank) to running; true when this call did it.
    /// Recovery starts a stalled job's next step only through this, so it starts once.
    async fn claim_step_start(&self, step_id: i64, start_time: i64) -> Result<bool>;

    /// Wake-ups for `channel` (PostgreSQL LISTEN); also woken after the listening connection
    /// was re-established, since notifications may have been missed. `None` on SQLite.
    async fn listen(&self, channel: &str) -> Result<Option<mpsc::Receiver<()>>>;
}

/// The NOTIFY channel of a replica.
pub fn replica_channel(replica: &str) -> String {
    let clean: String = replica.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("shoal_r_{}", clean.to_ascii_lowercase())
}

/// LISTEN on PostgreSQL: a task holds the listening connection and forwards wake-ups until
/// the receiver is dropped.
pub(crate) async fn pg_listen(pool: &sqlx::PgPool, channel: &str) -> Result<Option<mpsc::Receiver<()>>> {
    use crate::DbContext;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.op("listen connect")?;
    listener.listen(channel).await.op("listen")?;
    let (tx, rx) = mpsc::channel(1);
    let channel = channel.to_string();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                got = listener.try_recv() => match got {
                    // A notification, or None: the connection was lost and is re-established
                    // (anything sent meanwhile was missed, so look anyway).
                    Ok(_) => {
                        let _ = tx.try_send(());
                    }
                    Err(e) => {
                        tracing::warn!(%channel, error = %e, "LISTEN connection failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        let _ = tx.try_send(());
                    }
                },
            }
        }
    });
    Ok(Some(rx))
}

/// SQLite has no LISTEN.
pub(crate) async fn no_listen<P: Sync>(_pool: &P, _channel: &str) -> Result<Option<mpsc::Receiver<()>>> {
    Ok(None)
}

/// Implements [`ScaleStore`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` field);
/// `$shared` says whether several servers share it, `$listen` is the backend's LISTEN hook.
macro_rules! impl_scale_store {
    ($store:ident, $db:ty, $shared:literal, $listen:path) => {
        mod scale_store_impl {
            use async_trait::async_trait;
            use shoal_proto::agent::TaskKey;
            use sqlx::{QueryBuilder, Row};
            use tokio::sync::mpsc;

            use crate::scale::{replica_channel, RoutedMessage, ScaleStore};
            use crate::{DbContext, Result};

            /// Rows per multi-row INSERT.
            const CHUNK: usize = 500;

            impl super::$store {
                /// Records `replica` as holding the host's session; `only` (a `WHERE` on the
                /// existing row, or empty) says when an existing row is replaced.
                async fn hold_session(&self, host_id: i64, replica: &str, conn_id: i64, now: i64, only: &str, op: &'static str) -> Result<()> {
                    let sql = format!(
                        "INSERT INTO agent_sessions (bk_host_id, replica_id, conn_id, since) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (bk_host_id) DO UPDATE SET replica_id = excluded.replica_id, conn_id = excluded.conn_id, since = excluded.since{only}"
                    );
                    sqlx::query(&sql).bind(host_id).bind(replica).bind(conn_id).bind(now).execute(&self.pool).await.op(op)?;
                    Ok(())
                }
            }

            #[async_trait]
            impl ScaleStore for super::$store {
                fn is_shared(&self) -> bool {
                    $shared
                }

                async fn replica_heartbeat(&self, replica: &str, started_at: i64, now: i64) -> Result<bool> {
                    let beat = sqlx::query("UPDATE replicas SET heartbeat = $1 WHERE id = $2")
                        .bind(now)
                        .bind(replica)
                        .execute(&self.pool)
                        .await
                        .op("replica heartbeat")?;
                    if beat.rows_affected() > 0 {
                        return Ok(true);
                    }
                    sqlx::query(
                        "INSERT INTO replicas (id, heartbeat, started_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",
                    )
                    .bind(replica)
                    .bind(now)
                    .bind(started_at)
                    .execute(&self.pool)
                    .await
                    .op("replica heartbeat")?;
                    Ok(false)
                }

                async fn remove_dead_replicas(&self, dead_before: i64, ttl_ms: i64) -> Result<u64> {
                    let mut tx = self.pool.begin().await.op("begin remove dead replicas")?;
                    sqlx::query(
                        "UPDATE agent_sessions SET replica_id = NULL, since = r.heartbeat + $1 FROM replicas r \
                         WHERE r.id = agent_sessions.replica_id AND r.heartbeat < $2",
                    )
                    .bind(ttl_ms)
                    .bind(dead_before)
                    .execute(&mut *tx)
                    .await
                    .op("close dead replicas' sessions")?;
                    let removed = sqlx::query("DELETE FROM replicas WHERE heartbeat < $1")
                        .bind(dead_before)
                        .execute(&mut *tx)
                        .await
                        .op("delete dead replicas")?
                        .rows_affected();
                    // Also those of replicas that stopped cleanly with messages still queued.
                    sqlx::query("DELETE FROM routed_messages WHERE replica_id NOT IN (SELECT id FROM replicas)")
                        .execute(&mut *tx)
                        .await
                        .op("delete messages routed to dead replicas")?;
                    tx.commit().await.op("commit remove dead replicas")?;
                    Ok(removed)
                }

                async fn replica_stopped(&self, replica: &str, now: i64) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin replica stopped")?;
                    sqlx::query("UPDATE agent_sessions SET replica_id = NULL, since = $1 WHERE replica_id = $2")
                        .bind(now)
                        .bind(replica)
                        .execute(&mut *tx)
                        .await
                        .op("close replica sessions")?;
                    sqlx::query("DELETE FROM replicas WHERE id = $1").bind(replica).execute(&mut *tx).await.op("delete replica")?;
                    tx.commit().await.op("commit replica stopped")?;
                    Ok(())
                }

                async fn session_opened(&self, host_id: i64, replica: &str, conn_id: i64, now: i64) -> Result<()> {
                    self.hold_session(host_id, replica, conn_id, now, "", "session opened").await
                }

                async fn session_reclaimed(&self, host_id: i64, replica: &str, conn_id: i64, now: i64) -> Result<()> {
                    let only = " WHERE agent_sessions.replica_id IS NULL AND agent_sessions.conn_id = excluded.conn_id";
                    self.hold_session(host_id, replica, conn_id, now, only, "session reclaimed").await
                }

                async fn session_closed(&self, host_id: i64, replica: &str, conn_id: i64, now: i64) -> Result<()> {
                    sqlx::query(
                        "UPDATE agent_sessions SET replica_id = NULL, since = $1 WHERE bk_host_id = $2 AND replica_id = $3 AND conn_id = $4",
                    )
                    .bind(now)
                    .bind(host_id)
                    .bind(replica)
                    .bind(conn_id)
                    .execute(&self.pool)
                    .await
                    .op("session closed")?;
                    Ok(())
                }

                async fn live_sessions(&self, alive_after: i64) -> Result<Vec<(i64, String)>> {
                    let rows = sqlx::query(
                        "SELECT a.bk_host_id, a.replica_id FROM agent_sessions a JOIN replicas r ON r.id = a.replica_id \
                         WHERE r.heartbeat >= $1",
                    )
                    .bind(alive_after)
                    .fetch_all(&self.pool)
                    .await
                    .op("live sessions")?;
                    rows.iter()
                        .map(|r| Ok((r.try_get("bk_host_id").op("decode session")?, r.try_get("replica_id").op("decode session")?)))
                        .collect()
                }

                async fn live_replicas(&self, alive_after: i64) -> Result<Vec<String>> {
                    sqlx::query_scalar("SELECT id FROM replicas WHERE heartbeat >= $1 ORDER BY id")
                        .bind(alive_after)
                        .fetch_all(&self.pool)
                        .await
                        .op("live replicas")
                }

                async fn session_holder(&self, host_id: i64, alive_after: i64) -> Result<Option<String>> {
                    sqlx::query_scalar(
                        "SELECT a.replica_id FROM agent_sessions a JOIN replicas r ON r.id = a.replica_id \
                         WHERE a.bk_host_id = $1 AND r.heartbeat >= $2",
                    )
                    .bind(host_id)
                    .bind(alive_after)
                    .fetch_optional(&self.pool)
                    .await
                    .op("session holder")
                }

                async fn route(&self, msgs: &[RoutedMessage], now: i64) -> Result<()> {
                    if msgs.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.pool.begin().await.op("begin route")?;
                    for chunk in msgs.chunks(CHUNK) {
                        let mut q = QueryBuilder::<$db>::new("INSERT INTO routed_messages (replica_id, bk_host_id, body, created_at) ");
                        q.push_values(chunk, |mut b, m| {
                            b.push_bind(&m.replica_id).push_bind(m.host_id).push_bind(&m.body).push_bind(now);
                        });
                        q.build().execute(&mut *tx).await.op("insert routed messages")?;
                    }
                    if $shared {
                        let replicas: std::collections::BTreeSet<&str> = msgs.iter().map(|m| m.replica_id.as_str()).collect();
                        for r in replicas {
                            // Delivered when the transaction commits, with the rows visible.
                            sqlx::query("SELECT pg_notify($1, '')").bind(replica_channel(r)).execute(&mut *tx).await.op("notify replica")?;
                        }
                    }
                    tx.commit().await.op("commit route")?;
                    Ok(())
                }

                async fn take_routed(&self, replica: &str) -> Result<Vec<RoutedMessage>> {
                    let rows = sqlx::query("DELETE FROM routed_messages WHERE replica_id = $1 RETURNING id, bk_host_id, body")
                        .bind(replica)
                        .fetch_all(&self.pool)
                        .await
                        .op("take routed messages")?;
                    let mut out = rows
                        .iter()
                        .map(|r| {
                            let id: i64 = r.try_get("id").op("decode routed message")?;
                            let msg = RoutedMessage {
                                replica_id: replica.to_string(),
                                host_id: r.try_get("bk_host_id").op("decode routed message")?,
                                body: r.try_get("body").op("decode routed message")?,
                            };
                            Ok((id, msg))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    out.sort_by_key(|(id, _)| *id);
                    Ok(out.into_iter().map(|(_, m)| m).collect())
                }

                async fn lost_tasks(&self, closed_before: i64, dead_before: i64) -> Result<Vec<TaskKey>> {
                    let rows = sqlx::query(
                        "SELECT h.step_instance_id, h.execute_count, h.bk_host_id, h.file_batch FROM host_tasks h \
                         JOIN step_instances s ON s.id = h.step_instance_id AND s.execute_count = h.execute_count \
                         JOIN agent_sessions a ON a.bk_host_id = h.bk_host_id \
                         LEFT JOIN replicas r ON r.id = a.replica_id \
                         WHERE h.status IN (5, 7) AND s.status = 2 \
                         AND ((a.replica_id IS NULL AND a.since < $1) OR (a.replica_id IS NOT NULL AND (r.id IS NULL OR r.heartbeat < $2)))",
                    )
                    .bind(closed_before)
                    .bind(dead_before)
                    .fetch_all(&self.pool)
                    .await
                    .op("lost tasks")?;
                    rows.iter()
                        .map(|r| {
                            Ok(TaskKey {
                                step_instance_id: r.try_get("step_instance_id").op("decode task key")?,
                                execute_count: r.try_get::<i64, _>("execute_count").op("decode task key")? as i32,
                                host_id: r.try_get("bk_host_id").op("decode task key")?,
                                file_batch: r.try_get::<i64, _>("file_batch").op("decode task key")? as i32,
                            })
                        })
                        .collect()
                }

                async fn claim_step_end(&self, step_id: i64, status: i32, end_time: i64, finished: &[i32]) -> Result<bool> {
                    let mut q = QueryBuilder::<$db>::new("UPDATE step_instances SET status = ");
                    q.push_bind(status as i64).push(", end_time = ").push_bind(end_time).push(" WHERE id = ").push_bind(step_id);
                    if !finished.is_empty() {
                        q.push(" AND status NOT IN (");
                        let mut sep = q.separated(", ");
                        for s in finished {
                            sep.push_bind(*s as i64);
                        }
                        q.push(")");
                    }
                    let r = q.build().execute(&self.pool).await.op("claim step end")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn claim_step_start(&self, step_id: i64, start_time: i64) -> Result<bool> {
                    let r = sqlx::query("UPDATE step_instances SET status = 2, start_time = $1 WHERE id = $2 AND status = 1")
                        .bind(start_time)
                        .bind(step_id)
                        .execute(&self.pool)
                        .await
                        .op("claim step start")?;
                    Ok(r.rows_affected() > 0)
                }

                async fn listen(&self, channel: &str) -> Result<Option<mpsc::Receiver<()>>> {
                    $listen(&self.pool, channel).await
                }
            }
        }
    };
}

pub(crate) use impl_scale_store;
