//! Rolling execution (滚动执行, spec §17 and §4.2): the batch expression, how it cuts a target
//! list into batches, and the v3 `rolling_config` object.
//!
//! An expression is space-separated parts; batch *n* is sized by part *n* and the last part
//! repeats until every host is covered:
//!
//! | part | batch size |
//! |---|---|
//! | `N%` (1..=100) | ceil(total × N / 100) |
//! | `N` (≥ 1) | N |
//! | `+N` (≥ 1) | previous batch + N (first batch: N) |
//! | `*N` (≥ 1) | previous batch × N (first batch: N) |
//!
//! The last batch is cut to what remains. Every size is at least 1, so planning always ends.

use serde_json::{json, Map, Value};
use shoal_proto::code::ErrorCode;

use crate::JobError;

/// 1244026 "Invalid rolling strategy".
pub const INVALID_ROLLING_EXPR: ErrorCode = ErrorCode(1244026);
/// 1244027 "Rolling batch can not be greater than {0}".
pub const EXCEED_MAX_ALLOWED_BATCH_SIZE: ErrorCode = ErrorCode(1244027);
/// 1244035 "The file source rolling policy only support server file".
pub const SOURCE_FILE_ROLLING_ONLY_SERVER_FILES: ErrorCode = ErrorCode(1244035);

/// Most batches a serial rolling step may have.
pub const MAX_SERIAL_BATCHES: usize = 500;
/// Most batches a parallel-staggered step may have (`job.execute.rolling.scatter.max-batch`).
pub const MAX_PARALLEL_BATCHES: usize = 200;
/// Upper bound of each `batch_start_wait_*_ms` field.
pub const MAX_BATCH_START_WAIT_MS: u64 = 3_600_000;

/// One part of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollingPart {
    /// `N%` of all targets, rounded up.
    Percent(u32),
    /// `N` hosts.
    Quantity(usize),
    /// `+N`: the previous batch plus N.
    Plus(usize),
    /// `*N`: the previous batch times N.
    Times(usize),
}

/// A parsed rolling expression; keeps the text it came from to echo it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingExpr {
    text: String,
    parts: Vec<RollingPart>,
}

/// Parses an expression; an empty one or any unknown part → `1244026`. Parts may be separated
/// by any run of whitespace.
pub fn parse(expr: &str) -> Result<RollingExpr, JobError> {
    let parts = expr.split_whitespace().map(parse_part).collect::<Option<Vec<_>>>();
    match parts {
        Some(parts) if !parts.is_empty() => Ok(RollingExpr { text: expr.trim().to_string(), parts }),
        _ => Err(JobError::new(INVALID_ROLLING_EXPR)),
    }
}

fn parse_part(part: &str) -> Option<RollingPart> {
    if let Some(n) = part.strip_suffix('%') {
        let n = number(n)?;
        return (1..=100).contains(&n).then_some(RollingPart::Percent(n as u32));
    }
    let (make, digits): (fn(usize) -> RollingPart, &str) = match part.as_bytes().first()? {
        b'+' => (RollingPart::Plus, &part[1..]),
        b'*' => (RollingPart::Times, &part[1..]),
        _ => (RollingPart::Quantity, part),
    };
    number(digits).filter(|&n| n >= 1).map(make)
}

/// ASCII digits only: `str::parse` alone would also take a sign.
fn number(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Plans the batches of `expr` over `total` hosts, refusing more than `max_batches`
/// ([`MAX_SERIAL_BATCHES`] or [`MAX_PARALLEL_BATCHES`]) with `1244027`.
pub fn plan(expr: &str, total: usize, max_batches: usize) -> Result<Vec<usize>, JobError> {
    parse(expr)?.plan(total, max_batches)
}

impl RollingExpr {
    /// The expression as given, outer whitespace trimmed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn parts(&self) -> &[RollingPart] {
        &self.parts
    }

    /// Batch sizes covering exactly `total` hosts in order; none when `total` is 0.
    pub fn batches(&self, total: usize) -> Vec<usize> {
        self.iter_batches(total).collect()
    }

    /// The batch sizes lazily, so a cap can stop early on a huge plan.
    pub fn iter_batches(&self, total: usize) -> Batches<'_> {
        Batches { parts: &self.parts, total, remaining: total, previous: None, index: 0 }
    }

    /// [`batches`](Self::batches), refused with `1244027` beyond `max_batches`.
    pub fn plan(&self, total: usize, max_batches: usize) -> Result<Vec<usize>, JobError> {
        let batches: Vec<usize> = self.iter_batches(total).take(max_batches.saturating_add(1)).collect();
        if batches.len() > max_batches {
            return Err(JobError::with(EXCEED_MAX_ALLOWED_BATCH_SIZE, max_batches.to_string()));
        }
        Ok(batches)
    }
}

