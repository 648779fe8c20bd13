//! Load for kubernary, in plain std threads: a backend that counts the
//! requests it gets, a closed-loop load generator, and a prober that times
//! one endpoint while the load runs. tests/load.rs uses it through
//! `support`, and examples/load.rs includes this file as it is, so the
//! figures in the README and the tests' come from the same code.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An HTTP backend on 127.0.0.1 that answers every request `200 ok` after
/// `delay`, thread per connection, and counts the requests.
pub struct CountingBackend {
    addr: SocketAddr,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingBackend {
    pub fn start(delay: Duration) -> CountingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind counting backend");
        let addr = listener.local_addr().expect("counting backend addr");
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopping) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = conn else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || answer(stream, &counter, delay));
            }
        });
        CountingBackend { addr, count, stop, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for CountingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(stream: TcpStream, count: &AtomicUsize, delay: Duration) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    let mut lines = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim_end().is_empty() && lines > 0 => break,
            Ok(_) => lines += 1,
        }
    }
    count.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(delay);
    let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
}

/// One GET with `Connection: close`: status and body, or why not.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((status, body.to_string()))
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Report {
    pub requests: usize,
    /// Answers the judge accepted.
    pub right: usize,
    /// Answers it did not, and requests that got no answer; the first few
    /// kept as examples.
    pub wrong: usize,
    pub errors: usize,
    pub examples: Vec<String>,
    /// Per answered request, sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Report {
    /// The `p`th percentile (0-100) of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `requests` GETs of `path`, `concurrency` at a time (each client sends
/// its next as soon as its last is answered); `judge` says whether an
/// answer is right.
pub fn run(
    addr: SocketAddr,
    path: &str,
    requests: usize,
    concurrency: usize,
    judge: &(dyn Fn(u16, &str) -> bool + Sync),
) -> Report {
    let next = AtomicUsize::new(0);
    let report = Mutex::new(Report { requests, ..Report::default() });
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                let mut latencies = Vec::new();
                let (mut right, mut wrong, mut errors, mut examples) = (0, 0, 0, Vec::new());
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let t0 = Instant::now();
                    match get(addr, path) {
                        Ok((status, body)) => {
                            latencies.push(t0.elapsed());
                            if judge(status, &body) {
                                right += 1;
                            } else {
                                wrong += 1;
                                examples.push(format!("{status} {body}"));
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            examples.push(e);
                        }
                    }
                }
                let mut r = report.lock().unwrap();
                r.right += right;
                r.wrong += wrong;
                r.errors += errors;
                r.latencies.extend(latencies);
                r.examples.extend(examples.into_iter().take(5));
            });
        }
    });
    let mut report = report.into_inner().unwrap();
    report.elapsed = began.elapsed();
    report.latencies.sort();
    report.examples.truncate(10);
    report
}

/// GETs `path` every `every` until `stop`; the latencies, sorted, and how
/// many got no 200.
pub fn probe_until(
    addr: SocketAddr,
    path: &str,
    every: Duration,
    stop: &AtomicBool,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut failed = 0;
    while !stop.load(Ordering::SeqCst) {
        let t0 = Instant::now();
        match get(addr, path) {
            Ok((200, _)) => latencies.push(t0.elapsed()),
            _ => failed += 1,
        }
        std::thread::sleep(every);
    }
    latencies.sort();
    (latencies, failed)
}

/// Threads and resident KiB of process `pid`, from /proc.
pub fn proc_threads_rss(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// Samples `pid` every 50 ms until `stop`: peak threads and peak RSS (KiB).
pub fn peak_until(pid: u32, stop: &AtomicBool) -> (usize, usize) {
    let (mut threads, mut rss) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        let (t, r) = proc_threads_rss(pid);
        threads = threads.max(t);
        rss = rss.max(r);
        std::thread::sleep(Duration::from_millis(50));
    }
    (threads, rss)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// `p50 1.2 ms, p99 3.4 ms, max 5.6 ms`.
pub fn summary(sorted: &[Duration]) -> String {
    format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        ms(percentile(sorted, 50.0)),
        ms(percentile(sorted, 90.0)),
        ms(percentile(sorted, 99.0)),
        ms(sorted.last().copied().unwrap_or_default())
    )
}
