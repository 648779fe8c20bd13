//! `make bench`: what kubernary costs to run, measured on this machine.
//!
//! The driver starts the real binaries as child processes, talks to them over
//! loopback only, reads their memory and CPU from `/proc` and the kernel's
//! per-process CPU clock, and prints one Markdown table: for every figure the
//! median of `--runs` runs with its min and max, and the machine it ran on.
//! `make bench-soak` runs the same driver with `--soak`: one binary for ten
//! minutes at one check (and one `/health`) per second, RSS at start and end.
//!
//! What it runs, per run and per binary (binaries interleaved, so that load
//! from anything else on the machine falls on both alike):
//!
//! - **idle**: a daemon with one `http` check of the local backend (default
//!   `INTERVAL` of 30s, so it runs once at start); time from `exec` to the
//!   first 200 on `/livez`; RSS 5 s after `exec`; CPU and wakeups over the
//!   next 10 s; then SIGTERM and the time until the process has exited.
//! - **load**: the same set-up; time from `exec` to the first `/health`
//!   answer; then `wrk` with 50 connections for 10 s on `/health`: requests
//!   per second, latency p50/p99 (wrk's), CPU seconds and peak RSS (VmHWM).
//! - **overhead**: a daemon with one `tcp` check of the backend alone;
//!   `/health` one at a time on a kept-alive connection; per request, the
//!   client's latency minus the check's own `duration_ms` from the answer.
//! - **single flight**: a daemon whose `http` check's backend answers in
//!   10 ms; 100 clients connect, then send `/health` at the same moment;
//!   how many requests the backend saw.
//! - **history**: the status page's history filled (six checks, 60 results
//!   each), its heap as the history accounts for it.
//! - **versus blackbox**: once per run, after the above, kubernary with one
//!   `tcp` check and Debian's `prometheus-blackbox-exporter` with its
//!   `tcp_connect` module, both pointed at the same loopback listener of the
//!   driver's, take turns (first binary, blackbox, second binary, ...) under
//!   the same wrk load: `/health` against `/probe`. Per process: requests per
//!   second, CPU (utime + stime) per answered request, peak threads (sampled
//!   every 2 ms), peak RSS; per run, ours ÷ blackbox. blackbox also gets its
//!   start-up (exec to the first 200 on `/-/healthy`) and idle RSS measured.
//!
//! The load generator is wrk (C, epoll, two threads): on two cores a client
//! that costs little leaves the CPU to the daemon being measured, and its
//! latency histogram is the usual one. Everything else is std code here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const LOOPBACK: &str = "127.0.0.1";
const LOAD_CONNECTIONS: u32 = 50;
const LOAD_SECONDS: u32 = 10;
const IDLE_RSS_AT: Duration = Duration::from_secs(5);
const IDLE_CPU_OVER: Duration = Duration::from_secs(10);
const OVERHEAD_REQUESTS: usize = 1000;
const BURST: usize = 100;
/// How long the backend takes to answer `/slow`, as a real backend would.
const SLOW_BACKEND: Duration = Duration::from_millis(10);
/// How often the thread count and RSS are sampled under load: often enough
/// to catch a burst of short-lived threads, cheap enough not to matter.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);
/// The column of the other program, Debian's prometheus-blackbox-exporter.
const BLACKBOX: &str = "blackbox";

fn main() {
    let opts = match Opts::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("bench: {e}");
            eprintln!(
                "usage: bench [--runs N] [--wrk PATH] [--blackbox PATH|none] --bin NAME=PATH ... | --soak SECONDS --bin NAME=PATH"
            );
            std::process::exit(2);
        }
    };
    let backend = Backend::start();
    if let Some(seconds) = opts.soak {
        let (name, bin) = &opts.bins[0];
        soak(name, bin, &backend, Duration::from_secs(seconds));
        return;
    }
    let machine = machine();
    eprintln!("bench: {machine}");
    let blackbox = opts.blackbox.as_deref().map(Blackbox::new);
    let target = Target::start();
    let mut results: Results = BTreeMap::new();
    for run in 1..=opts.runs {
        for (name, bin) in &opts.bins {
            eprintln!("bench: run {run}/{} of {name} ({})", opts.runs, bin.display());
            let mut record = |key: &'static str, value: f64| {
                results.entry((name.as_str(), key)).or_default().push(value);
            };
            idle(bin, &backend, &mut record);
            load(bin, &backend, &opts.wrk, &mut record);
            overhead(bin, &backend, &mut record);
            single_flight(bin, &backend, &mut record);
        }
        eprintln!("bench: run {run}/{}, tcp check versus blackbox_exporter", opts.runs);
        versus(&opts, blackbox.as_ref(), &target, &mut results);
    }
    for (name, bin) in &opts.bins {
        let size = std::fs::metadata(bin).map(|m| m.len() as f64).unwrap_or(f64::NAN);
        results.insert((name.as_str(), "size"), vec![size / MIB]);
        results.insert((name.as_str(), "history_kib"), vec![history_kib()]);
        if blackbox.is_some() {
            let ratios = ratios(&results, name, "tcp_rps");
            results.insert((name.as_str(), "tcp_ratio"), ratios);
        }
    }
    print!("{}", table(&opts, &machine, blackbox.as_ref(), &results));
}

