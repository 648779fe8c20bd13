//! Shared harness for kubernary's integration tests; include it with
//! `mod support;`.
//!
//! Everything here is plain blocking std code: the tests drive a real
//! `kubernary` process and real (fake) services over loopback sockets, so
//! threads and timeouts are all we need. Every server binds 127.0.0.1 on a
//! port the OS picks, so tests can run in parallel and never leave the
//! machine.
//!
//! External programs (rclone) are installed by `scripts/test-deps.sh` into
//! `.tools/`; the harness never looks at the developer's PATH for them, so a
//! test run always uses the pinned versions.

// Each integration test file compiles its own copy of this module and uses
// only some of it; unused items are expected, not a smell.
#![allow(dead_code, unused_imports)]

pub mod aws;
mod daemon;
mod fake_http;
mod faulty;
mod http;
pub mod load;
mod moto;
mod s3;
mod statsd;
mod tls;
mod web;

pub use daemon::Daemon;
pub use fake_http::{ContainerCredsServer, CredsMode, HangServer, RecordedRequest, TestCreds};
pub use faulty::{Fault, FaultServer, Reply, Seen};
pub use http::{read_response, request as http_request, send_raw as http_send_raw, Response, IO_TIMEOUT};
pub use moto::{AwsKeys, MotoServer, MOTO_ACCOUNT, MOTO_DEFAULT_ARN};
pub use s3::{rclone_path, S3Server};
pub use statsd::StatsdReceiver;
pub use tls::TestCa;
pub use web::{FullBacklog, Route, WebServer};

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago. Another process may take it
/// before the caller binds it, so callers that start a server on it must be
/// ready to retry (see `S3Server::start`).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes. Returns
/// whether it held, so the caller can assert with its own message. `cond`
/// is always evaluated at least once, and once more at the deadline, so a
/// slow machine does not turn a late success into a failure.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(deadline - now));
    }
}

/// How long the calling thread has waited for a CPU so far (the second
/// field of Linux's schedstat); `None` where the kernel does not say. Taken
/// before and after a request, it says how much of the request's time the
/// test itself spent waiting to run.
pub fn thread_cpu_wait() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().nth(1)?.parse().ok().map(Duration::from_nanos)
}
