//! The Go original's check, end to end: the real binary against `rclone serve s3`
//! (which checks SigV4 signatures) on loopback, statsd on a real UDP socket.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    aws, ContainerCredsServer, CredsMode, Daemon, FullBacklog, HangServer, S3Server, StatsdReceiver, TestCa,
    TestCreds, WebServer,
};

const BUCKET: &str = "canary";

fn s3_env<'a>(s3: &'a S3Server, endpoint: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("KUBERNARY_S3_BUCKET", BUCKET),
        ("KUBERNARY_S3_ENDPOINT", endpoint),
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ]
}

fn server_with_object() -> S3Server {
    let s3 = S3Server::start();
    s3.put_object(BUCKET, "check", b"ok");
    s3
}

#[test]
fn object_present_passes_and_counts_success() {
    let s3 = server_with_object();
    let statsd = StatsdReceiver::new();
    let endpoint = s3.endpoint();
    let statsd_addr = statsd.addr().to_string();
    let daemon = Daemon::start(&[&statsd_addr], &s3_env(&s3, &endpoint));

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["s3"]["ok"], true, "{body}");
    assert_eq!(body["s3"]["error"], "", "{body}");
    assert_eq!(body["s3"]["credential_source"], "env", "{body}");

    let lines = statsd.lines_until(
        |l| {
            l.iter().any(|x| x == "kubernary.s3.download.succeeded:1|c")
                && l.iter().any(|x| x.starts_with("kubernary.s3.download.duration:"))
        },
        Duration::from_secs(10),
    );
    assert!(lines.iter().any(|l| l == "kubernary.s3.download.succeeded:1|c"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("kubernary.s3.download.duration:") && l.ends_with("|ms")),
        "{lines:?}"
    );
}

#[test]
fn object_absent_fails_naming_bucket_and_key_and_counts_failure() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let statsd = StatsdReceiver::new();
    let endpoint = s3.endpoint();
    let statsd_addr = statsd.addr().to_string();
    let mut env = s3_env(&s3, &endpoint);
    env.push(("KUBERNARY_S3_KEY", "missing/object"));
    let daemon = Daemon::start(&[&statsd_addr], &env);

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    let error = body["s3"]["error"].as_str().unwrap();
    assert_eq!(body["s3"]["ok"], false);
    assert_eq!(body["s3"]["reason"], "not_found", "{body}");
    assert!(error.contains(&format!("s3://{BUCKET}/missing/object")), "{error}");
    assert!(error.contains("404 NoSuchKey"), "{error}");
    assert!(error.contains(&endpoint), "{error}");

    let lines = statsd
        .lines_until(|l| l.iter().any(|x| x == "kubernary.s3.download.failed:1|c"), Duration::from_secs(10));
    assert!(lines.iter().any(|l| l == "kubernary.s3.download.failed:1|c"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("succeeded")), "{lines:?}");
}

#[test]
fn wrong_secret_fails_with_the_servers_reason() {
    let s3 = server_with_object();
    let endpoint = s3.endpoint();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", BUCKET),
            ("KUBERNARY_S3_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", s3.access_key()),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all"),
        ],
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "denied", "{body}");
    let error = body["s3"]["error"].as_str().unwrap();
    assert!(error.contains("403 SignatureDoesNotMatch"), "{error}");
    assert!(error.contains("the secret key from env does not belong to its access key"), "{error}");
    assert!(!error.contains("not-the-secret-at-all"), "the secret leaked: {error}");
}

