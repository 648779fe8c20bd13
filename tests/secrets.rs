//! Security: with `--debug` and every check failing, no secret shows in
//! anything the daemon writes or serves (every log line; `/health`, each
//! `/health/<name>`, its `?debug=true` trace, cached `/health`, `/metrics`): AWS secret keys and
//! session tokens from each credential source, the container-credentials
//! authorization token, the web identity token, the service-account bearer
//! token, a password in a URL, the signatures of presigned URLs, and every
//! `Authorization` value the daemon sent (its SigV4 signatures). The values
//! are distinctive, so a match means a leak. And the answers' headers say
//! no more than they must.

mod support;

use std::time::Duration;

use support::{Daemon, Fault, FaultServer, Reply};

const TIMEOUT: &str = "500ms";
const INTERVAL: &str = "200ms";

/// What a daemon wrote and served, gathered once its checks have run.
struct Exposed {
    logs: String,
    bodies: String,
}

impl Exposed {
    fn assert_hides(&self, secret: &str, what: &str) {
        assert!(!secret.is_empty());
        assert!(!self.logs.contains(secret), "{what} ({secret}) in the log:\n{}", self.logs);
        assert!(!self.bodies.contains(secret), "{what} ({secret}) in a body:\n{}", self.bodies);
    }
}

/// Starts a daemon with `--debug` running `checks` (name=kind, ...) with
/// `env`, lets every check fail a few times, and gathers what it exposed.
fn expose(checks: &[(&str, &str)], env: &[(&str, String)]) -> (Daemon, Exposed) {
    let list: Vec<String> = checks.iter().map(|(n, k)| format!("{n}={k}")).collect();
    let mut all: Vec<(String, String)> = vec![("KUBERNARY_CHECKS".into(), list.join(","))];
    for (name, _) in checks {
        let upper = name.to_ascii_uppercase().replace('-', "_");
        all.push((format!("KUBERNARY_{upper}_TIMEOUT"), TIMEOUT.into()));
        all.push((format!("KUBERNARY_{upper}_INTERVAL"), INTERVAL.into()));
    }
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start(&["--no-stats", "--debug"], &borrowed);
    for (name, _) in checks {
        let failed = format!("check {name} failed");
        let thrice = support::eventually(Duration::from_secs(20), || {
            d.logs().iter().filter(|l| l.contains(&failed)).count() >= 3
        });
        assert!(thrice, "{name} did not fail three scheduled runs:\n{}", d.logs().join("\n"));
    }
    let mut bodies = Vec::new();
    let (status, body) = d.json("/health");
    assert_eq!(status, 503, "every check is meant to fail: {body}");
    for (name, _) in checks {
        assert_eq!(body[name]["ok"], false, "{name} is meant to fail: {body}");
    }
    bodies.push(body.to_string());
    for (name, _) in checks {
        bodies.push(d.get(&format!("/health/{name}")).body);
    }
    // A debug run's trace names each step and what answered: redacted too.
    for (name, _) in checks {
        let (_, traced) = d.json(&format!("/health/{name}?debug=true"));
        assert!(traced[name]["trace"].is_array(), "{name}: no trace: {traced}");
        bodies.push(traced.to_string());
    }
    bodies.push(d.get("/health?cached=true").body);
    bodies.push(d.get("/metrics").body);
    // The last request's log line, written once its answer is sent.
    assert!(d.wait_for_log("GET /metrics from", Duration::from_secs(10)), "{}", d.logs().join("\n"));
    let exposed = Exposed { logs: d.logs().join("\n"), bodies: bodies.join("\n") };
    (d, exposed)
}

/// Every `Authorization` value a backend received, and the signature alone
/// (`Signature=<hex>` of SigV4).
fn sent_credentials(servers: &[&FaultServer]) -> Vec<String> {
    let mut found = Vec::new();
    for server in servers {
        for seen in server.requests() {
            if let Some(value) = seen.request.header("authorization") {
                found.push(value.to_string());
                if let Some((_, signature)) = value.rsplit_once("Signature=") {
                    found.push(signature.to_string());
                }
            }
            if let Some(token) = seen.request.header("x-amz-security-token") {
                found.push(token.to_string());
            }
        }
    }
    found
}

fn failing(status: u16) -> FaultServer {
    let server = FaultServer::start(Reply::ok());
    server.set(Fault::Status(status));
    server
}

