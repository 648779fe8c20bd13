//! Shutdown: signals and /quitquitquit, draining, and the deadlines.

mod support;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::{Daemon, Fault, FaultServer, HangServer, Reply, S3Server};

fn idle_daemon(args: &[&str]) -> (S3Server, Daemon) {
    let s3 = S3Server::start();
    s3.put_object("canary", "check", b"ok");
    let endpoint = s3.endpoint();
    let daemon = Daemon::start(
        args,
        &[
            ("KUBERNARY_S3_BUCKET", "canary"),
            ("KUBERNARY_S3_ENDPOINT", &endpoint),
            ("AWS_ACCESS_KEY_ID", s3.access_key()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
        ],
    );
    assert!(daemon.wait_for_log("check s3 passed", Duration::from_secs(10)));
    (s3, daemon)
}

/// `/health`'s status and the reason the s3 check gives (empty when it
/// passes): the reason tells an answer from the run in flight (`timeout`)
/// from one given after the shutdown began (`shutting_down`), where the
/// status alone (503 both) cannot.
fn health_reason(addr: std::net::SocketAddr) -> Result<(u16, String), String> {
    let response = support::http_request(addr, "GET", "/health", &[], b"").map_err(|e| e.to_string())?;
    let body: serde_json::Value =
        serde_json::from_str(&response.body).map_err(|e| format!("{e}: {:?}", response.body))?;
    Ok((response.status, body["s3"]["reason"].as_str().unwrap_or_default().to_string()))
}

/// What `--debug` logs once a `/health` has joined the s3 check's hung run:
/// the request is in flight.
const IN_FLIGHT: &str = "/health waits on s3 (joined its run";

fn hanging_daemon(hang: &HangServer, timeout: &str, args: &[&str]) -> Daemon {
    let url = hang.url();
    Daemon::start(
        args,
        &[
            ("KUBERNARY_S3_BUCKET", "canary"),
            ("KUBERNARY_S3_ENDPOINT", &url),
            ("KUBERNARY_S3_TIMEOUT", timeout),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    )
}

#[test]
fn sigterm_when_idle_exits_zero_promptly() {
    let (_s3, mut daemon) = idle_daemon(&["--no-stats"]);
    let began = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(began.elapsed() < Duration::from_secs(2), "took {:?}", began.elapsed());
}

#[test]
fn quitquitquit_answers_and_exits_zero() {
    let (_s3, mut daemon) = idle_daemon(&["--no-stats"]);
    let response = daemon.get("/quitquitquit");
    assert_eq!(response.status, 200);
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exit after /quitquitquit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn quitquitquit_can_be_turned_off() {
    let (_s3, daemon) = idle_daemon(&["--no-stats", "--no-quitquitquit"]);
    assert_eq!(daemon.request("POST", "/quitquitquit").status, 403);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon.get("/livez").status, 200, "still running");
}

#[test]
fn draining_answers_requests_in_flight_and_reports_shutting_down() {
    let hang = HangServer::start();
    let mut daemon =
        hanging_daemon(&hang, "2s", &["-d", "--no-stats", "--close-after=10s", "--kill-after=20s"]);
    let addr = daemon.addr();
    let in_flight = thread::spawn(move || health_reason(addr));
    assert!(daemon.wait_for_log(IN_FLIGHT, Duration::from_secs(5)), "the /health never arrived");
    daemon.signal("TERM");
    assert!(daemon.wait_for_log("shutting down: SIGTERM", Duration::from_secs(5)));
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["error"], "shutting down");
    assert_eq!(body["s3"]["reason"], "shutting_down");
    // The request in flight gets its run's own result: the check timed out.
    let answer = in_flight.join().unwrap().expect("the request in flight is answered");
    assert_eq!(answer, (503, "timeout".to_string()));
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exit once drained");
    assert_eq!(status.code(), Some(0), "a drained shutdown is graceful");
}

/// What Kubernetes does with the deploy/ manifests: the preStop hook GETs
/// /quitquitquit, then the kubelet sends SIGTERM. That SIGTERM is the first
/// signal, not a second one: the drain goes on and the exit is graceful.
#[test]
fn sigterm_after_quitquitquit_lets_the_drain_finish() {
    let hang = HangServer::start();
    let mut daemon =
        hanging_daemon(&hang, "2s", &["-d", "--no-stats", "--close-after=10s", "--kill-after=20s"]);
    let addr = daemon.addr();
    let in_flight = thread::spawn(move || health_reason(addr));
    assert!(daemon.wait_for_log(IN_FLIGHT, Duration::from_secs(5)), "the /health never arrived");
    assert_eq!(daemon.get("/quitquitquit").status, 200);
    daemon.signal("TERM");
    assert!(
        daemon.wait_for_log("SIGTERM received: the shutdown is already under way", Duration::from_secs(5))
    );
    let answer = in_flight.join().unwrap().expect("the request in flight is answered");
    assert_eq!(answer, (503, "timeout".to_string()), "the run in flight's own result");
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exit once drained");
    assert_eq!(status.code(), Some(0), "a drained shutdown is graceful");
}

#[test]
fn a_hung_check_is_left_behind_at_its_timeout() {
    let hang = HangServer::start();
    let mut daemon = hanging_daemon(&hang, "1s", &["--no-stats", "--kill-after=30s"]);
    let began = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(20)).expect("exit");
    assert_eq!(status.code(), Some(0));
    assert!(began.elapsed() < Duration::from_secs(5), "took {:?} with a 1s check timeout", began.elapsed());
}

