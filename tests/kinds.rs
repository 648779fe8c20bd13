//! The `http`, `tcp`, `dns` and `kubernetes` kinds, driven through the real
//! daemon over real loopback sockets. Needs rclone for the one `s3` check:
//! run scripts/test-deps.sh first.
//!
//! No test sends anything off the machine. Every daemon gets
//! `RES_OPTIONS=attempts:0`, which tells glibc's resolver to try its name
//! servers zero times: `/etc/hosts` still answers (`localhost`), and any
//! other name fails at once with "Temporary failure in name resolution"
//! instead of asking the machine's DNS server (verified with strace: no
//! UDP socket is even opened).

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    eventually, Daemon, FullBacklog, HangServer, Route, S3Server, StatsdReceiver, TestCa, WebServer,
};

/// Keeps the resolver off the network; see the module docs.
const NO_DNS_SERVERS: (&str, &str) = ("RES_OPTIONS", "attempts:0");

const DEFAULT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Long enough that no scheduled run interferes after the one at start.
const QUIET_INTERVAL: &str = "1h";

/// A check's extra `(KEY, value)` settings.
type Extra<'a> = Vec<(&'a str, String)>;

type Env<'a> = &'a [(&'a str, &'a str)];

fn kv(key: &str, value: impl ToString) -> (String, String) {
    (key.to_string(), value.to_string())
}

/// A daemon running `checks` with `envs`, plus `RES_OPTIONS` and a quiet
/// INTERVAL for every check.
fn start(args: &[&str], checks: &str, envs: &[(String, String)]) -> Daemon {
    let mut all: Vec<(String, String)> =
        vec![kv("KUBERNARY_CHECKS", checks), kv(NO_DNS_SERVERS.0, NO_DNS_SERVERS.1)];
    for item in checks.split(',') {
        let name = item.split('=').next().unwrap().trim();
        let var = format!("KUBERNARY_{}_INTERVAL", name.to_ascii_uppercase().replace('-', "_"));
        all.push(kv(&var, QUIET_INTERVAL));
    }
    all.extend(envs.iter().cloned());
    let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // --debug: wait_startup_runs reads when a timed-out run lets go.
    let mut args = args.to_vec();
    if !args.contains(&"--debug") {
        args.push("--debug");
    }
    Daemon::start(&args, &borrowed)
}

/// Waits until every check in `names` has logged the end of its run at
/// start, so that the next `/health` starts a run of its own.
fn wait_startup_runs(d: &Daemon, names: &[&str]) {
    for name in names {
        let passed = format!("check {name} passed");
        let failed = format!("check {name} failed");
        assert!(
            eventually(Duration::from_secs(15), || d
                .logs()
                .iter()
                .any(|l| l.contains(&passed) || l.contains(&failed))),
            "check {name} did not finish its first run"
        );
        // A run reported at its deadline holds the check until its worker
        // returns, and a /health meanwhile would join it; a run that ended
        // by itself let go as it was reported.
        if d.logs().iter().any(|l| l.contains(&format!("check {name} failed (timeout)"))) {
            let returned = format!("check {name}: the run that timed out returned");
            assert!(
                d.wait_for_log(&returned, Duration::from_secs(15)),
                "{name}'s timed-out run never returned"
            );
        }
    }
}

/// `/health/<name>`: the check's JSON object and how long the answer took.
fn health(d: &Daemon, name: &str) -> (Value, Duration) {
    let t0 = Instant::now();
    let (status, json) = d.json(&format!("/health/{name}"));
    let took = t0.elapsed();
    let result = json[name].clone();
    assert!(result.is_object(), "/health/{name}: {json}");
    let ok = result["ok"].as_bool().expect("ok is a bool");
    assert_eq!(status, if ok { 200 } else { 503 }, "/health/{name}: {json}");
    (result, took)
}

#[track_caller]
fn assert_passes(d: &Daemon, name: &str) -> Value {
    let (result, _) = health(d, name);
    assert_eq!(result["ok"], true, "{name}: {result}");
    assert_eq!(result["error"], "", "{name}: {result}");
    assert_eq!(result["reason"], "", "{name}: {result}");
    result
}

