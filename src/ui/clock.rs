//! Wall-clock time as people and programs read it, through the `jiff` date crate.
//!
//! RFC 3339 in UTC for JSON events and the history (`2026-11-25T03:31:47.123Z`), and the
//! local `HH:MM:SS` (and `YYYY-MM-DD HH:MM:SS`) for a terminal, in the system's time zone
//! (`TZ`, else `/etc/localtime`; UTC when neither can be read).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// Milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The instant `millis` after the epoch, clamped to what jiff can represent (years -9999
/// to 9999).
fn timestamp(millis: i64) -> Timestamp {
    Timestamp::from_millisecond(millis).unwrap_or(if millis < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time given in Unix milliseconds.
pub fn rfc3339(millis: i64) -> String {
    let t = Offset::UTC.to_datetime(timestamp(millis));
    format!(
        "{}T{}.{:03}Z",
        date(t),
        hms(t),
        t.subsec_nanosecond() / 1_000_000
    )
}

/// `YYYY-MM-DD` (formatted by hand: jiff's `strftime` would add 260 KB to the binary).
fn date(t: DateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())
}

/// `HH:MM:SS`.
fn hms(t: DateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// The system's time zone, looked up once (the lookup reads files).
fn local_zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| TimeZone::try_system().unwrap_or(TimeZone::UTC))
}

/// The local time of day, `HH:MM:SS`, for a terminal.
pub fn local_hms(t: SystemTime) -> String {
    hms(local_zone().to_datetime(timestamp(unix_millis(t))))
}

/// The local `YYYY-MM-DD HH:MM:SS` of a time given in Unix milliseconds.
pub fn local_datetime(millis: i64) -> String {
    let t = local_zone().to_datetime(timestamp(millis));
    format!("{} {}", date(t), hms(t))
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
        assert!(
            rfc3339(i64::MAX).starts_with("9999-12-"),
            "clamped to the last year"
        );
        assert!(
            rfc3339(i64::MIN).starts_with("-9999-01-0"),
            "and to the first"
        );
    }

    #[test]
    fn local_time_has_the_right_shape() {
        let s = local_hms(SystemTime::now());
        assert_eq!(s.len(), 8);
        assert_eq!(&s[2..3], ":");
        let d = local_datetime(1_795_577_507_123);
        assert_eq!(d.len(), 19, "{d}");
        assert_eq!((&d[4..5], &d[10..11], &d[13..14]), ("-", " ", ":"));
        // Within a day of the UTC date, and the same minutes and seconds in every zone
        // whose offset is whole quarter hours.
        assert!(d.starts_with("2026-11-2"), "{d}");
        assert_eq!(&d[17..], "47");
    }
}
