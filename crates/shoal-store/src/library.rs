//! The script library, job templates (every change a new, numbered version) and plans.

use async_trait::async_trait;

use crate::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct ScriptRow {
    /// 32 hex characters, as JOB's script ids.
    pub id: String,
    /// `public` / `0` for public scripts.
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    pub script_language: i32,
    pub description: String,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
    /// Filled on reads: the online version, if any.
    pub online_version_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScriptVersionRow {
    pub id: i64,
    pub script_id: String,
    pub version: String,
    pub content: Vec<u8>,
    pub status: i32,
    pub version_desc: String,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ScriptQuery {
    pub scope_type: String,
    pub scope_id: String,
    pub name: Option<String>,
    pub language: Option<i32>,
    pub start: i64,
    pub length: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRow {
    pub id: i64,
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    pub description: String,
    pub needs_approval: bool,
    /// The approved version executions use (0: none yet).
    pub current_version: i64,
    pub latest_version: i64,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersionRow {
    pub template_id: i64,
    pub version: i64,
    /// JSON of the template document.
    pub spec: String,
    /// `current`, `superseded`, `pending` or `rejected`.
    pub state: String,
    pub author: String,
    pub created_at: i64,
    pub summary: String,
    /// JSON list of changes against the version it replaced.
    pub diff: String,
    pub reviewer: Option<String>,
    pub review_comment: Option<String>,
    pub reviewed_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    pub id: i64,
    pub template_id: i64,
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    /// Template version the plan was last saved against.
    pub synced_version: i64,
    /// JSON: chosen steps and variable values.
    pub spec: String,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

/// One change of a template, saved whole by [`LibraryStore::save_template_change`].
#[derive(Debug, Clone)]
pub struct TemplateChange {
    /// The template; `id` 0 creates it (its `needs_approval` and description are those of
    /// the first version).
    pub template: TemplateRow,
    /// The new version (`template_id` is filled in).
    pub version: TemplateVersionRow,
    /// The version becomes current at once; otherwise it waits as `pending` and the
    /// template's `needs_approval` and description stay those of its current version.
    pub make_current: bool,
    /// Plan rows to create or update by (template, name); `template_id` is filled in.
    pub plans: Vec<PlanRow>,
    /// Recorded with the change; its `resource_id` becomes the template id.
    pub audit: crate::AuditEvent,
}

/// Per-step extras of a job's steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepExtras {
    pub ignore_error: bool,
    pub confirm_message: Option<String>,
    pub confirm_users: Vec<String>,
    pub confirm_reason: Option<String>,
    pub confirmed_by: Option<String>,
}

#[async_trait]
pub trait LibraryStore: Send + Sync {
    // --- scripts ---
    /// A script and its first version, together.
    async fn create_script(&self, s: &ScriptRow, v: &ScriptVersionRow) -> Result<i64>;
    async fn get_script(&self, id: &str) -> Result<Option<ScriptRow>>;
    async fn list_scripts(&self, q: &ScriptQuery) -> Result<(i64, Vec<ScriptRow>)>;
    async fn update_script_basic(&self, id: &str, name: &str, description: &str, user: &str, now: i64) -> Result<()>;
    async fn delete_script(&self, id: &str) -> Result<()>;
    async fn create_script_version(&self, v: &ScriptVersionRow) -> Result<i64>;
    async fn get_script_version(&self, id: i64) -> Result<Option<ScriptVersionRow>>;
    async fn get_script_version_by_name(&self, script_id: &str, version: &str) -> Result<Option<ScriptVersionRow>>;
    async fn list_script_versions(&self, script_id: &str) -> Result<Vec<ScriptVersionRow>>;
    async fn update_script_version(&self, v: &ScriptVersionRow) -> Result<()>;
    /// Make `version_id` online; the previous online version goes offline.
    async fn publish_script_version(&self, script_id: &str, version_id: i64, user: &str, now: i64) -> Result<()>;
    async fn set_script_version_status(&self, version_id: i64, status: i32, user: &str, now: i64) -> Result<()>;
    async fn delete_script_version(&self, version_id: i64) -> Result<()>;

    // --- templates ---
    /// Save one change of a template — created when `template.id` is 0 — with its new
    /// version, its plan rows and its audit event, in one transaction. Returns the template
    /// id and the plan ids (in the order given). `Conflict` when the template was changed
    /// meanwhile (its latest version is no longer `version - 1`) or, for a change made
    /// current at once, when approval was turned on meanwhile.
    async fn save_template_change(&self, c: &TemplateChange) -> Result<(i64, Vec<i64>)>;
    async fn get_template(&self, id: i64) -> Result<Option<TemplateRow>>;
    async fn get_template_by_name(&self, scope_type: &str, scope_id: &str, name: &str) -> Result<Option<TemplateRow>>;
    async fn list_templates(&self, scope_type: &str, scope_id: &str) -> Result<Vec<TemplateRow>>;
    async fn get_template_version(&self, template_id: i64, version: i64) -> Result<Option<TemplateVersionRow>>;
    async fn list_template_versions(&self, template_id: i64) -> Result<Vec<TemplateVersionRow>>;
    /// Approve (it becomes current, and its `needs_approval` and description the
    /// template's) or reject a pending version, with `audit` in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn review_template_version(
        &self,
        template_id: i64,
        version: i64,
        approve: bool,
        reviewer: &str,
        comment: &str,
        now: i64,
        audit: &crate::AuditEvent,
    ) -> Result<()>;
    async fn pending_template_versions(&self, scope_type: &str, scope_id: &str) -> Result<Vec<TemplateVersionRow>>;
    /// Delete a template, its versions and plans, with `audit` in the same transaction.
    async fn delete_template(&self, id: i64, audit: &crate::AuditEvent) -> Result<()>;

    // --- plans (written with their template's changes) ---
    async fn get_plan(&self, id: i64) -> Result<Option<PlanRow>>;
    async fn list_plans(&self, scope_type: &str, scope_id: &str, template_id: Option<i64>) -> Result<Vec<PlanRow>>;
    async fn delete_plan(&self, id: i64) -> Result<()>;

    // --- multi-step job data ---
    async fn step_extras(&self, step_id: i64) -> Result<StepExtras>;
    async fn set_step_confirmation(&self, step_id: i64, by: &str, reason: &str) -> Result<()>;
    /// Job template / plan ids and the variables a job ran with.
    async fn job_plan_link(&self, job_id: i64) -> Result<Option<crate::PlanLink>>;
    /// Start another execution of a step: bump its execute_count and add host tasks for
    /// it (`status` 5 to run again, 3 for hosts that succeeded last time).
    async fn restart_step(&self, step_id: i64, execute_count: i32, tasks: &[(crate::TargetHost, i32)]) -> Result<()>;

    // --- rolling execution ---
    async fn step_rolling(&self, step_id: i64) -> Result<Option<RollingRow>>;
    async fn set_rolling_batch(&self, step_id: i64, batch: i32) -> Result<()>;
    /// A step rolling by source file moves to its batch of files `batch`, whose sources
    /// `transfer` (the step's new transfer) names: every host task of run `execute_count`
    /// waits again (status 5), keyed by that batch. One transaction.
    async fn start_file_batch(&self, step_id: i64, execute_count: i32, batch: i32, transfer: &str) -> Result<()>;
    /// A batch of the step failed and the step went on (mode "ignore failures").
    async fn note_failed_batch(&self, step_id: i64) -> Result<()>;
}

/// A rolling step's config (JSON), batch count and the batch now running (0: not started).
#[derive(Debug, Clone, PartialEq)]
pub struct RollingRow {
    pub config: String,
    pub total_batches: i32,
    pub current_batch: i32,
    /// Batches that failed while the step went on.
    pub failed_batches: i32,
}

/// Implements [`LibraryStore`] for `$store` over `$db`.
macro_rules! impl_library_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};

            use crate::library::*;
            use crate::{DbContext, PlanLink, Result, StoreError, TargetHost};

            type DbRow = <$db as sqlx::Database>::Row;

            const SCRIPT_COLS: &str = "s.id, s.scope_type, s.scope_id, s.name, s.script_language, s.description, s.creator, s.create_time, \
                s.last_modify_user, s.last_modify_time, (SELECT v.id FROM script_versions v WHERE v.script_id = s.id AND v.status = 1 LIMIT 1) AS online_version_id";
            const VERSION_COLS: &str = "id, script_id, version, content, status, version_desc, creator, create_time, last_modify_user, last_modify_time";
            const TEMPLATE_COLS: &str = "id, scope_type, scope_id, name, description, needs_approval, current_version, latest_version, creator, create_time, last_modify_user, last_modify_time";
            const TV_COLS: &str = "template_id, version, spec, state, author, created_at, summary, diff, reviewer, review_comment, reviewed_at";
            const PLAN_COLS: &str = "id, template_id, scope_type, scope_id, name, synced_version, spec, creator, create_time, last_modify_user, last_modify_time";

            fn unique(e: sqlx::Error, what: &'static str, op: &'static str) -> StoreError {
                match &e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
                    _ => StoreError::Db { op, source: e },
                }
            }

            fn script_of(r: &DbRow) -> Result<ScriptRow> {
                Ok(ScriptRow {
                    id: r.try_get("id").op("decode script")?,
                    scope_type: r.try_get("scope_type").op("decode script")?,
                    scope_id: r.try_get("scope_id").op("decode script")?,
                    name: r.try_get("name").op("decode script")?,
                    script_language: r.try_get::<i64, _>("script_language").op("decode script")? as i32,
                    description: r.try_get("description").op("decode script")?,
                    creator: r.try_get("creator").op("decode script")?,
                    create_time: r.try_get("create_time").op("decode script")?,
                    last_modify_user: r.try_get("last_modify_user").op("decode script")?,
                    last_modify_time: r.try_get("last_modify_time").op("decode script")?,
                    online_version_id: r.try_get("online_version_id").op("decode script")?,
                })
            }

            fn version_of(r: &DbRow) -> Result<ScriptVersionRow> {
                Ok(ScriptVersionRow {
                    id: r.try_get("id").op("decode version")?,
                    script_id: r.try_get("script_id").op("decode version")?,
                    version: r.try_get("version").op("decode version")?,
                    content: r.try_get("content").op("decode version")?,
                    status: r.try_get::<i64, _>("status").op("decode version")? as i32,
                    version_desc: r.try_get("version_desc").op("decode version")?,
                    creator: r.try_get("creator").op("decode version")?,
                    create_time: r.try_get("create_time").op("decode version")?,
                    last_modify_user: r.try_get("last_modify_user").op("decode version")?,
                    last_modify_time: r.try_get("last_modify_time").op("decode version")?,
                })
            }

            fn template_of(r: &DbRow) -> Result<TemplateRow> {
                Ok(TemplateRow {
                    id: r.try_get("id").op("decode template")?,
                    scope_type: r.try_get("scope_type").op("decode template")?,
                    scope_id: r.try_get("scope_id").op("decode template")?,
                    name: r.try_get("name").op("decode template")?,
                    description: r.try_get("description").op("decode template")?,
                    needs_approval: r.try_get::<i64, _>("needs_approval").op("decode template")? != 0,
                    current_version: r.try_get("current_version").op("decode template")?,
                    latest_version: r.try_get("latest_version").op("decode template")?,
                    creator: r.try_get("creator").op("decode template")?,
                    create_time: r.try_get("create_time").op("decode template")?,
                    last_modify_user: r.try_get("last_modify_user").op("decode template")?,
                    last_modify_time: r.try_get("last_modify_time").op("decode template")?,
                })
            }

            fn tv_of(r: &DbRow) -> Result<TemplateVersionRow> {
                Ok(TemplateVersionRow {
                    template_id: r.try_get("template_id").op("decode template version")?,
                    version: r.try_get("version").op("decode template version")?,
                    spec: r.try_get("spec").op("decode template version")?,
                    state: r.try_get("state").op("decode template version")?,
                    author: r.try_get("author").op("decode template version")?,
                    created_at: r.try_get("created_at").op("decode template version")?,
                    summary: r.try_get("summary").op("decode template version")?,
                    diff: r.try_get("diff").op("decode template version")?,
                    reviewer: r.try_get("reviewer").op("decode template version")?,
                    review_comment: r.try_get("review_comment").op("decode template version")?,
                    reviewed_at: r.try_get("reviewed_at").op("decode template version")?,
                })
            }

            fn plan_of(r: &DbRow) -> Result<PlanRow> {
                Ok(PlanRow {
                    id: r.try_get("id").op("decode plan")?,
                    template_id: r.try_get("template_id").op("decode plan")?,
                    scope_type: r.try_get("scope_type").op("decode plan")?,
                    scope_id: r.try_get("scope_id").op("decode plan")?,
                    name: r.try_get("name").op("decode plan")?,
                    synced_version: r.try_get("synced_version").op("decode plan")?,
                    spec: r.try_get("spec").op("decode plan")?,
                    creator: r.try_get("creator").op("decode plan")?,
                    create_time: r.try_get("create_time").op("decode plan")?,
                    last_modify_user: r.try_get("last_modify_user").op("decode plan")?,
                    last_modify_time: r.try_get("last_modify_time").op("decode plan")?,
                })
            }

            async fn insert_version<'c, E>(ex: E, v: &ScriptVersionRow) -> Result<i64>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                sqlx::query_scalar(
                    "INSERT INTO script_versions (script_id, version, content, status, version_desc, creator, create_time, last_modify_user, last_modify_time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(&v.script_id)
                .bind(&v.version)
                .bind(&v.content)
                .bind(v.status as i64)
                .bind(&v.version_desc)
                .bind(&v.creator)
                .bind(v.create_time)
                .bind(&v.last_modify_user)
                .bind(v.last_modify_time)
                .fetch_one(ex)
                .await
                .map_err(|e| unique(e, "script version", "insert script version"))
            }

            async fn insert_tv<'c, E>(ex: E, v: &TemplateVersionRow) -> Result<()>
            where
                E: sqlx::Executor<'c, Database = $db>,
            {
                sqlx::query(
                    "INSERT INTO template_versions (template_id, version, spec, state, author, created_at, summary, diff) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(v.template_id)
                .bind(v.version)
                .bind(&v.spec)
                .bind(&v.state)
                .bind(&v.author)
                .bind(v.created_at)
                .bind(&v.summary)
                .bind(&v.diff)
                .execute(ex)
                .await
                .map_err(|e| unique(e, "template version", "insert template version"))?;
                Ok(())
            }

            #[async_trait]
            impl LibraryStore for $store {
                async fn create_script(&self, s: &ScriptRow, v: &ScriptVersionRow) -> Result<i64> {
                    let mut tx = self.pool.begin().await.op("begin create script")?;
                    sqlx::query(
                        "INSERT INTO scripts (id, scope_type, scope_id, name, script_language, description, creator, create_time, last_modify_user, last_modify_time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&s.id)
                    .bind(&s.scope_type)
                    .bind(&s.scope_id)
                    .bind(&s.name)
                    .bind(s.script_language as i64)
                    .bind(&s.description)
                    .bind(&s.creator)
                    .bind(s.create_time)
                    .bind(&s.last_modify_user)
                    .bind(s.last_modify_time)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique(e, "script name", "insert script"))?;
                    let id = insert_version(&mut *tx, v).await?;
                    tx.commit().await.op("commit create script")?;
                    Ok(id)
                }

                async fn get_script(&self, id: &str) -> Result<Option<ScriptRow>> {
                    let row = sqlx::query(&format!("SELECT {SCRIPT_COLS} FROM scripts s WHERE s.id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get script")?;
                    row.as_ref().map(script_of).transpose()
                }

                async fn list_scripts(&self, q: &ScriptQuery) -> Result<(i64, Vec<ScriptRow>)> {
                    fn filters<'a>(b: &mut QueryBuilder<'a, $db>, q: &'a ScriptQuery) {
                        b.push(" WHERE s.scope_type = ").push_bind(&q.scope_type).push(" AND s.scope_id = ").push_bind(&q.scope_id);
                        if let Some(n) = &q.name {
                            b.push(" AND s.name LIKE ").push_bind(format!("%{}%", n.replace('%', "\\%").replace('_', "\\_"))).push(" ESCAPE '\\'");
                        }
                        if let Some(l) = q.language {
                            b.push(" AND s.script_language = ").push_bind(l as i64);
                        }
                    }
                    let mut c = QueryBuilder::<$db>::new("SELECT COUNT(*) FROM scripts s");
                    filters(&mut c, q);
                    let total: i64 = c.build_query_scalar().fetch_one(&self.pool).await.op("count scripts")?;
                    let mut b = QueryBuilder::<$db>::new(format!("SELECT {SCRIPT_COLS} FROM scripts s"));
                    filters(&mut b, q);
                    b.push(" ORDER BY s.create_time DESC, s.id LIMIT ").push_bind(q.length).push(" OFFSET ").push_bind(q.start);
                    let rows = b.build().fetch_all(&self.pool).await.op("list scripts")?;
                    Ok((total, rows.iter().map(script_of).collect::<Result<_>>()?))
                }

                async fn update_script_basic(&self, id: &str, name: &str, description: &str, user: &str, now: i64) -> Result<()> {
                    sqlx::query("UPDATE scripts SET name = $1, description = $2, last_modify_user = $3, last_modify_time = $4 WHERE id = $5")
                        .bind(name)
                        .bind(description)
                        .bind(user)
                        .bind(now)
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| unique(e, "script name", "update script"))?;
                    Ok(())
                }

                async fn delete_script(&self, id: &str) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin delete script")?;
                    sqlx::query("DELETE FROM script_versions WHERE script_id = $1").bind(id).execute(&mut *tx).await.op("delete versions")?;
                    sqlx::query("DELETE FROM scripts WHERE id = $1").bind(id).execute(&mut *tx).await.op("delete script")?;
                    tx.commit().await.op("commit delete script")?;
                    Ok(())
                }

                async fn create_script_version(&self, v: &ScriptVersionRow) -> Result<i64> {
                    insert_version(&self.pool, v).await
                }

                async fn get_script_version(&self, id: i64) -> Result<Option<ScriptVersionRow>> {
                    let row = sqlx::query(&format!("SELECT {VERSION_COLS} FROM script_versions WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get script version")?;
                    row.as_ref().map(version_of).transpose()
                }

                async fn get_script_version_by_name(&self, script_id: &str, version: &str) -> Result<Option<ScriptVersionRow>> {
                    let row = sqlx::query(&format!("SELECT {VERSION_COLS} FROM script_versions WHERE script_id = $1 AND version = $2"))
                        .bind(script_id)
                        .bind(version)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get script version by name")?;
                    row.as_ref().map(version_of).transpose()
                }

                async fn list_script_versions(&self, script_id: &str) -> Result<Vec<ScriptVersionRow>> {
                    let rows = sqlx::query(&format!("SELECT {VERSION_COLS} FROM script_versions WHERE script_id = $1 ORDER BY id DESC"))
                        .bind(script_id)
                        .fetch_all(&self.pool)
                        .await
                        .op("list script versions")?;
                    rows.iter().map(version_of).collect()
                }

                async fn update_script_version(&self, v: &ScriptVersionRow) -> Result<()> {
                    sqlx::query(
                        "UPDATE script_versions SET version = $1, content = $2, version_desc = $3, last_modify_user = $4, last_modify_time = $5 WHERE id = $6",
                    )
                    .bind(&v.version)
                    .bind(&v.content)
                    .bind(&v.version_desc)
                    .bind(&v.last_modify_user)
                    .bind(v.last_modify_time)
                    .bind(v.id)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| unique(e, "script version", "update script version"))?;
                    Ok(())
                }

                async fn publish_script_version(&self, script_id: &str, version_id: i64, user: &str, now: i64) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin publish")?;
                    sqlx::query("UPDATE script_versions SET status = 2, last_modify_user = $1, last_modify_time = $2 WHERE script_id = $3 AND status = 1")
                        .bind(user)
                        .bind(now)
                        .bind(script_id)
                        .execute(&mut *tx)
                        .await
                        .op("take old version offline")?;
                    sqlx::query("UPDATE script_versions SET status = 1, last_modify_user = $1, last_modify_time = $2 WHERE id = $3")
                        .bind(user)
                        .bind(now)
                        .bind(version_id)
                        .execute(&mut *tx)
                        .await
                        .op("publish version")?;
                    tx.commit().await.op("commit publish")?;
                    Ok(())
                }

                async fn set_script_version_status(&self, version_id: i64, status: i32, user: &str, now: i64) -> Result<()> {
                    sqlx::query("UPDATE script_versions SET status = $1, last_modify_user = $2, last_modify_time = $3 WHERE id = $4")
                        .bind(status as i64)
                        .bind(user)
                        .bind(now)
                        .bind(version_id)
                        .execute(&self.pool)
                        .await
                        .op("set version status")?;
                    Ok(())
                }

                async fn delete_script_version(&self, version_id: i64) -> Result<()> {
                    sqlx::query("DELETE FROM script_versions WHERE id = $1").bind(version_id).execute(&self.pool).await.op("delete version")?;
                    Ok(())
                }

                async fn save_template_change(&self, c: &TemplateChange) -> Result<(i64, Vec<i64>)> {
                    let (t, v) = (&c.template, &c.version);
                    let mut tx = self.pool.begin().await.op("begin template change")?;
                    let id = if t.id == 0 {
                        sqlx::query_scalar(
                            "INSERT INTO templates (scope_type, scope_id, name, description, needs_approval, current_version, latest_version, creator, create_time, last_modify_user, last_modify_time) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                        )
                        .bind(&t.scope_type)
                        .bind(&t.scope_id)
                        .bind(&t.name)
                        .bind(&t.description)
                        .bind(t.needs_approval as i64)
                        .bind(if c.make_current { v.version } else { 0 })
                        .bind(v.version)
                        .bind(&t.creator)
                        .bind(t.create_time)
                        .bind(&t.last_modify_user)
                        .bind(t.last_modify_time)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| unique(e, "template name", "insert template"))?
                    } else {
                        let mut q = QueryBuilder::<$db>::new("UPDATE templates SET latest_version = ");
                        q.push_bind(v.version).push(", last_modify_user = ").push_bind(&v.author).push(", last_modify_time = ").push_bind(v.created_at);
                        if c.make_current {
                            q.push(", current_version = ").push_bind(v.version);
                            q.push(", description = ").push_bind(&t.description);
                            q.push(", needs_approval = ").push_bind(t.needs_approval as i64);
                        }
                        q.push(" WHERE id = ").push_bind(t.id).push(" AND latest_version = ").push_bind(v.version - 1);
                        if c.make_current {
                            // Approval turned on by an approval committed meanwhile holds.
                            q.push(" AND needs_approval = 0");
                        }
                        let r = q.build().execute(&mut *tx).await.op("update template")?;
                        if r.rows_affected() == 0 {
                            return Err(StoreError::Conflict("template changed meanwhile"));
                        }
                        if c.make_current {
                            sqlx::query("UPDATE template_versions SET state = 'superseded' WHERE template_id = $1 AND state = 'current'")
                                .bind(t.id)
                                .execute(&mut *tx)
                                .await
                                .op("supersede current version")?;
                        }
                        t.id
                    };
                    insert_tv(&mut *tx, &TemplateVersionRow { template_id: id, ..v.clone() }).await?;
                    let mut plan_ids = Vec::with_capacity(c.plans.len());
                    for p in &c.plans {
                        let pid: i64 = sqlx::query_scalar(
                            "INSERT INTO plans (template_id, scope_type, scope_id, name, synced_version, spec, creator, create_time, last_modify_user, last_modify_time) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                             ON CONFLICT (template_id, name) DO UPDATE SET synced_version = excluded.synced_version, spec = excluded.spec, \
                             last_modify_user = excluded.last_modify_user, last_modify_time = excluded.last_modify_time RETURNING id",
                        )
                        .bind(id)
                        .bind(&p.scope_type)
                        .bind(&p.scope_id)
                        .bind(&p.name)
                        .bind(p.synced_version)
                        .bind(&p.spec)
                        .bind(&p.creator)
                        .bind(p.create_time)
                        .bind(&p.last_modify_user)
                        .bind(p.last_modify_time)
                        .fetch_one(&mut *tx)
                        .await
                        .op("put plan")?;
                        plan_ids.push(pid);
                    }
                    let mut audit = c.audit.clone();
                    audit.resource_id = id.to_string();
                    trust_sql::insert_chained_audit(&mut *tx, &self.audit_key, &audit).await?;
                    tx.commit().await.op("commit template change")?;
                    Ok((id, plan_ids))
                }

                async fn get_template(&self, id: i64) -> Result<Option<TemplateRow>> {
                    let row = sqlx::query(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get template")?;
                    row.as_ref().map(template_of).transpose()
                }

                async fn get_template_by_name(&self, scope_type: &str, scope_id: &str, name: &str) -> Result<Option<TemplateRow>> {
                    let row = sqlx::query(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE scope_type = $1 AND scope_id = $2 AND name = $3"))
                        .bind(scope_type)
                        .bind(scope_id)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get template by name")?;
                    row.as_ref().map(template_of).transpose()
                }

                async fn list_templates(&self, scope_type: &str, scope_id: &str) -> Result<Vec<TemplateRow>> {
                    let rows = sqlx::query(&format!("SELECT {TEMPLATE_COLS} FROM templates WHERE scope_type = $1 AND scope_id = $2 ORDER BY id"))
                        .bind(scope_type)
                        .bind(scope_id)
                        .fetch_all(&self.pool)
                        .await
                        .op("list templates")?;
                    rows.iter().map(template_of).collect()
                }

                async fn get_template_version(&self, template_id: i64, version: i64) -> Result<Option<TemplateVersionRow>> {
                    let row = sqlx::query(&format!("SELECT {TV_COLS} FROM template_versions WHERE template_id = $1 AND version = $2"))
                        .bind(template_id)
                        .bind(version)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get template version")?;
                    row.as_ref().map(tv_of).transpose()
                }

                async fn list_template_versions(&self, template_id: i64) -> Result<Vec<TemplateVersionRow>> {
                    let rows = sqlx::query(&format!("SELECT {TV_COLS} FROM template_versions WHERE template_id = $1 ORDER BY version"))
                        .bind(template_id)
                        .fetch_all(&self.pool)
                        .await
                        .op("list template versions")?;
                    rows.iter().map(tv_of).collect()
                }

                async fn review_template_version(
                    &self,
                    template_id: i64,
                    version: i64,
                    approve: bool,
                    reviewer: &str,
                    comment: &str,
                    now: i64,
                    audit: &crate::AuditEvent,
                ) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin review")?;
                    if approve {
                        sqlx::query("UPDATE template_versions SET state = 'superseded' WHERE template_id = $1 AND state = 'current'")
                            .bind(template_id)
                            .execute(&mut *tx)
                            .await
                            .op("supersede current version")?;
                    }
                    let r = sqlx::query(
                        "UPDATE template_versions SET state = $1, reviewer = $2, review_comment = $3, reviewed_at = $4 \
                         WHERE template_id = $5 AND version = $6 AND state = 'pending'",
                    )
                    .bind(if approve { "current" } else { "rejected" })
                    .bind(reviewer)
                    .bind(comment)
                    .bind(now)
                    .bind(template_id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .op("review version")?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Conflict("version is not pending"));
                    }
                    if approve {
                        // The approved document's approval setting and description are now
                        // the ones in force.
                        let spec: String = sqlx::query_scalar("SELECT spec FROM template_versions WHERE template_id = $1 AND version = $2")
                            .bind(template_id)
                            .bind(version)
                            .fetch_one(&mut *tx)
                            .await
                            .op("read approved version")?;
                        let doc: serde_json::Value = serde_json::from_str(&spec).unwrap_or_default();
                        let needs_approval = doc["needs_approval"].as_bool().unwrap_or(false);
                        let description = doc["description"].as_str().unwrap_or_default();
                        sqlx::query("UPDATE templates SET current_version = $1, needs_approval = $2, description = $3 WHERE id = $4")
                            .bind(version)
                            .bind(needs_approval as i64)
                            .bind(description)
                            .bind(template_id)
                            .execute(&mut *tx)
                            .await
                            .op("set current version")?;
                    }
                    trust_sql::insert_chained_audit(&mut *tx, &self.audit_key, audit).await?;
                    tx.commit().await.op("commit review")?;
                    Ok(())
                }

                async fn pending_template_versions(&self, scope_type: &str, scope_id: &str) -> Result<Vec<TemplateVersionRow>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {} FROM template_versions v JOIN templates t ON t.id = v.template_id \
                         WHERE t.scope_type = $1 AND t.scope_id = $2 AND v.state = 'pending' ORDER BY v.template_id, v.version",
                        TV_COLS.split(", ").map(|c| format!("v.{c}")).collect::<Vec<_>>().join(", ")
                    ))
                    .bind(scope_type)
                    .bind(scope_id)
                    .fetch_all(&self.pool)
                    .await
                    .op("pending template versions")?;
                    rows.iter().map(tv_of).collect()
                }

                async fn delete_template(&self, id: i64, audit: &crate::AuditEvent) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin delete template")?;
                    sqlx::query("DELETE FROM plans WHERE template_id = $1").bind(id).execute(&mut *tx).await.op("delete plans")?;
                    sqlx::query("DELETE FROM template_versions WHERE template_id = $1").bind(id).execute(&mut *tx).await.op("delete versions")?;
                    sqlx::query("DELETE FROM templates WHERE id = $1").bind(id).execute(&mut *tx).await.op("delete template")?;
                    trust_sql::insert_chained_audit(&mut *tx, &self.audit_key, audit).await?;
                    tx.commit().await.op("commit delete template")?;
                    Ok(())
                }

                async fn get_plan(&self, id: i64) -> Result<Option<PlanRow>> {
                    let row = sqlx::query(&format!("SELECT {PLAN_COLS} FROM plans WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get plan")?;
                    row.as_ref().map(plan_of).transpose()
                }

                async fn list_plans(&self, scope_type: &str, scope_id: &str, template_id: Option<i64>) -> Result<Vec<PlanRow>> {
                    let mut q = QueryBuilder::<$db>::new(format!("SELECT {PLAN_COLS} FROM plans WHERE scope_type = "));
                    q.push_bind(scope_type).push(" AND scope_id = ").push_bind(scope_id);
                    if let Some(t) = template_id {
                        q.push(" AND template_id = ").push_bind(t);
                    }
                    q.push(" ORDER BY id");
                    let rows = q.build().fetch_all(&self.pool).await.op("list plans")?;
                    rows.iter().map(plan_of).collect()
                }

                async fn delete_plan(&self, id: i64) -> Result<()> {
                    sqlx::query("DELETE FROM plans WHERE id = $1").bind(id).execute(&self.pool).await.op("delete plan")?;
                    Ok(())
                }

                async fn step_extras(&self, step_id: i64) -> Result<StepExtras> {
                    let row = sqlx::query(
                        "SELECT ignore_error, confirm_message, confirm_users, confirm_reason, confirmed_by FROM step_extras WHERE step_instance_id = $1",
                    )
                    .bind(step_id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("step extras")?;
                    let Some(r) = row else { return Ok(StepExtras::default()) };
                    let users: String = r.try_get("confirm_users").op("decode step extras")?;
                    Ok(StepExtras {
                        ignore_error: r.try_get::<i64, _>("ignore_error").op("decode step extras")? != 0,
                        confirm_message: r.try_get("confirm_message").op("decode step extras")?,
                        confirm_users: serde_json::from_str(&users).unwrap_or_default(),
                        confirm_reason: r.try_get("confirm_reason").op("decode step extras")?,
                        confirmed_by: r.try_get("confirmed_by").op("decode step extras")?,
                    })
                }

                async fn set_step_confirmation(&self, step_id: i64, by: &str, reason: &str) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO step_extras (step_instance_id, confirmed_by, confirm_reason) VALUES ($1, $2, $3) \
                         ON CONFLICT (step_instance_id) DO UPDATE SET confirmed_by = excluded.confirmed_by, confirm_reason = excluded.confirm_reason",
                    )
                    .bind(step_id)
                    .bind(by)
                    .bind(reason)
                    .execute(&self.pool)
                    .await
                    .op("set step confirmation")?;
                    Ok(())
                }

                async fn job_plan_link(&self, job_id: i64) -> Result<Option<PlanLink>> {
                    let row = sqlx::query("SELECT job_template_id, job_plan_id, template_version, variables FROM job_instance_plans WHERE job_instance_id = $1")
                        .bind(job_id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("job plan link")?;
                    row.map(|r| {
                        Ok(PlanLink {
                            template_id: r.try_get("job_template_id").op("decode plan link")?,
                            plan_id: r.try_get("job_plan_id").op("decode plan link")?,
                            template_version: r.try_get("template_version").op("decode plan link")?,
                            variables: r.try_get("variables").op("decode plan link")?,
                        })
                    })
                    .transpose()
                }

                async fn restart_step(&self, step_id: i64, execute_count: i32, tasks: &[(TargetHost, i32)]) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin restart step")?;
                    for chunk in tasks.chunks(500) {
                        let mut q = QueryBuilder::<$db>::new("INSERT INTO host_tasks (step_instance_id, execute_count, bk_host_id, ip, bk_cloud_id, status) ");
                        q.push_values(chunk, |mut b, (t, status)| {
                            b.push_bind(step_id).push_bind(execute_count as i64).push_bind(t.bk_host_id).push_bind(&t.ip).push_bind(t.bk_cloud_id).push_bind(*status as i64);
                        });
                        q.build().execute(&mut *tx).await.op("insert retry tasks")?;
                    }
                    sqlx::query("UPDATE step_instances SET execute_count = $1, status = 2, end_time = NULL WHERE id = $2")
                        .bind(execute_count as i64)
                        .bind(step_id)
                        .execute(&mut *tx)
                        .await
                        .op("bump execute count")?;
                    tx.commit().await.op("commit restart step")?;
                    Ok(())
                }

                async fn step_rolling(&self, step_id: i64) -> Result<Option<RollingRow>> {
                    let row = sqlx::query("SELECT config, total_batches, current_batch, failed_batches FROM step_rolling WHERE step_instance_id = $1")
                        .bind(step_id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("step rolling")?;
                    row.map(|r| {
                        Ok(RollingRow {
                            config: r.try_get("config").op("decode rolling")?,
                            total_batches: r.try_get::<i64, _>("total_batches").op("decode rolling")? as i32,
                            current_batch: r.try_get::<i64, _>("current_batch").op("decode rolling")? as i32,
                            failed_batches: r.try_get::<i64, _>("failed_batches").op("decode rolling")? as i32,
                        })
                    })
                    .transpose()
                }

                async fn set_rolling_batch(&self, step_id: i64, batch: i32) -> Result<()> {
                    sqlx::query("UPDATE step_rolling SET current_batch = $1 WHERE step_instance_id = $2")
                        .bind(batch as i64)
                        .bind(step_id)
                        .execute(&self.pool)
                        .await
                        .op("set rolling batch")?;
                    Ok(())
                }

                async fn start_file_batch(&self, step_id: i64, execute_count: i32, batch: i32, transfer: &str) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin file batch")?;
                    sqlx::query("UPDATE step_instances SET transfer = $1 WHERE id = $2")
                        .bind(transfer)
                        .bind(step_id)
                        .execute(&mut *tx)
                        .await
                        .op("start file batch")?;
                    sqlx::query(
                        "UPDATE host_tasks SET status = 5, file_batch = $1, exit_code = 0, error_code = 0, start_time = NULL, end_time = NULL \
                         WHERE step_instance_id = $2 AND execute_count = $3",
                    )
                    .bind(batch as i64)
                    .bind(step_id)
                    .bind(execute_count as i64)
                    .execute(&mut *tx)
                    .await
                    .op("start file batch")?;
                    sqlx::query("UPDATE step_rolling SET current_batch = $1 WHERE step_instance_id = $2")
                        .bind(batch as i64)
                        .bind(step_id)
                        .execute(&mut *tx)
                        .await
                        .op("start file batch")?;
                    tx.commit().await.op("commit file batch")?;
                    Ok(())
                }

                async fn note_failed_batch(&self, step_id: i64) -> Result<()> {
                    sqlx::query("UPDATE step_rolling SET failed_batches = failed_batches + 1 WHERE step_instance_id = $1")
                        .bind(step_id)
                        .execute(&self.pool)
                        .await
                        .op("note failed batch")?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_library_store;
