//! Session errors: what stops the agent from starting, and what ends one connection.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The configuration cannot work; `run` returns at once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no server URL configured")]
    NoServers,
    #[error("bad server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("server URL {url:?} is plain http and insecure connections are not allowed")]
    PlainHttp { url: String },
    #[error("cannot use CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot prepare state dir {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
}

/// One connection attempt or session ended; the agent backs off and reconnects (unless the
/// server said retrying cannot help).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("TLS handshake with {host} failed: {source}")]
    Tls { host: String, source: std::io::Error },
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server rejected the agent: {message}")]
    Rejected { message: String, retry: bool },
    #[error("cannot encode a message: {0}")]
    Encode(#[from] serde_json::Error),
}