impl std::fmt::Display for RollingExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for RollingExpr {
    type Err = JobError;
    fn from_str(s: &str) -> Result<Self, JobError> {
        parse(s)
    }
}

/// Iterator over batch sizes, from [`RollingExpr::iter_batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    parts: &'a [RollingPart],
    total: usize,
    remaining: usize,
    previous: Option<usize>,
    index: usize,
}

impl Iterator for Batches<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        let part = self.parts[self.index.min(self.parts.len() - 1)];
        let wanted = match part {
            RollingPart::Percent(n) => {
                let hosts = (self.total as u128 * u128::from(n)).div_ceil(100);
                usize::try_from(hosts).unwrap_or(usize::MAX)
            }
            RollingPart::Quantity(n) => n,
            RollingPart::Plus(n) => self.previous.map_or(n, |p| p.saturating_add(n)),
            RollingPart::Times(n) => self.previous.map_or(n, |p| p.saturating_mul(n)),
        };
        let size = wanted.clamp(1, self.remaining);
        self.remaining -= size;
        self.previous = Some(size);
        self.index += 1;
        Some(size)
    }
}

// ---------------------------------------------------------------------------------------------
// rolling_config

/// What happens when a batch fails (`mode`, RollingModeEnum). Ignored in parallel mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RollingMode {
    /// The step fails and waits for the user (retry or ignore).
    #[default]
    PauseOnFailure = 1,
    /// The batch is marked ignore-error and rolling goes on.
    IgnoreFailure = 2,
    /// Every batch waits for `operate_step_instance` 13 (continue rolling).
    ManualConfirm = 3,
}

impl RollingMode {
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            1 => Some(Self::PauseOnFailure),
            2 => Some(Self::IgnoreFailure),
            3 => Some(Self::ManualConfirm),
            _ => None,
        }
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// How batches are started (`execution_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollingExecution {
    /// `1`: one batch after the other (default), at most [`MAX_SERIAL_BATCHES`].
    Serial,
    /// `2`: every batch dispatched with a cumulative delay, at most [`MAX_PARALLEL_BATCHES`].
    Parallel(StaggerDelays),
}

impl RollingExecution {
    /// The `execution_mode` value.
    pub fn code(self) -> i32 {
        match self {
            RollingExecution::Serial => 1,
            RollingExecution::Parallel(_) => 2,
        }
    }

    pub fn max_batches(self) -> usize {
        match self {
            RollingExecution::Serial => MAX_SERIAL_BATCHES,
            RollingExecution::Parallel(_) => MAX_PARALLEL_BATCHES,
        }
    }
}

/// Start delays of parallel-staggered batches, each within 0..=[`MAX_BATCH_START_WAIT_MS`],
/// `random_min_ms ≤ random_max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaggerDelays {
    pub fixed_ms: u64,
    pub random_min_ms: u64,
    pub random_max_ms: u64,
}

impl StaggerDelays {
    /// Start offsets of `batches` batches: the first at 0, each next one `fixed_ms` plus
    /// `random(min, max)` after the previous. `random` must return a value in `min..=max`;
    /// taking it as an argument keeps this module free of a random source.
    pub fn offsets(&self, batches: usize, mut random: impl FnMut(u64, u64) -> u64) -> Vec<u64> {
        let mut at = 0u64;
        (0..batches)
            .map(|k| {
                if k > 0 {
                    let jitter = random(self.random_min_ms, self.random_max_ms);
                    at = at.saturating_add(self.fixed_ms).saturating_add(jitter);
                }
                at
            })
            .collect()
    }
}

