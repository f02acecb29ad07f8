//! Wall-clock time as people and programs read it, without a date crate.
//!
//! RFC 3339 in UTC for JSON events and the history (`2026-11-25T03:31:47.123Z`), and the
//! local `HH:MM:SS` for timestamps on a terminal.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time given in Unix milliseconds.
pub fn rfc3339(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The local time of day, `HH:MM:SS`, for a terminal.
pub fn local_hms(t: SystemTime) -> String {
    let (_, time) = local(unix_millis(t));
    time
}

/// The local `YYYY-MM-DD HH:MM:SS` of a time given in Unix milliseconds.
pub fn local_datetime(millis: i64) -> String {
    let (date, time) = local(millis);
    format!("{date} {time}")
}

/// Local (date, time of day); UTC if the C library cannot tell the local zone.
fn local(millis: i64) -> (String, String) {
    let secs = millis.div_euclid(1000) as libc::time_t;
    // SAFETY: an all-zero `tm` is valid; localtime_r writes only into the struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if ok {
        (
            format!(
                "{:04}-{:02}-{:02}",
                tm.tm_year + 1900,
                tm.tm_mon + 1,
                tm.tm_mday
            ),
            format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec),
        )
    } else {
        let utc = rfc3339(millis);
        (utc[..10].to_owned(), utc[11..19].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_577_507_123), "2026-11-25T03:31:47.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn local_time_has_the_right_shape() {
        let s = local_hms(SystemTime::now());
        assert_eq!(s.len(), 8);
        assert_eq!(&s[2..3], ":");
    }
}
