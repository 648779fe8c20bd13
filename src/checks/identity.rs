//! `identity`: STS GetCallerIdentity with the credentials the AWS chain gives
//! at run time, and a match of the ARN STS answers with what is expected.
//!
//! Reading an S3 object proves that *some* credentials work; this proves they
//! are the pod's own: kube2iam falling back to the node's role, an IRSA
//! annotation naming the wrong role, or Pod Identity not being wired at all
//! all show up here as `wrong_identity` with both identities in the error.
//!
//! Keys: `EXPECT_ARN` (an ARN, `*` matching any run of characters) or
//! `EXPECT_ROLE` (a bare role name); neither means any identity passes and is
//! only reported. `REGION` picks the regional STS endpoint (default:
//! `AWS_REGION`, `AWS_DEFAULT_REGION`, then `us-east-1`), and signs for it;
//! `ENDPOINT` overrides the endpoint (tests, private endpoints), as
//! `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL` do for every AWS client.

use std::time::SystemTime;

use log::warn;

use crate::aws::credentials::{self, Env, ProcessEnv};
use crate::aws::errors::{self, Answer, Call, Service};
use crate::aws::{sigv4, xml_text};
use crate::checks::Settings;
use crate::client;
use crate::contract::{Attempt, Check, Failure, Reason};
use crate::tls;

const BODY: &[u8] = b"Action=GetCallerIdentity&Version=2011-06-15";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The keys this kind reads besides [`COMMON_KEYS`](super::COMMON_KEYS).
pub const KEYS: &[&str] = &["EXPECT_ARN", "EXPECT_ROLE", "REGION", "ENDPOINT"];

pub struct Identity {
    region: String,
    /// What sets the region, for an error that says to change it.
    region_var: String,
    endpoint: Endpoint,
    expect: Expect,
    /// For STS and the credential chain's HTTP sources; built once.
    agent: ureq::Agent,
}

/// What the ARN must be.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Any,
    /// An ARN, `*` matching any run of characters (`/` and `:` included).
    Arn(String),
    /// A role name, matched as IAM matches names: without regard to case.
    Role(String),
}

impl Expect {
    fn matches(&self, arn: &str) -> bool {
        match self {
            Expect::Any => true,
            Expect::Arn(pattern) => glob(pattern, arn),
            Expect::Role(name) => role_name(arn).is_some_and(|r| r.eq_ignore_ascii_case(name)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::Any => "any identity".into(),
            Expect::Arn(pattern) => pattern.clone(),
            Expect::Role(name) => format!("role {name}"),
        }
    }
}

/// An endpoint split the way the request needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Endpoint {
    /// `https://sts.eu-west-1.amazonaws.com/`: what is POSTed to.
    url: String,
    /// `sts.eu-west-1.amazonaws.com`: the signed `Host` header.
    host: String,
    /// `/`: the signed path.
    path: String,
}

impl Endpoint {
    fn parse(text: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = text
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
        if rest.contains(['?', '#']) {
            return Err(format!("{text:?}: an endpoint has no query or fragment"));
        }
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
            return Err(format!("{text:?}: bad host {host:?}"));
        }
        Ok(Endpoint {
            url: format!("{scheme}://{host}{path}"),
            host: host.to_string(),
            path: path.to_string(),
        })
    }
}

impl Identity {
    pub fn from_settings(settings: &Settings) -> Result<Identity, String> {
        Identity::from_settings_with(settings, &ProcessEnv)
    }