#[test]
fn no_credentials_is_a_failing_check_and_credentials_that_appear_later_are_used() {
    let s3 = server_with_object();
    let endpoint = s3.endpoint();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[("KUBERNARY_S3_BUCKET", BUCKET), ("KUBERNARY_S3_ENDPOINT", &endpoint)],
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "credentials", "{body}");
    let error = body["s3"]["error"].as_str().unwrap();
    assert!(error.contains("no AWS credentials found"), "{error}");
    for source in ["env:", "profile:", "web_identity:", "container:", "instance_metadata:"] {
        assert!(error.contains(source), "{source} not explained in {error}");
    }
    assert_eq!(daemon.get("/livez").status, 200, "the daemon must keep answering");

    // A shared credentials file written now is read by the next run.
    let aws = daemon.home().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.access_key(),
            s3.secret_key()
        ),
    )
    .unwrap();
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["s3"]["credential_source"], "profile", "{body}");
}

#[test]
fn container_credentials_endpoint_that_comes_up_later_is_used() {
    let s3 = server_with_object();
    let endpoint = s3.endpoint();
    let creds = ContainerCredsServer::start(CredsMode::Fail(500));
    let uri = creds.full_uri();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", BUCKET),
            ("KUBERNARY_S3_ENDPOINT", &endpoint),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
        ],
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "credentials", "{body}");
    assert!(body["s3"]["error"].as_str().unwrap().contains("container credentials"), "{body}");

    creds.set_mode(CredsMode::Serve(TestCreds::new(s3.access_key(), s3.secret_key(), "session-token-xyz")));
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["s3"]["credential_source"], "container", "{body}");
}

#[test]
fn https_with_a_private_ca_from_ssl_cert_file() {
    let ca = TestCa::new();
    let s3 = S3Server::start_tls(&ca);
    s3.put_object(BUCKET, "check", b"ok");
    let endpoint = s3.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let ca_path = ca.ca_path();
    let mut env = s3_env(&s3, &endpoint);
    env.push(("SSL_CERT_FILE", ca_path.to_str().unwrap()));
    let daemon = Daemon::start(&["--no-stats"], &env);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn https_with_an_unknown_ca_fails_as_tls() {
    let ca = TestCa::new();
    let s3 = S3Server::start_tls(&ca);
    s3.put_object(BUCKET, "check", b"ok");
    let endpoint = s3.endpoint();
    let daemon = Daemon::start(&["--no-stats"], &s3_env(&s3, &endpoint));
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "tls", "{body}");
}

#[test]
fn a_backend_that_never_answers_times_out_at_the_deadline() {
    let hang = HangServer::start();
    times_out_at_the_deadline(&hang.url());
}

/// A daemon whose s3 check (TIMEOUT 1s) reads from `url`: `/health/s3`
/// answers `timeout` at the deadline, not at a client's own connect timeout
/// of tens of seconds or after a retry (generous bounds). The answer.
fn times_out_at_the_deadline(url: &str) -> Value {
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", BUCKET),
            ("KUBERNARY_S3_ENDPOINT", url),
            ("KUBERNARY_S3_TIMEOUT", "1s"),
            ("KUBERNARY_S3_INTERVAL", "1h"),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    let began = Instant::now();
    let (status, body) = daemon.json("/health/s3");
    let took = began.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "timeout", "{body}");
    assert!(body["s3"]["error"].as_str().unwrap().starts_with("timed out after 1s"), "{body}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    body
}

/// A connect that never completes (a black-holed endpoint) fails at the
/// check's TIMEOUT as a timeout spent in `connect`, not at a client's own
/// connect timeout of tens of seconds.
#[test]
fn a_black_holed_endpoint_times_out_at_the_deadline_in_connect() {
    let backlog = FullBacklog::start();
    let body = times_out_at_the_deadline(&format!("http://{}", backlog.addr()));
    let phases = body["s3"]["phases_ms"].as_object().unwrap_or_else(|| panic!("no phases_ms: {body}"));
    let slowest = phases.iter().max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()));
    assert_eq!(slowest.map(|(name, _)| name.as_str()), Some("connect"), "{body}");
    assert!(backlog.held() > 0);
}

