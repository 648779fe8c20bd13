//! Prometheus `/metrics`, in the text exposition format (version 0.0.4).
//!
//! The series are few and fixed, so a small encoder of our own beats a
//! registry crate: it is a page of code, it allocates only when scraped, and
//! the tests check its output with a real parser. Label sets stay bounded:
//! check names and kinds come from the configuration, results and reasons
//! from fixed lists; an error string is never a label.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds, in seconds, of the duration histogram: checks are mostly
/// sub-second, and timeouts rarely pass 10 s.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Series {
    kind: String,
    success: Option<bool>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    passed: u64,
    failed: u64,
    failures: BTreeMap<&'static str, u64>,
    last_success: Option<SystemTime>,
    consecutive_failures: u32,
    /// The latest run's phases, in seconds.
    phases: Vec<(String, f64)>,
    /// When the certificates of the latest handshake expire (Unix seconds):
    /// kept through runs that fail before a handshake, so that an expiry
    /// alert does not resolve because the server went away.
    tls_expires: Option<f64>,
}

/// Per-check series, updated once per settled run.
#[derive(Default)]
pub struct Registry {
    checks: Mutex<BTreeMap<String, Series>>,
}

/// One settled run, as the registry sees it.
pub struct Observation<'a> {
    pub check: &'a str,
    pub kind: &'a str,
    pub reported_ok: bool,
    pub failure_reason: Option<&'static str>,
    pub duration: Duration,
    pub last_success: Option<SystemTime>,
    pub consecutive_failures: u32,
    /// The run's phases (`connect`, ...) and their seconds.
    pub phases: Vec<(&'a str, f64)>,
    /// When the run's handshake found the certificates expire, if it shook hands.
    pub tls_expires: Option<f64>,
}

