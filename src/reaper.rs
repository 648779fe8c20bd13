//! The connection reaper: the timeouts and limits tiny_http does not have.
//!
//! tiny_http gives every connection a thread, reads header lines of any
//! length, and offers no hook on the sockets it accepts. (The listener's
//! send timeout is copied to accepted sockets, see `server::bind`; a
//! receive timeout would be too, but it also times out tiny_http's blocking
//! `accept`, which then stops for good.) So this thread looks at the
//! server's connections from the outside, a few times a second while there
//! are any: it finds them in `/proc/self/fd`, reads the kernel's TCP
//! counters for each, and shuts down (`shutdown(2)`, which wakes tiny_http's
//! thread so that it closes the socket and ends) every connection that
//!
//! - has been idle for [`Limits::idle`] in both directions;
//! - has sent more than [`Limits::request_bytes`] since its last answer (an
//!   endless header: tiny_http buffers it all);
//! - has gone [`Limits::no_reply`] without an answer while still trickling
//!   bytes in (a slowloris);
//! - is beyond [`Limits::connections`], idlest first.
//!
//! A connection whose request is being handled (a `/health` waiting for its
//! checks) is never reaped; the checks' timeouts bound those.
//!
//! Descriptor numbers are reused as soon as tiny_http closes one, so every
//! socket is pinned with a duplicate descriptor and its inode checked on the
//! duplicate before anything is read from or done to it: the reaper can only
//! ever act on the server connection it looked at.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::shutdown::InFlight;

#[derive(Clone, Debug)]
pub struct Limits {
    pub idle: Duration,
    pub no_reply: Duration,
    pub request_bytes: u64,
    pub connections: usize,
}

impl Limits {
    /// Limits for `--http-idle-timeout` and `--max-connections`.
    pub fn new(idle: Duration, connections: usize) -> Limits {
        Limits { idle, no_reply: idle.saturating_mul(3), request_bytes: 64 * 1024, connections }
    }
}

/// What is known of one connection between scans.
struct Seen {
    inode: u64,
    acked: u64,
    replied_at: Instant,
    /// Bytes received when the latest answer went out.
    received_at_reply: u64,
    /// Shut down already; its thread is draining what was buffered.
    reaped: bool,
}

/// One connection as a scan finds it, pinned by a duplicate descriptor.
struct Conn {
    fd: Pinned,
    peer: Option<SocketAddr>,
    idle: Duration,
    received: u64,
    acked: u64,
    /// The peer has sent bytes that have had no answer yet: a request
    /// arriving, waiting in tiny_http, or being handled.
    awaits_answer: bool,
}

pub fn spawn(port: u16, limits: Limits, inflight: InFlight) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("reaper".into()).stack_size(128 * 1024).spawn(move || {
        let mut seen: HashMap<RawFd, Seen> = HashMap::new();
        loop {
            let found = scan(port, &limits, &inflight, &mut seen);
            // Idle daemons are looked at once a second; busy ones five times.
            thread::sleep(if found > 0 { Duration::from_millis(200) } else { Duration::from_secs(1) });
        }
    })
}

/// Reaps what breaks the limits; returns how many connections there are.
fn scan(port: u16, limits: &Limits, inflight: &InFlight, seen: &mut HashMap<RawFd, Seen>) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    let now = Instant::now();
    let busy = inflight.peers();
    let mut conns = Vec::new();
    let mut live = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        let Some(inode) = socket_inode(fd) else { continue };
        let Some(pinned) = Pinned::new(fd, inode) else { continue };
        let Some(conn) = server_connection(pinned, port) else { continue };
        live.push(fd);
        let fresh =
            || Seen { inode, acked: conn.acked, replied_at: now, received_at_reply: 0, reaped: false };
        let state = seen.entry(fd).or_insert_with(fresh);
        if state.inode != inode {
            // A new connection under a reused number.
            *state = fresh();
        } else if conn.acked > state.acked {
            state.acked = conn.acked;
            state.replied_at = now;
            state.received_at_reply = conn.received;
        }
        if state.reaped || conn.peer.is_some_and(|p| busy.contains(&p)) {
            continue;
        }
        let why = if conn.idle >= limits.idle {
            Some("idle")
        } else if conn.received.saturating_sub(state.received_at_reply) > limits.request_bytes {
            Some("request too large")
        } else if now.duration_since(state.replied_at) >= limits.no_reply {
            Some("no complete request")
        } else {
            None
        };
        match why {
            Some(why) => {
                reap(&conn, why);
                state.reaped = true;
            }
            None => conns.push((fd, conn)),
        }
    }
    seen.retain(|fd, _| live.contains(fd));
    let count = live.len();
    if conns.len() > limits.connections {
        conns.sort_by_key(|(_, c)| std::cmp::Reverse(c.idle));
        let over = conns.len() - limits.connections;
        warn!(
            "http: {} connections, over the limit of {}: closing the {over} idlest",
            conns.len(),
            limits.connections
        );
        for (fd, conn) in conns.iter().take(over) {
            reap(conn, "over the connection limit");
            if let Some(state) = seen.get_mut(fd) {
                state.reaped = true;
            }
        }
    }
    count
}

