//! The JOB v2 ESB API, still called by bk-sops (node logs) and bk-nodeman (log collection):
//! `/api/c/compapi/v2/job/<name>/` (ESB) and `/esb/api/v2/<name>` (JOB's backend form).
//!
//! v2 is a shape over the same engine and store as v3: each handler translates the v2
//! request into the v3 one (or reads the store as the v3 handler does) and answers v2's
//! field names. What differs from v3, as bk-job's code has it:
//! - targets: top-level `ip_list` and `custom_query_id`, and a `target_server` with
//!   `dynamic_group_id_list` (the v3 keys are accepted there too, as bk-nodeman mixes them);
//! - script fields `script_type`, `script_timeout`, `account` (an alias, or the OS user's
//!   name), `script_id` meaning a script *version* id, `bk_callback_url`;
//! - paging `{start, page_size, total_record_size, data}`;
//! - times of executions as `yyyy-MM-dd HH:mm:ss` strings in UTC+8 (bk-job's
//!   `LongTimestampSerializer` with no user time zone) and durations as seconds with a
//!   fraction (`LongToDecimalJsonSerializer`); library times as the same strings in UTC.
//!
//! One module per family: [`execute`] (fast_execute_script, execute_job,
//! operate_job_instance), [`status`] (get_job_instance_status, get_step_instance_status),
//! [`log`] (get_job_instance_log), [`script`], [`job`] (plans), [`account`], [`cron`] and [`file`] (fast_push_file, push_config_file).

mod account;
mod cron;
mod execute;
mod file;
mod job;
mod log;
mod script;
mod status;

use axum::http::Method;
use serde_json::{json, Value};
use shoal_core::{JobError, Scope};

use super::envelope::{method_not_allowed, not_found};
use super::{ApiResult, Ctx};

/// v2 APIs bk-job still serves that Shoal does not (yet).
pub const NOT_SERVED: [&str; 4] =
    ["fast_execute_sql", "get_job_instance_global_var_value", "operate_step_instance", "get_own_db_account_list"];

pub async fn call(ctx: &Ctx, method: &Method, name: &str, params: Value) -> ApiResult {
    if *method != Method::POST && !(name.starts_with("get_") && *method == Method::GET) {
        return Err(method_not_allowed());
    }
    match name {
        "fast_execute_script" => execute::fast_execute_script(ctx, params).await,
        "execute_job" => execute::execute_job(ctx, params).await,
        "operate_job_instance" => execute::operate_job_instance(ctx, params).await,
        "get_job_instance_status" => status::job_instance(ctx, params).await,
        "get_step_instance_status" => status::step_instance(ctx, params).await,
        "get_job_instance_log" => log::handle(ctx, params).await,
        "get_script_list" => script::list(ctx, params, false).await,
        "get_public_script_list" => script::list(ctx, params, true).await,
        "get_script_detail" => script::detail(ctx, params).await,
        "get_job_list" => job::list(ctx, params).await,
        "get_job_detail" => job::detail(ctx, params).await,
        "get_os_account" => account::os_accounts(ctx, params).await,
        "fast_push_file" => file::fast_push_file(ctx, params).await,
        "push_config_file" => file::push_config_file(ctx, params).await,
        "save_cron" => cron::save(ctx, params).await,
        "update_cron_status" => cron::update_status(ctx, params).await,
        "get_cron_list" => cron::list(ctx, params).await,
        other if NOT_SERVED.contains(&other) => {
            let mut e = not_found(other);
            e.detail = Some(format!("JOB v2 {other} is not served by Shoal; use its v3 counterpart"));
            Err(e)
        }
        other => Err(not_found(other)),
    }
}

/// UTC+8: the zone bk-job writes v2 execution times in when the request names none.
const V2_OFFSET_MS: i64 = 8 * 3600 * 1000;

/// An execution time as bk-job's v2 answers write it (`yyyy-MM-dd HH:mm:ss`, UTC+8), or null.
pub(crate) fn exec_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| json!(shoal_core::time::human(ms + V2_OFFSET_MS)))
}

/// A library time (scripts, plans, accounts) as bk-job's v2 answers write it (UTC).
pub(crate) fn library_time(ms: i64) -> Value {
    json!(shoal_core::time::human(ms))
}