/// Every figure's values, one per run, by (column, figure).
type Results<'a> = BTreeMap<(&'a str, &'static str), Vec<f64>>;

/// The status page's history when full: [`HISTORY_CHECKS`] checks of
/// `CAPACITY` results each, as the history accounts for its heap
/// (tests/status.rs holds that account to a counting allocator's). The same
/// code in every binary, so measured here, once, rather than read off a
/// daemon's RSS, where a few KiB drown in the page cache's noise.
fn history_kib() -> f64 {
    use kubernary::history::{History, Sample, CAPACITY};
    let history = History::new();
    for i in 0..2 * CAPACITY as u64 {
        for check in HISTORY_CHECKS {
            history.record(check, Sample { at_ms: i, micros: 1000, reason: None, slowest: None });
        }
    }
    history.heap_bytes() as f64 / 1024.0
}

/// Six checks, one of each kind, with names of a usual length.
const HISTORY_CHECKS: [&str; 6] = ["s3", "api-server", "web", "tcp-db", "resolve", "whoami"];

/// `name`'s `key` over blackbox's, run by run: each run's two figures were
/// measured next to each other, under the same load from the rest of the
/// machine, so their ratio is steadier than the ratio of the two medians.
fn ratios(results: &Results, name: &str, key: &'static str) -> Vec<f64> {
    let ours = results.get(&(name, key)).map_or(&[][..], Vec::as_slice);
    let theirs = results.get(&(BLACKBOX, key)).map_or(&[][..], Vec::as_slice);
    ours.iter().zip(theirs).map(|(a, b)| a / b).collect()
}

const MIB: f64 = 1024.0 * 1024.0;

struct Opts {
    runs: usize,
    wrk: String,
    bins: Vec<(String, PathBuf)>,
    soak: Option<u64>,
    /// prometheus-blackbox-exporter, for the side-by-side column; None
    /// (`--blackbox none`) leaves the column out.
    blackbox: Option<String>,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut opts = Opts {
            runs: 5,
            wrk: "wrk".into(),
            bins: Vec::new(),
            soak: None,
            blackbox: Some("prometheus-blackbox-exporter".into()),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--runs" => opts.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
                "--wrk" => opts.wrk = value()?,
                "--blackbox" => opts.blackbox = Some(value()?).filter(|v| v != "none"),
                "--soak" => opts.soak = Some(value()?.parse().map_err(|e| format!("--soak: {e}"))?),
                "--bin" => {
                    let v = value()?;
                    let (name, path) = v.split_once('=').ok_or(format!("--bin {v}: write NAME=PATH"))?;
                    let path = PathBuf::from(path);
                    if !path.is_file() {
                        return Err(format!("--bin {v}: {} is not a file (build it first)", path.display()));
                    }
                    opts.bins.push((name.to_string(), path));
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if opts.bins.is_empty() {
            return Err("no --bin given".into());
        }
        if opts.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        Ok(opts)
    }
}

/// `2 cores, AMD EPYC, Linux 6.1, load average 0.20 at start`.
fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("unknown CPU");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {model}, Linux {}, load average {} at start", kernel.trim(), load_average())
}

/// The 1-minute load average: the machine's other work, which the figures
/// share the two cores with (at the start; later it counts the daemons'
/// own threads under load too).
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().next().unwrap_or("?").to_string()
}

// ---------------------------------------------------------------------------
// The measurements.

type Record<'a> = dyn FnMut(&'static str, f64) + 'a;

/// The mean number of runnable tasks on the machine until `until`, sampled
/// every 50 ms, the sampler itself not counted: while the daemon under test
/// sits idle, that is everybody else's work, which the figures share the
/// cores with.
fn others_running(until: Instant) -> f64 {
    let (mut sum, mut count) = (0.0, 0u32);
    while Instant::now() < until {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        if let Some(running) = procs_running(&stat) {
            sum += running.saturating_sub(1) as f64;
            count += 1;
        }
        thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / f64::from(count)
    }
}

/// `procs_running` of `/proc/stat`.
fn procs_running(stat: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix("procs_running ")?.trim().parse().ok())
}

/// Start-up to `/livez`, idle RSS and CPU, shutdown.
fn idle(bin: &Path, backend: &Backend, record: &mut Record) {
    let started = Instant::now();
    let mut daemon = Daemon::start(bin, &http_check(backend, "/"));
    let first = daemon.first_answer("/livez", |status| status == 200);
    record("livez_ms", ms(first.duration_since(started)));
    sleep_until(started + IDLE_RSS_AT);
    let status = daemon.status();
    record("idle_rss", status.kib("VmRSS") / 1024.0);
    record("idle_anon", status.kib("RssAnon") / 1024.0);
    let (cpu0, switches0, t0) = (daemon.cpu(), daemon.switches(), Instant::now());
    record("others_running", others_running(t0 + IDLE_CPU_OVER));
    let (cpu1, switches1, t1) = (daemon.cpu(), daemon.switches(), Instant::now());
    record("idle_cpu_ms", ms(cpu1 - cpu0));
    record("idle_wakeups", switches1.saturating_sub(switches0) as f64 / (t1 - t0).as_secs_f64());
    record("threads", status.kib("Threads"));
    record("shutdown_ms", ms(daemon.terminate()));
}

