//! Resources that belong to a scope: dynamic groups (keyed by scope *and* id, so one
//! business can never address another's group) and business sets with their member
//! businesses (a `biz_set` scope reaches its members' hosts only; an undefined set reaches
//! nothing), and the names of a business's sets and modules. Every change is written with its
//! audit event in one transaction.

use async_trait::async_trait;

use crate::{AuditEvent, GroupRow, Result};

/// A business set: its id (the scope id of `biz_set` scopes) and its member businesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BizSetRow {
    pub id: i64,
    pub name: String,
    pub members: Vec<i64>,
    pub updated_by: String,
    pub updated_at: i64,
}

/// The name of a set or module (`kind` "set" | "module") of a business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoNameRow {
    pub bk_biz_id: i64,
    pub kind: String,
    pub id: i64,
    pub name: String,
}

#[async_trait]
pub trait ScopeStore {
    /// Name a set or module (an empty name removes the name), with its audit event.
    async fn put_topo_name(&self, n: &TopoNameRow, event: &AuditEvent) -> Result<()>;
    /// The names of one business's sets and modules, or of every business's.
    async fn list_topo_names(&self, bk_biz_id: Option<i64>) -> Result<Vec<TopoNameRow>>;

    /// Create or replace the group (scope, id) and record `event` in the same transaction.
    async fn put_group(&self, g: &GroupRow, event: &AuditEvent) -> Result<()>;
    async fn get_group(&self, scope_type: &str, scope_id: &str, id: &str) -> Result<Option<GroupRow>>;
    async fn list_groups(&self, scope_type: &str, scope_id: &str) -> Result<Vec<GroupRow>>;
    /// Delete the group (scope, id) with its audit event; false when there was none.
    async fn delete_group(&self, scope_type: &str, scope_id: &str, id: &str, event: &AuditEvent) -> Result<bool>;

    /// Create or replace a business set and its members, with its audit event.
    async fn put_biz_set(&self, s: &BizSetRow, event: &AuditEvent) -> Result<()>;
    async fn get_biz_set(&self, id: i64) -> Result<Option<BizSetRow>>;
    async fn list_biz_sets(&self) -> Result<Vec<BizSetRow>>;
    /// Delete a business set with its audit event; false when there was none.
    async fn delete_biz_set(&self, id: i64, event: &AuditEvent) -> Result<bool>;
}

