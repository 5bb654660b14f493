//! Storage of file distribution: local upload slots (`generate_local_file_upload_url`), each
//! filled with a blob by one PUT. A separate trait ([`FileStore`], a supertrait of
//! [`crate::Store`]) with its SQL written once in [`impl_file_store!`].

use async_trait::async_trait;

use crate::Result;

/// One local upload slot.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    /// `<scope id>/<uuid>/<user>/<file name>`, what `fast_transfer_file` names it by.
    pub path: String,
    /// SHA-256 of the secret in the upload URL.
    pub token_hash: String,
    pub scope_type: String,
    pub scope_id: String,
    pub file_name: String,
    pub creator: String,
    /// The blob uploaded into the slot, once it was.
    pub blob: Option<String>,
    pub size: Option<i64>,
    pub create_time: i64,
    pub expire_time: i64,
}

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn create_uploads(&self, rows: &[UploadRow]) -> Result<()>;
    async fn upload_by_token(&self, token_hash: &str) -> Result<Option<UploadRow>>;
    async fn upload_by_path(&self, path: &str) -> Result<Option<UploadRow>>;
    /// Records the blob a PUT stored in the slot (a later PUT replaces it, as an
    /// overwriting upload does).
    async fn fill_upload(&self, path: &str, blob: &str, size: i64) -> Result<()>;
    /// Replaces a file step's transfer (its sources staged).
    async fn set_step_transfer(&self, step_id: i64, transfer: &str) -> Result<()>;
}

macro_rules! impl_file_store {
    ($store:ident, $db:ty) => {
        mod file_store_impl {
            use async_trait::async_trait;
            use sqlx::Row;

            use crate::files::{FileStore, UploadRow};
            use crate::{DbContext, Result};

            type DbRow = <$db as sqlx::Database>::Row;

            const UPLOAD_COLS: &str = "path, token_hash, scope_type, scope_id, file_name, creator, blob, size, create_time, expire_time";

            fn upload_of(r: &DbRow) -> Result<UploadRow> {
                let op = "decode upload";
                Ok(UploadRow {
                    path: r.try_get("path").op(op)?,
                    token_hash: r.try_get("token_hash").op(op)?,
                    scope_type: r.try_get("scope_type").op(op)?,
                    scope_id: r.try_get("scope_id").op(op)?,
                    file_name: r.try_get("file_name").op(op)?,
                    creator: r.try_get("creator").op(op)?,
                    blob: r.try_get("blob").op(op)?,
                    size: r.try_get("size").op(op)?,
                    create_time: r.try_get("create_time").op(op)?,
                    expire_time: r.try_get("expire_time").op(op)?,
                })
            }

            #[async_trait]
            impl FileStore for super::$store {
                async fn create_uploads(&self, rows: &[UploadRow]) -> Result<()> {
                    let mut tx = self.pool.begin().await.op("begin")?;
                    for u in rows {
                        sqlx::query(&format!("INSERT INTO file_uploads ({UPLOAD_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
                            .bind(&u.path)
                            .bind(&u.token_hash)
                            .bind(&u.scope_type)
                            .bind(&u.scope_id)
                            .bind(&u.file_name)
                            .bind(&u.creator)
                            .bind(&u.blob)
                            .bind(u.size)
                            .bind(u.create_time)
                            .bind(u.expire_time)
                            .execute(&mut *tx)
                            .await
                            .op("insert upload")?;
                    }
                    tx.commit().await.op("commit")
                }

                async fn upload_by_token(&self, token_hash: &str) -> Result<Option<UploadRow>> {
                    let row = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM file_uploads WHERE token_hash = $1"))
                        .bind(token_hash)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get upload")?;
                    row.as_ref().map(upload_of).transpose()
                }

                async fn upload_by_path(&self, path: &str) -> Result<Option<UploadRow>> {
                    let row = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM file_uploads WHERE path = $1"))
                        .bind(path)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get upload")?;
                    row.as_ref().map(upload_of).transpose()
                }

                async fn set_step_transfer(&self, step_id: i64, transfer: &str) -> Result<()> {
                    sqlx::query("UPDATE step_instances SET transfer = $1 WHERE id = $2")
                        .bind(transfer)
                        .bind(step_id)
                        .execute(&self.pool)
                        .await
                        .op("set step transfer")?;
                    Ok(())
                }

                async fn fill_upload(&self, path: &str, blob: &str, size: i64) -> Result<()> {
                    sqlx::query("UPDATE file_uploads SET blob = $1, size = $2 WHERE path = $3")
                        .bind(blob)
                        .bind(size)
                        .bind(path)
                        .execute(&self.pool)
                        .await
                        .op("fill upload")?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use impl_file_store;