impl Registry {
    /// Declares a check so that it shows up before its first run.
    pub fn declare(&self, check: &str, kind: &str) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.entry(check.to_string()).or_default().kind = kind.to_string();
    }

    pub fn observe(&self, o: &Observation<'_>) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let s = checks.entry(o.check.to_string()).or_default();
        s.kind = o.kind.to_string();
        s.success = Some(o.reported_ok);
        let secs = o.duration.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(s.buckets.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
        match o.failure_reason {
            None => s.passed += 1,
            Some(reason) => {
                s.failed += 1;
                *s.failures.entry(reason).or_default() += 1;
            }
        }
        s.last_success = o.last_success;
        s.consecutive_failures = o.consecutive_failures;
        s.phases = o.phases.iter().map(|(phase, secs)| (phase.to_string(), *secs)).collect();
        s.tls_expires = o.tls_expires.or(s.tls_expires);
    }

    /// The whole exposition, process figures included.
    pub fn render(&self) -> String {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(4096);
        let w = &mut out;

        header(w, "kubernary_build_info", "gauge", "Build information; the value is always 1.");
        let _ = writeln!(w, "kubernary_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

        header(
            w,
            "kubernary_check_success",
            "gauge",
            "Whether the check is reported passing (1) or failing (0), as /health says.",
        );
        for (name, s) in checks.iter() {
            if let Some(ok) = s.success {
                let _ = writeln!(
                    w,
                    "kubernary_check_success{{check=\"{}\",kind=\"{}\"}} {}",
                    esc(name),
                    esc(&s.kind),
                    u8::from(ok)
                );
            }
        }

        header(
            w,
            "kubernary_check_duration_seconds",
            "histogram",
            "How long runs of the check took, timeouts included.",
        );
        for (name, s) in checks.iter() {
            let name = esc(name);
            for (bound, count) in BUCKETS.iter().zip(s.buckets.iter()) {
                let _ = writeln!(
                    w,
                    "kubernary_check_duration_seconds_bucket{{check=\"{name}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                w,
                "kubernary_check_duration_seconds_bucket{{check=\"{name}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(w, "kubernary_check_duration_seconds_sum{{check=\"{name}\"}} {}", s.sum);
            let _ = writeln!(w, "kubernary_check_duration_seconds_count{{check=\"{name}\"}} {}", s.count);
        }

        header(
            w,
            "kubernary_check_runs_total",
            "counter",
            "Runs of the check, scheduled or on demand, by result.",
        );
        for (name, s) in checks.iter() {
            let name = esc(name);
            let _ =
                writeln!(w, "kubernary_check_runs_total{{check=\"{name}\",result=\"success\"}} {}", s.passed);
            let _ =
                writeln!(w, "kubernary_check_runs_total{{check=\"{name}\",result=\"failure\"}} {}", s.failed);
        }

        header(w, "kubernary_check_failures_total", "counter", "Failed runs of the check, by reason.");
        for (name, s) in checks.iter() {
            for (reason, count) in &s.failures {
                let _ = writeln!(
                    w,
                    "kubernary_check_failures_total{{check=\"{}\",reason=\"{reason}\"}} {count}",
                    esc(name)
                );
            }
        }

        header(
            w,
            "kubernary_check_last_success_timestamp_seconds",
            "gauge",
            "When the check last passed, in seconds since the Unix epoch.",
        );
        for (name, s) in checks.iter() {
            if let Some(at) = s.last_success {
                let _ = writeln!(
                    w,
                    "kubernary_check_last_success_timestamp_seconds{{check=\"{}\"}} {}",
                    esc(name),
                    unix(at)
                );
            }
        }

        header(
            w,
            "kubernary_check_consecutive_failures",
            "gauge",
            "Failed runs of the check since it last passed.",
        );
        for (name, s) in checks.iter() {
            let _ = writeln!(
                w,
                "kubernary_check_consecutive_failures{{check=\"{}\"}} {}",
                esc(name),
                s.consecutive_failures
            );
        }
        header(
            w,
            "kubernary_check_phase_seconds",
            "gauge",
            "How long each phase of the check's latest run took (resolve, connect, tls, first_byte, body, credentials).",
        );
        for (name, s) in checks.iter() {
            for (phase, secs) in &s.phases {
                let _ = writeln!(
                    w,
                    "kubernary_check_phase_seconds{{check=\"{}\",phase=\"{}\"}} {secs}",
                    esc(name),
                    esc(phase)
                );
            }
        }
        header(
            w,
            "kubernary_check_tls_expiry_timestamp_seconds",
            "gauge",
            "When the first certificate to expire of those the server presented in the check's latest TLS handshake expires (Unix time).",
        );
        for (name, s) in checks.iter() {
            if let Some(at) = s.tls_expires {
                let _ = writeln!(
                    w,
                    "kubernary_check_tls_expiry_timestamp_seconds{{check=\"{}\"}} {at}",
                    esc(name)
                );
            }
        }
        drop(checks);

        let process = Process::read();
        let mut gauge = |name: &str, kind: &str, help: &str, value: Option<f64>| {
            if let Some(value) = value {
                header(w, name, kind, help);
                let _ = writeln!(w, "{name} {value}");
            }
        };
        let bytes = |n: Option<u64>| n.map(|n| n as f64);
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            bytes(process.resident_bytes),
        );
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            bytes(process.virtual_bytes),
        );
        gauge("process_threads", "gauge", "Number of OS threads in the process.", bytes(process.threads));
        gauge("process_open_fds", "gauge", "Number of open file descriptors.", bytes(process.open_fds));
        gauge("process_max_fds", "gauge", "Maximum number of open file descriptors.", bytes(process.max_fds));
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            process.cpu_seconds,
        );
        gauge(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            process.start_time_seconds,
        );
        out
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn esc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Cheap process figures from /proc (Linux); absent elsewhere. The names
/// and meanings are the standard ones of Prometheus' client libraries.
struct Process {
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    threads: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl Process {
    fn read() -> Process {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        // /proc/self/stat after the parenthesised name (which may hold
        // spaces): utime and stime are fields 14 and 15, starttime 22, all in
        // clock ticks; the first field after the name is field 3.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, after)| after.split_whitespace().collect()).unwrap_or_default();
        let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let per_second = clock_ticks_per_second();
        let cpu_seconds = ticks(14).zip(ticks(15)).map(|(user, system)| (user + system) / per_second);
        let start_time_seconds = boot_time().zip(ticks(22)).map(|(boot, start)| boot + start / per_second);
        Process {
            resident_bytes: field("VmRSS:").map(|kb| kb * 1024),
            virtual_bytes: field("VmSize:").map(|kb| kb * 1024),
            threads: field("Threads:"),
            open_fds,
            max_fds: max_open_files(),
            cpu_seconds,
            start_time_seconds,
        }
    }
}

/// The kernel's clock tick (`CLK_TCK`), which /proc counts CPU time in: 100
/// on most Linux builds, but not all.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant; no memory is involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// When the machine booted, in seconds since the epoch (`btime` in /proc/stat).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

/// The soft limit on open files, as /proc/self/limits says it.
fn max_open_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let r = Registry::default();
        for ms in [3, 30, 300, 3000] {
            r.observe(&Observation {
                check: "c",
                kind: "tcp",
                reported_ok: true,
                failure_reason: None,
                duration: Duration::from_millis(ms),
                last_success: None,
                consecutive_failures: 0,
                phases: vec![("connect", 0.001)],
                tls_expires: (ms == 30).then_some(1.9e9),
            });
        }
        let text = r.render();
        assert!(
            text.contains("kubernary_check_duration_seconds_bucket{check=\"c\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kubernary_check_duration_seconds_bucket{check=\"c\",le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("kubernary_check_duration_seconds_bucket{check=\"c\",le=\"0.5\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("kubernary_check_duration_seconds_bucket{check=\"c\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("kubernary_check_duration_seconds_count{check=\"c\"} 4\n"), "{text}");
        assert!(
            text.contains("kubernary_check_phase_seconds{check=\"c\",phase=\"connect\"} 0.001\n"),
            "{text}"
        );
        assert!(
            text.contains("kubernary_check_tls_expiry_timestamp_seconds{check=\"c\"} 1900000000\n"),
            "the expiry of the last handshake, kept through runs without one: {text}"
        );
    }
}
