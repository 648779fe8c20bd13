//! The status page (`GET /`, `GET /status`): one server-rendered HTML
//! page, for a person who has just run `kubectl port-forward` and wants to
//! see rather than parse.
//!
//! Self-contained because the pod may be a `FROM scratch` image with no
//! egress: inline CSS and SVG, no script, no external asset; it refreshes
//! itself with `<meta http-equiv="refresh">`. It reads only what is cached
//! (each check's latest outcome and its [`History`]) and never starts a run,
//! so reloading it costs the checked services nothing. Every string that
//! comes from configuration or from a check is escaped.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{rfc3339, utc};
use crate::contract::{PHASES, TLS_EXPIRES};
use crate::duration::{Go, Millis};
use crate::history::{History, Recent, Sample, CAPACITY};
use crate::runs::{Entry, Outcome, Runner};

/// Seconds between the page's own reloads: a few, so a port-forwarded tab
/// follows a check going red without anyone pressing reload.
pub const REFRESH_SECONDS: u32 = 5;

/// Notes that say who a check ran as, shown on their own line.
const IDENTITY_NOTES: [&str; 3] = ["credential_source", "arn", "account"];

/// Content-Security-Policy: the page needs nothing but its own inline CSS,
/// and the browser is told so, which also keeps any markup that escaped
/// escaping from loading or running anything.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The answer to `GET /` and `GET /status`, from the daemon's history.
pub fn response(runner: &Runner, shutting_down: bool) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let html = page(runner.entries(), crate::history::global(), SystemTime::now(), shutting_down);
    let header = |name: &str, value: &str| {
        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
    };
    tiny_http::Response::from_string(html)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("Content-Security-Policy", CSP))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Referrer-Policy", "no-referrer"))
}

/// The whole page for `entries` as of `now`.
pub fn page(entries: &[Arc<Entry>], history: &History, now: SystemTime, shutting_down: bool) -> String {
    let checks: Vec<Card<'_>> = entries
        .iter()
        .map(|entry| Card { entry, latest: entry.latest(), recent: history.recent(&entry.name) })
        .collect();
    let failing = checks.iter().filter(|c| c.state() == State::Failing).count();
    let passing = checks.iter().filter(|c| c.state() == State::Passing).count();
    let waiting = checks.len() - failing - passing;

    let mut out = String::with_capacity(8192 + checks.len() * 6144);
    let w = &mut out;
    let _ = write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{} kubernary</title><style>{CSS}</style></head><body>",
        if failing > 0 { "\u{2716}" } else { "\u{2714}" }
    );
    let _ = write!(
        w,
        "<header><h1>kubernary</h1><p class=\"summary\" id=\"summary\">{} check{}: \
         <b class=\"failing\">{failing} failing</b>, <b class=\"passing\">{passing} passing</b>, \
         {waiting} not yet run</p><p class=\"meta\">as of {} \u{b7} version {} \u{b7} reloads every {REFRESH_SECONDS}s \
         \u{b7} cached results only: this page never runs a check</p>",
        checks.len(),
        if checks.len() == 1 { "" } else { "s" },
        rfc3339(now),
        esc(crate::VERSION),
    );
    if shutting_down {
        w.push_str("<p class=\"shutdown\" id=\"shutdown\">shutting down: no new runs are scheduled</p>");
    }
    w.push_str("</header><main>");
    for card in &checks {
        card.render(w, now);
    }
    if checks.is_empty() {
        w.push_str("<p>No check is configured.</p>");
    }
    w.push_str("</main></body></html>\n");
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Passing,
    Failing,
    NotYetRun,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Passing => "passing",
            State::Failing => "failing",
            State::NotYetRun => "not yet run",
        }
    }

    /// The CSS class (no spaces).
    fn class(self) -> &'static str {
        match self {
            State::Passing => "passing",
            State::Failing => "failing",
            State::NotYetRun => "pending",
        }
    }
}

/// One check's section of the page.
struct Card<'a> {
    entry: &'a Entry,
    latest: Option<Outcome>,
    recent: Recent,
}