/// A validated v3 `rolling_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingConfig {
    pub by: RollingBy,
    pub mode: RollingMode,
    pub execution: RollingExecution,
}

/// What a step rolls over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollingBy {
    /// `type = 1`: the target hosts, in batches the expression sizes.
    Hosts(RollingExpr),
    /// `type = 2` (file steps whose files are on source hosts): the source files, in batches
    /// that every target receives one after the other.
    SourceFiles(SourceFileLimits),
}

/// `rolling_config.file_source`: how much of the sources one batch takes (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceFileLimits {
    /// `max_execute_object_num_in_batch`: source hosts per batch.
    pub max_hosts: Option<usize>,
    /// `max_file_num_of_single_execute_object`: files per source host per batch.
    pub max_files: Option<usize>,
}

/// One source group's share of a batch: hosts `hosts` of group `group`, with its files `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePick {
    pub group: usize,
    pub hosts: std::ops::Range<usize>,
    pub files: std::ops::Range<usize>,
}

impl SourceFileLimits {
    /// Cuts source groups (`(hosts, files)` each: one `file_source_list` entry) into batches,
    /// as JOB does: a group over a limit is split into the cross product of its host chunks and
    /// file chunks, one batch each; runs of groups within the limits are taken greedily into
    /// one batch while their summed hosts and files stay within them.
    pub fn plan(&self, groups: &[(usize, usize)]) -> Vec<Vec<SourcePick>> {
        let max_hosts = self.max_hosts.unwrap_or(usize::MAX).max(1);
        let max_files = self.max_files.unwrap_or(usize::MAX).max(1);
        let mut batches = Vec::new();
        let mut i = 0;
        while i < groups.len() {
            let (hosts, files) = groups[i];
            if hosts > max_hosts || files > max_files {
                for h in (0..hosts).step_by(max_hosts) {
                    for f in (0..files.max(1)).step_by(max_files) {
                        let pick = SourcePick { group: i, hosts: h..(h + max_hosts).min(hosts), files: f..(f + max_files).min(files) };
                        batches.push(vec![pick]);
                    }
                }
                i += 1;
                continue;
            }
            let (mut sum_hosts, mut sum_files) = (hosts, files);
            let mut end = i + 1;
            while end < groups.len() {
                sum_hosts = sum_hosts.saturating_add(groups[end].0);
                sum_files = sum_files.saturating_add(groups[end].1);
                if sum_hosts > max_hosts || sum_files > max_files {
                    break;
                }
                end += 1;
            }
            batches.push((i..end).map(|g| SourcePick { group: g, hosts: 0..groups[g].0, files: 0..groups[g].1 }).collect());
            i = end;
        }
        batches
    }
}