/// `/health/s3?debug=true` tells the whole story of a download over HTTPS,
/// as for an http check: credentials, the request line, resolve, connect,
/// the handshake, status, the answer's headers and the body's size; and
/// the run's phases are all there. Nothing of the signature or the keys
/// shows.
#[test]
fn a_debug_run_traces_every_step_of_the_download_and_hides_the_signature() {
    let ca = TestCa::new();
    let s3 = S3Server::start_tls(&ca);
    s3.put_object(BUCKET, "check", b"ok");
    let endpoint = s3.endpoint();
    let ca_path = ca.ca_path();
    let mut env = s3_env(&s3, &endpoint);
    env.extend([("SSL_CERT_FILE", ca_path.to_str().unwrap()), ("KUBERNARY_S3_INTERVAL", "1h")]);
    let daemon = Daemon::start(&["--no-stats"], &env);
    assert!(daemon.wait_for_log("check s3 passed", Duration::from_secs(15)), "the first run passes");
    let (result, steps) = daemon.debug_run("s3");
    assert_eq!(result["ok"], true, "{result}");
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    let at =
        |step: &str| names.iter().position(|s| *s == step).unwrap_or_else(|| panic!("no {step}: {result}"));
    let order = ["credentials", "request", "resolve", "connect", "tls", "status", "headers", "body"];
    let positions: Vec<usize> = order.iter().map(|s| at(s)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "steps out of order: {names:?}");
    let detail = |step: &str| steps[at(step)].1.as_str();
    let port = s3.addr().port();
    assert_eq!(detail("request"), format!("GET https://localhost:{port}/{BUCKET}/check"), "{result}");
    assert!(detail("connect").contains(&format!(":{port}")), "{result}");
    assert!(detail("tls").contains("localhost"), "{result}");
    assert_eq!(detail("status"), "200 OK", "{result}");
    assert!(detail("headers").to_ascii_lowercase().contains("content-length: 2"), "{result}");
    assert!(detail("body").starts_with("2 bytes read"), "{result}");
    // The handshake is the shared client's, so the certificate's expiry is
    // noted as for the other kinds.
    assert!(result["tls_expires"].as_str().is_some_and(|at| at.starts_with("4096-")), "{result}");
    let phases = &result["phases_ms"];
    for phase in ["credentials", "resolve", "connect", "tls", "first_byte", "body"] {
        assert!(phases[phase].is_number(), "no {phase} phase: {result}");
    }
    let text = result.to_string();
    for secret in [s3.secret_key(), "Signature=", "Credential=", "AWS4-HMAC-SHA256"] {
        assert!(!text.contains(secret), "{secret} in the trace: {result}");
    }
}

/// The request is authenticated as the pod's SDKs do it: a SigV4
/// `Authorization` header (a bucket policy can tell that from a presigned
/// URL's query), over the `Host` it was signed with, sent once.
#[test]
fn the_request_is_signed_in_its_headers_over_the_host_it_goes_to() {
    let server = WebServer::start();
    server.set(OBJECT, 200, "ok\n");
    let daemon = daemon_against(&server, &[]);
    let (status, body) = daemon.json("/health/s3");
    assert_eq!(status, 200, "{body}");
    let requests = server.requests();
    let request = requests.iter().find(|r| r.path == OBJECT).unwrap_or_else(|| panic!("{requests:?}"));
    assert_eq!(request.method, "GET");
    let auth = request.header("authorization").unwrap_or_else(|| panic!("unsigned: {request:?}"));
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAKUBERNARYTEST/"), "{auth}");
    let signed = auth.split("SignedHeaders=").nth(1).and_then(|s| s.split(',').next()).unwrap();
    let signed: Vec<&str> = signed.split(';').collect();
    for name in ["host", "x-amz-content-sha256", "x-amz-date"] {
        assert!(signed.contains(&name), "{name} not signed: {auth}");
        assert!(request.header(name).is_some(), "{name} signed but not sent: {request:?}");
    }
    let hosts: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(hosts, [format!("127.0.0.1:{}", server.port())], "{request:?}");
}

