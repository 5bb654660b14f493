//! JOB's limits and defaults (spec §15).

pub const DEFAULT_TIMEOUT_SECS: i64 = 7200;
pub const MAX_TIMEOUT_SECS: i64 = 259_200;
pub const MAX_TASK_NAME_CHARS: usize = 512;
pub const MAX_SCRIPT_BYTES: usize = 16_777_215;
pub const MAX_PARAM_BYTES: usize = 65_535;
pub const MAX_SENSITIVE_PARAM_BYTES: usize = 48_128;
pub const MAX_TARGETS_PER_STEP: usize = 50_000;
pub const MAX_HOSTS_PER_LOG_QUERY: usize = 500;
pub const DEFAULT_PAGE_LENGTH: i64 = 20;
pub const MAX_PAGE_LENGTH: i64 = 1000;
pub const DEFAULT_OUTPUT_CAP: u64 = 5 * 1024 * 1024;
/// Longest creation-time range of one execution-history query (JOB's 30 days).
pub const MAX_HISTORY_RANGE_MS: i64 = 30 * 24 * 3600 * 1000;
pub const BIZ_SET_ID_RANGE: std::ops::RangeInclusive<i64> = 8_000_000..=9_999_999;

/// `start`/`length` as JOB normalises them: negative start → 0, length ≤ 0 → 20, > 1000 → 1000.
pub fn page(start: Option<i64>, length: Option<i64>) -> (i64, i64) {
    let start = start.unwrap_or(0).max(0);
    let length = match length {
        Some(l) if l > 0 => l.min(MAX_PAGE_LENGTH),
        _ => DEFAULT_PAGE_LENGTH,
    };
    (start, length)
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_defaults_and_clamps() {
        assert_eq!(super::page(None, None), (0, 20));
        assert_eq!(super::page(Some(-5), Some(0)), (0, 20));
        assert_eq!(super::page(Some(3), Some(5000)), (3, 1000));
    }
}