impl Card<'_> {
    /// What `/health` would report from the cache: the verdict, smoothed by
    /// FAIL_AFTER and PASS_AFTER.
    fn state(&self) -> State {
        match &self.latest {
            None => State::NotYetRun,
            Some(o) if o.reported_ok() => State::Passing,
            Some(_) => State::Failing,
        }
    }

    fn render(&self, w: &mut String, now: SystemTime) {
        let state = self.state();
        let name = esc(&self.entry.name);
        let _ = write!(
            w,
            "<section class=\"check {}\" id=\"check-{name}\" data-check=\"{name}\" data-state=\"{}\">\
             <h2><span class=\"dot\"></span><span class=\"name\">{name}</span> \
             <span class=\"kind\">{}</span> <span class=\"state\">{}</span></h2><dl>",
            state.class(),
            state.class(),
            esc(&self.entry.kind),
            state.as_str(),
        );
        match &self.latest {
            None => {
                let _ = write!(
                    w,
                    "<dt>last run</dt><dd class=\"last-run\">none yet (runs every {})</dd>",
                    Go(self.entry.interval)
                );
            }
            Some(outcome) => self.render_outcome(w, outcome, now),
        }
        w.push_str("</dl>");
        self.render_history(w);
        w.push_str("</section>");
    }

    fn render_outcome(&self, w: &mut String, outcome: &Outcome, now: SystemTime) {
        if let Err(failure) = &outcome.result {
            let _ = write!(
                w,
                "<dt>reason</dt><dd class=\"reason\">{}</dd><dt>error</dt><dd class=\"error\">{}</dd>",
                esc(failure.reason.as_str()),
                esc(&failure.message)
            );
        } else if !outcome.reported_ok() {
            // Hysteresis: the run passed, the verdict has not caught up.
            w.push_str(
                "<dt>reason</dt><dd class=\"reason\">recovering</dd>\
                 <dt>error</dt><dd class=\"error\">passing again, but not yet PASS_AFTER runs in a row</dd>",
            );
        }
        if let Some(since) = self.recent.failing_since {
            let _ = write!(
                w,
                "<dt>failing</dt><dd class=\"failing-for\">failing for {}, since {}</dd>",
                ago(now, since),
                clock(since)
            );
        }
        let verdict = outcome.verdict.as_ref();
        let last_run = verdict.map_or(outcome.finished, |v| v.last_run);
        let _ = write!(
            w,
            "<dt>last run</dt><dd class=\"last-run\"><time datetime=\"{}\">{} ago, at {}</time>, took {}</dd>",
            rfc3339(last_run),
            ago(now, last_run),
            clock(last_run),
            Millis(outcome.duration)
        );
        match verdict.and_then(|v| v.last_success) {
            Some(at) => {
                let _ = write!(
                    w,
                    "<dt>last success</dt><dd class=\"last-success\"><time datetime=\"{}\">{} ago, at {}</time></dd>",
                    rfc3339(at),
                    ago(now, at),
                    clock(at)
                );
            }
            None => w.push_str("<dt>last success</dt><dd class=\"last-success\">never</dd>"),
        }
        let identity: Vec<String> = IDENTITY_NOTES
            .iter()
            .filter_map(|key| {
                let (_, value) = outcome.notes.iter().find(|(k, _)| k == key)?;
                Some(format!("<span class=\"{key}\">{key}: {}</span>", esc(&note_text(value))))
            })
            .collect();
        if !identity.is_empty() {
            let _ = write!(w, "<dt>identity</dt><dd class=\"identity\">{}</dd>", identity.join(" \u{b7} "));
        }
        if let Some((_, serde_json::Value::String(at))) =
            outcome.notes.iter().find(|(k, _)| *k == TLS_EXPIRES)
        {
            certificate(w, at, now);
        }
        if let Some((_, serde_json::Value::Object(phases))) = outcome.notes.iter().find(|(k, _)| *k == PHASES)
        {
            let text: Vec<String> = phases
                .iter()
                .map(|(phase, ms)| format!("{} {}", esc(phase), fine_ms(ms.as_f64().unwrap_or(0.0))))
                .collect();
            let _ = write!(w, "<dt>phases</dt><dd class=\"phases\">{}</dd>", text.join(" \u{b7} "));
        }
        let other: Vec<String> = outcome
            .notes
            .iter()
            .filter(|(k, _)| !IDENTITY_NOTES.contains(k) && *k != PHASES && *k != TLS_EXPIRES)
            .map(|(k, v)| format!("{}: {}", esc(k), esc(&note_text(v))))
            .collect();
        if !other.is_empty() {
            let _ = write!(w, "<dt>noted</dt><dd class=\"notes\">{}</dd>", other.join(" \u{b7} "));
        }
    }

    /// The strip of cells (oldest left) and the latency sparkline.
    fn render_history(&self, w: &mut String) {
        let samples = &self.recent.samples;
        let failed = samples.iter().filter(|s| !s.ok()).count();
        let _ = write!(
            w,
            "<div class=\"history\"><p class=\"caption\">last {} of up to {CAPACITY} runs, oldest first: \
             {} passed, {failed} failed</p><ol class=\"strip\" aria-label=\"recent runs\">",
            samples.len(),
            samples.len() - failed,
        );
        for sample in samples {
            let (class, what) = match sample.reason {
                None => ("ok", "passed"),
                Some(crate::contract::Reason::Timeout) => ("timeout", "timeout"),
                Some(reason) => ("fail", reason.as_str()),
            };
            let phase = sample.slowest_phase().map(|p| format!(" \u{b7} {p}")).unwrap_or_default();
            let _ = write!(
                w,
                "<li class=\"cell {class}\" title=\"{} \u{b7} {} \u{b7} {what}{phase}\"></li>",
                rfc3339(sample.at()),
                Millis(sample.duration())
            );
        }
        w.push_str("</ol>");
        sparkline(w, samples);
        w.push_str("</div>");
    }
}