/// Keys from the environment; a presigned URL (SigV4 and SigV2) and a URL
/// with a password as http checks; a bearer token for kubernetes.
#[test]
fn env_keys_presigned_urls_passwords_and_bearer_tokens_never_show() {
    let secret = "SECRETKEY-kubernary-4f1c9a2e7d";
    let session = "SESSIONTOKEN-kubernary-8b7d31";
    let bearer = "BEARERTOKEN-kubernary-c0ffee11";
    let password = "URLPASSWORD-kubernary-51ab";
    let v4_signature = "5e1f0a0bdeadbeefcafe0123456789abcdef0123456789abcdef0123456789ab";
    let v4_token = "PRESIGNEDTOKEN-kubernary-0e9f";
    let v2_signature = "SIGV2SIGNATURE-kubernary-7a6b";
    let s3 = failing(403);
    let hung_s3 = FaultServer::start(Reply::ok());
    hung_s3.set(Fault::Hang);
    let sts = failing(403);
    let web = failing(403);
    let api = failing(401);
    let hung_api = FaultServer::start(Reply::ok());
    hung_api.set(Fault::Hang);
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), format!("{bearer}\n")).unwrap();
    let token_file = token.path().display().to_string();
    let presigned = web.url(&format!(
        "/canary/object?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token={v4_token}&X-Amz-Signature={v4_signature}"
    ));
    let v2 = web.url(&format!(
        "/canary/object?AWSAccessKeyId=AKIAEXAMPLE&Expires=1893456000&Signature={v2_signature}"
    ));
    let with_password = format!("http://canary:{password}@127.0.0.1:{}/healthz", web.port());
    let checks = [
        ("bucket", "s3"),
        ("bucket-hung", "s3"),
        ("sts", "identity"),
        ("presigned", "http"),
        ("presigned-v2", "http"),
        ("password", "http"),
        ("api", "kubernetes"),
        ("api-hung", "kubernetes"),
    ];
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIASECRETSTEST".to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("AWS_SESSION_TOKEN", session.to_string()),
        ("KUBERNARY_BUCKET_BUCKET", "canary".into()),
        ("KUBERNARY_BUCKET_ENDPOINT", s3.base_url()),
        ("KUBERNARY_BUCKET_HUNG_BUCKET", "canary".into()),
        ("KUBERNARY_BUCKET_HUNG_ENDPOINT", hung_s3.base_url()),
        ("KUBERNARY_STS_ENDPOINT", sts.base_url()),
        ("KUBERNARY_PRESIGNED_URL", presigned),
        ("KUBERNARY_PRESIGNED_V2_URL", v2),
        ("KUBERNARY_PASSWORD_URL", with_password),
        ("KUBERNARY_API_URL", api.base_url()),
        ("KUBERNARY_API_TOKEN_FILE", token_file.clone()),
        ("KUBERNARY_API_HUNG_URL", hung_api.base_url()),
        ("KUBERNARY_API_HUNG_TOKEN_FILE", token_file),
    ];
    let (_d, exposed) = expose(&checks, &env);
    exposed.assert_hides(secret, "the secret key");
    exposed.assert_hides(session, "the session token");
    exposed.assert_hides(bearer, "the bearer token");
    exposed.assert_hides(password, "the URL's password");
    exposed.assert_hides(v4_signature, "a presigned URL's X-Amz-Signature");
    exposed.assert_hides(v4_token, "a presigned URL's X-Amz-Security-Token");
    exposed.assert_hides(v2_signature, "a presigned URL's Signature");
    let sent = sent_credentials(&[&s3, &sts, &api, &web]);
    assert!(sent.iter().any(|s| s.contains("AWS4-HMAC-SHA256")), "no signed request reached a backend");
    assert!(sent.iter().any(|s| s.contains(bearer)), "the bearer token was not sent");
    for value in sent {
        exposed.assert_hides(&value, "a credential the daemon sent");
    }
    // The checks still say which request failed, without the secrets.
    assert!(exposed.bodies.contains("X-Amz-Signature=***"), "{}", exposed.bodies);
    assert!(exposed.bodies.contains("http://***@127.0.0.1"), "{}", exposed.bodies);
    // The traces, hiding all that, still tell the story: the s3 check's
    // too, through the exchange that sent its signature.
    let get = format!(r#""detail":"GET {}/canary/check","step":"request""#, s3.base_url());
    assert!(exposed.bodies.contains(&get), "no {get} in a trace:\n{}", exposed.bodies);
    for step in [r#""step":"credentials""#, r#""step":"request""#, r#""step":"status""#, r#""step":"failed""#]
    {
        assert!(exposed.bodies.contains(step), "no {step} in a trace:\n{}", exposed.bodies);
    }
}

/// Credentials from a container-credentials endpoint (EKS Pod Identity)
/// with its authorization token, and from web identity (IRSA) with its
/// token file and the keys STS hands back.
#[test]
fn container_and_web_identity_credentials_never_show() {
    let pod_token = "PODIDENTITYTOKEN-kubernary-77aa";
    let container_secret = "CONTAINERSECRET-kubernary-9911";
    let container_session = "CONTAINERSESSION-kubernary-4242";
    let creds_json = serde_json::json!({
        "AccessKeyId": "ASIACONTAINER",
        "SecretAccessKey": container_secret,
        "Token": container_session,
        "Expiration": "2099-01-01T00:00:00Z",
    })
    .to_string();
    let creds = FaultServer::start(Reply::new(200, "application/json", &creds_json));
    let s3 = failing(403);
    let sts = failing(500);
    let (_d, exposed) = expose(
        &[("bucket", "s3"), ("sts", "identity")],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", creds.url("/v1/credentials")),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", pod_token.to_string()),
            ("KUBERNARY_BUCKET_BUCKET", "canary".into()),
            ("KUBERNARY_BUCKET_ENDPOINT", s3.base_url()),
            ("KUBERNARY_STS_ENDPOINT", sts.base_url()),
        ],
    );
    assert!(creds.request_count() >= 2, "the container endpoint was not asked");
    exposed.assert_hides(pod_token, "the Pod Identity token");
    exposed.assert_hides(container_secret, "the container secret key");
    exposed.assert_hides(container_session, "the container session token");
    for value in sent_credentials(&[&s3, &sts]) {
        exposed.assert_hides(&value, "a credential the daemon sent");
    }

    let web_token = "WEBIDENTITYTOKEN-kubernary-3c3c";
    let assumed_secret = "ASSUMEDSECRET-kubernary-6161";
    let assumed_session = "ASSUMEDSESSION-kubernary-2424";
    let assumed = format!(
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAWEBIDENTITY</AccessKeyId><SecretAccessKey>{assumed_secret}</SecretAccessKey><SessionToken>{assumed_session}</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    );
    let irsa = FaultServer::start(Reply::new(200, "text/xml", &assumed));
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), web_token).unwrap();
    let s3 = failing(403);
    let sts = failing(403);
    let (_d, exposed) = expose(
        &[("bucket", "s3"), ("sts", "identity")],
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.path().display().to_string()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/canary".into()),
            ("AWS_ENDPOINT_URL_STS", irsa.base_url()),
            ("KUBERNARY_BUCKET_BUCKET", "canary".into()),
            ("KUBERNARY_BUCKET_ENDPOINT", s3.base_url()),
            ("KUBERNARY_STS_ENDPOINT", sts.base_url()),
        ],
    );
    assert!(irsa.request_count() >= 2, "STS was not asked for the web identity");
    assert!(exposed.bodies.contains("web_identity"), "{}", exposed.bodies);
    exposed.assert_hides(web_token, "the web identity token");
    exposed.assert_hides(assumed_secret, "the assumed role's secret key");
    exposed.assert_hides(assumed_session, "the assumed role's session token");
    for value in sent_credentials(&[&s3, &sts]) {
        exposed.assert_hides(&value, "a credential the daemon sent");
    }
}

