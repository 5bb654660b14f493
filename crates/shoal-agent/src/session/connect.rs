//! Dialling a server: base URL → `ws(s)://…/api/shoal/v1/agent/ws`, TCP, TLS (rustls with the
//! ring provider) for https, then the WebSocket handshake.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use url::Url;

use super::error::{LinkError, StartError};

/// Path of the agent endpoint under a server's base URL.
pub const AGENT_WS_PATH: &str = "/api/shoal/v1/agent/ws";
/// Limit for TCP connect, TLS and WebSocket handshakes together.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// WebSocket read buffer: frames from the server are small.
const READ_BUFFER: usize = 8 * 1024;

/// Any byte stream the WebSocket can run over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// One server, parsed and checked at start.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL as configured (for logs).
    pub base: String,
    /// `ws://` or `wss://` endpoint.
    pub endpoint: Url,
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Target {
    pub fn parse(base: &str, insecure: bool) -> Result<Target, StartError> {
        let bad = |reason: &str| StartError::BadUrl { url: base.to_string(), reason: reason.into() };
        let url = Url::parse(base).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" if insecure => false,
            "http" => return Err(StartError::PlainHttp { url: base.to_string() }),
            _ => return Err(bad("scheme must be http or https")),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("no host")),
        };
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        let mut endpoint = url.clone();
        endpoint.set_scheme(if tls { "wss" } else { "ws" }).map_err(|()| bad("scheme"))?;
        let path = format!("{}{AGENT_WS_PATH}", url.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        Ok(Target { base: base.to_string(), endpoint, host, port, tls })
    }
}

/// rustls connector: roots from the CA file, else the webpki roots.
pub fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, StartError> {
    client_config(ca_file).map(TlsConnector::from)
}

/// rustls client config: roots from the CA file, else the webpki roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, StartError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| StartError::CaFile { path: path.to_path_buf(), reason };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in the file".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::CaFile { path: ca_file.unwrap_or(Path::new("<webpki roots>")).to_path_buf(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects to `target` and completes the WebSocket handshake.
pub async fn dial(target: &Target, tls: Option<&TlsConnector>) -> Result<Ws, LinkError> {
    tokio::time::timeout(DIAL_TIMEOUT, dial_inner(target, tls)).await.map_err(|_| LinkError::Timeout("connecting to the server"))?
}

async fn dial_inner(target: &Target, tls: Option<&TlsConnector>) -> Result<Ws, LinkError> {
    let addr = format!("{}:{}", target.host, target.port);
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| LinkError::Connect { addr: addr.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if target.tls {
        let tls = tls.ok_or_else(|| LinkError::Tls { host: target.host.clone(), source: std::io::Error::other("no TLS configuration") })?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| LinkError::Tls { host: target.host.clone(), source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e) })?;
        let stream = tls.connect(name, tcp).await.map_err(|source| LinkError::Tls { host: target.host.clone(), source })?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    // The read buffer is zero-filled up to its size before every read: keep it small (the
    // default 128 KiB costs a memset per frame and that much resident memory per link).
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _response) = tokio_tungstenite::client_async_with_config(target.endpoint.as_str(), stream, Some(config)).await?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_the_agent_endpoint() {
        let t = Target::parse("http://127.0.0.1:8080", true).unwrap();
        assert_eq!(t.endpoint.as_str(), "ws://127.0.0.1:8080/api/shoal/v1/agent/ws");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 8080, false));

        let t = Target::parse("https://shoal.example/prefix/", false).unwrap();
        assert_eq!(t.endpoint.as_str(), "wss://shoal.example/prefix/api/shoal/v1/agent/ws");
        assert_eq!((t.port, t.tls), (443, true));

        let t = Target::parse("http://[::1]:9", true).unwrap();
        assert_eq!(t.host, "::1");
    }

    #[test]
    fn plain_http_needs_insecure() {
        assert!(matches!(Target::parse("http://h:1", false), Err(StartError::PlainHttp { .. })));
        assert!(matches!(Target::parse("ftp://h", true), Err(StartError::BadUrl { .. })));
        assert!(matches!(Target::parse("nonsense", true), Err(StartError::BadUrl { .. })));
    }

    #[test]
    fn tls_roots_come_from_webpki_or_the_ca_file() {
        assert!(tls_connector(None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        assert!(matches!(tls_connector(Some(&empty)), Err(StartError::CaFile { .. })));
        assert!(tls_connector(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
