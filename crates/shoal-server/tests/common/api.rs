//! A caller of one server by URL alone (for servers the [`super::Harness`] does not own).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{b64, hosts_of, APP, SECRET, USER};

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api { http: reqwest::Client::new(), url: url.to_string() }
    }

    fn auth() -> String {
        json!({"bk_app_code": APP, "bk_app_secret": SECRET, "bk_username": USER}).to_string()
    }

    async fn data(r: reqwest::RequestBuilder, what: &str) -> Value {
        let v: Value = r.header("X-Bkapi-Authorization", Self::auth()).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["code"], 0, "{what}: {v}");
        v["data"].clone()
    }

    /// POST a JOB v3 call; its data.
    pub async fn post(&self, name: &str, body: Value) -> Value {
        Self::data(self.http.post(format!("{}/api/v3/{name}", self.url)).json(&body), name).await
    }

    pub async fn create_account(&self, alias: &str, os_user: &str) -> Value {
        self.post(
            "create_account",
            json!({"bk_scope_type": "biz", "bk_scope_id": "1", "account": os_user, "alias": alias, "type": 1, "category": 1}),
        )
        .await
    }

    /// Shoal's host list (`/api/shoal/v1/hosts`).
    pub async fn hosts(&self) -> Vec<Value> {
        let d = Self::data(self.http.get(format!("{}/api/shoal/v1/hosts", self.url)), "hosts").await;
        d["data"].as_array().cloned().unwrap_or_default()
    }

    pub async fn status(&self, job_id: i64) -> Value {
        let q = format!("bk_scope_type=biz&bk_scope_id=1&job_instance_id={job_id}&return_ip_result=True");
        Self::data(self.http.get(format!("{}/api/v3/get_job_instance_status?{q}", self.url)), "status").await
    }

    pub async fn execute(&self, script: &str, hosts: &[i64]) -> (i64, i64) {
        let d = self
            .post(
                "fast_execute_script",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "script_content": b64(script), "script_language": 1,
                       "account_alias": USER, "target_server": {"host_id_list": hosts}}),
            )
            .await;
        (d["job_instance_id"].as_i64().unwrap(), d["step_instance_id"].as_i64().unwrap())
    }

    /// Host id → (status, log) of the job's first step.
    pub async fn results(&self, job_id: i64, step_id: i64) -> BTreeMap<i64, (i64, String)> {
        let st = self.status(job_id).await;
        let hosts: Vec<i64> = hosts_of(&st).iter().map(|h| h["bk_host_id"].as_i64().unwrap()).collect();
        let logs = self
            .post(
                "batch_get_job_instance_ip_log",
                json!({"bk_scope_type": "biz", "bk_scope_id": "1", "job_instance_id": job_id, "step_instance_id": step_id, "host_id_list": hosts}),
            )
            .await;
        let logs: BTreeMap<i64, String> = logs["script_task_logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["bk_host_id"].as_i64().unwrap(), l["log_content"].as_str().unwrap_or_default().to_string()))
            .collect();
        hosts_of(&st)
            .iter()
            .map(|h| {
                let id = h["bk_host_id"].as_i64().unwrap();
                (id, (h["status"].as_i64().unwrap(), logs.get(&id).cloned().unwrap_or_default()))
            })
            .collect()
    }
}