/// Our answers carry what HTTP needs and `Server: kubernary`, with no
/// version and no library name, the answers tiny_http writes itself (to a
/// request it cannot parse) included.
#[test]
fn response_headers_reveal_nothing_they_need_not() {
    let web = failing(503);
    let d = Daemon::start(
        &["--no-stats", "--no-quitquitquit"],
        &[
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", &web.url("/")),
            ("KUBERNARY_WEB_INTERVAL", "1h"),
        ],
    );
    let allowed =
        ["server", "date", "content-type", "content-length", "connection", "allow", "transfer-encoding"];
    let version = env!("CARGO_PKG_VERSION");
    for (method, path, status) in [
        ("GET", "/livez", 200),
        ("HEAD", "/livez", 200),
        ("GET", "/health", 503),
        ("GET", "/health/web", 503),
        ("GET", "/health/nope", 404),
        ("GET", "/health?cached=true", 503),
        ("GET", "/metrics", 200),
        ("GET", "/nope", 404),
        ("DELETE", "/livez", 405),
        ("POST", "/quitquitquit", 403),
    ] {
        let response = d.request(method, path);
        assert_eq!(response.status, status, "{method} {path}");
        assert_eq!(response.header("server"), Some("kubernary"), "{method} {path}: {:?}", response.headers);
        for (name, value) in &response.headers {
            assert!(
                allowed.contains(&name.to_ascii_lowercase().as_str()),
                "{method} {path}: header {name}: {value}"
            );
            assert!(!value.contains(version), "{method} {path}: {name}: {value}");
            assert!(!value.to_ascii_lowercase().contains("tiny"), "{method} {path}: {name}: {value}");
        }
        if path != "/metrics" {
            // The build's version is for --version and /metrics' build_info.
            assert!(!response.body.contains(version), "{method} {path}: {}", response.body);
        }
    }
    // A request tiny_http cannot parse is answered inside it: the same rules.
    let raw = d.send_raw(b"garbage\r\n\r\n").unwrap();
    assert_eq!(raw.status, 400);
    for (name, value) in &raw.headers {
        assert!(allowed.contains(&name.to_ascii_lowercase().as_str()), "400: header {name}: {value}");
        assert!(!value.contains(version), "400: {name}: {value}");
        assert!(!value.to_ascii_lowercase().contains("tiny"), "400: {name}: {value}");
    }
}
