//! Hostile HTTP input: nothing a client sends may crash the daemon or put a
//! panic in its log, and each request gets a correct status (or, for bytes
//! that are not HTTP at all, a closed connection).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use support::{http_send_raw, Daemon};

fn daemon(extra_args: &[&str]) -> Daemon {
    let mut args = vec!["--no-stats"];
    args.extend_from_slice(extra_args);
    // A check that fails fast: no credentials. The HTTP layer is under test.
    Daemon::start(&args, &[("KUBERNARY_S3_BUCKET", "canary"), ("KUBERNARY_S3_INTERVAL", "1h")])
}

fn status_of(addr: SocketAddr, raw: &[u8]) -> Option<u16> {
    http_send_raw(addr, raw, false).ok().map(|r| r.status)
}

/// Everything the server sends until it closes the connection.
fn read_all(addr: SocketAddr, raw: &[u8], wait: Duration) -> (Vec<u8>, Duration) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let began = Instant::now();
    let _ = stream.write_all(raw);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    (out, began.elapsed())
}

fn assert_healthy(daemon: &Daemon) {
    assert_eq!(daemon.get("/livez").status, 200, "the daemon stopped answering");
    let logs = daemon.logs().join("\n");
    assert!(!logs.contains("panicked") && !logs.contains("bug:"), "a panic reached the log:\n{logs}");
}

#[test]
fn malformed_requests_get_correct_statuses() {
    let d = daemon(&[]);
    let a = d.addr();
    let cases: &[(&[u8], Option<u16>)] = &[
        (b"garbage\r\n\r\n", Some(400)),
        (b"GET\r\n\r\n", Some(400)),
        (b"BREW /livez HTTP/1.1\r\nHost: x\r\n\r\n", Some(405)),
        (b"BREW /teapot HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"GET /livez HTTP/1.0\r\n\r\n", Some(200)),
        (b"GET /livez HTTP/9.9\r\nHost: x\r\n\r\n", Some(400)),
        (b"GET //health HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"GET /health/../livez HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"GET /health%2Fs3 HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"GET /health/%ff%00 HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"GET /livez?%zz&&==&cached HTTP/1.1\r\nHost: x\r\n\r\n", Some(200)),
        (b"GET /livez#frag HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", Some(404)),
        (b"POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", Some(405)),
        (b"GET /livez HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n", Some(400)),
    ];
    for (raw, want) in cases {
        let got = status_of(a, raw);
        assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(raw));
    }
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(8 * 1024));
    assert_eq!(status_of(a, long_path.as_bytes()), Some(404));
    // Past the 16 KiB of request line and headers tiny_http now reads.
    let too_long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(16 * 1024));
    assert_eq!(status_of(a, too_long.as_bytes()), Some(431));
    assert_healthy(&d);
}

#[test]
fn bytes_that_are_not_http_close_the_connection() {
    let d = daemon(&["--http-header-timeout=2s"]);
    let (answer, _) = read_all(d.addr(), b"\x00\xff\xfe\x16\x03\x01 binary\r\n\r\n", Duration::from_secs(15));
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // A TLS ClientHello to the plain-HTTP port: no line ends, so it is cut
    // at the header deadline (408).
    let (answer, _) =
        read_all(d.addr(), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Duration::from_secs(15));
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400") || answer.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_healthy(&d);
}

#[test]
fn pipelined_keep_alive_requests_are_answered_in_order() {
    let d = daemon(&[]);
    let raw = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (answer, _) = read_all(d.addr(), raw, Duration::from_secs(15));
    let text = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = text.lines().filter(|l| l.starts_with("HTTP/1.1 ")).collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"],
        "{text}"
    );
    assert_healthy(&d);
}

#[test]
fn huge_headers_and_bodies_are_cut_off() {
    let d = daemon(&[]);
    // An endless header line: closed once it passes the request limit.
    let mut stream = TcpStream::connect(d.addr()).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /livez HTTP/1.1\r\nX-Huge: ").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let began = Instant::now();
    let mut sent = 0usize;
    while began.elapsed() < Duration::from_secs(20) {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "still accepting an endless header after {sent} bytes"
    );
    assert!(sent < 64 << 20, "took {sent} bytes of one header");
    // A huge declared body: refused before a byte of it is read (tiny_http
    // 0.12 allocated the announced length to skip an unread body).
    let raw = b"POST /quitquitquit-not HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nxxxx";
    let (answer, _) = read_all(d.addr(), raw, Duration::from_secs(20));
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 413"), "{answer:?}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer:?}");
    // A header line that is not one: 400, and the connection ends, as the
    // next request's start is unknown.
    let (answer, _) =
        read_all(d.addr(), b"GET /livez HTTP/1.1\r\nno colon here\r\n\r\n", Duration::from_secs(20));
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 400"), "{answer:?}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer:?}");
    assert_healthy(&d);
}