/// Start-up to `/health`, then wrk on `/health`.
fn load(bin: &Path, backend: &Backend, wrk: &str, record: &mut Record) {
    let started = Instant::now();
    let mut daemon = Daemon::start(bin, &http_check(backend, "/"));
    let first = daemon.first_answer("/health", |_| true);
    record("health_ms", ms(first.duration_since(started)));
    thread::sleep(Duration::from_millis(200));
    let before = daemon.cpu();
    let wrk = run_wrk(wrk, &format!("http://{}/health", daemon.addr));
    let cpu = daemon.cpu() - before;
    record("load_errors", wrk.errors as f64);
    let status = daemon.status();
    record("load_rss", status.kib("VmHWM") / 1024.0);
    record("load_cpu_s", cpu.as_secs_f64());
    record("load_cpu_per_req_us", cpu.as_secs_f64() * 1e6 / wrk.requests);
    record("rps", wrk.requests / f64::from(LOAD_SECONDS));
    record("p50_ms", wrk.p50_ms);
    record("p99_ms", wrk.p99_ms);
    daemon.terminate();
}

/// `/health` latency minus the check's own, one request at a time.
fn overhead(bin: &Path, backend: &Backend, record: &mut Record) {
    let tcp =
        [("KUBERNARY_CHECKS", "port=tcp".to_string()), ("KUBERNARY_PORT_ADDRESS", backend.addr.to_string())];
    let mut daemon = Daemon::start(bin, &tcp);
    daemon.first_answer("/health", |status| status == 200);
    let mut conn = Conn::open(daemon.addr);
    let mut overheads = Vec::with_capacity(OVERHEAD_REQUESTS);
    let mut checks = Vec::with_capacity(OVERHEAD_REQUESTS);
    let mut totals = Vec::with_capacity(OVERHEAD_REQUESTS);
    for n in 0..OVERHEAD_REQUESTS + 100 {
        let sent = Instant::now();
        let (status, body) = conn.get("/health").unwrap_or_else(|e| fail(&format!("/health: {e}")));
        let total = ms(sent.elapsed());
        if status != 200 {
            fail(&format!("/health with a tcp check answered {status}: {body}"));
        }
        let check = duration_ms(&body).unwrap_or_else(|| fail(&format!("no duration_ms in {body}")));
        if n >= 100 {
            overheads.push(total - check);
            checks.push(check);
            totals.push(total);
        }
    }
    record("overhead_p50_ms", percentile(&mut overheads, 50.0));
    record("overhead_p99_ms", percentile(&mut overheads, 99.0));
    record("tcp_check_ms", percentile(&mut checks, 50.0));
    record("tcp_health_ms", percentile(&mut totals, 50.0));
    daemon.terminate();
}

/// Backend requests for [`BURST`] `/health` requests sent at once.
fn single_flight(bin: &Path, backend: &Backend, record: &mut Record) {
    let mut daemon = Daemon::start(bin, &http_check(backend, "/slow"));
    daemon.first_answer("/livez", |status| status == 200);
    // The run at start-up, then nothing until the 30 s interval.
    thread::sleep(SLOW_BACKEND * 2 + Duration::from_millis(200));
    let conns: Vec<Conn> = (0..BURST).map(|_| Conn::open(daemon.addr)).collect();
    thread::sleep(Duration::from_millis(100));
    let before = backend.requests.load(Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(BURST));
    let clients: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                conn.get("/health").map(|(status, _)| status)
            })
        })
        .collect();
    for client in clients {
        match client.join().expect("client thread") {
            Ok(200) => {}
            Ok(status) => fail(&format!("a /health of the burst answered {status}")),
            Err(e) => fail(&format!("a /health of the burst failed: {e}")),
        }
    }
    record("backend_per_100", (backend.requests.load(Ordering::SeqCst) - before) as f64);
    daemon.terminate();
}

/// One run of the side-by-side: kubernary with one `tcp` check of `target`
/// and blackbox_exporter probing the same `target`, under the same wrk load,
/// taking turns: the first binary, blackbox, then the other binaries.
/// blackbox starts first, so that its idle RSS is read after it has sat idle
/// while the first binary was measured, as kubernary's is after 5 s.
fn versus<'a>(opts: &'a Opts, blackbox: Option<&Blackbox>, target: &Target, results: &mut Results<'a>) {
    let mut theirs = blackbox.map(|blackbox| {
        let started = Instant::now();
        let mut daemon = blackbox.start();
        let first = daemon.first_answer("/-/healthy", |status| status == 200);
        results.entry((BLACKBOX, "livez_ms")).or_default().push(ms(first.duration_since(started)));
        (daemon, started)
    });
    for (name, bin) in &opts.bins {
        let tcp = [
            ("KUBERNARY_CHECKS", "port=tcp".to_string()),
            ("KUBERNARY_PORT_ADDRESS", target.addr.to_string()),
        ];
        let mut daemon = Daemon::start(bin, &tcp);
        daemon.first_answer("/health", |status| status == 200);
        thread::sleep(Duration::from_millis(200));
        let url = format!("http://{}/health", daemon.addr);
        let mut record = |key: &'static str, value: f64| {
            results.entry((name.as_str(), key)).or_default().push(value);
        };
        under_load(&daemon, &url, &opts.wrk, &mut record);
        daemon.terminate();
        if let Some((mut daemon, started)) = theirs.take() {
            let mut record = |key: &'static str, value: f64| {
                results.entry((BLACKBOX, key)).or_default().push(value);
            };
            sleep_until(started + IDLE_RSS_AT);
            let status = daemon.status();
            record("idle_rss", status.kib("VmRSS") / 1024.0);
            record("idle_anon", status.kib("RssAnon") / 1024.0);
            record("threads", status.kib("Threads"));
            let url = format!("http://{}/probe?module=tcp_connect&target={}", daemon.addr, target.addr);
            under_load(&daemon, &url, &opts.wrk, &mut record);
            daemon.terminate();
        }
    }
}

