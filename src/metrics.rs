//! statsd metrics through cadence, sent so that statsd can never slow a check.
//!
//! cadence's own UDP sink resolves the address once, when it is built, and
//! fails if it does not resolve. Ours hands each line to a bounded channel
//! (never blocking: a full channel drops the line and counts it) and one
//! thread sends them, resolving the address when it first can and again from
//! time to time, so a statsd that comes up later, or moves, gets metrics.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cadence::{Counted, MetricSink, NopMetricSink, StatsdClient, Timed};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use log::{debug, info, warn};

use crate::prometheus::{Observation, Registry};
use crate::record::{Record, Sink};

/// Re-resolve a working address this often, to follow a moved statsd.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// After a failed resolution, wait this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Lines waiting to be sent; beyond this they are dropped.
const QUEUE: usize = 1024;

pub struct Metrics {
    statsd: StatsdClient,
    /// With tags on, failure counters also carry the reason as a tag.
    tagged: bool,
    pub prometheus: Registry,
}

impl Metrics {
    /// Metrics to `statsd` (`host:port`), or to nowhere, named
    /// `<prefix>.<check>.<verb>.<metric>`, with `tags` (DogStatsD) on each.
    pub fn new(statsd: Option<&str>, prefix: &str, tags: &[(String, String)]) -> Metrics {
        let mut builder = match statsd {
            Some(address) => StatsdClient::builder(prefix, ChannelSink::start(address.to_string())),
            None => StatsdClient::builder(prefix, NopMetricSink),
        };
        for (key, value) in tags {
            builder = builder.with_tag(key, value);
        }
        let statsd = builder.with_error_handler(|e| debug!("statsd: {e}")).build();
        Metrics { statsd, tagged: !tags.is_empty(), prometheus: Registry::default() }
    }
}

impl Sink for Metrics {
    /// Counts one settled run: `<check>.<verb>.succeeded|failed` and
    /// `.duration` (ms) to statsd, and the Prometheus series.
    fn settled(&self, r: &Record) {
        let (check, verb) = (&r.check, r.verb);
        match r.reason() {
            None => {
                let _ = self.statsd.count(&format!("{check}.{verb}.succeeded"), 1);
            }
            Some(reason) => {
                let key = format!("{check}.{verb}.failed");
                let counter = self.statsd.count_with_tags(&key, 1);
                let counter = if self.tagged { counter.with_tag("reason", reason) } else { counter };
                let _ = counter.try_send();
            }
        }
        let _ = self.statsd.time(&format!("{check}.{verb}.duration"), r.duration);
        self.prometheus.observe(&Observation {
            check,
            kind: &r.kind,
            reported_ok: r.verdict.ok,
            failure_reason: r.reason(),
            duration: r.duration,
            last_success: r.verdict.last_success,
            consecutive_failures: r.verdict.consecutive_failures,
        });
    }
}

/// A cadence sink that queues lines for the sender thread.
struct ChannelSink {
    lines: Sender<String>,
    dropped: Arc<AtomicU64>,
}

impl ChannelSink {
    fn start(address: String) -> ChannelSink {
        let (lines, queue) = bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let spawned = thread::Builder::new()
            .name("statsd".into())
            .stack_size(128 * 1024)
            .spawn(move || Courier::new(address, counter).run(queue));
        if let Err(e) = spawned {
            warn!("statsd: cannot start the sender thread, metrics are off: {e}");
        }
        ChannelSink { lines, dropped }
    }
}

impl MetricSink for ChannelSink {
    fn emit(&self, metric: &str) -> io::Result<usize> {
        match self.lines.try_send(metric.to_string()) {
            Ok(()) => Ok(metric.len()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(0)
            }
        }
    }
}

/// The sender thread's state.
struct Courier {
    address: String,
    socket: Option<UdpSocket>,
    target: Option<SocketAddr>,
    next_resolve: Instant,
    dropped: Arc<AtomicU64>,
    /// Whether the last problem was already logged, so a statsd that stays
    /// down costs one warning, not one per metric.
    warned: bool,
}

impl Courier {
    fn new(address: String, dropped: Arc<AtomicU64>) -> Courier {
        Courier { address, socket: None, target: None, next_resolve: Instant::now(), dropped, warned: false }
    }

    fn run(mut self, queue: Receiver<String>) {
        for line in queue {
            self.send(&line);
        }
    }

    fn send(&mut self, line: &str) {
        if self.socket.is_none() || Instant::now() >= self.next_resolve {
            self.resolve();
        }
        let (Some(target), Some(socket)) = (self.target, self.socket.as_ref()) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match socket.send(line.as_bytes()) {
            Ok(_) => {
                if self.warned {
                    info!("statsd: sending to {} ({target}) again", self.address);
                    self.warned = false;
                }
            }
            Err(e) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                let message = format!("cannot send to {} ({target}): {e}", self.address);
                self.warn(message);
                // Refused (statsd is down or moved) or worse: start afresh
                // with a new socket and a new lookup, soon but not at once.
                self.socket = None;
                self.next_resolve = Instant::now() + RETRY_AFTER;
            }
        }
    }

    fn resolve(&mut self) {
        if self.socket.is_none() && Instant::now() < self.next_resolve {
            return; // waiting out RETRY_AFTER after a failure
        }
        let found = self.address.to_socket_addrs().map(|mut addrs| addrs.next());
        let target = match found {
            Ok(Some(target)) => target,
            Ok(None) => {
                let message =
                    format!("{} resolves to no address; metrics are dropped until it does", self.address);
                self.warn(message);
                self.next_resolve = Instant::now() + RETRY_AFTER;
                return;
            }
            Err(e) => {
                // Keep a socket that works: a DNS blip should not stop metrics.
                let message =
                    format!("cannot resolve {}: {e}; metrics are dropped until it resolves", self.address);
                self.warn(message);
                self.next_resolve = Instant::now() + RETRY_AFTER;
                return;
            }
        };
        if self.target != Some(target) || self.socket.is_none() {
            if self.target != Some(target) {
                debug!("statsd: {} is {target}", self.address);
            }
            // A connected socket learns of refusals (ICMP) on its next send.
            let bind: SocketAddr =
                if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let socket = UdpSocket::bind(bind).and_then(|s| {
                s.connect(target)?;
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match socket {
                Ok(socket) => self.socket = Some(socket),
                Err(e) => self.warn(format!("cannot open a UDP socket to {target}: {e}")),
            }
        }
        self.target = Some(target);
        self.next_resolve = Instant::now() + RESOLVE_EVERY;
    }

    fn warn(&mut self, message: String) {
        if !self.warned {
            warn!("statsd: {message} ({} dropped so far)", self.dropped.load(Ordering::Relaxed));
            self.warned = true;
        }
    }
}
