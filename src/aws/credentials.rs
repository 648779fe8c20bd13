//! The AWS credential chain, resolved on every run.
//!
//! A canary exists to prove that the pod's identity works, so this chain is
//! ours rather than aws-creds' `Credentials::default()`: that one reads only
//! the `default` profile, folds every failure into one message and says
//! nothing of which source answered. Here each source either answers, says
//! it is not configured (and why), or fails. The first configured source
//! decides: a broken IRSA set-up must fail the check, not fall back quietly
//! to the node's role. Nothing is cached, so credentials that appear later
//! are used on the next run, and a flapping source is reported as it is.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::aws::{describe_error, xml_text};
use crate::client;
use crate::contract::{Attempt, Failure, Reason};

/// Which source of the chain gave the credentials; the `credential_source`
/// field of `/health`, so that an operator sees IRSA, and not the node's
/// role, answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Env,
    Profile,
    WebIdentity,
    Container,
    InstanceMetadata,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Env => "env",
            Source::Profile => "profile",
            Source::WebIdentity => "web_identity",
            Source::Container => "container",
            Source::InstanceMetadata => "instance_metadata",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Credentials for one run. Debug output hides the secrets.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
    pub source: Source,
    /// When they expire, as the source wrote it (`Expiration`), if it did:
    /// for an error that says they have.
    pub expires: Option<String>,
}

impl AwsCredentials {
    /// Where they came from and until when, for a debug run's trace; no key.
    pub fn describe(&self) -> String {
        match &self.expires {
            Some(until) => format!("from {}, expiring {until}", self.source),
            None => format!("from {}, no expiry given", self.source),
        }
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key", &self.access_key)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What one source made of the run.
enum Answer {
    Found(AwsCredentials),
    /// Not configured; the text says what was looked for.
    Absent(String),
}

/// The environment a chain reads: the process environment in the daemon, a
/// map in unit tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.is_empty())
    }
}

/// One source of the chain.
type Finder = fn(&ureq::Agent, &dyn Env, &Attempt) -> Result<Answer, Failure>;

const METADATA_ENDPOINT: &str = "http://169.254.169.254";
const CONTAINER_HOST: &str = "http://169.254.170.2";

/// A run's `credentials` phase: [`resolve`] timed as that phase, the
/// source that answered noted (`credential_source`) and traced; a failure
/// says which call (`what`) it was for.
pub fn for_run(agent: &ureq::Agent, attempt: &Attempt, what: &str) -> Result<AwsCredentials, Failure> {
    let creds =
        attempt.timed("credentials", || resolve(agent, &ProcessEnv, attempt)).map_err(|f| f.context(what))?;
    attempt.note("credential_source", creds.source.as_str());
    attempt.trace("credentials", || creds.describe());
    Ok(creds)
}

/// Resolves credentials through env, profile, web identity, container and
/// instance metadata, in that order (the SDKs' order).
pub fn resolve(agent: &ureq::Agent, env: &dyn Env, attempt: &Attempt) -> Result<AwsCredentials, Failure> {
    let sources: [(Source, Finder); 5] = [
        (Source::Env, from_env),
        (Source::Profile, from_profile),
        (Source::WebIdentity, from_web_identity),
        (Source::Container, from_container),
        (Source::InstanceMetadata, from_instance_metadata),
    ];
    let mut absent = Vec::new();
    for (source, find) in sources {
        match find(agent, env, attempt) {
            Ok(Answer::Found(credentials)) => return Ok(credentials),
            Ok(Answer::Absent(why)) => absent.push(format!("{source}: {why}")),
            Err(failure) if failure.reason == Reason::Timeout => return Err(failure),
            Err(failure) => {
                return Err(Failure::new(
                    Reason::Credentials,
                    format!("{source} credentials failed: {}", failure.message),
                ))
            }
        }
    }
    Err(Failure::new(Reason::Credentials, format!("no AWS credentials found ({})", absent.join("; "))))
}

fn from_env(_: &ureq::Agent, env: &dyn Env, _: &Attempt) -> Result<Answer, Failure> {
    let key = env.var("AWS_ACCESS_KEY_ID");
    let secret = env.var("AWS_SECRET_ACCESS_KEY");
    match (key, secret) {
        (Some(access_key), Some(secret_key)) => Ok(Answer::Found(AwsCredentials {
            access_key,
            secret_key,
            session_token: env.var("AWS_SESSION_TOKEN"),
            source: Source::Env,
            expires: None,
        })),
        (None, None) => Ok(Answer::Absent("AWS_ACCESS_KEY_ID not set".into())),
        (Some(_), None) => Err(Failure::new(
            Reason::Credentials,
            "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
        )),
        (None, Some(_)) => Err(Failure::new(
            Reason::Credentials,
            "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
        )),
    }
}