#[test]
fn idle_and_slow_connections_are_closed() {
    let d = daemon(&["--http-idle-timeout=1s"]);
    let (answer, took) = read_all(d.addr(), b"", Duration::from_secs(20));
    assert!(answer.is_empty());
    assert!(took < Duration::from_secs(5), "an idle connection stayed open {took:?}");

    // A byte at a time, never finishing the request: closed after 3 x idle.
    let mut slow = TcpStream::connect(d.addr()).unwrap();
    let began = Instant::now();
    let closed = loop {
        if slow.write_all(b"G").is_err() || began.elapsed() > Duration::from_secs(20) {
            break began.elapsed();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(closed < Duration::from_secs(15), "a slowloris lasted {closed:?}");
    assert_healthy(&d);
}

#[test]
fn a_connection_flood_is_capped_and_probes_still_answer() {
    let d = daemon(&["--max-connections=50", "--http-idle-timeout=30s"]);
    let idle: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(d.addr()).ok()).collect();
    assert!(idle.len() >= 250);
    // Probes keep working while the idle ones are shed: once the flood's
    // connections have waited long enough to count as idle (100 ms), each
    // probe takes the place of the one idle longest.
    let began = Instant::now();
    let first = support::eventually(Duration::from_secs(5), || d.get("/livez").status == 200);
    assert!(first, "no probe answered with the cap full of idle connections");
    for _ in 0..5 {
        assert_eq!(d.get("/livez").status, 200);
        assert_eq!(d.json("/health").0, 503, "the check has no credentials");
    }
    assert!(began.elapsed() < Duration::from_secs(10));
    let shed = support::eventually(Duration::from_secs(10), || threads(&d) < 120);
    assert!(shed, "threads stayed at {} with 300 idle connections and a cap of 50", threads(&d));
    drop(idle);
    assert_healthy(&d);
}

fn threads(d: &Daemon) -> usize {
    std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random request lines, headers and bytes: every answer is a status we
    /// can stand behind, or a closed connection; the daemon never dies.
    #[test]
    fn fuzzed_requests_never_hurt_the_daemon(
        method in prop_oneof![Just("GET".to_string()), Just("POST".to_string()), Just("HEAD".to_string()), "[A-Z]{1,8}", "[ -~]{0,12}"],
        path in prop_oneof![Just("/health".to_string()), Just("/livez".to_string()), Just("/metrics".to_string()), "/[ -~]{0,64}", "[ -~]{0,32}"],
        version in prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2.0"), Just("")],
        headers in proptest::collection::vec(("[A-Za-z-]{0,12}", "[ -~]{0,40}"), 0..4),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let d = FUZZ_DAEMON.with(|d| d.addr());
        let mut raw = format!("{method} {path} {version}\r\n").into_bytes();
        for (k, v) in &headers {
            raw.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&tail);
        if let Some(status) = status_of(d, &raw) {
            prop_assert!([200, 400, 403, 404, 405, 413, 431, 503, 505].contains(&status), "status {status} for {:?}", String::from_utf8_lossy(&raw));
        }
        prop_assert_eq!(support::http_request(d, "GET", "/livez", &[], b"").map(|r| r.status).ok(), Some(200));
    }
}

thread_local! {
    static FUZZ_DAEMON: Daemon = daemon(&["--no-quitquitquit", "--http-idle-timeout=1s", "--http-header-timeout=1s"]);
}

#[test]
fn a_client_that_never_reads_its_answers_holds_up_nobody() {
    let d = daemon(&[]);
    // Thousands of pipelined requests, and not one answer read.
    let mut greedy = TcpStream::connect(d.addr()).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let burst: Vec<u8> = request.iter().copied().cycle().take(request.len() * 20_000).collect();
    let writer = std::thread::spawn(move || {
        let _ = greedy.write_all(&burst);
        greedy
    });
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let began = Instant::now();
        assert_eq!(d.get("/livez").status, 200);
        assert!(began.elapsed() < Duration::from_secs(2), "/livez took {:?}", began.elapsed());
    }
    drop(writer.join());
    assert_healthy_but_for_cut_offs(&d);
}

#[test]
fn an_endless_header_after_an_answered_request_is_cut_off() {
    let d = daemon(&[]);
    let mut stream = TcpStream::connect(d.addr()).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 512];
    let n = stream.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&first[..n]));
    // Same connection, now an endless header.
    stream.write_all(b"GET /livez HTTP/1.1\r\nX-Huge: ").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let began = Instant::now();
    let mut sent = 0usize;
    while began.elapsed() < Duration::from_secs(20) {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 64 << 20, "took {sent} bytes of one header on a kept-alive connection");
    assert_healthy(&d);
}

/// Like `assert_healthy`, where the test itself provoked cut-off warnings.
fn assert_healthy_but_for_cut_offs(daemon: &Daemon) {
    assert_eq!(daemon.get("/livez").status, 200, "the daemon stopped answering");
    let logs = daemon.logs().join("\n");
    assert!(!logs.contains("panicked") && !logs.contains("bug:"), "a panic reached the log:\n{logs}");
}
