//! The status page in a real browser: Debian's chromium, headless, loads
//! `GET /` from a live daemon (the real binary) with one passing, one
//! failing and one not yet run check; the test reads the DOM chromium built (`--dump-dom`) and
//! checks states, reasons and cell counts, and leaves a screenshot in
//! `target/status.png` for a person to look at. Also: the page never starts
//! a run, `/health?history=true` carries the same history, the history's
//! memory, measured with a counting allocator, and the phases of a run
//! (`phases_ms`) against the fault server.
//!
//! chromium is installed by scripts/test-deps.sh (`make test` runs it).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

use support::{eventually, Daemon, Fault, FaultServer, HangServer, Reply, TestCa, WebServer};

/// Runs beyond the history's 60 for the passing check, so the strip is
/// seen to keep only the latest 60.
const PASSING_RUNS: usize = 65;
const FAILING_RUNS: usize = 5;
/// chromium's cold start on a busy shared machine.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("chromium is not installed: run scripts/test-deps.sh (make test does), which installs Debian's chromium");
}

/// Runs headless chromium with `args` and the URL; returns its stdout.
/// Everything that would reach beyond loopback is off, and every host name
/// but 127.0.0.1 resolves to nothing, so the page could not load an external asset even
/// if it named one.
fn browse(args: &[&str], url: &str) -> String {
    let profile = tempfile::Builder::new().prefix("kubernary-chromium-").tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read both pipes on threads so a chatty chromium cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_DEADLINE:?}: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "chromium {args:?} {url}: {status}\n{err}");
    out
}

/// A TCP port that accepts (and drops) every connection: the passing
/// check's target.
fn accepting_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    port
}

/// A loopback port nothing listens on: the failing check's target.
fn refusing_port() -> u16 {
    support::free_port()
}

fn runs_so_far(daemon: &Daemon) -> Counts {
    let (_, body) = daemon.json("/health?cached=true&history=true");
    let count = |name: &str| body[name]["history"].as_array().map_or(0, Vec::len);
    Counts { up: count("up"), down: count("down") }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Counts {
    up: usize,
    down: usize,
}

fn select<'a>(root: ElementRef<'a>, css: &str) -> Vec<ElementRef<'a>> {
    let selector = Selector::parse(css).unwrap_or_else(|e| panic!("selector {css}: {e:?}"));
    root.select(&selector).collect()
}

fn text(element: &ElementRef<'_>) -> String {
    element.text().collect::<String>().trim().to_string()
}

/// The one element `css` finds under `root`, as text.
fn one(root: ElementRef<'_>, css: &str) -> String {
    let found = select(root, css);
    assert_eq!(found.len(), 1, "{css}: {} found in {}", found.len(), root.html());
    text(&found[0])
}

