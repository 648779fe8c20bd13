//! What an S3 or STS error answer means, said for the person paged at night:
//! what is wrong and what to change, with the answer's own status and code
//! at the end so it can still be searched for.
//!
//! The classes that need more than the code: a bucket in another region
//! (`config`, naming the variable and the value to set), a node clock too
//! far off for SigV4 (`clock_skew`, by how much, from the server's `Date`),
//! expired credentials (which source, and when, if it said), a missing
//! bucket versus a missing key, and a denial that comes from KMS.

use std::time::{Duration, SystemTime};

use crate::aws::credentials::{AwsCredentials, Source};
use crate::aws::{describe_error, time, xml_text};
use crate::contract::{Failure, Reason};
use crate::duration::Go;

/// Who answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    S3,
    Sts,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::S3 => "S3",
            Service::Sts => "STS",
        }
    }
}

/// The request an answer is about.
pub struct Call<'a> {
    pub service: Service,
    /// `s3 download of s3://b/k`: what the message starts with.
    pub what: &'a str,
    /// The region we signed for, and the variable that sets it.
    pub region: &'a str,
    pub region_var: &'a str,
    pub credentials: &'a AwsCredentials,
    /// For S3: the bucket and key, and the variables that set them.
    pub object: Option<Object<'a>>,
}

pub struct Object<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub bucket_var: &'a str,
    pub key_var: &'a str,
}

/// An error answer: its status, the two headers that explain some of them,
/// and (the start of) its body.
pub struct Answer<'a> {
    pub status: u16,
    /// `Date`: the server's clock.
    pub date: Option<&'a str>,
    /// `x-amz-bucket-region`: where the bucket really is.
    pub bucket_region: Option<&'a str>,
    pub body: &'a str,
}

/// The failure an error answer stands for, as of `now` (when it arrived).
pub fn explain(call: &Call, answer: &Answer, now: SystemTime) -> Failure {
    let code = xml_text(answer.body, "Code").unwrap_or_default();
    let message = xml_text(answer.body, "Message").unwrap_or_default();
    let raw = describe_error(answer.status, answer.body);
    let (reason, advice) = match classify(call, answer, &code, &message, now) {
        Some(found) => found,
        None => {
            return Failure::new(Reason::for_status(answer.status), format!("{} failed: {raw}", call.what))
        }
    };
    Failure::new(reason, format!("{} failed: {advice} ({raw})", call.what))
}

fn classify(
    call: &Call,
    answer: &Answer,
    code: &str,
    message: &str,
    now: SystemTime,
) -> Option<(Reason, String)> {
    if let Some(advice) = wrong_region(call, answer, code) {
        return Some((Reason::Config, advice));
    }
    if is_clock_skew(code, message) {
        return Some((Reason::ClockSkew, clock_skew(call, answer, now)));
    }
    if code == "ExpiredToken" || code == "ExpiredTokenException" || code == "TokenRefreshRequired" {
        return Some((Reason::Credentials, expired(call.credentials, now)));
    }
    let object = call.object.as_ref();
    match (code, object) {
        ("NoSuchBucket", Some(o)) => Some((
            Reason::NotFound,
            format!("bucket {} does not exist: check {}", o.bucket, o.bucket_var),
        )),
        ("NoSuchKey", Some(o)) => Some((
            Reason::NotFound,
            format!(
                "bucket {} exists but has no object {}: upload one (any content will do) or set {} to one that exists",
                o.bucket, o.key, o.key_var
            ),
        )),
        ("AccessDenied" | "KMS.AccessDeniedException", Some(o)) if is_kms(message) || code.starts_with("KMS.") => {
            Some((
                Reason::Denied,
                format!(
                    "s3://{}/{} is encrypted with a KMS key these credentials (from {}) may not use: allow kms:Decrypt on that key to this identity",
                    o.bucket, o.key, call.credentials.source
                ),
            ))
        }
        ("InvalidAccessKeyId" | "InvalidClientTokenId", _) => Some((
            Reason::Denied,
            format!("AWS does not know the access key from {}: it is mistyped, deleted, or from another partition", call.credentials.source),
        )),
        ("SignatureDoesNotMatch", _) => Some((
            Reason::Denied,
            format!("the secret key from {} does not belong to its access key", call.credentials.source),
        )),
        ("AccessDenied", _) => Some((
            Reason::Denied,
            format!("the credentials from {} are not allowed this", call.credentials.source),
        )),
        _ => None,
    }
}