/// A duration as bk-job's v2 answers write it: seconds with a fraction, or null.
pub(crate) fn seconds(start: Option<i64>, end: Option<i64>) -> Value {
    match (start, end) {
        (Some(s), Some(e)) => json!((e - s) as f64 / 1000.0),
        _ => Value::Null,
    }
}

/// The scope fields of bk-job's `EsbAppScopeDTO` (`bk_biz_id` is the scope's id as a number).
pub(crate) fn scope_fields(out: &mut Value, scope_type: &str, scope_id: &str) {
    out["bk_biz_id"] = scope_id.parse::<i64>().map_or(Value::Null, |id| json!(id));
    out["bk_scope_type"] = json!(scope_type);
    out["bk_scope_id"] = json!(scope_id);
}

/// bk-job's v2 page (`EsbPageData`): `start`/`length` of the request (no `length`, or 0, is
/// every row), rows already filtered.
pub(crate) fn v2_page(rows: Vec<Value>, start: Option<i64>, length: Option<i64>) -> Value {
    let start = start.unwrap_or(0).max(0);
    let length = length.filter(|l| *l > 0).unwrap_or(i32::MAX as i64);
    if rows.is_empty() {
        return json!({"start": 0, "page_size": 10, "total_record_size": 0, "data": []});
    }
    let total = rows.len();
    let data: Vec<Value> = rows.into_iter().skip(start as usize).take(length as usize).collect();
    json!({"start": start, "page_size": length, "total_record_size": total, "data": data})
}

/// A list of strings (dynamic group ids); numbers are taken as their text.
pub(crate) fn opt_string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    use serde::de::Error as _;
    use serde::Deserialize as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(D::Error::custom(format!("expected a string, got {other}"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::String(s)) => Ok(Some(s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect())),
        Some(other) => Err(D::Error::custom(format!("expected a list of strings, got {other}"))),
    }
}

/// A `yyyy-MM-dd` filter date of a v2 list, as a bound in ms (UTC): the start of the day, or
/// with `end` its last millisecond (an end date includes its day).
pub(crate) fn date_bound(field: &str, s: &Option<String>, end: bool) -> Result<Option<i64>, JobError> {
    let Some(s) = s.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let why = || JobError::args(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.into(), "a date as yyyy-MM-dd".into()]);
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| why())?;
    let start = d.and_hms_opt(0, 0, 0).ok_or_else(why)?.and_utc().timestamp_millis();
    Ok(Some(if end { start + 86_400_000 - 1 } else { start }))
}

/// The request's scope, as v3 resolves it (`bk_scope_type` + `bk_scope_id`, or `bk_biz_id`).
pub(crate) fn scope_of(params: &Value) -> Result<Scope, JobError> {
    let req: shoal_proto::jobv3::ScopeReq = super::decode(params.clone())?;
    Scope::resolve(&req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_pages_as_bk_job_writes_them() {
        // 2018-03-15 07:55:21 UTC
        assert_eq!(exec_time(Some(1_521_100_521_303)), json!("2018-03-15 15:55:21"));
        assert_eq!(exec_time(None), Value::Null);
        assert_eq!(library_time(1_521_100_521_303), json!("2018-03-15 07:55:21"));
        assert_eq!(seconds(Some(1000), Some(2500)), json!(1.5));
        assert_eq!(seconds(Some(1000), None), Value::Null);
        let rows: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        assert_eq!(v2_page(rows.clone(), Some(1), Some(2)), json!({"start": 1, "page_size": 2, "total_record_size": 5, "data": [1, 2]}));
        assert_eq!(v2_page(rows, None, None)["data"].as_array().unwrap().len(), 5);
        assert_eq!(v2_page(vec![], Some(3), Some(2)), json!({"start": 0, "page_size": 10, "total_record_size": 0, "data": []}));
        let day = Some("2018-03-15".to_string());
        assert_eq!(date_bound("d", &day, false).unwrap(), Some(1_521_072_000_000));
        assert_eq!(date_bound("d", &day, true).unwrap(), Some(1_521_072_000_000 + 86_400_000 - 1));
        assert_eq!(date_bound("d", &None, true).unwrap(), None);
        assert!(date_bound("d", &Some("15/03/2018".into()), false).is_err());
    }
}
