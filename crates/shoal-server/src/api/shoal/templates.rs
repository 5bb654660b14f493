//! Templates as code, under `/api/shoal/v1/`:
//! - `POST templates/apply {bk_scope_type, bk_scope_id, document, summary?}`: create or change a
//!   template from its document (plans included); every change is a new version with a change
//!   record; templates needing approval get a pending version instead.
//! - `POST templates/diff {…, document}`: what `apply` would change, without changing it.
//! - `GET templates`, `GET templates/export {…, name, version?}`, `GET templates/history {…, name}`,
//!   `GET templates/version_diff {…, name, from, to}`, `POST templates/rollback {…, name, version}`,
//!   `POST templates/delete {…, name}`.
//! - `GET approvals`, `POST approvals/approve|reject {…, name, version, comment}`: the author of a
//!   change cannot approve it.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::template::{diff, Change, Plan, Template, VarType};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::{lenient, ErrorCode};
use shoal_store::library::{PlanRow, TemplateRow, TemplateVersionRow};
use shoal_store::StoreError;

use crate::api::envelope::{method_not_allowed, not_found};
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::secrets::Key;

#[derive(Deserialize, Default)]
struct Req {
    #[serde(flatten)]
    scope: ScopeReq,
    #[serde(default)]
    document: Option<Value>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    summary: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    version: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    from: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    to: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    comment: Option<String>,
}

pub async fn call(ctx: &Ctx, method: &Method, path: &str, params: Value) -> ApiResult {
    use crate::api::authz::{self, Role};
    let get = *method == Method::GET;
    let role = match path {
        "approvals/approve" | "approvals/reject" => Role::Approve,
        "templates/apply" | "templates/rollback" | "templates/delete" if !get => Role::Manage,
        _ => Role::Access,
    };
    let scope: ScopeReq = decode(params.clone())?;
    authz::authorize(ctx, &Scope::resolve(&scope)?, role).await?;
    match (path, get) {
        ("templates", true) => list(ctx, params).await,
        ("templates/apply", false) => apply(ctx, params, false).await,
        ("templates/diff", false) => apply(ctx, params, true).await,
        ("templates/export", _) => export(ctx, params).await,
        ("templates/history", _) => history(ctx, params).await,
        ("templates/version_diff", _) => version_diff(ctx, params).await,
        ("templates/rollback", false) => rollback(ctx, params).await,
        ("templates/delete", false) => delete(ctx, params).await,
        ("approvals", true) => pending(ctx, params).await,
        ("approvals/approve", false) => review(ctx, params, true).await,
        ("approvals/reject", false) => review(ctx, params, false).await,
        (
            "templates" | "templates/apply" | "templates/diff" | "templates/rollback" | "templates/delete" | "approvals"
            | "approvals/approve" | "approvals/reject",
            _,
        ) => Err(method_not_allowed()),
        (other, _) => Err(not_found(other)),
    }
}

fn reason(field: &str, why: &str) -> JobError {
    JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.into(), why.into()])
}

async fn template_of(ctx: &Ctx, scope: &Scope, req: &Req) -> Result<TemplateRow, JobError> {
    let store = &ctx.shared.store;
    let t = match (req.id, req.name.as_deref()) {
        (Some(id), _) => store.get_template(id).await.map_err(internal("get template"))?,
        (None, Some(n)) => store.get_template_by_name(&scope.scope_type, &scope.scope_id, n).await.map_err(internal("get template"))?,
        (None, None) => return Err(JobError::missing("name")),
    };
    t.filter(|t| t.scope_type == scope.scope_type && t.scope_id == scope.scope_id).ok_or_else(|| reason("name", "no such template"))
}

async fn version_of(ctx: &Ctx, t: &TemplateRow, v: i64) -> Result<TemplateVersionRow, JobError> {
    let row = ctx.shared.store.get_template_version(t.id, v).await.map_err(internal("get template version"))?;
    row.ok_or_else(|| reason("version", "no such version"))
}

/// Password values at rest are sealed: template defaults and plan values alike.
pub(crate) fn seal_passwords(doc: &mut Template, key: &Key) -> Result<(), JobError> {
    let names: Vec<String> = doc.variables.iter().filter(|v| v.var_type == VarType::Password).map(|v| v.name.clone()).collect();
    let seal = |s: &str| if s.is_empty() || s.starts_with("shoal-sealed:") { Ok(s.to_string()) } else { key.seal(s) };
    for v in doc.variables.iter_mut().filter(|v| v.var_type == VarType::Password) {
        v.value = seal(&v.value).map_err(internal("seal password"))?;
    }
    for p in &mut doc.plans {
        for (k, v) in p.variables.iter_mut() {
            if let (true, Value::String(s)) = (names.contains(k), &*v) {
                *v = Value::String(seal(s).map_err(internal("seal password"))?);
            }
        }
    }
    Ok(())
}