fn reap(conn: &Conn, why: &str) {
    let peer = conn.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    debug!("http: closing the connection from {peer}: {why}");
    conn.fd.reset();
}

/// Cuts off the server connection from `peer` now (see `server::dispatch`).
pub fn shut(port: u16, peer: SocketAddr) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()) else { continue };
        let Some(inode) = socket_inode(fd) else { continue };
        let Some(pinned) = Pinned::new(fd, inode) else { continue };
        if let Some(conn) = server_connection(pinned, port).filter(|c| c.peer == Some(peer)) {
            conn.fd.reset();
            return;
        }
    }
}

/// A duplicate of a socket descriptor, checked to be the socket (inode)
/// that was looked at; closed on drop. Shutting down the duplicate shuts
/// down the socket itself.
struct Pinned(RawFd);

impl Pinned {
    fn new(fd: RawFd, inode: u64) -> Option<Pinned> {
        // SAFETY: fcntl on a number; a closed one fails with EBADF.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        let pinned = Pinned(dup);
        let mut stat = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: fstat on our own descriptor into a stat-sized buffer.
        let rc = unsafe { libc::fstat(dup, stat.as_mut_ptr()) };
        // SAFETY: fstat filled it in when it returned 0.
        let same = rc == 0 && unsafe { stat.assume_init() }.st_ino == inode;
        same.then_some(pinned)
    }

    /// Shuts the connection down with a zero linger, so that tiny_http's
    /// close sends a reset: the client learns at once, and the kernel drops
    /// what it had queued instead of keeping an orphaned socket.
    fn reset(&self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: our own descriptor, and a struct that outlives the call.
        unsafe {
            libc::setsockopt(
                self.0,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            libc::shutdown(self.0, libc::SHUT_RDWR);
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: the duplicate is ours alone.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn socket_inode(fd: RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The connection if `fd` is a TCP connection accepted on `port`.
fn server_connection(fd: Pinned, port: u16) -> Option<Conn> {
    // SAFETY: c_int and tcp_info are plain C types; all-zero bytes are valid.
    let accepting = unsafe { getsockopt::<libc::c_int>(fd.0, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) }?;
    // The listener itself accepts; connections do not.
    if accepting != 0 || sockaddr(fd.0, false)?.port() != port {
        return None;
    }
    // SAFETY: as above.
    let info = unsafe { getsockopt::<libc::tcp_info>(fd.0, libc::IPPROTO_TCP, libc::TCP_INFO) }?;
    let idle = Duration::from_millis(u64::from(info.tcpi_last_data_recv.min(info.tcpi_last_data_sent)));
    // Never answered, or the peer spoke last (the times are ms ago).
    let awaits_answer = info.tcpi_bytes_received > 0
        && (info.tcpi_bytes_acked == 0 || info.tcpi_last_data_recv < info.tcpi_last_data_sent);
    let peer = sockaddr(fd.0, true);
    Some(Conn {
        fd,
        peer,
        idle,
        received: info.tcpi_bytes_received,
        acked: info.tcpi_bytes_acked,
        awaits_answer,
    })
}

/// Connections accepted on `port` that hold a request with no answer yet:
/// being handled, waiting inside tiny_http (which reads requests before the
/// application sees them), or still arriving. The shutdown waits for these
/// once it has stopped accepting; an idle kept-alive connection, or one
/// that never sent a byte, has nothing to wait for.
pub fn awaiting_answer(port: u16) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<RawFd>().ok()))
        .filter_map(|fd| Pinned::new(fd, socket_inode(fd)?))
        .filter_map(|pinned| server_connection(pinned, port))
        .filter(|conn| conn.awaits_answer)
        .count()
}

/// # Safety
/// `T` must be a plain C type for which all-zero bytes are a valid value.
unsafe fn getsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Option<T> {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the buffer is as large as `len` says; the kernel writes at most that.
    let rc = unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    // SAFETY: zeroed, then partly written by the kernel: valid for such a T.
    (rc == 0).then(|| unsafe { value.assume_init() })
}

/// Sets a socket's send timeout (`server::bind` sets it on the listener).
pub fn set_send_timeout(fd: RawFd, timeout: Duration) -> std::io::Result<()> {
    let timeout = timeout.max(Duration::from_millis(1));
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a timeval that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn sockaddr(fd: RawFd, peer: bool) -> Option<SocketAddr> {
    let mut storage = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = storage.as_mut_ptr().cast::<libc::sockaddr>();
    // SAFETY: the buffer is a sockaddr_storage of the size given.
    let rc = unsafe {
        if peer {
            libc::getpeername(fd, ptr, &mut len)
        } else {
            libc::getsockname(fd, ptr, &mut len)
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: the kernel filled it in.
    let storage = unsafe { storage.assume_init() };
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { *(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { *(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}