/// S3's two ways of saying the bucket is elsewhere: `301 PermanentRedirect`
/// with `x-amz-bucket-region`, and `400 AuthorizationHeaderMalformed` with
/// the region it expected in the body.
fn wrong_region(call: &Call, answer: &Answer, code: &str) -> Option<String> {
    let object = call.object.as_ref()?;
    let redirect = answer.status == 301 || code == "PermanentRedirect";
    let malformed = code == "AuthorizationHeaderMalformed";
    if !(redirect || malformed || answer.bucket_region.is_some_and(|r| r != call.region)) {
        return None;
    }
    let real = answer
        .bucket_region
        .map(str::to_string)
        .or_else(|| xml_text(answer.body, "Region"))
        .filter(|r| !r.is_empty() && r != call.region);
    match real {
        Some(real) => Some(format!(
            "bucket {} is in {real}, not {}: set {}={real}",
            object.bucket, call.region, call.region_var
        )),
        None if redirect => Some(format!(
            "bucket {} is not in {}: set {} to the bucket's region",
            object.bucket, call.region, call.region_var
        )),
        None => None,
    }
}

fn is_clock_skew(code: &str, message: &str) -> bool {
    matches!(code, "RequestTimeTooSkewed" | "RequestExpired" | "SignatureExpired")
        || (code == "SignatureDoesNotMatch"
            && (message.starts_with("Signature expired") || message.starts_with("Signature not yet current")))
}

/// By how much the node's clock is off, from the server's `Date` header
/// (or S3's `ServerTime` in the body when there is no header).
fn clock_skew(call: &Call, answer: &Answer, now: SystemTime) -> String {
    let service = call.service.name();
    let theirs = answer
        .date
        .and_then(time::parse_http_date)
        .or_else(|| xml_text(answer.body, "ServerTime").and_then(|t| time::parse_iso8601(&t)));
    let fix = "every AWS client on this node fails alike: fix its time sync (chrony, NTP)";
    let Some(theirs) = theirs else {
        return format!(
            "this node's clock is more than 5 minutes off {service}'s, too far for a signature: {fix}"
        );
    };
    let (off, side) = match now.duration_since(theirs) {
        Ok(ahead) => (ahead, "ahead of"),
        Err(behind) => (behind.duration(), "behind"),
    };
    let off = Go(Duration::from_secs(off.as_secs()));
    format!(
        "this node's clock is {off} {side} {service}'s ({} by {service}'s Date), too far for a signature: {fix}",
        crate::clock::rfc3339(theirs)
    )
}

/// Expired credentials: which source gave them, and when they expired if
/// the source said.
fn expired(credentials: &AwsCredentials, now: SystemTime) -> String {
    let source = credentials.source;
    let when = credentials
        .expires
        .as_deref()
        .map(|text| match time::parse_iso8601(text).and_then(|at| now.duration_since(at).ok()) {
            Some(ago) => format!(" at {text}, {} ago", Go(Duration::from_secs(ago.as_secs()))),
            None => format!(" (they were to expire at {text})"),
        })
        .unwrap_or_default();
    let fix = match source {
        Source::Env => "AWS_SESSION_TOKEN in the environment is never renewed: give kubernary fresh keys, or a source that renews them (IRSA, Pod Identity)",
        Source::Profile => "the session token in the shared credentials file is stale: renew the file",
        Source::WebIdentity => "they were fetched this run, so STS's clock and this node's disagree, or the role's session is too short",
        Source::Container => "the Pod Identity (or ECS) agent on this node handed out expired credentials: check the agent",
        Source::InstanceMetadata => "instance metadata (or kube2iam) handed out expired credentials: check the proxy on this node",
    };
    format!("the credentials from {source} expired{when}: {fix}")
}

