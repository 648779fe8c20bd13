//! The seed's check, end to end: the real binary against `rclone serve s3`
//! (which checks SigV4 signatures) on loopback, statsd on a real UDP socket.

mod support;

use std::time::{Duration, Instant};

use support::{
    ContainerCredsServer, CredsMode, Daemon, HangServer, S3Server, StatsdReceiver, TestCa, TestCreds,
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
    let url = hang.url();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", BUCKET),
            ("KUBERNARY_S3_ENDPOINT", &url),
            ("KUBERNARY_S3_TIMEOUT", "1s"),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    let began = Instant::now();
    let (status, body) = daemon.json("/health");
    let took = began.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "timeout", "{body}");
    assert!(body["s3"]["error"].as_str().unwrap().starts_with("timed out after 1s"), "{body}");
    // Generous bounds: the answer comes at the deadline, not at a 30 s
    // connect timeout or after a retry.
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
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
