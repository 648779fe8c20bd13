//! The HTTP endpoints, on tiny_http.
//!
//! One thread takes requests from tiny_http and hands each to a thread of
//! its own, which works out the answer and writes it. The taking thread
//! never writes: a client that stops reading its answers can then block
//! only its own handlers (each write is bounded by the send timeout every
//! accepted socket inherits from the listener), never `/livez` or anyone
//! else's request. Handlers are capped overall and per connection; a
//! connection past a cap (pipelining without reading, say) is cut off.

use std::io::Cursor;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde_json::{json, Map, Value};
use tiny_http::{Header, Method, Request, Response};

use crate::cli::Options;
use crate::clock::rfc3339;
use crate::contract::Reason;
use crate::duration::Go;
use crate::metrics::Metrics;
use crate::pool::Elastic;
use crate::runs::{Entry, Outcome, Runner};
use crate::shutdown::{InFlight, Shutdown};

/// Concurrent handlers; a `/health` handler mostly sleeps on a channel, and
/// concurrent probes share runs, so this is far above any real need.
const MAX_HANDLERS: usize = 1024;
/// Requests one connection may have in flight: HTTP/1.1 answers in order,
/// so more only means a client pipelining without reading its answers.
const MAX_PER_CONNECTION: usize = 4;
const HANDLER_STACK: usize = 128 * 1024;
/// How long a handler thread waits for the next `/health` before it ends:
/// above a busy prober's interval, so that load reuses threads rather than
/// making one per request, and nothing is kept once probes stop.
const HANDLER_LINGER: Duration = Duration::from_secs(5);

pub struct App {
    pub runner: Arc<Runner>,
    /// For `/metrics`: the runner hands it results as one of its sinks.
    pub metrics: Arc<Metrics>,
    /// The listening port, to find a connection's socket when cutting it off.
    pub port: u16,
    pub shutdown: Shutdown,
    pub inflight: InFlight,
    quitquitquit: bool,
    cached_health: bool,
    /// `/health` handlers waiting for checks, at most [`MAX_HEALTH_HANDLERS`].
    handlers: AtomicUsize,
    /// The listening socket's descriptor (-1 until [`spawn`]), for
    /// [`App::stop_accepting`].
    listener: AtomicI32,
    /// False once the shutdown has closed the listener.
    accepting: AtomicBool,
    /// Handler threads, reused while requests keep coming.
    handler_pool: Elastic,
}

impl App {
    pub fn new(
        runner: Arc<Runner>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        options: &Options,
        port: u16,
    ) -> App {
        App {
            runner,
            metrics,
            port,
            shutdown,
            inflight: InFlight::default(),
            quitquitquit: options.quitquitquit,
            cached_health: options.cached_health,
            handlers: AtomicUsize::new(0),
            listener: AtomicI32::new(-1),
            accepting: AtomicBool::new(true),
            handler_pool: Elastic::new("handler", HANDLER_STACK, HANDLER_LINGER),
        }
    }

    /// Stops accepting connections, for the end of the shutdown: new
    /// connects are refused, and those the kernel had queued but nobody had
    /// accepted are reset, as when any server closes its listener. What
    /// tiny_http has accepted is still read and answered (see [`spawn`]).
    pub fn stop_accepting(&self) {
        if !self.accepting.swap(false, Ordering::SeqCst) {
            return;
        }
        let fd = self.listener.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: a descriptor the supervisor thread keeps open for the
            // life of the process. Shutting a listening socket down wakes
            // every accept on it (tiny_http's, on a duplicate) with EINVAL.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
    }
}

/// Binds the first of `addrs` that can be bound (`:10002` offers IPv6
/// dual-stack first, then IPv4 for kernels without IPv6).
///
/// tiny_http sets no timeouts on the sockets it accepts and has no hook to.
/// Linux copies a listener's send timeout to every socket it accepts (and
/// `accept` itself is not bound by it), so it is set here, once: no answer
/// to a client that stopped reading can block its writer for longer.
pub fn bind(addrs: &[SocketAddr], send_timeout: Duration) -> Result<TcpListener, String> {
    let mut errors = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                crate::reaper::set_send_timeout(std::os::fd::AsRawFd::as_raw_fd(&listener), send_timeout)
                    .map_err(|e| format!("{addr}: setting the send timeout: {e}"))?;
                return Ok(listener);
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(format!("cannot listen: {}", errors.join("; ")))
}

/// The tiny_http server in service, so a panic in one of its threads can
/// wake the supervisor (see [`accept_thread_died`]).
static CURRENT: Mutex<Option<Arc<tiny_http::Server>>> = Mutex::new(None);

