//! The check contract: what a check kind implements ([`Check`]), what it is
//! handed for one run ([`Attempt`]) and how it says it failed ([`Failure`],
//! [`Reason`]).
//!
//! A leaf module: it imports nothing of ours but `duration`, so that checks,
//! the HTTP client, the AWS code, the runner and the server can all depend on
//! it without depending on each other.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::duration::Go;

/// What a check kind does for one run.
pub trait Check: Send + Sync {
    /// The verb that names the kind's metrics: `kubernary.<check>.<verb>.succeeded`.
    fn verb(&self) -> &'static str;

    /// Runs the check once. `Ok` means it passed.
    fn run(&self, attempt: &Attempt) -> Result<(), Failure>;
}

/// Why a check failed, in a word a machine can switch on. The words are part
/// of the `/health` JSON and of metric tags, so they never change meaning.
/// docs/operations.md says what each means and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Timeout,
    Dns,
    Connect,
    Tls,
    HttpStatus,
    Denied,
    NotFound,
    Credentials,
    /// The credentials work, but belong to someone else (`identity`).
    WrongIdentity,
    /// The backend says our settings are wrong, and how to fix them (the
    /// bucket is in another region).
    Config,
    /// The node's clock is too far from the backend's for a signature to
    /// be accepted: every AWS client on the node fails the same way.
    ClockSkew,
    Internal,
    ShuttingDown,
}

