//! Error answers exactly as S3 and STS document them (status, headers, XML
//! body), for a `WebServer` route: what the s3 and identity checks must turn
//! into errors that name the fix.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Route;

/// An S3 error: `<Error><Code>…</Code><Message>…</Message>{extra}
/// <RequestId>…</RequestId><HostId>…</HostId></Error>` with S3's headers
/// (`x-amz-request-id`, `x-amz-id-2`, `Date`) plus `headers`.
pub fn s3_error(status: u16, code: &str, message: &str, extra: &str, headers: &[(&str, &str)]) -> Route {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}<RequestId>4442587FB7D0A2F9</RequestId><HostId>ZjQ0NTg3RkI3RDBBMkY5</HostId></Error>"
    );
    aws_route(status, "application/xml", body, headers)
}

/// An STS (query API) error: `<ErrorResponse>` with `Type`, `Code`,
/// `Message` and a `RequestId`, as `text/xml`.
pub fn sts_error(status: u16, code: &str, message: &str, headers: &[(&str, &str)]) -> Route {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n</ErrorResponse>\n"
    );
    aws_route(status, "text/xml", body, headers)
}

fn aws_route(status: u16, content_type: &str, body: String, headers: &[(&str, &str)]) -> Route {
    let mut route = Route::new(status, &body);
    route.headers.push(("Content-Type".into(), content_type.into()));
    route.headers.push(("x-amz-request-id".into(), "4442587FB7D0A2F9".into()));
    route.headers.push(("x-amz-id-2".into(), "ZjQ0NTg3RkI3RDBBMkY5".into()));
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("date")) {
        route.headers.push(("Date".into(), http_date(SystemTime::now())));
    }
    for (name, value) in headers {
        route.headers.push((name.to_string(), value.to_string()));
    }
    route
}

/// `Tue, 01 Dec 2026 19:52:48 GMT`.
pub fn http_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let days = secs / 86_400;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let (year, month, day) = civil(days as i64);
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let rest = secs % 86_400;
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[month as usize - 1],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `20261201T195248Z`, SigV4's time.
pub fn amz_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let (year, month, day) = civil((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}