#[test]
fn kill_after_bounds_the_exit_when_a_backend_never_answers() {
    let hang = HangServer::start();
    let mut daemon =
        hanging_daemon(&hang, "60s", &["-d", "--no-stats", "--close-after=500ms", "--kill-after=1s"]);
    let addr = daemon.addr();
    let _in_flight = thread::spawn(move || support::http_request(addr, "GET", "/health", &[], b""));
    assert!(daemon.wait_for_log(IN_FLIGHT, Duration::from_secs(5)), "the /health never arrived");
    let began = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(20)).expect("kill-after must end the process");
    let took = began.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?} with --kill-after=1s");
    assert!(took >= Duration::from_millis(900), "exited after {took:?}, before --kill-after");
    assert_eq!(status.code(), Some(1), "a forced exit is not a graceful one");
}

#[test]
fn a_second_signal_exits_at_once() {
    let hang = HangServer::start();
    let mut daemon = hanging_daemon(&hang, "60s", &["--no-stats", "--kill-after=60s"]);
    daemon.signal("TERM");
    assert!(daemon.wait_for_log("shutting down", Duration::from_secs(5)));
    let began = Instant::now();
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("second signal exits");
    assert!(began.elapsed() < Duration::from_secs(2));
    assert_ne!(status.code(), Some(0));
}

/// One `/health` sent by a client during a shutdown under load.
struct Sent {
    at: Instant,
    done: Instant,
    answer: Result<u16, String>,
    /// The reasons the checks gave, sorted and deduplicated (`""` for a
    /// pass); empty when there was no answer.
    reasons: Vec<String>,
}

