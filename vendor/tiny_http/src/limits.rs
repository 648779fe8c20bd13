//! kubernary: limits on each connection, set where the sockets are.
//!
//! Upstream 0.12 sets no timeout on an accepted socket, reads header lines
//! of any length, allocates a body's announced length, gives every
//! connection a thread with no bound, and ends its accept loop for good on
//! the first accept error. Everything here is off by default
//! (`Limits::default()`), so a server built the upstream way behaves as
//! upstream does, but for the accept loop, which now always retries.

use std::collections::HashMap;
use std::io::Error as IoError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::Request;

/// Called with each request, on its connection's own thread, instead of
/// queueing it for `recv()`: see [`crate::Server::from_listener_with`].
pub type Handler = Arc<dyn Fn(Request) + Send + Sync>;

/// Called on the events a server should tell its operator about.
pub type EventSink = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The first accept error of a burst is retried after this, doubling up to
/// [`ACCEPT_BACKOFF_MAX`], as Go's `net/http` does.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Limits on each connection; `None` is no limit.
#[derive(Clone, Default)]
pub struct Limits {
    /// From the first byte of a request until its request line and headers
    /// are all in: one deadline, so a client that drips bytes cannot
    /// stretch it. Past it the client gets `408`, then the connection is
    /// closed. Reading the body has a deadline as long of its own.
    pub header_timeout: Option<Duration>,
    /// How long a connection may wait for a request's first byte (a new
    /// connection, since it was accepted; a kept-alive one, since its
    /// latest answer); then it is closed, without an answer.
    pub idle_timeout: Option<Duration>,
    /// Set as the accepted socket's send timeout (`SO_SNDTIMEO`): a client
    /// that stops reading its answer blocks its writer this long at most.
    pub write_timeout: Option<Duration>,
    /// Bytes of request line and headers; past it the client gets `431`,
    /// then the connection is closed.
    pub max_header_bytes: Option<usize>,
    /// Bytes of a request body; a larger `Content-Length` gets `413`, then
    /// the connection is closed; a chunked body fails to read past it.
    pub max_body_bytes: Option<usize>,
    /// Open connections. At the cap, a new connection is served in place
    /// of the open one that has waited longest for a request (at least
    /// [`RECLAIM_AFTER`]), which is closed; when every open one is reading or answering a request, the
    /// new one is answered `503` with `Connection: close` by the accept
    /// thread, without blocking (the answer is written only if the socket
    /// takes it at once), and closed. This also bounds the connection
    /// threads.
    pub max_connections: Option<usize>,
    /// Stack size of the accept and connection threads (Rust's default
    /// when `None`).
    pub thread_stack_size: Option<usize>,
    /// Told about accept errors and refused connections.
    pub on_event: Option<EventSink>,
}

/// What a server tells its operator.
#[non_exhaustive]
pub enum Event<'a> {
    /// The first failed accept of a burst (the next ones are not told, and
    /// retried with a growing delay until one works).
    AcceptFailed { error: &'a IoError, retry_in: Duration },
    /// Accepting works again after `failures` failed attempts.
    AcceptResumed { failures: u64 },
    /// A connection past [`Limits::max_connections`] was answered `503`.
    Refused { peer: Option<SocketAddr>, open: usize },
    /// At [`Limits::max_connections`], the connection that had waited
    /// longest for a request was closed to make room for a new one.
    Reclaimed { open: usize },
}

impl Limits {
    pub(crate) fn tell(&self, event: Event<'_>) {
        if let Some(sink) = &self.on_event {
            sink(&event);
        }
    }
}

/// The deadline of the read under way on one connection, shared by the
/// connection (which sets it) and its read half (which applies it).
#[derive(Default)]
pub(crate) struct ReadDeadline(Mutex<Option<Instant>>);

impl ReadDeadline {
    pub(crate) fn new(at: Option<Instant>) -> ReadDeadline {
        ReadDeadline(Mutex::new(at))
    }

    pub(crate) fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub(crate) fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts held while they live: open connections, requests in progress.
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::SeqCst);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a server counts, for [`crate::Server::num_connections`] and
/// [`crate::Server::requests_in_progress`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: Arc<AtomicUsize>,
    pub(crate) requests: Arc<AtomicUsize>,
    pub(crate) waiting: Arc<Waiting>,
    // Set by `Server::stop_accepting`: each connection ends after its
    // current answer, which says `Connection: close` (Go's `Shutdown`).
    pub(crate) closing: Arc<AtomicBool>,
}

/// A connection must have waited this long for a request before it may be
/// closed for room: one that waited less may have its request in the
/// socket already, its thread not yet woken to read it (a busy machine).
pub const RECLAIM_AFTER: Duration = Duration::from_millis(100);

/// Connections waiting for a request (a new one's first, a kept-alive
/// one's next), by how long they have waited, so that the server at
/// [`Limits::max_connections`] can close the one that has waited longest
/// to make room for a new connection, as nginx does with its idle ones. A
/// connection reading or answering a request is never closed for room.
#[derive(Default)]
pub(crate) struct Waiting {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, (Instant, Weak<Connection>)>>,
    // Set (under the lock) by `close_all`: none is listed any more.
    swept: AtomicBool,
}

impl Waiting {
    pub(crate) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// False once `close_all` has run: the connection must end instead of
    /// waiting.
    pub(crate) fn enter(&self, id: u64, since: Instant, conn: &Weak<Connection>) -> bool {
        let mut conns = self.lock();
        if self.swept.load(Ordering::SeqCst) {
            return false;
        }
        conns.insert(id, (since, conn.clone()));
        true
    }

    pub(crate) fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Shuts down the connection that has waited longest, which wakes its
    /// thread to close it; false if none has waited [`RECLAIM_AFTER`].
    pub(crate) fn close_longest(&self) -> bool {
        let mut conns = self.lock();
        let Some(waited_since) = Instant::now().checked_sub(RECLAIM_AFTER) else {
            return false;
        };
        loop {
            let longest = conns.iter().min_by_key(|(_, (since, _))| *since);
            let Some(id) = longest.filter(|(_, (since, _))| *since <= waited_since).map(|(id, _)| *id) else {
                return false;
            };
            let (_, conn) = conns.remove(&id).expect("found just now");
            if let Some(conn) = conn.upgrade() {
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return true;
            }
        }
    }

    /// Shuts down every connection waiting for a request, for the
    /// shutdown: a request whose first byte has come is answered first.
    pub(crate) fn close_all(&self) {
        let mut conns = self.lock();
        self.swept.store(true, Ordering::SeqCst);
        for (_, (_, conn)) in conns.drain() {
            if let Some(conn) = conn.upgrade() {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, Weak<Connection>)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