    /// `env` is where `AWS_REGION` and `AWS_ENDPOINT_URL_STS` come from.
    fn from_settings_with(settings: &Settings, env: &dyn Env) -> Result<Identity, String> {
        let region = settings
            .get("REGION")
            .map(str::to_string)
            .or_else(|| env.var("AWS_REGION"))
            .or_else(|| env.var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!(
                "{}: {region:?} is not a region name (like us-east-1)",
                settings.var("REGION")
            ));
        }
        let endpoint = match settings.get("ENDPOINT") {
            Some(text) => Endpoint::parse(text.trim_end_matches('/'))
                .map_err(|e| format!("{}: {e}", settings.var("ENDPOINT")))?,
            None => {
                let text = credentials::sts_endpoint(env, Some(&region));
                Endpoint::parse(&text)
                    .map_err(|e| format!("STS endpoint from AWS_ENDPOINT_URL_STS or AWS_ENDPOINT_URL: {e}"))?
            }
        };
        let expect = expectation(settings)?;
        let agent = client::agent(tls::root_certs(None)?, false);
        let region_var = match settings.get("REGION") {
            Some(_) => settings.var("REGION"),
            None => format!("{} (or AWS_REGION)", settings.var("REGION")),
        };
        Ok(Identity { region, region_var, endpoint, expect, agent })
    }
}

/// Reads `EXPECT_ARN` or `EXPECT_ROLE`, and warns about settings that cannot
/// do what they look like they do.
fn expectation(settings: &Settings) -> Result<Expect, String> {
    let arn_var = settings.var("EXPECT_ARN");
    let role_var = settings.var("EXPECT_ROLE");
    match (settings.get("EXPECT_ARN"), settings.get("EXPECT_ROLE")) {
        (Some(_), Some(_)) => {
            Err(format!("{arn_var} and {role_var} are both set: set one (an ARN, or a bare role name)"))
        }
        (None, None) => {
            warn!(
                "{arn_var} and {role_var} are not set: this identity check passes with any identity and only reports it"
            );
            Ok(Expect::Any)
        }
        (Some(arn), None) => {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            if parts.len() != 6
                || parts[0] != "arn"
                || parts[5].is_empty()
                || arn.contains(char::is_whitespace)
            {
                return Err(format!(
                    "{arn_var}: {arn:?} is not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE, * for any run of characters); for a role name set {role_var}"
                ));
            }
            if parts[2] == "iam" && parts[5].starts_with("role/") {
                warn!(
                    "{arn_var}: {arn} is a role's ARN, but STS names a role's sessions arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION, so it will not match; set {role_var} to the role's name instead"
                );
            } else if parts[2] == "sts" && parts[5].starts_with("assumed-role/") && !parts[5].contains('*') {
                warn!(
                    "{arn_var}: {arn} names one session; session names change (per pod, per refresh), so end it with /* to match the role's every session"
                );
            }
            Ok(Expect::Arn(arn.to_string()))
        }
        (None, Some(role)) => {
            if role.starts_with("arn:") {
                return Err(format!(
                    "{role_var}: {role:?} is an ARN; set {arn_var} for ARNs, or give the role's bare name here"
                ));
            }
            if role.contains('/') {
                return Err(format!(
                    "{role_var}: {role:?} has a path; give only the role's name (the part after the last /)"
                ));
            }
            let valid =
                role.len() <= 64 && role.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
            if !valid {
                return Err(format!(
                    "{role_var}: {role:?} is not a role name (up to 64 letters, digits and +=,.@_-); for a pattern set {arn_var}"
                ));
            }
            Ok(Expect::Role(role.to_string()))
        }
    }
}

