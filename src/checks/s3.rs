//! `s3`: GetObject of `BUCKET`/`KEY`, the seed's check. It proves that the
//! pod's identity (IRSA, Pod Identity, kube2iam, ...) can read from S3.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};

use crate::aws::{self, credentials};
use crate::checks::Settings;
use crate::client;
use crate::contract::{is_tls_error, Attempt, Check, Failure, Reason};
use crate::tls;

pub struct S3 {
    bucket: String,
    key: String,
    region: String,
    endpoint: Option<String>,
    /// For the credential chain's HTTP sources; built once.
    agent: ureq::Agent,
}

/// Every `KUBERNARY_<NAME>_<KEY>` key this kind reads, besides
/// [`COMMON_KEYS`](super::COMMON_KEYS). The deploy/ manifests are checked
/// against it; a test below checks it against what `from_settings` reads.
pub const KEYS: &[&str] = &["BUCKET", "KEY", "REGION", "ENDPOINT"];

impl S3 {
    pub fn from_settings(settings: &Settings) -> Result<S3, String> {
        let bucket = settings.require("BUCKET", "the bucket to read from")?.to_string();
        let key = settings.or("KEY", "check").trim_start_matches('/').to_string();
        let region = settings.or("REGION", "us-east-1").to_string();
        let endpoint = settings.get("ENDPOINT").map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!("{}: {e:?} is not an http:// or https:// URL", settings.var("ENDPOINT")));
            }
        }
        if endpoint.is_none() && region.parse::<Region>().is_err() {
            return Err(format!("{}: unknown region {region:?}", settings.var("REGION")));
        }
        let agent = client::agent(tls::root_certs(None)?, false);
        Ok(S3 { bucket, key, region, endpoint, agent })
    }

    fn object(&self) -> String {
        let from =
            self.endpoint.as_deref().map(|e| format!(" from {}", client::redact(e))).unwrap_or_default();
        format!("s3://{}/{}{from}", self.bucket, self.key)
    }

    fn bucket(&self, creds: &credentials::AwsCredentials, timeout: Duration) -> Result<Box<Bucket>, Failure> {
        let region = match &self.endpoint {
            Some(endpoint) => Region::Custom { region: self.region.clone(), endpoint: endpoint.clone() },
            None => self
                .region
                .parse()
                .map_err(|e| Failure::new(Reason::Internal, format!("region {}: {e}", self.region)))?,
        };
        let credentials = Credentials::new(
            Some(&creds.access_key),
            Some(&creds.secret_key),
            None,
            creds.session_token.as_deref(),
            None,
        )
        .map_err(|e| Failure::new(Reason::Internal, e.to_string()))?;
        let mut bucket = Bucket::new(&self.bucket, region, credentials)
            .map_err(|e| Failure::new(Reason::Internal, format!("bucket {}: {e}", self.bucket)))?;
        if self.endpoint.is_some() {
            bucket = bucket.with_path_style();
        }
        bucket.with_request_timeout(timeout).map_err(|e| Failure::new(Reason::Internal, e.to_string()))
    }
}

impl Check for S3 {
    fn verb(&self) -> &'static str {
        "download"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        let what = format!("s3 download of {}", self.object());
        let creds = credentials::resolve(&self.agent, &credentials::ProcessEnv, attempt)
            .map_err(|f| f.context(&what))?;
        attempt.note("credential_source", creds.source.as_str());
        let bucket = self.bucket(&creds, attempt.remaining()?)?;
        // attohttpc's own connect timeout is 30 s and cannot be set through
        // rust-s3, so reach the endpoint (or the proxy attohttpc will use,
        // from the environment) first within our deadline: a black-holed
        // endpoint then fails on time, with the right reason.
        let url = bucket.url();
        let first_hop = url::Url::parse(&url)
            .ok()
            .and_then(|u| attohttpc::ProxySettings::from_env().for_url(&u).map(|p| p.to_string()))
            .unwrap_or(url);
        preflight(&first_hop, attempt).map_err(|f| f.context(&what))?;
        // Streamed into a sink that keeps an error document's worth and
        // stops after BODY_LIMIT: a KEY that names a large object proves the
        // same as a small one, without buffering it.
        let mut sink = Sink::default();
        let response = bucket
            .with_request_timeout(attempt.remaining()?)
            .map_err(|e| Failure::new(Reason::Internal, e.to_string()))?
            .get_object_to_writer(&self.key, &mut sink);
        match response {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => {
                let body = String::from_utf8_lossy(&sink.head);
                let message = format!("{what} failed: {}", aws::describe_error(status, &body));
                Err(Failure::new(Reason::for_status(status), message))
            }
            Err(S3Error::Io(e)) if e.get_ref().is_some_and(|i| i.is::<Enough>()) => Ok(()),
            Err(e) => Err(s3_error(&what, e, attempt)),
        }
    }
}

/// Where a download goes: the first 4 KiB are kept (an error document), the
/// rest counted, and past [`client::BODY_LIMIT`] the download is stopped.
#[derive(Default)]
struct Sink {
    head: Vec<u8>,
    total: u64,
}

/// The error that stops a download that has proved its point.
#[derive(Debug)]
struct Enough;

impl std::fmt::Display for Enough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("read enough of the object")
    }
}

impl std::error::Error for Enough {}

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let keep = buf.len().min(4096 - self.head.len().min(4096));
        self.head.extend_from_slice(&buf[..keep]);
        self.total += buf.len() as u64;
        if self.total > client::BODY_LIMIT {
            return Err(std::io::Error::other(Enough));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens and closes one TCP connection to the URL's host within the
/// attempt's deadline.
fn preflight(url: &str, attempt: &Attempt) -> Result<(), Failure> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:{}", if scheme == "http" { 80 } else { 443 })
    };
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| Failure::io(&format!("resolving {authority}"), &e, attempt))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, attempt.remaining()?) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(Failure::io(&format!("connecting to {authority} ({addr})"), &e, attempt)),
        }
    }
    Err(last.unwrap_or_else(|| Failure::new(Reason::Dns, format!("{authority} resolves to no address"))))
}

fn s3_error(what: &str, err: S3Error, attempt: &Attempt) -> Failure {
    match err {
        S3Error::Atto(e) => match e.into_kind() {
            attohttpc::ErrorKind::Io(io) if is_tls_error(&io) => {
                Failure::new(Reason::Tls, format!("{what} failed: TLS: {io}"))
            }
            attohttpc::ErrorKind::Io(io) => Failure::io(&format!("{what} failed"), &io, attempt),
            attohttpc::ErrorKind::Tls(e) => Failure::new(Reason::Tls, format!("{what} failed: TLS: {e}")),
            other => {
                let text = attohttpc::Error::from(other).to_string();
                if attempt.expired() {
                    Failure::timeout(attempt.timeout())
                } else {
                    Failure::new(Reason::Connect, format!("{what} failed: {text}"))
                }
            }
        },
        S3Error::Io(io) => Failure::io(&format!("{what} failed"), &io, attempt),
        other => Failure::new(Reason::Internal, format!("{what} failed: {other}")),
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
