//! `dns`: resolve `NAME` with the system resolver, as the services around
//! the canary do, and require at least `MIN_ADDRESSES` (default 1) distinct
//! addresses. The addresses found are noted in the `/health` JSON
//! (`"addresses": "10.0.0.1, 10.0.0.2"`).
//!
//! The system resolver (getaddrinfo: `/etc/hosts`, then `/etc/resolv.conf`'s
//! servers with their own timeouts and retries) has no way to be cancelled,
//! so the lookup runs on the check's worker as it is, and nothing tries to
//! abandon it. The caller owns the deadline (see `runs`): a lookup still
//! going at the check's TIMEOUT is reported then as `timeout`, and since a
//! check is never started again while an earlier run of it is going, a hung
//! resolver holds exactly one worker (this check's) and lookups cannot pile
//! up; scheduled ticks and `/health` requests meanwhile join or skip the run
//! that is going. When the lookup does return, late, the worker is free again.
//!
//! Reasons: `dns` (the name does not resolve, the resolver fails, or too few
//! addresses), `timeout`.

use std::net::{IpAddr, ToSocketAddrs};

use crate::checks::tcp::resolver_text;
use crate::checks::Settings;
use crate::contract::{Attempt, Check, Failure, Reason};

/// The keys this kind reads besides [`COMMON_KEYS`](super::COMMON_KEYS).
pub const KEYS: &[&str] = &["NAME", "MIN_ADDRESSES"];

pub struct Dns {
    name: String,
    min_addresses: usize,
}

impl Dns {
    pub fn from_settings(settings: &Settings) -> Result<Dns, String> {
        let name = settings.require("NAME", "the host name to resolve")?;
        check_name(name).map_err(|e| format!("{}: {e}", settings.var("NAME")))?;
        let min = settings.number("MIN_ADDRESSES", 1)?;
        if min == 0 {
            return Err(format!("{}: must be at least 1", settings.var("MIN_ADDRESSES")));
        }
        Ok(Dns { name: name.to_string(), min_addresses: usize::try_from(min).unwrap_or(usize::MAX) })
    }
}

impl Check for Dns {
    fn verb(&self) -> &'static str {
        "lookup"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        let what = format!("lookup of {}", self.name);
        attempt.remaining().map_err(|f| f.context(&what))?;
        // Blocks for as long as the resolver takes; see the module docs.
        let resolved = attempt.timed("resolve", || (self.name.as_str(), 0).to_socket_addrs());
        if attempt.expired() {
            return Err(Failure::timeout(attempt.timeout()).context(&what));
        }
        let mut addresses: Vec<IpAddr> = Vec::new();
        let found = resolved.map_err(|e| {
            attempt.trace("resolve", || format!("{}: {}", self.name, resolver_text(&e)));
            Failure::new(Reason::Dns, format!("{what}: {}", resolver_text(&e)))
        })?;
        for addr in found {
            if !addresses.contains(&addr.ip()) {
                addresses.push(addr.ip());
            }
        }
        let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
        attempt.trace("resolve", || format!("{} -> {list}", self.name));
        attempt.note("addresses", list.clone());
        if addresses.len() < self.min_addresses {
            let found = match addresses.len() {
                0 => "no address".to_string(),
                1 => format!("1 address ({list})"),
                n => format!("{n} addresses ({list})"),
            };
            return Err(Failure::new(
                Reason::Dns,
                format!("{what}: {found}, want at least {}", self.min_addresses),
            ));
        }
        Ok(())
    }
}

/// A host name (or an IP address): no port, no URL, no blanks.
fn check_name(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if name.contains("://") || name.contains('/') {
        return Err(format!("{name:?} is not a host name: give the name alone"));
    }
    if name.contains(':') {
        return Err(format!("{name:?} is not a host name: give the name without a port"));
    }
    if name.len() > 253 || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("{name:?} is not a host name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_are_checked() {
        assert!(check_name("localhost").is_ok());
        assert!(check_name("kubernetes.default.svc.cluster.local.").is_ok());
        assert!(check_name("::1").is_ok());
        for bad in ["host:53", "https://host/", "a b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn settings_errors_name_the_variable() {
        let env: HashMap<String, String> =
            [("KUBERNARY_NS_NAME", "localhost"), ("KUBERNARY_NS_MIN_ADDRESSES", "0")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let err = Dns::from_settings(&Settings::new("ns", &env)).err().unwrap();
        assert_eq!(err, "KUBERNARY_NS_MIN_ADDRESSES: must be at least 1");
        let empty = HashMap::new();
        let err = Dns::from_settings(&Settings::new("ns", &empty)).err().unwrap();
        assert!(err.starts_with("KUBERNARY_NS_NAME is not set"), "{err}");
    }
}
