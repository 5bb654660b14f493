//! Request parameters as one JSON object, wherever the caller put them: the query string
//! (GET, and ESB credentials on POST), a JSON body, or a form body.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, Uri};
use serde_json::{Map, Value};
use shoal_core::JobError;
use shoal_proto::ErrorCode;

fn from_pairs<'a>(pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in pairs {
        // `a[]=1&a[]=2` and `a=1&a=2` both make lists.
        let key = k.trim_end_matches("[]").to_string();
        let v = Value::String(v.into_owned());
        match m.get_mut(&key) {
            Some(Value::Array(items)) => items.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None => {
                m.insert(key, v);
            }
        }
    }
    m
}

pub fn collect(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Value, JobError> {
    let query = from_pairs(url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()));
    let body_is_blank = body.iter().all(|b| b.is_ascii_whitespace());
    if *method == Method::GET || body_is_blank {
        return Ok(Value::Object(query));
    }
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut obj = if ctype.starts_with("application/x-www-form-urlencoded") {
        from_pairs(url::form_urlencoded::parse(body))
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => return Err(JobError::new(ErrorCode::BODY_FORMAT_ERROR)),
        }
    };
    for (k, v) in query {
        obj.entry(k).or_insert(v);
    }
    Ok(Value::Object(obj))
}