impl RollingConfig {
    /// Reads the v3 object. Integers may come as JSON numbers or numeric strings; `null` and
    /// `""` count as absent. Checks run as JOB orders them: field constraints (`1240003` with the
    /// field message), then the expression of `type = 1` (`1244026`). Whether `type = 2` fits
    /// the step's sources is its caller's to check (`1244035`).
    pub fn from_json(v: &Value) -> Result<RollingConfig, JobError> {
        let obj = v.as_object().ok_or_else(|| JobError::bad_request("rolling_config must be an object"))?;

        let kind = int_field(obj, "type")?.unwrap_or(1);
        if !(1..=2).contains(&kind) {
            return Err(JobError::bad_request("rolling_config.type must be 1 or 2"));
        }
        let mode = match int_field(obj, "mode")? {
            None => RollingMode::default(),
            Some(m) => RollingMode::from_i64(m).ok_or_else(|| JobError::bad_request("rolling_config.mode must be 1, 2 or 3"))?,
        };
        let execution_mode = int_field(obj, "execution_mode")?.unwrap_or(1);
        if !(1..=2).contains(&execution_mode) {
            return Err(JobError::bad_request("rolling_config.execution_mode must be 1 or 2"));
        }
        let fixed = wait_field(obj, "batch_start_wait_fixed_ms")?;
        let min = wait_field(obj, "batch_start_wait_random_min_ms")?;
        let max = wait_field(obj, "batch_start_wait_random_max_ms")?;
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(JobError::bad_request(
                    "rolling_config.batch_start_wait_random_min_ms must not be greater than batch_start_wait_random_max_ms",
                ));
            }
        }
        let execution = if execution_mode == 2 {
            let required = |value: Option<u64>, name: &str| {
                value.ok_or_else(|| JobError::bad_request(format!("rolling_config.{name} is required in parallel mode")))
            };
            RollingExecution::Parallel(StaggerDelays {
                fixed_ms: required(fixed, "batch_start_wait_fixed_ms")?,
                random_min_ms: required(min, "batch_start_wait_random_min_ms")?,
                random_max_ms: required(max, "batch_start_wait_random_max_ms")?,
            })
        } else {
            RollingExecution::Serial
        };

        if kind == 2 {
            if execution_mode == 2 {
                return Err(JobError::bad_request("rolling_config.execution_mode 2 (parallel) is only for type 1"));
            }
            let fs = match obj.get("file_source") {
                Some(Value::Object(fs)) => fs,
                _ => return Err(JobError::bad_request("rolling_config.file_source is required when type is 2")),
            };
            let limit = |name: &str| -> Result<Option<usize>, JobError> {
                let bad = || JobError::bad_request(format!("rolling_config.file_source.{name} must be an integer"));
                let v = match fs.get(name) {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(bad)?),
                    Some(Value::String(t)) if t.trim().is_empty() => None,
                    Some(Value::String(t)) => Some(t.trim().parse::<i64>().map_err(|_| bad())?),
                    Some(_) => return Err(bad()),
                };
                // Zero or less is no limit, as JOB reads it.
                Ok(v.filter(|n| *n > 0).map(|n| n as usize))
            };
            let limits = SourceFileLimits {
                max_hosts: limit("max_execute_object_num_in_batch")?,
                max_files: limit("max_file_num_of_single_execute_object")?,
            };
            return Ok(RollingConfig { by: RollingBy::SourceFiles(limits), mode, execution });
        }
        let expression = match obj.get("expression") {
            Some(Value::String(s)) => parse(s)?,
            _ => return Err(JobError::new(INVALID_ROLLING_EXPR)),
        };
        Ok(RollingConfig { by: RollingBy::Hosts(expression), mode, execution })
    }

    /// The limits of a step rolling by source file.
    pub fn source_files(&self) -> Option<SourceFileLimits> {
        match self.by {
            RollingBy::SourceFiles(l) => Some(l),
            RollingBy::Hosts(_) => None,
        }
    }

    /// The v3 object, as echoed back and stored.
    pub fn to_json(&self) -> Value {
        let mut v = match &self.by {
            RollingBy::Hosts(expression) => json!({
                "expression": expression.as_str(),
                "mode": self.mode.code(),
                "type": 1,
                "execution_mode": self.execution.code(),
            }),
            RollingBy::SourceFiles(l) => json!({
                "mode": self.mode.code(),
                "type": 2,
                "execution_mode": self.execution.code(),
                "file_source": {
                    "max_execute_object_num_in_batch": l.max_hosts,
                    "max_file_num_of_single_execute_object": l.max_files,
                },
            }),
        };
        if let RollingExecution::Parallel(d) = self.execution {
            v["batch_start_wait_fixed_ms"] = json!(d.fixed_ms);
            v["batch_start_wait_random_min_ms"] = json!(d.random_min_ms);
            v["batch_start_wait_random_max_ms"] = json!(d.random_max_ms);
        }
        v
    }

    /// The batch cap of this execution mode.
    pub fn max_batches(&self) -> usize {
        self.execution.max_batches()
    }

    /// Batch sizes over `total` hosts under this mode's cap; a step rolling by source file
    /// has no host batches (empty).
    pub fn plan(&self, total: usize) -> Result<Vec<usize>, JobError> {
        match &self.by {
            RollingBy::Hosts(expression) => expression.plan(total, self.max_batches()),
            RollingBy::SourceFiles(_) => Ok(vec![]),
        }
    }
}