/// wrk with 50 connections for 10 s on `url`, while a sampler watches the
/// daemon's threads; the figures of the side-by-side.
fn under_load(daemon: &Daemon, url: &str, wrk: &str, record: &mut Record) {
    let before = stat_cpu(daemon.pid());
    let sampler = Sampler::start(daemon.pid());
    let wrk = run_wrk(wrk, url);
    let threads = sampler.stop();
    let cpu = stat_cpu(daemon.pid()) - before;
    let status = daemon.status();
    record("tcp_rps", wrk.requests / f64::from(LOAD_SECONDS));
    record("tcp_cpu_per_req_us", cpu.as_secs_f64() * 1e6 / wrk.requests);
    record("tcp_threads_peak", threads);
    record("tcp_rss_peak", status.kib("VmHWM") / 1024.0);
    record("tcp_p99_ms", wrk.p99_ms);
    record("tcp_errors", wrk.errors as f64);
}

fn run_wrk(wrk: &str, url: &str) -> Wrk {
    let output = Command::new(wrk)
        .args(["-t2", &format!("-c{LOAD_CONNECTIONS}"), &format!("-d{LOAD_SECONDS}s")])
        .args(["--latency", "--timeout", "5s", url])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {wrk}: {e} (make bench-deps installs it)")));
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        fail(&format!("wrk failed: {}\n{text}", String::from_utf8_lossy(&output.stderr)));
    }
    Wrk::parse(&text).unwrap_or_else(|| fail(&format!("cannot read wrk's output:\n{text}")))
}

/// The most threads a process had, sampled from `/proc/PID/status` every
/// [`SAMPLE_EVERY`] on a thread of its own until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<f64>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let mut peak = 0.0f64;
            while !stopped.load(Ordering::Relaxed) {
                let threads = ProcStatus(std::fs::read_to_string(&path).unwrap_or_default()).kib("Threads");
                if threads.is_finite() {
                    peak = peak.max(threads);
                }
                thread::sleep(SAMPLE_EVERY);
            }
            peak
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

/// CPU time of a process as `/proc/PID/stat` has it: utime + stime, in
/// clock ticks. Coarser than the per-process clock (10 ms at 100 Hz), but
/// what any process of any language shows, so both columns read it alike.
fn stat_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks(&stat, hz)
}

/// utime + stime of a `/proc/PID/stat` line at `hz` ticks per second. The
/// command name in parentheses may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn ticks(stat: &str, hz: libc::c_long) -> Duration {
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are 11 and 12.
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_nanos(ticks * 1_000_000_000 / hz.max(1) as u64)
}

/// Ten minutes (or `duration`) at one check and one `/health` per second.
fn soak(name: &str, bin: &Path, backend: &Backend, duration: Duration) {
    let mut env = http_check(backend, "/");
    env.push(("KUBERNARY_WEB_INTERVAL", "1s".into()));
    let started = Instant::now();
    let mut daemon = Daemon::start(bin, &env);
    println!(
        "soak: {name} ({}), {} s, one check and one /health per second",
        bin.display(),
        duration.as_secs()
    );
    println!("soak: {}", machine());
    println!(
        "{:>6}  {:>9}  {:>9}  {:>9}  {:>7}  {:>4}  {:>8}",
        "t (s)", "RSS KiB", "anon KiB", "HWM KiB", "threads", "fds", "/health"
    );
    let mut answered = 0u64;
    let mut first: Option<(f64, f64)> = None;
    let mut last = (0.0, 0.0);
    let mut next = started;
    let mut next_print = started + Duration::from_secs(10);
    loop {
        next += Duration::from_secs(1);
        sleep_until(next);
        // A kubelet probe: a fresh connection every time.
        if let Ok((200, _)) = Conn::open(daemon.addr).get("/health") {
            answered += 1;
        }
        let now = Instant::now();
        let done = now.duration_since(started) >= duration;
        if now >= next_print || done {
            next_print += Duration::from_secs(60);
            let status = daemon.status();
            let (rss, anon) = (status.kib("VmRSS"), status.kib("RssAnon"));
            let fds = std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).map_or(0, |d| d.count());
            println!(
                "{:>6}  {rss:>9}  {anon:>9}  {:>9}  {:>7}  {fds:>4}  {answered:>8}",
                now.duration_since(started).as_secs(),
                status.kib("VmHWM"),
                status.kib("Threads")
            );
            first.get_or_insert((rss, anon));
            last = (rss, anon);
        }
        if done {
            break;
        }
    }
    let (rss0, anon0) = first.unwrap_or_default();
    println!(
        "soak: RSS {rss0} KiB at start (10 s), {} KiB at the end: {:+} KiB; anonymous {anon0} -> {} KiB: {:+} KiB",
        last.0,
        last.0 - rss0,
        last.1,
        last.1 - anon0
    );
    daemon.terminate();
}

