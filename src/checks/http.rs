//! `http`: GET `URL` and judge the answer's status against `EXPECT_STATUS`.
//!
//! Keys (`KUBERNARY_<NAME>_<KEY>`):
//! - `URL` (required): an `http://` or `https://` URL. Credentials in it
//!   (`https://user:pass@host/`) are sent as basic auth and shown as `***`.
//! - `EXPECT_STATUS` (default `2xx`): `200`, a class `2xx`, a range
//!   `200-399`, or a comma list of these (`200,204,3xx`).
//! - `FOLLOW_REDIRECTS` (default `false`): without it a 3xx is the answer,
//!   judged like any other status.
//! - `CA_FILE`: a PEM file of extra CAs to trust, beside the built-in public
//!   roots and `SSL_CERT_FILE`.
//!
//! Reasons: a status outside `EXPECT_STATUS` is `denied` for 401 and 403,
//! `not_found` for 404 and `http_status` otherwise, as for `s3`; transport
//! failures are `dns`, `connect`, `tls` or `timeout` (see `client::classify`).
//! The attempt's deadline bounds the whole exchange: resolve, connect, TLS,
//! headers and body.

use std::fmt;

use crate::checks::Settings;
use crate::client;
use crate::client::redact;
use crate::contract::{Attempt, Check, Failure, Reason};
use crate::tls;

/// The keys this kind reads besides [`COMMON_KEYS`](super::COMMON_KEYS).
pub const KEYS: &[&str] = &["URL", "EXPECT_STATUS", "FOLLOW_REDIRECTS", "CA_FILE"];

pub struct Http {
    url: String,
    /// The URL for messages: a password in it is replaced by `***`.
    shown: String,
    expect: ExpectStatus,
    follow_redirects: bool,
    /// `KUBERNARY_<NAME>_FOLLOW_REDIRECTS`, for the hint on a 3xx.
    follow_var: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn from_settings(settings: &Settings) -> Result<Http, String> {
        let url = settings.require("URL", "the http:// or https:// URL to GET")?.to_string();
        check_url(&settings.var("URL"), &url)?;
        let expect = match settings.get("EXPECT_STATUS") {
            None => ExpectStatus::default(),
            Some(text) => {
                ExpectStatus::parse(text).map_err(|e| format!("{}: {e}", settings.var("EXPECT_STATUS")))?
            }
        };
        let follow_redirects = settings.flag("FOLLOW_REDIRECTS", false)?;
        let roots = roots(settings)?;
        Ok(Http {
            shown: redact(&url),
            url,
            expect,
            follow_redirects,
            follow_var: settings.var("FOLLOW_REDIRECTS"),
            agent: client::agent(roots, follow_redirects),
        })
    }
}

impl Check for Http {
    fn verb(&self) -> &'static str {
        "request"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        let what = format!("GET {}", self.shown);
        let reply =
            client::send(self.agent.get(&self.url), &what, attempt).map_err(|f| name_timeout(f, &what))?;
        attempt.note("status_code", reply.status);
        if self.expect.matches(reply.status) {
            return Ok(());
        }
        let mut message = format!("{what}: {}, want {}", status_text(reply.status), self.expect);
        if (300..400).contains(&reply.status) {
            if self.follow_redirects {
                message.push_str(" (still a redirect after following 10)");
            } else {
                message.push_str(&format!(" (a redirect: set {}=true to follow it)", self.follow_var));
            }
        }
        Err(Failure::new(Reason::for_status(reply.status), message))
    }
}

/// `GET <url>: timed out after 2s` rather than a bare `timed out after 2s`.
pub(crate) fn name_timeout(failure: Failure, what: &str) -> Failure {
    if failure.reason == Reason::Timeout && !failure.message.starts_with(what) {
        failure.context(what)
    } else {
        failure
    }
}

/// `503 Service Unavailable`.
pub(crate) fn status_text(status: u16) -> String {
    match ureq::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()) {
        Some(text) => format!("{status} {text}"),
        None => status.to_string(),
    }
}

/// Built-in roots and `SSL_CERT_FILE`, plus the check's `CA_FILE`; a bad
/// `CA_FILE` is named in the error.
pub(crate) fn roots(settings: &Settings) -> Result<tls::Roots, String> {
    let var = settings.var("CA_FILE");
    tls::root_certs(settings.get("CA_FILE").map(|path| (var.as_str(), path)))
}

/// Accepts an absolute `http://` or `https://` URL with a host, or says
/// what is wrong with it, naming `var`.
pub(crate) fn check_url(var: &str, url: &str) -> Result<(), String> {
    let shown = redact(url);
    if !url.contains("://") {
        return Err(format!("{var}: {shown:?} is not an http:// or https:// URL"));
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{var}: {shown:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{var}: {shown:?} is not an http:// or https:// URL")),
    }
    if uri.host().map_or(true, str::is_empty) {
        return Err(format!("{var}: {shown:?} has no host"));
    }
    Ok(())
}

/// Which statuses pass: a list of inclusive ranges, kept with the text the
/// operator wrote for messages (`want 200-399`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectStatus {
    ranges: Vec<(u16, u16)>,
    text: String,
}

