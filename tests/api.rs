//! The HTTP endpoints: routes, status codes, joining runs in flight, and a
//! slow `/health` never holding up anything else.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{Daemon, HangServer, S3Server};

fn passing_daemon(s3: &S3Server, extra: &[(&str, &str)]) -> Daemon {
    s3.put_object("canary", "check", b"ok");
    let endpoint = s3.endpoint();
    let mut env = vec![
        ("KUBERNARY_CHECKS", "s3,other=s3"),
        ("KUBERNARY_S3_BUCKET", "canary"),
        ("KUBERNARY_S3_ENDPOINT", endpoint.as_str()),
        ("KUBERNARY_OTHER_BUCKET", "canary"),
        ("KUBERNARY_OTHER_KEY", "absent"),
        ("KUBERNARY_OTHER_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ];
    env.extend_from_slice(extra);
    Daemon::start(&["--no-stats"], &env)
}

#[test]
fn routes_and_status_codes() {
    let s3 = S3Server::start();
    let daemon = passing_daemon(&s3, &[("KUBERNARY_ACCESS_LOG", "true")]);

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "one failing check makes the whole answer 503: {body}");
    assert_eq!(body["s3"]["ok"], true);
    assert_eq!(body["other"]["ok"], false);
    assert_eq!(body["other"]["reason"], "not_found");

    let (status, body) = daemon.json("/health/s3");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "only the named check: {body}");
    assert_eq!(daemon.json("/health/s3?verbose=1").0, 200, "a query string does not change the route");

    let response = daemon.get("/health");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(daemon.get("/health/nope").status, 404);
    assert_eq!(daemon.get("/livez").status, 200);
    assert_eq!(daemon.get("/metrics-or-anything").status, 404);
    let wrong = daemon.request("POST", "/health");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));
    assert_eq!(daemon.request("DELETE", "/livez").status, 405);
    assert_eq!(daemon.request("PUT", "/quitquitquit").status, 405);
    let server = daemon.get("/livez");
    assert_eq!(server.header("server"), Some("kubernary"), "no library name or version in Server");

    // With --access-log every request is logged: method, path, peer, status, duration.
    assert!(daemon.wait_for_log("GET /health/nope from 127.0.0.1:", Duration::from_secs(5)));
    // Lines reach the log through a queue: wait for this one too.
    assert!(support::eventually(Duration::from_secs(5), || daemon
        .logs()
        .iter()
        .any(|l| l.contains("POST /health from 127.0.0.1:") && l.contains(": 405 in "))));
}

#[test]
fn concurrent_health_requests_share_the_run_in_flight() {
    let hang = HangServer::start();
    let url = hang.url();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", "canary"),
            ("KUBERNARY_S3_ENDPOINT", &url),
            ("KUBERNARY_S3_TIMEOUT", "2s"),
            ("KUBERNARY_S3_INTERVAL", "1h"),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    // Let the start-up run finish (time out, and its worker give up and
    // close its socket) so the probes below start afresh.
    assert!(daemon.wait_for_log("check s3 failed (timeout)", Duration::from_secs(10)));
    assert!(support::eventually(Duration::from_secs(10), || hang.open_connections() == 0));
    let before = hang.connections();

    let addr = daemon.addr();
    let probes: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || support::http_request(addr, "GET", "/health", &[], b"").unwrap().status)
        })
        .collect();
    for probe in probes {
        assert_eq!(probe.join().unwrap(), 503);
    }
    // One run: its reachability probe plus the request itself.
    let used = hang.connections() - before;
    assert!(used <= 2, "8 concurrent probes opened {used} backend connections");
    // /metrics counts a run before its waiters are answered.
    let metrics = daemon.get("/metrics").body;
    let runs = "kubernary_check_runs_total{check=\"s3\",result=\"failure\"} ";
    let runs = metrics.lines().find_map(|l| l.strip_prefix(runs)).unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(runs, "2", "the start-up run and one shared run");
}

#[test]
fn a_slow_health_never_holds_up_livez() {
    let hang = HangServer::start();
    let url = hang.url();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_S3_BUCKET", "canary"),
            ("KUBERNARY_S3_ENDPOINT", &url),
            ("KUBERNARY_S3_TIMEOUT", "5s"),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    let addr = daemon.addr();
    let slow: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || support::http_request(addr, "GET", "/health", &[], b"").unwrap().status)
        })
        .collect();
    // The run is going once it reaches the backend; the probes wait on it.
    assert!(support::eventually(Duration::from_secs(10), || hang.connections() >= 1));
    let began = Instant::now();
    assert_eq!(daemon.get("/livez").status, 200);
    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "/livez waited {took:?} behind /health");
    for probe in slow {
        assert_eq!(probe.join().unwrap(), 503);
    }
}