// ---------------------------------------------------------------------------
// The table.

struct Row {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    decimals: usize,
    goal: Option<Goal>,
}

#[derive(Clone, Copy)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtMost(limit) => value <= limit,
            Goal::AtLeast(limit) => value >= limit,
        }
    }

    fn text(self, unit: &str) -> String {
        let (sign, limit) = match self {
            Goal::AtMost(limit) => ("≤", limit),
            Goal::AtLeast(limit) => ("≥", limit),
        };
        if unit.is_empty() {
            format!("{sign} {limit}")
        } else if unit == "×" {
            format!("{sign} {limit}×")
        } else {
            format!("{sign} {limit} {unit}")
        }
    }
}

const ROWS: &[Row] = &[
    Row {
        key: "size",
        label: "binary size (stripped)",
        unit: "MiB",
        decimals: 2,
        goal: Some(Goal::AtMost(6.0)),
    },
    Row {
        key: "history_kib",
        label: "status-page history, 6 checks × 60 results (heap)",
        unit: "KiB",
        decimals: 1,
        goal: Some(Goal::AtMost(8.0)),
    },
    Row {
        key: "livez_ms",
        label: "exec to first 200 on /livez (blackbox: /-/healthy)",
        unit: "ms",
        decimals: 2,
        goal: Some(Goal::AtMost(5.0)),
    },
    Row { key: "health_ms", label: "exec to first /health answer", unit: "ms", decimals: 2, goal: None },
    Row {
        key: "idle_rss",
        label: "idle RSS after 5 s",
        unit: "MiB",
        decimals: 2,
        goal: Some(Goal::AtMost(4.0)),
    },
    Row {
        key: "idle_anon",
        label: "  of which anonymous (heap, stacks)",
        unit: "MiB",
        decimals: 2,
        goal: None,
    },
    Row { key: "threads", label: "  threads when idle", unit: "", decimals: 0, goal: None },
    Row {
        key: "idle_cpu_ms",
        label: "idle CPU over 10 s",
        unit: "ms",
        decimals: 2,
        goal: Some(Goal::AtMost(10.0)),
    },
    Row {
        key: "idle_wakeups",
        label: "  idle wakeups (context switches)",
        unit: "/s",
        decimals: 1,
        goal: None,
    },
    Row {
        key: "load_rss",
        label: "RSS peak, 10 s of /health at 50 connections",
        unit: "MiB",
        decimals: 2,
        goal: Some(Goal::AtMost(8.0)),
    },
    Row { key: "load_cpu_s", label: "CPU during that load", unit: "s", decimals: 2, goal: None },
    Row { key: "load_cpu_per_req_us", label: "  CPU per /health", unit: "µs", decimals: 0, goal: None },
    Row { key: "rps", label: "/health requests per second", unit: "/s", decimals: 0, goal: None },
    Row {
        key: "load_errors",
        label: "  answers not 200, or socket errors",
        unit: "",
        decimals: 0,
        goal: None,
    },
    Row { key: "p50_ms", label: "/health latency p50 under that load", unit: "ms", decimals: 2, goal: None },
    Row { key: "p99_ms", label: "/health latency p99 under that load", unit: "ms", decimals: 2, goal: None },
    Row {
        key: "overhead_p50_ms",
        label: "/health overhead p50 (tcp check, one at a time)",
        unit: "ms",
        decimals: 3,
        goal: Some(Goal::AtMost(0.5)),
    },
    Row { key: "overhead_p99_ms", label: "/health overhead p99", unit: "ms", decimals: 3, goal: None },
    Row {
        key: "tcp_check_ms",
        label: "  the tcp check's own duration p50",
        unit: "ms",
        decimals: 3,
        goal: None,
    },
    Row {
        key: "backend_per_100",
        label: "backend requests per 100 concurrent /health",
        unit: "",
        decimals: 0,
        goal: None,
    },
    Row { key: "shutdown_ms", label: "shutdown after SIGTERM, idle", unit: "ms", decimals: 2, goal: None },
    Row {
        key: "tcp_rps",
        label: "one tcp check, wrk -c50: /health (blackbox: /probe) per second",
        unit: "/s",
        decimals: 0,
        goal: None,
    },
    Row {
        key: "tcp_ratio",
        label: "  ours ÷ blackbox, run by run",
        unit: "×",
        decimals: 1,
        goal: Some(Goal::AtLeast(10.0)),
    },
    Row {
        key: "tcp_cpu_per_req_us",
        label: "  CPU per answered request (utime+stime)",
        unit: "µs",
        decimals: 0,
        goal: Some(Goal::AtMost(50.0)),
    },
    Row {
        key: "tcp_threads_peak",
        label: "  peak threads at 50 clients",
        unit: "",
        decimals: 0,
        goal: Some(Goal::AtMost(64.0)),
    },
    Row {
        key: "tcp_rss_peak",
        label: "  peak RSS at 50 clients",
        unit: "MiB",
        decimals: 2,
        goal: Some(Goal::AtMost(8.0)),
    },
    Row { key: "tcp_p99_ms", label: "  latency p99", unit: "ms", decimals: 2, goal: None },
    Row {
        key: "tcp_errors",
        label: "  answers not 200, or socket errors",
        unit: "",
        decimals: 0,
        goal: None,
    },
];

