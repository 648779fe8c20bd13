//! `tcp`: open (and close) a TCP connection to `ADDRESS`.
//!
//! `ADDRESS` is `host:port`: an IPv4 address (`10.0.0.1:5432`), a bracketed
//! IPv6 address (`[::1]:5432`) or a name (`db.internal:5432`). A name is
//! resolved with the system resolver on the check's worker, then each of its
//! addresses is tried in turn, each connect bounded by what is left of the
//! attempt; the first that connects passes the check. Like `dns`, the
//! resolve itself cannot be cancelled: a hung resolver is reported at the
//! deadline by the caller, which never starts another run of the check while
//! this one is going (see `dns` and `runs`).
//!
//! Reasons: `dns` (the name does not resolve), `connect` (refused,
//! unreachable, reset), `timeout`.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};

use crate::checks::Settings;
use crate::contract::{Attempt, Check, Failure, Reason};

/// The keys this kind reads besides [`COMMON_KEYS`](super::COMMON_KEYS).
pub const KEYS: &[&str] = &["ADDRESS"];

pub struct Tcp {
    /// As configured, for messages.
    address: String,
    host: Host,
    port: u16,
}

enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Tcp {
    pub fn from_settings(settings: &Settings) -> Result<Tcp, String> {
        let address = settings.require("ADDRESS", "the host:port to connect to")?;
        let (host, port) = parse_address(address).map_err(|e| format!("{}: {e}", settings.var("ADDRESS")))?;
        Ok(Tcp { address: address.to_string(), host, port })
    }

    fn addresses(&self, what: &str, attempt: &Attempt) -> Result<Vec<SocketAddr>, Failure> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => name,
        };
        attempt.remaining()?;
        let resolved = attempt.timed("resolve", || (name.as_str(), self.port).to_socket_addrs());
        if attempt.expired() {
            return Err(Failure::timeout(attempt.timeout()).context(what));
        }
        let mut addrs: Vec<SocketAddr> = resolved
            .map_err(|e| {
                attempt.trace("resolve", || format!("{name}: {}", resolver_text(&e)));
                Failure::new(Reason::Dns, format!("{what}: cannot resolve {name}: {}", resolver_text(&e)))
            })?
            .collect();
        addrs.dedup();
        attempt.trace("resolve", || {
            let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
            format!("{name} -> {}", list.join(", "))
        });
        if addrs.is_empty() {
            return Err(Failure::new(Reason::Dns, format!("{what}: {name} resolves to no address")));
        }
        Ok(addrs)
    }
}

impl Check for Tcp {
    fn verb(&self) -> &'static str {
        "connect"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        let what = format!("connect to {}", self.address);
        let addrs = self.addresses(&what, attempt)?;
        let mut tried: Vec<(SocketAddr, io::Error)> = Vec::new();
        for addr in &addrs {
            let left = attempt.remaining().map_err(|f| f.context(&what))?;
            match attempt.timed("connect", || TcpStream::connect_timeout(addr, left)) {
                Ok(_stream) => {
                    attempt.trace("connect", || format!("connected to {addr}"));
                    attempt.note("address", addr.to_string());
                    return Ok(());
                }
                Err(e) => {
                    attempt.trace("connect", || format!("{addr} failed: {e}"));
                    tried.push((*addr, e))
                }
            }
        }
        Err(connect_failure(&what, &self.address, &tried, attempt))
    }
}

/// One failure for every address tried: `timeout` if the deadline passed,
/// else the last error's reason, with every address and its error named.
fn connect_failure(
    what: &str,
    address: &str,
    tried: &[(SocketAddr, io::Error)],
    attempt: &Attempt,
) -> Failure {
    let Some((_, last)) = tried.last() else {
        return Failure::new(Reason::Internal, format!("{what}: no address to try"));
    };
    let reason = Failure::io(what, last, attempt).reason;
    if reason == Reason::Timeout {
        return Failure::timeout(attempt.timeout()).context(what);
    }
    let details: Vec<String> = match tried {
        [(addr, e)] if addr.to_string() == address => vec![error_text(e)],
        _ => tried.iter().map(|(addr, e)| format!("{addr}: {}", error_text(e))).collect(),
    };
    Failure::new(reason, format!("{what}: {}", details.join("; ")))
}

/// `connection refused` rather than `Connection refused (os error 111)`.
fn error_text(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => err.to_string(),
    }
}

/// The resolver's own words, without std's `failed to lookup address
/// information: ` prefix.
pub(crate) fn resolver_text(err: &io::Error) -> String {
    let text = err.to_string();
    text.strip_prefix("failed to lookup address information: ").map(str::to_string).unwrap_or(text)
}

fn parse_address(text: &str) -> Result<(Host, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or_else(|| format!("{text:?} is not [IPv6]:port"))?;
        let ip: std::net::Ipv6Addr =
            ip.parse().map_err(|_| format!("{text:?}: {ip:?} is not an IPv6 address"))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) =
            text.rsplit_once(':').ok_or_else(|| format!("{text:?} has no port: write host:port"))?;
        if host.contains(':') {
            return Err(format!("{text:?}: write an IPv6 address in brackets, as [::1]:port"));
        }
        if host.is_empty() {
            return Err(format!("{text:?} has no host: write host:port"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!("{text:?}: {host:?} is not a host name"));
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => (Host::Ip(ip), port),
            Err(_) => (Host::Name(host.to_string()), port),
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{text:?}: {port:?} is not a port (1-65535)"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn addresses_parse() {
        let ok = |t: &str| parse_address(t).unwrap();
        assert!(matches!(ok("127.0.0.1:80"), (Host::Ip(ip), 80) if ip.is_loopback()));
        assert!(matches!(ok("[::1]:443"), (Host::Ip(IpAddr::V6(_)), 443)));
        assert!(matches!(ok("localhost:5432"), (Host::Name(n), 5432) if n == "localhost"));
        for bad in [
            "localhost",
            "::1:80",
            "[::1]80",
            "[nope]:80",
            ":80",
            "host:0",
            "host:http",
            "host:70000",
            "a b:80",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn failures_name_what_was_tried() {
        let attempt = Attempt::new(Instant::now(), Duration::from_secs(5));
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let one = [("127.0.0.1:9".parse().unwrap(), refused())];
        let f = connect_failure("connect to 127.0.0.1:9", "127.0.0.1:9", &one, &attempt);
        assert_eq!(f.reason, Reason::Connect);
        assert_eq!(f.message, "connect to 127.0.0.1:9: connection refused");
        let two = [("[::1]:9".parse().unwrap(), refused()), ("127.0.0.1:9".parse().unwrap(), refused())];
        let f = connect_failure("connect to localhost:9", "localhost:9", &two, &attempt);
        assert_eq!(
            f.message,
            "connect to localhost:9: [::1]:9: connection refused; 127.0.0.1:9: connection refused"
        );
    }
}
