//! The web console: hand-written HTML, CSS and ES modules under `crates/shoal-server/console/`,
//! embedded in the binary ([`ASSETS`]), so a plain `cargo build` makes a server that serves
//! it; no front-end toolchain builds or runs it.
//!
//! `GET /` redirects to `/console/`; `/console/<asset>` is the asset, any other
//! `/console/...` path is `index.html` (the page routes by its own history). Every page
//! answer carries an ETag (its content's SHA-256) for revalidation, and headers that keep it
//! out of frames and forbid script from anywhere but this server ([`security_headers`]).
//! Logging in and the cookie are [`session`]'s.

pub mod session;

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

/// An embedded file: its path under `/console/`, content type and bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($( $path:literal => $ctype:literal ),* $(,)?) => {
        /// Every file of the console.
        pub const ASSETS: &[Asset] = &[
            $( Asset { path: $path, content_type: $ctype, bytes: include_bytes!(concat!("../../console/", $path)) } ),*
        ];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "i18n.js" => "text/javascript; charset=utf-8",
    "ui.js" => "text/javascript; charset=utf-8",
    "hosts.js" => "text/javascript; charset=utf-8",
    "pages/login.js" => "text/javascript; charset=utf-8",
    "pages/run.js" => "text/javascript; charset=utf-8",
    "pages/job.js" => "text/javascript; charset=utf-8",
    "pages/jobs.js" => "text/javascript; charset=utf-8",
    "pages/fleet.js" => "text/javascript; charset=utf-8",
    "pages/audit.js" => "text/javascript; charset=utf-8",
    "pages/approvals.js" => "text/javascript; charset=utf-8",
    "pages/rules.js" => "text/javascript; charset=utf-8",
    "pages/library.js" => "text/javascript; charset=utf-8",
    "pages/files.js" => "text/javascript; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
}

/// Assets by path, with their ETags.
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..32])).collect());

/// The asset at `path` (under `/console/`), if there is one.
pub fn asset(path: &str) -> Option<(&'static Asset, &'static str)> {
    ASSETS.iter().zip(ETAGS.iter()).find(|(a, _)| a.path == path).map(|(a, e)| (a, e.as_str()))
}

/// The content security policy of console pages: script, style, fetches only from this
/// server, no inline script, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Headers every console answer carries.
pub fn security_headers(h: &mut HeaderMap) {
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// `GET /`: to the console.
pub async fn root() -> Redirect {
    Redirect::temporary("/console/")
}

/// `GET /console` and `/console/`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /console/{*path}`: an asset, or the page for any other path (history routing); a
/// missing file (a name with an extension) is 404.
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if asset(&path).is_some() {
        return serve(&path, &headers);
    }
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        let mut resp = (StatusCode::NOT_FOUND, "no such file\n").into_response();
        security_headers(resp.headers_mut());
        return resp;
    }
    serve("index.html", &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some((a, etag)) = asset(path) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { a.bytes.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    // Names are not content-hashed: revalidate each time (an ETag match costs a 304).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    resp
}

/// The assets the job page loads at first: the page, its style, and every module reachable
/// through static imports from `app.js`, plus the job page's own module.
pub fn job_page_assets() -> Vec<&'static Asset> {
    let mut out: Vec<&'static Asset> = vec![];
    let mut todo = vec![
        "index.html".to_string(),
        "style.css".to_string(),
        "favicon.svg".to_string(),
        "app.js".to_string(),
        "pages/job.js".to_string(),
    ];
    while let Some(p) = todo.pop() {
        let Some((a, _)) = asset(&p) else { continue };
        if out.iter().any(|o| o.path == a.path) {
            continue;
        }
        out.push(a);
        if p.ends_with(".js") {
            let dir = p.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
            for dep in static_imports(std::str::from_utf8(a.bytes).unwrap_or("")) {
                todo.push(resolve(&dir, &dep));
            }
        }
    }
    out
}

/// `from './x.js'` / `from "../x.js"` specifiers of a module (its static imports).
fn static_imports(src: &str) -> Vec<String> {
    src.lines()
        .filter(|l| l.trim_start().starts_with("import ") || l.trim_start().starts_with("export "))
        .filter_map(|l| l.split(" from ").nth(1))
        .filter_map(|rest| {
            let q = rest.trim().chars().next()?;
            rest.trim().trim_start_matches(q).split(q).next().map(String::from)
        })
        .collect()
}

fn resolve(dir: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for seg in spec.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_page_loads_under_200_kb() {
        let assets = job_page_assets();
        let names: Vec<&str> = assets.iter().map(|a| a.path).collect();
        for must in ["index.html", "app.js", "api.js", "i18n.js", "pages/job.js", "style.css"] {
            assert!(names.contains(&must), "{must} is loaded by the job page: {names:?}");
        }
        let total: usize = assets.iter().map(|a| a.bytes.len()).sum();
        assert!(total < 200 * 1024, "the job page loads {total} bytes: {names:?}");
    }

    #[test]
    fn imports_resolve_relative_to_their_module() {
        assert_eq!(resolve("pages/", "../api.js"), "api.js");
        assert_eq!(resolve("", "./pages/job.js"), "pages/job.js");
        assert_eq!(
            static_imports("import { a } from './api.js';\nconst x = 1;\nexport { b } from \"../ui.js\";"),
            ["./api.js", "../ui.js"]
        );
    }

    /// The keys of one language's strings in `i18n.js` (`key: '…'` entries of its block).
    fn string_keys(block: &str) -> std::collections::BTreeSet<&str> {
        block
            .split(['\n', ','])
            .filter_map(|part| part.trim().split_once(": '").map(|(k, _)| k))
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            .collect()
    }

    #[test]
    fn every_string_of_the_console_is_in_chinese_and_english() {
        let (i18n, _) = asset("i18n.js").unwrap();
        let js = std::str::from_utf8(i18n.bytes).unwrap();
        let (en_at, zh_at, end) = (js.find("  en: {").unwrap(), js.find("  zh: {").unwrap(), js.find("const RUN_STATUS").unwrap());
        let (en, zh) = (string_keys(&js[en_at..zh_at]), string_keys(&js[zh_at..end]));
        assert!(en.len() > 100, "the English strings are read: {en:?}");
        assert_eq!(en.difference(&zh).collect::<Vec<_>>(), Vec::<&&str>::new(), "English strings with no Chinese");
        assert_eq!(zh.difference(&en).collect::<Vec<_>>(), Vec::<&&str>::new(), "Chinese strings with no English");
    }

    #[test]
    fn the_page_has_no_inline_script() {
        let (page, _) = asset("index.html").unwrap();
        let html = std::str::from_utf8(page.bytes).unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("onclick=") && !html.contains("onload="),
            "script only from files: CSP forbids inline script"
        );
        assert!(html.contains("src=\"/console/app.js\""));
    }
}
