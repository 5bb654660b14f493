//! The Shoal server: JOB v3 API, execution engine and agent gateway in one library, started
//! by [`run`] (the binary, `shoal dev` and tests all call it).
//!
//! # Layout
//! - [`config`]: [`ServerConfig`], the typed settings.
//! - [`auth`]: caller credentials (API-gateway header or ESB body fields) and app secrets.
//! - [`api`]: HTTP routing, the JOB envelope, one module per API under `api/v3/`, Shoal's
//!   own extensions under `api/shoal/`.
//! - [`engine`]: job → step → host tasks: start, finish, terminate, resume after restart,
//!   callbacks.
//! - [`gateway`]: agent WebSocket sessions, dispatch, batched ingest of logs and exits,
//!   liveness.
//! - [`files`]: file distribution — the blob store, uploads, the blob endpoint agents fetch
//!   from, file logs.
//! - [`metrics`]: Prometheus counters and gauges, served at `/metrics`.
//! - [`conn`]: connection caps (per source, in total) and deadlines on the listener.
//! - [`tls`]: TLS on the listener; [`secrets`]: sensitive values encrypted at rest.
//! - [`console`]: the web console (embedded pages, cookie sessions with CSRF tokens).
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod conn;
pub mod console;
pub mod engine;
pub mod files;
pub mod gateway;
pub mod metrics;
pub mod secrets;
pub mod tls;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use shoal_store::Store;
use tokio::net::TcpListener;

pub use config::ServerConfig;

/// Everything a request handler or background task needs.
pub struct Shared {
    pub config: ServerConfig,
    pub store: Arc<dyn Store>,
    pub engine: Arc<engine::Engine>,
    pub gateway: Arc<gateway::Gateway>,
    /// Agent enrolment token.
    pub agent_token: String,
    /// `get_job_instance_status` answers of finished jobs.
    pub finished_status: api::v3::get_job_instance_status::FinishedCache,
    /// File contents, by hash.
    pub blobs: Arc<dyn files::BlobStore>,
    /// Who holds which blob, for peer-to-peer fan-out.
    pub tracker: files::tracker::Tracker,
}

/// Credentials made at first start, for the caller to show.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub app_code: Option<String>,
    pub app_credential_file: Option<std::path::PathBuf>,
    pub agent_token_file: Option<std::path::PathBuf>,
}

/// Open the store, make first-start credentials, and serve on `listener` until `shutdown`
/// resolves; then stop accepting, close agent sessions and return.
pub async fn run(config: ServerConfig, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let shared = prepare(config).await?;
    serve(shared, listener, shutdown).await
}

/// Open the store and make first-start credentials; split from [`serve`] so callers
/// (`shoal dev`) can act between the two.
pub async fn prepare(mut config: ServerConfig) -> anyhow::Result<Arc<Shared>> {
    config.validate()?;
    secrets::secure_data_dir(&config.data_dir())?;
    let url = config.store_url();
    let audit_key = secrets::load_or_create_audit_key(&config)?;
    let store = shoal_store::open_keyed(&url, audit_key).await.with_context(|| format!("opening store {}", config.redacted_store_url()))?;
    tracing::info!(backend = store.backend(), "store open");
    let (agent_token, _) = ensure_agent_token(&config)?;
    config.sealing_key = secrets::load_or_create(&config)?;
    ensure_apps(&config, store.as_ref()).await?;
    let gateway = Arc::new(gateway::Gateway::new(config.clone(), store.clone()));
    let engine = engine::Engine::new(config.clone(), store.clone(), gateway.clone());
    gateway.set_engine(&engine);
    let blobs: Arc<dyn files::BlobStore> = Arc::new(files::gc::Tracked::new(files::open_blobs(&config)?, store.clone()));
    engine.set_blobs(blobs.clone());
    Ok(Arc::new(Shared {
        config,
        store,
        engine,
        gateway,
        agent_token,
        finished_status: Default::default(),
        blobs,
        tracker: Default::default(),
    }))
}

pub async fn serve(shared: Arc<Shared>, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    shared.gateway.start(stop_rx.clone());
    shared.engine.start(stop_rx.clone()).await?;
    files::gc::spawn(shared.clone(), stop_rx.clone());
    engine::cron::spawn(shared.clone(), stop_rx);
    let app = api::router(shared.clone());
    let tls = match (&shared.config.tls_cert, &shared.config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    tracing::info!(addr = %listener.local_addr()?, backend = shared.store.backend(), tls = tls.is_some(), "shoal server listening");
    let mut stopping = stop_tx.subscribe();
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let listener = conn::LimitedListener::new(listener, conn::Limits::new(&shared.config));
    let served = async {
        match tls {
            Some(acceptor) => axum::serve(tls::TlsListener::new(listener, acceptor)?, app).with_graceful_shutdown(graceful).await?,
            None => axum::serve(listener, app).with_graceful_shutdown(graceful).await?,
        }
        anyhow::Ok(())
    };
    // Shutdown completes within its grace, whatever requests are still waiting (a stuck
    // store, a client trickling a body): what they did not finish is not acknowledged.
    let grace = std::time::Duration::from_secs(shared.config.shutdown_grace_secs);
    let deadline = async {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = served => r?,
        () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the shutdown grace; stopping anyway"),
    }
    shared.gateway.close_all();
    Ok(())
}

pub(crate) fn write_secret_file(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

/// The agent token: configured, or read from / generated into `agent-token` in the data dir.
fn ensure_agent_token(config: &ServerConfig) -> anyhow::Result<(String, Option<std::path::PathBuf>)> {
    if let Some(t) = config.agent_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok((t.clone(), None));
    }
    let dir = config.data_dir();
    let path = dir.join("agent-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        if !existing.trim().is_empty() {
            return Ok((existing.trim().to_string(), Some(path)));
        }
    }
    let token = auth::random_secret();
    write_secret_file(&path, &format!("{token}\n"))?;
    tracing::info!(path = %path.display(), "generated agent enrolment token");
    Ok((token, Some(path)))
}

/// First start: the bootstrap app, or a generated one written to `app-credential`.
async fn ensure_apps(config: &ServerConfig, store: &dyn Store) -> anyhow::Result<()> {
    if let Some(spec) = config.bootstrap_app.as_ref().filter(|s| !s.is_empty()) {
        let (code, secret) =
            spec.split_once(':').filter(|(c, s)| !c.is_empty() && !s.is_empty()).context("SHOAL_BOOTSTRAP_APP must be code:secret")?;
        store.put_app(&auth::new_app(code, secret, true)).await?;
        // The bootstrap app is a trusted gateway: it may assert bk_username (BlueKing callers).
        store.set_app_gateway(code, true).await?;
        tracing::info!(app_code = code, "bootstrap app ready");
        return Ok(());
    }
    if store.count_apps().await? > 0 {
        return Ok(());
    }
    let code = "shoal-admin";
    let secret = auth::random_secret();
    store.put_app(&auth::new_app(code, &secret, true)).await?;
    store.set_app_gateway(code, true).await?;
    let dir = config.data_dir();
    let path = dir.join("app-credential");
    write_secret_file(&path, &format!("{code}:{secret}\n"))?;
    tracing::info!(path = %path.display(), app_code = code, "generated an admin app credential");
    Ok(())
}