/// Called by the panic hook when tiny_http's accept thread dies because it
/// could not spawn a connection thread (at the thread limit), so that the
/// supervisor restarts it.
pub fn accept_thread_died() {
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
///
/// Once the shutdown has stopped accepting ([`App::stop_accepting`]), the
/// accept loop's end is expected: no restart, and the requests tiny_http
/// had already accepted keep being answered until the process exits.
pub fn spawn(listener: TcpListener, app: Arc<App>) -> std::io::Result<JoinHandle<()>> {
    app.listener.store(listener.as_raw_fd(), Ordering::SeqCst);
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
                        // A bug here must not end serving for good.
                        let _ = catch_unwind(AssertUnwindSafe(|| dispatch(request, &app)));
                    }
                    Err(e) => break e,
                }
            };
            if !app.accepting.load(Ordering::SeqCst) {
                debug!("http: stopped accepting for the shutdown ({error})");
                answer_accepted(&http, &app);
            }
            warn!("http: the server stopped accepting ({error}); restarting it in {}", Go(backoff));
            CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(http);
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// Answers what tiny_http accepted before the listener closed, until the
/// process exits.
fn answer_accepted(http: &tiny_http::Server, app: &Arc<App>) -> ! {
    loop {
        match http.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(request)) => dispatch(request, app),
            Ok(None) => {}
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Livez,
    Metrics,
    Health(Option<&'a str>),
    Status,
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
        "/" | "/status" => known("GET, HEAD", read, Route::Status),
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
    let started = Instant::now();
    let peer = request.remote_addr().copied();
    if app.inflight.count_from(peer) >= MAX_PER_CONNECTION {
        return cut_off(request, app, "too many requests in flight on one connection");
    }
    if app.handlers.fetch_add(1, Ordering::SeqCst) >= MAX_HANDLERS {
        app.handlers.fetch_sub(1, Ordering::SeqCst);
        return cut_off(request, app, "too many requests in flight");
    }
    let ticket = app.inflight.enter(peer);
    // The request comes back if the thread cannot start.
    let (tx, rx) = crossbeam_channel::bounded::<Request>(1);
    let worker = app.clone();
    let spawned = app.handler_pool.submit(move |_release| {
        if let Ok(request) = rx.recv() {
            handle(request, &worker, started);
        }
        drop(ticket);
        worker.handlers.fetch_sub(1, Ordering::SeqCst);
    });
    match spawned {
        Ok(()) => {
            let _ = tx.send(request);
        }
        Err(e) => {
            app.handlers.fetch_sub(1, Ordering::SeqCst);
            cut_off(request, app, &format!("cannot start a handler: {e}"));
        }
    }
}

/// Drops a request without answering on this thread: its connection is shut
/// first, so the 500 tiny_http writes for a dropped request fails at once
/// instead of blocking on a client that does not read.
fn cut_off(request: Request, app: &App, why: &str) {
    let peer = request.remote_addr().copied();
    warn!(
        "http: {} {} from {}: connection closed: {why}",
        request.method(),
        request.url(),
        peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    );
    if let Some(peer) = peer {
        crate::reaper::shut(app.port, peer);
    }
    drop(request);
}

/// Works out the answer to one request and writes it, on a handler thread.
fn handle(request: Request, app: &App, started: Instant) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let route = route(request.method(), path);
    let quit = matches!(route, Route::Quit) && app.quitquitquit;
    let answer = catch_unwind(AssertUnwindSafe(|| answer(app, route, query)));
    let response = answer.unwrap_or_else(|_| text(500, "internal error\n"));
    respond(request, started, response);
    if quit {
        app.shutdown.trigger("/quitquitquit requested");
    }
}

fn answer(app: &App, route: Route<'_>, query: &str) -> Response<Cursor<Vec<u8>>> {
    match route {
        Route::Livez => text(200, "ok\n"),
        Route::Metrics => Response::from_string(app.metrics.prometheus.render())
            .with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")),
        Route::Status => crate::status::response(&app.runner, app.shutdown.is_set()),
        Route::Quit if !app.quitquitquit => text(403, "/quitquitquit is turned off (--no-quitquitquit)\n"),
        Route::Quit => text(200, "shutting down\n"),
        Route::NotFound => text(404, "not found\n"),
        Route::WrongMethod(allow) => text(405, "method not allowed\n").with_header(header("Allow", allow)),
        Route::Health(name) => {
            let entries: Vec<Arc<Entry>> = match name {
                None => app.runner.entries().to_vec(),
                Some(name) => match app.runner.entry(name) {
                    Some(entry) => vec![entry.clone()],
                    None => return text(404, &format!("no check named {name:?}\n")),
                },
            };
            if app.shutdown.is_set() {
                shutting_down(&entries)
            } else if wants_cached(query, app.cached_health) {
                cached(&entries, query)
            } else {
                health(app, &entries, query)
            }
        }
    }
}

/// Runs the checks (joining runs already going) and reports them all.
fn health(app: &App, entries: &[Arc<Entry>], query: &str) -> Response<Cursor<Vec<u8>>> {
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
    crate::history::global().annotate(&mut body, query);
    json_response(if all_ok { 200 } else { 503 }, &Value::Object(body))
}

/// Answers from the latest settled runs without running anything. A result
/// older than twice its check's interval is stale: the scheduler is behind
/// or stuck, and that is a failure in itself.
fn cached(entries: &[Arc<Entry>], query: &str) -> Response<Cursor<Vec<u8>>> {
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
    crate::history::global().annotate(&mut body, query);
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
        fields.insert((*key).into(), value.clone());
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
    crate::logging::request(method.as_str(), &url, &peer, status, started.elapsed(), &sent);
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
        assert_eq!(route(&Method::Get, "/"), Route::Status);
        assert_eq!(route(&Method::Head, "/status"), Route::Status);
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