#[test]
fn chromium_renders_passing_and_failing_checks_from_a_live_daemon() {
    let (up, down) = (accepting_port(), refusing_port());
    let (up_address, down_address) = (format!("127.0.0.1:{up}"), format!("127.0.0.1:{down}"));
    // A server that never answers, and a timeout longer than the test: the
    // first run of `slow` is still going while the page is read.
    let hang = HangServer::start();
    let slow_url = format!("{}/ready", hang.url());
    // An HTTPS server whose certificate runs out in ten days.
    let ca = TestCa::expiring_in(10);
    let web = WebServer::start_tls(&ca);
    web.set("/ok", 200, "fine");
    let secure_url = format!("https://localhost:{}/ok", web.port());
    let ca_file = ca.ca_path().display().to_string();
    // An hour's interval: after the first scheduled run, every run is one
    // this test asks for, so the counts are exact.
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "up=tcp,down=tcp,slow=http,secure=http"),
            ("KUBERNARY_SECURE_URL", &secure_url),
            ("KUBERNARY_SECURE_CA_FILE", &ca_file),
            ("KUBERNARY_SECURE_INTERVAL", "1h"),
            ("KUBERNARY_UP_ADDRESS", &up_address),
            ("KUBERNARY_UP_INTERVAL", "1h"),
            ("KUBERNARY_DOWN_ADDRESS", &down_address),
            ("KUBERNARY_DOWN_INTERVAL", "1h"),
            ("KUBERNARY_SLOW_URL", &slow_url),
            ("KUBERNARY_SLOW_INTERVAL", "1h"),
            ("KUBERNARY_SLOW_TIMEOUT", "10m"),
        ],
    );
    assert!(
        eventually(Duration::from_secs(20), || runs_so_far(&daemon) == Counts { up: 1, down: 1 }),
        "the first scheduled runs: {:?}",
        runs_so_far(&daemon)
    );
    assert!(
        daemon.wait_for_log("check secure passed", Duration::from_secs(20)),
        "the https check's first run"
    );
    for _ in 1..PASSING_RUNS {
        assert_eq!(daemon.get("/health/up").status, 200);
    }
    for _ in 1..FAILING_RUNS {
        assert_eq!(daemon.get("/health/down").status, 503);
    }
    let before = runs_so_far(&daemon);
    assert_eq!(before, Counts { up: 60, down: FAILING_RUNS }, "the history keeps 60 per check");

    let url = format!("http://{}/", daemon.addr());
    let dom = browse(&["--dump-dom"], &url);
    let screenshot = target_dir().join("status.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(&[&format!("--screenshot={}", screenshot.display()), "--window-size=820,1060"], &url);
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        screenshot.display()
    );
    eprintln!("screenshot: {}", screenshot.display());

    // Loading the page (twice) ran nothing.
    assert_eq!(runs_so_far(&daemon), before, "the status page started a run");

    let html = Html::parse_document(&dom);
    let root = html.root_element();
    assert!(select(root, "script").is_empty(), "no script: {dom}");
    let assets: Vec<String> = select(root, "[src], link[href]").iter().map(|e| e.html()).collect();
    assert!(assets.is_empty(), "external assets: {assets:?}");
    let refresh = select(root, "meta[http-equiv=refresh]");
    assert_eq!(refresh.len(), 1, "{dom}");
    let seconds: u32 = refresh[0].value().attr("content").unwrap().parse().unwrap();
    assert!((1..=30).contains(&seconds), "refresh every {seconds}s");

    let checks = select(root, "section.check");
    let names: Vec<_> = checks.iter().map(|c| c.value().attr("data-check").unwrap()).collect();
    assert_eq!(names, ["up", "down", "slow", "secure"], "one section per check, in configuration order");
    let (passing, failing, pending, secure) = (checks[0], checks[1], checks[2], checks[3]);

    assert_eq!(one(passing, ".state"), "passing");
    assert_eq!(one(passing, ".kind"), "tcp");
    assert!(select(passing, ".reason").is_empty(), "a passing check has no reason: {}", passing.html());
    assert!(one(passing, ".last-success").contains(" ago, at "), "{}", passing.html());
    let cells = select(passing, "ol.strip > li.cell");
    assert_eq!(cells.len(), 60, "the latest 60 of {PASSING_RUNS} runs");
    assert!(cells.iter().all(|c| c.value().classes().any(|k| k == "ok")), "{}", passing.html());
    let title = cells[59].value().attr("title").unwrap();
    assert!(
        title.contains("ms \u{b7} passed \u{b7} connect ") && title.contains('T'),
        "time, duration, reason, phase: {title}"
    );
    assert_eq!(select(passing, "svg.spark polyline").len(), 1, "a latency sparkline");

    assert_eq!(one(failing, ".state"), "failing");
    assert_eq!(one(failing, ".reason"), "connect");
    let error = one(failing, ".error");
    assert!(error.contains(&down_address) && error.contains("refused"), "{error}");
    assert!(one(failing, ".failing-for").starts_with("failing for "), "{}", failing.html());
    assert_eq!(one(failing, ".last-success"), "never");
    let cells = select(failing, "ol.strip > li.cell");
    assert_eq!(cells.len(), FAILING_RUNS);
    for cell in &cells {
        assert!(cell.value().classes().any(|k| k == "fail"), "{}", cell.html());
        assert!(cell.value().attr("title").unwrap().contains("ms \u{b7} connect \u{b7} "), "{}", cell.html());
    }
    assert_eq!(select(failing, "svg.spark path.failed").len(), FAILING_RUNS, "failed runs are marked");

    assert_eq!(one(pending, ".state"), "not yet run");
    assert_eq!(one(pending, ".kind"), "http");
    assert!(one(pending, ".last-run").starts_with("none yet"), "{}", pending.html());
    assert!(select(pending, "li.cell").is_empty(), "{}", pending.html());
    assert!(hang.connections() >= 1, "the slow check's first run is going");

    // Ten days left (9 and some hours by now): shown as a problem.
    assert_eq!(one(secure, ".state"), "passing");
    let cert = select(secure, "dd.cert");
    assert_eq!(cert.len(), 1, "{}", secure.html());
    assert!(cert[0].value().classes().any(|k| k == "soon"), "{}", cert[0].html());
    let text = cert[0].text().collect::<String>();
    assert!(text.starts_with("expires 20") && text.ends_with(", in 9 days"), "{text}");
    assert!(select(passing, "dd.cert").is_empty(), "a tcp check has no certificate: {}", passing.html());

    let summary = one(root, "#summary");
    assert_eq!(summary, "4 checks: 1 failing, 2 passing, 1 not yet run");
}

