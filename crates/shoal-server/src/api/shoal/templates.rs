//! Templates as code, under `/api/shoal/v1/`:
//! - `POST templates/apply {bk_scope_type, bk_scope_id, document, summary?}`: create or change a
//!   template from its document (plans included); every change is a new version with a change
//!   record and an audit event. Everything a version holds — steps, variables and values,
//!   plans and their values, the approval setting — is one document, so when the approval
//!   *in force* (the current approved version's) is on, any change waits as `pending`.
//! - `POST templates/diff {…, document}`: what `apply` would change, without changing it.
//! - `GET templates`, `GET templates/export {…, name, version?}`, `GET templates/history {…, name}`,
//!   `GET templates/version_diff {…, name, from, to}`, `POST templates/rollback {…, name, version}`,
//!   `POST templates/delete {…, name}`.
//! - `GET approvals`, `POST approvals/approve|reject {…, name, version, comment}`: the author of a
//!   change cannot approve it.
//!
//! Secrets (password values, plan values of password variables, parameters of sensitive
//! steps) are sealed bound to their scope, template and place ([`secret_aad`]) and never
//! returned: answers show `******`, which `apply` takes back as "keep the stored value".
//! A library script step is pinned to the version online when it was applied, and a file
//! step's uploaded file to the content it held then.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::template::{changes, Change, PinnedUpload, Plan, Template, KEEP};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::{lenient, ErrorCode};
use shoal_store::library::{PlanRow, TemplateChange, TemplateRow, TemplateVersionRow};
use shoal_store::StoreError;

use crate::api::envelope::{method_not_allowed, not_found};
use crate::api::{decode, internal, ApiResult, Ctx};
use crate::secrets::{self, Key};

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

/// Authenticated data of the secret at `path` of template `name` in `scope`: a sealed value
/// opens only in the same place of the same template of the same scope.
pub(crate) fn secret_aad(scope_type: &str, scope_id: &str, name: &str, path: &str) -> Vec<u8> {
    secrets::aad(&["template", scope_type, scope_id, name, path])
}

/// A stored version's document, secrets sealed as stored. Versions written before plans
/// were part of the document get the plan rows' specs.
pub(crate) async fn stored_doc(ctx: &Ctx, t: &TemplateRow, v: &TemplateVersionRow) -> Result<Template, JobError> {
    let mut doc: Template = serde_json::from_str(&v.spec).map_err(internal("decode template"))?;
    if doc.plans.is_empty() {
        let rows = ctx.shared.store.list_plans(&t.scope_type, &t.scope_id, Some(t.id)).await.map_err(internal("list plans"))?;
        doc.plans = rows.iter().filter_map(|p| serde_json::from_str(&p.spec).ok()).collect();
    }
    Ok(doc)
}

/// Open every secret of a stored document in place (a value that does not open is an error:
/// it was not sealed for this place).
pub(crate) fn open_secrets(doc: &mut Template, t: &TemplateRow, key: &Key) -> Result<(), JobError> {
    for (path, slot) in doc.secrets_mut() {
        *slot = key.open(slot, &secret_aad(&t.scope_type, &t.scope_id, &t.name, &path)).map_err(|e| {
            tracing::error!(template_id = t.id, path = %path, error = %e, "a stored secret does not open");
            JobError::new(ErrorCode::EXECUTE_TASK_PLAN_ILLEGAL)
        })?;
    }
    Ok(())
}

/// Seal the secrets of a caller's document for template `name` of `scope`: `******` keeps
/// the value `prev` holds at the same place, a sealed value must be one sealed for exactly
/// this place (anything else is refused, never opened), and any other value is sealed anew.
fn seal_input(doc: &mut Template, prev: Option<&Template>, scope: &Scope, key: &Key) -> Result<(), JobError> {
    let prev = prev.map(Template::secrets).unwrap_or_default();
    let name = doc.name.clone();
    for (path, slot) in doc.secrets_mut() {
        let aad = secret_aad(&scope.scope_type, &scope.scope_id, &name, &path);
        if slot.is_empty() {
            continue;
        }
        if slot == KEEP {
            let kept = prev.get(&path).filter(|v| !v.is_empty());
            let kept = kept.ok_or_else(|| reason(&path, "`******` keeps the stored value, but nothing is stored here: give the value"))?;
            // A value stored in clear before secrets were sealed is sealed now.
            *slot = if secrets::is_sealed(kept) { kept.clone() } else { key.seal(kept, &aad).map_err(internal("seal secret"))? };
        } else if secrets::is_sealed(slot) {
            key.open_input(slot, &aad)
                .map_err(|e| reason(&path, &format!("{e}: give the value in clear, or `******` to keep the stored one")))?;
        } else {
            *slot = key.seal(slot, &aad).map_err(internal("seal secret"))?;
        }
    }
    Ok(())
}

