//! The two ways AWS writes a time in an answer: HTTP's `Date` header (`Tue,
//! 01 Dec 2026 19:52:48 GMT`) and ISO 8601 in bodies (`Expiration`,
//! `ServerTime`: `2026-12-01T19:52:48Z`, SigV4's `20261201T195248Z`). Enough
//! parsing to say how far the node's clock is off and when credentials
//! expired, without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `Tue, 01 Dec 2026 19:52:48 GMT` (RFC 9110's IMF-fixdate, the only form
/// AWS sends).
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let mut parts = text.split_whitespace();
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let (h, m, s) = clock(parts.next()?)?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    at(year, month, day, h, m, s, 0)
}

/// `2026-12-01T19:52:48Z`, `2026-12-01T19:52:48.123Z`, `2026-12-01T19:52:48+00:00`
/// or SigV4's basic form `20261201T195248Z`.
pub fn parse_iso8601(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once('T')?;
    let (year, month, day) = match date.len() {
        8 => (date[..4].parse().ok()?, date[4..6].parse().ok()?, date[6..].parse().ok()?),
        10 if &date[4..5] == "-" && &date[7..8] == "-" => {
            (date[..4].parse().ok()?, date[5..7].parse().ok()?, date[8..].parse().ok()?)
        }
        _ => return None,
    };
    let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?;
    let (clock_text, fraction) = time.split_once('.').unwrap_or((time, ""));
    let (h, m, s) = if clock_text.len() == 6 && !clock_text.contains(':') {
        (clock_text[..2].parse().ok()?, clock_text[2..4].parse().ok()?, clock_text[4..].parse().ok()?)
    } else {
        clock(clock_text)?
    };
    let millis = match fraction {
        "" => 0,
        f if f.chars().all(|c| c.is_ascii_digit()) => format!("{f:0<3}")[..3].parse().ok()?,
        _ => return None,
    };
    at(year, month, day, h, m, s, millis)
}

fn clock(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split(':');
    let h = parts.next()?.parse().ok()?;
    let m = parts.next()?.parse().ok()?;
    let s = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((h, m, s))
}

fn at(year: i64, month: u32, day: u32, h: u64, m: u64, s: u64, millis: u64) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, the inverse of `clock::civil_from_days`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339;

    #[test]
    fn parses_what_aws_sends() {
        let t = parse_http_date("Mon, 23 Nov 2026 17:01:50 GMT").unwrap();
        assert_eq!(rfc3339(t), "2026-11-23T17:01:50Z");
        assert_eq!(rfc3339(parse_iso8601("2000-02-29T00:00:00Z").unwrap()), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(parse_iso8601("20241231T235959Z").unwrap()), "2024-12-31T23:59:59Z");
        let with_millis = parse_iso8601("2026-11-23T17:01:50.250Z").unwrap();
        assert_eq!(with_millis.duration_since(t).unwrap(), Duration::from_millis(250));
        assert_eq!(parse_iso8601("2026-11-23T17:01:50+00:00"), Some(t));
        for bad in
            ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-23T17:01:50", "Mon, 23 Nov 2026 17:01:50 PST"]
        {
            assert_eq!(parse_iso8601(bad).or_else(|| parse_http_date(bad)), None, "{bad:?}");
        }
    }
}
