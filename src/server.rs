//! The HTTP endpoints, on the vendored tiny_http.
//!
//! tiny_http calls [`handle`] with each request on the thread of the
//! connection it came on: a request crosses no thread, a cheap answer
//! (`/livez`, `/metrics`, a cached `/health`, 404, 405) is written at once,
//! and a `/health` that waits for its checks holds only its own
//! connection's thread, for the checks' timeouts at most. Threads are then
//! one per open connection, and connections are capped
//! (`--max-connections`). The limits on each connection (header deadline,
//! idle and write timeouts, header and body caps) live in tiny_http itself,
//! set from [`limits`]; see docs/reliability.md.

use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use serde_json::Value;
use tiny_http::{Event, Method, Request};

use crate::cli::Options;
use crate::duration::Go;
use crate::metrics::Metrics;
use crate::render::{self, header, text, Answer};
use crate::runs::{Entry, Runner, Started};
use crate::schedstat::Mark;
use crate::shutdown::Shutdown;

/// Request line and headers: a probe or a scrape sends a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// No endpoint reads a body; a `POST /quitquitquit` may carry a small one.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long one write of an answer may wait for a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection threads run a handler: routing, a wait on a channel, JSON.
const THREAD_STACK: usize = 256 * 1024;

pub struct App {
    pub runner: Arc<Runner>,
    /// For `/metrics`: the runner hands it results as one of its sinks.
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
    quitquitquit: bool,
    cached_health: bool,
    /// Set by [`spawn`].
    http: OnceLock<tiny_http::Server>,
}

impl App {
    pub fn new(runner: Arc<Runner>, metrics: Arc<Metrics>, shutdown: Shutdown, options: &Options) -> App {
        App {
            runner,
            metrics,
            shutdown,
            quitquitquit: options.quitquitquit,
            cached_health: options.cached_health,
            http: OnceLock::new(),
        }
    }

    /// Stops accepting connections, for the end of the shutdown: the
    /// listener is closed, so new connects are refused and those the kernel
    /// had queued are reset, as when any server closes its listener.
    /// Connections waiting between requests are closed; the others end
    /// after their current answer, which says `Connection: close`.
    pub fn stop_accepting(&self) {
        self.start_closing();
        if let Some(http) = self.http.get() {
            http.stop_accepting();
        }
    }

    /// From now on each connection ends after its current answer, which
    /// says `Connection: close`: the start of the shutdown.
    pub fn start_closing(&self) {
        if let Some(http) = self.http.get() {
            http.start_closing();
        }
    }

    /// Open connections: what the shutdown waits for after
    /// [`App::stop_accepting`], from tiny_http's own count.
    pub fn connections(&self) -> usize {
        self.http.get().map_or(0, |http| http.num_connections())
    }

    /// Requests that have begun to arrive and have no answer yet: what
    /// the shutdown drains, from tiny_http's own count.
    pub fn requests_in_progress(&self) -> usize {
        self.http.get().map_or(0, |http| http.requests_in_progress())
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

/// The limits on each connection, from the options.
pub fn limits(options: &Options) -> tiny_http::Limits {
    tiny_http::Limits {
        header_timeout: Some(options.http_header_timeout),
        idle_timeout: Some(options.http_idle_timeout),
        write_timeout: Some(WRITE_TIMEOUT),
        max_header_bytes: Some(MAX_HEADER_BYTES),
        max_body_bytes: Some(MAX_BODY_BYTES),
        max_connections: Some(options.max_connections),
        thread_stack_size: Some(THREAD_STACK),
        on_event: Some(Arc::new(report)),
    }
}

/// Serves on `listener` until the process exits (or [`App::stop_accepting`]).
pub fn spawn(listener: TcpListener, app: Arc<App>, limits: tiny_http::Limits) -> std::io::Result<()> {
    let handler_app = app.clone();
    let handler: tiny_http::Handler = Arc::new(move |request| handle(request, &handler_app));
    let http = tiny_http::Server::from_listener_with(listener, None, limits, Some(handler))
        .map_err(std::io::Error::other)?;
    let _ = app.http.set(http);
    Ok(())
}

/// When a refusal was last logged, in seconds since [`report`] first ran.
static REFUSED_LOGGED: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Logs what tiny_http tells: an accept that fails is logged once for the
/// burst (it is retried until it works), refusals at most every 10 s.
fn report(event: &Event<'_>) {
    match event {
        Event::AcceptFailed { error, retry_in } => warn!(
            "http: cannot accept connections: {error}; retrying in {}, backing off to 1s, until it works",
            Go(*retry_in)
        ),
        Event::AcceptResumed { failures } => {
            info!("http: accepting connections again after {failures} failed attempt(s)")
        }
        Event::Reclaimed { open } => {
            debug!("http: closed the connection idle longest to make room ({open} open, --max-connections)")
        }
        Event::Refused { peer, open } => {
            let now = EPOCH.get_or_init(Instant::now).elapsed().as_secs() + 1;
            let last = REFUSED_LOGGED.load(Ordering::Relaxed);
            if (last == 0 || now >= last + 10)
                && REFUSED_LOGGED.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                warn!(
                    "http: refusing new connections (503): all {open} open ones (--max-connections) are busy with a request, e.g. from {}",
                    peer.map_or_else(|| "-".to_string(), |p| p.to_string())
                );
            } else {
                debug!("http: refused a connection from {peer:?}: {open} open");
            }
        }
        _ => {}
    }
}

/// Every route, in one place.
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

/// A switch in the query string (`?cached=false`, `?history=1`), spelled
/// as a flag's value is: its last value, or `None` when it is absent or
/// neither true nor false.
fn query_switch(query: &str, key: &str) -> Option<bool> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == key)
        .last()
        .and_then(|(_, v)| crate::boolean::parse_bool(&v))
}

