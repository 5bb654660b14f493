//! Authorisation: what an authenticated app may do, per scope.
//!
//! - Admin apps (the bootstrap app, the generated one, apps created with `admin`) may do
//!   everything, including the platform-wide calls (apps, grants, dangerous rules, audit).
//! - Grants are looked up for the call's grantee ([`crate::auth::Caller::grantee`]): the app,
//!   or the user (`user:<name>`) for a user's own call or a gateway relaying a Shoal user.
//! - Other apps hold roles per scope (`app_grants`; scope id `*` = every scope of the type):
//!   `run` (start and operate jobs), `manage` (scripts, templates, plans), `approve`
//!   (approvals) and `admin` (accounts and everything else of the scope; implies the others).
//!   Any role in a scope lets an app read that scope (jobs, logs, accounts, hosts).
//! - Execution accounts are granted per scope by account id (`app_account_grants`, id 0 =
//!   all), resolved from the alias when granted; a scope admin may use every account of its
//!   scope.
//!
//! A denial answers JOB's 9900403 with a `permission` object shaped as JOB's (§1.3), built by
//! [`permission_object`] from the error's arguments when the envelope is rendered. Every
//! denial (9900403, 1244004) is an audit event `denied:<api>` ([`record_denial`]), at most
//! [`DENIALS_PER_MINUTE`] per app and minute; beyond that they are counted, and the count is
//! recorded with the app's next recorded denial.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::ErrorCode;
use shoal_store::trust::{AccountGrant, Grant, ALL_ACCOUNTS};
use shoal_store::AccountRow;

use super::{internal, Ctx};

/// What a call needs in its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read the scope: any role grants it.
    Access,
    /// Start, terminate and retry jobs.
    Run,
    /// Manage scripts, templates and plans.
    Manage,
    /// Approve what waits for approval.
    Approve,
    /// Manage the scope's accounts and everything else in it.
    Admin,
}

