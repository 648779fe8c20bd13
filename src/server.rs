//! The HTTP endpoints, on tiny_http.
//!
//! One thread takes requests from tiny_http and answers the cheap ones
//! (`/livez`, `/metrics`, `/quitquitquit`, cached `/health`, 404, 405)
//! itself. A `/health` that runs checks waits for them, up to their
//! timeouts, so it gets a thread of its own: a slow `/health` then never
//! holds up `/livez` or another request. The threads are reused while
//! requests keep coming (see [`Elastic`]), and their number is capped; past
//! the cap `/health` answers 503 at once.

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use serde_json::{json, Map, Value};
use tiny_http::{Header, Method, Request, Response};

use crate::checks::Reason;
use crate::cli::Options;
use crate::duration::Go;
use crate::pool::Elastic;
use crate::runs::{Entry, Outcome, Runner};
use crate::shutdown::{InFlight, Shutdown, Ticket};
use crate::verdict::rfc3339;

/// Concurrent `/health` handlers; each mostly sleeps on a channel, and
/// concurrent probes share runs, so this is far above any real need.
const MAX_HEALTH_HANDLERS: usize = 256;
/// A handler builds a JSON answer and logs a line: a few frames of serde
/// and formatting, far below this.
const HANDLER_STACK: usize = 128 * 1024;
/// How long a handler thread waits for the next `/health` before it ends:
/// above a busy prober's interval, so that load reuses threads rather than
/// making one per request, and nothing is kept once probes stop.
const HANDLER_LINGER: Duration = Duration::from_secs(5);

pub struct App {
    pub runner: Arc<Runner>,
    pub shutdown: Shutdown,
    pub inflight: InFlight,
    quitquitquit: bool,
    cached_health: bool,
    /// `/health` handlers waiting for checks, at most [`MAX_HEALTH_HANDLERS`].
    handlers: AtomicUsize,
    handler_pool: Elastic,
}

impl App {
    pub fn new(runner: Arc<Runner>, shutdown: Shutdown, options: &Options) -> App {
        App {
            runner,
            shutdown,
            inflight: InFlight::default(),
            quitquitquit: options.quitquitquit,
            cached_health: options.cached_health,
            handlers: AtomicUsize::new(0),
            handler_pool: Elastic::new("health", HANDLER_STACK, HANDLER_LINGER),
        }
    }
}

/// Binds the first of `addrs` that can be bound (`:10002` offers IPv6
/// dual-stack first, then IPv4 for kernels without IPv6).
pub fn bind(addrs: &[SocketAddr]) -> Result<TcpListener, String> {
    let mut errors = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("cannot listen: {}", errors.join("; ")))
}

/// The tiny_http server in service, so a panic in one of its threads can
/// wake the supervisor (see [`foreign_panic`]).
static CURRENT: Mutex<Option<Arc<tiny_http::Server>>> = Mutex::new(None);

/// Called by the panic hook for panics in threads we did not name, which are
/// tiny_http's. Its accept thread dies when it cannot spawn a connection
/// thread (at the thread limit), so the supervisor restarts it.
pub fn foreign_panic() {
    if let Some(server) = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        server.unblock();
    }
}

