//! Load on a kubernary, by hand: `make load`, or
//!
//! ```sh
//! cargo build --release && cargo run --release --example load -- [options]
//! ```
//!
//! Without `--target`, it starts a backend on loopback that counts the
//! requests it gets (answering after `--backend-delay`) and a kubernary
//! (`--daemon`, default: the `kubernary` next to this example's build
//! directory) with one http check against it, then sends `--requests`
//! GETs of `--path` (`/health`), `--concurrency` at a time, while timing
//! `/livez`, and prints: right and wrong answers, throughput, latency
//! percentiles, backend requests per 100 probes, `/livez` percentiles under
//! the load, and the daemon's peak threads and RSS. With `--target
//! HOST:PORT` it loads a kubernary that is already running (loopback only)
//! and prints what it can see from outside.
//!
//! Options: `--requests N` (3000), `--concurrency N` (100), `--path P`
//! (`/health`), `--backend-delay MS` (0), `--daemon PATH`, `--target ADDR`.
//! Plain std threads; nothing to install.

#[path = "../tests/support/load.rs"]
mod load;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Options {
    requests: usize,
    concurrency: usize,
    path: String,
    backend_delay: Duration,
    daemon: Option<PathBuf>,
    target: Option<SocketAddr>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        requests: 3000,
        concurrency: 100,
        path: "/health".into(),
        backend_delay: Duration::ZERO,
        daemon: None,
        target: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--requests" => o.requests = number(value()?)? as usize,
            "--concurrency" => o.concurrency = number(value()?)?.max(1) as usize,
            "--path" => o.path = value()?,
            "--backend-delay" => o.backend_delay = Duration::from_millis(number(value()?)?),
            "--daemon" => o.daemon = Some(PathBuf::from(value()?)),
            "--target" => {
                let v = value()?;
                let addr: SocketAddr = v.parse().map_err(|_| format!("--target: {v:?} is not IP:PORT"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!("--target: {addr} is not a loopback address"));
                }
                o.target = Some(addr);
            }
            "-h" | "--help" => {
                println!("usage: load [--requests N] [--concurrency N] [--path P] [--backend-delay MS] [--daemon PATH | --target 127.0.0.1:PORT]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    Ok(o)
}

/// The kubernary built beside this example (`target/<profile>/kubernary`).
fn default_daemon() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent().and_then(|examples| examples.parent()).map(|dir| dir.join("kubernary")).unwrap_or_default()
}

/// The daemon under test, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(bin: &PathBuf, backend: &load::CountingBackend) -> Result<(Running, SocketAddr), String> {
    let port =
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(bin)
        .args(["--no-stats", "--listen", &addr.to_string()])
        .env_clear()
        .env("RES_OPTIONS", "attempts:0")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KUBERNARY_CHECKS", "web=http")
        .env("KUBERNARY_WEB_URL", backend.url("/healthz"))
        .env("KUBERNARY_WEB_INTERVAL", "1h")
        .env("KUBERNARY_WEB_TIMEOUT", "5s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e} (build it first: cargo build --release)", bin.display()))?;
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(load::get(addr, "/health"), Ok((200, _))) {
            return Ok((running, addr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{} did not answer a passing /health on {addr} within 10s", bin.display()))
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    };
    // Only for a daemon of our own: a running one has its own checks.
    let backend = o.target.is_none().then(|| load::CountingBackend::start(o.backend_delay));
    let (_running, addr, pid) = match o.target {
        Some(addr) => (None, addr, None),
        None => {
            let bin = o.daemon.clone().unwrap_or_else(default_daemon);
            let backend = backend.as_ref().expect("a backend without --target");
            match start_daemon(&bin, backend) {
                Ok((running, addr)) => {
                    let pid = running.0.id();
                    println!(
                        "kubernary {} on {addr}, one http check against {}",
                        bin.display(),
                        backend.url("/healthz")
                    );
                    (Some(running), addr, Some(pid))
                }
                Err(e) => {
                    eprintln!("load: {e}");
                    std::process::exit(1);
                }
            }
        }
    };
    let before = backend.as_ref().map_or(0, |b| b.count());
    let idle = pid.map(load::proc_threads_rss);
    let stop = AtomicBool::new(false);
    let judge =
        |status: u16, body: &str| status == 200 && (o.path != "/health" || body.contains("\"ok\":true"));
    let (report, (livez, livez_failed), peak) = std::thread::scope(|s| {
        let livez = s.spawn(|| load::probe_until(addr, "/livez", Duration::from_millis(5), &stop));
        let peak = s.spawn(|| pid.map(|pid| load::peak_until(pid, &stop)));
        let report = load::run(addr, &o.path, o.requests, o.concurrency, &judge);
        stop.store(true, Ordering::SeqCst);
        (report, livez.join().unwrap(), peak.join().unwrap())
    });
    println!(
        "{} GET {} at concurrency {} in {:.2} s: {:.0} per second",
        o.requests,
        o.path,
        o.concurrency,
        report.elapsed.as_secs_f64(),
        report.per_second()
    );
    println!("  right {}, wrong {}, no answer {}", report.right, report.wrong, report.errors);
    for example in &report.examples {
        println!("    e.g. {example}");
    }
    println!("  latency: {}", load::summary(&report.latencies));
    println!("  /livez meanwhile ({} probes, {livez_failed} failed): {}", livez.len(), load::summary(&livez));
    if let Some(backend) = &backend {
        let backend_requests = backend.count() - before;
        println!(
            "  backend requests: {backend_requests} ({:.1} per 100 probes; backend delay {} ms)",
            backend_requests as f64 * 100.0 / o.requests.max(1) as f64,
            o.backend_delay.as_millis()
        );
    }
    if let (Some((idle_threads, idle_rss)), Some((threads, rss))) = (idle, peak) {
        println!(
            "  daemon threads {idle_threads} idle, {threads} peak; RSS {idle_rss} KiB idle, {rss} KiB peak"
        );
    }
    if report.wrong + report.errors > 0 {
        std::process::exit(1);
    }
}
