//! A backend that fails on command: the fault server behind tests/faults.rs.
//!
//! One loopback port, plain HTTP or TLS (with a `TestCa` leaf), that answers
//! a configurable healthy reply until told to misbehave in one of the ways
//! of [`Fault`], and back again with [`Fault::Healthy`]: the port stays the
//! same through every fault, so a daemon's check follows it as it would a
//! real backend that fails and heals. It counts connections and records
//! requests (with the time they arrived).
//!
//! Plain blocking std code, thread per connection (test side only).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{RecordedRequest, TestCa};

/// How the server behaves from now on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answers the healthy reply.
    Healthy,
    /// Nothing listens on the port: connection refused.
    Refuse,
    /// Accepts, then resets the connection (RST, via a zero linger) once the
    /// client has had a moment to send.
    Reset,
    /// Stops accepting and fills the accept queue, so the kernel drops new
    /// SYNs: a connect that never completes (a black-holed address).
    Blackhole,
    /// Accepts and never sends a byte, nor closes (not even a TLS handshake).
    Hang,
    /// Reads the request, waits this long, then answers the healthy reply.
    SlowFirstByte(Duration),
    /// Sends the head (with a long Content-Length), then one body byte per
    /// interval.
    Trickle(Duration),
    /// Sends the head and half the body, then nothing more, without closing.
    StallHalfway,
    /// Answers this status with an AWS-style XML error body.
    Status(u16),
    /// On a TLS server: no handshake, a plain HTTP 400 to whatever the
    /// client sends (a TLS client on a plain-TCP port).
    PlainText,
}

impl Fault {
    /// For messages and figures: `refuse`, `slow-first-byte-1.5s`, ...
    pub fn label(&self) -> String {
        match self {
            Fault::Healthy => "healthy".into(),
            Fault::Refuse => "refuse".into(),
            Fault::Reset => "reset".into(),
            Fault::Blackhole => "connect-never-completes".into(),
            Fault::Hang => "accept-never-answer".into(),
            Fault::SlowFirstByte(d) => format!("first-byte-after-{:.1}s", d.as_secs_f64()),
            Fault::Trickle(d) => format!("trickle-1-byte-per-{}ms", d.as_millis()),
            Fault::StallHalfway => "stall-halfway".into(),
            Fault::Status(s) => format!("status-{s}"),
            Fault::PlainText => "tls-to-plain-tcp".into(),
        }
    }

    /// Faults the accept loop must act on (the listener itself changes).
    fn closes_listener(&self) -> bool {
        *self == Fault::Refuse
    }

    fn stops_accepting(&self) -> bool {
        matches!(self, Fault::Refuse | Fault::Blackhole)
    }
}

/// What a healthy backend answers (to any path).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: &str) -> Reply {
        Reply { status, content_type: content_type.to_string(), body: body.to_string() }
    }

    /// `200 ok`, text/plain.
    pub fn ok() -> Reply {
        Reply::new(200, "text/plain", "ok\n")
    }
}

/// One request as the server saw it, with when it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    pub request: RecordedRequest,
    pub at: Instant,
}

struct State {
    fault: Mutex<Fault>,
    /// Bumped by every `set`; the accept loop acknowledges it in `applied`.
    generation: AtomicU64,
    applied: Mutex<u64>,
    applied_cv: Condvar,
    healthy: Mutex<Reply>,
    requests: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    /// Connections held open by `Hang`, until the fault changes.
    held: Mutex<Vec<TcpStream>>,
    /// Client-side connections that fill the accept queue for `Blackhole`.
    fillers: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
    /// How long this server's threads waited for a CPU: the accept thread,
    /// the connection threads still going, and those that ended.
    accept_thread: Mutex<Option<CpuWait>>,
    serving: Mutex<Vec<Arc<CpuWait>>>,
    served_wait_ns: AtomicU64,
}

/// A thread of this process, and how long it had waited for a CPU (the
/// second field of Linux's schedstat, ns) when it was marked.
#[derive(Debug)]
struct CpuWait {
    tid: i32,
    at_mark: u64,
}

