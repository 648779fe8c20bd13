//! Shutdown: signals and /quitquitquit, draining, and the deadlines.

mod support;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use support::{Daemon, HangServer, S3Server};

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
    let mut daemon = hanging_daemon(&hang, "2s", &["--no-stats", "--close-after=10s", "--kill-after=20s"]);
    let addr = daemon.addr();
    let in_flight =
        thread::spawn(move || support::http_request(addr, "GET", "/health", &[], b"").map(|r| r.status));
    thread::sleep(Duration::from_millis(300));
    daemon.signal("TERM");
    assert!(daemon.wait_for_log("shutting down: SIGTERM", Duration::from_secs(5)));
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["error"], "shutting down");
    assert_eq!(in_flight.join().unwrap().expect("the request in flight is answered"), 503);
    let status = daemon.wait_exit(Duration::from_secs(10)).expect("exit once drained");
    assert_eq!(status.code(), Some(0), "a drained shutdown is graceful");
}

/// What Kubernetes does with the deploy/ manifests: the preStop hook GETs
/// /quitquitquit, then the kubelet sends SIGTERM. That SIGTERM is the first
/// signal, not a second one: the drain goes on and the exit is graceful.
#[test]
fn sigterm_after_quitquitquit_lets_the_drain_finish() {
    let hang = HangServer::start();
    let mut daemon = hanging_daemon(&hang, "2s", &["--no-stats", "--close-after=10s", "--kill-after=20s"]);
    let addr = daemon.addr();
    let in_flight =
        thread::spawn(move || support::http_request(addr, "GET", "/health", &[], b"").map(|r| r.status));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon.get("/quitquitquit").status, 200);
    daemon.signal("TERM");
    assert!(
        daemon.wait_for_log("SIGTERM received: the shutdown is already under way", Duration::from_secs(5))
    );
    assert_eq!(in_flight.join().unwrap().expect("the request in flight is answered"), 503);
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
    let mut daemon = hanging_daemon(&hang, "60s", &["--no-stats", "--close-after=500ms", "--kill-after=1s"]);
    let addr = daemon.addr();
    let _in_flight = thread::spawn(move || support::http_request(addr, "GET", "/health", &[], b""));
    thread::sleep(Duration::from_millis(300));
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
    assert!(answer.contains("shutting down"), "{answer}");
    let began = Instant::now();
    let status = daemon.wait_exit(Duration::from_secs(5)).expect("exit once answered");
    assert_eq!(status.code(), Some(0));
    assert!(began.elapsed() < Duration::from_secs(2), "idle connections held the exit {:?}", began.elapsed());
}
