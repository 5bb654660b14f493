//! `get_script_list`, `get_public_script_list` and `get_script_detail` (v2). A v2 script is
//! a script's *online version* (bk-job's `EsbScriptDTO`): `id` is the version id (what v2
//! `fast_execute_script` takes as `script_id`), `type` the language, `public` whether it is
//! a public script; `content` only when asked for (the list) or always (the detail).

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::status::ScriptLanguage;
use shoal_proto::{lenient, ErrorCode};
use shoal_store::library::{ScriptQuery, ScriptRow, ScriptVersionRow};

use super::{library_time, scope_fields, v2_page};
use crate::api::authz::{self, Role};
use crate::api::{decode, internal, ApiResult, Ctx};

#[derive(Deserialize, Default)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    is_public: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    return_script_content: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    script_type: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    script_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
}

/// Most scripts one list reads from the store.
const MAX_SCRIPTS: i64 = 100_000;

fn public_scope() -> Scope {
    Scope { scope_type: "public".into(), scope_id: "0".into() }
}

fn script_dto(s: &ScriptRow, v: &ScriptVersionRow, with_content: bool) -> Value {
    let public = s.scope_type == "public";
    let mut out = json!({});
    if public {
        out = json!({"bk_biz_id": null, "bk_scope_type": null, "bk_scope_id": null});
    } else {
        scope_fields(&mut out, &s.scope_type, &s.scope_id);
    }
    let fields = json!({
        "id": v.id, "name": s.name, "public": public, "version": v.version, "tag": null, "type": s.script_language,
        "creator": v.creator, "create_time": library_time(v.create_time), "last_modify_user": v.last_modify_user,
        "last_modify_time": library_time(v.last_modify_time),
        "content": if with_content { json!(String::from_utf8_lossy(&v.content)) } else { Value::Null },
    });
    if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    out
}

pub async fn list(ctx: &Ctx, params: Value, public_family: bool) -> ApiResult {
    let req: Req = decode(params)?;
    let public = public_family || req.is_public.unwrap_or(false);
    let scope = if public {
        public_scope()
    } else {
        let scope = Scope::resolve(&req.scope).map_err(|_| JobError::missing_or_illegal("bk_biz_id"))?;
        authz::authorize(ctx, &scope, Role::Access).await?;
        scope
    };
    // `script_type` 0 is every language.
    let language = match req.script_type.filter(|t| *t > 0) {
        None => None,
        Some(t) => Some(ScriptLanguage::from_i32(t).ok_or_else(|| JobError::missing_or_illegal("script_type"))? as i32),
    };
    let q = ScriptQuery {
        scope_type: scope.scope_type,
        scope_id: scope.scope_id,
        name: req.script_name.filter(|n| !n.trim().is_empty()),
        language,
        start: 0,
        length: MAX_SCRIPTS,
    };
    let store = &ctx.shared.store;
    let (_, scripts) = store.list_scripts(&q).await.map_err(internal("list scripts"))?;
    let with_content = req.return_script_content.unwrap_or(false);
    let mut rows = Vec::new();
    for s in scripts {
        let Some(online) = s.online_version_id else { continue };
        if let Some(v) = store.get_script_version(online).await.map_err(internal("get script version"))? {
            rows.push(script_dto(&s, &v, with_content));
        }
    }
    Ok(v2_page(rows, req.start, req.length))
}

pub async fn detail(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let id = req.id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("id"))?;
    let scope = Scope::resolve(&req.scope)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let store = &ctx.shared.store;
    let v = store.get_script_version(id).await.map_err(internal("get script version"))?;
    let v = v.ok_or_else(|| JobError::new(ErrorCode::SCRIPT_VERSION_NOT_EXIST))?;
    let s = store.get_script(&v.script_id).await.map_err(internal("get script"))?;
    let in_scope = |s: &ScriptRow| s.scope_type == "public" || (s.scope_type == scope.scope_type && s.scope_id == scope.scope_id);
    let s = s.filter(in_scope).ok_or_else(|| JobError::new(ErrorCode::SCRIPT_VERSION_NOT_EXIST))?;
    Ok(script_dto(&s, &v, true))
}
