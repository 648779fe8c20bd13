//! Load: thousands of `/health` requests at concurrency 100 against a
//! passing check get no wrong answer; concurrent requests share the run in
//! flight, so the backend sees far fewer requests than the probes; `/livez`
//! stays fast while `/health` is saturated.
//!
//! Timing figures are printed (`FIGURE ...` on stderr, past libtest's
//! capture), with generous bounds only: a debug build on a shared 2-core
//! machine is no benchmark. `examples/load.rs` runs the same load by hand
//! against a release build (`make load`). `make soak` runs the long
//! variants (`#[ignore]` here).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::load::{self, CountingBackend};
use support::Daemon;

/// A daemon with one http check against `backend`; only on-demand runs
/// (the run at start aside), so the backend counts what probes cost.
fn daemon(backend: &CountingBackend, args: &[&str]) -> Daemon {
    let url = backend.url("/healthz");
    let mut all = vec!["--no-stats"];
    all.extend_from_slice(args);
    let d = Daemon::start(
        &all,
        &[
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", &url),
            ("KUBERNARY_WEB_INTERVAL", "1h"),
            ("KUBERNARY_WEB_TIMEOUT", "5s"),
        ],
    );
    assert!(d.wait_for_log("check web passed", Duration::from_secs(10)), "the check never passed");
    d
}

/// A right answer: 200, and the check passing in the JSON.
fn passing(status: u16, body: &str) -> bool {
    status == 200 && serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["web"]["ok"] == true)
}

/// `requests` probes of `/health`, `concurrency` at a time, against a
/// backend that answers after `delay`, with `/livez` timed meanwhile.
/// Asserts the answers and the sharing; returns the figure line.
fn load_case(requests: usize, concurrency: usize, delay: Duration) -> String {
    let backend = CountingBackend::start(delay);
    let d = daemon(&backend, &[]);
    let addr = d.addr();
    let before = backend.count();
    let idle = load::proc_threads_rss(d.pid());
    let stop = AtomicBool::new(false);
    let (report, (livez, livez_failed), (threads, rss)) = thread::scope(|s| {
        let livez = s.spawn(|| load::probe_until(addr, "/livez", Duration::from_millis(5), &stop));
        let peak = s.spawn(|| load::peak_until(d.pid(), &stop));
        let report = load::run(addr, "/health", requests, concurrency, &passing);
        stop.store(true, Ordering::SeqCst);
        (report, livez.join().unwrap(), peak.join().unwrap())
    });
    let backend_requests = backend.count() - before;
    assert_eq!(report.wrong + report.errors, 0, "wrong answers: {:#?}", report.examples);
    assert_eq!(report.right, requests);
    assert_eq!(livez_failed, 0, "/livez failed {livez_failed} times under load");
    // Generous: sharing makes this far smaller; one run per probe would
    // make it `requests`.
    assert!(
        backend_requests * 4 <= requests,
        "{backend_requests} backend requests for {requests} probes: runs are not shared"
    );
    let p99 = load::percentile(&livez, 99.0);
    assert!(p99 < Duration::from_secs(1), "/livez p99 {p99:?} while /health is saturated");
    let line = format!(
        "{requests} /health at concurrency {concurrency}, backend delay {} ms: {} right, 0 wrong, {:.0} req/s; \
         /health {}; backend requests {backend_requests} = {:.1} per 100 probes; \
         /livez under load ({} probes) {}; daemon threads {} idle, {threads} peak; RSS {} KiB idle, {rss} KiB peak",
        delay.as_millis(),
        report.right,
        report.per_second(),
        load::summary(&report.latencies),
        backend_requests as f64 * 100.0 / requests as f64,
        livez.len(),
        load::summary(&livez),
        idle.0,
        idle.1,
    );
    let _ = writeln!(std::io::stderr(), "FIGURE load {line}");
    line
}

/// The case: thousands of probes at concurrency 100 against a
/// backend that answers at once (the least sharing: each run is short).
#[test]
fn thousands_of_probes_get_right_answers_and_share_runs() {
    load_case(3000, 100, Duration::ZERO);
}

/// A backend that takes 100 ms: every /health waits, so all 100 are in
/// flight at once (saturated), and they share nearly every run.
#[test]
fn livez_stays_fast_while_health_is_saturated() {
    load_case(1000, 100, Duration::from_millis(100));
}