fn home(env: &dyn Env) -> Option<PathBuf> {
    env.var("HOME").map(PathBuf::from)
}

fn from_profile(_: &ureq::Agent, env: &dyn Env, _: &Attempt) -> Result<Answer, Failure> {
    let named = env.var("AWS_PROFILE");
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let credentials_file = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home(env).map(|h| h.join(".aws/credentials")));
    let config_file =
        env.var("AWS_CONFIG_FILE").map(PathBuf::from).or_else(|| home(env).map(|h| h.join(".aws/config")));
    // The credentials file names sections `[name]`; the config file names
    // them `[profile name]`, except `[default]`.
    let config_section = if profile == "default" { profile.clone() } else { format!("profile {profile}") };
    let mut looked = Vec::new();
    for (path, section) in [(credentials_file, profile.clone()), (config_file, config_section)] {
        let Some(path) = path else { continue };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked.push(format!("{} not found", path.display()));
                continue;
            }
            Err(e) => {
                return Err(Failure::new(Reason::Credentials, format!("cannot read {}: {e}", path.display())))
            }
        };
        let Some(values) = ini_section(&text, &section) else {
            looked.push(format!("no [{section}] in {}", path.display()));
            continue;
        };
        match (values.get("aws_access_key_id"), values.get("aws_secret_access_key")) {
            (Some(key), Some(secret)) => {
                return Ok(Answer::Found(AwsCredentials {
                    access_key: key.clone(),
                    secret_key: secret.clone(),
                    session_token: values.get("aws_session_token").cloned(),
                    source: Source::Profile,
                    expires: None,
                }))
            }
            _ if values.contains_key("role_arn") || values.contains_key("credential_process") => {
                return Err(Failure::new(
                    Reason::Credentials,
                    format!(
                        "profile {profile} in {} uses role_arn or credential_process, which kubernary does not run; give it static keys or use web identity",
                        path.display()
                    ),
                ))
            }
            _ => looked.push(format!("[{section}] in {} has no aws_access_key_id/aws_secret_access_key", path.display())),
        }
    }
    // A profile asked for by name that is nowhere is a broken set-up, not
    // a reason to fall through to the node's role.
    if named.is_some() {
        return Err(Failure::new(
            Reason::Credentials,
            format!(
                "AWS_PROFILE={profile}, but {}",
                if looked.is_empty() { "HOME is not set".to_string() } else { looked.join(", ") }
            ),
        ));
    }
    if looked.is_empty() {
        looked.push("HOME not set".into());
    }
    Ok(Answer::Absent(looked.join(", ")))
}

/// The key/value pairs of `[section]` in an INI file, keys lower-cased.
fn ini_section(text: &str, section: &str) -> Option<HashMap<String, String>> {
    let mut current: Option<bool> = None;
    let mut values = HashMap::new();
    let mut found = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let here = name.trim() == section;
            found |= here;
            current = Some(here);
            continue;
        }
        if current == Some(true) {
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    found.then_some(values)
}

/// The STS endpoint for a region, as the SDKs pick it now (regional), with
/// `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` as overrides.
pub fn sts_endpoint(env: &dyn Env, region: Option<&str>) -> String {
    if let Some(url) = env.var("AWS_ENDPOINT_URL_STS").or_else(|| env.var("AWS_ENDPOINT_URL")) {
        return url.trim_end_matches('/').to_string();
    }
    let region = region
        .map(str::to_string)
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"));
    match region {
        Some(r) if r.starts_with("cn-") => format!("https://sts.{r}.amazonaws.com.cn"),
        Some(r) => format!("https://sts.{r}.amazonaws.com"),
        None => "https://sts.amazonaws.com".into(),
    }
}

