//! The events worth a line, their level and their fields, in one place: the
//! daemon, the runner and the server call these instead of formatting lines.
//!
//! At the default level a healthy daemon says little: its start, each check's
//! changes of state, each failing run. Passing runs and answered requests are
//! debug lines (`--access-log` keeps requests at INFO): behind a kubelet's
//! probes and a Prometheus scrape they would be thousands of lines a day that
//! say nothing.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use log::{debug, info, warn, Level};

use crate::duration::Go;
use crate::record::Record;

/// The daemon is up and answering on `listening`.
pub fn started(listening: &str) {
    let version = crate::VERSION;
    let pid = std::process::id();
    info!(
        event = "start", version = version, listen = listening, pid = pid;
        "kubernary {version} listening on {listening} (pid {pid})"
    );
}

fn request_level() -> Level {
    if super::access_log() {
        Level::Info
    } else {
        Level::Debug
    }
}

/// Whether [`request`] writes anything: what it would say is worth
/// measuring only then.
pub fn requests_logged() -> bool {
    log::log_enabled!(request_level())
}

/// One answered request (or one whose answer could not be delivered), and
/// how long of it the thread that handled it waited for a CPU, when known:
/// an answer late because the canary's own node starved it says so.
pub fn request(
    method: &str,
    path: &str,
    peer: &str,
    status: u16,
    took: Duration,
    cpu_wait: Option<Duration>,
    sent: &io::Result<()>,
) {
    let level = request_level();
    if !log::log_enabled!(level) {
        return;
    }
    let ms = millis(took);
    let wait_ms = cpu_wait.map(millis);
    // In the text only when it is worth reading.
    let waited = match wait_ms {
        Some(w) if w >= 1.0 => format!(", {w:.1}ms of it waiting for a CPU"),
        _ => String::new(),
    };
    match sent {
        Ok(()) => log::log!(
            level,
            event = "request", method = method, path = path, peer = peer, status = status, duration_ms = ms,
            cpu_wait_ms = wait_ms;
            "{method} {path} from {peer}: {status} in {ms:.1}ms{waited}"
        ),
        Err(e) => log::log!(
            level,
            event = "request", method = method, path = path, peer = peer, status = status, duration_ms = ms,
            cpu_wait_ms = wait_ms, error:% = e;
            "{method} {path} from {peer}: {status} not delivered ({e}) after {ms:.1}ms{waited}"
        ),
    }
}

/// A settled run of check `name`: a line for a failed run, a debug line for
/// a passing one, and a line when the check's reported state changes.
pub fn run(record: &Record) {
    let (name, kind) = (record.check.as_str(), record.kind.as_str());
    let ms = millis(record.duration);
    match &record.result {
        Ok(()) => debug!(
            event = "run", check = name, kind = kind, ok = true, duration_ms = ms;
            "check {name} passed in {ms:.1}ms"
        ),
        Err(f) => {
            let reason = f.reason.as_str();
            let error = f.message.as_str();
            warn!(
                event = "run", check = name, kind = kind, ok = false, reason = reason, duration_ms = ms,
                error = error;
                "check {name} failed ({reason}) in {ms:.1}ms: {error}"
            );
        }
    }
    for (key, value) in &record.notes {
        let text = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let note: &str = key;
        debug!(event = "note", check = name, note = note, value = text.as_str(); "check {name}: {key}={text}");
    }
    let ok = record.verdict.ok;
    let started = record.finished.checked_sub(record.duration).unwrap_or(record.finished);
    match STATES.lock().unwrap_or_else(|e| e.into_inner()).observe(name, record.ok(), ok, started) {
        Change::None => {}
        Change::First => {
            if ok {
                info!(event = "state", check = name, kind = kind, ok = true; "check {name} passed its first run");
            } else {
                failing(name, kind, record);
            }
        }
        Change::Failing => failing(name, kind, record),
        Change::Passing { down } => {
            let down_ms = down.as_millis() as u64;
            let text = Go(Duration::from_millis(down_ms));
            info!(
                event = "state", check = name, kind = kind, ok = true, down_ms = down_ms;
                "check {name} passed again, after failing for {text}"
            );
        }
    }
}

/// Milliseconds to a tenth, as `/health`'s `duration_ms`.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn failing(name: &str, kind: &str, record: &Record) {
    let (reason, error) = match &record.result {
        Err(f) => (f.reason.as_str(), f.message.as_str()),
        // Hysteresis keeps a state for a run that went the other way; a
        // failing state is only entered on a failed run, but say so plainly.
        Ok(()) => ("", ""),
    };
    warn!(
        event = "state", check = name, kind = kind, ok = false, reason = reason, error = error;
        "check {name} is failing ({reason}): {error}"
    );
}

static STATES: Mutex<States> = Mutex::new(States { by_check: None });

/// The last reported state of each check, and since when it has been down.
struct States {
    by_check: Option<HashMap<String, State>>,
}

struct State {
    ok: bool,
    /// The start of the first failed run since the check last passed.
    down_since: Option<SystemTime>,
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    None,
    /// The check's first state.
    First,
    Failing,
    Passing {
        down: Duration,
    },
}

impl States {
    /// Counts one run (`run_ok`) that left the check reported `ok`.
    fn observe(&mut self, name: &str, run_ok: bool, ok: bool, started: SystemTime) -> Change {
        let states = self.by_check.get_or_insert_with(HashMap::new);
        let Some(state) = states.get_mut(name) else {
            let down_since = (!run_ok).then_some(started);
            states.insert(name.to_string(), State { ok, down_since });
            return Change::First;
        };
        if !run_ok && state.down_since.is_none() {
            state.down_since = Some(started);
        }
        let change = match (state.ok, ok) {
            (true, false) => Change::Failing,
            (false, true) => {
                let since = state.down_since.unwrap_or(started);
                Change::Passing { down: started.duration_since(since).unwrap_or_default() }
            }
            _ => Change::None,
        };
        state.ok = ok;
        if ok && run_ok {
            state.down_since = None;
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_of_state_and_how_long_it_was_down() {
        let mut states = States { by_check: None };
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(states.observe("a", true, true, t(0)), Change::First);
        assert_eq!(states.observe("a", true, true, t(10)), Change::None);
        // With FAIL_AFTER=2 the first failure leaves it passing.
        assert_eq!(states.observe("a", false, true, t(20)), Change::None);
        assert_eq!(states.observe("a", false, false, t(30)), Change::Failing);
        assert_eq!(states.observe("a", false, false, t(40)), Change::None);
        assert_eq!(states.observe("a", true, true, t(50)), Change::Passing { down: Duration::from_secs(30) });
        // A lone failure that hysteresis absorbed is forgotten by a pass.
        assert_eq!(states.observe("a", false, true, t(60)), Change::None);
        assert_eq!(states.observe("a", true, true, t(70)), Change::None);
        assert_eq!(states.observe("a", false, false, t(80)), Change::Failing);
        assert_eq!(states.observe("a", true, true, t(85)), Change::Passing { down: Duration::from_secs(5) });
        assert_eq!(states.observe("b", false, false, t(0)), Change::First);
    }
}
