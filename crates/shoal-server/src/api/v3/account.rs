//! Accounts (§10): `create_account`, `get_account_list`, `delete_account`. An account maps
//! an alias in a scope to the OS user scripts run as.

use serde_json::{json, Value};
use shoal_core::limits::page;
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::{AccountDto, AccountListReq, CreateAccountReq, DeleteAccountReq, Page};
use shoal_proto::ErrorCode;
use shoal_store::{AccountRow, StoreError};

use crate::api::{decode, internal, ApiResult, Ctx};

fn dto(a: AccountRow) -> AccountDto {
    let os = match (a.category, a.account_type) {
        (1, 1) => Some("Linux".to_string()),
        (1, 2) => Some("Windows".to_string()),
        _ => None,
    };
    AccountDto {
        id: a.id,
        bk_scope_type: a.scope_type,
        bk_scope_id: a.scope_id,
        account: a.account,
        alias: a.alias,
        category: a.category,
        account_type: a.account_type,
        os,
        description: a.description,
        db_system_account_id: None,
        creator: a.creator,
        create_time: a.create_time,
        last_modify_user: a.last_modify_user,
        last_modify_time: a.last_modify_time,
    }
}

/// OS user names as `useradd` accepts them.
fn valid_os_user(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b))
}

pub async fn create(ctx: &Ctx, params: Value) -> ApiResult {
    let req: CreateAccountReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Admin).await?;
    let account = req.account.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| JobError::missing("account"))?;
    let account_type = req.account_type.ok_or_else(|| JobError::missing("type"))?;
    if ![1, 2, 9, 10, 11].contains(&account_type) {
        return Err(JobError::illegal("type"));
    }
    let category = req.category.ok_or_else(|| JobError::missing("category"))?;
    if category != 1 {
        return Err(JobError::illegal("category"));
    }
    if account_type == 1 && !valid_os_user(account) {
        return Err(JobError::illegal("account"));
    }
    if account_type == 2 && req.password.as_deref().is_none_or(str::is_empty) {
        return Err(JobError::missing("password"));
    }
    let alias = req.alias.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(account);
    if alias.chars().count() > 255 {
        return Err(JobError::bad_request("alias must be at most 255 characters"));
    }
    if req.description.as_deref().is_some_and(|d| d.chars().count() > 1024) {
        return Err(JobError::bad_request("description must be at most 1024 characters"));
    }
    let now = shoal_core::time::now_ms();
    let row = AccountRow {
        id: 0,
        scope_type: scope.scope_type.clone(),
        scope_id: scope.scope_id.clone(),
        account: account.into(),
        alias: alias.into(),
        category,
        account_type,
        description: req.description.clone(),
        creator: ctx.caller.username.clone(),
        create_time: now,
        last_modify_user: ctx.caller.username.clone(),
        last_modify_time: now,
    };
    let created = match ctx.shared.store.create_account(&row).await {
        Ok(a) => a,
        Err(StoreError::Conflict(_)) => return Err(JobError::new(ErrorCode::ACCOUNT_ALIAS_EXIST)),
        Err(e) => return Err(internal("create account")(e)),
    };
    ctx.audit(&scope, "create_account", created.id, json!({})).await?;
    serde_json::to_value(dto(created)).map_err(internal("encode account"))
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let req: AccountListReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Access).await?;
    let (start, length) = page(req.start, req.length);
    let all = ctx.shared.store.list_accounts(&scope.scope_type, &scope.scope_id).await.map_err(internal("list accounts"))?;
    let all = crate::api::authz::account_visible(ctx, &scope, all).await?;
    let filtered: Vec<AccountRow> = all
        .into_iter()
        .filter(|a| req.category.is_none_or(|c| a.category == c))
        .filter(|a| req.account.as_deref().is_none_or(|n| n.is_empty() || a.account == n))
        .filter(|a| req.alias.as_deref().is_none_or(|n| n.is_empty() || a.alias == n))
        .collect();
    let total = filtered.len() as i64;
    let data = filtered.into_iter().skip(start as usize).take(length as usize).map(dto).collect();
    serde_json::to_value(Page { start, length, total, data }).map_err(internal("encode accounts"))
}

pub async fn delete(ctx: &Ctx, params: Value) -> ApiResult {
    let req: DeleteAccountReq = decode(params)?;
    let scope = Scope::resolve(&req.scope)?;
    crate::api::authz::authorize(ctx, &scope, crate::api::authz::Role::Admin).await?;
    let id = req.id.filter(|i| *i >= 1).ok_or_else(|| JobError::missing_or_illegal("id"))?;
    let store = &ctx.shared.store;
    let found = store.get_account(id).await.map_err(internal("get account"))?;
    let account = found
        .filter(|a| a.scope_type == scope.scope_type && a.scope_id == scope.scope_id)
        .ok_or_else(|| JobError::with(ErrorCode::ACCOUNT_NOT_EXIST, id.to_string()))?;
    store.delete_account(id).await.map_err(internal("delete account"))?;
    ctx.audit(&scope, "delete_account", id, json!({})).await?;
    serde_json::to_value(dto(account)).map_err(internal("encode account"))
}