fn from_web_identity(agent: &ureq::Agent, env: &dyn Env, attempt: &Attempt) -> Result<Answer, Failure> {
    let Some(token_file) = env.var("AWS_WEB_IDENTITY_TOKEN_FILE") else {
        return Ok(Answer::Absent("AWS_WEB_IDENTITY_TOKEN_FILE not set".into()));
    };
    let role_arn = env.var("AWS_ROLE_ARN").ok_or_else(|| {
        Failure::new(Reason::Credentials, "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
    })?;
    // Projected tokens rotate, so the file is read on every run.
    let token = std::fs::read_to_string(&token_file).map_err(|e| {
        Failure::new(Reason::Credentials, format!("cannot read web identity token {token_file}: {e}"))
    })?;
    let session = env
        .var("AWS_ROLE_SESSION_NAME")
        // The pod's name tells sessions apart in CloudTrail; the process
        // id is 1 in every container.
        .or_else(|| env.var("HOSTNAME").map(|h| format!("kubernary-{h}")))
        .unwrap_or_else(|| format!("kubernary-{}", std::process::id()));
    let endpoint = sts_endpoint(env, None);
    let what = format!("AssumeRoleWithWebIdentity for {role_arn} at {}", client::redact(&endpoint));
    // POST keeps the token out of the URL, and so out of any log of URLs.
    let reply = client::send_form(
        agent.post(format!("{endpoint}/")),
        &[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", &role_arn),
            ("RoleSessionName", &session),
            ("WebIdentityToken", token.trim()),
        ],
        &what,
        attempt,
    )?;
    if reply.status != 200 {
        let raw = describe_error(reply.status, &reply.body);
        let message = match web_identity_advice(&reply.body, &token_file) {
            Some(advice) => format!("{what}: {advice} ({raw})"),
            None => format!("{what}: {raw}"),
        };
        return Err(Failure::new(Reason::Credentials, message));
    }
    let field = |tag: &str| {
        xml_text(&reply.body, tag)
            .ok_or_else(|| Failure::new(Reason::Credentials, format!("{what}: answer has no {tag}")))
    };
    Ok(Answer::Found(AwsCredentials {
        access_key: field("AccessKeyId")?,
        secret_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
        source: Source::WebIdentity,
        expires: xml_text(&reply.body, "Expiration").filter(|e| !e.is_empty()),
    }))
}

/// What to do about the errors IRSA set-ups meet at AssumeRoleWithWebIdentity.
fn web_identity_advice(body: &str, token_file: &str) -> Option<String> {
    let code = xml_text(body, "Code")?;
    let advice = match code.as_str() {
        "ExpiredTokenException" => format!(
            "the service-account token in {token_file} has expired: the kubelet renews a projected token, so mount it as a projected volume (as the EKS pod identity webhook does), and check the node's clock"
        ),
        "InvalidIdentityToken" => "STS does not trust the token's issuer: create the cluster's IAM OIDC identity provider, with the URL of the token's `iss`".to_string(),
        "AccessDenied" => "the role's trust policy does not admit this service account: its condition on `<issuer>:sub` must name system:serviceaccount:<namespace>:<service account>, and `<issuer>:aud` sts.amazonaws.com".to_string(),
        _ => return None,
    };
    Some(advice)
}

fn from_container(agent: &ureq::Agent, env: &dyn Env, attempt: &Attempt) -> Result<Answer, Failure> {
    let url = match (
        env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => format!("{CONTAINER_HOST}{relative}"),
        (None, Some(full)) => full,
        (None, None) => {
            return Ok(Answer::Absent(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set"
                    .into(),
            ))
        }
    };
    // The SDKs send a FULL_URI only to the container hosts, loopback, or over
    // HTTPS: a mistyped URI must not hand the Pod Identity token to anyone
    // in clear text.
    if !container_host_allowed(&url) {
        return Err(Failure::new(
            Reason::Credentials,
            format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI {} is neither https:// nor a container or loopback host (169.254.170.2, 169.254.170.23, fd00:ec2::23, 127.0.0.1, ::1, localhost)",
                client::redact(&url)
            ),
        ));
    }
    // EKS Pod Identity mounts a rotating token file; ECS may give the token
    // itself.
    let token = match env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
            Failure::new(
                Reason::Credentials,
                format!("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {path}: {e}"),
            )
        })?),
        None => env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    let what = format!("container credentials from {}", client::redact(&url));
    let mut request = agent.get(&url);
    if let Some(token) = token {
        request = request.header("Authorization", token.trim());
    }
    let reply = client::send(request, &what, attempt)?;
    if reply.status != 200 {
        return Err(Failure::new(
            Reason::Credentials,
            format!("{what}: {}", describe_error(reply.status, &reply.body)),
        ));
    }
    json_credentials(&reply.body, &what, Source::Container).map(Answer::Found)
}

