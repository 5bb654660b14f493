//! The SQL both backends share. SQLite and PostgreSQL both accept `$n` placeholders (always
//! used here in increasing order), `INSERT … RETURNING` and `ON CONFLICT`, so one body of
//! code serves both; only connection setup and migrations differ per backend.

/// Implements [`crate::Store`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use std::collections::BTreeMap;

        use async_trait::async_trait;
        use shoal_proto::agent::{HostFacts, TaskKey};
        use sqlx::{QueryBuilder, Row};

        use crate::model::*;
        use crate::{DbContext, Result, Store, StoreError};

        type DbRow = <$db as sqlx::Database>::Row;

        const JOB_COLS: &str = "id, scope_type, scope_id, name, operator, app_code, task_type, launch_mode, status, stopping, create_time, start_time, end_time, callback_url";
        const STEP_COLS: &str = "id, job_instance_id, step_order, name, step_type, status, execute_count, create_time, start_time, end_time, language, script, args, sensitive, timeout_secs, account_id, account_user, transfer";
        const HOST_COLS: &str = "bk_host_id, agent_id, bk_biz_id, bk_cloud_id, ip, set_id, module_id, labels, hostname, os, agent_version, alive, last_seen";
        const ACCOUNT_COLS: &str = "id, scope_type, scope_id, account, alias, category, account_type, description, creator, create_time, last_modify_user, last_modify_time";
        const TASK_COLS: &str = "step_instance_id, execute_count, bk_host_id, ip, bk_cloud_id, status, exit_code, error_code, tag, start_time, end_time, dropped_bytes, batch, file_batch";
        /// Rows per multi-row INSERT, well under SQLite's variable limit.
        const INSERT_CHUNK: usize = 500;
        /// Log data per INSERT. sqlx copies a statement's arguments to send them to the
        /// connection, and SQLite copies every bound blob: a statement of 500 full chunks held
        /// two more copies of up to a whole batch.
        const INSERT_LOG_BYTES: usize = 2 * 1024 * 1024;
        /// Rows per batched UPDATE (each a `UNION ALL` term; SQLite allows 500).
        const UPDATE_CHUNK: usize = 400;

        /// The agent's sequence number the server's truncation note is stored under: after
        /// every chunk, so it ends the log.
        const NOTE_SEQ: i64 = i64::MAX;

        /// Stores the variables of the exits in `ends` that became final (`finals`) in this
        /// transaction. A task's final status is written once, so a resent exit adds nothing;
        /// a retried step's later run (another execute count) replaces its host's values.
        async fn insert_vars(tx: &mut sqlx::Transaction<'_, $db>, ends: &[&TaskChange], finals: &[TaskKey]) -> Result<()> {
            let finals: std::collections::HashSet<&TaskKey> = finals.iter().collect();
            // One row per (step, host, name) per statement (PostgreSQL refuses to update a row
            // twice in one): of two runs of a step in one batch, the later one's.
            let mut rows: BTreeMap<(i64, i64, &str), (i32, &str)> = BTreeMap::new();
            for c in ends {
                let TaskChange::Finished { key, vars, .. } = c else { continue };
                if !finals.contains(key) {
                    continue;
                }
                for (n, v) in vars {
                    let at = rows.entry((key.step_instance_id, key.host_id, n.as_str())).or_insert((key.execute_count, v.as_str()));
                    if key.execute_count > at.0 {
                        *at = (key.execute_count, v.as_str());
                    }
                }
            }
            let rows: Vec<((i64, i64, &str), (i32, &str))> = rows.into_iter().collect();
            for part in rows.chunks(INSERT_CHUNK) {
                let mut q = QueryBuilder::<$db>::new("INSERT INTO step_var_values (step_instance_id, bk_host_id, name, value) ");
                q.push_values(part, |mut b, ((step, host, name), (_, value))| {
                    b.push_bind(*step).push_bind(*host).push_bind(*name).push_bind(*value);
                });
                q.push(" ON CONFLICT (step_instance_id, bk_host_id, name) DO UPDATE SET value = excluded.value");
                q.build().execute(&mut **tx).await.op("store step variables")?;
            }
            Ok(())
        }

        /// Stores a batch's log chunks, at most `log_cap` bytes (plus room for the agent's own
        /// drop marker) per host task whatever its agent sends: the rest is dropped, counted in
        /// `dropped_bytes`, and the log ends with [`shoal_proto::agent::server_drop_note`].
        ///
        /// Chunks are stored only for tasks still waiting or running: output reported for a
        /// finished or unknown task is dropped (the caller still acknowledges it, so the agent
        /// does not resend it forever). `log_bytes` counts what was really inserted (a resent
        /// chunk is not stored twice); a resent chunk in the same batch as new ones may make
        /// the cap bite a little early, never late.
        async fn insert_logs(tx: &mut sqlx::Transaction<'_, $db>, batch: &[TaskChange], log_cap: u64) -> Result<()> {
            let logs: Vec<(&TaskKey, u64, &[u8])> = batch
                .iter()
                .filter_map(|c| match c {
                    TaskChange::Log { key, seq, data } => Some((key, *seq, data.as_slice())),
                    _ => None,
                })
                .collect();
            if logs.is_empty() {
                return Ok(());
            }
            let keys: Vec<TaskKey> = logs.iter().map(|(k, _, _)| **k).collect::<std::collections::HashSet<_>>().into_iter().collect();
            // What each task still waiting or running has stored so far.
            let mut used: std::collections::HashMap<TaskKey, u64> = std::collections::HashMap::new();
            for part in keys.chunks(UPDATE_CHUNK) {
                let mut q = QueryBuilder::<$db>::new("SELECT h.step_instance_id, h.execute_count, h.bk_host_id, h.file_batch, h.log_bytes FROM host_tasks h JOIN (");
                q.push_values(part, |mut b, k| {
                    b.push_bind(k.step_instance_id).push_bind(k.execute_count as i64).push_bind(k.host_id).push_bind(k.file_batch as i64);
                });
                q.push(
                    ") AS v ON h.step_instance_id = v.column1 AND h.execute_count = v.column2 AND h.bk_host_id = v.column3 \
                     AND h.file_batch = v.column4 WHERE h.status IN (5, 7)",
                );
                for r in q.build().fetch_all(&mut **tx).await.op("read log sizes")? {
                    let key = task_key_of(&r)?;
                    used.insert(key, r.try_get::<i64, _>("log_bytes").op("decode log size")?.max(0) as u64);
                }
            }
            let limit = log_cap.saturating_add(shoal_proto::agent::OUTPUT_MARKER_ROOM);
            let mut keep: Vec<(TaskKey, i64, &[u8])> = Vec::with_capacity(logs.len());
            let mut dropped: BTreeMap<TaskKey, i64> = BTreeMap::new();
            for (key, seq, data) in logs {
                let Some(u) = used.get_mut(key) else { continue };
                let n = data.len().min(usize::try_from(limit.saturating_sub(*u)).unwrap_or(usize::MAX));
                if n > 0 {
                    keep.push((*key, seq as i64, &data[..n]));
                    *u += n as u64;
                }
                if n < data.len() {
                    *dropped.entry(*key).or_default() += (data.len() - n) as i64;
                }
            }
            let note = shoal_proto::agent::server_drop_note(log_cap).into_bytes();
            keep.extend(dropped.keys().map(|k| (*k, NOTE_SEQ, note.as_slice())));
            // Bytes really inserted per task row (whatever its file batch), and bytes dropped.
            let row = |k: TaskKey| TaskKey { file_batch: 0, ..k };
            let mut counts: BTreeMap<TaskKey, (i64, i64)> = BTreeMap::new();
            for (k, d) in dropped {
                counts.entry(row(k)).or_default().1 += d;
            }
            let mut rest = keep.as_slice();
            while !rest.is_empty() {
                let (part, tail) = rest.split_at(log_insert_len(rest));
                rest = tail;
                let mut q = QueryBuilder::<$db>::new(
                    "INSERT INTO log_chunks (step_instance_id, execute_count, bk_host_id, seq, data) \
                     SELECT v.column1, v.column2, v.column3, v.column4, v.column5 FROM (",
                );
                q.push_values(part, |mut b, (k, seq, data)| {
                    b.push_bind(k.step_instance_id).push_bind(k.execute_count as i64).push_bind(k.host_id).push_bind(stored_seq(k, *seq)).push_bind(*data);
                    b.push_bind(k.file_batch as i64);
                });
                q.push(
                    ") AS v JOIN host_tasks h ON h.step_instance_id = v.column1 AND h.execute_count = v.column2 \
                     AND h.bk_host_id = v.column3 AND h.file_batch = v.column6 WHERE h.status IN (5, 7) ON CONFLICT DO NOTHING \
                     RETURNING step_instance_id, execute_count, bk_host_id, CAST(length(data) AS BIGINT) AS n",
                );
                let rows = q.build().fetch_all(&mut **tx).await.op("insert log chunks")?;
                if rows.len() < part.len() {
                    tracing::debug!(chunks = part.len(), stored = rows.len(), "log chunks not stored: duplicates, or for finished or unknown tasks");
                }
                for r in &rows {
                    let key = TaskKey::new(r.try_get("step_instance_id").op("decode task key")?, i32_of(r, "execute_count")?, r.try_get("bk_host_id").op("decode task key")?);
                    counts.entry(key).or_default().0 += r.try_get::<i64, _>("n").op("decode log size")?;
                }
            }
            let counts: Vec<(TaskKey, (i64, i64))> = counts.into_iter().collect();
            for part in counts.chunks(UPDATE_CHUNK) {
                let mut q = QueryBuilder::<$db>::new(
                    "UPDATE host_tasks SET log_bytes = host_tasks.log_bytes + v.column4, \
                     dropped_bytes = host_tasks.dropped_bytes + v.column5 FROM (",
                );
                q.push_values(part, |mut b, (k, (stored, dropped))| {
                    b.push_bind(k.step_instance_id).push_bind(k.execute_count as i64).push_bind(k.host_id).push_bind(*stored).push_bind(*dropped);
                });
                q.push(
                    ") AS v WHERE host_tasks.step_instance_id = v.column1 AND host_tasks.execute_count = v.column2 \
                     AND host_tasks.bk_host_id = v.column3",
                );
                q.build().execute(&mut **tx).await.op("count log bytes")?;
            }
            Ok(())
        }

        /// The key of a host task row read with its `file_batch`.
        fn task_key_of(r: &<$db as sqlx::Database>::Row) -> Result<TaskKey> {
            Ok(TaskKey {
                step_instance_id: r.try_get("step_instance_id").op("decode task key")?,
                execute_count: i32_of(r, "execute_count")?,
                host_id: r.try_get("bk_host_id").op("decode task key")?,
                file_batch: i32::try_from(r.try_get::<i64, _>("file_batch").op("decode task key")?).unwrap_or(0),
            })
        }

        /// Where chunk `seq` of task `k` is stored: each file batch of a task numbers its
        /// chunks from 0, so batch `b` stores them from `b << 40`, after the earlier batches'.
        fn stored_seq(k: &TaskKey, seq: i64) -> i64 {
            if seq == NOTE_SEQ {
                seq
            } else {
                seq.saturating_add(i64::from(k.file_batch) << 40)
            }
        }

        /// How many of `rows` (at least one) the next log INSERT takes: at most
        /// [`INSERT_CHUNK`] rows and [`INSERT_LOG_BYTES`] of data.
        fn log_insert_len(rows: &[(TaskKey, i64, &[u8])]) -> usize {
            let mut bytes = 0;
            let mut n = 0;
            for (_, _, data) in rows.iter().take(INSERT_CHUNK) {
                if n > 0 && bytes + data.len() > INSERT_LOG_BYTES {
                    break;
                }
                bytes += data.len();
                n += 1;
            }
            n.max(1)
        }

        fn i32_of(r: &DbRow, c: &str) -> Result<i32> {
            Ok(r.try_get::<i64, _>(c).op("decode")? as i32)
        }

        fn job_of(r: &DbRow) -> Result<JobRow> {
            Ok(JobRow {
                id: r.try_get("id").op("decode job")?,
                scope_type: r.try_get("scope_type").op("decode job")?,
                scope_id: r.try_get("scope_id").op("decode job")?,
                name: r.try_get("name").op("decode job")?,
                operator: r.try_get("operator").op("decode job")?,
                app_code: r.try_get("app_code").op("decode job")?,
                task_type: i32_of(r, "task_type")?,
                launch_mode: i32_of(r, "launch_mode")?,
                status: i32_of(r, "status")?,
                stopping: r.try_get::<i64, _>("stopping").op("decode job")? != 0,
                create_time: r.try_get("create_time").op("decode job")?,
                start_time: r.try_get("start_time").op("decode job")?,
                end_time: r.try_get("end_time").op("decode job")?,
                callback_url: r.try_get("callback_url").op("decode job")?,
            })
        }

        fn step_of(r: &DbRow) -> Result<StepRow> {
            let args: String = r.try_get("args").op("decode step")?;
            Ok(StepRow {
                id: r.try_get("id").op("decode step")?,
                job_instance_id: r.try_get("job_instance_id").op("decode step")?,
                step_order: i32_of(r, "step_order")?,
                name: r.try_get("name").op("decode step")?,
                step_type: i32_of(r, "step_type")?,
                status: i32_of(r, "status")?,
                execute_count: i32_of(r, "execute_count")?,
                create_time: r.try_get("create_time").op("decode step")?,
                start_time: r.try_get("start_time").op("decode step")?,
                end_time: r.try_get("end_time").op("decode step")?,
                language: i32_of(r, "language")?,
                script: r.try_get("script").op("decode step")?,
                args: serde_json::from_str(&args).map_err(|e| StoreError::Corrupt(format!("step args: {e}")))?,
                sensitive: r.try_get::<i64, _>("sensitive").op("decode step")? != 0,
                timeout_secs: r.try_get("timeout_secs").op("decode step")?,
                account_id: r.try_get("account_id").op("decode step")?,
                account_user: r.try_get("account_user").op("decode step")?,
                transfer: r.try_get("transfer").op("decode step")?,
            })
        }

        fn host_of(r: &DbRow) -> Result<HostRow> {
            let labels: String = r.try_get("labels").op("decode host")?;
            Ok(HostRow {
                bk_host_id: r.try_get("bk_host_id").op("decode host")?,
                agent_id: r.try_get("agent_id").op("decode host")?,
                bk_biz_id: r.try_get("bk_biz_id").op("decode host")?,
                bk_cloud_id: r.try_get("bk_cloud_id").op("decode host")?,
                ip: r.try_get("ip").op("decode host")?,
                set_id: r.try_get("set_id").op("decode host")?,
                module_id: r.try_get("module_id").op("decode host")?,
                labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)
                    .map_err(|e| StoreError::Corrupt(format!("host labels: {e}")))?,
                hostname: r.try_get("hostname").op("decode host")?,
                os: r.try_get("os").op("decode host")?,
                agent_version: r.try_get("agent_version").op("decode host")?,
                alive: r.try_get::<i64, _>("alive").op("decode host")? != 0,
                last_seen: r.try_get("last_seen").op("decode host")?,
            })
        }

        fn account_of(r: &DbRow) -> Result<AccountRow> {
            Ok(AccountRow {
                id: r.try_get("id").op("decode account")?,
                scope_type: r.try_get("scope_type").op("decode account")?,
                scope_id: r.try_get("scope_id").op("decode account")?,
                account: r.try_get("account").op("decode account")?,
                alias: r.try_get("alias").op("decode account")?,
                category: i32_of(r, "category")?,
                account_type: i32_of(r, "account_type")?,
                description: r.try_get("description").op("decode account")?,
                creator: r.try_get("creator").op("decode account")?,
                create_time: r.try_get("create_time").op("decode account")?,
                last_modify_user: r.try_get("last_modify_user").op("decode account")?,
                last_modify_time: r.try_get("last_modify_time").op("decode account")?,
            })
        }

        fn task_of(r: &DbRow) -> Result<HostTaskRow> {
            Ok(HostTaskRow {
                step_instance_id: r.try_get("step_instance_id").op("decode task")?,
                execute_count: i32_of(r, "execute_count")?,
                bk_host_id: r.try_get("bk_host_id").op("decode task")?,
                ip: r.try_get("ip").op("decode task")?,
                bk_cloud_id: r.try_get("bk_cloud_id").op("decode task")?,
                status: i32_of(r, "status")?,
                exit_code: i32_of(r, "exit_code")?,
                error_code: i32_of(r, "error_code")?,
                tag: r.try_get("tag").op("decode task")?,
                start_time: r.try_get("start_time").op("decode task")?,
                end_time: r.try_get("end_time").op("decode task")?,
                dropped_bytes: r.try_get("dropped_bytes").op("decode task")?,
                batch: i32_of(r, "batch")?,
                file_batch: i32_of(r, "file_batch")?,
            })
        }

        /// Appends to the keyed audit chain (see `crate::trust`), MACed with the store's key.
        async fn insert_audit(conn: &mut <$db as sqlx::Database>::Connection, key: &crate::trust::AuditKey, e: &AuditEvent) -> Result<()> {
            trust_sql::insert_chained_audit(conn, key, e).await
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn put_app(&self, app: &AppRow) -> Result<()> {
                sqlx::query(
                    "INSERT INTO apps (code, salt, secret_hash, is_admin, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (code) DO UPDATE SET salt = excluded.salt, secret_hash = excluded.secret_hash, is_admin = excluded.is_admin",
                )
                .bind(&app.code)
                .bind(&app.salt)
                .bind(&app.secret_hash)
                .bind(app.is_admin as i64)
                .bind(app.created_at)
                .execute(&self.pool)
                .await
                .op("put app")?;
                Ok(())
            }

            async fn get_app(&self, code: &str) -> Result<Option<AppRow>> {
                let row = sqlx::query("SELECT code, salt, secret_hash, is_admin, created_at FROM apps WHERE code = $1")
                    .bind(code)
                    .fetch_optional(&self.pool)
                    .await
                    .op("get app")?;
                row.map(|r| {
                    Ok(AppRow {
                        code: r.try_get("code").op("decode app")?,
                        salt: r.try_get("salt").op("decode app")?,
                        secret_hash: r.try_get("secret_hash").op("decode app")?,
                        is_admin: r.try_get::<i64, _>("is_admin").op("decode app")? != 0,
                        created_at: r.try_get("created_at").op("decode app")?,
                    })
                })
                .transpose()
            }

            async fn count_apps(&self) -> Result<i64> {
                sqlx::query_scalar("SELECT COUNT(*) FROM apps").fetch_one(&self.pool).await.op("count apps")
            }

            async fn upsert_host(&self, agent_id: &str, f: &HostFacts, version: &str, now: i64) -> Result<i64> {
                let labels = serde_json::to_string(&f.labels).unwrap_or_else(|_| "{}".into());
                sqlx::query_scalar(
                    "INSERT INTO hosts (agent_id, bk_biz_id, bk_cloud_id, ip, set_id, module_id, labels, hostname, os, agent_version, alive, last_seen) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11) \
                     ON CONFLICT (agent_id) DO UPDATE SET bk_biz_id = excluded.bk_biz_id, bk_cloud_id = excluded.bk_cloud_id, ip = excluded.ip, \
                     set_id = excluded.set_id, module_id = excluded.module_id, labels = excluded.labels, hostname = excluded.hostname, \
                     os = excluded.os, agent_version = excluded.agent_version, alive = 1, last_seen = excluded.last_seen \
                     RETURNING bk_host_id",
                )
                .bind(agent_id)
                .bind(f.bk_biz_id)
                .bind(f.bk_cloud_id)
                .bind(&f.ip)
                .bind(f.set_id)
                .bind(f.module_id)
                .bind(labels)
                .bind(&f.hostname)
                .bind(&f.os)
                .bind(version)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .op("upsert host")
            }

            async fn set_host_alive(&self, host_id: i64, alive: bool, now: i64) -> Result<()> {
                sqlx::query("UPDATE hosts SET alive = $1, last_seen = $2 WHERE bk_host_id = $3")
                    .bind(alive as i64)
                    .bind(now)
                    .bind(host_id)
                    .execute(&self.pool)
                    .await
                    .op("set host alive")?;
                Ok(())
            }

            async fn list_hosts(&self, bk_biz_id: Option<i64>) -> Result<Vec<HostRow>> {
                let rows = match bk_biz_id {
                    Some(b) => sqlx::query(&format!("SELECT {HOST_COLS} FROM hosts WHERE bk_biz_id = $1 AND state = 0 ORDER BY bk_host_id"))
                        .bind(b)
                        .fetch_all(&self.pool)
                        .await,
                    None => sqlx::query(&format!("SELECT {HOST_COLS} FROM hosts WHERE state = 0 ORDER BY bk_host_id")).fetch_all(&self.pool).await,
                }
                .op("list hosts")?;
                rows.iter().map(host_of).collect()
            }

            async fn hosts_by_ids(&self, ids: &[i64]) -> Result<Vec<HostRow>> {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new(format!("SELECT {HOST_COLS} FROM hosts WHERE state = 0 AND bk_host_id IN ("));
                    let mut sep = q.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    q.push(")");
                    let rows = q.build().fetch_all(&self.pool).await.op("hosts by ids")?;
                    for r in &rows {
                        out.push(host_of(r)?);
                    }
                }
                Ok(out)
            }

            async fn create_account(&self, a: &AccountRow) -> Result<AccountRow> {
                let res = sqlx::query(&format!(
                    "INSERT INTO accounts (scope_type, scope_id, account, alias, category, account_type, description, creator, create_time, last_modify_user, last_modify_time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (scope_type, scope_id, alias) DO NOTHING RETURNING {ACCOUNT_COLS}"
                ))
                .bind(&a.scope_type)
                .bind(&a.scope_id)
                .bind(&a.account)
                .bind(&a.alias)
                .bind(a.category as i64)
                .bind(a.account_type as i64)
                .bind(&a.description)
                .bind(&a.creator)
                .bind(a.create_time)
                .bind(&a.last_modify_user)
                .bind(a.last_modify_time)
                .fetch_optional(&self.pool)
                .await
                .op("create account")?;
                match res {
                    Some(r) => account_of(&r),
                    None => Err(StoreError::Conflict("account alias")),
                }
            }

            async fn list_accounts(&self, scope_type: &str, scope_id: &str) -> Result<Vec<AccountRow>> {
                let rows = sqlx::query(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE scope_type = $1 AND scope_id = $2 ORDER BY id"))
                    .bind(scope_type)
                    .bind(scope_id)
                    .fetch_all(&self.pool)
                    .await
                    .op("list accounts")?;
                rows.iter().map(account_of).collect()
            }

            async fn get_account(&self, id: i64) -> Result<Option<AccountRow>> {
                let row = sqlx::query(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("get account")?;
                row.as_ref().map(account_of).transpose()
            }

            async fn get_account_by_alias(&self, scope_type: &str, scope_id: &str, alias: &str) -> Result<Option<AccountRow>> {
                let row = sqlx::query(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE scope_type = $1 AND scope_id = $2 AND alias = $3"))
                    .bind(scope_type)
                    .bind(scope_id)
                    .bind(alias)
                    .fetch_optional(&self.pool)
                    .await
                    .op("get account by alias")?;
                row.as_ref().map(account_of).transpose()
            }

            async fn delete_account(&self, id: i64) -> Result<()> {
                // Its grants go with it: a new account under the same alias starts with none.
                let mut tx = self.pool.begin().await.op("begin delete account")?;
                sqlx::query("DELETE FROM app_account_grants WHERE account_id = $1 AND account_id <> 0")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .op("delete account grants")?;
                sqlx::query("DELETE FROM accounts WHERE id = $1").bind(id).execute(&mut *tx).await.op("delete account")?;
                tx.commit().await.op("commit delete account")
            }


            async fn create_job(&self, job: &NewJob) -> Result<(i64, Vec<i64>)> {
                let mut tx = self.pool.begin().await.op("begin create job")?;
                let job_id: i64 = sqlx::query_scalar(
                    "INSERT INTO job_instances (scope_type, scope_id, name, operator, app_code, task_type, launch_mode, status, create_time, callback_url) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9) RETURNING id",
                )
                .bind(&job.scope_type)
                .bind(&job.scope_id)
                .bind(&job.name)
                .bind(&job.operator)
                .bind(&job.app_code)
                .bind(job.task_type as i64)
                .bind(job.launch_mode as i64)
                .bind(job.create_time)
                .bind(&job.callback_url)
                .fetch_one(&mut *tx)
                .await
                .op("insert job")?;
                admission_sql::take_quota_slot(&mut tx, job).await?;
                let mut step_ids = Vec::with_capacity(job.steps.len());
                for (order, step) in job.steps.iter().enumerate() {
                    let args = serde_json::to_string(&step.args).unwrap_or_else(|_| "[]".into());
                    let step_id: i64 = sqlx::query_scalar(
                        "INSERT INTO step_instances (job_instance_id, step_order, name, step_type, status, execute_count, create_time, language, script, args, sensitive, timeout_secs, account_id, account_user, transfer) \
                         VALUES ($1, $2, $3, $4, 1, 0, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                    )
                    .bind(job_id)
                    .bind(order as i64 + 1)
                    .bind(&step.name)
                    .bind(step.step_type as i64)
                    .bind(job.create_time)
                    .bind(step.language as i64)
                    .bind(&step.script)
                    .bind(args)
                    .bind(step.sensitive as i64)
                    .bind(step.timeout_secs)
                    .bind(step.account_id)
                    .bind(&step.account_user)
                    .bind(&step.transfer)
                    .fetch_one(&mut *tx)
                    .await
                    .op("insert step")?;
                    // Batch of each target, in order, when the step rolls.
                    let mut batches: Vec<i64> = Vec::with_capacity(step.targets.len());
                    if let Some(r) = &step.rolling {
                        for (i, size) in r.batch_sizes.iter().enumerate() {
                            batches.extend(std::iter::repeat_n(i as i64 + 1, *size));
                        }
                        sqlx::query("INSERT INTO step_rolling (step_instance_id, config, total_batches, current_batch) VALUES ($1, $2, $3, 0)")
                            .bind(step_id)
                            .bind(&r.config)
                            .bind(if r.file_batches > 0 { r.file_batches } else { r.batch_sizes.len() } as i64)
                            .execute(&mut *tx)
                            .await
                            .op("insert step rolling")?;
                    }
                    let rows: Vec<(&TargetHost, i64)> =
                        step.targets.iter().enumerate().map(|(i, t)| (t, batches.get(i).copied().unwrap_or(0))).collect();
                    for chunk in rows.chunks(INSERT_CHUNK) {
                        let mut q =
                            QueryBuilder::<$db>::new("INSERT INTO host_tasks (step_instance_id, execute_count, bk_host_id, ip, bk_cloud_id, status, batch) ");
                        q.push_values(chunk, |mut b, (t, batch)| {
                            b.push_bind(step_id)
                                .push_bind(0i64)
                                .push_bind(t.bk_host_id)
                                .push_bind(&t.ip)
                                .push_bind(t.bk_cloud_id)
                                .push_bind(5i64)
                                .push_bind(*batch);
                        });
                        q.build().execute(&mut *tx).await.op("insert host tasks")?;
                    }
                    if step.ignore_error || step.confirm_message.is_some() || !step.confirm_users.is_empty() {
                        sqlx::query("INSERT INTO step_extras (step_instance_id, ignore_error, confirm_message, confirm_users) VALUES ($1, $2, $3, $4)")
                            .bind(step_id)
                            .bind(step.ignore_error as i64)
                            .bind(&step.confirm_message)
                            .bind(serde_json::to_string(&step.confirm_users).unwrap_or_else(|_| "[]".into()))
                            .execute(&mut *tx)
                            .await
                            .op("insert step extras")?;
                    }
                    step_ids.push(step_id);
                }
                if let Some(p) = &job.plan {
                    sqlx::query(
                        "INSERT INTO job_instance_plans (job_instance_id, job_template_id, job_plan_id, template_version, variables) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(job_id)
                    .bind(p.template_id)
                    .bind(p.plan_id)
                    .bind(p.template_version)
                    .bind(&p.variables)
                    .execute(&mut *tx)
                    .await
                    .op("insert job plan link")?;
                }
                let mut audit = job.audit.clone();
                audit.resource_id = job_id.to_string();
                insert_audit(&mut *tx, &self.audit_key, &audit).await?;
                // A cron's fire learns its job in the same transaction, and only while this
                // task's lease is the fire's: a claim taken over meanwhile creates nothing.
                if let Some(lease) = crate::cron::firing() {
                    let r = sqlx::query(
                        "UPDATE cron_fires SET outcome = 'started', job_instance_id = $1 WHERE id = $2 AND outcome = 'claimed' AND attempt = $3",
                    )
                    .bind(job_id)
                    .bind(lease.fire_id)
                    .bind(lease.attempt)
                    .execute(&mut *tx)
                    .await
                    .op("record the cron fire's job")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("cron fire claimed by another"));
                    }
                }
                // The request's idempotency key learns its job in the same transaction.
                if let Some(k) = crate::idempotency::creating_for() {
                    sqlx::query("UPDATE idempotency_keys SET job_instance_id = $1 WHERE app_code = $2 AND idem_key = $3 AND state = 'pending'")
                        .bind(job_id)
                        .bind(&k.app_code)
                        .bind(&k.key)
                        .execute(&mut *tx)
                        .await
                        .op("record the idempotency key's job")?;
                }
                tx.commit().await.op("commit create job")?;
                Ok((job_id, step_ids))
            }

            async fn get_job(&self, id: i64) -> Result<Option<JobRow>> {
                let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM job_instances WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("get job")?;
                row.as_ref().map(job_of).transpose()
            }

            async fn list_jobs(&self, f: &JobQuery) -> Result<(i64, Vec<JobListing>)> {
                fn filters<'a>(q: &mut QueryBuilder<'a, $db>, f: &'a JobQuery) {
                    q.push(" WHERE scope_type = ").push_bind(&f.scope_type).push(" AND scope_id = ").push_bind(&f.scope_id);
                    if let Some(id) = f.job_instance_id {
                        q.push(" AND id = ").push_bind(id);
                        return;
                    }
                    if let Some(t) = f.create_time_start {
                        q.push(" AND create_time >= ").push_bind(t);
                    }
                    if let Some(t) = f.create_time_end {
                        q.push(" AND create_time <= ").push_bind(t);
                    }
                    if let Some(o) = &f.operator {
                        q.push(" AND operator = ").push_bind(o);
                    }
                    if let Some(n) = &f.name {
                        q.push(" AND name LIKE ").push_bind(format!("%{}%", n.replace('%', "\\%").replace('_', "\\_"))).push(" ESCAPE '\\'");
                    }
                    if let Some(m) = f.launch_mode {
                        q.push(" AND launch_mode = ").push_bind(m as i64);
                    }
                    if let Some(t) = f.task_type {
                        q.push(" AND task_type = ").push_bind(t as i64);
                    }
                    if let Some(s) = f.status {
                        q.push(" AND status = ").push_bind(s as i64);
                    }
                    if let Some(c) = f.cron_id {
                        q.push(" AND id IN (SELECT job_instance_id FROM cron_fires WHERE cron_id = ").push_bind(c).push(")");
                    }
                    if let Some(ip) = &f.ip {
                        q.push(" AND id IN (SELECT s.job_instance_id FROM step_instances s JOIN host_tasks h ON h.step_instance_id = s.id WHERE h.ip = ")
                            .push_bind(ip)
                            .push(")");
                    }
                }
                let mut cq = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM job_instances");
                filters(&mut cq, f);
                let total: i64 = cq.build_query_scalar().fetch_one(&self.pool).await.op("count jobs")?;
                // The plan link's columns do not clash with the job's, so the filters stay unqualified.
                let mut q = QueryBuilder::<$db>::new(format!(
                    "SELECT {JOB_COLS}, p.job_template_id, p.job_plan_id FROM job_instances \
                     LEFT JOIN job_instance_plans p ON p.job_instance_id = job_instances.id"
                ));
                filters(&mut q, f);
                q.push(" ORDER BY id DESC LIMIT ").push_bind(f.length).push(" OFFSET ").push_bind(f.start);
                let rows = q.build().fetch_all(&self.pool).await.op("list jobs")?;
                let listing = |r: &DbRow| {
                    Ok(JobListing {
                        job: job_of(r)?,
                        job_template_id: r.try_get("job_template_id").op("decode job plan")?,
                        job_plan_id: r.try_get("job_plan_id").op("decode job plan")?,
                    })
                };
                Ok((total, rows.iter().map(listing).collect::<Result<_>>()?))
            }

            async fn get_steps(&self, job_id: i64) -> Result<Vec<StepRow>> {
                let rows = sqlx::query(&format!("SELECT {STEP_COLS} FROM step_instances WHERE job_instance_id = $1 ORDER BY step_order"))
                    .bind(job_id)
                    .fetch_all(&self.pool)
                    .await
                    .op("get steps")?;
                rows.iter().map(step_of).collect()
            }

            async fn get_step(&self, step_id: i64) -> Result<Option<StepRow>> {
                let row = sqlx::query(&format!("SELECT {STEP_COLS} FROM step_instances WHERE id = $1"))
                    .bind(step_id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("get step")?;
                row.as_ref().map(step_of).transpose()
            }

            async fn host_tasks(&self, step_id: i64, execute_count: i32) -> Result<Vec<HostTaskRow>> {
                let rows = sqlx::query(&format!(
                    "SELECT {TASK_COLS} FROM host_tasks WHERE step_instance_id = $1 AND execute_count = $2 ORDER BY bk_host_id"
                ))
                .bind(step_id)
                .bind(execute_count as i64)
                .fetch_all(&self.pool)
                .await
                .op("host tasks")?;
                rows.iter().map(task_of).collect()
            }

            async fn active_jobs(&self) -> Result<Vec<JobRow>> {
                let rows = sqlx::query(&format!("SELECT {JOB_COLS} FROM job_instances WHERE status IN (2, 7, 10, 15) ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await
                    .op("active jobs")?;
                rows.iter().map(job_of).collect()
            }

            async fn pending_tasks_for_host(&self, host_id: i64) -> Result<Vec<TaskKey>> {
                let rows = sqlx::query(
                    "SELECT h.step_instance_id, h.execute_count, h.bk_host_id, h.file_batch FROM host_tasks h \
                     JOIN step_instances s ON s.id = h.step_instance_id AND s.execute_count = h.execute_count \
                     WHERE h.bk_host_id = $1 AND h.status IN (5, 7) AND s.status = 2 ORDER BY h.step_instance_id",
                )
                .bind(host_id)
                .fetch_all(&self.pool)
                .await
                .op("pending tasks for host")?;
                rows.iter().map(task_key_of).collect()
            }

            async fn update_job(&self, u: &JobUpdate) -> Result<()> {
                let mut tx = self.pool.begin().await.op("begin update job")?;
                let mut q = QueryBuilder::<$db>::new("UPDATE job_instances SET id = id");
                if let Some(s) = u.status {
                    q.push(", status = ").push_bind(s as i64);
                }
                if let Some(s) = u.stopping {
                    q.push(", stopping = ").push_bind(s as i64);
                }
                if let Some(t) = u.start_time {
                    q.push(", start_time = ").push_bind(t);
                }
                if let Some(t) = u.end_time {
                    q.push(", end_time = ").push_bind(t);
                }
                q.push(" WHERE id = ").push_bind(u.id);
                if !u.expect_status.is_empty() {
                    q.push(" AND status IN (");
                    let mut sep = q.separated(", ");
                    for s in &u.expect_status {
                        sep.push_bind(*s as i64);
                    }
                    q.push(")");
                }
                let res = q.build().execute(&mut *tx).await.op("update job")?;
                if res.rows_affected() == 0 && !u.expect_status.is_empty() {
                    return Err(StoreError::Conflict("job status changed"));
                }
                if let Some((url, body)) = &u.callback {
                    sqlx::query("INSERT INTO callbacks (job_instance_id, url, body, created_at) VALUES ($1, $2, $3, $4)")
                        .bind(u.id)
                        .bind(url)
                        .bind(body)
                        .bind(u.end_time.unwrap_or_default())
                        .execute(&mut *tx)
                        .await
                        .op("enqueue callback")?;
                }
                tx.commit().await.op("commit update job")?;
                Ok(())
            }

            async fn update_step(&self, u: &StepUpdate) -> Result<()> {
                let mut q = QueryBuilder::<$db>::new("UPDATE step_instances SET id = id");
                if let Some(s) = u.status {
                    q.push(", status = ").push_bind(s as i64);
                }
                if let Some(t) = u.start_time {
                    q.push(", start_time = ").push_bind(t);
                }
                if let Some(t) = u.end_time {
                    q.push(", end_time = ").push_bind(t);
                }
                q.push(" WHERE id = ").push_bind(u.id);
                q.build().execute(&self.pool).await.op("update step")?;
                Ok(())
            }

            async fn apply(&self, batch: &[TaskChange], log_cap: u64) -> Result<Applied> {
                let mut finals = Vec::new();
                let mut conn = self.pool.acquire().await.op("begin apply")?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await.op("begin apply")?;
                // Chunks of a task that finishes in this batch are inserted before the finals
                // below, as they arrived.
                insert_logs(&mut tx, batch, log_cap).await?;
                // Starts, then finals, each as a few multi-row UPDATEs joined to a VALUES list of
                // the batch's rows (one statement per task would cost a round trip each on
                // PostgreSQL; a UNION ALL of row SELECTs costs PostgreSQL tens of ms to plan).
                // VALUES columns are column1, column2, … on both backends.
                // Only the first change of a kind per task counts: a later one would find the
                // task already moved on, as it would applied in order.
                for c in batch {
                    if let TaskChange::RunStarted { step_instance_id, execute_count, batch, at } = c {
                        let mut q = QueryBuilder::<$db>::new("UPDATE host_tasks SET status = 7, start_time = ");
                        q.push_bind(*at).push(" WHERE step_instance_id = ").push_bind(*step_instance_id);
                        q.push(" AND execute_count = ").push_bind(*execute_count as i64).push(" AND status = 5");
                        if let Some(b) = batch {
                            q.push(" AND batch = ").push_bind(*b as i64);
                        }
                        q.build().execute(&mut *tx).await.op("start a step run")?;
                    }
                }
                let mut seen = std::collections::HashSet::new();
                let starts: Vec<(&TaskKey, i64)> = batch
                    .iter()
                    .filter_map(|c| match c {
                        TaskChange::Started { key, at } if seen.insert(*key) => Some((key, *at)),
                        _ => None,
                    })
                    .collect();
                for chunk in starts.chunks(UPDATE_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("UPDATE host_tasks SET status = 7, start_time = v.column4 FROM (");
                    q.push_values(chunk, |mut b, (k, at)| {
                        b.push_bind(k.step_instance_id).push_bind(k.execute_count as i64).push_bind(k.host_id).push_bind(*at);
                        b.push_bind(k.file_batch as i64);
                    });
                    q.push(
                        ") AS v WHERE host_tasks.step_instance_id = v.column1 AND host_tasks.execute_count = v.column2 \
                         AND host_tasks.bk_host_id = v.column3 AND host_tasks.file_batch = v.column5 AND host_tasks.status = 5",
                    );
                    q.build().execute(&mut *tx).await.op("start host tasks")?;
                }
                let mut seen = std::collections::HashSet::new();
                let ends: Vec<&TaskChange> =
                    batch.iter().filter(|c| matches!(c, TaskChange::Finished { key, .. } if seen.insert(*key))).collect();
                for chunk in ends.chunks(UPDATE_CHUNK) {
                    // column1..9: step, execute count, host, status, exit code, error code,
                    // start, end, dropped bytes.
                    let mut q = QueryBuilder::<$db>::new(
                        "UPDATE host_tasks SET status = v.column4, exit_code = v.column5, error_code = v.column6, \
                         start_time = COALESCE(v.column7, host_tasks.start_time, v.column8), end_time = v.column8, \
                         dropped_bytes = host_tasks.dropped_bytes + v.column9 FROM (",
                    );
                    q.push_values(chunk, |mut b, c| {
                        if let TaskChange::Finished { key, status, exit_code, error_code, start_time, end_time, dropped_bytes, .. } = c {
                            b.push_bind(key.step_instance_id).push_bind(key.execute_count as i64).push_bind(key.host_id);
                            b.push_bind(*status as i64).push_bind(*exit_code as i64).push_bind(*error_code as i64);
                            b.push_bind(*start_time).push_bind(*end_time).push_bind(*dropped_bytes);
                            b.push_bind(key.file_batch as i64);
                        }
                    });
                    q.push(
                        ") AS v WHERE host_tasks.step_instance_id = v.column1 AND host_tasks.execute_count = v.column2 \
                         AND host_tasks.bk_host_id = v.column3 AND host_tasks.file_batch = v.column10 AND host_tasks.status IN (5, 7) \
                         RETURNING step_instance_id, execute_count, bk_host_id, file_batch",
                    );
                    let rows = q.build().fetch_all(&mut *tx).await.op("finish host tasks")?;
                    for r in &rows {
                        finals.push(task_key_of(r)?);
                    }
                }
                insert_vars(&mut tx, &ends, &finals).await?;
                // Steps ended by this batch end in its commit on SQLite; on PostgreSQL in a
                // second transaction right after it (see `crate::finalize`).
                let now = shoal_core::time::now_ms();
                let ended_here = if $backend == "sqlite" && !finals.is_empty() {
                    Some(finalize_sql::end_steps(&mut tx, &finals, now).await?)
                } else {
                    None
                };
                tx.commit().await.op("commit apply")?;
                if $backend == "sqlite" {
                    // The batch's pages (up to a whole batch of log data) would stay in this
                    // connection's page cache until its next use, and the pool hands the next
                    // batch to another connection: every pooled connection would end up holding
                    // one. Committed pages are on disk; let them go.
                    if let Err(e) = sqlx::query("PRAGMA shrink_memory").execute(&mut *conn).await {
                        tracing::warn!(error = %e, "releasing the page cache after a batch failed");
                    }
                }
                if finals.is_empty() {
                    return Ok(Applied { finals, ..Default::default() });
                }
                if let Some((ended, left)) = ended_here {
                    return Ok(Applied { finals, ended, left });
                }
                let ends = async {
                    let mut tx = self.pool.begin().await.op("begin step ends")?;
                    let out = finalize_sql::end_steps(&mut tx, &finals, now).await?;
                    tx.commit().await.op("commit step ends")?;
                    Ok::<_, StoreError>(out)
                };
                match ends.await {
                    Ok((ended, left)) => Ok(Applied { finals, ended, left }),
                    Err(e) => {
                        // The batch is committed: its steps are left to the engine to end.
                        tracing::warn!(error = %e, "ending steps after a batch failed; left to the engine");
                        let mut left: Vec<(i64, i32)> = finals.iter().map(|k| (k.step_instance_id, k.execute_count)).collect();
                        left.sort_unstable();
                        left.dedup();
                        Ok(Applied { finals, ended: Vec::new(), left })
                    }
                }
            }

            async fn step_var_outputs(&self, job_id: i64) -> Result<Vec<StepVarOutput>> {
                let rows = sqlx::query(
                    "SELECT v.step_instance_id, v.name, v.value FROM step_var_values v JOIN ( \
                     SELECT w.step_instance_id, w.name, MIN(w.bk_host_id) AS h FROM step_var_values w \
                     JOIN step_instances s ON s.id = w.step_instance_id WHERE s.job_instance_id = $1 \
                     GROUP BY w.step_instance_id, w.name) m \
                     ON v.step_instance_id = m.step_instance_id AND v.name = m.name AND v.bk_host_id = m.h \
                     ORDER BY v.step_instance_id, v.name",
                )
                .bind(job_id)
                .fetch_all(&self.pool)
                .await
                .op("read step variables")?;
                rows.iter()
                    .map(|r| {
                        Ok(StepVarOutput {
                            step_instance_id: r.try_get("step_instance_id").op("decode step variable")?,
                            name: r.try_get("name").op("decode step variable")?,
                            value: r.try_get("value").op("decode step variable")?,
                        })
                    })
                    .collect()
            }

            async fn any_unfinished(&self, step_id: i64, execute_count: i32) -> Result<bool> {
                // Asked after every committed batch: it stops at the first unfinished task
                // (of the partial index `host_tasks_unfinished`) instead of counting them all.
                let row: Option<i64> = sqlx::query_scalar(
                    "SELECT step_instance_id FROM host_tasks WHERE step_instance_id = $1 AND execute_count = $2 AND status IN (5, 7) LIMIT 1",
                )
                .bind(step_id)
                .bind(execute_count as i64)
                .fetch_optional(&self.pool)
                .await
                .op("look for unfinished tasks")?;
                Ok(row.is_some())
            }

            async fn read_logs(&self, step_id: i64, execute_count: i32, host_ids: &[i64]) -> Result<Vec<(i64, Vec<u8>)>> {
                let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
                for chunk in host_ids.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::<$db>::new("SELECT bk_host_id, data FROM log_chunks WHERE step_instance_id = ");
                    q.push_bind(step_id).push(" AND execute_count = ").push_bind(execute_count as i64).push(" AND bk_host_id IN (");
                    let mut sep = q.separated(", ");
                    for h in chunk {
                        sep.push_bind(*h);
                    }
                    q.push(") ORDER BY bk_host_id, seq");
                    // Row by row: a log is held once, as it is put together, not also as rows.
                    let mut rows = q.build().fetch(&self.pool);
                    while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await.op("read logs")? {
                        let host: i64 = r.try_get("bk_host_id").op("decode log")?;
                        let data: &[u8] = r.try_get("data").op("decode log")?;
                        match out.last_mut() {
                            Some((h, buf)) if *h == host => buf.extend_from_slice(data),
                            _ => out.push((host, data.to_vec())),
                        }
                    }
                }
                Ok(out)
            }

            async fn claim_callbacks(&self, claimer: &str, now: i64, stale_before: i64, limit: i64) -> Result<Vec<CallbackRow>> {
                // The condition is repeated outside the subquery: on PostgreSQL a concurrent
                // claimer that waited for the row lock re-checks it and skips the row.
                let rows = sqlx::query(
                    "UPDATE callbacks SET claimed_by = $1, claimed_at = $2 \
                     WHERE id IN (SELECT id FROM callbacks WHERE done = 0 AND (claimed_at IS NULL OR claimed_at < $3) ORDER BY id LIMIT $4) \
                     AND done = 0 AND (claimed_at IS NULL OR claimed_at < $3) \
                     RETURNING id, job_instance_id, url, body, attempts",
                )
                .bind(claimer)
                .bind(now)
                .bind(stale_before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .op("claim callbacks")?;
                rows.iter()
                    .map(|r| {
                        Ok(CallbackRow {
                            id: r.try_get("id").op("decode callback")?,
                            job_instance_id: r.try_get("job_instance_id").op("decode callback")?,
                            url: r.try_get("url").op("decode callback")?,
                            body: r.try_get("body").op("decode callback")?,
                            attempts: r.try_get("attempts").op("decode callback")?,
                        })
                    })
                    .collect()
            }

            async fn finish_callback(&self, id: i64, attempts: i64) -> Result<()> {
                sqlx::query("UPDATE callbacks SET done = 1, attempts = $1 WHERE id = $2")
                    .bind(attempts)
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .op("finish callback")?;
                Ok(())
            }

            async fn pending_callbacks(&self) -> Result<i64> {
                sqlx::query_scalar("SELECT COUNT(*) FROM callbacks WHERE done = 0").fetch_one(&self.pool).await.op("count pending callbacks")
            }

            async fn active_job_count(&self) -> Result<i64> {
                sqlx::query_scalar("SELECT COUNT(*) FROM job_instances WHERE status IN (2, 7, 10, 15)")
                    .fetch_one(&self.pool)
                    .await
                    .op("count active jobs")
            }

            async fn audit(&self, e: &AuditEvent) -> Result<()> {
                let mut tx = self.pool.begin().await.op("begin audit")?;
                insert_audit(&mut *tx, &self.audit_key, e).await?;
                tx.commit().await.op("commit audit")
            }
        }
    };
}

pub(crate) use impl_sql_store;
