//! Backends for the `http`, `tcp` and `kubernetes` checks: a tiny HTTP and
//! HTTPS server with configurable answers and bearer-token checking, and a
//! listener whose backlog is full, for connects that never complete.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{RecordedRequest, TestCa};

/// What the server answers on one path.
#[derive(Debug, Clone)]
pub struct Route {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Send the headers and half the body, then nothing more while the
    /// server lives: a backend that stalls mid-body.
    pub stall_body: bool,
}

impl Route {
    pub fn new(status: u16, body: &str) -> Route {
        Route { status, headers: Vec::new(), body: body.to_string(), stall_body: false }
    }
}

struct WebState {
    routes: Mutex<HashMap<String, Route>>,
    bearer: Mutex<Option<String>>,
    requests: Mutex<Vec<RecordedRequest>>,
    stop: AtomicBool,
    keep_alive: AtomicBool,
    connections: AtomicUsize,
}

/// An HTTP/1.1 server on loopback, plain or TLS (with a `TestCa` leaf),
/// thread per connection, `Connection: close` on every answer.
///
/// Paths answer what `set` / `redirect` configured; any other path is 404.
/// With `require_bearer(Some(t))`, a request without `Authorization: Bearer
/// t` gets 401 with a Kubernetes `Status` body, whatever the path. Every
/// request is recorded (path and headers).
pub struct WebServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<WebState>,
    thread: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Plain HTTP on 127.0.0.1.
    pub fn start() -> WebServer {
        WebServer::start_on("127.0.0.1:0", None)
    }

    /// HTTPS on 127.0.0.1 with `ca`'s leaf (names localhost, 127.0.0.1, ::1).
    pub fn start_tls(ca: &TestCa) -> WebServer {
        WebServer::start_on("127.0.0.1:0", Some(ca))
    }

    /// On any loopback address (`[::1]:0`), plain or TLS.
    pub fn start_on(bind: &str, tls: Option<&TestCa>) -> WebServer {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = listener.local_addr().expect("web server addr");
        assert!(addr.ip().is_loopback(), "{addr} is not loopback");
        let config = tls.map(server_config);
        let state = Arc::new(WebState {
            routes: Mutex::new(HashMap::new()),
            bearer: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            keep_alive: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = conn else { continue };
                let shared = shared.clone();
                let config = config.clone();
                std::thread::spawn(move || serve(stream, &shared, config));
            }
        });
        WebServer { addr, tls: tls.is_some(), state, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS so the
    /// name is verified as in production; `[::1]` for an IPv6 server.
    pub fn base_url(&self) -> String {
        let host = match (self.addr, self.tls) {
            (SocketAddr::V6(_), _) => format!("[::1]:{}", self.port()),
            (SocketAddr::V4(_), true) => format!("localhost:{}", self.port()),
            (SocketAddr::V4(a), false) => a.to_string(),
        };
        format!("{}://{host}", if self.tls { "https" } else { "http" })
    }

    /// `base_url()` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Answers `status` with `body` (text/plain) on `path`.
    pub fn set(&self, path: &str, status: u16, body: &str) {
        self.route(path, Route::new(status, body));
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state.routes.lock().unwrap().insert(path.to_string(), route);
    }

    /// Answers `status` with `Location: location` on `path`.
    pub fn redirect(&self, path: &str, status: u16, location: &str) {
        let mut route = Route::new(status, "");
        route.headers.push(("Location".to_string(), location.to_string()));
        self.route(path, route);
    }

    /// Requires `Authorization: Bearer <token>` from now on (None: not).
    pub fn require_bearer(&self, token: Option<&str>) {
        *self.state.bearer.lock().unwrap() = token.map(str::to_string);
    }

    /// Keeps connections open for further requests, as most servers do,
    /// instead of answering `Connection: close`.
    pub fn set_keep_alive(&self, on: bool) {
        self.state.keep_alive.store(on, Ordering::SeqCst);
    }

    /// Connections that carried at least one request.
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn server_config(ca: &TestCa) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("parse leaf cert");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(ca.key_pem().as_bytes()).expect("parse leaf key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    Arc::new(config)
}

fn serve(stream: TcpStream, state: &WebState, tls: Option<Arc<rustls::ServerConfig>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    match tls {
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            for first in [true].into_iter().chain(std::iter::repeat(false)) {
                if !exchange(&mut tls, state, first) {
                    break;
                }
            }
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        None => {
            let mut plain = stream;
            for first in [true].into_iter().chain(std::iter::repeat(false)) {
                if !exchange(&mut plain, state, first) {
                    break;
                }
            }
        }
    }
}

/// Reads one request and writes the answer; true if the connection stays
/// open for another. A client that fails the TLS handshake (a check without
/// our CA) ends here with an error, quietly.
fn exchange(stream: &mut (impl Read + Write), state: &WebState, first: bool) -> bool {
    let mut reader = BufReader::new(&mut *stream);
    // A TLS ClientHello on the plain port: answer in plain HTTP, as real
    // servers do, so the client sees a non-TLS answer (not a silent close).
    if reader.fill_buf().is_ok_and(|b| b.first() == Some(&0x16)) {
        drop(reader);
        let _ =
            stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return false;
    }
    let Some(request) = read_head(&mut reader) else {
        return false; // not HTTP, a failed handshake, our own wake-up
                      // connection, or a kept-alive one the client closed
    };
    drop(reader);
    if first {
        state.connections.fetch_add(1, Ordering::SeqCst);
    }
    let keep_alive = state.keep_alive.load(Ordering::SeqCst);
    let path = request.path.clone();
    let presented = request.header("authorization").map(str::to_string);
    state.requests.lock().unwrap().push(request);

    let bearer = state.bearer.lock().unwrap().clone();
    let route = match bearer {
        Some(token) if presented.as_deref() != Some(format!("Bearer {token}").as_str()) => {
            let mut route = Route::new(
                401,
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
            );
            route.headers.push(("Content-Type".into(), "application/json".into()));
            route
        }
        _ => state
            .routes
            .lock()
            .unwrap()
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Route::new(404, "404 page not found\n")),
    };

    let mut head = format!("HTTP/1.1 {} Test\r\n", route.status);
    if !route.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        head.push_str("Content-Type: text/plain\r\n");
    }
    for (name, value) in &route.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        route.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    ));
    let body = route.body.as_bytes();
    let sent = if route.stall_body { &body[..body.len() / 2] } else { body };
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(sent);
    let _ = stream.flush();
    if route.stall_body {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until && !state.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return false;
    }
    keep_alive
}

fn read_head(reader: &mut impl BufRead) -> Option<RecordedRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(RecordedRequest { method, path, headers })
}

/// A listener on 127.0.0.1 that never accepts, with its accept queue
/// filled by connections this struct holds: the kernel then drops further
/// SYNs, so a client's connect neither succeeds nor fails until its own
/// timeout: the loopback stand-in for a black-holed address.
pub struct FullBacklog {
    addr: SocketAddr,
    _listener: TcpListener,
    held: Vec<TcpStream>,
}

impl FullBacklog {
    pub fn start() -> FullBacklog {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backlog listener");
        let addr = listener.local_addr().expect("backlog listener addr");
        let mut held = Vec::new();
        // std listens with a backlog of 128; the queue takes one more.
        for _ in 0..10_000 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => held.push(stream),
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    return FullBacklog { addr, _listener: listener, held };
                }
                Err(e) => panic!("filling the backlog of {addr}: {e}"),
            }
        }
        panic!("the backlog of {addr} never filled");
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections fill the queue.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}
