//! Target resolution (§2.3): host ids (or, when none, cloud+ip), plus every host under the
//! topology nodes and in the dynamic groups, de-duplicated in order. Hosts must belong to
//! the scope: a business's own hosts, or the hosts of a business set's member businesses (a
//! set that is not defined reaches no host at all).

use std::collections::{HashMap, HashSet};

use shoal_core::selector::{GroupSpec, HostView, LabelSelector};
use shoal_core::{JobError, Scope};
use shoal_proto::jobv3::ServerDto;
use shoal_proto::ErrorCode;
use shoal_store::{HostRow, Store, TargetHost};

fn internal(e: shoal_store::StoreError) -> JobError {
    tracing::error!(error = %e, "resolving targets");
    crate::metrics::note_store_error(Some(&e));
    JobError::internal()
}

/// The businesses whose hosts a scope reaches: a business itself; a business set's members
/// as an admin configured them (none when the set is not defined); nothing for other types.
pub async fn scope_members(store: &dyn Store, scope: &Scope) -> Result<HashSet<i64>, JobError> {
    if let Some(b) = scope.biz_id() {
        return Ok(HashSet::from([b]));
    }
    if scope.scope_type == "biz_set" {
        if let Ok(id) = scope.scope_id.parse::<i64>() {
            if let Some(set) = store.get_biz_set(id).await.map_err(internal)? {
                return Ok(set.members.into_iter().collect());
            }
        }
    }
    Ok(HashSet::new())
}

pub async fn resolve(store: &dyn Store, scope: &Scope, server: &ServerDto, max: usize) -> Result<Vec<TargetHost>, JobError> {
    let members = scope_members(store, scope).await?;
    let biz = scope.biz_id();
    let in_scope = |h: &HostRow| members.contains(&h.bk_biz_id);
    let mut out: Vec<TargetHost> = Vec::new();
    let mut seen: HashSet<i64> = HashSet::new();
    let mut push = |h: &HostRow, out: &mut Vec<TargetHost>| {
        if seen.insert(h.bk_host_id) {
            out.push(TargetHost { bk_host_id: h.bk_host_id, ip: h.ip.clone(), bk_cloud_id: h.bk_cloud_id });
        }
    };

    let ids = server.host_id_list.as_ref().filter(|l| !l.is_empty());
    let ips = server.ip_list.as_ref().filter(|l| !l.is_empty());
    let needs_registry = ids.is_none() && ips.is_some()
        || server.topo_node_list.as_ref().is_some_and(|l| !l.is_empty())
        || server.dynamic_group_list.as_ref().is_some_and(|l| !l.is_empty());
    let mut registry = if needs_registry && !members.is_empty() { store.list_hosts(biz).await.map_err(internal)? } else { vec![] };
    registry.retain(in_scope);

    if let Some(ids) = ids {
        let found = store.hosts_by_ids(ids).await.map_err(internal)?;
        let by_id: HashMap<i64, &HostRow> = found.iter().map(|h| (h.bk_host_id, h)).collect();
        let missing: Vec<String> = ids.iter().filter(|i| !by_id.contains_key(i)).map(|i| i.to_string()).collect();
        if !missing.is_empty() {
            return Err(JobError::with(ErrorCode::HOST_ID_NOT_EXIST, missing.join(",")));
        }
        let foreign: Vec<String> = found.iter().filter(|h| !in_scope(h)).map(|h| h.bk_host_id.to_string()).collect();
        if !foreign.is_empty() {
            return Err(JobError::args(
                ErrorCode::HOST_INVALID,
                vec![scope.scope_id.clone(), foreign.len().to_string(), foreign.join(",")],
            ));
        }
        for id in ids {
            push(by_id[id], &mut out);
        }
    } else if let Some(ips) = ips {
        let by_ip: HashMap<(i64, &str), &HostRow> = registry.iter().map(|h| ((h.bk_cloud_id, h.ip.as_str()), h)).collect();
        let mut missing = vec![];
        for ip in ips {
            let cloud = ip.bk_cloud_id.unwrap_or(0);
            let addr = ip.ip.as_deref().unwrap_or("").trim();
            match by_ip.get(&(cloud, addr)) {
                Some(h) => push(h, &mut out),
                None => missing.push(format!("{cloud}:{addr}")),
            }
        }
        if !missing.is_empty() {
            return Err(JobError::with(ErrorCode::IP_NOT_EXIST, missing.join(",")));
        }
    }

    for node in server.topo_node_list.iter().flatten() {
        let id = node.id.unwrap_or_default();
        let ty = node.node_type.as_deref().unwrap_or("").trim();
        let matches: Box<dyn Fn(&HostRow) -> bool> = match ty {
            "biz" => Box::new(move |h: &HostRow| h.bk_biz_id == id),
            "set" => Box::new(move |h: &HostRow| h.set_id == Some(id)),
            "module" => Box::new(move |h: &HostRow| h.module_id == Some(id)),
            _ => return Err(JobError::illegal("target_server.topo_node_list.node_type")),
        };
        for h in registry.iter().filter(|h| matches(h)) {
            push(h, &mut out);
        }
    }

    for g in server.dynamic_group_list.iter().flatten() {
        let gid = g.id.as_deref().unwrap_or("").trim();
        let not_found =
            || JobError::args(ErrorCode::FAIL_TO_FIND_HOST_BY_DYNAMIC_GROUP, vec![gid.to_string(), "dynamic group not found".into()]);
        let group = store.get_group(&scope.scope_type, &scope.scope_id, gid).await.map_err(internal)?.ok_or_else(not_found)?;
        let spec: GroupSpec = serde_json::from_str(&group.spec).map_err(|_| not_found())?;
        let sel = LabelSelector::parse(&spec.selector)?;
        for h in &registry {
            let view = HostView { set_id: h.set_id, module_id: h.module_id, labels: &h.labels };
            if spec.matches(&sel, &view) {
                push(h, &mut out);
            }
        }
    }

    if out.is_empty() {
        return Err(JobError::new(ErrorCode::SERVER_EMPTY));
    }
    if out.len() > max {
        return Err(JobError::with(ErrorCode::SCRIPT_TASK_TARGET_EXCEEDS_LIMIT, max.to_string()));
    }
    Ok(out)
}
