//! The one timestamp helper of the model crate: `YYYY-MM-DD HH:MM UTC` from the system clock,
//! the format of the wisdom file's `measured` field and of the results' provenance lines.
//! Hand-written because one civil-date conversion is all the workspace needs (no date crate).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as `YYYY-MM-DD HH:MM UTC` (1970-01-01 00:00 UTC if the clock is before the epoch).
pub fn now_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// `secs` after the Unix epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_from_unix(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), exact for every u64 day count in i64.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let cases = [
            (0, "1970-01-01 00:00 UTC"),
            // The last second of the first day.
            (86_399, "1970-01-01 23:59 UTC"),
            // 2000-02-29 (a leap day of a century leap year) 12:34:56.
            (951_827_696, "2000-02-29 12:34 UTC"),
            // 2026-12-01 08:41:45, the date of a commit of this repository.
            (1_796_114_505, "2026-12-01 08:41 UTC"),
        ];
        for (secs, want) in cases {
            assert_eq!(utc_from_unix(secs), want, "{secs} s");
        }
    }

    #[test]
    fn now_has_the_format() {
        let s = now_utc();
        assert_eq!(s.len(), "YYYY-MM-DD HH:MM UTC".len(), "{s}");
        assert!(s.ends_with(" UTC") && s.as_bytes()[4] == b'-' && s.as_bytes()[13] == b':', "{s}");
    }
}