impl Default for ExpectStatus {
    fn default() -> Self {
        ExpectStatus { ranges: vec![(200, 299)], text: "2xx".into() }
    }
}

impl ExpectStatus {
    pub fn parse(text: &str) -> Result<ExpectStatus, String> {
        let mut ranges = Vec::new();
        let mut shown = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("{text:?} has an empty item"));
            }
            let range = parse_item(item).ok_or_else(|| {
                format!(
                    "{item:?} is not a status (200), a class (2xx) or a range (200-399); \
                     a comma list of these is allowed"
                )
            })?;
            ranges.push(range);
            shown.push(item.to_ascii_lowercase());
        }
        Ok(ExpectStatus { ranges, text: shown.join(",") })
    }

    pub fn matches(&self, status: u16) -> bool {
        self.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

impl fmt::Display for ExpectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_item(item: &str) -> Option<(u16, u16)> {
    let code = |s: &str| s.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    let lower = item.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let digit = class.parse::<u16>().ok().filter(|d| (1..=5).contains(d))?;
        if class.len() != 1 {
            return None;
        }
        return Some((digit * 100, digit * 100 + 99));
    }
    if let Some((lo, hi)) = item.split_once('-') {
        let (lo, hi) = (code(lo)?, code(hi)?);
        return (lo <= hi).then_some((lo, hi));
    }
    code(item).map(|c| (c, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn expect_status_forms() {
        let e = ExpectStatus::parse("200").unwrap();
        assert!(e.matches(200) && !e.matches(201));
        let e = ExpectStatus::parse("2XX").unwrap();
        assert!(e.matches(200) && e.matches(299) && !e.matches(300));
        assert_eq!(e.to_string(), "2xx");
        let e = ExpectStatus::parse("200-399").unwrap();
        assert!(e.matches(302) && !e.matches(400) && !e.matches(199));
        let e = ExpectStatus::parse("204, 3xx,401-403").unwrap();
        assert!(e.matches(204) && e.matches(301) && e.matches(403) && !e.matches(200));
        assert_eq!(e.to_string(), "204,3xx,401-403");
        assert_eq!(ExpectStatus::default().to_string(), "2xx");
        for bad in ["", "abc", "6xx", "0xx", "20x", "22xx", "99", "600", "399-200", "200,", "2 00"] {
            assert!(ExpectStatus::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        assert!(check_url("V", "https://localhost:8443/healthz").is_ok());
        assert!(check_url("V", "http://[::1]:80/").is_ok());
        let err = check_url("V", "localhost:80").unwrap_err();
        assert!(err.starts_with("V: "), "{err}");
        assert!(check_url("V", "ftp://host/").unwrap_err().contains("http://"));
        assert!(check_url("V", "not a url").is_err());
        assert_eq!(redact("https://me:s3cret@host:1/p?q=1"), "https://***@host:1/p?q=***");
        assert_eq!(
            redact("https://ghp_TOKEN@host/x?X-Amz-Signature=SIG&access_token=AT#frag"),
            "https://***@host/x?X-Amz-Signature=***&access_token=***"
        );
        assert_eq!(redact("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        let err = check_url("V", "ftp://me:s3cret@host/").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn presigned_urls_keep_their_signatures_to_themselves() {
        // Every query value is hidden: which ones are secret is not ours to guess.
        assert_eq!(
            redact("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F2026&X-Amz-Expires=60&X-Amz-Signature=abc123"),
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Expires=***&X-Amz-Signature=***"
        );
        assert_eq!(
            redact("https://a.blob.core.windows.net/c/b?sv=2022&sig=xyz"),
            "https://a.blob.core.windows.net/c/b?sv=***&sig=***"
        );
    }

    #[test]
    fn settings_errors_name_the_variable() {
        crate::tls::install_crypto_provider();
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let build = |pairs: &[(&str, &str)]| {
            let env = env(pairs);
            Http::from_settings(&Settings::new("web", &env)).err()
        };
        assert!(build(&[]).unwrap().starts_with("KUBERNARY_WEB_URL is not set"));
        assert!(build(&[("KUBERNARY_WEB_URL", "localhost")]).unwrap().starts_with("KUBERNARY_WEB_URL: "));
        assert!(build(&[("KUBERNARY_WEB_URL", "http://localhost/"), ("KUBERNARY_WEB_EXPECT_STATUS", "ok")])
            .unwrap()
            .starts_with("KUBERNARY_WEB_EXPECT_STATUS: "));
        assert!(build(&[
            ("KUBERNARY_WEB_URL", "http://localhost/"),
            ("KUBERNARY_WEB_CA_FILE", "/nonexistent/ca.pem")
        ])
        .unwrap()
        .starts_with("KUBERNARY_WEB_CA_FILE: cannot read CA file /nonexistent/ca.pem"));
        assert!(build(&[("KUBERNARY_WEB_URL", "http://localhost/")]).is_none());
    }

    #[test]
    fn statuses_read_well() {
        assert_eq!(status_text(503), "503 Service Unavailable");
        assert_eq!(status_text(299), "299");
        assert_eq!(Reason::for_status(403), Reason::Denied);
        assert_eq!(Reason::for_status(404), Reason::NotFound);
        assert_eq!(Reason::for_status(500), Reason::HttpStatus);
    }
}
