//! Wall-clock helpers: epoch milliseconds and JOB's `yyyyMMddHHmmssSSS` name suffix (UTC).

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `yyyyMMddHHmmssSSS` of an epoch-millisecond instant, in UTC.
pub fn compact_stamp(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}{milli:03}")
}

/// `yyyy-MM-dd HH:mm:ss` in UTC, for people.
pub fn human(ms: i64) -> String {
    let s = compact_stamp(ms);
    format!("{}-{}-{} {}:{}:{}", &s[0..4], &s[4..6], &s[6..8], &s[8..10], &s[10..12], &s[12..14])
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps() {
        assert_eq!(super::compact_stamp(0), "19700101000000000");
        assert_eq!(super::compact_stamp(1_521_100_521_303), "20180315075521303");
        assert_eq!(super::human(1_521_100_521_303), "2018-03-15 07:55:21");
    }
}