/// The document with password values opened (a value that is not sealed stays as it is).
pub(crate) fn open_passwords(doc: &mut Template, key: &Key) {
    let open = |s: &str| key.open_all(&[s.to_string()]).remove(0);
    let names: Vec<String> = doc.variables.iter().filter(|v| v.var_type == VarType::Password).map(|v| v.name.clone()).collect();
    for v in doc.variables.iter_mut().filter(|v| v.var_type == VarType::Password) {
        v.value = open(&v.value);
    }
    for p in &mut doc.plans {
        for (k, v) in p.variables.iter_mut() {
            if let (true, Value::String(s)) = (names.contains(k), &*v) {
                *v = Value::String(open(s));
            }
        }
    }
}

fn masked(doc: &Template) -> Value {
    let mut d = doc.without_plans();
    for v in d.variables.iter_mut().filter(|v| v.var_type == VarType::Password && !v.value.is_empty()) {
        v.value = "******".into();
    }
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// Changes between two opened documents, password values masked but their changes kept.
pub(crate) fn changes(before: Option<&Template>, after: &Template) -> Vec<Change> {
    let Some(before) = before else { return diff(&json!({}), &masked(after)) };
    let mut out = diff(&masked(before), &masked(after));
    for v in after.variables.iter().filter(|v| v.var_type == VarType::Password) {
        let old = before.variables.iter().find(|b| b.name == v.name && b.var_type == VarType::Password);
        if old.is_some_and(|o| o.value != v.value && !(o.value.is_empty() || v.value.is_empty())) {
            let m = Value::String("******".into());
            out.push(Change { path: format!("variables[{}].value", v.name), before: Some(m.clone()), after: Some(m) });
        }
    }
    out
}

/// A stored version's document, passwords opened.
pub(crate) fn opened(v: &TemplateVersionRow, key: &Key) -> Result<Template, JobError> {
    let mut doc: Template = serde_json::from_str(&v.spec).map_err(internal("decode template"))?;
    open_passwords(&mut doc, key);
    Ok(doc)
}

fn template_json(t: &TemplateRow) -> Value {
    json!({"id": t.id, "name": t.name, "description": t.description, "needs_approval": t.needs_approval,
           "current_version": t.current_version, "latest_version": t.latest_version, "creator": t.creator,
           "create_time": t.create_time, "last_modify_user": t.last_modify_user, "last_modify_time": t.last_modify_time})
}

fn version_json(v: &TemplateVersionRow) -> Value {
    json!({"version": v.version, "state": v.state, "author": v.author, "created_at": v.created_at, "summary": v.summary,
           "changes": serde_json::from_str::<Value>(&v.diff).unwrap_or(json!([])), "reviewer": v.reviewer,
           "review_comment": v.review_comment, "reviewed_at": v.reviewed_at})
}

async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let rows = ctx.shared.store.list_templates(&scope.scope_type, &scope.scope_id).await.map_err(internal("list templates"))?;
    Ok(json!({"total": rows.len(), "data": rows.iter().map(template_json).collect::<Vec<_>>()}))
}

/// Store a new version of `t` holding `doc` (passwords opened), current at once or pending
/// approval.
async fn new_version(ctx: &Ctx, t: &TemplateRow, doc: &Template, summary: String) -> Result<TemplateVersionRow, JobError> {
    let store = &ctx.shared.store;
    let key = &ctx.shared.config.sealing_key;
    let before = match store.get_template_version(t.id, t.current_version).await.map_err(internal("get version"))? {
        Some(v) => Some(opened(&v, key)?),
        None => None,
    };
    let mut sealed = doc.without_plans();
    seal_passwords(&mut sealed, key)?;
    let make_current = !t.needs_approval;
    let v = TemplateVersionRow {
        template_id: t.id,
        version: t.latest_version + 1,
        spec: serde_json::to_string(&sealed).map_err(internal("encode template"))?,
        state: if make_current { "current" } else { "pending" }.into(),
        author: ctx.caller.username.clone(),
        created_at: shoal_core::time::now_ms(),
        summary,
        diff: serde_json::to_string(&changes(before.as_ref(), doc)).map_err(internal("encode diff"))?,
        reviewer: None,
        review_comment: None,
        reviewed_at: None,
    };
    store.add_template_version(&v, make_current, &doc.description, doc.needs_approval).await.map_err(internal("add version"))?;
    Ok(v)
}

