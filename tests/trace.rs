//! `GET /health/<name>?debug=true`: a run now whose answer carries its
//! trace, each step at its offset from the run's start, from the real
//! daemon over loopback. (tests/secrets.rs checks that traces hide secrets.)

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{eventually, Daemon, TestCa, WebServer};

/// A daemon running `checks` once at start (then hourly), the resolver kept
/// off the network (see tests/kinds.rs), once that first run is done.
fn start(checks: &str, envs: &[(&str, String)]) -> Daemon {
    let mut all: Vec<(String, String)> =
        vec![("KUBERNARY_CHECKS".into(), checks.into()), ("RES_OPTIONS".into(), "attempts:0".into())];
    for name in checks.split(',').map(|c| c.split('=').next().unwrap()) {
        all.push((format!("KUBERNARY_{}_INTERVAL", name.to_ascii_uppercase()), "1h".into()));
    }
    all.extend(envs.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start(&["--no-stats"], &borrowed);
    for name in checks.split(',').map(|c| c.split('=').next().unwrap()) {
        let done = [format!("check {name} passed"), format!("check {name} failed")];
        assert!(
            eventually(Duration::from_secs(15), || d
                .logs()
                .iter()
                .any(|l| done.iter().any(|s| l.contains(s)))),
            "check {name} did not finish its first run"
        );
    }
    d
}

#[test]
fn an_http_check_traces_resolve_connect_request_status_and_body() {
    let web = WebServer::start();
    web.set("/ok", 200, "fine");
    let url = format!("http://localhost:{}/ok", web.port());
    let d = start("web=http", &[("KUBERNARY_WEB_URL", url.clone())]);

    let (plain_status, plain) = d.json("/health/web");
    assert_eq!(plain_status, 200, "{plain}");
    assert!(plain["web"].get("trace").is_none(), "only a debug run is traced: {plain}");

    let (result, steps) = d.debug_run("web");
    assert_eq!(result["ok"], true, "{result}");
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["request", "resolve", "connect", "status", "headers", "body", "note"], "{result}");
    let detail = |step: &str| &steps.iter().find(|(s, _)| s == step).unwrap().1;
    assert!(detail("resolve").starts_with("localhost -> "), "{result}");
    let port = web.port();
    let connect = detail("connect");
    assert!(connect.starts_with("connected to ") && connect.contains(&format!(":{port}")), "{result}");
    assert_eq!(detail("request"), &format!("GET {url}"), "{result}");
    assert_eq!(detail("status"), "200 OK", "{result}");
    assert!(detail("headers").to_ascii_lowercase().contains("content-length: 4"), "{result}");
    assert!(detail("body").starts_with("4 bytes"), "{result}");
    assert_eq!(detail("note"), "status_code: 200", "what the check noted is a step too: {result}");
}

#[test]
fn an_https_check_traces_the_handshake_between_connect_and_status() {
    let ca = TestCa::new();
    let web = WebServer::start_tls(&ca);
    web.set("/ok", 200, "fine");
    let envs = [
        ("KUBERNARY_SECURE_URL", format!("https://localhost:{}/ok", web.port())),
        ("KUBERNARY_SECURE_CA_FILE", ca.ca_path().display().to_string()),
    ];
    let d = start("secure=http", &envs);
    let (result, steps) = d.debug_run("secure");
    assert_eq!(result["ok"], true, "{result}");
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names[..6], ["request", "resolve", "connect", "tls", "note", "status"], "{result}");
    assert_eq!(steps[4].1, "tls_expires: \"4096-01-01T00:00:00Z\"", "{result}");
    // What was negotiated, and the leaf the server presented (the test CA's
    // leaf: rcgen's default expiry is 4096-01-01).
    let tls = &steps[3].1;
    assert!(tls.starts_with("TLSv1.3 TLS13_"), "{result}");
    assert!(
        tls.ends_with(
            " with localhost; certificate CN=localhost, issued by CN=kubernary test CA, expires 4096-01-01T00:00:00Z"
        ),
        "{result}"
    );
}

#[test]
fn an_https_check_reports_when_the_certificates_expire_in_health_and_metrics() {
    let ca = TestCa::new();
    let web = WebServer::start_tls(&ca);
    web.set("/ok", 200, "fine");
    let plain = WebServer::start();
    plain.set("/ok", 200, "fine");
    let envs = [
        ("KUBERNARY_SECURE_URL", format!("https://localhost:{}/ok", web.port())),
        ("KUBERNARY_SECURE_CA_FILE", ca.ca_path().display().to_string()),
        ("KUBERNARY_PLAIN_URL", format!("http://localhost:{}/ok", plain.port())),
    ];
    let d = start("secure=http,plain=http", &envs);
    let (_, body) = d.json("/health");
    // rcgen's certificates, leaf and CA, expire on 4096-01-01.
    assert_eq!(body["secure"]["tls_expires"], "4096-01-01T00:00:00Z", "{body}");
    assert!(body["plain"].get("tls_expires").is_none(), "no handshake, no expiry: {body}");
    let metrics = d.get("/metrics").body;
    assert!(
        metrics.contains("\nkubernary_check_tls_expiry_timestamp_seconds{check=\"secure\"} 67090118400\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("kubernary_check_tls_expiry_timestamp_seconds{check=\"plain\"}"), "{metrics}");
}

#[test]
fn a_tcp_check_to_a_refusing_port_traces_the_failed_connect() {
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let d = start("gone=tcp", &[("KUBERNARY_GONE_ADDRESS", format!("localhost:{refused}"))]);
    let (result, steps) = d.debug_run("gone");
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["reason"], "connect", "{result}");
    assert_eq!(steps[0].0, "resolve", "{result}");
    assert!(steps[0].1.contains(&format!("127.0.0.1:{refused}")), "{result}");
    let failed = steps
        .iter()
        .find(|(step, detail)| {
            step == "connect" && detail.starts_with(&format!("127.0.0.1:{refused} failed: "))
        })
        .unwrap_or_else(|| panic!("no failed connect to 127.0.0.1:{refused}: {result}"));
    assert!(failed.1.to_ascii_lowercase().contains("refused"), "{result}");
    assert!(!steps.iter().any(|(_, detail)| detail.starts_with("connected")), "{result}");
    let (last, why) = steps.last().unwrap();
    assert_eq!(last, "failed", "{result}");
    assert_eq!(why, &format!("connect: {}", result["error"].as_str().unwrap()), "{result}");
}