impl Role {
    /// The grant name stored for the role (`None` for [`Role::Access`], which is implied).
    pub fn name(self) -> Option<&'static str> {
        match self {
            Role::Access => None,
            Role::Run => Some("run"),
            Role::Manage => Some("manage"),
            Role::Approve => Some("approve"),
            Role::Admin => Some("admin"),
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "run" => Some(Role::Run),
            "manage" => Some(Role::Manage),
            "approve" => Some(Role::Approve),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The action as JOB's permission center names it.
    fn action(self) -> (&'static str, &'static str) {
        match self {
            Role::Access => ("access_business", "业务访问"),
            Role::Run => ("quick_execute_script", "快速执行脚本"),
            Role::Manage => ("manage_job_template", "作业模板管理"),
            Role::Approve => ("approve_job", "作业审批"),
            Role::Admin => ("manage_business", "业务管理"),
        }
    }
}

fn covers(g: &Grant, scope: &Scope) -> bool {
    g.scope_type == scope.scope_type && (g.scope_id == scope.scope_id || g.scope_id == "*")
}

/// The roles the calling app holds in `scope`.
async fn roles_in(ctx: &Ctx, scope: &Scope) -> Result<Vec<Role>, JobError> {
    let grants = ctx.shared.store.list_grants(Some(ctx.caller.grantee())).await.map_err(internal("list grants"))?;
    Ok(grants.iter().filter(|g| covers(g, scope)).filter_map(|g| Role::parse(&g.role)).collect())
}

/// Allow the call when the calling app may act with `role` in `scope`; otherwise 9900403.
pub async fn authorize(ctx: &Ctx, scope: &Scope, role: Role) -> Result<(), JobError> {
    if ctx.caller.is_admin {
        return Ok(());
    }
    let held = roles_in(ctx, scope).await?;
    let ok = match role {
        Role::Access => !held.is_empty(),
        r => held.contains(&r) || held.contains(&Role::Admin),
    };
    if ok {
        return Ok(());
    }
    tracing::info!(app_code = %ctx.caller.app_code, username = %ctx.caller.username, scope_type = %scope.scope_type,
        scope_id = %scope.scope_id, role = ?role, "permission denied");
    Err(denied(ctx, Some(scope), role.action()))
}

/// Platform-wide calls (apps, grants, dangerous rules, audit, agents): admin apps only.
pub fn authorize_platform(ctx: &Ctx) -> Result<(), JobError> {
    if ctx.caller.is_admin {
        return Ok(());
    }
    tracing::info!(app_code = %ctx.caller.app_code, username = %ctx.caller.username, "platform permission denied");
    Err(denied(ctx, None, ("manage_platform", "平台管理")))
}

/// The host registry: one business needs any role in it; every business needs an admin app.
pub async fn authorize_hosts(ctx: &Ctx, bk_biz_id: Option<i64>) -> Result<(), JobError> {
    match bk_biz_id {
        Some(b) => authorize(ctx, &Scope::biz(b), Role::Access).await,
        None => authorize_platform(ctx),
    }
}

fn grants_account(g: &AccountGrant, scope: &Scope, account: &AccountRow) -> bool {
    g.scope_type == scope.scope_type
        && (g.scope_id == scope.scope_id || g.scope_id == "*")
        && (g.account_id == account.id || g.account_id == ALL_ACCOUNTS)
}

/// Whether the calling app may run as `account` in `scope` (1244004 when not). Grants name
/// the account by id: an account deleted and created again under the same alias is a new
/// account, with no grants.
pub async fn authorize_account(ctx: &Ctx, scope: &Scope, account: &AccountRow) -> Result<(), JobError> {
    if ctx.caller.is_admin || roles_in(ctx, scope).await?.contains(&Role::Admin) {
        return Ok(());
    }
    let grants = ctx.shared.store.list_account_grants(Some(ctx.caller.grantee())).await.map_err(internal("list account grants"))?;
    if grants.iter().any(|g| grants_account(g, scope, account)) {
        Ok(())
    } else {
        tracing::info!(app_code = %ctx.caller.app_code, alias = %account.alias, account_id = account.id, "execution account not granted");
        // The message shows the alias; the scope and id ride along for the audit event.
        let args = vec![account.alias.clone(), scope.scope_type.clone(), scope.scope_id.clone(), account.id.to_string()];
        Err(JobError::args(ErrorCode::ACCOUNT_NO_PERMISSION, args))
    }
}

/// Whether the calling app may see `account` in lists (admins and granted accounts).
pub async fn account_visible(ctx: &Ctx, scope: &Scope, accounts: Vec<AccountRow>) -> Result<Vec<AccountRow>, JobError> {
    if ctx.caller.is_admin || roles_in(ctx, scope).await?.contains(&Role::Admin) {
        return Ok(accounts);
    }
    let grants = ctx.shared.store.list_account_grants(Some(ctx.caller.grantee())).await.map_err(internal("list account grants"))?;
    Ok(accounts.into_iter().filter(|a| grants.iter().any(|g| grants_account(g, scope, a))).collect())
}

/// Denial events recorded per app and minute; the rest are counted (a flood of refused calls
/// must not grow the audit trail faster than everything else).
pub const DENIALS_PER_MINUTE: u32 = 30;

/// Per-app budget of denial events, per process.
#[derive(Default)]
pub struct DenialLimiter {
    windows: Mutex<HashMap<String, DenialWindow>>,
}

struct DenialWindow {
    minute: i64,
    recorded: u32,
    suppressed: u64,
}

/// What to do with one denial.
#[derive(Debug, PartialEq, Eq)]
pub enum DenialVerdict {
    /// Record it, with the count of denials only counted since the last recorded one.
    Record { suppressed_before: u64 },
    /// The budget is spent: count it.
    Suppress,
}

impl DenialLimiter {
    pub fn admit(&self, app_code: &str, now_ms: i64) -> DenialVerdict {
        let minute = now_ms.div_euclid(60_000);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 10_000 {
            // Only authenticated apps get here, but keep the map bounded regardless.
            windows.retain(|_, w| w.minute == minute && w.suppressed == 0);
        }
        let w = windows.entry(app_code.to_string()).or_insert(DenialWindow { minute, recorded: 0, suppressed: 0 });
        if w.minute != minute {
            w.minute = minute;
            w.recorded = 0;
        }
        if w.recorded < DENIALS_PER_MINUTE {
            w.recorded += 1;
            DenialVerdict::Record { suppressed_before: std::mem::take(&mut w.suppressed) }
        } else {
            w.suppressed += 1;
            DenialVerdict::Suppress
        }
    }
}

static DENIALS: LazyLock<DenialLimiter> = LazyLock::new(DenialLimiter::default);

/// Record a refused call (`e` a 9900403 or 1244004; other errors are not denials) as the
/// audit event `denied:<api>`, in its own transaction. A failure to record is logged: the
/// caller is refused either way.
pub async fn record_denial(ctx: &Ctx, api: &str, e: &JobError) {
    let arg = |i: usize| e.args.get(i).cloned().unwrap_or_default();
    let (scope_type, scope_id, mut detail) = match e.code {
        ErrorCode::BK_PERMISSION_DENIED => (arg(3), arg(4), json!({"code": e.code.0, "permission": arg(1)})),
        ErrorCode::ACCOUNT_NO_PERMISSION => (arg(1), arg(2), json!({"code": e.code.0, "alias": arg(0), "account_id": arg(3)})),
        _ => return,
    };
    let now = shoal_core::time::now_ms();
    match DENIALS.admit(&ctx.caller.app_code, now) {
        DenialVerdict::Suppress => return,
        DenialVerdict::Record { suppressed_before } if suppressed_before > 0 => {
            detail["suppressed_before"] = json!(suppressed_before);
        }
        DenialVerdict::Record { .. } => {}
    }
    detail["request_id"] = json!(ctx.request_id);
    let event = shoal_store::AuditEvent {
        time: now,
        app_code: ctx.caller.app_code.clone(),
        username: ctx.caller.username.clone(),
        scope_type,
        scope_id,
        action: format!("denied:{api}"),
        resource_id: String::new(),
        detail: detail.to_string(),
    };
    if let Err(err) = ctx.shared.store.audit(&event).await {
        tracing::error!(error = %err, app_code = %ctx.caller.app_code, api, "recording a denied call");
    }
}

/// The 9900403 error; its arguments carry what [`permission_object`] needs:
/// `[username, action id, action name, scope type, scope id]`.
fn denied(ctx: &Ctx, scope: Option<&Scope>, (id, name): (&str, &str)) -> JobError {
    let (ty, sid) = scope.map(|s| (s.scope_type.clone(), s.scope_id.clone())).unwrap_or_default();
    JobError::args(ErrorCode::BK_PERMISSION_DENIED, vec![ctx.caller.username.clone(), id.into(), name.into(), ty, sid])
}

/// JOB's `permission` object for a 9900403 answer; `None` for every other error.
pub fn permission_object(e: &JobError) -> Option<Value> {
    if e.code != ErrorCode::BK_PERMISSION_DENIED || e.args.len() < 5 {
        return None;
    }
    let (action_id, action_name, scope_type, scope_id) = (&e.args[1], &e.args[2], &e.args[3], &e.args[4]);
    let related = if scope_type.is_empty() {
        json!([])
    } else {
        let (ty, ty_name) = if scope_type == "biz_set" { ("business_set", "业务集") } else { ("biz", "业务") };
        json!([{
            "system_id": "bk_cmdb", "system_name": "配置平台", "type": ty, "type_name": ty_name,
            "instances": [[{"id": scope_id, "type": ty, "name": scope_id, "type_name": ty_name}]],
        }])
    };
    Some(json!({
        "system_id": "bk_job", "system_name": "作业平台",
        "actions": [{"id": action_id, "name": action_name, "related_resource_types": related}],
    }))
}

// Running-job quotas (1244034 / 1244032 / 1244033) are taken with the job's creation, in
// its transaction: see `engine::admission` and `shoal_store::admission`.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_object_is_jobs_shape() {
        let e = JobError::args(
            ErrorCode::BK_PERMISSION_DENIED,
            vec!["u".into(), "quick_execute_script".into(), "快速执行脚本".into(), "biz".into(), "2".into()],
        );
        let p = permission_object(&e).unwrap();
        assert_eq!(p["system_id"], "bk_job");
        assert_eq!(p["actions"][0]["id"], "quick_execute_script");
        assert_eq!(p["actions"][0]["related_resource_types"][0]["instances"][0][0]["id"], "2");
        assert_eq!(e.message(shoal_proto::code::Lang::En), "User (u) permission not allowed, please confirm and apply permission in IAM");
        assert!(permission_object(&JobError::internal()).is_none());
    }

    #[test]
    fn denial_events_are_bounded_per_app_and_minute() {
        let l = DenialLimiter::default();
        let t = 1_000 * 60_000;
        for _ in 0..DENIALS_PER_MINUTE {
            assert_eq!(l.admit("a", t), DenialVerdict::Record { suppressed_before: 0 });
        }
        assert_eq!(l.admit("a", t + 1), DenialVerdict::Suppress);
        assert_eq!(l.admit("a", t + 2), DenialVerdict::Suppress);
        assert_eq!(l.admit("b", t + 2), DenialVerdict::Record { suppressed_before: 0 }, "apps have their own budget");
        assert_eq!(l.admit("a", t + 60_000), DenialVerdict::Record { suppressed_before: 2 }, "the next minute reports the count");
        assert_eq!(l.admit("a", t + 60_001), DenialVerdict::Record { suppressed_before: 0 });
    }
}