async fn apply(ctx: &Ctx, params: Value, dry_run: bool) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let raw = req.document.clone().ok_or_else(|| JobError::missing("document"))?;
    let mut doc: Template =
        serde_path_to_error::deserialize(raw).map_err(|e| JobError::bad_request(format!("document.{}: {}", e.path(), e.inner())))?;
    let key = &ctx.shared.config.sealing_key;
    // An exported document carries sealed passwords: open them to compare and to store anew.
    open_passwords(&mut doc, key);
    doc.validate()?;
    let store = &ctx.shared.store;
    let existing = store.get_template_by_name(&scope.scope_type, &scope.scope_id, &doc.name).await.map_err(internal("get template"))?;
    let latest = match &existing {
        Some(t) => match store.get_template_version(t.id, t.latest_version).await.map_err(internal("get version"))? {
            Some(v) => Some(opened(&v, key)?),
            None => None,
        },
        None => None,
    };
    let changes = changes(latest.as_ref(), &doc);
    if dry_run {
        return Ok(json!({"name": doc.name, "exists": existing.is_some(), "changed": !changes.is_empty(), "changes": changes}));
    }
    let summary = req.summary.clone().unwrap_or_else(|| if existing.is_some() { "update".into() } else { "create".into() });
    let user = ctx.caller.username.clone();
    let now = shoal_core::time::now_ms();
    let (template, version, state) = match existing {
        None => {
            let pending = doc.needs_approval;
            let t = TemplateRow {
                id: 0,
                scope_type: scope.scope_type.clone(),
                scope_id: scope.scope_id.clone(),
                name: doc.name.clone(),
                description: doc.description.clone(),
                needs_approval: doc.needs_approval,
                current_version: if pending { 0 } else { 1 },
                latest_version: 1,
                creator: user.clone(),
                create_time: now,
                last_modify_user: user.clone(),
                last_modify_time: now,
            };
            let mut sealed = doc.without_plans();
            seal_passwords(&mut sealed, key)?;
            let v = TemplateVersionRow {
                template_id: 0,
                version: 1,
                spec: serde_json::to_string(&sealed).map_err(internal("encode template"))?,
                state: if pending { "pending" } else { "current" }.into(),
                author: user.clone(),
                created_at: now,
                summary: summary.clone(),
                diff: serde_json::to_string(&changes).map_err(internal("encode diff"))?,
                reviewer: None,
                review_comment: None,
                reviewed_at: None,
            };
            let id = match store.create_template(&t, &v).await {
                Ok(id) => id,
                Err(StoreError::Conflict(_)) => return Err(reason("name", "a template with this name exists")),
                Err(e) => return Err(internal("create template")(e)),
            };
            (TemplateRow { id, ..t }, 1, v.state)
        }
        Some(t) if changes.is_empty() => {
            let state = store
                .get_template_version(t.id, t.latest_version)
                .await
                .map_err(internal("get version"))?
                .map(|v| v.state)
                .unwrap_or_default();
            (t.clone(), t.latest_version, state)
        }
        Some(t) => {
            let v = new_version(ctx, &t, &doc, summary.clone()).await?;
            (t, v.version, v.state)
        }
    };
    // Plans: as listed in the document; a template without any gets a `default` plan.
    let mut sealed_plans = doc.clone();
    seal_passwords(&mut sealed_plans, key)?;
    let mut plans = sealed_plans.plans;
    let known = store.list_plans(&scope.scope_type, &scope.scope_id, Some(template.id)).await.map_err(internal("list plans"))?;
    if plans.is_empty() && known.is_empty() {
        plans.push(Plan { name: "default".into(), ..Default::default() });
    }
    let mut plan_out = vec![];
    for p in &plans {
        let row = PlanRow {
            id: 0,
            template_id: template.id,
            scope_type: scope.scope_type.clone(),
            scope_id: scope.scope_id.clone(),
            name: p.name.clone(),
            synced_version: version,
            spec: serde_json::to_string(p).map_err(internal("encode plan"))?,
            creator: user.clone(),
            create_time: now,
            last_modify_user: user.clone(),
            last_modify_time: now,
        };
        let id = store.put_plan(&row).await.map_err(internal("put plan"))?;
        plan_out.push(json!({"id": id, "name": p.name}));
    }
    if !changes.is_empty() {
        ctx.audit(&scope, "apply_template", template.id.to_string(), json!({"version": version, "state": state, "summary": summary}))
            .await?;
    }
    Ok(json!({"template_id": template.id, "name": template.name, "version": version, "state": state,
              "changed": !changes.is_empty(), "changes": changes, "plans": plan_out}))
}