/// Whether the container credential token may go to `url`: over HTTPS to
/// anyone, over plain HTTP only to the ECS and EKS container hosts or
/// loopback. Read as the URL standard reads it (user info, `127.1`, case),
/// not by splitting text.
fn container_host_allowed(url: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    const CONTAINER_HOSTS_V4: [Ipv4Addr; 2] =
        [Ipv4Addr::new(169, 254, 170, 2), Ipv4Addr::new(169, 254, 170, 23)];
    const CONTAINER_HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);
    let Ok(parsed) = url::Url::parse(url) else { return false };
    match (parsed.scheme(), parsed.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback() || CONTAINER_HOSTS_V4.contains(&ip),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback() || ip == CONTAINER_HOST_V6,
        ("http", Some(url::Host::Domain(name))) => name == "localhost",
        _ => false,
    }
}

/// The JSON document both the container endpoint and instance metadata serve.
fn json_credentials(body: &str, what: &str, source: Source) -> Result<AwsCredentials, Failure> {
    let doc: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| Failure::new(Reason::Credentials, format!("{what}: answer is not JSON: {e}")))?;
    let field =
        |name: &str| doc.get(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
    match (field("AccessKeyId"), field("SecretAccessKey")) {
        (Some(access_key), Some(secret_key)) => Ok(AwsCredentials {
            access_key,
            secret_key,
            session_token: field("Token").or_else(|| field("SessionToken")),
            source,
            expires: field("Expiration"),
        }),
        _ => Err(Failure::new(
            Reason::Credentials,
            format!("{what}: answer has no AccessKeyId/SecretAccessKey"),
        )),
    }
}

/// True where the machine says it is an EC2 instance. Outside EC2 the
/// metadata address belongs to nobody (or to someone else), so we do not
/// send it requests unless told to with `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
fn looks_like_ec2() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().to_ascii_lowercase();
    read("/sys/class/dmi/id/board_vendor").contains("amazon")
        || read("/sys/class/dmi/id/sys_vendor").contains("amazon")
        || read("/sys/class/dmi/id/product_uuid").starts_with("ec2")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
}