/// Run durations as a line, scaled to the slowest kept run; failed runs
/// are marked with a red dot so a fast failure is not mistaken for health.
fn sparkline(w: &mut String, samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    const WIDTH: f64 = 240.0;
    const HEIGHT: f64 = 32.0;
    let max = samples.iter().map(|s| s.micros).max().unwrap_or(0).max(1);
    let step = WIDTH / (CAPACITY - 1) as f64;
    let point = |i: usize, s: &Sample| {
        let x = i as f64 * step;
        let y = HEIGHT - 2.0 - (f64::from(s.micros) / f64::from(max)) * (HEIGHT - 4.0);
        (x, y)
    };
    let points: Vec<String> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (x, y) = point(i, s);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        w,
        "<svg class=\"spark\" viewBox=\"-3 0 {} {HEIGHT}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"run durations, slowest {}\"><title>run durations, slowest {}</title>\
         <polyline points=\"{}\"/>",
        WIDTH + 6.0,
        Millis(Duration::from_micros(u64::from(max))),
        Millis(Duration::from_micros(u64::from(max))),
        points.join(" ")
    );
    // A zero-length path with a round cap and a stroke that ignores the
    // stretching is a dot that stays round at any width.
    for (i, s) in samples.iter().enumerate().filter(|(_, s)| !s.ok()) {
        let (x, y) = point(i, s);
        let _ = write!(w, "<path class=\"failed\" d=\"M{x:.1},{y:.1}h0\"/>");
    }
    let _ = write!(
        w,
        "</svg><p class=\"caption\">slowest {}, latest {}</p>",
        Millis(Duration::from_micros(u64::from(max))),
        Millis(samples[samples.len() - 1].duration())
    );
}

/// `0.04ms`, `12.3ms`: phases are often far below a millisecond.
fn fine_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

/// When the server's certificates run out, as a person reads it; in the
/// failing colour under two weeks (when `KubernaryCertificateExpiring`
/// fires) and once past.
fn certificate(w: &mut String, at: &str, now: SystemTime) {
    let Some(expires) = crate::clock::parse_rfc3339(at) else { return };
    let (class, when) = match expires.duration_since(now) {
        Ok(left) if left < CERT_SOON => ("cert soon", format!("in {}", days(left))),
        Ok(left) => ("cert", format!("in {}", days(left))),
        Err(past) => ("cert expired", format!("{} ago", days(past.duration()))),
    };
    let _ = write!(
        w,
        "<dt>certificate</dt><dd class=\"{class}\">expires <time datetime=\"{}\">{}</time>, {when}</dd>",
        esc(at),
        esc(at)
    );
}

/// Under this long to go, a certificate is shown as a problem.
const CERT_SOON: Duration = Duration::from_secs(14 * 86400);

/// `240 days`, `1 day`, or hours under a day.
fn days(d: Duration) -> String {
    match d.as_secs() / 86400 {
        0 => format!("{}h", d.as_secs() / 3600),
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    }
}

fn note_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `4m12s`: whole seconds, as a person reads it.
fn ago(now: SystemTime, then: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or_default().as_secs();
    Go(Duration::from_secs(secs)).to_string()
}

/// `10:31:07Z`: the time of day in UTC, enough for "since when".
fn clock(at: SystemTime) -> String {
    let t = utc(at);
    format!("{:02}:{:02}:{:02}Z", t.hour, t.minute, t.second)
}