/// `make soak`: KUBERNARY_SOAK_REQUESTS (default 30000) probes at
/// concurrency 100; the daemon's threads come back down afterwards.
#[test]
#[ignore = "long: make soak"]
fn soak_load() {
    let requests =
        std::env::var("KUBERNARY_SOAK_REQUESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(30_000);
    load_case(requests, 100, Duration::ZERO);
    load_case(requests / 10, 100, Duration::from_millis(100));
}

/// `make soak`: a connection flood for KUBERNARY_SOAK_SECS (default 60):
/// waves of 300 idle connections against --max-connections=50, while
/// `/livez` is probed; each wave is shed to the cap (tiny_http's idle
/// threads then end within 5 s), RSS stays bounded, and probes keep
/// answering: a probe that comes while every open connection is newer than
/// 100 ms (none counts as idle yet) is refused with a 503, and no other
/// failure is allowed.
#[test]
#[ignore = "long: make soak"]
fn soak_connection_flood() {
    let secs = std::env::var("KUBERNARY_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let backend = CountingBackend::start(Duration::ZERO);
    let d = daemon(&backend, &["--max-connections=50", "--http-idle-timeout=30s"]);
    let idle = load::proc_threads_rss(d.pid());
    let stop = AtomicBool::new(false);
    let began = Instant::now();
    let mut shed_in = Vec::new();
    let (waves, (threads, rss), probes) = thread::scope(|s| {
        let peak = s.spawn(|| load::peak_until(d.pid(), &stop));
        let probes = s.spawn(|| probe_until(d.addr(), "/livez", Duration::from_millis(100), &stop));
        // Stops the samplers even if an assertion below fails, or the
        // scope would wait for them forever.
        let _stop = StopOnDrop(&stop);
        let mut waves = 0;
        while began.elapsed() < Duration::from_secs(secs) {
            let flood: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(d.addr()).ok()).collect();
            let t0 = Instant::now();
            // The cap, plus the daemon's own threads and a few probes.
            let shed = support::eventually(Duration::from_secs(15), || d.threads() < 50 + idle.0 + 40);
            assert!(shed, "wave {waves}: {} threads after 15 s, cap 50: {:?}", d.threads(), d.thread_names());
            shed_in.push(t0.elapsed());
            let answered = support::eventually(Duration::from_secs(5), || {
                let health = d.get("/health");
                passing(health.status, &health.body)
            });
            assert!(answered, "wave {waves}: /health never answered");
            drop(flood);
            waves += 1;
        }
        stop.store(true, Ordering::SeqCst);
        (waves, peak.join().unwrap(), probes.join().unwrap())
    });
    let (latencies, refused, failed) = probes;
    let after = load::proc_threads_rss(d.pid());
    shed_in.sort();
    assert!(failed.is_empty(), "/livez failed during the flood: {failed:?}");
    let line = format!(
        "flood {secs} s: {waves} waves of 300 idle connections, --max-connections=50: threads {} idle, {threads} peak, \
         down to the cap in {} ms (median), {} after; RSS {} KiB idle, {rss} KiB peak, {} KiB after; /livez {}",
        idle.0,
        load::percentile(&shed_in, 50.0).as_millis(),
        after.0,
        idle.1,
        after.1,
        load::summary(&latencies)
    );
    let _ = writeln!(std::io::stderr(), "FIGURE {line}; {refused} probe(s) refused with 503 at the cap");
}

/// GETs `path` every `every` until `stop`: the latencies of the 200s,
/// sorted; how many were refused at the connection cap (503 with
/// `Connection: close`); every other answer or error.
fn probe_until(
    addr: std::net::SocketAddr,
    path: &str,
    every: Duration,
    stop: &AtomicBool,
) -> (Vec<Duration>, usize, Vec<String>) {
    let (mut latencies, mut refused, mut failed) = (Vec::new(), 0, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let t0 = Instant::now();
        match load::get(addr, path) {
            Ok((200, _)) => latencies.push(t0.elapsed()),
            Ok((503, body)) if body == "too many open connections\n" => refused += 1,
            other => failed.push(format!("{other:?}")),
        }
        std::thread::sleep(every);
    }
    latencies.sort();
    (latencies, refused, failed)
}

/// Sets the flag when dropped: scoped samplers end however the scope does.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