/// `clients` threads sending `/health` back to back until `stop`; each
/// request's times and answer (a status, or the error for a connection
/// closed or refused).
fn hammer(addr: std::net::SocketAddr, clients: usize, stop: &AtomicBool) -> Vec<Sent> {
    thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(move || {
                    let mut sent = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let at = Instant::now();
                        let response = support::http_request(addr, "GET", "/health", &[], b"");
                        let reasons = response.as_ref().map(|r| reasons(&r.body)).unwrap_or_default();
                        let answer = response.map(|r| r.status).map_err(|e| e.to_string());
                        let refused = answer.as_ref().is_err_and(|e| e.contains("refused"));
                        sent.push(Sent { at, done: Instant::now(), answer, reasons });
                        if refused {
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                    sent
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// Every check's `reason` in a `/health` body, sorted, deduplicated.
fn reasons(body: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(checks)) = serde_json::from_str::<serde_json::Value>(body) else {
        return vec![format!("not JSON: {body:?}")];
    };
    let mut reasons: Vec<String> =
        checks.values().map(|c| c["reason"].as_str().unwrap_or("(none)").to_string()).collect();
    reasons.sort();
    reasons.dedup();
    reasons
}

/// The index of the first log line containing `text`.
fn line_of(logs: &[String], text: &str) -> usize {
    logs.iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in:\n{}", logs.join("\n")))
}

/// SIGTERM with 100 requests in flight: each is answered, /health then says
/// 503 shutting down, the process exits 0 once drained, and nothing new
/// runs: no scheduled run starts (INTERVAL=50ms would start twenty a
/// second), and /health requests after the signal do not reach the backend.
#[test]
fn sigterm_under_load_answers_requests_in_flight_and_starts_nothing() {
    let backend = FaultServer::start(Reply::ok());
    backend.set(Fault::SlowFirstByte(Duration::from_millis(300)));
    let url = backend.url("/healthz");
    let mut daemon = Daemon::start(
        &["--no-stats", "--close-after=10s", "--kill-after=20s"],
        &[
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", &url),
            ("KUBERNARY_WEB_INTERVAL", "50ms"),
            ("KUBERNARY_WEB_TIMEOUT", "2s"),
        ],
    );
    let addr = daemon.addr();
    let stop = AtomicBool::new(false);
    let mut signalled = None;
    let mut exited = None;
    let mut delivered = None;
    let sent = thread::scope(|s| {
        let clients = s.spawn(|| hammer(addr, 100, &stop));
        thread::sleep(Duration::from_secs(1));
        signalled = Some(Instant::now());
        daemon.signal("TERM");
        delivered = Some(Instant::now());
        let status = daemon.wait_exit(Duration::from_secs(15));
        exited = Some(Instant::now());
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        assert_eq!(status.and_then(|s| s.code()), Some(0), "a drained shutdown exits 0");
        clients.join().unwrap()
    });
    // `kill` takes a moment: requests sent meanwhile may see either side.
    let (signalled, delivered, exited) = (signalled.unwrap(), delivered.unwrap(), exited.unwrap());
    let settled = delivered + Duration::from_millis(50);
    let before: Vec<&Sent> = sent.iter().filter(|r| r.at < signalled).collect();
    let in_flight = before.iter().filter(|r| r.done > signalled).count();
    let unanswered: Vec<String> = before
        .iter()
        .filter_map(|r| {
            let e = r.answer.as_ref().err()?;
            Some(format!(
                "sent {:?} before SIGTERM, closed {:?} after it: {e}",
                signalled - r.at,
                r.done.saturating_duration_since(signalled)
            ))
        })
        .collect();
    assert!(in_flight >= 50, "only {in_flight} requests were in flight at the signal");
    assert!(unanswered.is_empty(), "requests sent before SIGTERM without an answer: {unanswered:?}");
    // Sent before the signal: the backend's pass (200), or, if handled once
    // the shutdown had begun, 503 shutting down; never anything else.
    for r in &before {
        let ok = match r.answer {
            Ok(200) => r.reasons == [""],
            Ok(503) => r.reasons == ["shutting_down"],
            _ => false,
        };
        assert!(ok, "sent before SIGTERM: {:?} {:?}", r.answer, r.reasons);
    }
    let after: Vec<&Sent> = sent.iter().filter(|r| r.at > settled).collect();
    let after_answered = after.iter().filter(|r| r.answer.is_ok()).count();
    for r in after.iter().filter(|r| r.answer.is_ok()) {
        assert_eq!(
            (&r.answer, &r.reasons[..]),
            (&Ok(503), &["shutting_down".to_string()][..]),
            "sent after SIGTERM"
        );
    }

    // Nothing reached the backend after the run in flight at the signal.
    let late: Vec<Duration> =
        backend.requests().iter().filter(|r| r.at > settled).map(|r| r.at - delivered).collect();
    assert!(late.is_empty(), "backend requests after SIGTERM, at {late:?} after it");
    let logs = daemon.logs();
    let shutting = line_of(&logs, "shutting down: SIGTERM received");
    let runs: Vec<&String> = logs[shutting..].iter().filter(|l| l.contains("check web ")).collect();
    assert!(runs.len() <= 1, "more than the run in flight settled after the signal: {runs:#?}");
    let took = exited - signalled;
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE shutdown under load: 100 clients, {in_flight} requests in flight at SIGTERM, all answered; \
         {after_answered} later requests answered 503; exit 0 after {} ms; 0 backend requests after the signal",
        took.as_millis()
    );
}

/// SIGTERM under load with checks hung for good (a backend that never
/// answers, and a resolver that never returns, so that worker never comes
/// back): requests are answered or closed, and the process exits 0 once the
/// scheduled runs are left behind at their TIMEOUT, well before kill-after.
/// A second signal meanwhile would exit at once (see below).
#[test]
fn sigterm_under_load_with_checks_hung_for_good_exits_before_kill_after() {
    let hang = HangServer::start();
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");
    assert!(std::process::Command::new("mkfifo").arg(&aliases).status().unwrap().success());
    let url = format!("{}/healthz", hang.url());
    let aliases_text = aliases.display().to_string();
    let mut daemon = Daemon::start(
        &["--no-stats", "--close-after=500ms", "--kill-after=10s"],
        &[
            ("KUBERNARY_CHECKS", "web=http,stuck=http"),
            ("KUBERNARY_WEB_URL", &url),
            ("KUBERNARY_WEB_INTERVAL", "100ms"),
            ("KUBERNARY_WEB_TIMEOUT", "2s"),
            ("KUBERNARY_STUCK_URL", "http://kubernary-hang/"),
            ("KUBERNARY_STUCK_INTERVAL", "100ms"),
            ("KUBERNARY_STUCK_TIMEOUT", "2s"),
            ("HOSTALIASES", &aliases_text),
        ],
    );
    let addr = daemon.addr();
    let stop = AtomicBool::new(false);
    let mut signalled = None;
    let mut exited = None;
    let sent = thread::scope(|s| {
        let clients = s.spawn(|| hammer(addr, 50, &stop));
        thread::sleep(Duration::from_millis(1500));
        signalled = Some(Instant::now());
        daemon.signal("TERM");
        let status = daemon.wait_exit(Duration::from_secs(15));
        exited = Some(Instant::now());
        stop.store(true, Ordering::SeqCst);
        assert_eq!(status.and_then(|s| s.code()), Some(0), "runs left behind at their TIMEOUT: exit 0");
        clients.join().unwrap()
    });
    let (signalled, exited) = (signalled.unwrap(), exited.unwrap());
    let took = exited - signalled;
    // The scheduled runs end at their 2s TIMEOUT at the latest.
    assert!(took < Duration::from_millis(3500), "exit took {took:?}, kill-after is 10s");
    let in_flight: Vec<&Sent> = sent.iter().filter(|r| r.at < signalled && r.done > signalled).collect();
    assert!(in_flight.len() >= 25, "only {} requests were in flight", in_flight.len());
    for r in &in_flight {
        // Answered 503 (the run in flight timed out, or, handled once the
        // shutdown had begun, shutting down), or closed by the exit.
        let answered = matches!(r.answer, Ok(503))
            && r.reasons.iter().all(|reason| reason == "timeout" || reason == "shutting_down");
        assert!(answered || r.answer.is_err(), "in flight at SIGTERM: {:?} {:?}", r.answer, r.reasons);
        assert!(r.done < exited + Duration::from_secs(1), "a request outlived the process");
    }
    let answered = in_flight.iter().filter(|r| r.answer.is_ok()).count();
    let logs = daemon.logs().join("\n");
    assert!(!logs.contains("--kill-after"), "{logs}");
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE shutdown with hung checks: 50 clients, {} in flight at SIGTERM ({answered} answered 503, {} closed); \
         --close-after=500ms, TIMEOUT 2s, --kill-after=10s: exit 0 after {} ms",
        in_flight.len(),
        in_flight.len() - answered,
        took.as_millis()
    );
    // The resolver's worker is still blocked: let it go.
    let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&aliases);
}