fn table(opts: &Opts, machine: &str, blackbox: Option<&Blackbox>, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {machine}.");
    let mut busy: Vec<f64> = opts
        .bins
        .iter()
        .flat_map(|(name, _)| results.get(&(name.as_str(), "others_running")).cloned().unwrap_or_default())
        .collect();
    if !busy.is_empty() {
        busy.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "Other work: {:.1} tasks runnable on average while a daemon sat idle (median of the idle phases, {:.1}–{:.1}).",
            percentile(&mut busy, 50.0),
            busy[0],
            busy[busy.len() - 1]
        );
    }
    let _ = writeln!(
        out,
        "Each figure: median of {} runs (min–max); binaries interleaved run by run; sizes are single values.",
        opts.runs
    );
    let mut columns: Vec<&str> = opts.bins.iter().map(|(name, _)| name.as_str()).collect();
    if let Some(blackbox) = blackbox {
        let _ = writeln!(
            out,
            "{BLACKBOX}: Debian's prometheus-blackbox-exporter {} ({}), module tcp_connect; goals are kubernary's, \
             judged on its columns only.",
            blackbox.version, blackbox.path
        );
        columns.push(BLACKBOX);
    }
    let _ = writeln!(out);
    let mut header = "| figure |".to_string();
    let mut rule = "|---|".to_string();
    for name in &columns {
        let _ = write!(header, " {name} |");
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header} goal |");
    let _ = writeln!(out, "{rule}---|");
    for row in ROWS {
        let mut line = format!("| {} |", row.label);
        for name in &columns {
            let cell = match results.get(&(*name, row.key)) {
                Some(values) if !values.is_empty() => cell(values, row, *name != BLACKBOX),
                _ => "-".to_string(),
            };
            let _ = write!(line, " {cell} |");
        }
        let goal = row.goal.map(|g| g.text(row.unit)).unwrap_or_default();
        let _ = writeln!(out, "{line} {goal} |");
    }
    out
}

/// `median unit (min–max)`, and whether the median meets the row's goal
/// when `judged`.
fn cell(values: &[f64], row: &Row, judged: bool) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = percentile(&mut sorted, 50.0);
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let d = row.decimals;
    let (space, unit) = match row.unit {
        "" => ("", ""),
        "×" => ("", "×"),
        unit => (" ", unit),
    };
    let range = if sorted.len() > 1 { format!(" ({min:.d$}–{max:.d$})") } else { String::new() };
    let mark = match row.goal {
        Some(goal) if judged && goal.met(median) => " met",
        Some(_) if judged => " **missed**",
        _ => "",
    };
    format!("{median:.d$}{space}{unit}{range}{mark}")
}

/// The median for 50: the mean of the two middle values of an even count.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    if p == 50.0 && values.len() % 2 == 0 {
        let mid = values.len() / 2;
        return (values[mid - 1] + values[mid]) / 2.0;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

// ---------------------------------------------------------------------------
// The daemon under test.