#[test]
fn a_large_object_passes_without_being_read_whole() {
    let s3 = S3Server::start();
    s3.put_object(BUCKET, "big", &vec![b'x'; 32 * 1024 * 1024]);
    let endpoint = s3.endpoint();
    let mut env = s3_env(&s3, &endpoint);
    env.push(("KUBERNARY_S3_KEY", "big"));
    let daemon = Daemon::start(&["--no-stats"], &env);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().trim_end_matches(" kB").parse().unwrap()))
        .unwrap();
    assert!(rss_kb < 20 * 1024, "peak RSS {rss_kb} kB with a 32 MiB object: it was buffered");
}

/// A daemon whose `s3` check reads `s3://canary-bucket/check` (path style)
/// from `server`, with long-term keys, or with `extra` instead.
fn daemon_against(server: &WebServer, extra: &[(&str, &str)]) -> Daemon {
    let url = server.base_url();
    let mut env = vec![("KUBERNARY_S3_BUCKET", "canary-bucket"), ("KUBERNARY_S3_ENDPOINT", url.as_str())];
    if !extra.iter().any(|(k, _)| k.starts_with("AWS_")) {
        env.extend([("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"), ("AWS_SECRET_ACCESS_KEY", "secret")]);
    }
    env.extend_from_slice(extra);
    Daemon::start(&["--no-stats"], &env)
}

/// The failing `/health/s3` answer's reason and error.
fn failure(daemon: &Daemon) -> (String, String) {
    let (status, body) = daemon.json("/health/s3");
    assert_eq!(status, 503, "{body}");
    (body["s3"]["reason"].as_str().unwrap().into(), body["s3"]["error"].as_str().unwrap().into())
}

const OBJECT: &str = "/canary-bucket/check";

#[test]
fn a_bucket_in_another_region_says_which_and_what_to_set() {
    let server = WebServer::start();
    let want = "bucket canary-bucket is in eu-west-1, not us-east-1: set KUBERNARY_S3_REGION=eu-west-1";
    // A GET to the wrong regional endpoint.
    let endpoint =
        "<Endpoint>canary-bucket.s3.eu-west-1.amazonaws.com</Endpoint><Bucket>canary-bucket</Bucket>";
    server.route(
        OBJECT,
        aws::s3_error(
            301,
            "PermanentRedirect",
            "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.",
            endpoint,
            &[("x-amz-bucket-region", "eu-west-1")],
        ),
    );
    let daemon = daemon_against(&server, &[]);
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "config", "{error}");
    assert!(error.contains(want), "{error}");
    // Read whole, S3's own answer stays searchable: its code and message.
    assert!(error.contains("(301 PermanentRedirect: The bucket you are attempting"), "{error}");
    // The 301 itself says where the bucket is (no Location to follow, no
    // second request to ask), and is read with its headers and body.
    let asked: Vec<String> = server.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(!asked.is_empty() && asked.iter().all(|a| a == "GET /canary-bucket/check"), "{asked:?}");

    // A request signed for the wrong region.
    server.route(
        OBJECT,
        aws::s3_error(
            400,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'",
            "<Region>eu-west-1</Region>",
            &[],
        ),
    );
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "config", "{error}");
    assert!(error.contains(want), "{error}");
}

#[test]
fn clock_skew_says_by_how_much_from_the_servers_date() {
    let server = WebServer::start();
    // S3's clock 20 minutes behind ours: ours is 20 minutes ahead.
    let theirs = std::time::SystemTime::now() - Duration::from_secs(20 * 60);
    let extra = format!(
        "<RequestTime>{}</RequestTime><ServerTime>{}</ServerTime><MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>",
        aws::amz_date(std::time::SystemTime::now()),
        aws::amz_date(theirs)
    );
    let date = aws::http_date(theirs);
    server.route(
        OBJECT,
        aws::s3_error(
            403,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            &extra,
            &[("Date", &date)],
        ),
    );
    let daemon = daemon_against(&server, &[]);
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "clock_skew", "{error}");
    // Whole seconds, and the check runs a moment after the route was set.
    assert!(error.contains("this node's clock is 20m"), "{error}");
    assert!(error.contains("ahead of S3's"), "{error}");
    assert!(error.contains("fix its time sync"), "{error}");
}

