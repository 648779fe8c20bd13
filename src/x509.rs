//! The few fields of an X.509 certificate a person debugging TLS asks for:
//! who it names, who issued it, and when it expires.
//!
//! rustls verifies certificates but shows nothing of them, and a full X.509
//! parser (x509-parser and its nom stack) would be most of a crate for three
//! fields. A certificate is DER (X.690), whose tag-length-value framing
//! takes a few lines to walk: read just far enough into `tbsCertificate`
//! (RFC 5280 §4.1) for the issuer, validity and subject, and give up with
//! `None` on anything unexpected. What is read is shown, never trusted:
//! rustls has already verified the certificate by the time it is read.

use std::fmt;
use std::time::SystemTime;

use time::{Date, Month, PrimitiveDateTime, Time};

/// What the debug trace shows of a peer's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `CN=localhost, O=Example`: the attributes in the certificate's order.
    pub subject: String,
    pub issuer: String,
    pub not_after: SystemTime,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expires = crate::clock::rfc3339(self.not_after);
        write!(f, "{}, issued by {}, expires {expires}", self.subject, self.issuer)
    }
}

/// Reads a DER certificate, or `None` if it is not one this reader knows.
pub fn summarize(der: &[u8]) -> Option<Summary> {
    let (certificate, _) = Der::new(der).expect(SEQUENCE)?;
    let (tbs, _) = certificate.expect(SEQUENCE)?;
    // version [0] EXPLICIT is absent from v1 certificates.
    let tbs = match tbs.peek() {
        Some(VERSION) => tbs.skip()?,
        _ => tbs,
    };
    let tbs = tbs.skip()?; // serialNumber
    let tbs = tbs.skip()?; // signature algorithm
    let (issuer, tbs) = tbs.expect(SEQUENCE)?;
    let (validity, tbs) = tbs.expect(SEQUENCE)?;
    let (subject, _) = tbs.expect(SEQUENCE)?;
    let validity = validity.skip()?; // notBefore
    let (tag, not_after, _) = validity.next()?;
    Some(Summary { subject: name(subject)?, issuer: name(issuer)?, not_after: time(tag, not_after)? })
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The rest of a DER value's contents, read element by element.
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der(bytes)
    }

    fn peek(self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element: its tag, its contents, and what follows it.
    fn next(self) -> Option<(u8, &'a [u8], Der<'a>)> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            short @ 0..=0x7f => (usize::from(short), rest),
            // Long form: the low bits count the length's bytes. Four are
            // more than any certificate needs.
            long @ 0x81..=0x84 => {
                let count = usize::from(long & 0x7f);
                let (bytes, rest) = (rest.get(..count)?, rest.get(count..)?);
                (bytes.iter().fold(0usize, |len, b| len << 8 | usize::from(*b)), rest)
            }
            _ => return None,
        };
        Some((tag, rest.get(..len)?, Der(rest.get(len..)?)))
    }

    fn expect(self, want: u8) -> Option<(Der<'a>, Der<'a>)> {
        let (tag, contents, rest) = self.next()?;
        (tag == want).then_some((Der(contents), rest))
    }

    fn skip(self) -> Option<Der<'a>> {
        self.next().map(|(_, _, rest)| rest)
    }
}

/// A Name (a sequence of sets of type-value pairs) as `CN=x, O=y`.
fn name(mut rdns: Der) -> Option<String> {
    let mut parts = Vec::new();
    while rdns.peek().is_some() {
        let (mut set, rest) = rdns.expect(SET)?;
        rdns = rest;
        while set.peek().is_some() {
            let (pair, rest) = set.expect(SEQUENCE)?;
            set = rest;
            let (oid, pair) = pair.expect(OID)?;
            let (_, value, _) = pair.next()?;
            let label = match oid.0 {
                [0x55, 0x04, 0x03] => "CN".to_string(),
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                [0x55, 0x04, 0x0a] => "O".to_string(),
                [0x55, 0x04, 0x0b] => "OU".to_string(),
                other => dotted(other)?,
            };
            // The string types certificates use (UTF8String, PrintableString,
            // IA5String, ...) are ASCII-compatible; BMPString is shown lossily.
            parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
        }
    }
    Some(if parts.is_empty() { "(no name)".to_string() } else { parts.join(", ") })
}

/// An object identifier in dotted form, for attributes without a short name.
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut arcs = vec![u64::from(first / 40).min(2), u64::from(first) - 40 * u64::from(first / 40).min(2)];
    let mut arc = 0u64;
    for b in rest {
        arc = arc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    Some(arcs.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 allows.
fn time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let digits = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 12) => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (digits(0..4)?, 4),
        _ => return None,
    };
    let field = |at: usize| digits(rest + at..rest + at + 2).and_then(|v| u8::try_from(v).ok());
    let date = Date::from_calendar_date(i32::from(year), Month::try_from(field(0)?).ok()?, field(2)?).ok()?;
    let time = Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc().into())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    fn cert(configure: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        configure(&mut params);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_subject_issuer_and_expiry_in_both_time_forms() {
        let utc = cert(|p| {
            p.distinguished_name.push(DnType::CountryName, "DE");
            p.distinguished_name.push(DnType::OrganizationName, "Example AG");
            p.distinguished_name.push(DnType::CommonName, "canary.example.com");
            p.not_after = rcgen::date_time_ymd(2031, 7, 4);
        });
        let summary = summarize(&utc).unwrap();
        assert_eq!(summary.subject, "C=DE, O=Example AG, CN=canary.example.com");
        assert_eq!(summary.issuer, summary.subject, "self-signed");
        assert_eq!(crate::clock::rfc3339(summary.not_after), "2031-07-04T00:00:00Z");

        // From 2050 on, RFC 5280 requires GeneralizedTime.
        let generalized = cert(|p| {
            p.distinguished_name.push(DnType::CommonName, "far");
            p.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 5]), "serial-7");
            p.not_after = rcgen::date_time_ymd(2101, 1, 31);
        });
        let summary = summarize(&generalized).unwrap();
        assert_eq!(summary.subject, "CN=far, 2.5.4.5=serial-7");
        assert_eq!(crate::clock::rfc3339(summary.not_after), "2101-01-31T00:00:00Z");
        assert_eq!(
            summary.to_string(),
            "CN=far, 2.5.4.5=serial-7, issued by CN=far, 2.5.4.5=serial-7, expires 2101-01-31T00:00:00Z"
        );
    }

    #[test]
    fn anything_else_is_none_not_a_panic() {
        let good = cert(|p| p.distinguished_name.push(DnType::CommonName, "x"));
        assert!(summarize(&good).is_some());
        // Every truncation, and every single-byte corruption of the framing.
        for len in 0..good.len() {
            let _ = summarize(&good[..len]);
        }
        for at in 0..good.len().min(200) {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            let _ = summarize(&bad);
        }
        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(b"\x30\x85\x00\x00\x00\x00\x01"), None, "a length past four bytes");
        assert_eq!(
            time(UTC_TIME, b"991231235959Z").map(crate::clock::rfc3339).as_deref(),
            Some("1999-12-31T23:59:59Z")
        );
        assert_eq!(
            time(UTC_TIME, b"491231235959Z").map(crate::clock::rfc3339).as_deref(),
            Some("2049-12-31T23:59:59Z")
        );
        assert_eq!(time(UTC_TIME, b"991331235959Z"), None, "month 13");
        assert_eq!(time(GENERALIZED_TIME, b"20991231235959"), None, "no zone");
    }
}