async fn export(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let v = version_of(ctx, &t, req.version.unwrap_or(t.current_version.max(if t.current_version == 0 { t.latest_version } else { 0 })))
        .await?;
    let mut doc: Template = serde_json::from_str(&v.spec).map_err(internal("decode template"))?;
    let plans = ctx.shared.store.list_plans(&scope.scope_type, &scope.scope_id, Some(t.id)).await.map_err(internal("list plans"))?;
    doc.plans = plans.iter().filter_map(|p| serde_json::from_str(&p.spec).ok()).collect();
    Ok(json!({"version": v.version, "state": v.state, "document": doc}))
}

async fn history(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let versions = ctx.shared.store.list_template_versions(t.id).await.map_err(internal("list versions"))?;
    Ok(json!({"template": template_json(&t), "versions": versions.iter().map(version_json).collect::<Vec<_>>()}))
}

async fn version_diff(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let from = version_of(ctx, &t, req.from.ok_or_else(|| JobError::missing("from"))?).await?;
    let to = version_of(ctx, &t, req.to.ok_or_else(|| JobError::missing("to"))?).await?;
    let key = &ctx.shared.config.sealing_key;
    Ok(json!({"from": from.version, "to": to.version, "changes": changes(Some(&opened(&from, key)?), &opened(&to, key)?)}))
}

async fn rollback(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let target = version_of(ctx, &t, req.version.ok_or_else(|| JobError::missing("version"))?).await?;
    if target.state == "pending" || target.state == "rejected" {
        return Err(reason("version", "only a version that was approved can be restored"));
    }
    let doc = opened(&target, &ctx.shared.config.sealing_key)?;
    let summary = req.summary.clone().unwrap_or_else(|| format!("rollback to v{}", target.version));
    let v = new_version(ctx, &t, &doc, summary).await?;
    ctx.audit(&scope, "rollback_template", t.id.to_string(), json!({"to": target.version, "version": v.version})).await?;
    Ok(json!({"template_id": t.id, "version": v.version, "state": v.state, "restored": target.version}))
}

async fn delete(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    ctx.shared.store.delete_template(t.id).await.map_err(internal("delete template"))?;
    ctx.audit(&scope, "delete_template", t.id.to_string(), json!({"name": t.name})).await?;
    Ok(json!({"id": t.id}))
}

async fn pending(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let store = &ctx.shared.store;
    let rows = store.pending_template_versions(&scope.scope_type, &scope.scope_id).await.map_err(internal("pending versions"))?;
    let mut out = vec![];
    for v in &rows {
        let name = store.get_template(v.template_id).await.map_err(internal("get template"))?.map(|t| t.name).unwrap_or_default();
        let mut j = version_json(v);
        j["template_id"] = json!(v.template_id);
        j["template"] = json!(name);
        out.push(j);
    }
    Ok(json!({"total": out.len(), "data": out}))
}

async fn review(ctx: &Ctx, params: Value, approve: bool) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let v = version_of(ctx, &t, req.version.ok_or_else(|| JobError::missing("version"))?).await?;
    if v.state != "pending" {
        return Err(reason("version", "this version is not waiting for approval"));
    }
    // `username` names the authenticated principal (an app acting as itself is `app:<code>`,
    // whatever bk_username it sends), so an author has no other name to approve under.
    if v.author == ctx.caller.username {
        return Err(reason("approver", "the author of a change cannot approve or reject it"));
    }
    let comment = req.comment.clone().unwrap_or_default();
    let now = shoal_core::time::now_ms();
    match ctx.shared.store.review_template_version(t.id, v.version, approve, &ctx.caller.username, &comment, now).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(reason("version", "this version is not waiting for approval")),
        Err(e) => return Err(internal("review")(e)),
    }
    let action = if approve { "approve_template_version" } else { "reject_template_version" };
    ctx.audit(&scope, action, t.id.to_string(), json!({"version": v.version, "comment": comment})).await?;
    Ok(json!({"template_id": t.id, "version": v.version, "state": if approve { "current" } else { "rejected" }}))
}