impl CpuWait {
    fn here() -> Option<CpuWait> {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        Some(CpuWait { tid, at_mark: schedstat_wait(&format!("/proc/self/task/{tid}/schedstat"))? })
    }

    fn since_mark(&self) -> u64 {
        schedstat_wait(&format!("/proc/self/task/{}/schedstat", self.tid))
            .map_or(0, |now| now.saturating_sub(self.at_mark))
    }
}

fn schedstat_wait(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.split_whitespace().nth(1)?.parse().ok()
}

impl State {
    fn fault(&self) -> Fault {
        self.fault.lock().unwrap().clone()
    }

    /// Sleeps up to `d` in small steps; false if the server stops or the
    /// fault changes meanwhile (so a stalled answer ends at a heal).
    fn pause(&self, d: Duration, generation: u64) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != generation {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
        }
        true
    }
}

/// A loopback backend that fails on command; see the module docs.
pub struct FaultServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    /// Plain HTTP on 127.0.0.1, answering `healthy`.
    pub fn start(healthy: Reply) -> FaultServer {
        FaultServer::start_inner(healthy, None)
    }

    /// HTTPS on 127.0.0.1 with `ca`'s leaf, answering `healthy`.
    pub fn start_tls(ca: &TestCa, healthy: Reply) -> FaultServer {
        FaultServer::start_inner(healthy, Some(super::web::server_config(ca)))
    }

    fn start_inner(healthy: Reply, tls: Option<Arc<rustls::ServerConfig>>) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault server");
        let addr = listener.local_addr().expect("fault server addr");
        let state = Arc::new(State {
            fault: Mutex::new(Fault::Healthy),
            generation: AtomicU64::new(0),
            applied: Mutex::new(0),
            applied_cv: Condvar::new(),
            healthy: Mutex::new(healthy),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            held: Mutex::new(Vec::new()),
            fillers: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            accept_thread: Mutex::new(None),
            serving: Mutex::new(Vec::new()),
            served_wait_ns: AtomicU64::new(0),
        });
        let shared = state.clone();
        let is_tls = tls.is_some();
        let thread = std::thread::spawn(move || {
            *shared.accept_thread.lock().unwrap() = CpuWait::here();
            accept_loop(listener, addr, &shared, tls)
        });
        FaultServer { addr, tls: is_tls, state, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS (the
    /// name verified as in production).
    pub fn base_url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Switches to `fault` and returns once it is in force: the port
    /// refuses, or its accept queue is full, or new connections get the
    /// new behaviour. Connections held by an earlier `Hang` or stall are
    /// closed, and those a `Blackhole` left queued are reset.
    pub fn set(&self, fault: Fault) {
        assert!(fault != Fault::PlainText || self.tls, "PlainText is a fault of a TLS server");
        let blackhole = fault == Fault::Blackhole;
        *self.state.fault.lock().unwrap() = fault.clone();
        let generation = self.state.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if fault != Fault::Hang {
            self.state.held.lock().unwrap().clear();
        }
        let applied = self.state.applied.lock().unwrap();
        let (applied, timeout) = self
            .state
            .applied_cv
            .wait_timeout_while(applied, Duration::from_secs(10), |a| *a < generation)
            .unwrap();
        assert!(!timeout.timed_out(), "the fault server did not apply {fault:?}");
        drop(applied);
        if blackhole {
            self.fill_backlog();
        } else {
            self.state.fillers.lock().unwrap().clear();
        }
    }

    pub fn heal(&self) {
        self.set(Fault::Healthy);
    }

    /// What a healthy answer is from now on.
    pub fn set_healthy(&self, reply: Reply) {
        *self.state.healthy.lock().unwrap() = reply;
    }

    fn fill_backlog(&self) {
        let mut fillers = self.state.fillers.lock().unwrap();
        for _ in 0..10_000 {
            match TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) {
                Ok(stream) => fillers.push(stream),
                Err(_) => return,
            }
        }
        panic!("the accept queue of {} never filled", self.addr);
    }

    /// Connections accepted (not counting those that fill the queue).
    pub fn connection_count(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests read in full (faults that answer before reading one, or
    /// never read, do not count them).
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How long this server's threads have waited for a CPU so far, in all:
    /// taken before and after an exchange, it says whether the backend (a
    /// thread of the test process) was starved while serving it.
    pub fn cpu_wait(&self) -> Duration {
        let state = &self.state;
        let accept = state.accept_thread.lock().unwrap().as_ref().map_or(0, CpuWait::since_mark);
        let serving = state.serving.lock().unwrap();
        let live: u64 = serving.iter().map(|m| m.since_mark()).sum();
        Duration::from_nanos(accept + live + state.served_wait_ns.load(Ordering::SeqCst))
    }

    /// Connections the kernel holds in this server's accept queue, not yet
    /// accepted (the `Recv-Q` that `ss -ltn` shows for a listener, read from
    /// `/proc/net/tcp`); `None` while nothing listens (`Refuse`).
    pub fn queued(&self) -> Option<usize> {
        listen_queue(self.addr)
    }

    /// Connections held by `Hang` whose client has not closed them yet: a
    /// check's worker closes its socket when it gives up, so this falls to
    /// zero once every run that hung here has returned.
    pub fn held_open(&self) -> usize {
        self.state.held.lock().unwrap().iter().filter(|c| super::fake_http::peer_open(c)).count()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.fillers.lock().unwrap().clear();
        self.state.held.lock().unwrap().clear();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts while the fault allows it; drops the listener for `Refuse` and
/// binds the same port again when the fault changes.
fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    state: &Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let mut listener = Some(listener);
    let mut was = Fault::Healthy;
    while !state.stop.load(Ordering::SeqCst) {
        let generation = state.generation.load(Ordering::SeqCst);
        let fault = state.fault();
        if fault.closes_listener() {
            listener = None;
        } else if listener.is_none() {
            listener = Some(rebind(addr));
        }
        if was == Fault::Blackhole && fault != Fault::Blackhole {
            if let Some(l) = &listener {
                discard_queued(l);
            }
        }
        was = fault.clone();
        {
            let mut applied = state.applied.lock().unwrap();
            if *applied < generation {
                *applied = generation;
                state.applied_cv.notify_all();
            }
        }
        let Some(l) = listener.as_ref().filter(|_| !fault.stops_accepting()) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if !readable(l, 20) {
            continue;
        }
        let Ok((stream, _)) = l.accept() else { continue };
        // The fault may have changed while we waited.
        if state.generation.load(Ordering::SeqCst) != generation && state.fault().stops_accepting() {
            continue;
        }
        state.connections.fetch_add(1, Ordering::SeqCst);
        let fault = state.fault();
        let generation = state.generation.load(Ordering::SeqCst);
        let state = state.clone();
        let tls = tls.clone();
        std::thread::spawn(move || {
            let mark = CpuWait::here().map(Arc::new);
            if let Some(mark) = &mark {
                state.serving.lock().unwrap().push(mark.clone());
            }
            handle(stream, &state, tls, fault, generation);
            if let Some(mark) = mark {
                // Under the lock, so that `cpu_wait` counts it once.
                let mut serving = state.serving.lock().unwrap();
                state.served_wait_ns.fetch_add(mark.since_mark(), Ordering::SeqCst);
                serving.retain(|m| !Arc::ptr_eq(m, &mark));
            }
        });
    }
}

/// Empties the accept queue a black hole filled, before the next fault is
/// in force. Accepted one thread each like any connection, the fillers took
/// seconds to go on a loaded machine, and meanwhile the queue stayed full:
/// the first connects after the heal lost their SYN (the 1 s of its first
/// retransmission) or waited behind the fillers for their handshake. Each
/// is reset, leaving no TIME_WAIT on the port for a later connect to meet.
fn discard_queued(listener: &TcpListener) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while let Ok((stream, _)) = listener.accept() {
        set_linger_zero(&stream);
    }
    let _ = listener.set_nonblocking(false);
}

/// The accept queue of the listener on `addr` (an IPv4 loopback port): in
/// `/proc/net/tcp` a listening socket (state `0A`) shows it as `rx_queue`.
fn listen_queue(addr: SocketAddr) -> Option<usize> {
    let local = format!(":{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local_addr, state, queues) = (fields.get(1)?, fields.get(3)?, fields.get(4)?);
        if !local_addr.ends_with(&local) || *state != "0A" {
            return None;
        }
        usize::from_str_radix(queues.split_once(':')?.1, 16).ok()
    })
}

fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() >= deadline => panic!("fault server: bind {addr} again: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Whether a connection waits on `listener`, within `ms`.
fn readable(listener: &TcpListener, ms: i32) -> bool {
    let mut fd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd, valid for the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}

/// Makes `close` send a reset instead of a FIN.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a struct that outlives the call, on an open socket.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn handle(
    stream: TcpStream,
    state: &State,
    tls: Option<Arc<rustls::ServerConfig>>,
    fault: Fault,
    generation: u64,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    match fault {
        Fault::Hang => {
            state.held.lock().unwrap().push(stream);
            return;
        }
        Fault::Reset => {
            set_linger_zero(&stream);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = (&stream).read(&mut [0u8; 4096]);
            return; // dropped: RST
        }
        Fault::PlainText => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = (&stream).read(&mut [0u8; 4096]);
            let _ = (&stream)
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        _ => {}
    }
    let mut conn: Box<dyn Conn> = match tls {
        Some(config) => match rustls::ServerConnection::new(config) {
            Ok(c) => Box::new(rustls::StreamOwned::new(c, stream)),
            Err(_) => return,
        },
        None => Box::new(stream),
    };
    let mut reader = BufReader::new(&mut conn);
    let Some(request) = read_request(&mut reader) else { return };
    drop(reader);
    state.requests.lock().unwrap().push(Seen { request, at: Instant::now() });
    let healthy = state.healthy.lock().unwrap().clone();
    match fault {
        Fault::Healthy => answer(&mut conn, &healthy),
        Fault::SlowFirstByte(delay) => {
            // Healed meanwhile: answer now.
            state.pause(delay, generation);
            answer(&mut conn, &healthy);
        }
        Fault::Status(status) => {
            let body = format!(
                "<?xml version=\"1.0\"?><Error><Code>FaultServer{status}</Code><Message>the fault server answers {status}</Message></Error>"
            );
            answer(&mut conn, &Reply::new(status, "application/xml", &body));
        }
        Fault::Trickle(every) => {
            let head = head(healthy.status, &healthy.content_type, 1 << 20);
            if conn.write_all(head.as_bytes()).and_then(|_| conn.flush()).is_err() {
                return;
            }
            while state.pause(every, generation) {
                if conn.write_all(b"x").and_then(|_| conn.flush()).is_err() {
                    return;
                }
            }
        }
        Fault::StallHalfway => {
            let body = "x".repeat(4096);
            let head = head(healthy.status, &healthy.content_type, body.len());
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body.as_bytes()[..body.len() / 2]);
            let _ = conn.flush();
            state.pause(Duration::from_secs(120), generation);
        }
        Fault::Refuse | Fault::Blackhole | Fault::Hang | Fault::Reset | Fault::PlainText => {}
    }
}

fn head(status: u16, content_type: &str, len: usize) -> String {
    format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

fn answer(conn: &mut Box<dyn Conn>, reply: &Reply) {
    let _ = conn.write_all(head(reply.status, &reply.content_type, reply.body.len()).as_bytes());
    let _ = conn.write_all(reply.body.as_bytes());
    let _ = conn.flush();
}

/// The request head, and its body (by Content-Length) read and dropped, so
/// that closing does not reset a connection with unread bytes.
fn read_request(reader: &mut impl BufRead) -> Option<RecordedRequest> {
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
    let request = RecordedRequest { method, path, headers };
    if let Some(len) = request.header("Content-Length").and_then(|l| l.parse::<u64>().ok()) {
        std::io::copy(&mut reader.take(len), &mut std::io::sink()).ok()?;
    }
    Some(request)
}