/// Pin every library-script step to the script's online version (what an approver sees
/// is what runs); a pin sent by the caller is replaced.
async fn pin_scripts(ctx: &Ctx, scope: &Scope, doc: &mut Template) -> Result<(), JobError> {
    for s in doc.steps.iter_mut() {
        let Some(sc) = s.script.as_mut() else { continue };
        sc.pinned_version_id = None;
        if let (Some(id), None) = (sc.script_id.as_deref(), sc.script_version_id) {
            let (_, v) = crate::api::v3::script::executable(ctx, scope, Some(id), None).await?;
            sc.pinned_version_id = Some(v.id);
        }
    }
    Ok(())
}

/// Pin every uploaded file of a file step to the content its upload holds now (an upload
/// of another scope, or one nothing was uploaded to, is refused); a pin sent by the caller is
/// replaced.
async fn pin_uploads(ctx: &Ctx, scope: &Scope, doc: &mut Template) -> Result<(), JobError> {
    for s in doc.steps.iter_mut() {
        let Some(f) = s.file.as_mut() else { continue };
        for (i, src) in f.sources.iter_mut().enumerate() {
            src.pinned = None;
            if let Some(code) = src.file_source.as_deref().map(str::trim) {
                let found = ctx.shared.store.file_source_by_code(&scope.scope_type, &scope.scope_id, code).await;
                if found.map_err(internal("get file source"))?.is_none() {
                    return Err(reason(&format!("steps.file.sources[{i}].file_source"), &format!("no file source {code:?} in this scope")));
                }
                continue;
            }
            let Some(path) = src.upload.as_deref().map(str::trim) else { continue };
            let field = format!("steps.file.sources[{i}].upload");
            let slot = ctx.shared.store.upload_by_path(path).await.map_err(internal("get upload"))?;
            let slot = slot
                .filter(|u| u.scope_type == scope.scope_type && u.scope_id == scope.scope_id)
                .ok_or_else(|| reason(&field, &format!("{path} was not uploaded")))?;
            let (Some(sha256), Some(size)) = (slot.blob, slot.size) else {
                return Err(reason(&field, &format!("nothing was uploaded to {path}")));
            };
            src.pinned = Some(PinnedUpload { sha256, size: size as u64, name: slot.file_name });
        }
    }
    Ok(())
}

/// Whether a change of `t` must wait for approval: the approval setting in force is the
/// current approved version's, never that of a pending or rejected one. A template with
/// no approved version yet was created needing approval.
async fn approval_in_force(ctx: &Ctx, t: &TemplateRow) -> Result<bool, JobError> {
    if t.needs_approval || t.current_version == 0 {
        return Ok(true);
    }
    let current = version_of(ctx, t, t.current_version).await?;
    let doc: Value = serde_json::from_str(&current.spec).map_err(internal("decode template"))?;
    Ok(doc["needs_approval"].as_bool().unwrap_or(false))
}

/// Stored version documents as callers see them: secrets masked, including in change lists
/// written before sensitive parameters were sealed.
fn scrub(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("sensitive") == Some(&Value::Bool(true)) {
                if let Some(p) = m.get_mut("param").filter(|p| p.as_str().is_some_and(|s| !s.is_empty())) {
                    *p = Value::String(KEEP.into());
                }
            }
            m.values_mut().for_each(scrub);
        }
        Value::Array(a) => a.iter_mut().for_each(scrub),
        _ => {}
    }
}

fn template_json(t: &TemplateRow) -> Value {
    json!({"id": t.id, "name": t.name, "description": t.description, "needs_approval": t.needs_approval,
           "current_version": t.current_version, "latest_version": t.latest_version, "creator": t.creator,
           "create_time": t.create_time, "last_modify_user": t.last_modify_user, "last_modify_time": t.last_modify_time})
}

