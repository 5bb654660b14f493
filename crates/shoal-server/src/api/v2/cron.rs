//! Cron through JOB v2 (`save_cron`, `update_cron_status`, `get_cron_list`): v3's cron
//! handlers with v2's field names, as bk-job's `EsbCronJobResourceImpl` has them:
//! - requests name the cron `cron_id`, its plan `bk_job_id`, `cron_name`, `cron_expression`
//!   (5 fields: minute hour day month weekday), `cron_status` (1 started, 2 paused);
//! - `save_cron` creates disabled, or updates a cron given at least one of `bk_job_id`,
//!   `cron_name`, `cron_expression`; it and `update_cron_status` answer `EsbCronInfoResponse`
//!   with only `cron_id` set;
//! - `get_cron_list` answers a plain array (no page) of `{bk_biz_id, bk_job_id, job_name,
//!   cron_id, cron_name, cron_status, cron_expression, creator, create_time,
//!   last_modify_user, last_modify_time}`, times as `yyyy-MM-dd HH:mm:ss` strings; its time
//!   filters are `yyyy-MM-dd` dates.

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_core::JobError;
use shoal_proto::jobv3::ScopeReq;
use shoal_proto::{lenient, ErrorCode};

use super::{library_time, scope_of};
use crate::api::v3::cron::{self as v3, CronListReq, SaveCronReq};
use crate::api::{decode, ApiResult, Ctx};

#[derive(Deserialize, Default)]
struct SaveReq {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    cron_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    bk_job_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    cron_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    cron_expression: Option<String>,
}

#[derive(Deserialize, Default)]
struct StatusReq {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    cron_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    cron_status: Option<i32>,
}

#[derive(Deserialize, Default)]
struct ListReq {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    cron_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    cron_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i32")]
    cron_status: Option<i32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    creator: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_user: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    create_time_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    create_time_end: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_time_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    last_modify_time_end: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    start: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    length: Option<i64>,
}

fn reason(field: &str, why: &str) -> JobError {
    JobError::args(ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.into(), why.into()])
}

fn blank(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// bk-job's `EsbCronInfoResponse` with only the id set (what both writes answer).
fn id_only(id: i64) -> Value {
    json!({"bk_biz_id": null, "bk_job_id": null, "job_name": null, "cron_id": id, "cron_name": null, "cron_status": null,
           "cron_expression": null, "creator": null, "create_time": null, "last_modify_user": null, "last_modify_time": null})
}

pub async fn save(ctx: &Ctx, params: Value) -> ApiResult {
    let scope = scope_of(&params)?;
    let req: SaveReq = decode(params)?;
    // `EsbSaveCronRequest.validate`.
    match req.cron_id {
        Some(id) if id <= 0 => return Err(reason("id", "id must be a positive number")),
        Some(id) => {
            let changes = req.bk_job_id.is_some_and(|p| p > 0) || !blank(&req.cron_name) || !blank(&req.cron_expression);
            if !changes {
                return Err(reason(
                    "bk_job_id/cron_name/cron_expression",
                    &format!("At least one of bk_job_id/cron_name/cron_expression must be given to update cron {id}"),
                ));
            }
        }
        None => {
            if req.bk_job_id.is_none_or(|p| p <= 0) {
                return Err(reason("bk_job_id", "bk_job_id must be a positive number"));
            }
            if blank(&req.cron_name) {
                return Err(reason("cron_name", "cron_name cannot be blank"));
            }
            if blank(&req.cron_expression) {
                return Err(reason("cron_expression", "cron_expression cannot be blank"));
            }
        }
    }
    let v3_req = SaveCronReq {
        scope: ScopeReq::default(),
        id: req.cron_id,
        job_plan_id: req.bk_job_id.filter(|p| *p > 0),
        name: req.cron_name,
        expression: req.cron_expression,
        ..SaveCronReq::default()
    };
    let saved = v3::save_in(ctx, &scope, v3_req).await?;
    Ok(id_only(saved["id"].as_i64().unwrap_or(0)))
}

pub async fn update_status(ctx: &Ctx, params: Value) -> ApiResult {
    let scope = scope_of(&params)?;
    let req: StatusReq = decode(params)?;
    // `EsbUpdateCronStatusRequest.validate`: an id and a status of 1 or 2.
    let (Some(id), Some(status @ (1 | 2))) = (req.cron_id.filter(|i| *i > 0), req.cron_status) else {
        return Err(JobError::new(ErrorCode::ILLEGAL_PARAM));
    };
    v3::update_status_in(ctx, &scope, Some(id), status == 1).await?;
    Ok(id_only(id))
}

/// A `yyyy-MM-dd` date as a bound in Unix seconds (an end date includes its day).
fn date_seconds(field: &str, s: &Option<String>, end: bool) -> Result<Option<i64>, JobError> {
    Ok(super::date_bound(field, s, end)?.map(|ms| ms.div_euclid(1000)))
}

pub async fn list(ctx: &Ctx, params: Value) -> ApiResult {
    let scope = scope_of(&params)?;
    let req: ListReq = decode(params)?;
    let v3_req = CronListReq {
        scope: ScopeReq::default(),
        id: req.cron_id.filter(|i| *i > 0),
        name: req.cron_name,
        status: req.cron_status,
        creator: req.creator,
        last_modify_user: req.last_modify_user,
        create_time_start: date_seconds("create_time_start", &req.create_time_start, false)?,
        create_time_end: date_seconds("create_time_end", &req.create_time_end, true)?,
        last_modify_time_start: date_seconds("last_modify_time_start", &req.last_modify_time_start, false)?,
        last_modify_time_end: date_seconds("last_modify_time_end", &req.last_modify_time_end, true)?,
        start: req.start,
        length: req.length,
    };
    let page = v3::list_in(ctx, &scope, v3_req).await?;
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    let data: Vec<Value> = rows
        .iter()
        .map(|c| {
            let time = |k: &str| c[k].as_i64().map_or(Value::Null, |s| library_time(s * 1000));
            json!({
                "bk_biz_id": c["bk_scope_id"].as_str().and_then(|s| s.parse::<i64>().ok()),
                "bk_job_id": c["job_plan_id"], "job_name": null, "cron_id": c["id"], "cron_name": c["name"],
                "cron_status": if c["status"] == 1 { 1 } else { 2 }, "cron_expression": c["expression"],
                "creator": c["creator"], "create_time": time("create_time"),
                "last_modify_user": c["last_modify_user"], "last_modify_time": time("last_modify_time"),
            })
        })
        .collect();
    Ok(json!(data))
}
