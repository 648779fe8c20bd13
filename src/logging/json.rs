//! `--log-format=json`: one JSON object per line, as the Go original's zap
//! production encoder wrote them and log pipelines (Loki, Elasticsearch,
//! Cloud Logging) parse: `level`, `ts` (RFC 3339, UTC, milliseconds), `msg`,
//! then the record's key-values as fields of their own, numbers as numbers.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{self, VisitSource, VisitValue};
use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::Value;

use super::LineWriter;

/// Where finished lines go.
pub(crate) enum Sink {
    /// The writer thread's queue (never blocks).
    Queue(LineWriter),
    /// Straight to stderr, when the writer thread could not start.
    Stderr,
}

struct JsonLogger {
    /// The level for kubernary's own lines; other crates log warnings only.
    ours: LevelFilter,
    sink: Sink,
}

pub(crate) fn init(ours: LevelFilter, sink: Sink) {
    if log::set_boxed_logger(Box::new(JsonLogger { ours, sink })).is_ok() {
        log::set_max_level(ours.max(LevelFilter::Warn));
    }
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let target = metadata.target();
        if target == "kubernary" || target.starts_with("kubernary::") {
            metadata.level() <= self.ours
        } else {
            // tiny_http logs nothing we need: the patched server reports
            // its accept failures through events, which `server` logs.
            !target.starts_with("tiny_http") && metadata.level() <= LevelFilter::Warn
        }
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut fields = Fields(Vec::new());
        let _ = record.key_values().visit(&mut fields);
        let text = line(record.level(), SystemTime::now(), &record.args().to_string(), &fields.0);
        match &self.sink {
            Sink::Queue(queue) => queue.send(text.into_bytes()),
            Sink::Stderr => {
                let _ = io::stderr().write_all(text.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// One line, newline included: `level`, `ts` and `msg` first, as zap wrote
/// them, then the fields in the order given. A field named like one already
/// written is dropped rather than allowed to shadow it.
pub fn line<K: AsRef<str>>(level: Level, at: SystemTime, msg: &str, fields: &[(K, Value)]) -> String {
    let mut text = String::with_capacity(96 + msg.len());
    let mut written: Vec<&str> = vec!["level", "ts", "msg"];
    text.push_str("{\"level\":");
    push_json(&mut text, &Value::from(level_name(level)));
    text.push_str(",\"ts\":");
    push_json(&mut text, &Value::from(timestamp(at)));
    text.push_str(",\"msg\":");
    push_json(&mut text, &Value::from(msg));
    for (key, value) in fields {
        let key = key.as_ref();
        if written.contains(&key) {
            continue;
        }
        written.push(key);
        text.push(',');
        push_json(&mut text, &Value::from(key));
        text.push(':');
        push_json(&mut text, value);
    }
    text.push_str("}\n");
    text
}

fn push_json(text: &mut String, value: &Value) {
    // Serializing a Value cannot fail: its keys are strings.
    text.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
}

/// zap's level names.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// `2026-12-01T19:52:48.123Z`.
fn timestamp(at: SystemTime) -> String {
    let millis = at.duration_since(UNIX_EPOCH).map(|d| d.subsec_millis()).unwrap_or(0);
    let seconds = crate::clock::rfc3339(at);
    format!("{}.{millis:03}Z", seconds.trim_end_matches('Z'))
}

/// Collects a record's key-values as JSON values.
struct Fields(Vec<(String, Value)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let mut json = ToJson(Value::Null);
        value.visit(&mut json)?;
        self.0.push((key.as_str().to_string(), json.0));
        Ok(())
    }
}

struct ToJson(Value);

impl<'v> VisitValue<'v> for ToJson {
    fn visit_any(&mut self, value: kv::Value) -> Result<(), kv::Error> {
        self.0 = Value::String(value.to_string());
        Ok(())
    }

    fn visit_null(&mut self) -> Result<(), kv::Error> {
        self.0 = Value::Null;
        Ok(())
    }

    fn visit_u64(&mut self, value: u64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_i64(&mut self, value: i64) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_f64(&mut self, value: f64) -> Result<(), kv::Error> {
        self.0 = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        Ok(())
    }

    fn visit_bool(&mut self, value: bool) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }

    fn visit_str(&mut self, value: &str) -> Result<(), kv::Error> {
        self.0 = value.into();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_line_is_one_object_with_typed_fields() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_453_310_042);
        let text = line(
            Level::Warn,
            at,
            "check s3 failed",
            &[("check", "s3".into()), ("duration_ms", 12.into()), ("msg", "shadow".into())],
        );
        assert!(text.ends_with("}\n") && !text[..text.len() - 1].contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["ts"], "2026-11-23T17:01:50.042Z");
        assert_eq!(v["msg"], "check s3 failed");
        assert_eq!(v["check"], "s3");
        assert_eq!(v["duration_ms"], 12);
        assert!(text.starts_with(
            r#"{"level":"warn","ts":"2026-11-23T17:01:50.042Z","msg":"check s3 failed","check""#
        ));
    }

    #[test]
    fn key_values_keep_their_types() {
        let record_fields = |record: &Record| {
            let mut fields = Fields(Vec::new());
            record.key_values().visit(&mut fields).unwrap();
            fields.0
        };
        let kvs: &[(&str, kv::Value)] =
            &[("status", 503u16.into()), ("ok", false.into()), ("path", "/health".into())];
        let args = format_args!("x");
        let record = Record::builder().args(args).key_values(&kvs).build();
        assert_eq!(
            record_fields(&record),
            vec![
                ("status".to_string(), Value::from(503)),
                ("ok".to_string(), Value::from(false)),
                ("path".to_string(), Value::from("/health")),
            ]
        );
    }
}
