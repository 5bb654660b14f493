//! The script library through the JOB v3 API, and running library scripts.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

on_both_stores!(scripts_follow_job_version_rules, public_scripts);

fn scope() -> Value {
    json!({"bk_scope_type": "biz", "bk_scope_id": "1"})
}

fn with(base: Value, extra: Value) -> Value {
    let mut b = base;
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

async fn scripts_follow_job_version_rules(mut h: Harness) {
    h.add_agent("127.0.0.61", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;

    let (_, v) = h
        .post(
            "create_script",
            with(
                scope(),
                json!({"name": "say", "script_language": 1, "content": b64("echo v1 $1"), "version": "1.0", "description": "says"}),
            ),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    let d = &v["data"];
    assert_eq!((d["status"].as_i64(), d["content"].as_str(), d["version"].as_str()), (Some(0), Some("echo v1 $1"), Some("1.0")));
    let script_id = d["script_id"].as_str().unwrap().to_string();
    assert_eq!(script_id.len(), 32);
    let v1 = d["id"].as_i64().unwrap();

    let (_, dup) =
        h.post("create_script", with(scope(), json!({"name": "say", "script_language": 1, "content": b64("x"), "version": "1"}))).await;
    assert_eq!(dup["code"], 1243002);
    let (_, bad) =
        h.post("create_script", with(scope(), json!({"name": "a/b", "script_language": 1, "content": b64("x"), "version": "1"}))).await;
    assert_eq!(bad["code"], 1241005);
    let (_, bad) =
        h.post("create_script", with(scope(), json!({"name": "ok", "script_language": 1, "content": b64("x"), "version": "1 0"}))).await;
    assert_eq!(bad["code"], 1241005);

    // A draft does not run.
    let run = |extra: Value| {
        let h = &h;
        let hosts = hosts.clone();
        async move {
            let (_, v) = h
                .post(
                    "fast_execute_script",
                    with(
                        scope(),
                        with(json!({"account_alias": USER, "target_server": {"host_id_list": hosts}, "script_param": b64("p")}), extra),
                    ),
                )
                .await;
            v
        }
    };
    assert_eq!(run(json!({"script_version_id": v1})).await["code"], 1244018);
    assert_eq!(run(json!({"script_id": script_id})).await["code"], 1243017, "no online version yet");

    // Drafts are editable; publish makes it online.
    let (_, up) = h
        .post(
            "update_script_version",
            with(scope(), json!({"script_id": script_id, "script_version_id": v1, "content": b64("echo v1-edited $1")})),
        )
        .await;
    assert_eq!(up["data"]["content"], "echo v1-edited $1", "{up}");
    let (_, p) = h.post("publish_script_version", with(scope(), json!({"script_id": script_id, "script_version_id": v1}))).await;
    assert_eq!(p["data"], json!({"id": v1, "script_id": script_id, "status": 1}));
    let (_, up) =
        h.post("update_script_version", with(scope(), json!({"script_id": script_id, "script_version_id": v1, "content": b64("x")}))).await;
    assert_eq!(up["code"], 1241003, "online versions are not editable");

    // A second version; publishing it takes v1 offline.
    let (_, v) = h
        .post("create_script_version", with(scope(), json!({"script_id": script_id, "content": b64("echo v2 $1"), "version": "2.0"})))
        .await;
    let v2 = v["data"]["id"].as_i64().unwrap();
    let (_, dupv) =
        h.post("create_script_version", with(scope(), json!({"script_id": script_id, "content": b64("x"), "version": "2.0"}))).await;
    assert_eq!(dupv["code"], 1243036);
    h.post("publish_script_version", with(scope(), json!({"script_id": script_id, "script_version_id": v2}))).await;
    let (_, list) = h.get("get_script_version_list", &format!("bk_scope_type=biz&bk_scope_id=1&script_id={script_id}")).await;
    let statuses: Vec<(i64, i64)> =
        list["data"]["data"].as_array().unwrap().iter().map(|v| (v["id"].as_i64().unwrap(), v["status"].as_i64().unwrap())).collect();
    assert_eq!(statuses, vec![(v2, 1), (v1, 2)]);
    assert!(list["data"]["data"][0]["content"].is_null(), "content only on request");

    // script_id runs the online version; an offline version still runs by id.
    for (extra, want) in [(json!({"script_id": script_id}), "v2 p\n"), (json!({"script_version_id": v1}), "v1-edited p\n")] {
        let v = run(extra).await;
        assert_eq!(v["code"], 0, "{v}");
        let id = v["data"]["job_instance_id"].as_i64().unwrap();
        h.wait_finished(id, Duration::from_secs(20)).await;
        let logs = h.logs(id, v["data"]["step_instance_id"].as_i64().unwrap(), &hosts).await;
        assert_eq!(logs.values().next().unwrap(), want);
    }

    // Disabled is final: it cannot run or be published again.
    let (_, d) = h.post("disable_script_version", with(scope(), json!({"script_id": script_id, "script_version_id": v1}))).await;
    assert_eq!(d["data"]["status"], 3);
    assert_eq!(run(json!({"script_version_id": v1})).await["code"], 1244018);
    let (_, p) = h.post("publish_script_version", with(scope(), json!({"script_id": script_id, "script_version_id": v1}))).await;
    assert_eq!(p["code"], 1241003);

    // Lists, detail, basic update, another scope.
    let (_, l) = h.get("get_script_list", "bk_scope_type=biz&bk_scope_id=1&name=sa").await;
    assert_eq!((l["data"]["total"].as_i64(), l["data"]["data"][0]["online_script_version_id"].as_i64()), (Some(1), Some(v2)), "{l}");
    let (_, det) = h.get("get_script_version_detail", &format!("bk_scope_type=biz&bk_scope_id=1&script_id={script_id}&version=2.0")).await;
    assert_eq!(det["data"]["content"], "echo v2 $1");
    let (_, det) = h.get("get_script_version_detail", &format!("bk_scope_type=biz&bk_scope_id=1&id={v1}")).await;
    assert_eq!(det["data"]["status"], 3);
    let (_, ub) =
        h.post("update_script_basic", with(scope(), json!({"script_id": script_id, "name": "speak", "description": "new"}))).await;
    assert_eq!((ub["data"]["name"].as_str(), ub["data"]["description"].as_str()), (Some("speak"), Some("new")));
    let (_, other) = h.get("get_script_version_detail", &format!("bk_scope_type=biz&bk_scope_id=2&id={v1}")).await;
    assert_eq!(other["code"], 1243004);
    let (_, other) = h
        .post(
            "fast_execute_script",
            with(
                json!({"bk_scope_type": "biz", "bk_scope_id": "2", "account_alias": USER, "target_server": {"host_id_list": hosts}}),
                json!({"script_id": script_id}),
            ),
        )
        .await;
    assert_eq!(other["code"], 1243001, "{other}");

    // Deleting versions, then the script.
    let (_, dv) = h.post("delete_script_version", with(scope(), json!({"script_id": script_id, "script_version_id": v1}))).await;
    assert_eq!(dv["code"], 0);
    let (_, ds) = h.post("delete_script", with(scope(), json!({"script_id": script_id}))).await;
    assert_eq!(ds["code"], 0);
    let (_, gone) = h.get("get_script_version_list", &format!("bk_scope_type=biz&bk_scope_id=1&script_id={script_id}")).await;
    assert_eq!(gone["code"], 1243001);
}

async fn public_scripts(mut h: Harness) {
    let (_, v) = h
        .post(
            "create_public_script",
            json!({"name": "uptime", "script_language": 1, "content": b64("uptime >/dev/null; echo up"), "version": "1"}),
        )
        .await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["public_script"], true);
    // A public script belongs to no scope: bk-job's DTOs carry the scope fields as null.
    let scopeless = |d: &Value| {
        let o = d.as_object().unwrap_or_else(|| panic!("{d}"));
        assert_eq!((o.get("bk_scope_type"), o.get("bk_scope_id")), (Some(&Value::Null), Some(&Value::Null)), "{d}");
    };
    scopeless(&v["data"]);
    let sid = v["data"]["script_id"].as_str().unwrap().to_string();
    let vid = v["data"]["id"].as_i64().unwrap();
    // BlueKing callers probe health with this list.
    let (status, l) = h.get("get_public_script_list", "").await;
    assert_eq!((status, l["data"]["total"].as_i64()), (200, Some(1)), "{l}");
    scopeless(&l["data"]["data"][0]);
    let (_, l) = h.get("get_public_script_version_list", &format!("script_id={sid}")).await;
    scopeless(&l["data"]["data"][0]);
    let (_, p) = h.post("publish_public_script_version", json!({"script_id": sid, "script_version_id": vid})).await;
    assert_eq!(p["data"]["status"], 1, "{p}");
    // Any business may run a public script.
    h.add_agent("127.0.0.62", None, None, &[]).await;
    h.wait_connected(1).await;
    let hosts = h.host_ids().await;
    let (_, r) = h
        .post("fast_execute_script", json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_id": sid, "account_alias": USER, "target_server": {"host_id_list": hosts}}))
        .await;
    assert_eq!(r["code"], 0, "{r}");
    let st = h.wait_finished(r["data"]["job_instance_id"].as_i64().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(st["job_instance"]["status"], 3);
    let (_, ok) = h.get("get_public_script_version_detail", &format!("id={vid}")).await;
    assert_eq!(ok["data"]["content"], "uptime >/dev/null; echo up");
    scopeless(&ok["data"]);
}