fn from_instance_metadata(agent: &ureq::Agent, env: &dyn Env, attempt: &Attempt) -> Result<Answer, Failure> {
    if env.var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Answer::Absent("AWS_EC2_METADATA_DISABLED=true".into()));
    }
    let endpoint = match env.var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        Some(e) => e.trim_end_matches('/').to_string(),
        None if looks_like_ec2() => METADATA_ENDPOINT.to_string(),
        None => {
            return Ok(Answer::Absent(
                "not an EC2 instance (set AWS_EC2_METADATA_SERVICE_ENDPOINT to use a metadata proxy)".into(),
            ))
        }
    };
    // IMDSv2 first; kube2iam and older proxies answer the token PUT with an
    // error, and then v1 is the way. From a pod, a hop limit of 1 on the
    // instance drops the token's answer, so the PUT gets only a slice of the
    // time, as the SDKs do, and v1 the rest.
    let left = attempt.remaining()?;
    let slice = Attempt::new(std::time::Instant::now(), (left / 2).min(std::time::Duration::from_secs(1)));
    let token = client::send_form(
        agent
            .put(format!("{endpoint}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60"),
        &[],
        &format!("instance metadata token from {endpoint}"),
        &slice,
    );
    let token_timed_out = matches!(&token, Err(f) if f.reason == Reason::Timeout);
    let token = token.ok().filter(|r| r.status == 200).map(|r| r.body.trim().to_string());
    let get = |path: &str| {
        let url = format!("{endpoint}/latest/meta-data/iam/security-credentials/{path}");
        let what = format!("instance metadata {}", client::redact(&url));
        let mut request = agent.get(&url);
        if let Some(token) = &token {
            request = request.header("X-aws-ec2-metadata-token", token);
        }
        let hint = |f: Failure| {
            if token_timed_out {
                f.context("IMDSv2 token request timed out (a hop limit of 1 on the instance drops it from a pod), then IMDSv1")
            } else {
                f
            }
        };
        let reply = client::send(request, &what, attempt).map_err(hint)?;
        if reply.status != 200 {
            return Err(Failure::new(
                Reason::Credentials,
                format!("{what}: {}", describe_error(reply.status, &reply.body)),
            ));
        }
        Ok((reply.body, what))
    };
    let (roles, _) = get("")?;
    let role = roles.lines().next().map(str::trim).unwrap_or_default().to_string();
    if role.is_empty() {
        return Err(Failure::new(
            Reason::Credentials,
            format!("instance metadata at {endpoint} lists no IAM role"),
        ));
    }
    let (body, what) = get(&role)?;
    json_credentials(&body, &what, Source::InstanceMetadata).map(Answer::Found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn attempt() -> Attempt {
        Attempt::new(Instant::now(), Duration::from_secs(2))
    }

    fn agent() -> ureq::Agent {
        crate::tls::install_crypto_provider();
        client::agent(crate::tls::root_certs(None).unwrap(), false)
    }

    #[test]
    fn env_wins_and_says_so() {
        let e =
            env(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK"), ("HOME", "/nonexistent")]);
        let c = resolve(&agent(), &e, &attempt()).unwrap();
        assert_eq!((c.access_key.as_str(), c.source), ("AK", Source::Env));
        assert!(!format!("{c:?}").contains("SK"), "Debug must hide the secret");
    }

    #[test]
    fn nothing_configured_lists_every_source() {
        let e = env(&[("HOME", "/nonexistent"), ("AWS_EC2_METADATA_DISABLED", "true")]);
        let f = resolve(&agent(), &e, &attempt()).unwrap_err();
        assert_eq!(f.reason, Reason::Credentials);
        for source in ["env:", "profile:", "web_identity:", "container:", "instance_metadata:"] {
            assert!(f.message.contains(source), "{source} missing from {}", f.message);
        }
        assert!(f.message.contains("/nonexistent/.aws/credentials not found"), "{}", f.message);
    }

    #[test]
    fn profile_from_the_named_section() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[canary]\naws_access_key_id=C\naws_secret_access_key=CS\naws_session_token=T\n").unwrap();
        let e = env(&[
            ("AWS_SHARED_CREDENTIALS_FILE", file.to_str().unwrap()),
            ("AWS_PROFILE", "canary"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
        ]);
        let c = resolve(&agent(), &e, &attempt()).unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.session_token.as_deref(), c.source),
            ("C", Some("T"), Source::Profile)
        );
    }

    #[test]
    fn a_configured_source_that_breaks_does_not_fall_through() {
        let e = env(&[
            ("HOME", "/nonexistent"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ]);
        let f = resolve(&agent(), &e, &attempt()).unwrap_err();
        assert!(
            f.message.starts_with("web_identity credentials failed: cannot read web identity token"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_named_profile_that_is_nowhere_fails() {
        let e = env(&[("HOME", "/nonexistent"), ("AWS_PROFILE", "canary")]);
        let f = resolve(&agent(), &e, &attempt()).unwrap_err();
        assert_eq!(f.reason, Reason::Credentials);
        assert!(f.message.contains("AWS_PROFILE=canary"), "{}", f.message);
    }

    #[test]
    fn the_container_token_goes_only_to_container_hosts() {
        for ok in [
            "http://169.254.170.2/v2/credentials",
            "http://169.254.170.23/v1/credentials",
            "http://[fd00:ec2::23]/x",
            "http://127.0.0.1:8080/c",
            "http://localhost/c",
            "https://creds.example.com/c",
            "HTTP://LOCALHOST:9/c",
            "http://127.1/c",
            "http://[::1]:80/c",
        ] {
            assert!(container_host_allowed(ok), "{ok}");
        }
        for bad in [
            "http://creds.example.com/c",
            "http://10.0.0.1/c",
            "ftp://127.0.0.1/c",
            "http://169.254.169.254/latest",
            "http://127.0.0.1@creds.example.com/c",
            "http://localhost.example.com/c",
            "http://[fd00:ec2::24]/c",
            "not a url",
        ] {
            assert!(!container_host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn sts_endpoint_is_regional() {
        assert_eq!(
            sts_endpoint(&env(&[("AWS_REGION", "eu-west-1")]), None),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(sts_endpoint(&env(&[]), Some("cn-north-1")), "https://sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(
            sts_endpoint(&env(&[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5000/")]), None),
            "http://127.0.0.1:5000"
        );
    }
}
