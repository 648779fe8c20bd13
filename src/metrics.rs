//! statsd metrics through cadence, sent so that statsd can never slow a check.
//!
//! cadence's own UDP sink resolves the address once, when it is built, and
//! fails if it does not resolve. Ours hands each line to a bounded channel
//! (never blocking: a full channel drops the line and counts it) and one
//! thread sends them, resolving the address when it first can and again from
//! time to time, so a statsd that comes up later, or moves, gets metrics.
//! Every address the name resolves to is tried in turn while the ones before
//! it refuse, and a full socket buffer costs one datagram (counted), never
//! the socket.

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
            phases: phases(r),
            tls_expires: tls_expires(r),
        });
    }
}

/// The record's `phases_ms` note (`contract::PHASES`, named here as
/// metrics does not import the contract), in seconds.
fn phases(r: &Record) -> Vec<(&str, f64)> {
    let Some((_, serde_json::Value::Object(phases))) = r.notes.iter().find(|(k, _)| *k == "phases_ms") else {
        return Vec::new();
    };
    phases.iter().filter_map(|(phase, ms)| Some((phase.as_str(), ms.as_f64()? / 1000.0))).collect()
}

/// The record's `tls_expires` note (`contract::TLS_EXPIRES`), in Unix
/// seconds.
fn tls_expires(r: &Record) -> Option<f64> {
    let (_, value) = r.notes.iter().find(|(k, _)| *k == "tls_expires")?;
    let at = crate::clock::parse_rfc3339(value.as_str()?)?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as f64)
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
    /// What `address` resolved to, in the resolver's order.
    targets: Vec<SocketAddr>,
    /// The target in use: the first, until one refuses.
    at: usize,
    /// Connected to `targets[at]`, opened when first needed.
    socket: Option<UdpSocket>,
    /// Sends in a row the socket took: a refusal shows only on the send
    /// after the refused one, so statsd is back only after two.
    sent_in_a_row: u32,
    /// Every address refused: lines are dropped until then.
    paused_until: Instant,
    next_resolve: Instant,
    dropped: Arc<AtomicU64>,
    /// Whether the last problem was already logged, so a statsd that stays
    /// down costs one warning, not one per metric.
    warned: bool,
}

/// What to do after a send failed.
#[derive(Debug, PartialEq, Eq)]
enum AfterError {
    /// The socket's buffer is full: this datagram is lost, the socket is fine.
    Lost,
    /// Nothing listens at this address (a refusal the kernel learnt of from
    /// an earlier datagram): the line goes to the next address.
    NextAddress,
    /// Anything else: start afresh with a new socket and lookup, soon.
    Reset,
}

fn after_error(err: &io::Error) -> AfterError {
    match err.kind() {
        io::ErrorKind::WouldBlock => AfterError::Lost,
        io::ErrorKind::ConnectionRefused => AfterError::NextAddress,
        _ => AfterError::Reset,
    }
}

impl Courier {
    fn new(address: String, dropped: Arc<AtomicU64>) -> Courier {
        Courier {
            address,
            targets: Vec::new(),
            at: 0,
            socket: None,
            sent_in_a_row: 0,
            paused_until: Instant::now(),
            next_resolve: Instant::now(),
            dropped,
            warned: false,
        }
    }

    fn run(mut self, queue: Receiver<String>) {
        for line in queue {
            self.send(&line);
        }
    }

