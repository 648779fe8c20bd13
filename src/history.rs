//! The recent results of each check, for the status page and
//! `/health?history=true`: a bounded ring of the last [`CAPACITY`] settled
//! runs per check, fed as a [`Sink`] of settled runs ([`Recorder`]).
//!
//! A result is a 16-byte [`Sample`] (when, how long, why it failed), so the
//! whole history of a check is under 1 KiB, allocated once at its first
//! result and never grown: six checks cost about 6 KiB, whatever the uptime
//! (tests/status.rs measures it with a counting allocator). The error text
//! is not kept per run: the latest one is in the check's latest outcome, and
//! a run's reason is what tells cells apart.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::clock::rfc3339;
use crate::contract::Reason;
use crate::record::{Record, Sink};

/// Results kept per check: half an hour at the default 30s interval, and
/// one strip of cells on the status page.
pub const CAPACITY: usize = 60;

/// One settled run, as small as it can usefully be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When the run settled, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How long it took, in microseconds (saturating at about 71 minutes,
    /// far past any TIMEOUT).
    pub micros: u32,
    /// Why it failed; `None` when it passed.
    pub reason: Option<Reason>,
    /// The phase that took longest ([`PHASES`] index) and its share of the
    /// run in percent: where the time went, in the two bytes the alignment
    /// leaves free.
    pub slowest: Option<(u8, u8)>,
}

/// The phases a sample can name (see `contract::Attempt::phase`).
pub const PHASES: [&str; 6] = ["resolve", "connect", "tls", "first_byte", "body", "credentials"];

impl Sample {
    pub fn of(record: &Record) -> Sample {
        Sample {
            at_ms: record.finished.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            micros: record.duration.as_micros().min(u32::MAX as u128) as u32,
            reason: record.result.as_ref().err().map(|f| f.reason),
            slowest: slowest(record),
        }
    }

    /// `connect 97%`, when the run noted its phases.
    pub fn slowest_phase(&self) -> Option<String> {
        let (index, share) = self.slowest?;
        Some(format!("{} {share}%", PHASES.get(usize::from(index))?))
    }

    pub fn ok(&self) -> bool {
        self.reason.is_none()
    }

    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_ms)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(u64::from(self.micros))
    }

    /// `{"at": "...Z", "ok": false, "duration_ms": 12.3, "reason": "connect"}`.
    pub fn json(&self) -> Value {
        json!({
            "at": rfc3339(self.at()),
            "ok": self.ok(),
            "duration_ms": (f64::from(self.micros) / 100.0).round() / 10.0,
            "reason": self.reason.map_or("", Reason::as_str),
            "slowest_phase": self.slowest.and_then(|(i, _)| PHASES.get(usize::from(i)).copied()),
        })
    }
}

