//! File sources (`file_type` 3): the server reads each named file from the source once,
//! streaming it into the blob store while its SHA-256 is computed; then the targets fetch
//! the blob like any other.
//!
//! - `BLUEKING_ARTIFACTORY` (bkrepo): `GET {base_url}/generic/{project}/{repo}/{path}`, the
//!   file named `project/repo/path`, with the credential as HTTP basic auth.
//! - `S3` (a Shoal extension): an S3-compatible store at `endpoint` (path-style requests,
//!   SigV4 with an `APP_ID_SECRET_KEY` credential), the file named `bucket/key`; a source
//!   with a `bucket` parameter reads only that bucket.
//!
//! A source URL is a request the server makes on a caller's behalf, so it is fenced
//! ([`UrlPolicy`]): http(s) only, no user info, and never this server's own addresses
//! (loopback, the listen address, any address of this machine's interfaces, the unspecified
//! address) nor link-local ones (cloud metadata) unless an admin lists its base URL in `file_source_allowed_base_urls`. The host
//! is resolved at read time, every address it resolves to is checked, the request goes to
//! the checked address, and redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use shoal_proto::status::host_status;
use shoal_store::{CredentialRow, FileSourceRow, Store};
use url::Url;

use super::blobs::BlobStore;
use super::StepFile;

pub const ARTIFACTORY: &str = "BLUEKING_ARTIFACTORY";
pub const S3: &str = "S3";

/// Credential types, as bk-job names them.
pub const CREDENTIAL_TYPES: [&str; 4] = ["APP_ID_SECRET_KEY", "PASSWORD", "USERNAME_PASSWORD", "SECRET_KEY"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A credential's secret fields (sealed together at rest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Authenticated data a credential's secret is sealed with: its scope and id.
pub fn secret_aad(scope_type: &str, scope_id: &str, id: &str) -> Vec<u8> {
    crate::secrets::aad(&["credential", scope_type, scope_id, id, "secret"])
}

pub fn open_secret(key: &crate::secrets::Key, c: &CredentialRow) -> anyhow::Result<Secret> {
    let plain = key.open(&c.secret, &secret_aad(&c.scope_type, &c.scope_id, &c.id))?;
    Ok(serde_json::from_str(&plain)?)
}

/// Files of a file source a step reads (kept with the step until staged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteSource {
    pub source_id: i64,
    pub code: String,
    pub paths: Vec<String>,
}

/// Where file sources may read from (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    allowed: Vec<Url>,
    own: Vec<IpAddr>,
}

/// Whether `ip` is an address of this machine: binding a socket to it succeeds only then.
fn local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn link_local_or_own(ip: IpAddr, own: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    own.contains(&ip)
        || local_address(ip)
        || match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        }
}

impl UrlPolicy {
    /// `allowed`: the admin's base URLs; `listen`: this server's listen address.
    pub fn new(allowed: &[String], listen: &str) -> anyhow::Result<UrlPolicy> {
        let allowed = allowed
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let u = Url::parse(s.trim()).map_err(|e| anyhow::anyhow!("file_source_allowed_base_urls: {s:?}: {e}"))?;
                anyhow::ensure!(
                    matches!(u.scheme(), "http" | "https") && u.host_str().is_some(),
                    "file_source_allowed_base_urls: {s:?} is not an http(s) URL"
                );
                Ok(u)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let own = listen.parse::<SocketAddr>().map(|a| a.ip()).into_iter().filter(|ip| !ip.is_unspecified()).collect();
        Ok(UrlPolicy { allowed, own })
    }

    fn allows(&self, u: &Url) -> bool {
        self.allowed.iter().any(|b| {
            b.scheme() == u.scheme()
                && b.host_str().map(str::to_ascii_lowercase) == u.host_str().map(str::to_ascii_lowercase)
                && (b.port().is_none() || b.port_or_known_default() == u.port_or_known_default())
                && (u.path().starts_with(b.path()) || b.path() == "/")
        })
    }