fn http_check(backend: &Backend, path: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KUBERNARY_CHECKS", "web=http".into()),
        ("KUBERNARY_WEB_URL", format!("http://{}{path}", backend.addr)),
    ]
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    /// Starts `bin` on a free loopback port with only `env` (and PATH) in its
    /// environment.
    fn start(bin: &Path, env: &[(&'static str, String)]) -> Daemon {
        let addr = free_addr();
        // The log goes to /dev/null, or to BENCH_DAEMON_LOG=file, for a
        // figure that needs explaining: straight to a file either way, so
        // that what is measured is the daemon, not how fast a reader on
        // this busy machine empties a pipe (see README, Performance).
        let log = std::env::var_os("BENCH_DAEMON_LOG")
            .and_then(|path| std::fs::OpenOptions::new().create(true).append(true).open(path).ok())
            .map_or_else(Stdio::null, Stdio::from);
        let mut command = Command::new(bin);
        command
            .args(["--no-stats", "--listen", &addr.to_string()])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().map(|(k, v)| (k, v)))
            // BENCH_DAEMON_ENV="A=1,B=2": extra variables, to try a setting
            // (MALLOC_ARENA_MAX=1, RUST_MIN_STACK=...) without a rebuild.
            .envs(extra_env())
            .stderr(log);
        Daemon::spawn(command, addr)
    }

    /// Starts `command`, whose server will listen on `addr`, as a child that
    /// dies with the driver.
    fn spawn(mut command: Command, addr: SocketAddr) -> Daemon {
        command.stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: prctl in the child between fork and exec, async-signal-safe.
        // The daemon dies with the driver, however the driver ends.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command.spawn().unwrap_or_else(|e| fail(&format!("cannot start {program}: {e}")));
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(child.id());
        Daemon { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks `path` until an answer `accept`s; returns when it did.
    fn first_answer(&mut self, path: &str, accept: impl Fn(u16) -> bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = TcpStream::connect(self.addr).map(Conn::from) {
                if let Ok((status, _)) = conn.get(path) {
                    if accept(status) {
                        return Instant::now();
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                fail(&format!("the daemon exited with {status} before answering {path}"));
            }
            if Instant::now() > deadline {
                fail(&format!("no answer on {path} within 10 s"));
            }
            thread::sleep(Duration::from_micros(100));
        }
    }

    fn status(&self) -> ProcStatus {
        ProcStatus(std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default())
    }

    /// CPU time of the whole process, every thread that ever ran included,
    /// from the kernel's per-process CPU clock (nanoseconds).
    fn cpu(&self) -> Duration {
        let mut clock: libc::clockid_t = 0;
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: plain calls with out-pointers to locals.
        let ok = unsafe {
            libc::clock_getcpuclockid(self.pid() as libc::pid_t, &mut clock) == 0
                && libc::clock_gettime(clock, &mut ts) == 0
        };
        if ok {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
        stat_cpu(self.pid())
    }

    /// Context switches of the threads alive now: each is a wake-up.
    fn switches(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return 0 };
        tasks
            .flatten()
            .map(|task| {
                let status =
                    ProcStatus(std::fs::read_to_string(task.path().join("status")).unwrap_or_default());
                (status.kib("voluntary_ctxt_switches") + status.kib("nonvoluntary_ctxt_switches")) as u64
            })
            .sum()
    }

    /// SIGTERM, then waits for the exit; returns how long that took.
    fn terminate(&mut self) -> Duration {
        let sent = Instant::now();
        // SAFETY: a signal to our own child, which has not been reaped.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the daemon");
        let took = sent.elapsed();
        if !status.success() {
            fail(&format!("the daemon exited with {status} after SIGTERM"));
        }
        took
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|pid| *pid != self.pid());
    }
}

/// Daemons not yet reaped, for [`fail`] to kill: it exits without running
/// destructors.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn extra_env() -> Vec<(String, String)> {
    let text = std::env::var("BENCH_DAEMON_ENV").unwrap_or_default();
    text.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

struct ProcStatus(String);

impl ProcStatus {
    /// A field of /proc/PID/status as a number (`VmRSS:  4836 kB` is 4836).
    fn kib(&self, field: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client, kept alive.

struct Conn(BufReader<TcpStream>);

impl From<TcpStream> for Conn {
    fn from(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        Conn(BufReader::new(stream))
    }
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        Conn::from(TcpStream::connect(addr).unwrap_or_else(|e| fail(&format!("connect to {addr}: {e}"))))
    }

    fn get(&mut self, path: &str) -> io::Result<(u16, String)> {
        write!(self.0.get_mut(), "GET {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n")?;
        let mut line = String::new();
        self.0.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.0.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The `duration_ms` of the first check in a `/health` answer.
fn duration_ms(body: &str) -> Option<f64> {
    let rest = &body[body.find("\"duration_ms\":")? + "\"duration_ms\":".len()..];
    rest[..rest.find([',', '}'])?].trim().parse().ok()
}

// ---------------------------------------------------------------------------
// The local backend the checks reach.

struct Backend {
    addr: SocketAddr,
    /// HTTP requests answered (a tcp check's bare connections not counted).
    requests: Arc<AtomicU64>,
}

impl Backend {
    /// One thread answering one connection at a time: the checks never
    /// reuse connections, and single flight means one run at a time.
    fn start() -> Backend {
        let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind the backend");
        let addr = listener.local_addr().expect("backend address");
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &counter);
            }
        });
        Backend { addr, requests }
    }
}

fn answer(stream: TcpStream, requests: &AtomicU64) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let slow = line.split_whitespace().nth(1) == Some("/slow");
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if slow {
        thread::sleep(SLOW_BACKEND);
    }
    reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
}

/// A loopback port nobody listens on now, for a daemon to bind.
fn free_addr() -> SocketAddr {
    let port = TcpListener::bind((LOOPBACK, 0)).and_then(|l| l.local_addr()).expect("a free port").port();
    format!("{LOOPBACK}:{port}").parse().expect("address")
}

/// What the `tcp` check and blackbox's `tcp_connect` both reach: a loopback
/// listener that accepts and closes, on a thread of its own.
struct Target {
    addr: SocketAddr,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind the tcp target");
        let addr = listener.local_addr().expect("tcp target address");
        thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        Target { addr }
    }
}

// ---------------------------------------------------------------------------
// The other program: Debian's prometheus-blackbox-exporter.

/// blackbox_exporter's configuration: the `tcp_connect` module of its
/// example configuration, on IPv4 (the target is 127.0.0.1).
const BLACKBOX_CONFIG: &str = "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n";

struct Blackbox {
    path: String,
    config: PathBuf,
    /// `0.23.0`, from `--version`.
    version: String,
}

impl Blackbox {
    fn new(path: &str) -> Blackbox {
        let output = Command::new(path).arg("--version").output().unwrap_or_else(|e| {
            fail(&format!(
                "cannot run {path}: {e} (make bench-deps installs it; --blackbox none leaves it out)"
            ))
        });
        // Older releases print the version on stderr, newer on stdout.
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let version = blackbox_version(&text).unwrap_or_else(|| "(version unknown)".into());
        let config =
            std::env::temp_dir().join(format!("kubernary-bench-blackbox-{}.yml", std::process::id()));
        std::fs::write(&config, BLACKBOX_CONFIG)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", config.display())));
        Blackbox { path: path.to_string(), config, version }
    }

