//! Truth over time: Prometheus /metrics, statsd prefix and tags,
//! hysteresis, and cached /health.

mod support;

use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use support::{ContainerCredsServer, CredsMode, Daemon, HangServer, S3Server, StatsdReceiver, TestCreds};

fn scrape(daemon: &Daemon) -> Scrape {
    let response = daemon.get("/metrics");
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let lines = response.body.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).expect("/metrics parses as Prometheus text")
}

/// The value of the sample `name` whose labels include all of `labels`.
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

fn s3_daemon(s3: &S3Server, args: &[&str], extra: &[(&str, &str)]) -> Daemon {
    let endpoint = s3.endpoint();
    let mut env = vec![
        ("KUBERNARY_S3_BUCKET", "canary"),
        ("KUBERNARY_S3_ENDPOINT", endpoint.as_str()),
        ("KUBERNARY_S3_INTERVAL", "1h"),
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ];
    env.extend_from_slice(extra);
    Daemon::start(args, &env)
}

#[test]
fn metrics_follow_passing_and_failing_runs() {
    let test_began =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let s3 = S3Server::start();
    s3.put_object("canary", "check", b"ok");
    let daemon = s3_daemon(&s3, &["--no-stats"], &[]);
    assert!(daemon.wait_for_log("check s3 passed", Duration::from_secs(10)));
    assert_eq!(daemon.json("/health").0, 200);
    assert_eq!(daemon.json("/health").0, 200);
    s3.remove_object("canary", "check");
    assert_eq!(daemon.json("/health").0, 503);

    let m = scrape(&daemon);
    let check = [("check", "s3")];
    assert_eq!(sample(&m, "kubernary_check_success", &[("check", "s3"), ("kind", "s3")]), Some(0.0));
    assert_eq!(
        sample(&m, "kubernary_check_runs_total", &[("check", "s3"), ("result", "success")]),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "kubernary_check_runs_total", &[("check", "s3"), ("result", "failure")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "kubernary_check_failures_total", &[("check", "s3"), ("reason", "not_found")]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "kubernary_check_consecutive_failures", &check), Some(1.0));
    assert_eq!(sample(&m, "kubernary_check_duration_seconds_count", &check), Some(4.0));
    let last_success = sample(&m, "kubernary_check_last_success_timestamp_seconds", &check).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last_success).abs() < 60.0, "last success {last_success} vs now {now}");
    assert_eq!(sample(&m, "kubernary_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert!(sample(&m, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(sample(&m, "process_threads", &[]).unwrap() >= 3.0);
    assert!(sample(&m, "process_open_fds", &[]).unwrap() >= 3.0);
    let rss = sample(&m, "process_resident_memory_bytes", &[]).unwrap();
    assert!(sample(&m, "process_virtual_memory_bytes", &[]).unwrap() >= rss);
    // The daemon inherits this test's limit on open files.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: f64 = limits.lines().find(|l| l.starts_with("Max open files")).unwrap()[14..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sample(&m, "process_max_fds", &[]), Some(soft));
    // Started after this test began and before the scrape.
    let started = sample(&m, "process_start_time_seconds", &[]).unwrap();
    assert!(
        started <= now + 1.0 && started > test_began - 2.0,
        "started {started}, test began {test_began}, now {now}"
    );
    let errors_in_labels = m.samples.iter().any(|s| s.labels.values().any(|v| v.contains("NoSuchKey")));
    assert!(!errors_in_labels, "an error string became a label");

    // Scraping never runs a check: a run is counted before anyone hears of
    // it, so the count a scrape shows is the count of runs settled.
    let runs = |m: &Scrape| sample(m, "kubernary_check_duration_seconds_count", &check);
    let runs_before = runs(&m);
    for _ in 0..5 {
        assert_eq!(runs(&scrape(&daemon)), runs_before);
    }
}

#[test]
fn statsd_prefix_and_tags_with_the_reason() {
    let s3 = S3Server::start();
    s3.create_bucket("canary");
    let statsd = StatsdReceiver::new();
    let addr = statsd.addr().to_string();
    let _daemon = s3_daemon(&s3, &["--prefix=canary", "--tag", "env=test", "--tag=team=sre", &addr], &[]);
    let lines = statsd.lines_until(
        |l| l.iter().any(|x| x.starts_with("canary.s3.download.failed")),
        Duration::from_secs(10),
    );
    let failed = lines.iter().find(|l| l.starts_with("canary.s3.download.failed")).expect("failure counter");
    assert!(failed.starts_with("canary.s3.download.failed:1|c|#"), "{failed}");
    for tag in ["env:test", "team:sre", "reason:not_found"] {
        assert!(failed.contains(tag), "{tag} missing from {failed}");
    }
    let lines = statsd.lines_until(|l| l.iter().any(|x| x.contains(".duration:")), Duration::from_secs(5));
    assert!(lines.iter().chain([failed]).all(|l| l.starts_with("canary.")), "{lines:?}");
}

#[test]
fn hysteresis_follows_fail_fail_pass() {
    let s3 = S3Server::start();
    s3.put_object("canary", "check", b"ok");
    let daemon = s3_daemon(&s3, &["--no-stats"], &[("KUBERNARY_S3_FAIL_AFTER", "2")]);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["s3"]["consecutive_failures"], 0);
    assert!(body["s3"]["last_success"].as_str().unwrap().ends_with('Z'), "{body}");
    assert!(body["s3"]["last_run"].is_string(), "{body}");
    // How long the run's worker waited for a CPU: what tells a starved
    // canary from a slow backend.
    assert!(body["s3"]["run_queue_wait_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{body}");

    s3.remove_object("canary", "check");
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "one failure is tolerated with FAIL_AFTER=2: {body}");
    assert_eq!(body["s3"]["ok"], true);
    assert_eq!(body["s3"]["consecutive_failures"], 1);
    assert_eq!(body["s3"]["last_run_ok"], false);
    assert_eq!(body["s3"]["last_run_reason"], "not_found");

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "not_found");
    assert_eq!(body["s3"]["consecutive_failures"], 2);

    s3.put_object("canary", "check", b"ok");
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "PASS_AFTER defaults to 1: {body}");
    assert_eq!(body["s3"]["consecutive_failures"], 0);
}