    /// Check a URL as given: its form, and a literal address or `localhost`.
    pub fn check(&self, raw: &str) -> Result<Url, String> {
        let u = Url::parse(raw.trim()).map_err(|_| format!("{raw} is not a URL"))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() || !u.username().is_empty() || u.password().is_some() {
            return Err(format!("{raw}: http or https with a host and no user info"));
        }
        if self.allows(&u) {
            return Ok(u);
        }
        let literal = match u.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        };
        if literal.is_some_and(|ip| link_local_or_own(ip, &self.own))
            || u.host_str().is_some_and(|h| h.eq_ignore_ascii_case("localhost") || h.ends_with(".localhost"))
        {
            return Err(format!(
                "{raw}: this server's own and link-local addresses are refused unless listed in file_source_allowed_base_urls"
            ));
        }
        Ok(u)
    }

    /// An HTTP client whose requests to `u`'s host go to an address the policy allows.
    pub async fn client_for(&self, u: &Url) -> Result<reqwest::Client, String> {
        let u = self.check(u.as_str())?;
        let host = u.host_str().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = u.port_or_known_default().ok_or("no port")?;
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("resolving {host}: {e}"))?.collect();
        if !self.allows(&u) {
            if let Some(bad) = addrs.iter().find(|a| link_local_or_own(a.ip(), &self.own)) {
                return Err(format!("{host} resolves to {}, one of this server's own or a link-local address", bad.ip()));
            }
        }
        let addr = addrs.first().copied().ok_or_else(|| format!("{host} has no address"))?;
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .resolve(&host, addr)
            .build()
            .map_err(|e| e.to_string())
    }
}

/// The base URL of a source, from its access parameters.
pub fn base_url(kind: &str, params: &serde_json::Value) -> Option<String> {
    let field = if kind == S3 { "endpoint" } else { "base_url" };
    params.get(field).and_then(|v| v.as_str()).map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty())
}

/// Why a source could not be read: a host status (203 missing, 202 failed) and the reason.
#[derive(Debug)]
pub struct ReadFailure {
    pub status: i32,
    pub message: String,
}

fn failed(message: impl Into<String>) -> ReadFailure {
    ReadFailure { status: host_status::FILE_TRANSFER_FAILED, message: message.into() }
}

fn missing(message: impl Into<String>) -> ReadFailure {
    ReadFailure { status: host_status::FILE_SOURCE_MISSING, message: message.into() }
}

/// What a source answered, as a failure when it is not the file.
fn answer_failure(who: &str, path: &str, status: reqwest::StatusCode) -> Option<ReadFailure> {
    match status.as_u16() {
        200..=299 => None,
        404 => Some(missing(format!("{who}: {path} does not exist (HTTP 404)"))),
        401 | 403 => Some(failed(format!("{who}: the credential was refused reading {path} (HTTP {status})"))),
        _ => Some(failed(format!("{who}: reading {path} answered HTTP {status}"))),
    }
}

/// Reads the files of `src` into `blobs`; each file's name on the targets is the last
/// segment of its path.
/// The `file_prefix` that stands for a new UUID at each read.
pub const UUID_PREFIX: &str = "${UUID}";