/// Escapes text for HTML content and double- or single-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// System fonts only; colours that stay apart for the common colour
/// blindnesses (timeouts amber, failures red with a darker edge).
const CSS: &str = "\
:root{color-scheme:light dark;--ok:#2da44e;--fail:#cf222e;--timeout:#d4a72c;--pending:#8c959f;--fg:#1f2328;--muted:#59636e;--bg:#fff;--card:#f6f8fa;--line:#d1d9e0}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#151b23;--line:#3d444d}}\
*{box-sizing:border-box}\
body{margin:0;padding:12px;font:15px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg)}\
header,main{max-width:60rem;margin:0 auto}\
h1{font-size:1.3rem;margin:0 0 4px}\
.summary{margin:0;font-size:1rem}.summary .failing{color:var(--fail)}.summary .passing{color:var(--ok)}\
.meta{margin:2px 0 12px;color:var(--muted);font-size:.8rem}\
.shutdown{padding:6px 10px;border-radius:6px;background:var(--timeout);color:#000}\
.check{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--pending);border-radius:8px;padding:10px 12px;margin:0 0 12px}\
.check.passing{border-left-color:var(--ok)}.check.failing{border-left-color:var(--fail)}\
h2{font-size:1.1rem;margin:0 0 6px;display:flex;flex-wrap:wrap;align-items:center;gap:6px}\
.dot{width:.8em;height:.8em;border-radius:50%;background:var(--pending)}\
.passing .dot{background:var(--ok)}.failing .dot{background:var(--fail)}\
.kind{font-size:.8rem;font-weight:normal;color:var(--muted);border:1px solid var(--line);border-radius:4px;padding:0 4px}\
.state{font-size:.9rem;margin-left:auto}.passing .state{color:var(--ok)}.failing .state{color:var(--fail)}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:0 0 8px;font-size:.9rem}\
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}\
.cert.soon,.cert.expired{color:var(--fail);font-weight:600}\
.error{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}\
.caption{margin:2px 0;color:var(--muted);font-size:.75rem}\
.strip{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:repeat(60,1fr);gap:1px;height:22px}\
.cell{border-radius:2px;background:var(--pending)}\
.cell.ok{background:var(--ok)}.cell.fail{background:var(--fail)}.cell.timeout{background:var(--timeout)}\
.spark{display:block;width:100%;height:36px;margin-top:6px}\
.spark polyline{fill:none;stroke:var(--muted);stroke-width:1.5;vector-effect:non-scaling-stroke}\
.spark .failed{stroke:var(--fail);stroke-width:5;stroke-linecap:round;vector-effect:non-scaling-stroke}\
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Check, Failure, Reason};
    use crate::runs::Spec;
    use std::time::UNIX_EPOCH;

    struct Never;

    impl Check for Never {
        fn verb(&self) -> &'static str {
            "never"
        }
        fn run(&self, _: &crate::contract::Attempt) -> Result<(), Failure> {
            unreachable!("the status page never runs a check")
        }
    }

    fn entry(name: &str) -> Arc<Entry> {
        let spec = Spec {
            name: name.into(),
            kind: "tcp".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            fail_after: 1,
            pass_after: 1,
        };
        Arc::new(Entry::new(spec, Box::new(Never)))
    }

    #[test]
    fn escapes_everything_a_check_or_its_config_said() {
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        let entries = vec![entry("<script>alert(1)</script>")];
        let html = page(&entries, &History::new(), UNIX_EPOCH, false);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn a_check_before_its_first_run_is_not_yet_run_and_has_no_cells() {
        let entries = vec![entry("db")];
        let html = page(&entries, &History::new(), UNIX_EPOCH, false);
        assert!(html.contains("data-state=\"pending\""), "{html}");
        assert!(html.contains("<span class=\"state\">not yet run</span>"), "{html}");
        assert!(!html.contains("<li class=\"cell"), "{html}");
        assert!(!html.contains("<script"), "no script: {html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    }

    #[test]
    fn cells_come_from_the_history() {
        let history = History::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let at =
            |s: u64| (t0 + Duration::from_secs(s)).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        history.record("db", Sample { at_ms: at(0), micros: 900, reason: None, slowest: None });
        history.record(
            "db",
            Sample {
                at_ms: at(30),
                micros: 2_000_000,
                reason: Some(Reason::Timeout),
                slowest: Some((1, 99)),
            },
        );
        history.record(
            "db",
            Sample { at_ms: at(60), micros: 1200, reason: Some(Reason::Connect), slowest: None },
        );
        let entries = vec![entry("db")];
        let html = page(&entries, &history, t0 + Duration::from_secs(60 + 252), false);
        assert_eq!(html.matches("<li class=\"cell ").count(), 3, "{html}");
        assert!(html.contains("<li class=\"cell ok\" title=\"2026-11-18T"), "{html}");
        assert!(html.contains("2000.0ms \u{b7} timeout \u{b7} connect 99%\"></li>"), "{html}");
        assert!(html.contains("\u{b7} 1.2ms \u{b7} connect\"></li>"), "{html}");
        assert_eq!(
            html.matches("<path class=\"failed\"").count(),
            2,
            "failed runs are marked on the sparkline"
        );
    }

    /// Passes, noting when the server's certificate expires.
    struct Expiring(&'static str);

    impl Check for Expiring {
        fn verb(&self) -> &'static str {
            "request"
        }
        fn run(&self, attempt: &crate::contract::Attempt) -> Result<(), Failure> {
            attempt.note(TLS_EXPIRES, self.0);
            Ok(())
        }
    }

    #[test]
    fn a_certificate_close_to_its_expiry_is_shown_as_a_problem() {
        let expiring = |name: &str, at: &'static str| {
            let spec = Spec {
                name: name.into(),
                kind: "http".into(),
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(5),
                fail_after: 1,
                pass_after: 1,
            };
            Arc::new(Entry::new(spec, Box::new(Expiring(at))))
        };
        let entries = vec![
            expiring("status-unit-far", "2031-01-01T00:00:00Z"),
            expiring("status-unit-soon", "2030-01-06T12:00:00Z"),
        ];
        let runner = Runner::new(entries.clone(), vec![Arc::new(crate::history::Recorder)]);
        for entry in &entries {
            assert!(runner.start(entry).wait().ok());
        }
        let now = UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030-01-01T00:00:00Z
        let html = page(runner.entries(), crate::history::global(), now, false);
        assert!(
            html.contains("<dd class=\"cert\">expires <time datetime=\"2031-01-01T00:00:00Z\">2031-01-01T00:00:00Z</time>, in 365 days</dd>"),
            "{html}"
        );
        assert!(html.contains("<dd class=\"cert soon\">expires <time datetime=\"2030-01-06T12:00:00Z\">2030-01-06T12:00:00Z</time>, in 5 days</dd>"), "{html}");
        assert!(!html.contains("tls_expires"), "not shown twice, as a note too: {html}");
        let later = now + Duration::from_secs(7 * 86400);
        let html = page(runner.entries(), crate::history::global(), later, false);
        assert!(html.contains("<dd class=\"cert expired\">expires <time datetime=\"2030-01-06T12:00:00Z\">2030-01-06T12:00:00Z</time>, 1 day ago</dd>"), "{html}");
    }

    /// Fails as a refused connection would, noting who it ran as.
    struct Refused;

    impl Check for Refused {
        fn verb(&self) -> &'static str {
            "connect"
        }
        fn run(&self, attempt: &crate::contract::Attempt) -> Result<(), Failure> {
            attempt.note("credential_source", "web_identity");
            attempt.note("arn", "arn:aws:sts::111122223333:assumed-role/canary/<x>");
            Err(Failure::new(Reason::Connect, "connect to 127.0.0.1:1: Connection refused"))
        }
    }

    #[test]
    fn a_failing_check_says_why_since_when_and_as_whom() {
        let spec = Spec {
            name: "status-unit-refused".into(),
            kind: "tcp".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            fail_after: 1,
            pass_after: 1,
        };
        let entry = Arc::new(Entry::new(spec, Box::new(Refused)));
        let runner = Runner::new(vec![entry.clone()], vec![Arc::new(crate::history::Recorder)]);
        assert!(!runner.start(&entry).wait().ok());
        let now = SystemTime::now() + Duration::from_secs(252);
        let html = page(runner.entries(), crate::history::global(), now, false);
        assert!(html.contains("data-state=\"failing\""), "{html}");
        assert!(html.contains("<dd class=\"reason\">connect</dd>"), "{html}");
        assert!(
            html.contains("<dd class=\"error\">connect to 127.0.0.1:1: Connection refused</dd>"),
            "{html}"
        );
        assert!(html.contains("failing for 4m12s, since "), "{html}");
        assert!(html.contains("<dd class=\"last-success\">never</dd>"), "{html}");
        assert!(html.contains("credential_source: web_identity"), "{html}");
        assert!(html.contains("assumed-role/canary/&lt;x&gt;"), "the ARN is escaped: {html}");
        assert_eq!(html.matches("<li class=\"cell fail\"").count(), 1, "{html}");
    }
}