fn version_json(v: &TemplateVersionRow) -> Value {
    let mut changes = serde_json::from_str::<Value>(&v.diff).unwrap_or(json!([]));
    // Old change lists may name a sensitive step's parameter by path.
    let sensitive: Vec<String> = serde_json::from_str::<Template>(&v.spec)
        .map(|d| d.steps.iter().filter(|s| s.script.as_ref().is_some_and(|sc| sc.sensitive)).map(|s| s.name.clone()).collect())
        .unwrap_or_default();
    for c in changes.as_array_mut().into_iter().flatten() {
        let path = c["path"].as_str().unwrap_or_default().to_string();
        if sensitive.iter().any(|n| path == format!("steps[{n}].script.param")) {
            for side in ["before", "after"] {
                if c[side].as_str().is_some_and(|s| !s.is_empty()) {
                    c[side] = json!(KEEP);
                }
            }
        }
    }
    scrub(&mut changes);
    json!({"version": v.version, "state": v.state, "author": v.author, "created_at": v.created_at, "summary": v.summary,
           "changes": changes, "reviewer": v.reviewer, "review_comment": v.review_comment, "reviewed_at": v.reviewed_at})
}

async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let rows = ctx.shared.store.list_templates(&scope.scope_type, &scope.scope_id).await.map_err(internal("list templates"))?;
    Ok(json!({"total": rows.len(), "data": rows.iter().map(template_json).collect::<Vec<_>>()}))
}

/// Save `doc` (secrets sealed, plans filled in) as the next version of `existing` (or as a
/// new template), current at once or pending when approval is in force, with its plan rows
/// and its audit event in one transaction.
async fn save_version(
    ctx: &Ctx,
    scope: &Scope,
    existing: Option<&TemplateRow>,
    doc: &Template,
    changes: &[Change],
    summary: String,
    action: &str,
) -> Result<Value, JobError> {
    let user = ctx.caller.username.clone();
    let now = shoal_core::time::now_ms();
    let make_current = match existing {
        None => !doc.needs_approval,
        Some(t) => !approval_in_force(ctx, t).await?,
    };
    let state = if make_current { "current" } else { "pending" };
    let version = existing.map_or(1, |t| t.latest_version + 1);
    let template = match existing {
        Some(t) => TemplateRow { description: doc.description.clone(), needs_approval: doc.needs_approval, ..t.clone() },
        None => TemplateRow {
            id: 0,
            scope_type: scope.scope_type.clone(),
            scope_id: scope.scope_id.clone(),
            name: doc.name.clone(),
            description: doc.description.clone(),
            needs_approval: doc.needs_approval,
            current_version: 0,
            latest_version: 0,
            creator: user.clone(),
            create_time: now,
            last_modify_user: user.clone(),
            last_modify_time: now,
        },
    };
    let mut plans = Vec::with_capacity(doc.plans.len());
    for p in &doc.plans {
        plans.push(PlanRow {
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
        });
    }
    let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    let change = TemplateChange {
        template,
        version: TemplateVersionRow {
            template_id: existing.map_or(0, |t| t.id),
            version,
            spec: serde_json::to_string(doc).map_err(internal("encode template"))?,
            state: state.into(),
            author: user,
            created_at: now,
            summary: summary.clone(),
            diff: serde_json::to_string(changes).map_err(internal("encode diff"))?,
            reviewer: None,
            review_comment: None,
            reviewed_at: None,
        },
        make_current,
        plans,
        audit: ctx.audit_event(scope, action, "", json!({"version": version, "state": state, "summary": summary, "changed": paths})),
    };
    let (id, plan_ids) = match ctx.shared.store.save_template_change(&change).await {
        Ok(ids) => ids,
        Err(StoreError::Conflict("template name")) => return Err(reason("name", "a template with this name exists")),
        Err(StoreError::Conflict(_)) => return Err(reason("document", "the template was changed meanwhile: apply again")),
        Err(e) => return Err(internal("save template change")(e)),
    };
    let plans: Vec<Value> = plan_ids.iter().zip(&doc.plans).map(|(id, p)| json!({"id": id, "name": p.name})).collect();
    Ok(
        json!({"template_id": id, "name": doc.name, "version": version, "state": state, "changed": true, "changes": changes, "plans": plans}),
    )
}