    fn start(&self) -> Daemon {
        let addr = free_addr();
        let mut command = Command::new(&self.path);
        command
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=error")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stderr(Stdio::null());
        Daemon::spawn(command, addr)
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// `0.23.0` from `blackbox_exporter, version 0.23.0 (branch: ...)`.
fn blackbox_version(text: &str) -> Option<String> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let version = rest.split_whitespace().next()?;
    Some(version.to_string())
}

// ---------------------------------------------------------------------------
// wrk's output.

struct Wrk {
    requests: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Non-2xx answers and socket errors.
    errors: u64,
}

impl Wrk {
    fn parse(text: &str) -> Option<Wrk> {
        let mut wrk = Wrk { requests: f64::NAN, p50_ms: f64::NAN, p99_ms: f64::NAN, errors: 0 };
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["50%", v] => wrk.p50_ms = wrk_ms(v)?,
                ["99%", v] => wrk.p99_ms = wrk_ms(v)?,
                [n, "requests", "in", ..] => wrk.requests = n.parse().ok()?,
                ["Non-2xx", "or", "3xx", "responses:", n] => wrk.errors += n.parse::<u64>().ok()?,
                ["Socket", "errors:", rest @ ..] => {
                    wrk.errors +=
                        rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>()
                }
                _ => {}
            }
        }
        (wrk.requests.is_finite() && wrk.p50_ms.is_finite() && wrk.p99_ms.is_finite()).then_some(wrk)
    }
}

/// `383.00us`, `1.20ms`, `2.00s` in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        "m" => Some(number * 60_000.0),
        _ => None,
    }
}

// ---------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    for pid in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: a signal to a child of ours that has not been reaped.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk() {
        let text = "Running 10s test @ http://127.0.0.1:1/health
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.50ms  300.00us   8.00ms   90.00%
  Latency Distribution
     50%  383.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.50s
  123456 requests in 10.00s, 50.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  12345.60
";
        let wrk = Wrk::parse(text).unwrap();
        assert_eq!(wrk.requests, 123456.0);
        assert_eq!(wrk.p50_ms, 0.383);
        assert_eq!(wrk.p99_ms, 2500.0);
        assert_eq!(wrk.errors, 3);
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(percentile(&mut [3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&mut [4.0, 1.0, 2.0, 3.0], 50.0), 2.5);
        let mut hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut hundred, 99.0), 99.0);
    }

    #[test]
    fn reads_cpu_ticks_past_an_awkward_name() {
        // Fields 14 and 15 (utime, stime) are 70 and 30; the name holds
        // a space and a `)`, as a process may call itself.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 70 30 0 0 20 0 3 0 5 1000 200";
        assert_eq!(ticks(stat, 100), Duration::from_secs(1));
        assert_eq!(ticks(stat, 1000), Duration::from_millis(100));
        assert_eq!(ticks("", 100), Duration::ZERO);
    }

    #[test]
    fn reads_blackbox_version() {
        let text = "blackbox_exporter, version 0.23.0 (branch: debian/sid, revision: 0.23.0-4+b4)\n  build user: x\n";
        assert_eq!(blackbox_version(text).as_deref(), Some("0.23.0"));
        assert_eq!(blackbox_version("nothing here"), None);
    }

    #[test]
    fn ratios_pair_runs() {
        let mut results: Results = BTreeMap::new();
        results.insert(("static", "tcp_rps"), vec![100.0, 300.0, 50.0]);
        results.insert((BLACKBOX, "tcp_rps"), vec![10.0, 20.0]);
        assert_eq!(ratios(&results, "static", "tcp_rps"), vec![10.0, 15.0]);
        assert!(ratios(&results, "release", "tcp_rps").is_empty());
    }

    #[test]
    fn goals_judge_our_columns_only() {
        let ratio = ROWS.iter().find(|r| r.key == "tcp_ratio").unwrap();
        assert_eq!(cell(&[9.0, 12.0, 11.0], ratio, true), "11.0× (9.0–12.0) met");
        assert_eq!(cell(&[9.0], ratio, true), "9.0× **missed**");
        assert_eq!(cell(&[9.0], ratio, false), "9.0×");
        let threads = ROWS.iter().find(|r| r.key == "tcp_threads_peak").unwrap();
        assert_eq!(cell(&[65.0], threads, true), "65 **missed**");
        assert_eq!(threads.goal.unwrap().text(threads.unit), "≤ 64");
        assert_eq!(ratio.goal.unwrap().text(ratio.unit), "≥ 10×");
    }

    #[test]
    fn parses_blackbox_option() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter();
        let bin = format!("x={}", std::env::current_exe().unwrap().display());
        let opts = Opts::parse(args(&["--bin", &bin])).unwrap();
        assert_eq!(opts.blackbox.as_deref(), Some("prometheus-blackbox-exporter"));
        let opts = Opts::parse(args(&["--blackbox", "none", "--bin", &bin])).unwrap();
        assert_eq!(opts.blackbox, None);
    }

    #[test]
    fn reads_procs_running() {
        let stat = "cpu  1 2 3\nctxt 99\nprocs_running 7\nprocs_blocked 0\n";
        assert_eq!(procs_running(stat), Some(7));
        assert_eq!(procs_running("cpu 1\n"), None);
    }

    #[test]
    fn reads_duration() {
        assert_eq!(duration_ms(r#"{"port":{"duration_ms":0.2,"error":""}}"#), Some(0.2));
    }
}
