//! UTC calendar time from `SystemTime`, for the places that print it: RFC
//! 3339 in `/health`, the logs and the status page. The calendar is the `time` crate's (rust-s3 compiles it in
//! anyway); this only keeps the two shapes we print in one place.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The UTC calendar fields of an instant, to the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

/// An instant as `time` sees it, to the second; before 1970 reads as 1970,
/// as the clocks we read never say.
fn datetime(at: SystemTime) -> OffsetDateTime {
    let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn utc(at: SystemTime) -> Utc {
    let t = datetime(at);
    Utc {
        year: i64::from(t.year()),
        month: u32::from(u8::from(t.month())),
        day: u32::from(t.day()),
        hour: u64::from(t.hour()),
        minute: u64::from(t.minute()),
        second: u64::from(t.second()),
    }
}

/// Reads back what [`rfc3339`] wrote (notes in a record, for the metrics and
/// the status page).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(SystemTime::from)
}

/// `2026-11-25T17:01:50Z`.
pub fn rfc3339(at: SystemTime) -> String {
    datetime(at).format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_795_453_310)), "2026-11-23T17:01:50Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_735_689_599)), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_735_689_599_999)), "2024-12-31T23:59:59Z");
        let t = utc(at(951_782_400 + 3723));
        assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), (2000, 2, 29, 1, 2, 3));
    }
}
