//! `get_os_account` (v2): the scope's OS accounts as bk-job's `EsbAccountDTO`
//! (`{id, account, creator, os, alias, create_time, bk_biz_id, bk_scope_type, bk_scope_id}`),
//! without paging.

use serde_json::{json, Value};

use crate::api::authz::{self, Role};
use crate::api::{internal, ApiResult, Ctx};

pub async fn os_accounts(ctx: &Ctx, params: Value) -> ApiResult {
    let scope = super::scope_of(&params)?;
    authz::authorize(ctx, &scope, Role::Access).await?;
    let all = ctx.shared.store.list_accounts(&scope.scope_type, &scope.scope_id).await.map_err(internal("list accounts"))?;
    let visible = authz::account_visible(ctx, &scope, all).await?;
    let out: Vec<Value> = visible
        .into_iter()
        .filter(|a| a.category == 1)
        .map(|a| {
            let os = if a.account_type == 2 { "Windows" } else { "Linux" };
            let mut v = json!({"id": a.id, "account": a.account, "creator": a.creator, "os": os, "alias": a.alias,
                               "create_time": super::library_time(a.create_time)});
            super::scope_fields(&mut v, &a.scope_type, &a.scope_id);
            v
        })
        .collect();
    Ok(json!(out))
}
