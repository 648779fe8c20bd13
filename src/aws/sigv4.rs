//! AWS Signature Version 4, for any service (the `identity` check signs for
//! `sts`).
//!
//! Why our own: the SDK's `aws-sigv4` pulls in tokio, which this daemon does
//! not have. rust-s3's public `s3::signing` module hard-codes `s3` into the
//! credential scope (`scope_string`, `string_to_sign` and
//! `authorization_header` all build `<date>/<region>/s3/aws4_request`), takes
//! `http`/`url` types, and canonicalizes paths the S3 way (no normalization,
//! no second encoding), which is wrong for every other service. Only its
//! signing-key derivation carries over, and is used ([`signing_key`]). What
//! is left is short and is checked against AWS's published test suite below,
//! using `hmac`, `sha2` and `hex`, the crates rust-s3 already brings.
//!
//! The steps are AWS's: a canonical request, a string to sign naming the
//! credential scope, a signing key derived from the secret by a chain of
//! HMAC-SHA256s over date, region, service and `aws4_request`, and the
//! `Authorization` header. Canonical URIs follow the rules for every service
//! but S3: the path is normalized and encoded once more.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::aws::AwsCredentials;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One request as it will go on the wire.
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query as sent (`/`, `/?Param1=value1`).
    pub target: &'a str,
    /// The headers to sign, `Host` included, exactly as they will be sent.
    /// `X-Amz-Date` and `X-Amz-Security-Token` are [`sign`]'s to add.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// What [`sign`] produced.
pub struct Signed {
    /// Headers to send with the request: `X-Amz-Date`,
    /// `X-Amz-Security-Token` (with session credentials) and `Authorization`.
    pub headers: Vec<(&'static str, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

/// Signs `request` for `service` in `region` at time `at`.
pub fn sign(
    request: &Request,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    at: SystemTime,
) -> Result<Signed, String> {
    let (date_time, date) = amz_date(at);
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), normalize_value(value)))
        .collect();
    headers.push(("x-amz-date".into(), date_time.clone()));
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token".into(), normalize_value(token)));
    }
    // Sorted by name; a name given twice keeps its values in order, joined
    // with commas (a stable sort keeps them in order).
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (name, value) in &headers {
        if names.last() == Some(&name.as_str()) {
            canonical_headers.pop(); // the newline
            canonical_headers.push(',');
        } else {
            names.push(name);
            canonical_headers.push_str(name);
            canonical_headers.push(':');
        }
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed_headers = names.join(";");
    let (path, query) = request.target.split_once('?').unwrap_or((request.target, ""));
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        canonical_path(path),
        canonical_query(query),
        hex::encode(Sha256::digest(request.body)),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{date_time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(&credentials.secret_key, at, region, service)?;
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key
    );
    let mut out = vec![("X-Amz-Date", date_time)];
    if let Some(token) = &credentials.session_token {
        out.push(("X-Amz-Security-Token", token.clone()));
    }
    out.push(("Authorization", authorization));
    Ok(Signed { headers: out, canonical_request, string_to_sign, signature })
}

/// The key for the (UTC) day of `at`, region and service:
/// HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"),
/// as rust-s3 derives it for S3; only the service differs.
pub fn signing_key(secret_key: &str, at: SystemTime, region: &str, service: &str) -> Result<Vec<u8>, String> {
    // A custom region names itself as given; no endpoint is involved.
    let region = s3::Region::Custom { region: region.to_string(), endpoint: String::new() };
    s3::signing::signing_key(&::time::OffsetDateTime::from(at), secret_key, &region, service)
        .map_err(|e| format!("deriving the SigV4 signing key: {e}"))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; new_from_slice cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `("20150830T123600Z", "20150830")`, in UTC.
pub fn amz_date(at: SystemTime) -> (String, String) {
    let t = ::time::OffsetDateTime::from(at);
    let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let time = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
    (time, date)
}

/// Trimmed, with runs of spaces inside collapsed to one.
fn normalize_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `A-Z a-z 0-9 - _ . ~` as they are, every other byte as `%XX`.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok().and_then(|h| u8::from_str_radix(h, 16).ok()));
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path as sent, normalized (no empty, `.` or `..` segments) and each
/// segment encoded: an already-encoded path is encoded a second time, as
/// every service but S3 expects.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segments.iter().map(|s| uri_encode(s)).collect::<Vec<_>>().join("/"));
    if !segments.is_empty() && path.ends_with('/') {
        out.push('/');
    }
    out
}