/// `/health?history=true` answers the same history as JSON, oldest first,
/// beside the usual fields, which keep their meaning; without it there is
/// no history field.
#[test]
fn health_with_history_carries_the_recent_results() {
    let down = refusing_port();
    let address = format!("127.0.0.1:{down}");
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "down=tcp"),
            ("KUBERNARY_DOWN_ADDRESS", &address),
            ("KUBERNARY_DOWN_INTERVAL", "1h"),
        ],
    );
    let (status, plain) = daemon.json("/health");
    assert_eq!(status, 503);
    assert!(plain["down"].get("history").is_none(), "{plain}");
    let (status, body) = daemon.json("/health?history=true");
    assert_eq!(status, 503);
    let down = &body["down"];
    assert_eq!(down["ok"], false);
    assert_eq!(down["reason"], "connect");
    let history = down["history"].as_array().expect("a history array");
    // The scheduled first run may or may not have settled before the two
    // on-demand ones; the latest is the run this answer reports.
    assert!((2..=3).contains(&history.len()), "{body}");
    let latest = history.last().unwrap();
    assert_eq!(latest["ok"], false);
    assert_eq!(latest["reason"], "connect");
    assert!(latest["duration_ms"].is_number(), "{latest}");
    assert_eq!(latest["at"], down["last_run"], "{body}");
    let times: Vec<&str> = history.iter().map(|h| h["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {times:?}");
}

