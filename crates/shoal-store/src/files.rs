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

/// One credential; `secret` is sealed (see the server's `secrets`).
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRow {
    /// 32 hex digits.
    pub id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub name: String,
    /// `APP_ID_SECRET_KEY` | `PASSWORD` | `USERNAME_PASSWORD` | `SECRET_KEY`.
    pub kind: String,
    pub description: String,
    pub secret: String,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

/// One file source.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSourceRow {
    pub id: i64,
    pub scope_type: String,
    pub scope_id: String,
    pub code: String,
    pub alias: String,
    /// `BLUEKING_ARTIFACTORY` | `S3`.
    pub kind: String,
    /// JSON object; no secret in it.
    pub access_params: String,
    pub credential_id: String,
    pub file_prefix: String,
    pub enable: bool,
    pub creator: String,
    pub create_time: i64,
    pub last_modify_user: String,
    pub last_modify_time: i64,
}

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn create_credential(&self, row: &CredentialRow) -> Result<()>;
    /// Replaces name, type, description, secret and the modifier of credential `row.id`.
    async fn update_credential(&self, row: &CredentialRow) -> Result<()>;
    async fn get_credential(&self, id: &str) -> Result<Option<CredentialRow>>;
    async fn list_credentials(&self, scope_type: &str, scope_id: &str) -> Result<Vec<CredentialRow>>;
    /// Creates a file source and answers its id; `Conflict` when its code is taken.
    async fn create_file_source(&self, row: &FileSourceRow) -> Result<i64>;
    /// Replaces everything but the id, scope, code, creator and create time.
    async fn update_file_source(&self, row: &FileSourceRow) -> Result<()>;
    async fn get_file_source(&self, id: i64) -> Result<Option<FileSourceRow>>;
    async fn file_source_by_code(&self, scope_type: &str, scope_id: &str, code: &str) -> Result<Option<FileSourceRow>>;
    async fn list_file_sources(&self, scope_type: &str, scope_id: &str) -> Result<Vec<FileSourceRow>>;

    async fn create_uploads(&self, rows: &[UploadRow]) -> Result<()>;
    async fn upload_by_token(&self, token_hash: &str) -> Result<Option<UploadRow>>;
    async fn upload_by_path(&self, path: &str) -> Result<Option<UploadRow>>;
    /// Records the blob a PUT stored in the slot (a later PUT replaces it, as an
    /// overwriting upload does).
    async fn fill_upload(&self, path: &str, blob: &str, size: i64) -> Result<()>;
    /// Replaces a file step's transfer (its sources staged).
    async fn set_step_transfer(&self, step_id: i64, transfer: &str) -> Result<()>;

    /// Blob `sha256` (of `size` bytes) was stored, or someone relies on it, at `at` (ms);
    /// `blake3`, when given, is the BLAKE3 of its bytes.
    async fn note_blob_use(&self, sha256: &str, size: i64, blake3: Option<&str>, at: i64) -> Result<()>;
    /// The BLAKE3 of blob `sha256`'s bytes, where it was recorded when the blob was stored.
    async fn blob_blake3(&self, sha256: &str) -> Result<Option<String>>;
    /// Blobs found in the store, `(sha256, size, written at)`, recorded as used when written
    /// unless they are recorded already (a few statements, whatever their number).
    async fn note_blobs_found(&self, found: &[(String, i64, i64)]) -> Result<()>;
    /// Every text that may name a blob still needed: the transfers of file steps of jobs not
    /// ended or ended at or after `ended_after`, every template version and plan, and the
    /// blobs of uploads not expired at `now`.
    async fn blob_references(&self, ended_after: i64, now: i64) -> Result<Vec<String>>;
    /// Up to `limit` blobs not used since `used_before`: `(sha256, size)`.
    async fn stale_blobs(&self, used_before: i64, limit: i64) -> Result<Vec<(String, i64)>>;
    /// Forgets blob `sha256` if it is still unused since `used_before`; whether it did (then
    /// its content may be deleted).
    async fn forget_blob(&self, sha256: &str, used_before: i64) -> Result<bool>;
    /// The swarm tracker, for target `host` of blob `sha256` at `now`: the holders (other
    /// than `host`) serving it, `(addr, cert_sha256)` — unless `fallback`; else whether `host`
    /// may fetch from a server, which it may when it holds a lease, fewer than `direct_max`
    /// targets do, or with `fallback` (its lease then runs until `lease_until`). One
    /// transaction, serialised per blob.
    async fn swarm_ask(
        &self,
        sha256: &str,
        host: i64,
        direct_max: i64,
        lease_until: i64,
        fallback: bool,
        now: i64,
    ) -> Result<(bool, Vec<(String, String)>)>;
    /// `host` holds blob `sha256` and serves it at `addr` until `until` (its lease ends).
    async fn swarm_announce(&self, sha256: &str, host: i64, addr: &str, cert_sha256: &str, until: i64, now: i64) -> Result<()>;
    /// `host` neither fetches blob `sha256` from a server nor serves it (any more).
    async fn swarm_release(&self, sha256: &str, host: i64) -> Result<()>;
}