/// Parameters sorted by name, then value, each name and value encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&percent_decode(name)), uri_encode(&percent_decode(value)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's SigV4 test suite (aws-sig-v4-test-suite, the
    //! 2015 edition): the example key pair, 20150830T123600Z, us-east-1 and
    //! the service `service`. Each expected canonical request, string to
    //! sign and signature is the suite's `.creq`, `.sts` and `.authz`.

    use std::time::Duration;

    use super::*;
    use crate::aws::Source;
    use std::time::UNIX_EPOCH;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    /// 2015-08-30T12:36:00Z.
    fn suite_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn suite_credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
            source: Source::Env,
            expires: None,
        }
    }

    fn suite_sign(
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: &str,
        token: Option<&str>,
    ) -> Signed {
        let mut headers = vec![("Host", "example.amazonaws.com")];
        headers.extend_from_slice(extra);
        sign(
            &Request { method, target, headers: &headers, body: body.as_bytes() },
            &suite_credentials(token),
            "us-east-1",
            "service",
            suite_time(),
        )
        .unwrap()
    }

    fn authorization(signed: &Signed) -> &str {
        &signed.headers.iter().find(|(n, _)| *n == "Authorization").unwrap().1
    }

    #[test]
    fn get_vanilla() {
        let s = suite_sign("GET", "/", &[], "", None);
        assert_eq!(
            s.canonical_request,
            format!("GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}")
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authorization(&s),
            format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
        assert_eq!(s.headers[0], ("X-Amz-Date", "20150830T123600Z".into()));
    }

    #[test]
    fn get_vanilla_query_order_key() {
        let s = suite_sign("GET", "/?Param1=value2&Param1=Value1", &[], "", None);
        assert_eq!(
            s.canonical_request,
            format!("GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}")
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89"
        );
        assert_eq!(s.signature, "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1");
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let s = suite_sign(
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "Param1=value1",
            None,
        );
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            authorization(&s),
            format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
        );
    }

    #[test]
    fn post_x_www_form_urlencoded_parameters() {
        let s = suite_sign(
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded; charset=utf8")],
            "Param1=value1",
            None,
        );
        assert_eq!(
            s.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(s.signature, "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe");
    }

    /// Session credentials: the token is a signed header (the suite's
    /// `post-sts-header-before`).
    #[test]
    fn post_sts_header_before() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let s = suite_sign("POST", "/", &[], "", Some(token));
        assert_eq!(
            s.canonical_request,
            format!("POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{token}\n\nhost;x-amz-date;x-amz-security-token\n{EMPTY_SHA256}")
        );
        assert_eq!(
            authorization(&s),
            format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")
        );
        assert_eq!(s.headers[1], ("X-Amz-Security-Token", token.to_string()));
    }

    /// The rest of the canonicalization rules, signature only.
    #[test]
    fn canonicalization_vectors() {
        // Name, method, target, extra headers, signature.
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "get-vanilla-query-order-key-case",
                "GET",
                "/?Param2=value2&Param1=value1",
                &[],
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            (
                "get-vanilla-query-unreserved",
                "GET",
                "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                &[],
                "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
            ),
            (
                "get-vanilla-utf8-query",
                "GET",
                "/?\u{1234}=bar",
                &[],
                "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
            ),
            (
                "get-utf8",
                "GET",
                "/\u{1234}",
                &[],
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ),
            (
                "normalize-path/get-space",
                "GET",
                "/example space/",
                &[],
                "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            ),
            (
                "get-header-value-trim",
                "GET",
                "/",
                &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
                "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
            ),
            (
                "post-vanilla-empty-query-value",
                "POST",
                "/?Param1=value1",
                &[],
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ),
        ];
        for (name, method, target, headers, signature) in cases {
            let s = suite_sign(method, target, headers, "", None);
            assert_eq!(&s.signature, signature, "{name}:\n{}", s.canonical_request);
        }
    }

    #[test]
    fn paths_are_normalized_and_encoded_again() {
        assert_eq!(canonical_path("//example//"), "/example/");
        assert_eq!(canonical_path("/example/.."), "/");
        assert_eq!(canonical_path("/./a/./b/../c"), "/a/c");
        assert_eq!(canonical_path("/a%20b"), "/a%2520b");
        assert_eq!(canonical_path(""), "/");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(amz_date(suite_time()), ("20150830T123600Z".into(), "20150830".into()));
        // A leap day, and the last second of a year.
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(amz_date(at(951_782_400)).0, "20000229T000000Z");
        assert_eq!(amz_date(at(1_735_689_599)).0, "20241231T235959Z");
    }

    #[test]
    fn the_signing_key_chain_depends_on_each_part() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let key = |at, region, service| signing_key(secret, at, region, service).unwrap();
        let day = suite_time();
        let next_day = day + Duration::from_secs(86_400);
        let sts = key(day, "us-east-1", "sts");
        assert_ne!(sts, key(day, "us-east-1", "service"));
        assert_ne!(sts, key(day, "eu-west-1", "sts"));
        assert_ne!(sts, key(next_day, "us-east-1", "sts"));
        // The day, not the time of day, is part of the key.
        assert_eq!(sts, key(day + Duration::from_secs(3_600), "us-east-1", "sts"));
    }

    /// AWS's published example of the derivation ("Examples of how to
    /// derive a signing key for Signature Version 4"): IAM in us-east-1 on
    /// 2012-02-15.
    #[test]
    fn the_signing_key_is_awss_published_example() {
        let at = UNIX_EPOCH + Duration::from_secs(1_329_264_000);
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", at, "us-east-1", "iam").unwrap();
        assert_eq!(hex::encode(key), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }
}