/// The longest of the record's `phases_ms`, and its share of the run.
fn slowest(record: &Record) -> Option<(u8, u8)> {
    let (_, serde_json::Value::Object(phases)) = record.notes.iter().find(|(k, _)| *k == "phases_ms")? else {
        return None;
    };
    let (name, ms) = phases
        .iter()
        .filter_map(|(name, ms)| Some((name.as_str(), ms.as_f64()?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let index = PHASES.iter().position(|p| *p == name)? as u8;
    let total = record.duration.as_secs_f64() * 1000.0;
    let share = if total > 0.0 { (ms / total * 100.0).round().clamp(0.0, 100.0) as u8 } else { 0 };
    Some((index, share))
}

/// What is kept for one check.
struct Track {
    name: String,
    samples: VecDeque<Sample>,
    /// When the current streak of failed runs began (the first failure after
    /// the last pass), kept apart from the ring so that a check failing for
    /// longer than [`CAPACITY`] runs still says since when.
    failing_since: Option<SystemTime>,
}

/// The recent results of every check.
pub struct History {
    tracks: Mutex<Vec<Track>>,
}

/// What [`History::recent`] answers for one check.
#[derive(Clone, Debug, Default)]
pub struct Recent {
    /// Oldest first.
    pub samples: Vec<Sample>,
    pub failing_since: Option<SystemTime>,
}

impl Default for History {
    fn default() -> History {
        History::new()
    }
}

impl History {
    pub const fn new() -> History {
        History { tracks: Mutex::new(Vec::new()) }
    }

    /// Keeps one settled run of `check`, dropping its oldest past [`CAPACITY`].
    pub fn record(&self, check: &str, sample: Sample) {
        let mut tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        // A handful of checks: a scan beats a map, and allocates nothing.
        let track = match tracks.iter().position(|t| t.name == check) {
            Some(i) => &mut tracks[i],
            None => {
                tracks.push(Track {
                    name: check.to_string(),
                    samples: VecDeque::with_capacity(CAPACITY),
                    failing_since: None,
                });
                tracks.last_mut().expect("just pushed")
            }
        };
        if track.samples.len() == CAPACITY {
            track.samples.pop_front();
        }
        track.samples.push_back(sample);
        track.failing_since = match (sample.ok(), track.failing_since) {
            (true, _) => None,
            (false, None) => Some(sample.at()),
            (false, since) => since,
        };
    }

    /// The kept results of `check`, oldest first (none before its first run).
    pub fn recent(&self, check: &str) -> Recent {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        tracks
            .iter()
            .find(|t| t.name == check)
            .map(|t| Recent { samples: t.samples.iter().copied().collect(), failing_since: t.failing_since })
            .unwrap_or_default()
    }

    /// The heap this history holds, in bytes, as its data structures account
    /// for it (the allocator's own overhead aside).
    pub fn heap_bytes(&self) -> usize {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        tracks.capacity() * std::mem::size_of::<Track>()
            + tracks
                .iter()
                .map(|t| t.name.capacity() + t.samples.capacity() * std::mem::size_of::<Sample>())
                .sum::<usize>()
    }

    /// Adds `"history": [...]` (oldest first) to each check of a `/health`
    /// body (`?history=true`); the other fields are left as they are.
    pub fn annotate(&self, body: &mut Map<String, Value>) {
        for (name, value) in body.iter_mut() {
            if let Value::Object(fields) = value {
                let samples = self.recent(name).samples.iter().map(Sample::json).collect();
                fields.insert("history".into(), Value::Array(samples));
            }
        }
    }
}

/// The daemon's one history: settlement writes it, the server reads it.
static GLOBAL: History = History::new();

pub fn global() -> &'static History {
    &GLOBAL
}

/// The sink that keeps settled runs in the daemon's history. It takes one
/// short lock and allocates only at a check's first result, as a sink must.
pub struct Recorder;

impl Sink for Recorder {
    fn settled(&self, record: &Record) {
        GLOBAL.record(&record.check, Sample::of(record));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, reason: Option<Reason>) -> Sample {
        Sample { at_ms, micros: 1500, reason, slowest: None }
    }

    #[test]
    fn a_sample_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Sample>(), 16);
    }

    #[test]
    fn keeps_the_last_capacity_results_oldest_first() {
        let h = History::new();
        for i in 0..(CAPACITY as u64 + 5) {
            h.record("a", sample(i, None));
        }
        let recent = h.recent("a").samples;
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].at_ms, 5);
        assert_eq!(recent[CAPACITY - 1].at_ms, CAPACITY as u64 + 4);
        assert!(h.recent("b").samples.is_empty());
        // Allocated once, never grown.
        let bytes = h.heap_bytes();
        h.record("a", sample(1000, None));
        assert_eq!(h.heap_bytes(), bytes);
    }

    #[test]
    fn failing_since_is_the_first_failure_after_the_last_pass() {
        let h = History::new();
        h.record("a", sample(1_000, None));
        assert_eq!(h.recent("a").failing_since, None);
        h.record("a", sample(2_000, Some(Reason::Connect)));
        h.record("a", sample(3_000, Some(Reason::Timeout)));
        let since = UNIX_EPOCH + Duration::from_secs(2);
        assert_eq!(h.recent("a").failing_since, Some(since));
        // Outlives the ring.
        for i in 0..(2 * CAPACITY as u64) {
            h.record("a", sample(4_000 + i, Some(Reason::Connect)));
        }
        assert_eq!(h.recent("a").failing_since, Some(since));
        h.record("a", sample(9_000, None));
        assert_eq!(h.recent("a").failing_since, None);
    }

    #[test]
    fn annotates_health_with_the_history() {
        let h = History::new();
        h.record("a", Sample { at_ms: 0, micros: 12_345, reason: Some(Reason::Dns), slowest: Some((0, 99)) });
        let mut body = Map::new();
        body.insert("a".into(), json!({"ok": false, "error": "x"}));
        h.annotate(&mut body);
        assert_eq!(
            body["a"],
            json!({"ok": false, "error": "x", "history": [
                {"at": "1970-01-01T00:00:00Z", "ok": false, "duration_ms": 12.3, "reason": "dns", "slowest_phase": "resolve"}
            ]})
        );
    }
}