/// The role an ARN is a session of (`arn:aws:sts::1:assumed-role/NAME/SESSION`)
/// or names (`arn:aws:iam::1:role/PATH/NAME`), in any partition.
fn role_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, _partition, service, _region, _account, resource] = parts[..] else {
        return None;
    };
    if prefix != "arn" {
        return None;
    }
    match service {
        "sts" => {
            let (name, session) = resource.strip_prefix("assumed-role/")?.split_once('/')?;
            (!name.is_empty() && !session.is_empty()).then_some(name)
        }
        "iam" => {
            let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
            (!name.is_empty()).then_some(name)
        }
        _ => None,
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else only itself.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in `text` its match ends for now.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` take one more character and try again.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl Check for Identity {
    fn verb(&self) -> &'static str {
        "identity"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        let what = format!("sts GetCallerIdentity at {}", crate::client::redact(&self.endpoint.url));
        let creds = credentials::for_run(&self.agent, attempt, &what)?;

        let headers = [("Host", self.endpoint.host.as_str()), ("Content-Type", FORM)];
        let signed = sigv4::sign(
            &sigv4::Request { method: "POST", target: &self.endpoint.path, headers: &headers, body: BODY },
            &creds,
            &self.region,
            "sts",
            SystemTime::now(),
        )
        .map_err(|e| Failure::new(Reason::Internal, format!("{what}: {e}")))?;
        let mut request = self.agent.post(&self.endpoint.url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for (name, value) in &signed.headers {
            request = request.header(*name, value);
        }
        let reply = client::send_bytes(request, BODY, &what, attempt)?;
        if reply.status != 200 {
            let call = Call {
                service: Service::Sts,
                what: &what,
                region: &self.region,
                region_var: &self.region_var,
                credentials: &creds,
                object: None,
            };
            let answer = Answer {
                status: reply.status,
                date: reply.header("date"),
                bucket_region: None,
                body: &reply.body,
            };
            return Err(errors::explain(&call, &answer, SystemTime::now()));
        }
        let arn = xml_text(&reply.body, "Arn").filter(|a| !a.is_empty());
        let Some(arn) = arn else {
            return Err(Failure::new(
                Reason::HttpStatus,
                format!("{what} failed: the 200 answer has no Arn"),
            ));
        };
        attempt.note("arn", arn.clone());
        if let Some(account) = xml_text(&reply.body, "Account").filter(|a| !a.is_empty()) {
            attempt.note("account", account);
        }
        if self.expect.matches(&arn) {
            Ok(())
        } else {
            Err(Failure::new(
                Reason::WrongIdentity,
                format!("got {arn} (credentials from {}), want {}", creds.source, self.expect.describe()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Builds a check named `id` from `KUBERNARY_ID_*` settings in `pairs`,
    /// reading AWS_* from `pairs` too.
    fn build(pairs: &[(&str, &str)]) -> Result<Identity, String> {
        crate::tls::install_crypto_provider();
        let map = env(pairs);
        Identity::from_settings_with(&Settings::new("id", &map), &map)
    }

    #[test]
    fn globs() {
        let p = "arn:aws:sts::123456789012:assumed-role/my-role/*";
        assert!(glob(p, "arn:aws:sts::123456789012:assumed-role/my-role/i-0abc"));
        assert!(glob(p, "arn:aws:sts::123456789012:assumed-role/my-role/"));
        assert!(!glob(p, "arn:aws:sts::123456789012:assumed-role/node-role/i-0abc"));
        assert!(!glob(p, "arn:aws:sts::123456789012:assumed-role/my-role"));
        assert!(glob("arn:aws:sts::*:assumed-role/my-role/*", "arn:aws:sts::1:assumed-role/my-role/s"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("*", ""));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("exactly", "exact"));
    }

    #[test]
    fn roles_are_found_in_session_and_role_arns() {
        assert_eq!(role_name("arn:aws:sts::1:assumed-role/my-role/i-0abc"), Some("my-role"));
        assert_eq!(role_name("arn:aws-cn:sts::1:assumed-role/my-role/s"), Some("my-role"));
        assert_eq!(role_name("arn:aws:iam::1:role/my-role"), Some("my-role"));
        assert_eq!(role_name("arn:aws:iam::1:role/team/a/my-role"), Some("my-role"));
        assert_eq!(role_name("arn:aws:sts::1:assumed-role/my-role"), None);
        assert_eq!(role_name("arn:aws:iam::1:user/my-role"), None);
        assert_eq!(role_name("arn:aws:sts::1:user/moto"), None);
        assert_eq!(role_name("not an arn"), None);

        let want = Expect::Role("My-Role".into());
        assert!(want.matches("arn:aws:sts::1:assumed-role/my-role/s"));
        assert!(!want.matches("arn:aws:sts::1:assumed-role/my-role-2/s"));
        assert!(!want.matches("arn:aws:sts::1:assumed-role/node-role/my-role"));
        assert!(Expect::Any.matches("anything"));
    }

    #[test]
    fn the_endpoint_is_regional_unless_overridden() {
        let url = |pairs: &[(&str, &str)]| build(pairs).unwrap().endpoint.url;
        assert_eq!(url(&[]), "https://sts.us-east-1.amazonaws.com/");
        assert_eq!(url(&[("AWS_REGION", "eu-west-1")]), "https://sts.eu-west-1.amazonaws.com/");
        assert_eq!(url(&[("AWS_DEFAULT_REGION", "eu-west-2")]), "https://sts.eu-west-2.amazonaws.com/");
        assert_eq!(
            url(&[("AWS_REGION", "eu-west-1"), ("KUBERNARY_ID_REGION", "cn-north-1")]),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        assert_eq!(url(&[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5000")]), "http://127.0.0.1:5000/");
        let check = build(&[
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5000"),
            ("KUBERNARY_ID_ENDPOINT", "http://[::1]:5001/sts/"),
            ("KUBERNARY_ID_REGION", "eu-central-1"),
        ])
        .unwrap();
        assert_eq!(
            check.endpoint,
            Endpoint { url: "http://[::1]:5001/sts".into(), host: "[::1]:5001".into(), path: "/sts".into() }
        );
        assert_eq!(check.region, "eu-central-1");
        assert_eq!(build(&[]).unwrap().region, "us-east-1");
    }

    #[test]
    fn expectations() {
        let expect = |pairs: &[(&str, &str)]| build(pairs).unwrap().expect;
        assert_eq!(expect(&[]), Expect::Any);
        assert_eq!(expect(&[("KUBERNARY_ID_EXPECT_ROLE", "my-role")]), Expect::Role("my-role".into()));
        assert_eq!(
            expect(&[("KUBERNARY_ID_EXPECT_ARN", "arn:aws:sts::123456789012:assumed-role/my-role/*")]),
            Expect::Arn("arn:aws:sts::123456789012:assumed-role/my-role/*".into())
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| build(pairs).err().unwrap();
        assert!(err(&[
            ("KUBERNARY_ID_EXPECT_ARN", "arn:aws:iam::1:role/r"),
            ("KUBERNARY_ID_EXPECT_ROLE", "r"),
        ])
        .starts_with("KUBERNARY_ID_EXPECT_ARN and KUBERNARY_ID_EXPECT_ROLE are both set"));
        let e = err(&[("KUBERNARY_ID_EXPECT_ARN", "my-role")]);
        assert!(e.starts_with("KUBERNARY_ID_EXPECT_ARN: \"my-role\" is not an ARN"), "{e}");
        assert!(e.contains("KUBERNARY_ID_EXPECT_ROLE"), "{e}");
        assert!(err(&[("KUBERNARY_ID_EXPECT_ARN", "arn:aws:sts::1")]).starts_with("KUBERNARY_ID_EXPECT_ARN:"));
        assert!(err(&[("KUBERNARY_ID_EXPECT_ROLE", "arn:aws:iam::1:role/r")])
            .starts_with("KUBERNARY_ID_EXPECT_ROLE: \"arn:aws:iam::1:role/r\" is an ARN"));
        assert!(err(&[("KUBERNARY_ID_EXPECT_ROLE", "team/r")])
            .starts_with("KUBERNARY_ID_EXPECT_ROLE: \"team/r\" has a path"));
        assert!(err(&[("KUBERNARY_ID_EXPECT_ROLE", "my-*")])
            .starts_with("KUBERNARY_ID_EXPECT_ROLE: \"my-*\" is not a role name"));
        assert!(err(&[("KUBERNARY_ID_ENDPOINT", "127.0.0.1:5000")])
            .starts_with("KUBERNARY_ID_ENDPOINT: \"127.0.0.1:5000\" is not an http"));
        assert!(err(&[("KUBERNARY_ID_ENDPOINT", "http://h/?x=1")]).starts_with("KUBERNARY_ID_ENDPOINT:"));
        assert!(err(&[("KUBERNARY_ID_REGION", "us east 1")])
            .starts_with("KUBERNARY_ID_REGION: \"us east 1\" is not a region name"));
        assert!(err(&[("AWS_ENDPOINT_URL_STS", "sts.local")])
            .starts_with("STS endpoint from AWS_ENDPOINT_URL_STS"));
    }
}