/// The phase that took the time, from `phases_ms`, with the phases.
fn slowest_phase(check: &Value) -> (String, f64, Value) {
    let phases = check["phases_ms"].clone();
    let (name, ms) = phases
        .as_object()
        .unwrap_or_else(|| panic!("no phases_ms: {check}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_else(|| panic!("no phase: {check}"));
    (name, ms, phases)
}

/// Where the time went: a slow first byte lands in `first_byte`, a connect
/// that never completes in `connect` (reported at the deadline, while the
/// connect is still going), and the same phases reach `/metrics`.
#[test]
fn phases_show_where_the_time_went() {
    const SLOW: Duration = Duration::from_millis(1500);
    let server = FaultServer::start(Reply::ok());
    let url = server.url("/healthz");
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", &url),
            ("KUBERNARY_WEB_INTERVAL", "1h"),
            ("KUBERNARY_WEB_TIMEOUT", "3s"),
        ],
    );

    let (status, body) = daemon.json("/health/web");
    assert_eq!(status, 200, "{body}");
    let phases = &body["web"]["phases_ms"];
    for phase in ["resolve", "connect", "first_byte", "body"] {
        assert!(phases[phase].is_number(), "{phase} in {phases}");
    }
    assert!(phases.get("tls").is_none(), "plain HTTP has no tls phase: {phases}");

    server.set(Fault::SlowFirstByte(SLOW));
    let (status, body) = daemon.json("/health/web");
    assert_eq!(status, 200, "{body}");
    let (slowest, ms, phases) = slowest_phase(&body["web"]);
    assert_eq!(slowest, "first_byte", "{phases}");
    assert!(ms >= SLOW.as_millis() as f64, "first_byte {ms}ms, the server waited {SLOW:?}: {phases}");

    let metrics = daemon.get("/metrics").body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("kubernary_check_phase_seconds{check=\"web\",phase=\"first_byte\"}"))
        .unwrap_or_else(|| panic!("no first_byte phase in /metrics:\n{metrics}"));
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs >= SLOW.as_secs_f64(), "{line}");

    server.set(Fault::Blackhole);
    let (status, body) = daemon.json("/health/web");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["web"]["reason"], "timeout", "{body}");
    let (slowest, ms, phases) = slowest_phase(&body["web"]);
    assert_eq!(slowest, "connect", "{phases}");
    eprintln!("phases of a connect that never completes: {phases}");
    assert!(ms >= 1000.0, "a connect hung until the 3s deadline shows {ms}ms: {phases}");
    let (_, body) = daemon.json("/health?cached=true&history=true");
    let slowest: Vec<&str> = body["web"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["slowest_phase"].as_str().unwrap())
        .collect();
    // The scheduled first run may or may not have been joined by the first
    // request; the last two runs are the slow one and the hung one.
    assert_eq!(slowest[slowest.len() - 2..], ["first_byte", "connect"], "{body}");
}

/// The history's memory: every allocation this thread makes while six
/// checks each record far more results than are kept, counted by the
/// allocator itself. It must stay a few KB and match what the history
/// says it holds.
#[test]
fn the_history_costs_a_few_kilobytes() {
    use kubernary::history::{History, Sample, CAPACITY};
    let checks = ["s3", "api", "web", "db", "resolve", "whoami"];
    let before = allocated();
    let history = History::new();
    for i in 0..1000u64 {
        for check in checks {
            history.record(check, Sample { at_ms: i, micros: 1000, reason: None, slowest: None });
        }
    }
    let bytes = allocated() - before;
    assert_eq!(bytes, history.heap_bytes() as isize, "the history's own account of its heap");
    drop(history);
    // Checked before printing: the test harness's output capture allocates.
    assert_eq!(allocated(), before, "all freed");
    let per_check = bytes as usize / checks.len();
    eprintln!(
        "FIGURE history: {} checks x {CAPACITY} results: {bytes} bytes of heap ({per_check} per check)",
        checks.len()
    );
    assert!(bytes < 8 * 1024, "{bytes} bytes for {} checks", checks.len());
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Bytes allocated and not yet freed by the current thread.
fn allocated() -> isize {
    ALLOCATED.with(Cell::get)
}

thread_local! {
    static ALLOCATED: Cell<isize> = const { Cell::new(0) };
}

/// Counts each thread's live heap bytes, so that a test measures only what
/// it allocates itself, whatever other tests do meanwhile.
struct Counting;

// SAFETY: forwards to the system allocator unchanged; the counting touches
// only a const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let _ = ALLOCATED.try_with(|c| c.set(c.get() + layout.size() as isize));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        let _ = ALLOCATED.try_with(|c| c.set(c.get() - layout.size() as isize));
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;
