//! Dependencies failing: statsd unresolvable, unreachable, hung in its
//! lookup, or a name that only starts resolving later. In every case the
//! checks and `/health` are unaffected (runs go on at their interval,
//! answers come at once), and metrics flow again once statsd is there.
//!
//! kubernary's statsd sender resolves the address again every 5 s while
//! it fails (src/metrics.rs), so the waits here are generous. The credential
//! source's flaps are in tests/faults.rs.

mod support;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use support::load::CountingBackend;
use support::{eventually, Daemon, StatsdReceiver};

const SUCCEEDED: &str = "kubernary.web.request.succeeded:1|c";

/// kubernary's retry interval after a failed lookup, plus a margin.
const RESOLVE_WAIT: Duration = Duration::from_secs(12);

fn env(backend: &CountingBackend) -> Vec<(String, String)> {
    vec![
        ("KUBERNARY_CHECKS".into(), "web=http".into()),
        ("KUBERNARY_WEB_URL".into(), backend.url("/healthz")),
        ("KUBERNARY_WEB_INTERVAL".into(), "100ms".into()),
        ("KUBERNARY_WEB_TIMEOUT".into(), "1s".into()),
    ]
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// For `during`: every /health answers 200 within 500 ms, and the
/// scheduled runs go on (at least a few per second). Returns how many runs
/// the backend saw and the slowest answer.
fn unaffected(d: &Daemon, backend: &CountingBackend, during: Duration) -> (usize, Duration) {
    let before = backend.count();
    let began = Instant::now();
    let mut slowest = Duration::ZERO;
    while began.elapsed() < during {
        let t0 = Instant::now();
        let (status, body) = d.json("/health");
        let took = t0.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(took < Duration::from_millis(500), "/health took {took:?}");
        slowest = slowest.max(took);
        thread::sleep(Duration::from_millis(100));
    }
    let runs = backend.count() - before;
    let expected = (during.as_secs_f64() * 3.0) as usize;
    assert!(runs >= expected, "only {runs} runs in {during:?} at INTERVAL=100ms");
    (runs, slowest)
}

fn got_metrics(statsd: &StatsdReceiver, wait: Duration) -> bool {
    let lines = statsd.lines_until(|l| l.iter().any(|x| x == SUCCEEDED), wait);
    lines.iter().any(|x| x == SUCCEEDED)
}

fn figure(text: String) {
    let _ = writeln!(std::io::stderr(), "FIGURE {text}");
}

#[test]
fn statsd_unresolvable_at_start_is_one_warning_and_nothing_else() {
    let backend = CountingBackend::start(Duration::ZERO);
    let env = env(&backend);
    let d = Daemon::start(&["nothing.invalid:8125"], &borrowed(&env));
    let (runs, slowest) = unaffected(&d, &backend, Duration::from_secs(2));
    let warnings = d.logs().iter().filter(|l| l.contains("[WARN] statsd:")).count();
    assert_eq!(warnings, 1, "{:#?}", d.logs());
    assert!(d.logs().iter().any(|l| l.contains("cannot resolve nothing.invalid:8125")), "{:#?}", d.logs());
    figure(format!(
        "statsd unresolvable: {runs} runs in 2 s, slowest /health {} ms, 1 warning",
        slowest.as_millis()
    ));
}

/// Nobody listens on the statsd port, then statsd comes up, goes away and
/// comes back, on the same port: checks never notice, metrics flow
/// whenever it is there.
#[test]
fn statsd_unreachable_then_up_then_gone_then_back() {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let backend = CountingBackend::start(Duration::ZERO);
    let env = env(&backend);
    let d = Daemon::start(&[&addr.to_string()], &borrowed(&env));
    unaffected(&d, &backend, Duration::from_secs(1));

    let statsd = StatsdReceiver::bind(addr).unwrap();
    let began = Instant::now();
    assert!(got_metrics(&statsd, RESOLVE_WAIT), "no metrics once statsd came up");
    let up = began.elapsed();
    drop(statsd);
    let (runs, slowest) = unaffected(&d, &backend, Duration::from_secs(1));
    let statsd = StatsdReceiver::bind(addr).unwrap();
    let began = Instant::now();
    assert!(got_metrics(&statsd, RESOLVE_WAIT), "no metrics once statsd came back");
    let back = began.elapsed();
    figure(format!(
        "statsd unreachable: metrics {} ms after statsd came up; gone: {runs} runs in 1 s, slowest /health {} ms; back: metrics after {} ms",
        up.as_millis(),
        slowest.as_millis(),
        back.as_millis()
    ));
}

/// The lookup of statsd's name hangs (a FIFO named by HOSTALIASES, as a
/// dead name server): the sender thread is stuck, the checks are not, and
/// nothing piles up (lines beyond the queue are dropped and counted).
#[test]
fn statsd_lookup_that_hangs_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("aliases");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let backend = CountingBackend::start(Duration::ZERO);
    let mut env = env(&backend);
    env.push(("HOSTALIASES".into(), fifo.display().to_string()));
    let d = Daemon::start(&["kubernary-statsd:8125"], &borrowed(&env));
    let threads = d.threads();
    let (runs, slowest) = unaffected(&d, &backend, Duration::from_secs(3));
    let after = d.threads();
    assert!(after <= threads + 2, "threads {threads} -> {after}");
    assert_eq!(d.get("/metrics").status, 200);
    figure(format!(
        "statsd hung lookup: {runs} runs in 3 s, slowest /health {} ms, threads {threads} -> {after}",
        slowest.as_millis()
    ));
    // Let the stuck lookup go.
    let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&fifo);
}