#[test]
fn expired_credentials_name_their_source_and_expiry() {
    let server = WebServer::start();
    server.route(
        OBJECT,
        aws::s3_error(
            400,
            "ExpiredToken",
            "The provided token has expired.",
            "<Token-0>session-token-xyz</Token-0>",
            &[],
        ),
    );
    let creds = ContainerCredsServer::start(CredsMode::Serve(TestCreds::new(
        "ASIAKUBERNARY",
        "s",
        "session-token-xyz",
    )));
    let uri = creds.full_uri();
    let daemon = daemon_against(&server, &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)]);
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "credentials", "{error}");
    // The fake container endpoint says they expire in 2099.
    assert!(error.contains("the credentials from container expired"), "{error}");
    assert!(error.contains("2099-01-01T00:00:00Z"), "when, as the source said: {error}");
    assert!(error.contains("400 ExpiredToken"), "{error}");
    assert!(!error.contains("session-token-xyz"), "the token leaked: {error}");

    let daemon = daemon_against(
        &server,
        &[("AWS_ACCESS_KEY_ID", "ASIAKUBERNARY"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_SESSION_TOKEN", "t")],
    );
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "credentials", "{error}");
    assert!(error.contains("the credentials from env expired: AWS_SESSION_TOKEN"), "{error}");
}

#[test]
fn a_kms_denial_is_told_from_a_plain_one() {
    let server = WebServer::start();
    server.route(
        OBJECT,
        aws::s3_error(
            403,
            "AccessDenied",
            "User: arn:aws:sts::123456789012:assumed-role/canary/kubernary is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:Decrypt action",
            "",
            &[],
        ),
    );
    let daemon = daemon_against(&server, &[]);
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "denied", "{error}");
    assert!(
        error.contains("s3://canary-bucket/check is encrypted with a KMS key these credentials (from env) may not use: allow kms:Decrypt"),
        "{error}"
    );

    server.route(OBJECT, aws::s3_error(403, "AccessDenied", "Access Denied", "", &[]));
    let (reason, error) = failure(&daemon);
    assert_eq!(reason, "denied", "{error}");
    assert!(!error.contains("KMS"), "{error}");
    assert!(error.contains("the credentials from env are not allowed this"), "{error}");
}

#[test]
fn a_missing_bucket_is_told_from_a_missing_key() {
    // rclone answers as S3 does.
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let endpoint = s3.endpoint();
    let mut env = s3_env(&s3, &endpoint);
    env.push(("KUBERNARY_CHECKS", "s3,gone=s3"));
    env.extend([("KUBERNARY_GONE_BUCKET", "no-such-bucket"), ("KUBERNARY_GONE_ENDPOINT", endpoint.as_str())]);
    let daemon = Daemon::start(&["--no-stats"], &env);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    let key = body["s3"]["error"].as_str().unwrap();
    assert_eq!(body["s3"]["reason"], "not_found", "{body}");
    assert!(key.contains("bucket canary exists but has no object check: upload one"), "{key}");
    assert!(key.contains("KUBERNARY_S3_KEY"), "{key}");
    let bucket = body["gone"]["error"].as_str().unwrap();
    assert_eq!(body["gone"]["reason"], "not_found", "{body}");
    assert!(bucket.contains("bucket no-such-bucket does not exist: check KUBERNARY_GONE_BUCKET"), "{bucket}");
    assert!(bucket.contains("404 NoSuchBucket"), "{bucket}");
}