impl Reason {
    /// Every reason, for documentation and tests.
    pub const ALL: &'static [Reason] = &[
        Reason::Timeout,
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::HttpStatus,
        Reason::Denied,
        Reason::NotFound,
        Reason::Credentials,
        Reason::WrongIdentity,
        Reason::Config,
        Reason::ClockSkew,
        Reason::Internal,
        Reason::ShuttingDown,
    ];

    /// The reason for an unwanted HTTP status.
    pub fn for_status(status: u16) -> Reason {
        match status {
            401 | 403 => Reason::Denied,
            404 => Reason::NotFound,
            _ => Reason::HttpStatus,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::HttpStatus => "http_status",
            Reason::Denied => "denied",
            Reason::NotFound => "not_found",
            Reason::Credentials => "credentials",
            Reason::WrongIdentity => "wrong_identity",
            Reason::Config => "config",
            Reason::ClockSkew => "clock_skew",
            Reason::Internal => "internal",
            Reason::ShuttingDown => "shutting_down",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed run: a reason for machines and a message for people. The message
/// names what was tried and what answered (`s3 download of s3://b/k from
/// http://127.0.0.1:9000 failed: 404 NoSuchKey`), and never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure { reason, message: message.into() }
    }

    pub fn timeout(after: Duration) -> Failure {
        Failure::new(Reason::Timeout, format!("timed out after {}", Go(after)))
    }

    /// Classifies a socket error met while reaching `what`.
    pub fn io(what: &str, err: &io::Error, attempt: &Attempt) -> Failure {
        use io::ErrorKind::*;
        match err.kind() {
            _ if is_tls_error(err) => Failure::new(Reason::Tls, format!("{what}: TLS: {err}")),
            TimedOut | WouldBlock => Failure::timeout(attempt.timeout()),
            _ if attempt.expired() => Failure::timeout(attempt.timeout()),
            ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | AddrNotAvailable
            | BrokenPipe | UnexpectedEof => Failure::new(Reason::Connect, format!("{what}: {err}")),
            _ if is_resolve_error(err) => Failure::new(Reason::Dns, format!("{what}: {err}")),
            _ => Failure::new(Reason::Connect, format!("{what}: {err}")),
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: &str) -> Failure {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A TLS failure (bad certificate, handshake with a plain-TCP port, ...)
/// surfaces from rustls as an I/O error that wraps a `rustls::Error`.
pub fn is_tls_error(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// std reports resolver failures as `io::ErrorKind::Uncategorized` with the
/// resolver's text, so the text is all there is to go on.
pub fn is_resolve_error(err: &io::Error) -> bool {
    let text = err.to_string();
    text.contains("failed to lookup address")
        || text.contains("Name or service not known")
        || text.contains("No address associated")
        || text.contains("Temporary failure in name resolution")
        || text.contains("nodename nor servname")
}

/// The note that holds a run's phases, in milliseconds: `{"connect": 0.4}`.
pub const PHASES: &str = "phases_ms";

/// The note of when the certificates of a run's last TLS handshake expire
/// (the first of the chain to), RFC 3339.
pub const TLS_EXPIRES: &str = "tls_expires";

/// One run of a check: its deadline, and what it noted on the way for the
/// `/health` JSON (`credential_source`, `arn`, ...).
pub struct Attempt {
    started: Instant,
    timeout: Duration,
    notes: Mutex<Vec<(&'static str, serde_json::Value)>>,
    phases: Stopwatch,
    /// Only a debug run (`/health/<name>?debug=true`) has one, so ordinary
    /// runs neither lock nor format anything for it.
    trace: Option<Trace>,
}

impl Attempt {
    pub fn new(started: Instant, timeout: Duration) -> Attempt {
        Attempt { started, timeout, notes: Mutex::new(Vec::new()), phases: Stopwatch::default(), trace: None }
    }

    /// A run that records its steps as it goes (see [`Attempt::trace`]).
    pub fn traced(started: Instant, timeout: Duration) -> Attempt {
        Attempt { trace: Some(Trace::new(started)), ..Attempt::new(started, timeout) }
    }

    /// Records a step of a debug run: what was done and what answered
    /// (`connect`, `127.0.0.1:80: connection refused`). `detail` is only
    /// called when the run is traced. Never a secret: URLs go through
    /// `client::redact`, as in messages and logs.
    pub fn trace(&self, step: &'static str, detail: impl FnOnce() -> String) {
        if let Some(trace) = &self.trace {
            trace.step(step, detail());
        }
    }

    /// The run's trace, for code that records steps on its behalf without
    /// being handed the attempt (ureq's resolver and connectors).
    pub fn tracer(&self) -> Option<Trace> {
        self.trace.clone()
    }

    /// `[{"at_ms": 0.1, "step": "resolve", "detail": ".."}, ...]`, or `None`
    /// for a run that is not traced.
    pub fn trace_json(&self) -> Option<serde_json::Value> {
        self.trace.as_ref().map(Trace::json)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn deadline(&self) -> Instant {
        self.started + self.timeout
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    /// Time left before the deadline, or the timeout failure if none is. Call
    /// it before each blocking step to size that step's socket timeouts.
    pub fn remaining(&self) -> Result<Duration, Failure> {
        match self.deadline().checked_duration_since(Instant::now()) {
            Some(left) if left > Duration::from_millis(1) => Ok(left),
            _ => Err(Failure::timeout(self.timeout)),
        }
    }

    /// Records a fact about this run for the `/health` JSON. Never a secret.
    pub fn note(&self, key: &'static str, value: impl Into<serde_json::Value>) {
        let value = value.into();
        // What a check notes (the credential source that answered, the
        // ARN, ...) is a step of its story too.
        self.trace("note", || format!("{key}: {value}"));
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.retain(|(k, _)| *k != key);
        notes.push((key, value));
    }

    /// Records that a phase of this run (`resolve`, `connect`, `tls`,
    /// `first_byte`, `body`, `credentials`) took `took`, for `phases_ms` in
    /// `/health` and `kubernary_check_phase_seconds`. A phase met twice (a
    /// second address tried) adds up.
    pub fn phase(&self, name: &'static str, took: Duration) {
        self.phases.add(name, took);
    }

    /// Runs `step` as phase `name`, timed whether it succeeds or not. While
    /// it runs, the run's notes count it too, so a step hung at the deadline
    /// shows in the timed-out report.
    pub fn timed<T>(&self, name: &'static str, step: impl FnOnce() -> T) -> T {
        let outer = self.phases.start(name);
        let out = step();
        self.phases.finish(outer);
        out
    }

    /// The run's phase clock, for code that times steps on its behalf
    /// without being handed the attempt (ureq's connectors, see `client`).
    pub fn stopwatch(&self) -> Stopwatch {
        self.phases.clone()
    }

    /// What the run noted, with its phases so far as `phases_ms`.
    pub fn notes(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(phases) = self.phases.snapshot() {
            notes.push((PHASES, phases));
        }
        notes
    }
}

/// The steps of one debug run, each at its offset from the run's start.
#[derive(Clone, Debug)]
pub struct Trace {
    started: Instant,
    steps: Arc<Mutex<Vec<Step>>>,
}

/// When (from the run's start), what, and what answered.
type Step = (Duration, &'static str, String);

impl Trace {
    fn new(started: Instant) -> Trace {
        Trace { started, steps: Arc::default() }
    }

    pub fn step(&self, step: &'static str, detail: String) {
        let at = self.started.elapsed();
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).push((at, step, detail));
    }

    fn json(&self) -> serde_json::Value {
        let steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        steps
            .iter()
            .map(|(at, step, detail)| {
                let at_ms = (at.as_secs_f64() * 1_000_000.0).round() / 1000.0;
                serde_json::json!({"at_ms": at_ms, "step": step, "detail": detail})
            })
            .collect()
    }
}

/// How long each phase of one run took, and the phase going now.
#[derive(Clone, Debug, Default)]
pub struct Stopwatch(Arc<Mutex<Phases>>);

#[derive(Debug, Default)]
struct Phases {
    took: Vec<(&'static str, Duration)>,
    running: Option<(&'static str, Instant)>,
}

impl Stopwatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Phases> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, phase: &'static str, took: Duration) {
        add(&mut self.lock().took, phase, took);
    }

    /// Starts `phase`, pausing the one going (returned, for [`finish`]).
    ///
    /// [`finish`]: Stopwatch::finish
    pub fn start(&self, phase: &'static str) -> Option<&'static str> {
        let mut p = self.lock();
        let now = Instant::now();
        let outer = p.running.replace((phase, now));
        if let Some((name, since)) = outer {
            add(&mut p.took, name, now - since);
        }
        outer.map(|(name, _)| name)
    }

    /// Ends the phase going and resumes `outer`, which [`start`] returned.
    ///
    /// [`start`]: Stopwatch::start
    pub fn finish(&self, outer: Option<&'static str>) {
        let mut p = self.lock();
        let now = Instant::now();
        if let Some((name, since)) = p.running.take() {
            add(&mut p.took, name, now - since);
        }
        p.running = outer.map(|name| (name, now));
    }

    /// `{"connect": 0.42, ...}` in milliseconds, the phase going included;
    /// `None` before any phase.
    fn snapshot(&self) -> Option<serde_json::Value> {
        let p = self.lock();
        let mut took = p.took.clone();
        if let Some((name, since)) = p.running {
            add(&mut took, name, since.elapsed());
        }
        (!took.is_empty()).then(|| {
            let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
            serde_json::Value::Object(
                took.into_iter().map(|(name, d)| (name.to_string(), ms(d).into())).collect(),
            )
        })
    }
}

fn add(took: &mut Vec<(&'static str, Duration)>, phase: &'static str, d: Duration) {
    match took.iter_mut().find(|(name, _)| *name == phase) {
        Some((_, total)) => *total += d,
        None => took.push((phase, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_turns_into_a_timeout_at_the_deadline() {
        let attempt = Attempt::new(Instant::now() - Duration::from_secs(3), Duration::from_secs(2));
        let failure = attempt.remaining().unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout);
        assert_eq!(failure.message, "timed out after 2s");
        let fresh = Attempt::new(Instant::now(), Duration::from_secs(2));
        assert!(fresh.remaining().unwrap() > Duration::from_secs(1));
    }

    #[test]
    fn phases_add_up_under_one_note() {
        let attempt = Attempt::new(Instant::now(), Duration::from_secs(5));
        attempt.note("address", "127.0.0.1:1");
        attempt.phase("resolve", Duration::from_micros(1500));
        attempt.phase("connect", Duration::from_micros(250));
        attempt.phase("connect", Duration::from_micros(250));
        let ok: Result<(), ()> = attempt.timed("body", || Ok(()));
        assert!(ok.is_ok());
        let notes = attempt.notes();
        let phases = &notes.iter().find(|(k, _)| *k == PHASES).unwrap().1;
        assert_eq!(phases["resolve"], 1.5);
        assert_eq!(phases["connect"], 0.5);
        assert!(phases["body"].as_f64().unwrap() < 1000.0);
        assert_eq!(notes[0], ("address", "127.0.0.1:1".into()), "other notes stay");
    }

    #[test]
    fn a_phase_still_going_counts_in_the_notes() {
        let attempt = Attempt::new(Instant::now(), Duration::from_secs(5));
        let watch = attempt.stopwatch();
        let outer = watch.start("first_byte");
        let _inner = watch.start("connect");
        std::thread::sleep(Duration::from_millis(20));
        let notes = attempt.notes();
        let phases = &notes.iter().find(|(k, _)| *k == PHASES).unwrap().1;
        assert!(phases["connect"].as_f64().unwrap() >= 20.0, "{phases}");
        watch.finish(outer);
        assert!(outer.is_none());
    }

    #[test]
    fn only_a_traced_run_records_steps_in_order() {
        let plain = Attempt::new(Instant::now(), Duration::from_secs(5));
        plain.trace("resolve", || unreachable!("an ordinary run formats nothing"));
        assert!(plain.trace_json().is_none());
        let traced = Attempt::traced(Instant::now(), Duration::from_secs(5));
        traced.trace("resolve", || "localhost -> 127.0.0.1".into());
        traced.tracer().unwrap().step("connect", "127.0.0.1:1".into());
        let trace = traced.trace_json().unwrap();
        assert_eq!(trace[0]["step"], "resolve");
        assert_eq!(trace[1]["detail"], "127.0.0.1:1");
        assert!(trace[1]["at_ms"].as_f64().unwrap() >= trace[0]["at_ms"].as_f64().unwrap());
    }

    #[test]
    fn io_errors_are_classified() {
        let attempt = Attempt::new(Instant::now(), Duration::from_secs(5));
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::io("x", &refused, &attempt).reason, Reason::Connect);
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(Failure::io("x", &timed_out, &attempt).reason, Reason::Timeout);
        let resolve = io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(Failure::io("x", &resolve, &attempt).reason, Reason::Dns);
    }
}