/// A statsd name that does not resolve at start and does later (a Service
/// created after the canary): metrics flow once it resolves, with no
/// restart. The name comes from /etc/hosts in a mount namespace of the
/// daemon's own, so no DNS server is ever asked; without root the test
/// says it skips.
#[test]
fn statsd_name_that_starts_resolving_later() {
    let statsd = StatsdReceiver::new();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let backend = CountingBackend::start(Duration::ZERO);
    let env = env(&backend);
    let target = format!("kubernary-statsd:{}", statsd.addr().port());
    let Some(d) = Daemon::start_with_hosts(&hosts, &[&target], &borrowed(&env)) else { return };
    unaffected(&d, &backend, Duration::from_secs(1));
    assert!(
        eventually(Duration::from_secs(5), || d
            .logs()
            .iter()
            .any(|l| l.contains("cannot resolve kubernary-statsd"))),
        "{:#?}",
        d.logs()
    );
    assert!(statsd.drain(Duration::from_millis(200)).is_empty());

    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 kubernary-statsd\n").unwrap();
    let began = Instant::now();
    assert!(got_metrics(&statsd, RESOLVE_WAIT), "no metrics after the name started resolving");
    let took = began.elapsed();
    assert!(d.wait_for_log("statsd: sending to kubernary-statsd", Duration::from_secs(2)), "{:#?}", d.logs());
    figure(format!(
        "statsd name resolving later: metrics {} ms after it resolved (retry every 5 s)",
        took.as_millis()
    ));
}

/// The log reader stops reading (a stalled container runtime, a full
/// pipe): kubernary goes on answering `/livez` and `/health` and running
/// its checks; what did not fit is dropped and counted, and said once the
/// reader is back.
#[test]
fn a_log_reader_that_stops_reading_stops_nothing() {
    use std::io::Read;
    use std::process::Stdio;
    use std::sync::mpsc;

    let port = support::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubernary"))
        .args(["--no-stats", "--debug", "--listen", &addr.to_string()])
        .env_clear()
        .env("RES_OPTIONS", "attempts:0")
        .env("KUBERNARY_CHECKS", "port=tcp")
        .env("KUBERNARY_PORT_ADDRESS", "127.0.0.1:1")
        .env("KUBERNARY_PORT_INTERVAL", "2ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held, never read until the end: the pipe fills.
    let mut stderr = child.stderr.take().unwrap();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let result = (|| -> Result<(usize, Duration), String> {
            let ready = eventually(Duration::from_secs(20), || support::load::get(addr, "/livez").is_ok());
            if !ready {
                return Err("never answered /livez".into());
            }
            // Several times what a pipe holds, in log lines.
            for _ in 0..8000 {
                match support::load::get(addr, "/livez") {
                    Ok((200, _)) => {}
                    other => return Err(format!("/livez: {other:?}")),
                }
            }
            let began = Instant::now();
            let (status, body) = support::load::get(addr, "/health")?;
            if status != 503 || !body.contains("\"reason\":\"connect\"") {
                return Err(format!("/health: {status} {body}"));
            }
            Ok((8000, began.elapsed()))
        })();
        let _ = done.send(result);
    });
    let outcome = finished.recv_timeout(Duration::from_secs(60));
    let threads = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let threads = threads.lines().find(|l| l.starts_with("Threads:")).unwrap_or("").to_string();
    // The reader is back: the queued lines, then the count of those lost.
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = logs.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let noted = eventually(Duration::from_secs(10), || logs.lock().unwrap().contains("line(s) dropped"));
    let _ = child.kill();
    let _ = child.wait();
    let logs = logs.lock().unwrap().clone();
    let (requests, health) = match outcome {
        Ok(Ok(figures)) => figures,
        Ok(Err(e)) => panic!("with stderr unread: {e}"),
        Err(_) => panic!("with stderr unread, the daemon stopped answering ({threads})"),
    };
    assert!(health < Duration::from_secs(1), "/health took {health:?}");
    assert!(
        noted && logs.contains("line(s) dropped: stderr was not read fast enough"),
        "no drop note in:\n{logs}"
    );
    figure(format!(
        "log reader stopped: {requests} /livez and a /health answered ({} ms), {threads}",
        health.as_millis()
    ));
}
