//! Logs to stderr, one line per event: text (simplelog: time, level,
//! message) or JSON (one object per line: `level`, `ts`, `msg` and the
//! event's fields, see [`json`]).
//!
//! `--debug` turns on debug lines from kubernary only. Other crates stay at
//! warnings: what an HTTP library prints at debug level (request lines,
//! headers) is not redacted as ours is, and a signature is a secret.
//!
//! What is logged, and at which level, is decided in [`events`]: the calls
//! elsewhere name an event, and its fields travel as `log` key-values so the
//! JSON logger writes them as fields, never as text to re-parse.
//!
//! Lines go through a bounded queue to one writer thread, so that a log
//! reader that is slow, or stops reading (a stalled container runtime, a
//! full pipe), never blocks a thread of kubernary: a `/health` handler that
//! has answered, a worker reporting its run, the scheduler. Lines that do
//! not fit in the queue are dropped and counted, and the count is logged
//! once the reader keeps up again. [`flush`] gives the queue a moment to
//! drain before the process exits.

mod events;
pub mod json;

pub use events::{request, requests_logged, run, started};

/// The log lines for each result (see [`run`]): failures and changes of
/// state at the default level, passes at debug. The logger queues lines,
/// so this never blocks.
pub struct Log;

impl crate::record::Sink for Log {
    fn settled(&self, record: &crate::record::Record) {
        run(record);
    }
}

use std::io::{self, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use log::LevelFilter;
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};

/// How lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Format, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!("expected text or json, got {text:?}")),
        }
    }
}

/// Whether request lines are logged at INFO (`--access-log`) or DEBUG.
static ACCESS_LOG: AtomicBool = AtomicBool::new(false);

fn access_log() -> bool {
    ACCESS_LOG.load(Ordering::Relaxed)
}

/// Lines waiting for stderr; beyond this they are dropped.
const QUEUE: usize = 4096;

pub fn init(debug: bool, format: Format, access_log: bool) {
    ACCESS_LOG.store(access_log, Ordering::Relaxed);
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Info };
    let queue = Queue::start(format);
    if format == Format::Json {
        let sink = match &queue {
            Some(queue) => json::Sink::Queue(queue.writer()),
            None => json::Sink::Stderr,
        };
        if let Some(queue) = queue {
            let _ = QUEUE_STATE.set(queue);
        }
        json::init(level, sink);
        return;
    }
    let ours = ConfigBuilder::new()
        .add_filter_allow_str("kubernary")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    // tiny_http logs nothing we need: the patched server reports its
    // accept failures through events, which the server module logs.
    let theirs = ConfigBuilder::new()
        .add_filter_ignore_str("kubernary")
        .add_filter_ignore_str("tiny_http")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let Some(queue) = queue else {
        // No writer thread: write straight to stderr, as before.
        let loggers: Vec<Box<dyn SharedLogger>> = vec![
            WriteLogger::new(level, ours, io::stderr()),
            WriteLogger::new(LevelFilter::Warn, theirs, io::stderr()),
        ];
        let _ = CombinedLogger::init(loggers);
        return;
    };
    let loggers: Vec<Box<dyn SharedLogger>> = vec![
        WriteLogger::new(level, ours, queue.writer()),
        WriteLogger::new(LevelFilter::Warn, theirs, queue.writer()),
    ];
    let _ = QUEUE_STATE.set(queue);
    let _ = CombinedLogger::init(loggers);
}

/// Waits up to `timeout` for the queued lines to reach stderr: before the
/// process exits, so that its last lines are not lost to a reader that is
/// merely slow.
pub fn flush(timeout: Duration) {
    let Some(queue) = QUEUE_STATE.get() else { return };
    let deadline = Instant::now() + timeout;
    while queue.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
}

static QUEUE_STATE: OnceLock<Queue> = OnceLock::new();

struct Queue {
    lines: Sender<Vec<u8>>,
    /// Lines queued and not yet written.
    pending: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl Queue {
    fn start(format: Format) -> Option<Queue> {
        let (lines, queue) = bounded::<Vec<u8>>(QUEUE);
        let pending = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (written, lost) = (pending.clone(), dropped.clone());
        thread::Builder::new()
            .name("log".into())
            .stack_size(64 * 1024)
            .spawn(move || write_lines(&queue, &written, &lost, format))
            .ok()?;
        Some(Queue { lines, pending, dropped })
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            partial: Vec::new(),
            lines: self.lines.clone(),
            pending: self.pending.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// The writer thread: every queued line to stderr, and a note of how many
/// were dropped whenever some were.
fn write_lines(queue: &Receiver<Vec<u8>>, pending: &AtomicUsize, dropped: &AtomicU64, format: Format) {
    let mut stderr = io::stderr();
    for line in queue {
        let lost = dropped.swap(0, Ordering::SeqCst);
        if lost > 0 {
            let msg = format!("logging: {lost} line(s) dropped: stderr was not read fast enough");
            let now = std::time::SystemTime::now();
            let line = match format {
                Format::Text => format!("{} [WARN] {msg}\n", crate::clock::rfc3339(now)),
                Format::Json => json::line(log::Level::Warn, now, &msg, &[("dropped", lost.into())]),
            };
            let _ = stderr.write_all(line.as_bytes());
        }
        let _ = stderr.write_all(&line);
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What each logger writes into: whole lines go to the queue, without
/// waiting; a full queue drops the line and counts it.
pub(crate) struct LineWriter {
    partial: Vec<u8>,
    lines: Sender<Vec<u8>>,
    pending: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
}

impl LineWriter {
    /// Queues one whole line without waiting; a full queue drops it.
    pub(crate) fn send(&self, line: Vec<u8>) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.lines.try_send(line).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.send(line);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_are_queued_and_overflow_is_counted() {
        let (lines, queue) = bounded(2);
        let pending = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut w =
            LineWriter { partial: Vec::new(), lines, pending: pending.clone(), dropped: dropped.clone() };
        write!(w, "2026 [INFO] one").unwrap();
        assert!(queue.is_empty(), "half a line waits for its end");
        writeln!(w).unwrap();
        w.write_all(b"two\nthree\nfour\n").unwrap();
        assert_eq!(queue.try_recv().unwrap(), b"2026 [INFO] one\n");
        assert_eq!(queue.try_recv().unwrap(), b"two\n");
        assert!(queue.try_recv().is_err());
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "three and four did not fit");
        assert_eq!(pending.load(Ordering::SeqCst), 2);
    }
}