    fn send(&mut self, line: &str) {
        let now = Instant::now();
        if now >= self.next_resolve {
            self.resolve();
        }
        if now < self.paused_until {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Each address at most once per line: a name that resolves to an
        // IPv6 address first while statsd listens on IPv4 only still gets
        // every line but the one that found out.
        for tried in 1..=self.targets.len() {
            let target = self.targets[self.at];
            let Some(socket) = self.socket() else { break };
            let err = match socket.send(line.as_bytes()) {
                Ok(_) => {
                    self.sent_in_a_row += 1;
                    if self.warned && self.sent_in_a_row >= 2 {
                        info!("statsd: sending to {} ({target})", self.address);
                        self.warned = false;
                    }
                    return;
                }
                Err(err) => err,
            };
            match after_error(&err) {
                AfterError::Lost => break,
                AfterError::NextAddress => {
                    self.warn(format!("{} ({target}) refused: {err}", self.address));
                    self.at = (self.at + 1) % self.targets.len();
                    self.socket = None;
                    if tried == self.targets.len() {
                        // Every address refused: statsd is down, or moved.
                        // Try again soon, with a fresh lookup.
                        self.paused_until = Instant::now() + RETRY_AFTER;
                        self.next_resolve = self.paused_until;
                    }
                }
                AfterError::Reset => {
                    self.warn(format!("cannot send to {} ({target}): {err}", self.address));
                    self.socket = None;
                    self.next_resolve = Instant::now() + RETRY_AFTER;
                    break;
                }
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The socket to the target in use, opened if need be.
    fn socket(&mut self) -> Option<&UdpSocket> {
        if self.socket.is_none() {
            let target = *self.targets.get(self.at)?;
            self.sent_in_a_row = 0;
            // A connected socket learns of refusals (ICMP) on its next send.
            let bind: SocketAddr =
                if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let opened = UdpSocket::bind(bind).and_then(|s| {
                s.connect(target)?;
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match opened {
                Ok(socket) => self.socket = Some(socket),
                Err(e) => self.warn(format!("cannot open a UDP socket to {target}: {e}")),
            }
        }
        self.socket.as_ref()
    }

    fn resolve(&mut self) {
        let found: Result<Vec<SocketAddr>, String> = match self.address.to_socket_addrs() {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(format!("cannot resolve {}: {e}", self.address)),
        };
        match found {
            Ok(targets) if !targets.is_empty() => {
                if targets != self.targets {
                    debug!("statsd: {} is {targets:?}", self.address);
                    self.targets = targets;
                    self.at = 0;
                    self.socket = None;
                }
                self.next_resolve = Instant::now() + RESOLVE_EVERY;
            }
            // Keep addresses that work: a DNS blip should not stop metrics.
            Ok(_) => self.failed_to_resolve(format!("{} resolves to no address", self.address)),
            Err(message) => self.failed_to_resolve(message),
        }
    }

    fn failed_to_resolve(&mut self, message: String) {
        let kept = if self.targets.is_empty() {
            "metrics are dropped until it does"
        } else {
            "sending to the last address it had"
        };
        self.warn(format!("{message}; {kept}"));
        self.next_resolve = Instant::now() + RETRY_AFTER;
    }

    fn warn(&mut self, message: String) {
        if !self.warned {
            warn!("statsd: {message} ({} dropped so far)", self.dropped.load(Ordering::Relaxed));
            self.warned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_loses_one_datagram_and_keeps_the_socket() {
        assert_eq!(after_error(&io::Error::from(io::ErrorKind::WouldBlock)), AfterError::Lost);
        assert_eq!(after_error(&io::Error::from(io::ErrorKind::ConnectionRefused)), AfterError::NextAddress);
        assert_eq!(after_error(&io::Error::from(io::ErrorKind::PermissionDenied)), AfterError::Reset);
    }

    /// A statsd that is down: the line that finds out and those after it,
    /// for RETRY_AFTER, are dropped and counted, with no new socket per line.
    #[test]
    fn every_address_refusing_pauses_the_lines() {
        let refusing = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed at once
        let dropped = Arc::new(AtomicU64::new(0));
        let mut courier = Courier::new("statsd:8125".into(), dropped.clone());
        courier.targets = vec![refusing];
        courier.next_resolve = Instant::now() + Duration::from_secs(3600);
        let mut sent = 0;
        while courier.paused_until <= Instant::now() && sent < 100 {
            courier.send("line");
            sent += 1;
        }
        assert!(courier.paused_until > Instant::now(), "never noticed the refusals");
        let before = dropped.load(Ordering::Relaxed);
        assert!(before >= 1);
        courier.send("line");
        assert_eq!(dropped.load(Ordering::Relaxed), before + 1);
        assert!(courier.socket.is_none(), "no socket is held while paused");
    }

    /// Two addresses, the first refusing: every line after the first
    /// refusal reaches the second, and the lines lost are counted.
    #[test]
    fn a_refusing_first_address_moves_the_lines_to_the_next() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let refusing = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed at once
        let dropped = Arc::new(AtomicU64::new(0));
        let mut courier = Courier::new("statsd:8125".into(), dropped.clone());
        courier.targets = vec![refusing, receiver.local_addr().unwrap()];
        courier.next_resolve = Instant::now() + Duration::from_secs(3600);
        for n in 0..5 {
            courier.send(&format!("line{n}"));
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.last().map(String::as_str) != Some("line4") {
            let n = receiver.recv(&mut buf).expect("lines reach the address that listens");
            got.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        // The first line went to the refusing address; the kernel says so
        // on a later send (the next, unless its ICMP is slow), and from that
        // line on, every line reaches the next address.
        let from: usize = got[0].trim_start_matches("line").parse().unwrap();
        assert!(from >= 1, "{got:?}");
        assert_eq!(got, (from..5).map(|n| format!("line{n}")).collect::<Vec<_>>());
        assert_eq!(courier.at, 1);
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            0,
            "line0 left the socket; only the kernel knows it was lost"
        );
    }
}