async fn apply(ctx: &Ctx, params: Value, dry_run: bool) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let raw = req.document.clone().ok_or_else(|| JobError::missing("document"))?;
    let mut doc: Template =
        serde_path_to_error::deserialize(raw).map_err(|e| JobError::bad_request(format!("document.{}: {}", e.path(), e.inner())))?;
    doc.validate()?;
    let key = &ctx.shared.config.sealing_key;
    let store = &ctx.shared.store;
    let existing = store.get_template_by_name(&scope.scope_type, &scope.scope_id, &doc.name).await.map_err(internal("get template"))?;
    let latest = match &existing {
        Some(t) => Some(stored_doc(ctx, t, &version_of(ctx, t, t.latest_version).await?).await?),
        None => None,
    };
    doc.assign_variable_ids(latest.as_ref());
    pin_scripts(ctx, &scope, &mut doc).await?;
    pin_uploads(ctx, &scope, &mut doc).await?;
    seal_input(&mut doc, latest.as_ref(), &scope, key)?;
    // Plans: as listed in the document; without any, the latest version's, or `default`.
    if doc.plans.is_empty() {
        doc.plans = latest.as_ref().map(|l| l.plans.clone()).unwrap_or_default();
        if doc.plans.is_empty() {
            doc.plans.push(Plan { name: "default".into(), ..Default::default() });
        }
        doc.validate()?;
    }
    let changes = changes(latest.as_ref(), &doc);
    if dry_run {
        return Ok(json!({"name": doc.name, "exists": existing.is_some(), "changed": !changes.is_empty(), "changes": changes}));
    }
    let summary = req.summary.clone().unwrap_or_else(|| if existing.is_some() { "update".into() } else { "create".into() });
    match &existing {
        Some(t) if changes.is_empty() => {
            let state = version_of(ctx, t, t.latest_version).await?.state;
            let rows = store.list_plans(&scope.scope_type, &scope.scope_id, Some(t.id)).await.map_err(internal("list plans"))?;
            let plans: Vec<Value> = doc
                .plans
                .iter()
                .filter_map(|p| rows.iter().find(|r| r.name == p.name))
                .map(|r| json!({"id": r.id, "name": r.name}))
                .collect();
            Ok(json!({"template_id": t.id, "name": t.name, "version": t.latest_version, "state": state,
                      "changed": false, "changes": changes, "plans": plans}))
        }
        _ => save_version(ctx, &scope, existing.as_ref(), &doc, &changes, summary, "apply_template").await,
    }
}

async fn export(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let v = version_of(ctx, &t, req.version.unwrap_or(t.current_version.max(if t.current_version == 0 { t.latest_version } else { 0 })))
        .await?;
    let doc = stored_doc(ctx, &t, &v).await?.masked();
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
    let (a, b) = (stored_doc(ctx, &t, &from).await?, stored_doc(ctx, &t, &to).await?);
    Ok(json!({"from": from.version, "to": to.version, "changes": changes(Some(&a), &b)}))
}

async fn rollback(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let target = version_of(ctx, &t, req.version.ok_or_else(|| JobError::missing("version"))?).await?;
    if target.state == "pending" || target.state == "rejected" {
        return Err(reason("version", "only a version that was approved can be restored"));
    }
    let latest = stored_doc(ctx, &t, &version_of(ctx, &t, t.latest_version).await?).await?;
    // The restored version's own document: its steps, pins, plans and sealed values.
    let mut doc = stored_doc(ctx, &t, &target).await?;
    // Ids given out since stay given out: a variable added later never hands its id on.
    doc.assign_variable_ids(Some(&latest));
    let changes = changes(Some(&latest), &doc);
    let summary = req.summary.clone().unwrap_or_else(|| format!("rollback to v{}", target.version));
    let mut out = save_version(ctx, &scope, Some(&t), &doc, &changes, summary, "rollback_template").await?;
    out["restored"] = json!(target.version);
    Ok(out)
}

async fn delete(ctx: &Ctx, params: Value) -> ApiResult {
    let req: Req = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    let t = template_of(ctx, &scope, &req).await?;
    let audit = ctx.audit_event(&scope, "delete_template", t.id, json!({"name": t.name}));
    ctx.shared.store.delete_template(t.id, &audit).await.map_err(internal("delete template"))?;
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
    let action = if approve { "approve_template_version" } else { "reject_template_version" };
    let audit = ctx.audit_event(&scope, action, t.id, json!({"version": v.version, "comment": comment}));
    match ctx.shared.store.review_template_version(t.id, v.version, approve, &ctx.caller.username, &comment, now, &audit).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(reason("version", "this version is not waiting for approval")),
        Err(e) => return Err(internal("review")(e)),
    }
    Ok(json!({"template_id": t.id, "version": v.version, "state": if approve { "current" } else { "rejected" }}))
}