/// An integer field given as a number or a numeric string; absent, `null` and `""` → `None`.
fn int_field(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, JobError> {
    let bad = || JobError::bad_request(format!("rolling_config.{name} must be an integer"));
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // 3.0 is an integer to Jackson too; 3.5 and out-of-range values are not.
            None => n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| Some(f as i64)).ok_or_else(bad),
        },
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn wait_field(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>, JobError> {
    match int_field(obj, name)? {
        None => Ok(None),
        Some(ms) => u64::try_from(ms)
            .ok()
            .filter(|&ms| ms <= MAX_BATCH_START_WAIT_MS)
            .map(Some)
            .ok_or_else(|| JobError::bad_request(format!("rolling_config.{name} must be between 0 and {MAX_BATCH_START_WAIT_MS}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(expr: &str, total: usize) -> Vec<usize> {
        parse(expr).unwrap().batches(total)
    }

    fn code(r: Result<impl std::fmt::Debug, JobError>) -> i32 {
        r.unwrap_err().code.0
    }

    #[test]
    fn spec_examples() {
        assert_eq!(batches("10%", 100), vec![10; 10]);
        assert_eq!(batches("1 10 100%", 50), vec![1, 10, 39]);
        assert_eq!(batches("1 +2", 16), vec![1, 3, 5, 7]);
        assert_eq!(batches("1 +2", 20), vec![1, 3, 5, 7, 4]);
        assert_eq!(batches("1 *2", 15), vec![1, 2, 4, 8]);
        assert_eq!(batches("1 *2", 20), vec![1, 2, 4, 8, 5]);
    }

    #[test]
    fn percent_rounds_up_against_the_full_total() {
        assert_eq!(batches("10%", 95), vec![10, 10, 10, 10, 10, 10, 10, 10, 10, 5]);
        assert_eq!(batches("30%", 10), vec![3, 3, 3, 1]);
        assert_eq!(batches("33%", 7), vec![3, 3, 1]);
        // Small totals still move one host per batch.
        assert_eq!(batches("1%", 3), vec![1, 1, 1]);
        assert_eq!(batches("100%", 42), vec![42]);
        assert_eq!(batches("50% 100%", 5), vec![3, 2]);
    }

    #[test]
    fn the_last_part_repeats() {
        assert_eq!(batches("2", 7), vec![2, 2, 2, 1]);
        assert_eq!(batches("1 2 3", 12), vec![1, 2, 3, 3, 3]);
        assert_eq!(batches("+2", 12), vec![2, 4, 6]);
        assert_eq!(batches("*3", 40), vec![3, 9, 27, 1]);
        assert_eq!(batches("*1", 3), vec![1, 1, 1]);
        assert_eq!(batches("5 +1 *2", 40), vec![5, 6, 12, 17]);
        assert_eq!(batches("10% 1", 20), vec![2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn edge_totals() {
        for expr in ["10%", "1", "+1", "*2", "1 10 100%"] {
            assert!(batches(expr, 0).is_empty(), "{expr}");
            assert_eq!(batches(expr, 1), vec![1], "{expr}");
            assert_eq!(plan(expr, 0, MAX_SERIAL_BATCHES).unwrap(), Vec::<usize>::new());
        }
        assert_eq!(batches("1000", 3), vec![3]);
    }

    #[test]
    fn batches_always_cover_the_total_exactly() {
        let exprs = ["1", "3", "7%", "100%", "1 +1", "2 *2", "+3", "*5", "1 10 100%", "1% 50%", "4 +0001"];
        for expr in exprs {
            for total in [0, 1, 2, 3, 9, 10, 11, 99, 100, 101, 997, 5000] {
                let b = batches(expr, total);
                assert_eq!(b.iter().sum::<usize>(), total, "{expr} over {total}");
                assert!(b.iter().all(|&n| n >= 1), "{expr} over {total}");
            }
        }
    }

    #[test]
    fn huge_numbers_saturate_instead_of_overflowing() {
        assert_eq!(batches("2 *99999999", 10), vec![2, 8]);
        let big = format!("{} +{}", usize::MAX, usize::MAX);
        assert_eq!(batches(&big, 5), vec![5]);
        assert_eq!(batches("100%", usize::MAX), vec![usize::MAX]);
    }

    #[test]
    fn parse_keeps_text_and_parts() {
        let e = parse("  1 +2   *3 10%  ").unwrap();
        assert_eq!(e.as_str(), "1 +2   *3 10%");
        assert_eq!(e.to_string(), e.as_str());
        assert_eq!(e.parts(), &[RollingPart::Quantity(1), RollingPart::Plus(2), RollingPart::Times(3), RollingPart::Percent(10)]);
        assert_eq!("5".parse::<RollingExpr>().unwrap().parts(), &[RollingPart::Quantity(5)]);
    }

    #[test]
    fn invalid_expressions_answer_1244026() {
        let bad = [
            "",
            "   ",
            "0",
            "0%",
            "101%",
            "-1",
            "+0",
            "*0",
            "%",
            "+",
            "*",
            "10 %",
            "1.5",
            "1,2",
            "abc",
            "10%%",
            "+-1",
            "++1",
            "*+1",
            "+*1",
            "1 x",
            "50% 0",
            "１",
            "99999999999999999999999",
            "+1%",
            "1e3",
        ];
        for expr in bad {
            let err = parse(expr).unwrap_err();
            assert_eq!(err.code, INVALID_ROLLING_EXPR, "{expr:?}");
            assert_eq!(code(plan(expr, 10, MAX_SERIAL_BATCHES)), 1244026, "{expr:?}");
        }
    }

    #[test]
    fn plan_caps_the_number_of_batches() {
        assert_eq!(plan("1", 500, MAX_SERIAL_BATCHES).unwrap().len(), 500);
        let err = plan("1", 501, MAX_SERIAL_BATCHES).unwrap_err();
        assert_eq!(err.code, EXCEED_MAX_ALLOWED_BATCH_SIZE);
        assert_eq!(err.args, vec!["500".to_string()]);
        assert_eq!(plan("1", 200, MAX_PARALLEL_BATCHES).unwrap().len(), 200);
        let err = plan("1", 201, MAX_PARALLEL_BATCHES).unwrap_err();
        assert_eq!((err.code.0, err.args.clone()), (1244027, vec!["200".to_string()]));
        // Percentages can't exceed 100 batches; the cap stops early on a huge plan.
        assert_eq!(plan("1%", 1_000_000, MAX_SERIAL_BATCHES).unwrap().len(), 100);
        assert_eq!(code(plan("1", usize::MAX, MAX_SERIAL_BATCHES)), 1244027);
        assert_eq!(code(plan("1", 3, 0)), 1244027);
    }

    #[test]
    fn config_defaults_to_serial_pause_on_failure() {
        let c = RollingConfig::from_json(&json!({"expression": "1 10 100%"})).unwrap();
        assert!(matches!(&c.by, RollingBy::Hosts(e) if e.as_str() == "1 10 100%"));
        assert_eq!(c.mode, RollingMode::PauseOnFailure);
        assert_eq!(c.execution, RollingExecution::Serial);
        assert_eq!(c.max_batches(), 500);
        assert_eq!(c.plan(30).unwrap(), vec![1, 10, 19]);
        assert_eq!(c.to_json(), json!({"expression": "1 10 100%", "mode": 1, "type": 1, "execution_mode": 1}));
    }

    #[test]
    fn config_reads_ints_given_as_strings() {
        let c = RollingConfig::from_json(&json!({
            "expression": "2", "mode": "3", "type": " 1 ", "execution_mode": 2.0,
            "batch_start_wait_fixed_ms": "1000", "batch_start_wait_random_min_ms": 0,
            "batch_start_wait_random_max_ms": "3600000", "file_source": null
        }))
        .unwrap();
        assert_eq!(c.mode, RollingMode::ManualConfirm);
        let delays = StaggerDelays { fixed_ms: 1000, random_min_ms: 0, random_max_ms: 3_600_000 };
        assert_eq!(c.execution, RollingExecution::Parallel(delays));
        assert_eq!(c.max_batches(), 200);
        assert_eq!(RollingConfig::from_json(&c.to_json()).unwrap(), c);
        let absent = RollingConfig::from_json(&json!({"expression": "2", "mode": "", "execution_mode": null})).unwrap();
        assert_eq!((absent.mode, absent.execution), (RollingMode::PauseOnFailure, RollingExecution::Serial));
    }

    #[test]
    fn config_serial_ignores_but_still_range_checks_waits() {
        let c = RollingConfig::from_json(&json!({"expression": "1", "mode": 2, "batch_start_wait_fixed_ms": 5})).unwrap();
        assert_eq!((c.mode, c.execution), (RollingMode::IgnoreFailure, RollingExecution::Serial));
        let err = RollingConfig::from_json(&json!({"expression": "1", "batch_start_wait_fixed_ms": -1})).unwrap_err();
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
    }

    #[test]
    fn config_bad_values_answer_1240003_with_the_field() {
        let parallel = |extra: Value| {
            let mut v = json!({
                "expression": "1", "execution_mode": 2, "batch_start_wait_fixed_ms": 0,
                "batch_start_wait_random_min_ms": 0, "batch_start_wait_random_max_ms": 0
            });
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let cases = [
            (json!([]), "rolling_config must be an object"),
            (json!(null), "rolling_config must be an object"),
            (json!({"expression": "1", "mode": 0}), "rolling_config.mode must be 1, 2 or 3"),
            (json!({"expression": "1", "mode": "x"}), "rolling_config.mode must be an integer"),
            (json!({"expression": "1", "mode": 1.5}), "rolling_config.mode must be an integer"),
            (json!({"expression": "1", "mode": true}), "rolling_config.mode must be an integer"),
            (json!({"expression": "1", "type": 3}), "rolling_config.type must be 1 or 2"),
            (json!({"expression": "1", "execution_mode": 0}), "rolling_config.execution_mode must be 1 or 2"),
            (
                parallel(json!({"batch_start_wait_fixed_ms": 3_600_001})),
                "rolling_config.batch_start_wait_fixed_ms must be between 0 and 3600000",
            ),
            (
                parallel(json!({"batch_start_wait_random_min_ms": "-5"})),
                "rolling_config.batch_start_wait_random_min_ms must be between 0 and 3600000",
            ),
            (
                parallel(json!({"batch_start_wait_random_min_ms": 10, "batch_start_wait_random_max_ms": 9})),
                "rolling_config.batch_start_wait_random_min_ms must not be greater than batch_start_wait_random_max_ms",
            ),
            (parallel(json!({"batch_start_wait_fixed_ms": null})), "rolling_config.batch_start_wait_fixed_ms is required in parallel mode"),
            (
                parallel(json!({"batch_start_wait_random_max_ms": ""})),
                "rolling_config.batch_start_wait_random_max_ms is required in parallel mode",
            ),
        ];
        for (input, message) in cases {
            let err = RollingConfig::from_json(&input).unwrap_err();
            assert_eq!(err.code, ErrorCode::BAD_REQUEST, "{input}");
            assert_eq!(err.detail.as_deref(), Some(message), "{input}");
        }
        assert!(RollingConfig::from_json(&parallel(json!({}))).is_ok());
    }

    #[test]
    fn config_by_source_file() {
        let cfg = RollingConfig::from_json(
            &json!({"type": 2, "mode": 3, "file_source": {"max_execute_object_num_in_batch": 2, "max_file_num_of_single_execute_object": "0"}}),
        )
        .unwrap();
        assert_eq!(cfg.source_files(), Some(SourceFileLimits { max_hosts: Some(2), max_files: None }));
        assert_eq!(cfg.mode, RollingMode::ManualConfirm);
        assert_eq!(cfg.plan(10).unwrap(), Vec::<usize>::new());
        let back = RollingConfig::from_json(&cfg.to_json()).unwrap();
        assert_eq!(back, cfg, "stored form reads back");
        // Field constraints are checked first, as bean validation runs before the service.
        assert_eq!(code(RollingConfig::from_json(&json!({"type": 2, "mode": 9}))), 1240003);
        for bad in [
            json!({"type": 2}),
            json!({"type": 2, "file_source": {}, "execution_mode": 2, "batch_start_wait_fixed_ms": 0, "batch_start_wait_random_min_ms": 0, "batch_start_wait_random_max_ms": 0}),
            json!({"type": 2, "file_source": {"max_execute_object_num_in_batch": "x"}}),
        ] {
            assert_eq!(code(RollingConfig::from_json(&bad)), 1240003, "{bad}");
        }
    }

    fn picks(b: &[SourcePick]) -> Vec<(usize, usize, usize, usize, usize)> {
        b.iter().map(|p| (p.group, p.hosts.start, p.hosts.end, p.files.start, p.files.end)).collect()
    }

    #[test]
    fn source_file_batches_follow_job() {
        let limits = |h, f| SourceFileLimits { max_hosts: h, max_files: f };
        // No limits: everything in one batch.
        let all = limits(None, None).plan(&[(2, 3), (1, 1)]);
        assert_eq!(all.len(), 1);
        assert_eq!(picks(&all[0]), vec![(0, 0, 2, 0, 3), (1, 0, 1, 0, 1)]);
        // A group over a limit: host chunks × file chunks, one batch each.
        let split = limits(Some(2), Some(2)).plan(&[(3, 3)]);
        let got: Vec<_> = split.iter().map(|b| picks(b)).collect();
        assert_eq!(got, vec![vec![(0, 0, 2, 0, 2)], vec![(0, 0, 2, 2, 3)], vec![(0, 2, 3, 0, 2)], vec![(0, 2, 3, 2, 3)]]);
        // Groups within the limits are merged greedily while the sums fit.
        let greedy = limits(Some(2), None).plan(&[(1, 5), (1, 1), (1, 1), (3, 1)]);
        let got: Vec<_> = greedy.iter().map(|b| picks(b)).collect();
        assert_eq!(got, vec![vec![(0, 0, 1, 0, 5), (1, 0, 1, 0, 1)], vec![(2, 0, 1, 0, 1)], vec![(3, 0, 2, 0, 1)], vec![(3, 2, 3, 0, 1)]]);
        // One file per batch: every file of every host on its own.
        assert_eq!(limits(None, Some(1)).plan(&[(1, 3)]).len(), 3);
        assert!(limits(Some(1), Some(1)).plan(&[]).is_empty());
    }

    #[test]
    fn config_expression_errors_answer_1244026() {
        for v in [
            json!({}),
            json!({"expression": null}),
            json!({"expression": ""}),
            json!({"expression": 10}),
            json!({"expression": "0%"}),
            json!({"expression": "1 abc", "mode": 2}),
        ] {
            assert_eq!(code(RollingConfig::from_json(&v)), 1244026, "{v}");
        }
    }

    #[test]
    fn stagger_offsets_accumulate() {
        let d = StaggerDelays { fixed_ms: 100, random_min_ms: 5, random_max_ms: 9 };
        let mut asked = vec![];
        let offsets = d.offsets(4, |min, max| {
            asked.push((min, max));
            7
        });
        assert_eq!(offsets, vec![0, 107, 214, 321]);
        assert_eq!(asked, vec![(5, 9); 3]);
        assert!(d.offsets(0, |_, _| 0).is_empty());
        assert_eq!(d.offsets(1, |_, _| unreachable!()), vec![0]);
    }

    #[test]
    fn mode_codes_round_trip() {
        for m in [RollingMode::PauseOnFailure, RollingMode::IgnoreFailure, RollingMode::ManualConfirm] {
            assert_eq!(RollingMode::from_i64(i64::from(m.code())), Some(m));
        }
        assert_eq!(RollingMode::from_i64(4), None);
    }
}