/// Asserts the check fails with `reason`; returns its error message.
#[track_caller]
fn assert_fails(d: &Daemon, name: &str, reason: &str) -> String {
    let (result, _) = health(d, name);
    assert_eq!(result["ok"], false, "{name}: {result}");
    assert_eq!(result["reason"], reason, "{name}: {result}");
    let error = result["error"].as_str().unwrap().to_string();
    assert!(!error.is_empty(), "{name}: {result}");
    error
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[test]
fn all_five_kinds_pass_in_one_daemon_with_their_metrics() {
    let ca = TestCa::new();
    let s3 = S3Server::start();
    s3.put_object("bucket", "check", b"canary");
    let web = WebServer::start_tls(&ca);
    web.set("/healthz", 200, "ok");
    let api = WebServer::start_tls(&ca);
    api.set("/readyz", 200, "ok");
    api.require_bearer(Some("pod-token"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "pod-token\n").unwrap();
    let statsd = StatsdReceiver::new();

    let d = start(
        &[&statsd.addr().to_string()],
        "bucket=s3,web=http,port=tcp,names=dns,api=kubernetes",
        &[
            kv("AWS_ACCESS_KEY_ID", s3.access_key()),
            kv("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
            kv("KUBERNARY_BUCKET_BUCKET", "bucket"),
            kv("KUBERNARY_BUCKET_ENDPOINT", s3.endpoint()),
            kv("KUBERNARY_WEB_URL", web.url("/healthz")),
            kv("KUBERNARY_WEB_CA_FILE", ca.ca_path().display()),
            kv("KUBERNARY_PORT_ADDRESS", listener.local_addr().unwrap()),
            kv("KUBERNARY_NAMES_NAME", "localhost"),
            kv("KUBERNARY_API_URL", api.base_url()),
            kv("KUBERNARY_API_TOKEN_FILE", token.path().display()),
            kv("KUBERNARY_API_CA_FILE", ca.ca_path().display()),
        ],
    );
    wait_startup_runs(&d, &["bucket", "web", "port", "names", "api"]);
    let (status, json) = d.json("/health");
    assert_eq!(status, 200, "{json}");
    for (name, kind) in
        [("bucket", "s3"), ("web", "http"), ("port", "tcp"), ("names", "dns"), ("api", "kubernetes")]
    {
        assert_eq!(json[name]["ok"], true, "{name}: {json}");
        assert_eq!(json[name]["error"], "", "{name}: {json}");
        assert_eq!(json[name]["reason"], "", "{name}: {json}");
        assert_eq!(json[name]["kind"], kind, "{name}: {json}");
    }
    assert_eq!(json["web"]["status_code"], 200, "{json}");
    assert_eq!(json["api"]["status_code"], 200, "{json}");
    assert_eq!(json["port"]["address"], listener.local_addr().unwrap().to_string());
    assert!(json["names"]["addresses"].as_str().unwrap().contains("127.0.0.1"), "{json}");

    // Two runs each (at start and for /health), each with its kind's verb.
    let want = [
        "kubernary.bucket.download.succeeded",
        "kubernary.web.request.succeeded",
        "kubernary.port.connect.succeeded",
        "kubernary.names.lookup.succeeded",
        "kubernary.api.request.succeeded",
    ];
    let count = |lines: &[String], metric: &str| {
        lines.iter().filter(|l| l.starts_with(&format!("{metric}:"))).count()
    };
    let lines =
        statsd.lines_until(|lines| want.iter().all(|m| count(lines, m) >= 2), Duration::from_secs(10));
    for metric in want {
        assert!(count(&lines, metric) >= 2, "{metric} missing: {lines:#?}");
        let timer = metric.replace(".succeeded", ".duration");
        assert!(lines.iter().any(|l| l.starts_with(&format!("{timer}:"))), "{timer} missing: {lines:#?}");
    }
    assert!(!lines.iter().any(|l| l.contains(".failed:")), "{lines:#?}");
}

#[test]
fn http_judges_statuses_redirects_and_tls() {
    let ca = TestCa::new();
    let web = WebServer::start();
    web.set("/ok", 200, "fine");
    web.set("/down", 503, "down for maintenance");
    web.set("/private", 401, "who are you");
    web.set("/forbidden", 403, "not you");
    web.set("/moved", 302, "");
    web.redirect("/moved", 302, "/ok");
    web.redirect("/loop", 302, "/loop");
    let tls = WebServer::start_tls(&ca);
    tls.set("/ok", 200, "fine");
    let keep = WebServer::start();
    keep.set("/ok", 200, "fine");
    keep.set_keep_alive(true);
    let refused = closed_port();
    let ca_file = ca.ca_path().display().to_string();
    let with_ca = || vec![("CA_FILE", ca_file.clone())];
    let expect = |s: &str| vec![("EXPECT_STATUS", s.to_string())];
    let follow = || vec![("FOLLOW_REDIRECTS", "true".to_string())];

    let checks: Vec<(&str, String, Extra)> = vec![
        ("ok", web.url("/ok"), vec![]),
        ("keep-alive", keep.url("/ok"), vec![]),
        ("down", web.url("/down"), vec![]),
        ("missing", web.url("/nothing-here"), vec![]),
        ("private", web.url("/private"), vec![]),
        ("forbidden", web.url("/forbidden"), vec![]),
        ("down-wanted", web.url("/down"), expect("204, 5xx")),
        ("exact", web.url("/ok"), expect("201")),
        ("moved", web.url("/moved"), vec![]),
        ("moved-ok", web.url("/moved"), expect("200-399")),
        ("follow", web.url("/moved"), follow()),
        ("loop", web.url("/loop"), follow()),
        ("tls", tls.url("/ok"), with_ca()),
        ("tls-ip", format!("https://127.0.0.1:{}/ok", tls.port()), with_ca()),
        ("tls-no-ca", tls.url("/ok"), vec![]),
        ("tls-to-plain", format!("https://127.0.0.1:{}/ok", web.port()), vec![]),
        ("refused", format!("http://127.0.0.1:{refused}/"), vec![]),
        ("no-such-host", "http://nothing.invalid/".to_string(), vec![]),
    ];
    let mut envs = Vec::new();
    let mut names = Vec::new();
    for (name, url, extra) in &checks {
        let prefix = format!("KUBERNARY_{}_", name.to_ascii_uppercase().replace('-', "_"));
        envs.push(kv(&format!("{prefix}URL"), url));
        for (key, value) in extra {
            envs.push(kv(&format!("{prefix}{key}"), value));
        }
        names.push(format!("{name}=http"));
    }
    let d = start(&["--no-stats"], &names.join(","), &envs);
    let all: Vec<&str> = checks.iter().map(|c| c.0).collect();
    wait_startup_runs(&d, &all);

    let r = assert_passes(&d, "ok");
    assert_eq!(r["status_code"], 200);
    assert_eq!(
        assert_fails(&d, "down", "http_status"),
        format!("GET {}: 503 Service Unavailable, want 2xx", web.url("/down"))
    );
    assert_eq!(
        assert_fails(&d, "missing", "not_found"),
        format!("GET {}: 404 Not Found, want 2xx", web.url("/nothing-here"))
    );
    assert!(assert_fails(&d, "private", "denied").contains("401 Unauthorized, want 2xx"));
    assert!(assert_fails(&d, "forbidden", "denied").contains("403 Forbidden, want 2xx"));
    assert_passes(&d, "down-wanted");
    assert!(assert_fails(&d, "exact", "http_status").ends_with("200 OK, want 201"));
    let moved = assert_fails(&d, "moved", "http_status");
    assert!(
        moved.ends_with(
            "302 Found, want 2xx (a redirect: set KUBERNARY_MOVED_FOLLOW_REDIRECTS=true to follow it)"
        ),
        "{moved}"
    );
    assert_passes(&d, "moved-ok");
    let follow = assert_passes(&d, "follow");
    assert_eq!(follow["status_code"], 200);
    assert!(assert_fails(&d, "loop", "http_status").contains("still a redirect"));
    assert_passes(&d, "tls");
    assert_passes(&d, "tls-ip");
    let no_ca = assert_fails(&d, "tls-no-ca", "tls");
    assert!(no_ca.starts_with(&format!("GET {}: TLS: ", tls.url("/ok"))), "{no_ca}");
    assert!(no_ca.contains("UnknownIssuer"), "{no_ca}");
    assert!(assert_fails(&d, "tls-to-plain", "tls").contains("TLS"));

    // Every run opens a connection of its own, even to a server that would
    // keep it open: a canary measures connect and TLS each time, and never
    // trips over a pooled connection the server has just closed.
    let before = keep.connection_count();
    for _ in 0..3 {
        assert_passes(&d, "keep-alive");
    }
    assert_eq!(keep.connection_count(), before + 3);
    let refused_msg = assert_fails(&d, "refused", "connect");
    assert!(refused_msg.starts_with(&format!("GET http://127.0.0.1:{refused}/: ")), "{refused_msg}");
    assert!(refused_msg.to_lowercase().contains("connection refused"), "{refused_msg}");
    let no_host = assert_fails(&d, "no-such-host", "dns");
    assert!(no_host.starts_with("GET http://nothing.invalid/: "), "{no_host}");
}

#[test]
fn tcp_connects_refuses_and_resolves() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let refused = closed_port();
    let v4_port = v4.local_addr().unwrap().port();
    let d = start(
        &["--no-stats"],
        "v4=tcp,v6=tcp,name=tcp,refused=tcp,refused-name=tcp,no-such-host=tcp",
        &[
            kv("KUBERNARY_V4_ADDRESS", v4.local_addr().unwrap()),
            kv("KUBERNARY_V6_ADDRESS", v6.local_addr().unwrap()),
            kv("KUBERNARY_NAME_ADDRESS", format!("localhost:{v4_port}")),
            kv("KUBERNARY_REFUSED_ADDRESS", format!("127.0.0.1:{refused}")),
            kv("KUBERNARY_REFUSED_NAME_ADDRESS", format!("localhost:{refused}")),
            kv("KUBERNARY_NO_SUCH_HOST_ADDRESS", "nothing.invalid:80"),
        ],
    );
    wait_startup_runs(&d, &["v4", "v6", "name", "refused", "refused-name", "no-such-host"]);
    assert_passes(&d, "v4");
    let v6_result = assert_passes(&d, "v6");
    assert_eq!(v6_result["address"], v6.local_addr().unwrap().to_string());
    let by_name = assert_passes(&d, "name");
    assert_eq!(by_name["address"], format!("127.0.0.1:{v4_port}"));
    assert_eq!(
        assert_fails(&d, "refused", "connect"),
        format!("connect to 127.0.0.1:{refused}: connection refused")
    );
    let refused_name = assert_fails(&d, "refused-name", "connect");
    assert!(refused_name.starts_with(&format!("connect to localhost:{refused}: ")), "{refused_name}");
    assert!(refused_name.contains(&format!("127.0.0.1:{refused}: connection refused")), "{refused_name}");
    assert_eq!(
        assert_fails(&d, "no-such-host", "dns"),
        "connect to nothing.invalid:80: cannot resolve nothing.invalid: Temporary failure in name resolution"
    );
}

#[test]
fn dns_resolves_hosts_file_names_and_not_invalid_ones() {
    let d = start(
        &["--no-stats"],
        "localhost=dns,invalid=dns,too-few=dns",
        &[
            kv("KUBERNARY_LOCALHOST_NAME", "localhost"),
            kv("KUBERNARY_INVALID_NAME", "something.invalid"),
            kv("KUBERNARY_TOO_FEW_NAME", "localhost"),
            kv("KUBERNARY_TOO_FEW_MIN_ADDRESSES", "50"),
        ],
    );
    wait_startup_runs(&d, &["localhost", "invalid", "too-few"]);
    let ok = assert_passes(&d, "localhost");
    assert!(ok["addresses"].as_str().unwrap().contains("127.0.0.1"), "{ok}");
    assert_eq!(
        assert_fails(&d, "invalid", "dns"),
        "lookup of something.invalid: Temporary failure in name resolution"
    );
    let too_few = assert_fails(&d, "too-few", "dns");
    assert!(
        too_few.starts_with("lookup of localhost: ") && too_few.ends_with(", want at least 50"),
        "{too_few}"
    );
    assert!(too_few.contains("127.0.0.1"), "{too_few}");
}

#[test]
fn kubernetes_sends_the_token_and_picks_up_a_rotated_one() {
    let ca = TestCa::new();
    let api = WebServer::start_tls(&ca);
    api.set("/readyz", 200, "ok");
    api.set("/version", 200, r#"{"major":"1","minor":"31"}"#);
    api.set("/broken", 500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n");
    api.route("/forbidden", {
        let mut r = Route::new(
            403,
            r#"{"kind":"Status","status":"Failure","message":"forbidden: User \"system:serviceaccount:canary:kubernary\" cannot get path \"/forbidden\"","reason":"Forbidden","code":403}"#,
        );
        r.headers.push(("Content-Type".into(), "application/json".into()));
        r
    });
    api.require_bearer(Some("token-one"));
    // The in-cluster default address, with an IPv6 service host.
    let api6 = WebServer::start_on("[::1]:0", Some(&ca));
    api6.set("/readyz", 200, "ok");
    api6.require_bearer(Some("token-one"));

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let wrong = dir.path().join("wrong-token");
    let empty = dir.path().join("empty-token");
    std::fs::write(&token, "token-one\n").unwrap();
    std::fs::write(&wrong, "not-the-token").unwrap();
    std::fs::write(&empty, "\n").unwrap();
    let ca_file = ca.ca_path().display().to_string();
    let token_file = token.display().to_string();
    let check = |name: &str, extra: &[(&str, String)]| -> Vec<(String, String)> {
        let prefix = format!("KUBERNARY_{}_", name.to_ascii_uppercase().replace('-', "_"));
        let mut envs = vec![
            kv(&format!("{prefix}URL"), api.base_url()),
            kv(&format!("{prefix}TOKEN_FILE"), &token_file),
            kv(&format!("{prefix}CA_FILE"), &ca_file),
        ];
        for (key, value) in extra {
            envs.retain(|(k, _)| *k != format!("{prefix}{key}"));
            if !value.is_empty() {
                envs.push(kv(&format!("{prefix}{key}"), value));
            }
        }
        envs
    };
    let mut envs = Vec::new();
    envs.extend(check("api", &[]));
    envs.extend(check("version", &[("PATH", "/version".into())]));
    envs.extend(check("wrong", &[("TOKEN_FILE", wrong.display().to_string())]));
    envs.extend(check("no-token", &[("TOKEN_FILE", "/nonexistent/token".into())]));
    envs.extend(check("empty-token", &[("TOKEN_FILE", empty.display().to_string())]));
    envs.extend(check("broken", &[("PATH", "/broken".into())]));
    envs.extend(check("forbidden", &[("PATH", "/forbidden".into())]));
    envs.extend(check("gone", &[("PATH", "/nothing-here".into())]));
    envs.extend(check("no-ca", &[("CA_FILE", String::new())]));
    envs.extend(check("in-cluster", &[("URL", String::new())]));
    envs.push(kv("KUBERNETES_SERVICE_HOST", "::1"));
    envs.push(kv("KUBERNETES_SERVICE_PORT", api6.port()));
    let names = [
        "api",
        "version",
        "wrong",
        "no-token",
        "empty-token",
        "broken",
        "forbidden",
        "gone",
        "no-ca",
        "in-cluster",
    ];
    let list: Vec<String> = names.iter().map(|n| format!("{n}=kubernetes")).collect();
    // --debug: not even debug lines may carry a token.
    let d = start(&["--no-stats", "--debug"], &list.join(","), &envs);
    wait_startup_runs(&d, &names);

    assert_passes(&d, "api");
    let last = api.requests().into_iter().last().unwrap();
    assert_eq!(last.path, "/readyz");
    assert_eq!(last.header("authorization"), Some("Bearer token-one"));
    assert_passes(&d, "version");
    assert_passes(&d, "in-cluster");
    assert!(api6.request_count() >= 2);

    let url = api.base_url();
    let refused = assert_fails(&d, "wrong", "denied");
    assert_eq!(
        refused,
        format!(
            "GET {url}/readyz: 401 Unauthorized: the API server refused the service-account token from {} (expired, revoked, or issued by another cluster)",
            wrong.display()
        )
    );
    let no_token = assert_fails(&d, "no-token", "credentials");
    assert!(no_token.contains("cannot read the service-account token from /nonexistent/token"), "{no_token}");
    assert!(assert_fails(&d, "empty-token", "credentials").contains("is empty"));
    assert_eq!(
        assert_fails(&d, "broken", "http_status"),
        format!("GET {url}/broken: 500 Internal Server Error: [-]etcd failed: reason withheld")
    );
    let forbidden = assert_fails(&d, "forbidden", "denied");
    assert!(
        forbidden.contains("403 Forbidden: the API server refused the service-account token"),
        "{forbidden}"
    );
    assert!(forbidden.contains("cannot get path \"/forbidden\""), "{forbidden}");
    assert!(assert_fails(&d, "gone", "not_found").contains("404 Not Found"));
    assert!(assert_fails(&d, "no-ca", "tls").contains("UnknownIssuer"));

    // The token rotates: the server wants the new one at once, and the
    // check passes on its next run once the file holds it, without restart.
    api.require_bearer(Some("token-two"));
    assert!(assert_fails(&d, "api", "denied").contains("refused the service-account token"));
    std::fs::write(&token, "token-two\n").unwrap();
    assert_passes(&d, "api");
    let last = api.requests().into_iter().last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer token-two"));

    let logs = d.logs().join("\n");
    assert!(logs.contains("check wrong failed (denied)"), "{logs}");
    for secret in ["token-one", "token-two", "not-the-token"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

/// Every kind against a backend that never answers: the `/health` answer
/// comes at TIMEOUT, with reason `timeout`.
#[test]
fn timeouts_answer_at_the_deadline() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let ca = TestCa::new();
    let hang = HangServer::start();
    let backlog = FullBacklog::start();
    let stall = WebServer::start();
    stall.route("/slow", {
        let mut r = Route::new(200, &"x".repeat(1000));
        r.stall_body = true;
        r
    });
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "pod-token").unwrap();
    // The dns check resolves a name without dots, which glibc first looks
    // up in the file HOSTALIASES names. That file does not exist yet, so
    // the run at start fails at once; then it becomes a FIFO that nobody
    // writes, and the resolver blocks opening it, uncancellable, like a
    // resolver waiting on a dead name server.
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");

    let checks = [
        ("http-hang", "http"),
        ("https-hang", "http"),
        ("http-connect-hang", "http"),
        ("http-body-hang", "http"),
        ("tcp-hang", "tcp"),
        ("dns-hang", "dns"),
        ("kubernetes-hang", "kubernetes"),
    ];
    let list: Vec<String> = checks.iter().map(|(n, k)| format!("{n}={k}")).collect();
    let mut envs = vec![
        kv("KUBERNARY_HTTP_HANG_URL", format!("{}/healthz", hang.url())),
        kv("KUBERNARY_HTTPS_HANG_URL", format!("https://localhost:{}/healthz", hang.addr().port())),
        kv("KUBERNARY_HTTPS_HANG_CA_FILE", ca.ca_path().display()),
        kv("KUBERNARY_HTTP_CONNECT_HANG_URL", format!("http://{}/healthz", backlog.addr())),
        kv("KUBERNARY_HTTP_BODY_HANG_URL", stall.url("/slow")),
        kv("KUBERNARY_TCP_HANG_ADDRESS", backlog.addr()),
        kv("KUBERNARY_DNS_HANG_NAME", "kubernary-hang"),
        kv("HOSTALIASES", aliases.display()),
        kv("KUBERNARY_KUBERNETES_HANG_URL", hang.url()),
        kv("KUBERNARY_KUBERNETES_HANG_TOKEN_FILE", token.path().display()),
        kv("KUBERNARY_KUBERNETES_HANG_CA_FILE", ca.ca_path().display()),
    ];
    for (name, _) in &checks {
        let var = format!("KUBERNARY_{}_TIMEOUT", name.to_ascii_uppercase().replace('-', "_"));
        envs.push(kv(&var, "1s"));
    }
    let d = start(&["--no-stats"], &list.join(","), &envs);
    let names: Vec<&str> = checks.iter().map(|c| c.0).collect();
    wait_startup_runs(&d, &names);
    let status = Command::new("mkfifo").arg(&aliases).status().unwrap();
    assert!(status.success(), "mkfifo {}", aliases.display());

    let mut figures = Vec::new();
    for (name, kind) in checks {
        let (result, took) = health(&d, name);
        assert_eq!(result["ok"], false, "{name}: {result}");
        assert_eq!(result["reason"], "timeout", "{name}: {result}");
        assert!(result["error"].as_str().unwrap().contains("timed out after 1s"), "{name}: {result}");
        figures.push(format!("{name} ({kind}): TIMEOUT=1s, /health answered in {:.3}s", took.as_secs_f64()));
        assert!(
            took >= TIMEOUT - Duration::from_millis(50) && took < TIMEOUT + Duration::from_millis(1500),
            "{name}: answered in {took:?} for a {TIMEOUT:?} timeout"
        );
    }
    eprintln!("timeout figures:\n  {}", figures.join("\n  "));

    // The lookup is still blocked: the next /health joins it rather than
    // start a second one, and says so, at once.
    let (result, took) = health(&d, "dns-hang");
    assert_eq!(result["reason"], "timeout", "{result}");
    assert!(result["error"].as_str().unwrap().contains("is still going"), "{result}");
    assert!(took < TIMEOUT, "{took:?}");
    // Other checks are not held up by the hung one.
    let (result, took) = health(&d, "http-hang");
    assert_eq!(result["reason"], "timeout", "{result}");
    assert!(took < TIMEOUT + Duration::from_millis(1500), "{took:?}");
    // One HangServer connection per run (http-hang: 3 runs, https-hang and
    // kubernetes-hang: 2 each): nothing was retried or started twice.
    assert!(
        eventually(Duration::from_secs(2), || hang.connections() == 7),
        "{} connections",
        hang.connections()
    );
    assert!(backlog.held() > 0);
}

#[test]
fn bad_settings_exit_2_naming_the_variable() {
    // (KUBERNARY_CHECKS, environment, what stderr must say)
    let cases: &[(&str, Env, &str)] = &[
        ("w=http", &[], "KUBERNARY_W_URL is not set"),
        (
            "w=http",
            &[("KUBERNARY_W_URL", "localhost:8080/healthz")],
            "KUBERNARY_W_URL: \"localhost:8080/healthz\" is not an http:// or https:// URL",
        ),
        (
            "w=http",
            &[("KUBERNARY_W_URL", "ftp://localhost/")],
            "KUBERNARY_W_URL: \"ftp://localhost/\" is not an http:// or https:// URL",
        ),
        (
            "w=http",
            &[("KUBERNARY_W_URL", "http://localhost/"), ("KUBERNARY_W_EXPECT_STATUS", "2xx,ok")],
            "KUBERNARY_W_EXPECT_STATUS: \"ok\" is not a status",
        ),
        (
            "w=http",
            &[("KUBERNARY_W_URL", "http://localhost/"), ("KUBERNARY_W_FOLLOW_REDIRECTS", "maybe")],
            "KUBERNARY_W_FOLLOW_REDIRECTS: expected true or false",
        ),
        (
            "w=http",
            &[("KUBERNARY_W_URL", "https://localhost/"), ("KUBERNARY_W_CA_FILE", "/nonexistent/ca.pem")],
            "KUBERNARY_W_CA_FILE: cannot read CA file /nonexistent/ca.pem",
        ),
        ("t=tcp", &[], "KUBERNARY_T_ADDRESS is not set"),
        ("t=tcp", &[("KUBERNARY_T_ADDRESS", "localhost")], "KUBERNARY_T_ADDRESS: \"localhost\" has no port"),
        (
            "t=tcp",
            &[("KUBERNARY_T_ADDRESS", "::1:80")],
            "KUBERNARY_T_ADDRESS: \"::1:80\": write an IPv6 address in brackets",
        ),
        (
            "t=tcp",
            &[("KUBERNARY_T_ADDRESS", "localhost:http")],
            "KUBERNARY_T_ADDRESS: \"localhost:http\": \"http\" is not a port",
        ),
        ("n=dns", &[], "KUBERNARY_N_NAME is not set"),
        (
            "n=dns",
            &[("KUBERNARY_N_NAME", "localhost:53")],
            "KUBERNARY_N_NAME: \"localhost:53\" is not a host name",
        ),
        (
            "n=dns",
            &[("KUBERNARY_N_NAME", "localhost"), ("KUBERNARY_N_MIN_ADDRESSES", "two")],
            "KUBERNARY_N_MIN_ADDRESSES: expected a whole number",
        ),
        ("k=kubernetes", &[], "KUBERNARY_K_URL is not set and neither is KUBERNETES_SERVICE_HOST"),
        ("k=kubernetes", &[("KUBERNARY_K_URL", "https://")], "KUBERNARY_K_URL: \"https://\" is not a URL"),
        (
            "k=kubernetes",
            &[("KUBERNETES_SERVICE_HOST", "127.0.0.1"), ("KUBERNETES_SERVICE_PORT", "https")],
            "KUBERNETES_SERVICE_PORT: \"https\" is not a port",
        ),
        (
            "k=kubernetes",
            &[("KUBERNARY_K_URL", "https://localhost:6443"), ("KUBERNARY_K_CA_FILE", "/nonexistent/ca.crt")],
            "KUBERNARY_K_CA_FILE: cannot read CA file /nonexistent/ca.crt",
        ),
        (
            "k=kubernetes",
            &[("KUBERNARY_K_URL", "https://localhost:6443"), ("KUBERNARY_K_PATH", "readyz")],
            "KUBERNARY_K_PATH: \"readyz\" must start with /",
        ),
    ];
    for (checks, envs, want) in cases {
        let mut all: Vec<(&str, &str)> = vec![("KUBERNARY_CHECKS", checks), NO_DNS_SERVERS];
        all.extend_from_slice(envs);
        let mut d = Daemon::spawn_raw(&["--no-stats", "--listen", "127.0.0.1:0"], &all);
        let status = d
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{checks} {envs:?}: still running"));
        let logs = d.logs().join("\n");
        assert_eq!(status.code(), Some(2), "{checks} {envs:?}: {logs}");
        assert!(logs.contains(want), "{checks} {envs:?}: want {want:?} in:\n{logs}");
        assert_eq!(d.logs().len(), 1, "one line: {logs}");
    }
}

#[test]
fn kubernetes_reads_its_token_when_it_runs_not_at_start() {
    // The kubernetes check does not need its token at start: reading it is
    // the check's job, so a missing token is a failing run, not a stop.
    if Path::new(DEFAULT_TOKEN).exists() {
        eprintln!("skipped: this machine has a service-account token");
        return;
    }
    let ca = TestCa::new();
    let d = start(
        &["--no-stats"],
        "k=kubernetes",
        &[kv("KUBERNARY_K_URL", "https://localhost:1"), kv("KUBERNARY_K_CA_FILE", ca.ca_path().display())],
    );
    wait_startup_runs(&d, &["k"]);
    let error = assert_fails(&d, "k", "credentials");
    assert!(
        error.contains(&format!("cannot read the service-account token from {DEFAULT_TOKEN}")),
        "{error}"
    );
}

#[test]
fn http_judges_the_status_of_a_large_answer_without_reading_it_all() {
    let web = WebServer::start();
    web.route("/big", Route::new(200, &"x".repeat(3 * 1024 * 1024)));
    let d = start(&["--no-stats"], "big=http", &[kv("KUBERNARY_BIG_URL", web.url("/big"))]);
    let (status, body) = d.json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["big"]["status_code"], 200, "{body}");
}

#[test]
fn secrets_in_an_http_url_never_reach_health_or_logs() {
    let web = WebServer::start();
    web.route("/x", Route::new(503, "down"));
    let url = web.url("/x").replace("http://", "http://ghp_SECRETUSER:SECRETPASS@")
        + "?X-Amz-Signature=SECRETSIG&access_token=SECRETTOKEN";
    let d = start(&["--no-stats", "--debug"], "web=http", &[kv("KUBERNARY_WEB_URL", &url)]);
    let response = d.get("/health");
    assert_eq!(response.status, 503);
    let everything = format!("{}\n{}", response.body, d.logs().join("\n"));
    for secret in ["SECRETUSER", "SECRETPASS", "SECRETSIG", "SECRETTOKEN"] {
        assert!(!everything.contains(secret), "{secret} leaked:\n{everything}");
    }
    assert!(response.body.contains("X-Amz-Signature=***"), "{}", response.body);
}