pub async fn stage(
    store: &dyn Store,
    key: &crate::secrets::Key,
    policy: &UrlPolicy,
    blobs: &dyn BlobStore,
    src: &RemoteSource,
) -> Result<Vec<StepFile>, ReadFailure> {
    let who = format!("file source {}", src.code);
    let source: FileSourceRow = store
        .get_file_source(src.source_id)
        .await
        .map_err(|e| failed(format!("{who}: {e}")))?
        .ok_or_else(|| missing(format!("{who} no longer exists")))?;
    if !source.enable {
        return Err(failed(format!("{who} is disabled")));
    }
    let credential = store
        .get_credential(&source.credential_id)
        .await
        .map_err(|e| failed(format!("{who}: {e}")))?
        .filter(|c| c.scope_type == source.scope_type && c.scope_id == source.scope_id)
        .ok_or_else(|| failed(format!("{who}: its credential {} does not exist", source.credential_id)))?;
    let secret = open_secret(key, &credential).map_err(|_| failed(format!("{who}: its credential cannot be opened")))?;
    let params: serde_json::Value = serde_json::from_str(&source.access_params).unwrap_or_default();
    let base = base_url(&source.kind, &params).ok_or_else(|| failed(format!("{who} has no base URL")))?;
    let base_url = policy.check(&base).map_err(|e| failed(format!("{who}: {e}")))?;
    let client = policy.client_for(&base_url).await.map_err(|e| failed(format!("{who}: {e}")))?;
    // Every name placed starts with the source's prefix; `${UUID}` is a new one per read, as
    // JOB's file workers make it.
    let prefix = if source.file_prefix == UUID_PREFIX { uuid::Uuid::new_v4().simple().to_string() } else { source.file_prefix.clone() };
    let mut out = Vec::with_capacity(src.paths.len());
    for path in &src.paths {
        let path = path.trim().trim_start_matches('/');
        let name = path.rsplit('/').next().filter(|n| !n.is_empty() && *n != "." && *n != "..");
        let Some(name) = name.map(String::from) else { return Err(missing(format!("{who}: {path} names no file"))) };
        let response = if source.kind == S3 {
            let (bucket, object) = path.split_once('/').ok_or_else(|| missing(format!("{who}: {path} is not bucket/key")))?;
            if let Some(only) = params.get("bucket").and_then(|b| b.as_str()).filter(|b| !b.is_empty()) {
                if only != bucket {
                    return Err(missing(format!("{who}: {path} is outside its bucket {only}")));
                }
            }
            let (Some(ak), Some(sk)) = (secret.access_key.as_deref(), secret.secret_key.as_deref()) else {
                return Err(failed(format!("{who}: its credential has no access key and secret key")));
            };
            let region = params.get("region").and_then(|r| r.as_str()).unwrap_or("");
            let s3 = super::s3::S3Client::new(&base, region, ak, sk, client.clone()).map_err(|e| failed(format!("{who}: {e}")))?;
            s3.request(reqwest::Method::GET, bucket, object, &[]).send().await
        } else {
            if path.splitn(3, '/').count() < 3 {
                return Err(missing(format!("{who}: {path} is not project/repo/path")));
            }
            let encoded: Vec<String> = path
                .split('/')
                .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20"))
                .collect();
            let url = format!("{base}/generic/{}", encoded.join("/"));
            let req = client.get(url);
            let req = match (&secret.username, &secret.access_key, &secret.password, &secret.secret_key) {
                (Some(u), _, Some(p), _) => req.basic_auth(u, Some(p)),
                (_, Some(a), _, Some(s)) => req.basic_auth(a, Some(s)),
                (None, None, Some(p), _) => req.basic_auth("", Some(p)),
                (_, None, None, Some(s)) => req.bearer_auth(s),
                _ => req,
            };
            req.send().await
        };
        let response = response.map_err(|e| failed(format!("{who}: reading {path}: {e}")))?;
        if let Some(f) = answer_failure(&who, path, response.status()) {
            return Err(f);
        }
        let body = response.bytes_stream().map_err(std::io::Error::other);
        let blob = blobs.put(Box::pin(body), super::MAX_FILE_BYTES).await.map_err(|e| failed(format!("{who}: storing {path}: {e}")))?;
        out.push(StepFile {
            sha256: blob.id.to_string(),
            size: blob.size,
            name: format!("{prefix}{name}"),
            mode: Some(super::DEFAULT_MODE),
            src_path: path.to_string(),
            src_host: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_link_local_addresses_are_refused_unless_allowed() {
        let p = UrlPolicy::new(&[], "10.0.0.5:8080").unwrap();
        for bad in [
            "http://127.0.0.1:9000",
            "http://localhost/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://10.0.0.5:8080/",
            "ftp://bkrepo.example/",
            "http://user:pw@bkrepo.example/",
        ] {
            assert!(p.check(bad).is_err(), "{bad}");
        }
        for good in ["http://203.0.113.7:8080", "https://bkrepo.example.com/", "http://198.51.100.10:9000"] {
            assert!(p.check(good).is_ok(), "{good}");
        }
        // This machine's own address on its outbound interface (no packet is sent to learn it).
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        if probe.connect("192.0.2.1:9").is_ok() {
            let mine = probe.local_addr().unwrap().ip();
            assert!(p.check(&format!("http://{mine}:9000/")).is_err(), "{mine} is this machine's");
        }
        let admin = UrlPolicy::new(&["http://127.0.0.1:9000".into()], "0.0.0.0:8080").unwrap();
        assert!(admin.check("http://127.0.0.1:9000/generic").is_ok());
        assert!(admin.check("http://127.0.0.1:9001/").is_err(), "another port is not allowed");
    }
}
