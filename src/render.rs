//! What the endpoints answer: JSON for `/health`, plain text for the rest.
//! Pure functions of results, so the server only routes and waits.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tiny_http::{Header, Response};

use crate::clock::rfc3339;
use crate::contract::Reason;
use crate::duration::Go;
use crate::runs::{Entry, Outcome};

pub type Answer = Response<Cursor<Vec<u8>>>;

/// A `/health` status and body, before the server adds what the query asks.
pub type Health = (u16, Map<String, Value>);

/// The settled runs of `/health`: 200 when every check reports ok, else 503.
pub fn outcomes(results: &[(Arc<Entry>, Outcome)]) -> Health {
    let mut body = Map::new();
    let mut all_ok = true;
    for (entry, outcome) in results {
        all_ok &= outcome.reported_ok();
        body.insert(entry.name.clone(), outcome_json(entry, outcome));
    }
    (if all_ok { 200 } else { 503 }, body)
}

/// The latest settled runs, without running anything. A result older than
/// twice its check's interval is stale: the scheduler is behind or stuck,
/// and that is a failure in itself.
pub fn cached(entries: &[Arc<Entry>]) -> Health {
    let mut body = Map::new();
    let mut all_ok = true;
    for entry in entries {
        let limit = entry.interval * 2;
        let value = match entry.latest() {
            None => failed_json(entry, "no run has finished yet", "stale"),
            Some(outcome) => {
                let age = outcome.age();
                let mut value = if age > limit {
                    let message = format!(
                        "the latest result is {} old, older than twice the interval ({})",
                        Go(Duration::from_secs(age.as_secs())),
                        Go(limit)
                    );
                    failed_json(entry, &message, "stale")
                } else {
                    outcome_json(entry, &outcome)
                };
                value["age_seconds"] = json!((age.as_secs_f64() * 10.0).round() / 10.0);
                value
            }
        };
        all_ok &= value["ok"] == true;
        body.insert(entry.name.clone(), value);
    }
    (if all_ok { 200 } else { 503 }, body)
}

/// Every check failed with `shutting down`, so readiness drops while the
/// connections drain.
pub fn shutting_down(entries: &[Arc<Entry>]) -> Answer {
    let body: Map<String, Value> = entries
        .iter()
        .map(|e| (e.name.clone(), failed_json(e, "shutting down", Reason::ShuttingDown.as_str())))
        .collect();
    json_response(503, &Value::Object(body))
}

fn failed_json(entry: &Entry, error: &str, reason: &str) -> Value {
    json!({"ok": false, "error": error, "reason": reason, "kind": entry.kind})
}

/// `ok` is what hysteresis reports; `last_run_*` is the latest run itself,
/// which differs only while FAIL_AFTER or PASS_AFTER is counting.
fn outcome_json(entry: &Entry, outcome: &Outcome) -> Value {
    let ok = outcome.reported_ok();
    let (run_error, run_reason) = match &outcome.result {
        Ok(()) => (String::new(), ""),
        Err(f) => (f.message.clone(), f.reason.as_str()),
    };
    let (error, reason) = match (ok, outcome.ok()) {
        (true, _) => (String::new(), ""),
        (false, false) => (run_error.clone(), run_reason),
        (false, true) => ("passing again, but not yet PASS_AFTER runs in a row".to_string(), "recovering"),
    };
    let mut fields = Map::new();
    fields.insert("ok".into(), ok.into());
    fields.insert("error".into(), error.into());
    fields.insert("reason".into(), reason.into());
    fields.insert("kind".into(), entry.kind.clone().into());
    fields.insert("duration_ms".into(), ((outcome.duration.as_secs_f64() * 10_000.0).round() / 10.0).into());
    if let Some(verdict) = &outcome.verdict {
        fields.insert("consecutive_failures".into(), verdict.consecutive_failures.into());
        fields.insert("last_success".into(), verdict.last_success.map(rfc3339).into());
        fields.insert("last_run".into(), rfc3339(verdict.last_run).into());
    }
    if ok != outcome.ok() {
        fields.insert("last_run_ok".into(), outcome.ok().into());
        fields.insert("last_run_error".into(), run_error.into());
        fields.insert("last_run_reason".into(), run_reason.into());
    }
    for (key, value) in &outcome.notes {
        fields.insert((*key).into(), value.clone());
    }
    Value::Object(fields)
}

pub fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

pub fn text(status: u16, body: &str) -> Answer {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

pub fn json_response(status: u16, body: &Value) -> Answer {
    match serde_json::to_string(body) {
        Ok(text) => Response::from_string(text)
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json")),
        Err(e) => self::text(500, &format!("internal error: {e}\n")),
    }
}