/// Implements [`ScopeStore`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
macro_rules! impl_scope_store {
    ($store:ident, $db:ty) => {
        mod scope_store_impl {
            use async_trait::async_trait;
            use sqlx::Row;

            use crate::scopes::{BizSetRow, ScopeStore, TopoNameRow};
            use crate::{AuditEvent, DbContext, GroupRow, Result, StoreError};

            type DbRow = <$db as sqlx::Database>::Row;

            const GROUP_COLS: &str = "id, scope_type, scope_id, name, spec, creator, create_time";

            fn group_of(r: &DbRow) -> Result<GroupRow> {
                Ok(GroupRow {
                    id: r.try_get("id").op("decode group")?,
                    scope_type: r.try_get("scope_type").op("decode group")?,
                    scope_id: r.try_get("scope_id").op("decode group")?,
                    name: r.try_get("name").op("decode group")?,
                    spec: r.try_get("spec").op("decode group")?,
                    creator: r.try_get("creator").op("decode group")?,
                    create_time: r.try_get("create_time").op("decode group")?,
                })
            }

            fn biz_set_of(r: &DbRow) -> Result<BizSetRow> {
                let members: String = r.try_get("members").op("decode business set")?;
                Ok(BizSetRow {
                    id: r.try_get("id").op("decode business set")?,
                    name: r.try_get("name").op("decode business set")?,
                    members: serde_json::from_str(&members).map_err(|e| StoreError::Corrupt(format!("business set members: {e}")))?,
                    updated_by: r.try_get("updated_by").op("decode business set")?,
                    updated_at: r.try_get("updated_at").op("decode business set")?,
                })
            }

            #[async_trait]
            impl ScopeStore for super::$store {
                async fn put_topo_name(&self, n: &TopoNameRow, event: &AuditEvent) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin name topology")?;
                    if n.name.is_empty() {
                        sqlx::query("DELETE FROM topo_names WHERE bk_biz_id = $1 AND kind = $2 AND id = $3")
                            .bind(n.bk_biz_id)
                            .bind(&n.kind)
                            .bind(n.id)
                            .execute(&mut *tx)
                            .await
                            .op("unname topology")?;
                    } else {
                        sqlx::query(
                            "INSERT INTO topo_names (bk_biz_id, kind, id, name) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (bk_biz_id, kind, id) DO UPDATE SET name = excluded.name",
                        )
                        .bind(n.bk_biz_id)
                        .bind(&n.kind)
                        .bind(n.id)
                        .bind(&n.name)
                        .execute(&mut *tx)
                        .await
                        .op("name topology")?;
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit name topology")
                }

                async fn list_topo_names(&self, bk_biz_id: Option<i64>) -> Result<Vec<TopoNameRow>> {
                    const COLS: &str = "SELECT bk_biz_id, kind, id, name FROM topo_names";
                    let rows = match bk_biz_id {
                        Some(b) => sqlx::query(&format!("{COLS} WHERE bk_biz_id = $1 ORDER BY kind, id")).bind(b).fetch_all(&self.pool).await,
                        None => sqlx::query(&format!("{COLS} ORDER BY bk_biz_id, kind, id")).fetch_all(&self.pool).await,
                    }
                    .op("list topology names")?;
                    rows.iter()
                        .map(|r| {
                            Ok(TopoNameRow {
                                bk_biz_id: r.try_get("bk_biz_id").op("decode topology name")?,
                                kind: r.try_get("kind").op("decode topology name")?,
                                id: r.try_get("id").op("decode topology name")?,
                                name: r.try_get("name").op("decode topology name")?,
                            })
                        })
                        .collect()
                }

                async fn put_group(&self, g: &GroupRow, event: &AuditEvent) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin put group")?;
                    sqlx::query(
                        "INSERT INTO dynamic_groups (id, scope_type, scope_id, name, spec, creator, create_time) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (scope_type, scope_id, id) DO UPDATE SET name = excluded.name, spec = excluded.spec",
                    )
                    .bind(&g.id)
                    .bind(&g.scope_type)
                    .bind(&g.scope_id)
                    .bind(&g.name)
                    .bind(&g.spec)
                    .bind(&g.creator)
                    .bind(g.create_time)
                    .execute(&mut *tx)
                    .await
                    .op("put group")?;
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit put group")
                }

                async fn get_group(&self, scope_type: &str, scope_id: &str, id: &str) -> Result<Option<GroupRow>> {
                    let row = sqlx::query(&format!("SELECT {GROUP_COLS} FROM dynamic_groups WHERE scope_type = $1 AND scope_id = $2 AND id = $3"))
                        .bind(scope_type)
                        .bind(scope_id)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get group")?;
                    row.as_ref().map(group_of).transpose()
                }

                async fn list_groups(&self, scope_type: &str, scope_id: &str) -> Result<Vec<GroupRow>> {
                    let rows = sqlx::query(&format!("SELECT {GROUP_COLS} FROM dynamic_groups WHERE scope_type = $1 AND scope_id = $2 ORDER BY id"))
                        .bind(scope_type)
                        .bind(scope_id)
                        .fetch_all(&self.pool)
                        .await
                        .op("list groups")?;
                    rows.iter().map(group_of).collect()
                }

                async fn delete_group(&self, scope_type: &str, scope_id: &str, id: &str, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin delete group")?;
                    let r = sqlx::query("DELETE FROM dynamic_groups WHERE scope_type = $1 AND scope_id = $2 AND id = $3")
                        .bind(scope_type)
                        .bind(scope_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .op("delete group")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit delete group")?;
                    Ok(true)
                }

                async fn put_biz_set(&self, s: &BizSetRow, event: &AuditEvent) -> Result<()> {
                    let members = serde_json::to_string(&s.members).map_err(|e| StoreError::Corrupt(format!("business set members: {e}")))?;
                    let mut tx = self.pool.begin().await.op("begin put business set")?;
                    sqlx::query(
                        "INSERT INTO biz_sets (id, name, members, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (id) DO UPDATE SET name = excluded.name, members = excluded.members, \
                         updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                    )
                    .bind(s.id)
                    .bind(&s.name)
                    .bind(members)
                    .bind(&s.updated_by)
                    .bind(s.updated_at)
                    .execute(&mut *tx)
                    .await
                    .op("put business set")?;
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit put business set")
                }

                async fn get_biz_set(&self, id: i64) -> Result<Option<BizSetRow>> {
                    let row = sqlx::query("SELECT id, name, members, updated_by, updated_at FROM biz_sets WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get business set")?;
                    row.as_ref().map(biz_set_of).transpose()
                }

                async fn list_biz_sets(&self) -> Result<Vec<BizSetRow>> {
                    let rows = sqlx::query("SELECT id, name, members, updated_by, updated_at FROM biz_sets ORDER BY id")
                        .fetch_all(&self.pool)
                        .await
                        .op("list business sets")?;
                    rows.iter().map(biz_set_of).collect()
                }

                async fn delete_biz_set(&self, id: i64, event: &AuditEvent) -> Result<bool> {
                    let mut tx = self.pool.begin().await.op("begin delete business set")?;
                    let r = sqlx::query("DELETE FROM biz_sets WHERE id = $1").bind(id).execute(&mut *tx).await.op("delete business set")?;
                    if r.rows_affected() == 0 {
                        return Ok(false);
                    }
                    super::trust_sql::insert_chained_audit(&mut tx, &self.audit_key, event).await?;
                    tx.commit().await.op("commit delete business set")?;
                    Ok(true)
                }
            }
        }
    };
}
pub(crate) use impl_scope_store;
