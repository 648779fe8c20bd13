//! The daemon's log, read as a log pipeline and a person on call read it:
//! `--log-format=text|json` at the default level and at `--debug`, what a
//! healthy daemon says (its start, changes of state, failing runs: never a
//! request line unless `--access-log`), and JSON that parses line by line
//! with each event's fields as fields.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{eventually, Daemon, WebServer};

/// A daemon with one `http` check, `web`, against `server`'s `/ok`, every
/// 200ms so that a change at the server shows in the log soon.
fn daemon(server: &WebServer, args: &[&str]) -> Daemon {
    daemon_every(server, "200ms", args)
}

fn daemon_every(server: &WebServer, interval: &str, args: &[&str]) -> Daemon {
    let url = server.url("/ok");
    let mut all = vec!["--no-stats"];
    all.extend_from_slice(args);
    Daemon::start(
        &all,
        &[
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", &url),
            ("KUBERNARY_WEB_INTERVAL", interval),
            ("KUBERNARY_WEB_TIMEOUT", "5s"),
        ],
    )
}

/// Every line as JSON; panics naming the first line that is not one object
/// with `level`, `ts` (RFC 3339, UTC) and `msg`.
fn parse_all(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v.is_object(), "not an object: {line}");
            let level = v["level"].as_str().unwrap_or_else(|| panic!("no level: {line}"));
            assert!(["debug", "info", "warn", "error"].contains(&level), "level {level:?}: {line}");
            assert!(v["msg"].is_string(), "no msg: {line}");
            let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {line}"));
            assert!(is_rfc3339_utc(ts), "ts {ts:?} is not RFC 3339 UTC: {line}");
            v
        })
        .collect()
}

/// `2026-12-01T19:52:48.123Z` (the fraction optional).
fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && ts.ends_with('Z')
        && (b.len() == 20 || (b[19] == b'.' && digits(20..b.len() - 1)))
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

/// Fails `web`, lets it fail twice, heals it and waits for the line that
/// says so: every event kind a run can log.
fn fail_then_heal(d: &Daemon, server: &WebServer, healed: &str) {
    server.set("/ok", 503, "down for maintenance\n");
    assert!(
        eventually(Duration::from_secs(20), || d
            .logs()
            .iter()
            .filter(|l| l.contains("check web failed"))
            .count()
            >= 2),
        "no failed runs logged:\n{}",
        d.logs().join("\n")
    );
    server.set("/ok", 200, "ok\n");
    assert!(d.wait_for_log(healed, Duration::from_secs(20)), "no recovery logged:\n{}", d.logs().join("\n"));
}