/// A second signal exits at once, even under load with hung checks.
#[test]
fn a_second_signal_under_load_exits_at_once() {
    let hang = HangServer::start();
    let mut daemon = hanging_daemon(&hang, "60s", &["--no-stats", "--kill-after=60s", "--close-after=60s"]);
    let addr = daemon.addr();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| hammer(addr, 50, &stop));
        thread::sleep(Duration::from_millis(500));
        daemon.signal("TERM");
        assert!(daemon.wait_for_log("shutting down", Duration::from_secs(5)));
        let began = Instant::now();
        daemon.signal("INT");
        let status = daemon.wait_exit(Duration::from_secs(10)).expect("the second signal exits");
        stop.store(true, Ordering::SeqCst);
        assert!(began.elapsed() < Duration::from_secs(2), "took {:?}", began.elapsed());
        assert_eq!(status.code(), Some(128 + 2), "exit status says SIGINT");
    });
}

/// A request still arriving when SIGTERM comes (the HTTP layer has the
/// connection and part of the request, the application nothing yet) is in
/// flight all the same: it is answered, 503 shutting down, before the exit.
/// Connections with nothing pending (idle after an answer, or silent since
/// they opened) do not hold the exit up.
#[test]
fn a_request_still_arriving_at_sigterm_is_answered_before_the_exit() {
    let (_s3, mut daemon) = idle_daemon(&["--no-stats", "--close-after=10s"]);
    let addr = daemon.addr();
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: kubernary\r\n").unwrap();
    // Idle after an answer, on a kept-alive connection.
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: kubernary\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = std::io::Read::read(&mut idle, &mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // Silent since it opened.
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(300));

    daemon.signal("TERM");
    assert!(daemon.wait_for_log("shutting down: SIGTERM", Duration::from_secs(5)));
    thread::sleep(Duration::from_millis(500));
    assert!(daemon.wait_exit(Duration::ZERO).is_none(), "exited with a request still arriving");
    slow.write_all(b"\r\n").unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut slow, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "the request in flight got {answer:?}");
    assert!(answer.contains(r#""reason":"shutting_down""#), "{answer}");
    let began = Instant::now();
    let status = daemon.wait_exit(Duration::from_secs(5)).expect("exit once answered");
    assert_eq!(status.code(), Some(0));
    assert!(began.elapsed() < Duration::from_secs(2), "idle connections held the exit {:?}", began.elapsed());
}

/// As Go's `Server.Shutdown`: a kept-alive connection with a request in
/// flight at SIGTERM gets its answer, saying `Connection: close`, then the
/// connection ends, and the process exits once it has (it used to answer
/// keep-alive and leave the client to find the connection cut by the exit).
#[test]
fn a_kept_alive_connection_gets_its_answer_with_close_then_eof_at_the_drain() {
    use std::io::{BufRead, BufReader, Read};
    let hang = HangServer::start();
    let mut daemon =
        hanging_daemon(&hang, "2s", &["-d", "--no-stats", "--close-after=20s", "--kill-after=30s"]);
    let stream = std::net::TcpStream::connect(daemon.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut conn = BufReader::new(stream);
    let ask = |conn: &mut BufReader<std::net::TcpStream>, path: &str| {
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: kubernary\r\n\r\n").as_bytes())
            .unwrap();
    };
    let answer = |conn: &mut BufReader<std::net::TcpStream>| -> (String, Vec<String>) {
        let mut status = String::new();
        conn.read_line(&mut status).unwrap();
        let (mut headers, mut length) = (Vec::new(), 0);
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            headers.push(line);
        }
        conn.read_exact(&mut vec![0; length]).unwrap();
        (status, headers)
    };
    ask(&mut conn, "/livez");
    let (status, headers) = answer(&mut conn);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(!headers.contains(&"connection: close".to_string()), "{headers:?}");
    // A /health that waits for the hung check, in flight at SIGTERM.
    let began = Instant::now();
    ask(&mut conn, "/health");
    assert!(daemon.wait_for_log(IN_FLIGHT, Duration::from_secs(5)), "the /health never arrived");
    daemon.signal("TERM");
    let (status, headers) = answer(&mut conn);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert!(headers.contains(&"connection: close".to_string()), "{headers:?}");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).map_err(|e| e.to_string()), Ok(0), "{rest:?}");
    let status = daemon.wait_exit(Duration::from_secs(15)).expect("exit once the connection has ended");
    assert_eq!(status.code(), Some(0));
    assert!(began.elapsed() < Duration::from_secs(15), "took {:?}", began.elapsed());
}
