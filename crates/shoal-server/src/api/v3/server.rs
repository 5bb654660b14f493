//! A stored target `server` as bk-job answers it (`TaskTargetDTO.toEsbServerV3DTO`): the
//! static hosts always as `ip_list` entries `{bk_host_id, bk_cloud_id, ip}` (callers such as
//! bk-sops read `ip_list`, never `host_id_list`), empty lists as null, and `variable` only
//! when the step targets a host variable.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ServerDto;

use crate::api::{internal, Ctx};
use crate::engine::targets::scope_members;

/// `server` in bk-job's answer form. Hosts outside the scope, or gone from the registry,
/// keep their id and show no address.
pub(crate) async fn esb_server(ctx: &Ctx, scope: &Scope, server: &ServerDto, variable: Option<&str>) -> Result<Value, JobError> {
    let store = ctx.shared.store.as_ref();
    let ids = server.host_id_list.as_deref().unwrap_or_default();
    let hosts: Vec<Value> = if ids.is_empty() {
        let ips = server.ip_list.iter().flatten();
        ips.map(|ip| json!({"bk_host_id": ip.bk_host_id, "bk_cloud_id": ip.bk_cloud_id, "ip": ip.ip})).collect()
    } else {
        let members = scope_members(store, scope).await?;
        let found = store.hosts_by_ids(ids).await.map_err(internal("hosts by ids"))?;
        let by_id: HashMap<i64, _> = found.iter().filter(|h| members.contains(&h.bk_biz_id)).map(|h| (h.bk_host_id, h)).collect();
        ids.iter()
            .map(|id| match by_id.get(id) {
                Some(h) => json!({"bk_host_id": id, "bk_cloud_id": h.bk_cloud_id, "ip": h.ip}),
                None => json!({"bk_host_id": id, "bk_cloud_id": null, "ip": null}),
            })
            .collect()
    };
    let mut out = json!({"ip_list": non_empty(&Some(hosts)), "dynamic_group_list": non_empty(&server.dynamic_group_list),
                         "topo_node_list": non_empty(&server.topo_node_list)});
    if let Some(v) = variable {
        out["variable"] = json!(v);
    }
    Ok(out)
}

fn non_empty<T: Serialize>(list: &Option<Vec<T>>) -> Value {
    match list {
        Some(l) if !l.is_empty() => json!(l),
        _ => Value::Null,
    }
}
