//! `s3`: GetObject of `BUCKET`/`KEY`, the Go original's check. It proves
//! that the pod's identity (IRSA, Pod Identity, kube2iam, ...) can read from
//! S3.
//!
//! Addressed as the AWS SDKs do: AWS's regional endpoint, the bucket as a
//! virtual host (`canary.s3.us-east-1.amazonaws.com`) unless its name cannot
//! be one (dots, capitals, underscores: then by path), or `ENDPOINT`,
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` by path; `PATH_STYLE` decides
//! instead when set. Error answers are explained by `aws::errors`.
//!
//! rust-s3 addresses and signs the request; it is sent by the client every
//! check shares ([`client::send`]), so its deadline, phases and debug trace
//! are those of any HTTP exchange.

use std::time::SystemTime;

use s3::command::Command;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::blocking::AttoRequest;
use s3::request::Request;
use s3::{Bucket, Region};

use crate::aws::credentials::{self, Env, ProcessEnv};
use crate::aws::errors::{self, Answer, Call, Object, Service};
use crate::boolean::parse_bool;
use crate::checks::Settings;
use crate::client;
use crate::contract::{Attempt, Check, Failure, Reason};
use crate::tls;

pub struct S3 {
    bucket: String,
    key: String,
    region: String,
    /// `ENDPOINT`, `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`; without one,
    /// AWS's regional endpoint.
    endpoint: Option<String>,
    path_style: bool,
    /// The variables that set the bucket, key and region, for errors that
    /// say which to change.
    vars: [String; 3],
    /// For the GetObject and the credential chain's HTTP sources; built
    /// once, following no redirect.
    agent: ureq::Agent,
}

/// Every `KUBERNARY_<NAME>_<KEY>` key this kind reads, besides
/// [`COMMON_KEYS`](super::COMMON_KEYS). The deploy/ manifests are checked
/// against it; a test below checks it against what `from_settings` reads.
pub const KEYS: &[&str] = &["BUCKET", "KEY", "REGION", "ENDPOINT", "PATH_STYLE"];

impl S3 {
    pub fn from_settings(settings: &Settings) -> Result<S3, String> {
        S3::from_settings_with(settings, &ProcessEnv)
    }

    /// `env` is where `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL` come from.
    fn from_settings_with(settings: &Settings, env: &dyn Env) -> Result<S3, String> {
        let bucket = settings.require("BUCKET", "the bucket to read from")?.to_string();
        let key = settings.or("KEY", "check").trim_start_matches('/').to_string();
        let region = settings.or("REGION", "us-east-1").to_string();
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!(
                "{}: {region:?} is not a region name (like us-east-1)",
                settings.var("REGION")
            ));
        }
        // As every AWS SDK reads them, so one setting serves all the pod's clients.
        let (endpoint, endpoint_var) = match settings.get("ENDPOINT") {
            Some(e) => (Some(e.to_string()), settings.var("ENDPOINT")),
            None => match env.var("AWS_ENDPOINT_URL_S3") {
                Some(e) => (Some(e), "AWS_ENDPOINT_URL_S3".to_string()),
                None => (env.var("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL".to_string()),
            },
        };
        let endpoint = endpoint.map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!("{endpoint_var}: {e:?} is not an http:// or https:// URL"));
            }
        }
        let path_style = match settings.get("PATH_STYLE") {
            Some(text) => parse_bool(text).ok_or_else(|| {
                format!(
                    "{}: expected true or false (or unset, to choose by the bucket's name), got {text:?}",
                    settings.var("PATH_STYLE")
                )
            })?,
            // S3-compatible services mostly want path style; AWS wants
            // virtual hosts, except for names a host name cannot carry.
            None => endpoint.is_some() || !virtual_hostable(&bucket),
        };
        if !path_style && endpoint.is_none() && !virtual_hostable(&bucket) {
            log::warn!(
                "{}=false: bucket {bucket} cannot be a virtual host of AWS (its certificate's *.s3 wildcard covers one label); expect TLS failures, or unset it",
                settings.var("PATH_STYLE")
            );
        }
        let vars = [settings.var("BUCKET"), settings.var("KEY"), settings.var("REGION")];
        let agent = client::agent(tls::root_certs(None)?, false);
        Ok(S3 { bucket, key, region, endpoint, path_style, vars, agent })
    }

    fn object(&self) -> String {
        let from =
            self.endpoint.as_deref().map(|e| format!(" from {}", client::redact(e))).unwrap_or_default();
        format!("s3://{}/{}{from}", self.bucket, self.key)
    }

    /// rust-s3's bucket for these credentials: the addressing and the
    /// signing are its, the sending ours.
    fn bucket(&self, creds: &credentials::AwsCredentials) -> Result<Box<Bucket>, Failure> {
        let endpoint = self.endpoint.clone().unwrap_or_else(|| aws_endpoint(&self.region));
        let region = Region::Custom { region: self.region.clone(), endpoint };
        let credentials = Credentials::new(
            Some(&creds.access_key),
            Some(&creds.secret_key),
            None,
            creds.session_token.as_deref(),
            None,
        )
        .map_err(|e| Failure::new(Reason::Internal, e.to_string()))?;
        let bucket = Bucket::new(&self.bucket, region, credentials)
            .map_err(|e| Failure::new(Reason::Internal, format!("bucket {}: {e}", self.bucket)))?;
        Ok(if self.path_style { bucket.with_path_style() } else { bucket })
    }

    /// GetObject as rust-s3 builds and signs it (its URL and every header of
    /// the signature, `Authorization` in the header as the pod's SDKs send
    /// it, not a presigned URL), made ready for our agent.
    fn request(
        &self,
        bucket: &Bucket,
    ) -> Result<ureq::RequestBuilder<ureq::typestate::WithoutBody>, S3Error> {
        let signed = AttoRequest::new(bucket, &self.key, Command::GetObject)?;
        let url = signed.url()?;
        let mut request = self.agent.get(url.as_str());
        // `Host` goes as signed: ureq sends the one it is given instead of
        // its own (which could differ in a port the URL parser dropped).
        for (name, value) in signed.headers()?.iter() {
            request = request.header(name, value);
        }
        Ok(request)
    }
}

/// AWS's regional S3 endpoint, as the SDKs address it now (us-east-1
/// included: not the legacy global `s3.amazonaws.com`).
fn aws_endpoint(region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://s3.{region}.{suffix}")
}

/// Whether `bucket.s3.<region>.amazonaws.com` can name the bucket: one DNS
/// label (a dot would fall outside the certificate's `*.s3.…` wildcard), 3
/// to 63 lower-case letters, digits and hyphens, a letter or digit at each
/// end. Other names are addressed by path, as the AWS SDKs do.
fn virtual_hostable(bucket: &str) -> bool {
    let b = bucket.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

impl Check for S3 {
    fn verb(&self) -> &'static str {
        "download"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        let what = format!("s3 download of {}", self.object());
        let creds = credentials::for_run(&self.agent, attempt, &what)?;
        let bucket = self.bucket(&creds)?;
        let request = self
            .request(&bucket)
            .map_err(|e| Failure::new(Reason::Internal, format!("{what}: signing the request: {e}")))?;
        // No redirect is followed (S3's wrong-region 301 has no Location
        // anyway): the answer itself says where the bucket is. A 2xx passes
        // with at most client::BODY_LIMIT of the object read: a KEY that
        // names a large object proves the same as a small one.
        let reply = client::send(request, &what, attempt)?;
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        let call = Call {
            service: Service::S3,
            what: &what,
            region: &self.region,
            region_var: &self.vars[2],
            credentials: &creds,
            object: Some(Object {
                bucket: &self.bucket,
                key: &self.key,
                bucket_var: &self.vars[0],
                key_var: &self.vars[1],
            }),
        };
        let answer = Answer {
            status: reply.status,
            date: reply.header("date"),
            bucket_region: reply.header("x-amz-bucket-region"),
            body: &reply.body,
        };
        Err(errors::explain(&call, &answer, SystemTime::now()))
    }
}

#[cfg(test)]
mod keys_tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn keys_are_what_from_settings_reads() {
        crate::tls::install_crypto_provider();
        let env: HashMap<String, String> = [
            ("KUBERNARY_X_BUCKET", "b"),
            ("KUBERNARY_X_KEY", "k"),
            ("KUBERNARY_X_REGION", "eu-west-1"),
            ("KUBERNARY_X_ENDPOINT", "http://127.0.0.1:1"),
            ("KUBERNARY_X_PATH_STYLE", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = Settings::new("x", &env);
        S3::from_settings(&settings).unwrap();
        let mut read = settings.keys_read();
        let mut keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
        read.sort();
        keys.sort();
        assert_eq!(read, keys);
    }
}

#[cfg(test)]
mod addressing_tests {
    use std::collections::HashMap;

    use super::*;

    fn s3(settings: &[(&str, &str)], env: &[(&str, &str)]) -> Result<S3, String> {
        crate::tls::install_crypto_provider();
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        S3::from_settings_with(&Settings::new("s3", &map(settings)), &map(env))
    }

    #[test]
    fn names_a_host_cannot_carry_are_addressed_by_path() {
        for good in ["canary", "my-bucket-1", "abc"] {
            assert!(virtual_hostable(good), "{good}");
        }
        for bad in ["my.bucket", "My_Bucket", "ab", "-x-", "UPPER", &"a".repeat(64)] {
            assert!(!virtual_hostable(bad), "{bad}");
        }
        let dotted = s3(&[("KUBERNARY_S3_BUCKET", "my.bucket")], &[]).unwrap();
        assert!(dotted.path_style && dotted.endpoint.is_none());
        let plain = s3(&[("KUBERNARY_S3_BUCKET", "canary")], &[]).unwrap();
        assert!(!plain.path_style);
        assert_eq!(aws_endpoint("us-east-1"), "https://s3.us-east-1.amazonaws.com");
        assert_eq!(aws_endpoint("cn-north-1"), "https://s3.cn-north-1.amazonaws.com.cn");
    }

    /// What goes to the agent is what rust-s3 signed: one `Host`, the one
    /// in the signature, even where the URL parser drops a default port
    /// (`:443`) that the signed `Host` keeps; every signed header is sent.
    #[test]
    fn the_request_carries_the_headers_rust_s3_signed() {
        let check = s3(
            &[("KUBERNARY_S3_BUCKET", "canary"), ("KUBERNARY_S3_ENDPOINT", "https://minio.example:443")],
            &[],
        )
        .unwrap();
        let creds = credentials::AwsCredentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "secret".into(),
            session_token: Some("token".into()),
            source: credentials::Source::Env,
            expires: None,
        };
        let request = check.request(&check.bucket(&creds).unwrap()).unwrap();
        assert_eq!(request.uri_ref().unwrap().to_string(), "https://minio.example/canary/check");
        let headers = request.headers_ref().unwrap();
        let hosts: Vec<_> = headers.get_all("host").iter().collect();
        assert_eq!(hosts, ["minio.example:443"]);
        let auth = headers.get("authorization").unwrap().to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        let signed = auth.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap();
        for name in signed.split(';') {
            assert!(headers.contains_key(name), "{name} is signed but not sent");
        }
        assert!(signed.contains("host") && signed.contains("x-amz-security-token"), "{signed}");
        assert_eq!(headers.get("x-amz-security-token").unwrap(), "token");
    }

    #[test]
    fn path_style_and_endpoints_from_the_sdk_variables() {
        let forced =
            s3(&[("KUBERNARY_S3_BUCKET", "canary"), ("KUBERNARY_S3_PATH_STYLE", "true")], &[]).unwrap();
        assert!(forced.path_style);
        let off = s3(
            &[
                ("KUBERNARY_S3_BUCKET", "canary"),
                ("KUBERNARY_S3_ENDPOINT", "http://127.0.0.1:9"),
                ("KUBERNARY_S3_PATH_STYLE", "0"),
            ],
            &[],
        )
        .unwrap();
        assert!(!off.path_style, "an S3-compatible service that wants virtual hosts");
        let err =
            s3(&[("KUBERNARY_S3_BUCKET", "canary"), ("KUBERNARY_S3_PATH_STYLE", "auto")], &[]).err().unwrap();
        assert!(err.starts_with("KUBERNARY_S3_PATH_STYLE: expected true or false"), "{err}");

        let both =
            [("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1/"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:2")];
        let from_env = s3(&[("KUBERNARY_S3_BUCKET", "canary")], &both).unwrap();
        assert_eq!(from_env.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert!(from_env.path_style);
        let general = s3(&[("KUBERNARY_S3_BUCKET", "canary")], &both[1..]).unwrap();
        assert_eq!(general.endpoint.as_deref(), Some("http://127.0.0.1:2"));
        let ours =
            s3(&[("KUBERNARY_S3_BUCKET", "canary"), ("KUBERNARY_S3_ENDPOINT", "http://127.0.0.1:3")], &both)
                .unwrap();
        assert_eq!(ours.endpoint.as_deref(), Some("http://127.0.0.1:3"), "the check's own key wins");
        let err =
            s3(&[("KUBERNARY_S3_BUCKET", "canary")], &[("AWS_ENDPOINT_URL", "s3.local")]).err().unwrap();
        assert!(err.starts_with("AWS_ENDPOINT_URL: \"s3.local\" is not an http"), "{err}");
        let err =
            s3(&[("KUBERNARY_S3_BUCKET", "canary"), ("KUBERNARY_S3_REGION", "eu west")], &[]).err().unwrap();
        assert!(err.starts_with("KUBERNARY_S3_REGION: \"eu west\" is not a region name"), "{err}");
    }
}