/// S3 reports a missing `kms:Decrypt` as AccessDenied; the message names
/// KMS (the current wording) or the key (the older one).
fn is_kms(message: &str) -> bool {
    message.contains("kms:") || message.contains("KMS") || message.contains("customer master key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn creds(source: Source, expires: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key: "AKIA".into(),
            secret_key: "s".into(),
            session_token: None,
            source,
            expires: expires.map(str::to_string),
        }
    }

    fn s3_call<'a>(credentials: &'a AwsCredentials) -> Call<'a> {
        Call {
            service: Service::S3,
            what: "s3 download of s3://canary-bucket/check",
            region: "us-east-1",
            region_var: "KUBERNARY_S3_REGION",
            credentials,
            object: Some(Object {
                bucket: "canary-bucket",
                key: "check",
                bucket_var: "KUBERNARY_S3_BUCKET",
                key_var: "KUBERNARY_S3_KEY",
            }),
        }
    }

    fn answer<'a>(status: u16, body: &'a str) -> Answer<'a> {
        Answer { status, date: None, bucket_region: None, body }
    }

    const NOW: u64 = 1_795_453_310; // 2026-11-23T17:01:50Z

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn a_bucket_in_another_region_names_the_setting() {
        let c = creds(Source::Env, None);
        let body = "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>canary-bucket.s3.eu-west-1.amazonaws.com</Endpoint></Error>";
        let f =
            explain(&s3_call(&c), &Answer { bucket_region: Some("eu-west-1"), ..answer(301, body) }, now());
        assert_eq!(f.reason, Reason::Config);
        assert!(f.message.starts_with("s3 download of s3://canary-bucket/check failed: bucket canary-bucket is in eu-west-1, not us-east-1: set KUBERNARY_S3_REGION=eu-west-1 (301 PermanentRedirect"), "{}", f.message);
        let body = "<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region></Error>";
        let f = explain(&s3_call(&c), &answer(400, body), now());
        assert_eq!(f.reason, Reason::Config);
        assert!(f.message.contains("set KUBERNARY_S3_REGION=eu-west-1"), "{}", f.message);
    }

    #[test]
    fn clock_skew_says_by_how_much() {
        let c = creds(Source::Env, None);
        let body = "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>";
        let date = "Mon, 23 Nov 2026 16:46:50 GMT"; // 15 minutes before NOW
        let f = explain(&s3_call(&c), &Answer { date: Some(date), ..answer(403, body) }, now());
        assert_eq!(f.reason, Reason::ClockSkew);
        assert!(f.message.contains("this node's clock is 15m0s ahead of S3's"), "{}", f.message);
        let mut sts = s3_call(&c);
        sts.service = Service::Sts;
        sts.object = None;
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>Signature not yet current: 20261123T170150Z is still later than 20261123T165650Z (20261123T165150Z + 5 min.)</Message></Error></ErrorResponse>";
        let date = "Mon, 23 Nov 2026 17:11:50 GMT";
        let f = explain(&sts, &Answer { date: Some(date), ..answer(403, body) }, now());
        assert_eq!(f.reason, Reason::ClockSkew);
        assert!(f.message.contains("this node's clock is 10m0s behind STS's"), "{}", f.message);
    }

    #[test]
    fn expired_credentials_name_their_source_and_time() {
        let c = creds(Source::Container, Some("2026-11-23T16:01:50Z"));
        let body =
            "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>";
        let f = explain(&s3_call(&c), &answer(400, body), now());
        assert_eq!(f.reason, Reason::Credentials);
        assert!(
            f.message.contains("the credentials from container expired at 2026-11-23T16:01:50Z, 1h0m0s ago"),
            "{}",
            f.message
        );
        let c = creds(Source::Env, None);
        let f = explain(&s3_call(&c), &answer(400, body), now());
        assert!(f.message.contains("the credentials from env expired: AWS_SESSION_TOKEN"), "{}", f.message);
    }

    #[test]
    fn missing_bucket_missing_key_and_kms() {
        let c = creds(Source::WebIdentity, None);
        let f = explain(&s3_call(&c), &answer(404, "<Error><Code>NoSuchBucket</Code></Error>"), now());
        assert_eq!(
            (f.reason, f.message.contains("bucket canary-bucket does not exist: check KUBERNARY_S3_BUCKET")),
            (Reason::NotFound, true),
            "{}",
            f.message
        );
        let f = explain(&s3_call(&c), &answer(404, "<Error><Code>NoSuchKey</Code></Error>"), now());
        assert!(f.message.contains("bucket canary-bucket exists but has no object check"), "{}", f.message);
        let kms = "<Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:1:key/k because no identity-based policy allows the kms:Decrypt action</Message></Error>";
        let f = explain(&s3_call(&c), &answer(403, kms), now());
        assert_eq!(f.reason, Reason::Denied);
        assert!(
            f.message
                .contains("is encrypted with a KMS key these credentials (from web_identity) may not use"),
            "{}",
            f.message
        );
        let f = explain(
            &s3_call(&c),
            &answer(403, "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"),
            now(),
        );
        assert!(!f.message.contains("KMS") && f.message.contains("web_identity"), "{}", f.message);
        let f = explain(&s3_call(&c), &answer(403, "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error>"), now());
        assert!(
            f.message.contains("the secret key from web_identity does not belong to its access key"),
            "{}",
            f.message
        );
        let f = explain(&s3_call(&c), &answer(403, "<Error><Code>InvalidAccessKeyId</Code></Error>"), now());
        assert!(f.message.contains("AWS does not know the access key from web_identity"), "{}", f.message);
        let f = explain(&s3_call(&c), &answer(503, "<Error><Code>SlowDown</Code></Error>"), now());
        assert_eq!(
            (f.reason, f.message.as_str()),
            (Reason::HttpStatus, "s3 download of s3://canary-bucket/check failed: 503 SlowDown")
        );
    }
}
