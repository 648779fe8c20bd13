//! `kubernary probe`, the self-probe a scratch image's HEALTHCHECK runs:
//! against a live daemon, a failing one, a dead port and a server that never
//! answers.

mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Daemon, HangServer, S3Server};

const BUCKET: &str = "canary";

struct Probe {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `kubernary probe <args>` with a clean environment plus `envs`.
fn probe(args: &[&str], envs: &[(&str, &str)]) -> Probe {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kubernary"))
        .arg("probe")
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run kubernary probe");
    Probe {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn daemon_against(s3: &S3Server, key: &str) -> Daemon {
    let endpoint = s3.endpoint();
    Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", BUCKET),
            ("KUBERNARY_S3_KEY", key),
            ("KUBERNARY_S3_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", s3.access_key()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
        ],
    )
}

#[test]
fn a_healthy_daemon_exits_0_with_one_line() {
    let s3 = S3Server::start();
    s3.put_object(BUCKET, "check", b"ok");
    let daemon = daemon_against(&s3, "check");
    let url = format!("http://{}/health", daemon.addr());

    let p = probe(&[&url], &[]);
    assert_eq!(p.code, 0, "stdout {:?} stderr {:?}", p.stdout, p.stderr);
    assert_eq!(p.stdout.lines().count(), 1, "{:?}", p.stdout);
    assert!(p.stdout.starts_with(&format!("healthy: 200 from {url} in ")), "{:?}", p.stdout);
    assert!(p.stdout.trim_end().ends_with(": s3 pass"), "{:?}", p.stdout);
    assert_eq!(p.stderr, "");

    // No URL: the address comes from KUBERNARY_LISTEN, as in the daemon's
    // own environment; a bare path is taken on that address.
    let listen = daemon.addr().to_string();
    let p = probe(&[], &[("KUBERNARY_LISTEN", &listen)]);
    assert_eq!(p.code, 0, "{:?} {:?}", p.stdout, p.stderr);
    let p = probe(&["/livez"], &[("KUBERNARY_LISTEN", &listen)]);
    assert_eq!(p.code, 0, "{:?} {:?}", p.stdout, p.stderr);
    assert!(p.stdout.contains("/livez"), "{:?}", p.stdout);
}

#[test]
fn a_failing_check_exits_1_naming_it() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let daemon = daemon_against(&s3, "missing");
    let url = format!("http://{}/health", daemon.addr());

    let p = probe(&[&url], &[]);
    assert_eq!(p.code, 1, "stdout {:?} stderr {:?}", p.stdout, p.stderr);
    assert_eq!(p.stdout, "");
    assert_eq!(p.stderr.lines().count(), 1, "{:?}", p.stderr);
    assert!(p.stderr.starts_with(&format!("unhealthy: 503 from {url} in ")), "{:?}", p.stderr);
    assert!(p.stderr.contains(&format!("s3: s3 download of s3://{BUCKET}/missing")), "{:?}", p.stderr);
    assert!(p.stderr.contains("404 NoSuchKey"), "{:?}", p.stderr);

    // Only 200 is healthy: a 404 is not.
    let p = probe(&["/nope"], &[("KUBERNARY_LISTEN", &daemon.addr().to_string())]);
    assert_eq!(p.code, 1, "{:?}", p.stderr);
    assert!(p.stderr.starts_with("unhealthy: 404 from "), "{:?}", p.stderr);
}

#[test]
fn a_dead_port_exits_1_saying_so() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/health");
    let p = probe(&[&url], &[]);
    assert_eq!(p.code, 1, "stdout {:?} stderr {:?}", p.stdout, p.stderr);
    assert_eq!(p.stderr.lines().count(), 1, "{:?}", p.stderr);
    assert!(p.stderr.starts_with(&format!("unhealthy: GET {url}: ")), "{:?}", p.stderr);
    assert!(p.stderr.to_lowercase().contains("refused"), "{:?}", p.stderr);
}

#[test]
fn a_server_that_never_answers_exits_1_at_the_timeout() {
    let hang = HangServer::start();
    let url = format!("{}/health", hang.url());
    let p = probe(&[&url, "--timeout", "500ms"], &[]);
    assert_eq!(p.code, 1, "stdout {:?} stderr {:?}", p.stdout, p.stderr);
    assert_eq!(p.stderr.trim_end(), format!("unhealthy: GET {url}: timed out after 500ms"));
    assert!(p.took < Duration::from_secs(5), "took {:?}", p.took);
}

#[test]
fn bad_input_exits_2_and_help_exits_0() {
    let p = probe(&["--timeout", "soon"], &[]);
    assert_eq!(p.code, 2, "{:?}", p.stderr);
    assert!(p.stderr.starts_with("kubernary probe: --timeout: invalid duration"), "{:?}", p.stderr);
    let p = probe(&["--help"], &[]);
    assert_eq!(p.code, 0);
    assert!(p.stdout.starts_with("Usage: kubernary probe"), "{}", p.stdout);
}
