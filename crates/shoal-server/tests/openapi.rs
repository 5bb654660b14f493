//! The OpenAPI document of the Shoal extension API cannot go stale: the server serves it,
//! every operation it lists is answered (not "no such API", not "method not allowed"), and
//! every path the server's sources name that the server answers, with GET or POST, is in it.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};

/// String literals in `text` that could be API paths: lowercase words joined by `/`.
fn path_literals(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, piece) in text.split('"').enumerate() {
        let word = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if i % 2 == 1 && piece.split('/').all(word) && piece.as_bytes()[0].is_ascii_lowercase() {
            out.insert(piece.to_string());
        }
    }
    out
}

/// How the server answers `method` on `path` (under /api/shoal/v1/): its status and body.
async fn probe(h: &Harness, method: &str, path: &str) -> (u16, String) {
    let url = format!("{}/api/shoal/v1/{path}", h.url);
    let scope = json!({"bk_scope_type": "biz", "bk_scope_id": "1"});
    let req = match method {
        "get" => h.http.get(&url).query(&[("bk_scope_type", "biz"), ("bk_scope_id", "1")]),
        "post" => h.http.post(&url).json(&scope),
        "put" => h.http.put(&url).body("x"),
        "head" => h.http.head(&url),
        other => panic!("method {other}"),
    };
    let r = req.header("X-Bkapi-Authorization", h.auth_header()).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Answered: routed to a handler, which may still refuse the (empty) request.
fn answered((status, body): &(u16, String)) -> bool {
    !(*status == 404 && body.contains("no such API") || *status == 405)
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_answered() {
    let h = Harness::start(Backend::Sqlite).await.unwrap();
    let served: Value = h.http.get(format!("{}/api/shoal/v1/openapi.json", h.url)).send().await.unwrap().json().await.unwrap();
    let doc: Value = serde_json::from_str(shoal_server::api::OPENAPI).unwrap();
    assert_eq!(served, doc);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.insert((path.trim_start_matches('/').to_string(), method.clone()));
        }
    }
    // Every operation listed is answered.
    for (path, method) in &listed {
        let concrete =
            path.replace("{check_id}", "1").replace("{job_instance_id}", "1").replace("{token}", "t").replace("{sha256}", &"0".repeat(64));
        let got = probe(&h, method, &concrete).await;
        assert!(answered(&got), "{method} /{path} is listed but not answered: {got:?}");
    }
    // Every path literal of the API's sources that the server answers is listed.
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut candidates = BTreeSet::new();
    for dir in [src.to_string(), format!("{src}/shoal"), format!("{src}/v3")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                candidates.extend(path_literals(&std::fs::read_to_string(p).unwrap()));
            }
        }
    }
    assert!(candidates.contains("hosts/remove") && candidates.contains("login"), "{candidates:?}");
    for path in &candidates {
        for method in ["get", "post"] {
            let got = probe(&h, method, path).await;
            if answered(&got) {
                assert!(listed.contains(&(path.clone(), method.to_string())), "{method} /{path} is answered but not listed: {got:?}");
            }
        }
    }
    // The routes the router names outright.
    let router = std::fs::read_to_string(format!("{src}/mod.rs")).unwrap();
    for piece in router.split("\"/api/shoal/v1/").skip(1) {
        let path = piece.split('"').next().unwrap();
        if path.is_empty() {
            continue; // the prefix itself
        }
        assert!(listed.iter().any(|(p, _)| p == path), "/{path} is routed but not listed");
    }
}