macro_rules! impl_file_store {
    ($store:ident, $db:ty) => {
        mod file_store_impl {
            use async_trait::async_trait;
            use sqlx::Row;

            use crate::files::{CredentialRow, FileSourceRow, FileStore, UploadRow};
            use crate::{DbContext, Result, StoreError};

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

            const CREDENTIAL_COLS: &str =
                "id, scope_type, scope_id, name, type, description, secret, creator, create_time, last_modify_user, last_modify_time";
            const SOURCE_COLS: &str = "id, scope_type, scope_id, code, alias, type, access_params, credential_id, file_prefix, enable, \
                 creator, create_time, last_modify_user, last_modify_time";

            fn credential_of(r: &DbRow) -> Result<CredentialRow> {
                let op = "decode credential";
                Ok(CredentialRow {
                    id: r.try_get("id").op(op)?,
                    scope_type: r.try_get("scope_type").op(op)?,
                    scope_id: r.try_get("scope_id").op(op)?,
                    name: r.try_get("name").op(op)?,
                    kind: r.try_get("type").op(op)?,
                    description: r.try_get("description").op(op)?,
                    secret: r.try_get("secret").op(op)?,
                    creator: r.try_get("creator").op(op)?,
                    create_time: r.try_get("create_time").op(op)?,
                    last_modify_user: r.try_get("last_modify_user").op(op)?,
                    last_modify_time: r.try_get("last_modify_time").op(op)?,
                })
            }

            fn source_of(r: &DbRow) -> Result<FileSourceRow> {
                let op = "decode file source";
                Ok(FileSourceRow {
                    id: r.try_get("id").op(op)?,
                    scope_type: r.try_get("scope_type").op(op)?,
                    scope_id: r.try_get("scope_id").op(op)?,
                    code: r.try_get("code").op(op)?,
                    alias: r.try_get("alias").op(op)?,
                    kind: r.try_get("type").op(op)?,
                    access_params: r.try_get("access_params").op(op)?,
                    credential_id: r.try_get("credential_id").op(op)?,
                    file_prefix: r.try_get("file_prefix").op(op)?,
                    enable: r.try_get::<i64, _>("enable").op(op)? != 0,
                    creator: r.try_get("creator").op(op)?,
                    create_time: r.try_get("create_time").op(op)?,
                    last_modify_user: r.try_get("last_modify_user").op(op)?,
                    last_modify_time: r.try_get("last_modify_time").op(op)?,
                })
            }

            #[async_trait]
            impl FileStore for super::$store {
                async fn create_credential(&self, c: &CredentialRow) -> Result<()> {
                    sqlx::query(&format!(
                        "INSERT INTO credentials ({CREDENTIAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                    ))
                    .bind(&c.id)
                    .bind(&c.scope_type)
                    .bind(&c.scope_id)
                    .bind(&c.name)
                    .bind(&c.kind)
                    .bind(&c.description)
                    .bind(&c.secret)
                    .bind(&c.creator)
                    .bind(c.create_time)
                    .bind(&c.last_modify_user)
                    .bind(c.last_modify_time)
                    .execute(&self.pool)
                    .await
                    .op("insert credential")?;
                    Ok(())
                }

                async fn update_credential(&self, c: &CredentialRow) -> Result<()> {
                    let done = sqlx::query(
                        "UPDATE credentials SET name = $1, type = $2, description = $3, secret = $4, last_modify_user = $5, \
                         last_modify_time = $6 WHERE id = $7",
                    )
                    .bind(&c.name)
                    .bind(&c.kind)
                    .bind(&c.description)
                    .bind(&c.secret)
                    .bind(&c.last_modify_user)
                    .bind(c.last_modify_time)
                    .bind(&c.id)
                    .execute(&self.pool)
                    .await
                    .op("update credential")?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("credential"));
                    }
                    Ok(())
                }

                async fn get_credential(&self, id: &str) -> Result<Option<CredentialRow>> {
                    let row = sqlx::query(&format!("SELECT {CREDENTIAL_COLS} FROM credentials WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get credential")?;
                    row.as_ref().map(credential_of).transpose()
                }

                async fn list_credentials(&self, scope_type: &str, scope_id: &str) -> Result<Vec<CredentialRow>> {
                    let rows = sqlx::query(&format!(
                        "SELECT {CREDENTIAL_COLS} FROM credentials WHERE scope_type = $1 AND scope_id = $2 ORDER BY create_time, id"
                    ))
                    .bind(scope_type)
                    .bind(scope_id)
                    .fetch_all(&self.pool)
                    .await
                    .op("list credentials")?;
                    rows.iter().map(credential_of).collect()
                }

                async fn create_file_source(&self, s: &FileSourceRow) -> Result<i64> {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO file_sources (scope_type, scope_id, code, alias, type, access_params, credential_id, file_prefix, \
                         enable, creator, create_time, last_modify_user, last_modify_time) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                    )
                    .bind(&s.scope_type)
                    .bind(&s.scope_id)
                    .bind(&s.code)
                    .bind(&s.alias)
                    .bind(&s.kind)
                    .bind(&s.access_params)
                    .bind(&s.credential_id)
                    .bind(&s.file_prefix)
                    .bind(i64::from(s.enable))
                    .bind(&s.creator)
                    .bind(s.create_time)
                    .bind(&s.last_modify_user)
                    .bind(s.last_modify_time)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict("file source code"),
                        source => StoreError::Db { op: "insert file source", source },
                    })?;
                    Ok(id)
                }

                async fn update_file_source(&self, s: &FileSourceRow) -> Result<()> {
                    let done = sqlx::query(
                        "UPDATE file_sources SET alias = $1, type = $2, access_params = $3, credential_id = $4, file_prefix = $5, \
                         enable = $6, last_modify_user = $7, last_modify_time = $8 WHERE id = $9",
                    )
                    .bind(&s.alias)
                    .bind(&s.kind)
                    .bind(&s.access_params)
                    .bind(&s.credential_id)
                    .bind(&s.file_prefix)
                    .bind(i64::from(s.enable))
                    .bind(&s.last_modify_user)
                    .bind(s.last_modify_time)
                    .bind(s.id)
                    .execute(&self.pool)
                    .await
                    .op("update file source")?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound("file source"));
                    }
                    Ok(())
                }

                async fn get_file_source(&self, id: i64) -> Result<Option<FileSourceRow>> {
                    let row = sqlx::query(&format!("SELECT {SOURCE_COLS} FROM file_sources WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .op("get file source")?;
                    row.as_ref().map(source_of).transpose()
                }

                async fn file_source_by_code(&self, scope_type: &str, scope_id: &str, code: &str) -> Result<Option<FileSourceRow>> {
                    let row = sqlx::query(&format!(
                        "SELECT {SOURCE_COLS} FROM file_sources WHERE scope_type = $1 AND scope_id = $2 AND code = $3"
                    ))
                    .bind(scope_type)
                    .bind(scope_id)
                    .bind(code)
                    .fetch_optional(&self.pool)
                    .await
                    .op("get file source")?;
                    row.as_ref().map(source_of).transpose()
                }

                async fn list_file_sources(&self, scope_type: &str, scope_id: &str) -> Result<Vec<FileSourceRow>> {
                    let rows =
                        sqlx::query(&format!("SELECT {SOURCE_COLS} FROM file_sources WHERE scope_type = $1 AND scope_id = $2 ORDER BY id"))
                            .bind(scope_type)
                            .bind(scope_id)
                            .fetch_all(&self.pool)
                            .await
                            .op("list file sources")?;
                    rows.iter().map(source_of).collect()
                }

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

                async fn note_blob_use(&self, sha256: &str, size: i64, blake3: Option<&str>, at: i64) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO blobs (sha256, size, last_used, blake3) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (sha256) DO UPDATE SET size = excluded.size, \
                         blake3 = COALESCE(excluded.blake3, blobs.blake3), \
                         last_used = CASE WHEN excluded.last_used > blobs.last_used THEN excluded.last_used ELSE blobs.last_used END",
                    )
                    .bind(sha256)
                    .bind(size)
                    .bind(at)
                    .bind(blake3)
                    .execute(&self.pool)
                    .await
                    .op("note blob use")?;
                    Ok(())
                }

                async fn blob_blake3(&self, sha256: &str) -> Result<Option<String>> {
                    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT blake3 FROM blobs WHERE sha256 = $1")
                        .bind(sha256)
                        .fetch_optional(&self.pool)
                        .await
                        .op("read a blob's BLAKE3")?;
                    Ok(row.and_then(|(b,)| b))
                }

                async fn note_blobs_found(&self, found: &[(String, i64, i64)]) -> Result<()> {
                    for part in found.chunks(500) {
                        let mut q = sqlx::QueryBuilder::<$db>::new("INSERT INTO blobs (sha256, size, last_used) ");
                        q.push_values(part, |mut b, (sha, size, at)| {
                            b.push_bind(sha).push_bind(*size).push_bind(*at);
                        });
                        q.push(" ON CONFLICT (sha256) DO NOTHING");
                        q.build().execute(&self.pool).await.op("note found blobs")?;
                    }
                    Ok(())
                }

                async fn blob_references(&self, ended_after: i64, now: i64) -> Result<Vec<String>> {
                    let rows = sqlx::query(
                        "SELECT s.transfer AS t FROM step_instances s JOIN job_instances j ON j.id = s.job_instance_id \
                         WHERE s.transfer IS NOT NULL AND (j.end_time IS NULL OR j.end_time >= $1) \
                         UNION ALL SELECT spec AS t FROM template_versions \
                         UNION ALL SELECT spec AS t FROM plans \
                         UNION ALL SELECT blob AS t FROM file_uploads WHERE blob IS NOT NULL AND expire_time >= $2",
                    )
                    .bind(ended_after)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .op("blob references")?;
                    rows.iter().map(|r| r.try_get::<String, _>("t").op("decode blob reference")).collect()
                }

                async fn stale_blobs(&self, used_before: i64, limit: i64) -> Result<Vec<(String, i64)>> {
                    let rows = sqlx::query("SELECT sha256, size FROM blobs WHERE last_used < $1 ORDER BY last_used LIMIT $2")
                        .bind(used_before)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                        .op("stale blobs")?;
                    rows.iter()
                        .map(|r| Ok((r.try_get("sha256").op("decode blob")?, r.try_get("size").op("decode blob")?)))
                        .collect()
                }

                async fn forget_blob(&self, sha256: &str, used_before: i64) -> Result<bool> {
                    let done = sqlx::query("DELETE FROM blobs WHERE sha256 = $1 AND last_used < $2")
                        .bind(sha256)
                        .bind(used_before)
                        .execute(&self.pool)
                        .await
                        .op("forget blob")?;
                    Ok(done.rows_affected() == 1)
                }

                async fn swarm_ask(
                    &self,
                    sha256: &str,
                    host: i64,
                    direct_max: i64,
                    lease_until: i64,
                    fallback: bool,
                    now: i64,
                ) -> Result<(bool, Vec<(String, String)>)> {
                    let mut tx = self.pool.begin().await.op("begin swarm ask")?;
                    if <$db as sqlx::Database>::NAME == "PostgreSQL" {
                        // Askers of one blob through several replicas count leases one at a time.
                        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(sha256).execute(&mut *tx).await.op("lock swarm")?;
                    }
                    sqlx::query("DELETE FROM swarm_peers WHERE sha256 = $1 AND until_ms <= $2")
                        .bind(sha256)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .op("expire swarm peers")?;
                    let rows = sqlx::query("SELECT bk_host_id, kind, addr, cert_sha256 FROM swarm_peers WHERE sha256 = $1 ORDER BY bk_host_id")
                        .bind(sha256)
                        .fetch_all(&mut *tx)
                        .await
                        .op("read swarm")?;
                    let mut seeds = Vec::new();
                    let (mut leases, mut mine) = (0i64, false);
                    for r in &rows {
                        let (h, kind): (i64, i64) = (r.try_get("bk_host_id").op("decode swarm")?, r.try_get("kind").op("decode swarm")?);
                        if kind == 2 && h != host {
                            seeds.push((r.try_get("addr").op("decode swarm")?, r.try_get("cert_sha256").op("decode swarm")?));
                        } else if kind == 1 {
                            leases += 1;
                            mine |= h == host;
                        }
                    }
                    if !seeds.is_empty() && !fallback {
                        tx.commit().await.op("commit swarm ask")?;
                        return Ok((false, seeds));
                    }
                    let direct = fallback || mine || leases < direct_max;
                    if direct {
                        sqlx::query(
                            "INSERT INTO swarm_peers (sha256, bk_host_id, kind, until_ms) VALUES ($1, $2, 1, $3) \
                             ON CONFLICT (sha256, bk_host_id) DO UPDATE SET kind = 1, addr = '', cert_sha256 = '', until_ms = excluded.until_ms",
                        )
                        .bind(sha256)
                        .bind(host)
                        .bind(lease_until)
                        .execute(&mut *tx)
                        .await
                        .op("lease swarm")?;
                    }
                    tx.commit().await.op("commit swarm ask")?;
                    Ok((direct, Vec::new()))
                }

                async fn swarm_announce(&self, sha256: &str, host: i64, addr: &str, cert_sha256: &str, until: i64, now: i64) -> Result<()> {
                    sqlx::query(
                        "INSERT INTO swarm_peers (sha256, bk_host_id, kind, addr, cert_sha256, until_ms) VALUES ($1, $2, 2, $3, $4, $5) \
                         ON CONFLICT (sha256, bk_host_id) DO UPDATE SET kind = 2, addr = excluded.addr, cert_sha256 = excluded.cert_sha256, until_ms = excluded.until_ms",
                    )
                    .bind(sha256)
                    .bind(host)
                    .bind(addr)
                    .bind(cert_sha256)
                    .bind(until)
                    .execute(&self.pool)
                    .await
                    .op("announce swarm")?;
                    // Swarms nobody asks about any more.
                    sqlx::query("DELETE FROM swarm_peers WHERE until_ms <= $1").bind(now).execute(&self.pool).await.op("expire swarm peers")?;
                    Ok(())
                }

                async fn swarm_release(&self, sha256: &str, host: i64) -> Result<()> {
                    sqlx::query("DELETE FROM swarm_peers WHERE sha256 = $1 AND bk_host_id = $2")
                        .bind(sha256)
                        .bind(host)
                        .execute(&self.pool)
                        .await
                        .op("release swarm")?;
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