/// Works out the answer to one request and writes it, on the thread of the
/// connection it came on.
fn handle(request: Request, app: &App) {
    let started = Instant::now();
    // Two reads of /proc per request: only when the request is logged.
    let mark = if crate::logging::requests_logged() { Mark::here() } else { None };
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let route = route(request.method(), path);
    let quit = matches!(route, Route::Quit) && app.quitquitquit;
    let answer = catch_unwind(AssertUnwindSafe(|| answer(app, route, query)));
    let response = answer.unwrap_or_else(|_| text(500, "internal error\n"));
    respond(request, started, mark, response);
    if quit {
        app.shutdown.trigger("/quitquitquit requested");
    }
}

fn answer(app: &App, route: Route<'_>, query: &str) -> Answer {
    match route {
        Route::Livez => text(200, "ok\n"),
        Route::Metrics => tiny_http::Response::from_string(app.metrics.prometheus.render())
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
                render::shutting_down(&entries)
            } else if query_switch(query, "debug") == Some(true) {
                annotated(traced(app, entries), query)
            } else if query_switch(query, "cached").unwrap_or(app.cached_health) {
                annotated(render::cached(&entries), query)
            } else {
                annotated(health(app, entries), query)
            }
        }
    }
}

/// Runs the checks (joining runs already going) and reports them all.
fn health(app: &App, entries: Vec<Arc<Entry>>) -> render::Health {
    // Start every run before waiting on any, so they run side by side and
    // the answer comes when the slowest is done or timed out.
    let runs: Vec<_> = entries.iter().map(|e| app.runner.start(e)).collect();
    if log::log_enabled!(log::Level::Debug) {
        debug!("/health waits on {}", waits(&entries, &runs));
    }
    let results: Vec<_> = entries.into_iter().zip(runs).map(|(entry, run)| (entry, run.wait())).collect();
    render::outcomes(&results)
}

/// `s3 (joined its run started 1.2s ago), web (a new run)`: why an answer
/// took as long as it did, for `--debug`.
fn waits(entries: &[Arc<Entry>], runs: &[Started]) -> String {
    let each = entries.iter().zip(runs).map(|(entry, started)| match started {
        Started::New(_) => format!("{} (a new run)", entry.name),
        Started::Joined { run, .. } => {
            let ago = Duration::from_millis(run.started.elapsed().as_millis().try_into().unwrap_or(u64::MAX));
            format!("{} (joined its run started {} ago)", entry.name, Go(ago))
        }
    });
    each.collect::<Vec<_>>().join(", ")
}

/// `debug=true`: new runs that record their steps, each answered with its
/// `trace` (a run already going is joined, untraced, and says so).
fn traced(app: &App, entries: Vec<Arc<Entry>>) -> render::Health {
    let runs: Vec<_> = entries.iter().map(|e| app.runner.start_traced(e)).collect();
    let results: Vec<_> = entries.iter().cloned().zip(runs.iter().map(|r| r.wait())).collect();
    let (status, mut body) = render::outcomes(&results);
    for (entry, run) in entries.iter().zip(&runs) {
        if let Some(Value::Object(fields)) = body.get_mut(&entry.name) {
            let trace = run.run().trace();
            if trace.is_none() {
                fields.insert("trace_note".into(), "joined a run already going, which was not traced".into());
            }
            fields.insert("trace".into(), trace.unwrap_or_else(|| Value::Array(Vec::new())));
        }
    }
    (status, body)
}

/// A `/health` answer, with the history its query asks for.
fn annotated(health: render::Health, query: &str) -> Answer {
    let (status, mut body) = health;
    if query_switch(query, "history") == Some(true) {
        crate::history::global().annotate(&mut body);
    }
    render::json_response(status, &Value::Object(body))
}

/// Answers and logs one request: method, path, peer, status, duration, and
/// how long its thread waited for a CPU since `mark`.
fn respond(request: Request, started: Instant, mark: Option<Mark>, response: Answer) {
    let status = response.status_code().0;
    let method = request.method().clone();
    let url = request.url().to_string();
    let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    // Say as little about ourselves as HTTP allows.
    let response = response.with_header(header("Server", "kubernary"));
    let sent = request.respond(response);
    let cpu_wait = mark.and_then(|m| m.waited_since());
    crate::logging::request(method.as_str(), &url, &peer, status, started.elapsed(), cpu_wait, &sent);
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
    fn query_switches() {
        assert_eq!(query_switch("cached=true", "cached"), Some(true));
        assert_eq!(query_switch("a=1&cached=1", "cached"), Some(true));
        assert_eq!(query_switch("cached=false", "cached"), Some(false));
        assert_eq!(query_switch("history=T&cached=f&history=0", "history"), Some(false));
        assert_eq!(query_switch("debug=%74rue", "debug"), Some(true));
        assert_eq!(query_switch("", "cached"), None);
        assert_eq!(query_switch("cached=maybe", "cached"), None);
        assert_eq!(query_switch("xcached=true", "cached"), None);
    }
}