#[test]
fn json_lines_parse_with_every_event_and_its_fields() {
    let server = WebServer::start();
    server.set("/ok", 200, "ok\n");
    let mut d = daemon(&server, &["--log-format=json", "--access-log"]);
    assert!(d.wait_for_log("check web passed its first run", Duration::from_secs(20)));
    fail_then_heal(&d, &server, "check web passed again");
    assert_eq!(d.get("/health/web").status, 200);
    assert!(d.wait_for_log("\"event\":\"request\"", Duration::from_secs(10)));
    d.signal("TERM");
    assert!(d.wait_exit(Duration::from_secs(20)).is_some(), "did not exit");

    let lines = parse_all(&d.logs());
    let start = events(&lines, "start");
    assert_eq!(start.len(), 1, "{lines:#?}");
    assert!(start[0]["listen"].as_str().is_some_and(|l| l.starts_with("127.0.0.1:")), "{:#}", start[0]);
    assert!(start[0]["version"].is_string() && start[0]["pid"].is_u64(), "{:#}", start[0]);

    let failed = events(&lines, "run");
    assert!(failed.len() >= 2, "{lines:#?}");
    for run in &failed {
        assert_eq!(run["level"], "warn", "{run:#}");
        assert_eq!((&run["check"], &run["kind"], &run["ok"]), (&"web".into(), &"http".into(), &false.into()));
        assert_eq!(run["reason"], "http_status", "{run:#}");
        assert!(run["duration_ms"].is_number(), "a number, not text: {run:#}");
        assert!(run["error"].as_str().is_some_and(|e| e.contains("503")), "{run:#}");
    }
    assert!(failed.iter().all(|r| r["ok"] == false), "passing runs are debug lines: {failed:#?}");

    let states = events(&lines, "state");
    let oks: Vec<&Value> = states.iter().map(|s| &s["ok"]).collect();
    assert_eq!(oks, [&Value::from(true), &false.into(), &true.into()], "{states:#?}");
    assert_eq!(states[1]["reason"], "http_status", "the reason it went down: {:#}", states[1]);
    assert_eq!(states[1]["level"], "warn");
    let down = states[2]["down_ms"].as_u64().unwrap_or_else(|| panic!("no down_ms: {:#}", states[2]));
    assert!(down >= 200, "down across at least two 200ms runs, said {down}ms: {:#}", states[2]);

    let requests = events(&lines, "request");
    let health = requests
        .iter()
        .find(|r| r["path"] == "/health/web")
        .unwrap_or_else(|| panic!("no request line for /health/web: {requests:#?}"));
    assert_eq!(health["level"], "info", "--access-log keeps request lines at INFO");
    assert_eq!(health["method"], "GET");
    assert_eq!(health["status"], 200);
    assert!(health["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{health:#}");
    assert!(health["duration_ms"].is_number(), "{health:#}");
    // How long the handler's thread waited for a CPU (Linux's schedstat):
    // what tells an answer late because the canary's node starved it.
    let wait = health["cpu_wait_ms"].as_f64().unwrap_or_else(|| panic!("no cpu_wait_ms: {health:#}"));
    assert!(wait >= 0.0 && wait <= health["duration_ms"].as_f64().unwrap() + 1.0, "{health:#}");
    assert!(!lines.iter().any(|v| v["level"] == "debug"), "no debug lines without --debug");
}

#[test]
fn json_at_debug_has_passing_runs_and_requests() {
    let server = WebServer::start();
    server.set("/ok", 200, "ok\n");
    // The variable, as a Deployment would set it.
    let url = server.url("/ok");
    let d = Daemon::start(
        &["--no-stats", "--debug"],
        &[
            ("KUBERNARY_LOG_FORMAT", "json"),
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", &url),
            ("KUBERNARY_WEB_INTERVAL", "200ms"),
        ],
    );
    assert_eq!(d.get("/livez").status, 200);
    assert!(d.wait_for_log("\"path\":\"/livez\"", Duration::from_secs(10)), "{:#?}", d.logs());
    assert!(eventually(Duration::from_secs(20), || d
        .logs()
        .iter()
        .any(|l| l.contains("\"ok\":true,\"duration"))));
    let lines = parse_all(&d.logs());
    let request = events(&lines, "request").into_iter().find(|r| r["path"] == "/livez").cloned().unwrap();
    assert_eq!(request["level"], "debug", "{request:#}");
    let passed = events(&lines, "run").into_iter().find(|r| r["ok"] == true).cloned().unwrap();
    assert_eq!((&passed["level"], &passed["check"]), (&"debug".into(), &"web".into()), "{passed:#}");
    assert!(passed["duration_ms"].is_number());
}

#[test]
fn text_at_both_levels() {
    let server = WebServer::start();
    server.set("/ok", 200, "ok\n");
    let d = daemon(&server, &[]);
    assert!(d.wait_for_log("check web passed its first run", Duration::from_secs(20)));
    fail_then_heal(&d, &server, "check web passed again, after failing for ");
    assert_eq!(d.get("/health").status, 200);
    // The text logger is simplelog's: time, [LEVEL], message.
    let logs = d.logs();
    assert!(logs.iter().any(|l| l.contains("[INFO] kubernary ") && l.contains(" listening on 127.0.0.1:")));
    assert!(logs.iter().any(|l| l.contains("[WARN] check web failed (http_status) in ")));
    assert!(logs.iter().any(|l| l.contains("[WARN] check web is failing (http_status): ")));
    assert!(!logs
        .iter()
        .any(|l| l.contains("GET /health") || l.contains("[DEBUG]") || l.contains(" passed in ")));
    assert!(!logs.iter().any(|l| l.trim_start().starts_with('{')), "text, not JSON: {logs:#?}");

    let d = daemon(&server, &["--debug", "--log-format", "text"]);
    assert_eq!(d.get("/livez").status, 200);
    assert!(d.wait_for_log("[DEBUG] GET /livez from 127.0.0.1:", Duration::from_secs(10)), "{:#?}", d.logs());
    assert!(d.wait_for_log("[DEBUG] check web passed in ", Duration::from_secs(10)), "{:#?}", d.logs());
}

/// A kubelet's probes and a Prometheus scrape, 1,000 of them: a healthy
/// daemon at the default level logs none, and with `--access-log` every one.
#[test]
fn a_thousand_probes_log_no_request_line_by_default() {
    let server = WebServer::start();
    server.set("/ok", 200, "ok\n");
    let probe = |d: &Daemon| {
        assert!(d.wait_for_log("check web passed its first run", Duration::from_secs(20)));
        for n in 0..1000 {
            let path = match n % 4 {
                0 => "/health",
                1 => "/health?cached=true",
                2 => "/metrics",
                _ => "/livez",
            };
            assert_eq!(d.get(path).status, 200, "{path}");
        }
    };
    // Scheduled runs far apart, so that a cached answer is never stale
    // (older than twice the interval) on a busy machine.
    for format in ["text", "json"] {
        let d = daemon_every(&server, "1h", &["--log-format", format]);
        probe(&d);
        // The control below shows request lines reach the log within this.
        std::thread::sleep(Duration::from_millis(500));
        let logs = d.logs();
        let requests: Vec<&String> =
            logs.iter().filter(|l| l.contains("GET /") || l.contains("\"request\"")).collect();
        assert!(
            requests.is_empty(),
            "{format}: {} request lines, e.g. {:?}",
            requests.len(),
            requests.first()
        );
        assert!(logs.len() < 10, "{format}: a healthy daemon says little, said:\n{}", logs.join("\n"));
        eprintln!("FIGURE logs {format}: {} lines for a start and 1000 probes", logs.len());
    }
    let d = daemon_every(&server, "1h", &["--access-log"]);
    probe(&d);
    let count = || d.logs().iter().filter(|l| l.contains("[INFO] GET /")).count();
    assert!(eventually(Duration::from_secs(10), || count() == 1000), "{} of 1000 request lines", count());
    eprintln!("FIGURE logs --access-log: {} lines for a start and 1000 probes", d.logs().len());

    // `--access-log=false` on the command line beats the variable.
    let url = server.url("/ok");
    let env =
        [("KUBERNARY_ACCESS_LOG", "true"), ("KUBERNARY_CHECKS", "web=http"), ("KUBERNARY_WEB_URL", &url)];
    let off = Daemon::start(&["--no-stats", "--access-log=false"], &env);
    let on = Daemon::start(&["--no-stats"], &env);
    assert_eq!(off.get("/livez").status, 200);
    assert_eq!(on.get("/livez").status, 200);
    assert!(
        on.wait_for_log("[INFO] GET /livez from ", Duration::from_secs(10)),
        "the variable alone turns it on"
    );
    assert!(!off.logs().iter().any(|l| l.contains("GET /livez")), "{:#?}", off.logs());
}

#[test]
fn a_log_format_that_is_not_text_or_json_is_bad_input() {
    for (args, env, want) in [
        (vec!["--no-stats", "--log-format=xml"], vec![], "--log-format: expected text or json, got \"xml\""),
        (
            vec!["--no-stats"],
            vec![("KUBERNARY_LOG_FORMAT", "logfmt")],
            "KUBERNARY_LOG_FORMAT: expected text or json",
        ),
        (
            vec!["--no-stats"],
            vec![("KUBERNARY_ACCESS_LOG", "sometimes")],
            "KUBERNARY_ACCESS_LOG: expected true or false",
        ),
    ] {
        let mut env = env;
        env.push(("KUBERNARY_CHECKS", "t=tcp"));
        env.push(("KUBERNARY_T_ADDRESS", "127.0.0.1:1"));
        let mut d = Daemon::spawn_raw(&args, &env);
        let status = d.wait_exit(Duration::from_secs(10)).expect("exits");
        let logs = d.logs().join("\n");
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {logs}");
        assert!(logs.contains(want), "want {want:?} in {logs}");
    }
}

/// docs/operations.md says what every reason means and what to do about it,
/// and names every event kind the JSON log writes.
#[test]
fn every_reason_and_event_is_in_the_operations_guide() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let words = kubernary::contract::Reason::ALL.iter().map(|r| r.as_str());
    for word in words.chain(["stale", "recovering"]) {
        assert!(
            guide.contains(&format!("\n### `{word}`\n")),
            "docs/operations.md: no section for reason {word}"
        );
    }
    for event in ["start", "state", "run", "note", "request"] {
        assert!(
            guide.contains(&format!("| `{event}` |")),
            "docs/operations.md: event {event} not in the table"
        );
    }
    for flag in ["--log-format", "KUBERNARY_LOG_FORMAT", "--access-log", "KUBERNARY_ACCESS_LOG"] {
        assert!(guide.contains(flag), "docs/operations.md: {flag}");
    }
}