#[test]
fn cached_health_does_not_touch_the_backend() {
    let s3 = S3Server::start();
    s3.put_object("canary", "check", b"ok");
    let creds =
        ContainerCredsServer::start(CredsMode::Serve(TestCreds::new(s3.access_key(), s3.secret_key(), "t")));
    let uri = creds.full_uri();
    let endpoint = s3.endpoint();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", "canary"),
            ("KUBERNARY_S3_ENDPOINT", &endpoint),
            ("KUBERNARY_S3_INTERVAL", "1h"),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
        ],
    );
    assert!(daemon.wait_for_log("check s3 passed", Duration::from_secs(10)));
    // Each run asks the credentials endpoint once: it counts runs.
    let runs = creds.request_count();
    assert_eq!(runs, 1);
    for _ in 0..5 {
        let (status, body) = daemon.json("/health?cached=true");
        assert_eq!(status, 200, "{body}");
        assert!(body["s3"]["age_seconds"].as_f64().unwrap() >= 0.0, "{body}");
        assert_eq!(body["s3"]["credential_source"], "container");
    }
    assert_eq!(creds.request_count(), runs, "a cached answer ran the check");
    assert_eq!(daemon.json("/health").0, 200);
    assert_eq!(creds.request_count(), runs + 1, "an uncached answer runs it");
}

#[test]
fn cached_health_with_no_result_yet_is_stale() {
    let hang = HangServer::start();
    let url = hang.url();
    let daemon = Daemon::start(
        &["--no-stats", "--cached-health"],
        &[
            ("KUBERNARY_S3_BUCKET", "canary"),
            ("KUBERNARY_S3_ENDPOINT", &url),
            ("KUBERNARY_S3_TIMEOUT", "10s"),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["reason"], "stale", "{body}");
    assert_eq!(body["s3"]["error"], "no run has finished yet");
}

/// A statsd name with two addresses, the first with nothing listening (as
/// when a name resolves to IPv6 first and statsd listens on IPv4): the
/// metrics go to the second. The name comes from /etc/hosts in a mount
/// namespace of the daemon's own; glibc sorts 127.0.0.1 before 127.0.0.2.
#[test]
fn statsd_metrics_reach_the_second_address_when_the_first_refuses() {
    let statsd = StatsdReceiver::bind("127.0.0.2:0".parse().unwrap()).expect("bind 127.0.0.2");
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.2 statsd-pair\n127.0.0.1 statsd-pair\n").unwrap();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = backend.local_addr().unwrap().to_string();
    let target = format!("statsd-pair:{}", statsd.addr().port());
    let env = [
        ("KUBERNARY_CHECKS", "t=tcp"),
        ("KUBERNARY_T_ADDRESS", address.as_str()),
        ("KUBERNARY_T_INTERVAL", "1h"),
    ];
    let Some(daemon) = Daemon::start_with_hosts(&hosts, &[&target], &env) else { return };
    // Every run sends a few lines; the first to the refusing address is
    // lost, and the kernel says so on the next send.
    let mut lines = Vec::new();
    for _ in 0..10 {
        assert_eq!(daemon.json("/health").0, 200);
        lines = statsd.lines_until(
            |l| l.iter().any(|x| x.starts_with("kubernary.t.connect.succeeded")),
            Duration::from_secs(1),
        );
        if !lines.is_empty() {
            break;
        }
    }
    assert!(
        lines.iter().any(|l| l.starts_with("kubernary.t.connect.")),
        "no metrics at the second address: {lines:?}\n{:#?}",
        daemon.logs()
    );
}