/// Addressing as the AWS SDKs do, end to end: no `ENDPOINT`, so the check
/// goes to `s3.us-east-1.amazonaws.com` over TLS; those names point at a
/// loopback server through a private /etc/hosts (a mount namespace of the
/// daemon's own), whose certificate, from a test CA trusted through
/// SSL_CERT_FILE, names `s3.us-east-1.amazonaws.com` and
/// `*.s3.us-east-1.amazonaws.com` as AWS's does. A dotted bucket must then
/// be read by path (a virtual host `my.dotted.bucket.s3.…` is outside the
/// wildcard), and a plain one by virtual host.
#[test]
fn buckets_are_addressed_as_the_sdks_do_through_aws_names() {
    let ca = TestCa::for_names(&["s3.us-east-1.amazonaws.com", "*.s3.us-east-1.amazonaws.com"]);
    // Port 443 on a loopback address of its own, so that nothing else on
    // the machine (another test, another helper) holds it.
    let ip = format!("127.77.{}.{}", std::process::id() % 250 + 1, std::process::id() / 250 % 250 + 1);
    let server = match std::net::TcpListener::bind((ip.as_str(), 443)) {
        Ok(probe) => {
            drop(probe);
            WebServer::start_on(&format!("{ip}:443"), Some(&ca))
        }
        Err(e) => {
            eprintln!("SKIPPED (cannot listen on {ip}:443: {e})");
            return;
        }
    };
    server.set("/my.dotted.bucket/check", 200, "ok\n");
    server.set("/check", 200, "ok\n");
    let hosts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        hosts.path(),
        format!(
            "127.0.0.1 localhost\n{ip} s3.us-east-1.amazonaws.com\n{ip} canary-bucket.s3.us-east-1.amazonaws.com\n{ip} my.dotted.bucket.s3.us-east-1.amazonaws.com\n"
        ),
    )
    .unwrap();
    let ca_file = ca.ca_path().display().to_string();
    let env = [
        ("KUBERNARY_CHECKS", "dotted=s3,plain=s3,forced=s3"),
        ("KUBERNARY_DOTTED_BUCKET", "my.dotted.bucket"),
        ("KUBERNARY_PLAIN_BUCKET", "canary-bucket"),
        // Virtual hosts forced on a dotted name: what the fallback avoids.
        ("KUBERNARY_FORCED_BUCKET", "my.dotted.bucket"),
        ("KUBERNARY_FORCED_PATH_STYLE", "false"),
        ("SSL_CERT_FILE", ca_file.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];
    let Some(daemon) = Daemon::start_with_hosts(hosts.path(), &["--no-stats"], &env) else { return };
    let (_, body) = daemon.json("/health");
    assert_eq!(body["dotted"]["ok"], true, "{body}");
    assert_eq!(body["plain"]["ok"], true, "{body}");
    assert_eq!(body["forced"]["reason"], "tls", "{body}");
    let seen: Vec<(String, String)> = server
        .requests()
        .iter()
        .map(|r| (r.header("host").unwrap_or("").to_string(), r.path.clone()))
        .collect();
    let pair = |h: &str, p: &str| (h.to_string(), p.to_string());
    assert!(seen.contains(&pair("s3.us-east-1.amazonaws.com", "/my.dotted.bucket/check")), "{seen:?}");
    assert!(seen.contains(&pair("canary-bucket.s3.us-east-1.amazonaws.com", "/check")), "{seen:?}");
    let error = body["forced"]["error"].as_str().unwrap();
    assert!(
        error.contains("my.dotted.bucket.s3.us-east-1.amazonaws.com") || error.contains("TLS"),
        "{error}"
    );
    let warned = "KUBERNARY_FORCED_PATH_STYLE=false: bucket my.dotted.bucket cannot be a virtual host";
    assert!(daemon.wait_for_log(warned, Duration::from_secs(5)), "the start warns about it");
}