/// Serves on `listener` until the process exits. tiny_http's accept loop
/// ends for good on its first accept error (out of file descriptors, say)
/// and its accept thread dies if a connection thread cannot be spawned; in
/// both cases this supervisor starts a fresh tiny_http on the same socket,
/// which we keep open meanwhile, so connections wait in the backlog instead
/// of being refused.
pub fn spawn(listener: TcpListener, app: Arc<App>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("http".into()).stack_size(HANDLER_STACK).spawn(move || {
        let mut backoff = Duration::from_millis(50);
        loop {
            let http = match listener
                .try_clone()
                .map_err(|e| e.to_string())
                .and_then(|l| tiny_http::Server::from_listener(l, None).map_err(|e| e.to_string()))
            {
                Ok(http) => Arc::new(http),
                Err(e) => {
                    warn!("http: cannot start serving: {e}; retrying in {}", Go(backoff));
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(http.clone());
            let error = loop {
                match http.recv() {
                    Ok(request) => {
                        backoff = Duration::from_millis(50);
                        dispatch(request, &app)
                    }
                    Err(e) => break e,
                }
            };
            warn!("http: the server stopped accepting ({error}); restarting it in {}", Go(backoff));
            CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(http);
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Livez,
    Metrics,
    Health(Option<&'a str>),
    Quit,
    NotFound,
    WrongMethod(&'static str),
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    let read = matches!(method, Method::Get | Method::Head);
    let known =
        |allow: &'static str, ok: bool, route: Route<'a>| if ok { route } else { Route::WrongMethod(allow) };
    match path {
        "/livez" => known("GET, HEAD", read, Route::Livez),
        "/metrics" => known("GET, HEAD", read, Route::Metrics),
        "/health" | "/health/" => known("GET, HEAD", read, Route::Health(None)),
        "/quitquitquit" => known("GET, POST", matches!(method, Method::Get | Method::Post), Route::Quit),
        _ => match path.strip_prefix("/health/") {
            Some(name) if !name.contains('/') => known("GET, HEAD", read, Route::Health(Some(name))),
            _ => Route::NotFound,
        },
    }
}

/// `cached=true` (or `1`) asks for the latest results; `cached=false`
/// overrides `--cached-health`.
fn wants_cached(query: &str, default: bool) -> bool {
    query
        .rsplit('&')
        .filter_map(|pair| pair.strip_prefix("cached="))
        .next()
        .map_or(default, |v| matches!(v, "true" | "1" | "yes"))
}

fn dispatch(request: Request, app: &Arc<App>) {
    let ticket = app.inflight.enter(request.remote_addr().copied());
    let started = Instant::now();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    match route(request.method(), path) {
        Route::Livez => respond(request, started, text(200, "ok\n")),
        Route::Metrics => {
            let body = app.runner.metrics().prometheus.render();
            let response = Response::from_string(body)
                .with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"));
            respond(request, started, response)
        }
        Route::Quit if !app.quitquitquit => {
            respond(request, started, text(403, "/quitquitquit is turned off (--no-quitquitquit)\n"))
        }
        Route::Quit => {
            respond(request, started, text(200, "shutting down\n"));
            app.shutdown.trigger("/quitquitquit requested");
        }
        Route::NotFound => respond(request, started, text(404, "not found\n")),
        Route::WrongMethod(allow) => {
            let response = text(405, "method not allowed\n").with_header(header("Allow", allow));
            respond(request, started, response)
        }
        Route::Health(name) => {
            let entries: Vec<Arc<Entry>> = match name {
                None => app.runner.entries().to_vec(),
                Some(name) => match app.runner.entry(name) {
                    Some(entry) => vec![entry.clone()],
                    None => {
                        return respond(request, started, text(404, &format!("no check named {name:?}\n")))
                    }
                },
            };
            if app.shutdown.is_set() {
                return respond(request, started, shutting_down(&entries));
            }
            if wants_cached(query, app.cached_health) {
                return respond(request, started, cached(&entries));
            }
            spawn_health(request, entries, app.clone(), ticket, started);
        }
    }
}

fn spawn_health(request: Request, entries: Vec<Arc<Entry>>, app: Arc<App>, ticket: Ticket, started: Instant) {
    if app.handlers.fetch_add(1, Ordering::SeqCst) >= MAX_HEALTH_HANDLERS {
        app.handlers.fetch_sub(1, Ordering::SeqCst);
        return respond(request, started, text(503, "too many /health requests at once\n"));
    }
    // The request comes back if no thread can take the job, to be answered 500.
    let (tx, rx) = crossbeam_channel::bounded::<Request>(1);
    let worker_app = app.clone();
    let submitted = app.handler_pool.submit(move |release| {
        let _ticket = ticket;
        let request = rx.recv();
        let response = request.is_ok().then(|| health(&worker_app, &entries));
        // Done waiting: the thread may take the next /health, which the
        // client sends as soon as it has this answer.
        worker_app.handlers.fetch_sub(1, Ordering::SeqCst);
        release.now();
        if let (Ok(request), Some(response)) = (request, response) {
            respond(request, started, response);
        }
    });
    match submitted {
        Ok(()) => {
            let _ = tx.send(request);
        }
        Err(e) => {
            app.handlers.fetch_sub(1, Ordering::SeqCst);
            warn!("http: cannot start a /health handler: {e}");
            respond(request, started, text(500, "internal error: cannot start a handler\n"));
        }
    }
}

/// Runs the checks (joining runs already going) and reports them all.
fn health(app: &App, entries: &[Arc<Entry>]) -> Response<Cursor<Vec<u8>>> {
    // Start every run before waiting on any, so they run side by side and
    // the answer comes when the slowest is done or timed out.
    let runs: Vec<_> = entries.iter().map(|e| app.runner.start(e)).collect();
    let mut body = Map::new();
    let mut all_ok = true;
    for (entry, run) in entries.iter().zip(runs) {
        let outcome = run.wait();
        all_ok &= outcome.reported_ok();
        body.insert(entry.name.clone(), outcome_json(entry, &outcome));
    }
    json_response(if all_ok { 200 } else { 503 }, &Value::Object(body))
}

/// Answers from the latest settled runs without running anything. A result
/// older than twice its check's interval is stale: the scheduler is behind
/// or stuck, and that is a failure in itself.
fn cached(entries: &[Arc<Entry>]) -> Response<Cursor<Vec<u8>>> {
    let mut body = Map::new();
    let mut all_ok = true;
    for entry in entries {
        let limit = entry.interval * 2;
        let value = match entry.latest() {
            None => failed_json(entry, "no run has finished yet", "stale"),
            Some(outcome) => {
                let age = SystemTime::now().duration_since(outcome.finished).unwrap_or_default();
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
    json_response(if all_ok { 200 } else { 503 }, &Value::Object(body))
}

fn shutting_down(entries: &[Arc<Entry>]) -> Response<Cursor<Vec<u8>>> {
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
        fields.insert((*key).into(), value.clone().into());
    }
    Value::Object(fields)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header")
}

fn text(status: u16, body: &str) -> Response<Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn json_response(status: u16, body: &Value) -> Response<Cursor<Vec<u8>>> {
    match serde_json::to_string(body) {
        Ok(text) => Response::from_string(text)
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json")),
        Err(e) => self::text(500, &format!("internal error: {e}\n")),
    }
}

/// Answers and logs one request: method, path, peer, status, duration.
fn respond(request: Request, started: Instant, response: Response<Cursor<Vec<u8>>>) {
    let status = response.status_code().0;
    let method = request.method().clone();
    let url = request.url().to_string();
    let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    // Say as little about ourselves as HTTP allows.
    let response = response.with_header(header("Server", "kubernary"));
    let sent = request.respond(response);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match sent {
        Ok(()) => info!("{method} {url} from {peer}: {status} in {ms:.1}ms"),
        Err(e) => info!("{method} {url} from {peer}: {status} not delivered ({e}) after {ms:.1}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::Get, "/health"), Route::Health(None));
        assert_eq!(route(&Method::Head, "/health/s3"), Route::Health(Some("s3")));
        assert_eq!(route(&Method::Get, "/health/a/b"), Route::NotFound);
        assert_eq!(route(&Method::Post, "/quitquitquit"), Route::Quit);
        assert_eq!(route(&Method::Delete, "/livez"), Route::WrongMethod("GET, HEAD"));
        assert_eq!(route(&Method::Get, "/metrics"), Route::Metrics);
    }

    #[test]
    fn cached_query() {
        assert!(wants_cached("cached=true", false));
        assert!(wants_cached("a=1&cached=1", false));
        assert!(!wants_cached("cached=false", true));
        assert!(wants_cached("", true));
        assert!(!wants_cached("", false));
    }
}
