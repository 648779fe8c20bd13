//! A statsd "server" that just records what it is sent.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A UDP socket on 127.0.0.1 collecting statsd lines
/// (`kubernary.s3.download.succeeded:1|c`, ...).
///
/// Datagrams wait in the socket's kernel buffer until a method reads them,
/// so nothing sent between calls is lost; each call returns what it read.
pub struct StatsdReceiver {
    socket: UdpSocket,
}

impl StatsdReceiver {
    pub fn new() -> StatsdReceiver {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind statsd receiver");
        StatsdReceiver { socket }
    }

    /// A receiver on `addr`: to bring statsd back on the port it had.
    pub fn bind(addr: SocketAddr) -> std::io::Result<StatsdReceiver> {
        Ok(StatsdReceiver { socket: UdpSocket::bind(addr)? })
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("statsd local addr")
    }

    /// Reads lines until `pred(&lines_so_far)` holds or `timeout` passes,
    /// and returns all lines read by this call either way (so the caller can
    /// assert on them and print them on failure). A datagram may carry
    /// several `\n`-separated lines (buffered sinks batch them); they are
    /// split, and empty lines dropped.
    pub fn lines_until(&self, mut pred: impl FnMut(&[String]) -> bool, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while !pred(&lines) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Some(datagram) = self.recv(deadline - now) {
                lines.extend(split_lines(&datagram));
            }
        }
        lines
    }

    /// Reads and returns everything that arrives during `duration`: to
    /// discard metrics from earlier runs, or to prove that nothing is sent
    /// (`--no-stats`).
    pub fn drain(&self, duration: Duration) -> Vec<String> {
        self.lines_until(|_| false, duration)
    }

    /// One datagram, or None when `wait` passed without one.
    fn recv(&self, wait: Duration) -> Option<String> {
        // A zero read timeout means "block forever" to std; never pass it.
        let wait = wait.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(wait)).expect("set statsd read timeout");
        // Larger than any UDP payload, so a datagram is never truncated.
        let mut buf = vec![0u8; 65536];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            // Linux reports an ICMP error from an earlier send on this socket
            // here; we never send, but do not let a stray error kill a test.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => None,
            Err(e) => panic!("statsd receiver recv: {e}"),
        }
    }
}

impl Default for StatsdReceiver {
    fn default() -> Self {
        StatsdReceiver::new()
    }
}

fn split_lines(datagram: &str) -> impl Iterator<Item = String> + '_ {
    datagram.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).map(str::to_owned)
}
