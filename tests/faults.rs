//! Faults in backends: whatever a backend does, /health answers by TIMEOUT
//! plus a margin with the right reason, and nothing piles up.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Daemon;

fn threads(d: &Daemon) -> usize {
    std::fs::read_to_string(format!("/proc/{}/status", d.pid()))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// A resolver that hangs for good cannot be cancelled. Runs of an http
/// check whose host never resolves must not leave a thread behind each.
#[test]
fn a_hung_resolver_never_piles_up_threads() {
    // glibc looks up a name without dots in the file HOSTALIASES names; a
    // FIFO that nobody writes blocks that lookup, as a dead name server would.
    let dir = tempfile::tempdir().unwrap();
    let aliases = dir.path().join("aliases");
    assert!(Command::new("mkfifo").arg(&aliases).status().unwrap().success());
    let aliases = aliases.display().to_string();
    let d = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "web=http"),
            ("KUBERNARY_WEB_URL", "http://kubernary-hang:8080/healthz"),
            ("KUBERNARY_WEB_TIMEOUT", "300ms"),
            ("KUBERNARY_WEB_INTERVAL", "100ms"),
            ("HOSTALIASES", &aliases),
        ],
    );
    let began = Instant::now();
    let (status, body) = d.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["web"]["reason"], "timeout", "{body}");
    assert!(began.elapsed() < Duration::from_secs(2));
    let before = threads(&d);
    for _ in 0..10 {
        let (_, body) = d.json("/health");
        assert_eq!(body["web"]["reason"], "timeout", "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = threads(&d);
    assert!(after <= before + 1, "threads grew from {before} to {after} while the resolver hung");
}
