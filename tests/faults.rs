//! Faults in backends: whatever a backend does, /health answers by TIMEOUT
//! plus a margin with the right reason, nothing piles up while it goes on,
//! and the next run after the backend heals passes.
//!
//! Each fault gets one daemon running a check of every kind that talks to a
//! backend (http, kubernetes, s3, identity over HTTPS, and tcp), each
//! against a `FaultServer` of its own, all switched to the fault at once:
//!
//! 1. healthy: every check passes;
//! 2. the fault: one `/health` answers within TIMEOUT + MARGIN, each check
//!    with its reason;
//! 3. a soak: INTERVAL=100ms runs plus probers asking `/health` for a few
//!    seconds; every answer is on time and right, the thread count stays
//!    within a bound that does not grow with the runs, RSS stays steady;
//! 4. healed: once the runs under the fault are past their deadline, the
//!    next `/health` passes;
//! 5. no secret (key, session token, bearer token) in any log line or body.
//!
//! The `dns` kind has no server to break: its faults are a resolver that
//! hangs (a FIFO named by HOSTALIASES) and a name that does not resolve.
//! The credential source's flaps are at the end. `make soak` runs the long
//! versions (`#[ignore]` here).

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{eventually, Daemon, Fault, FaultServer, Reply, S3Server, StatsdReceiver, TestCa};

/// Every check's TIMEOUT in the fault runs.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The same, for the daemon's environment and the figures.
const TIMEOUT_TEXT: &str = "1s";
/// What /health may take beyond TIMEOUT: one deadline plus scheduling. An
/// answer is due when its runs are, at the latest their deadline; what
/// comes after is a handler being scheduled and writing a few hundred bytes.
/// Half of TIMEOUT, so an answer that waited on two deadlines in a row (a
/// run joined, then another started) cannot pass.
const MARGIN: Duration = Duration::from_millis(500);
/// A run that timed out where the fault is a fast one is excused only when
/// a measured wait for a CPU explains it: kubernary's worker (its
/// `run_queue_wait_ms` in /health) and the backend serving it (threads of
/// this test, measured the same way) waited, together, at least half of
/// TIMEOUT.
/// Without that wait a fast fault's run ends in milliseconds; with it, the
/// rest of TIMEOUT is not enough for an exchange whose every step waits
/// behind other work.
const STARVED: Duration = Duration::from_millis(500);

/// Distinctive secrets; none may show anywhere the daemon writes or serves.
const SECRET_KEY: &str = "faults-secret-key-5b1e0c77";
const SESSION_TOKEN: &str = "faults-session-token-9d72aa31";
const BEARER_TOKEN: &str = "faults-bearer-token-e4410f02";

const STS_REPLY: &str = "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/canary/faults</Arn><UserId>AROAFAULTS:faults</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>faults</RequestId></ResponseMetadata></GetCallerIdentityResponse>";

/// The checks of a rig: name, kind.
const CHECKS: [(&str, &str); 5] =
    [("web", "http"), ("api", "kubernetes"), ("bucket", "s3"), ("sts", "identity"), ("port", "tcp")];

/// How long the soak of a fault lasts, how many clients probe meanwhile,
/// and how long each waits between its probes. Probes are paced: the point
/// is many runs and steady probing, not a CPU-bound flood of a 2-core
/// machine (tests/load.rs does load), under which a run can be starved
/// past its TIMEOUT whatever the backend does.
#[derive(Clone, Copy)]
struct Plan {
    soak: Duration,
    probers: usize,
    pause: Duration,
    /// `--debug`, and the daemon's lines echoed into the test's output:
    /// for the short runs; a minute of them is hundreds of megabytes.
    verbose: bool,
    /// Answers later than TIMEOUT + MARGIN tolerated, per thousand: none
    /// in CI; a few in the long soak, which runs for many minutes on a
    /// machine other work shares (each is printed).
    late_per_mille: usize,
}

/// The short version CI runs.
const CI: Plan = Plan {
    soak: Duration::from_secs(3),
    probers: 4,
    pause: Duration::from_millis(5),
    verbose: true,
    late_per_mille: 0,
};

/// `make soak`: KUBERNARY_SOAK_SECS (default 60) per fault, 16 probers.
fn long_plan() -> Plan {
    let secs = std::env::var("KUBERNARY_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Plan {
        soak: Duration::from_secs(secs),
        probers: 16,
        pause: Duration::from_millis(50),
        verbose: false,
        late_per_mille: 10,
    }
}

/// What a check must report under a fault.
#[derive(Clone, Copy, Debug)]
enum Want {
    Pass,
    Fail(&'static str),
}

/// The threads, memory and descriptors of the daemon at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    threads: usize,
    rss_kib: usize,
    fds: usize,
}

/// Five fault servers and a daemon with a check on each.
struct Rig {
    _ca: TestCa,
    _token: tempfile::NamedTempFile,
    _statsd: StatsdReceiver,
    servers: Vec<(&'static str, FaultServer)>,
    daemon: Daemon,
    /// Every /health body served, for the secrets check.
    bodies: Mutex<Vec<String>>,
}

impl Rig {
    fn start(verbose: bool) -> Rig {
        let ca = TestCa::new();
        let server = |reply: Reply| FaultServer::start_tls(&ca, reply);
        let servers = vec![
            ("web", server(Reply::ok())),
            ("api", server(Reply::new(200, "text/plain", "ok"))),
            ("bucket", server(Reply::new(200, "application/octet-stream", "canary"))),
            ("sts", server(Reply::new(200, "text/xml", STS_REPLY))),
            ("port", server(Reply::ok())),
        ];
        let url = |name: &str| servers.iter().find(|(n, _)| *n == name).unwrap().1.base_url();
        let token = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token.path(), format!("{BEARER_TOKEN}\n")).unwrap();
        let statsd = StatsdReceiver::new();
        let list: Vec<String> = CHECKS.iter().map(|(n, k)| format!("{n}={k}")).collect();
        let mut env: Vec<(String, String)> = vec![
            ("KUBERNARY_CHECKS".into(), list.join(",")),
            ("KUBERNARY_WEB_URL".into(), format!("{}/healthz", url("web"))),
            ("KUBERNARY_API_URL".into(), url("api")),
            ("KUBERNARY_API_TOKEN_FILE".into(), token.path().display().to_string()),
            ("KUBERNARY_API_CA_FILE".into(), ca.ca_path().display().to_string()),
            ("KUBERNARY_BUCKET_BUCKET".into(), "canary".into()),
            ("KUBERNARY_BUCKET_ENDPOINT".into(), url("bucket")),
            ("KUBERNARY_STS_ENDPOINT".into(), url("sts")),
            ("KUBERNARY_STS_EXPECT_ROLE".into(), "canary".into()),
            ("KUBERNARY_PORT_ADDRESS".into(), format!("127.0.0.1:{}", servers[4].1.port())),
            ("SSL_CERT_FILE".into(), ca.ca_path().display().to_string()),
            ("AWS_ACCESS_KEY_ID".into(), "AKIAFAULTSUITE".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_SESSION_TOKEN".into(), SESSION_TOKEN.into()),
        ];
        for (name, _) in CHECKS {
            let upper = name.to_ascii_uppercase();
            env.push((format!("KUBERNARY_{upper}_INTERVAL"), "100ms".into()));
            env.push((format!("KUBERNARY_{upper}_TIMEOUT"), TIMEOUT_TEXT.into()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let statsd_addr = statsd.addr().to_string();
        let daemon = if verbose {
            Daemon::start(&[&statsd_addr, "--debug"], &env)
        } else {
            Daemon::start_quiet(&[&statsd_addr], &env)
        };
        Rig { _ca: ca, _token: token, _statsd: statsd, servers, daemon, bodies: Mutex::new(Vec::new()) }
    }

    fn set(&self, fault: &Fault) {
        for (_, server) in &self.servers {
            server.set(fault.clone());
        }
    }

    /// `/health`: status, body and how long it took; the body is kept.
    fn health(&self) -> Result<(u16, Value, Duration), String> {
        self.health_timed(&[]).map(|(status, body, timing, _)| (status, body, timing.took()))
    }

    /// `/health`, judged against `wants`, and how long it took in parts.
    /// A backend is a thread of this test process, and can be starved too:
    /// how long each one waited for a CPU while the answer was made is part
    /// of the judgement.
    fn health_timed(&self, wants: &[(&str, Want)]) -> Result<(u16, Value, Timing, Verdict), String> {
        let waits = || self.servers.iter().map(|(_, s)| s.cpu_wait()).collect::<Vec<_>>();
        let before = waits();
        let http_before = http_thread_waits(self.daemon.pid());
        let (response, mut timing) =
            get_health(self.daemon.addr()).map_err(|e| format!("GET /health: {e}"))?;
        timing.http_threads_wait = most_waited(&http_before, &http_thread_waits(self.daemon.pid()));
        let after = waits();
        self.bodies.lock().unwrap().push(response.body.clone());
        let body = serde_json::from_str(&response.body)
            .map_err(|e| format!("/health body is not JSON ({e}): {}", response.body))?;
        let backend_wait = |name: &str| {
            let at = self.servers.iter().position(|(n, _)| *n == name);
            at.map_or(Duration::ZERO, |i| after[i].saturating_sub(before[i]))
        };
        let verdict = judge(&body, wants, backend_wait);
        Ok((response.status, body, timing, verdict))
    }

    /// The daemon's log line for the request from the client `port`, when
    /// it logs requests (`--debug`): how long its handler took.
    fn request_logged(&self, port: u16) -> Option<String> {
        let from = format!(" from 127.0.0.1:{port}: ");
        self.daemon.wait_for_log(&from, Duration::from_secs(1));
        self.daemon.logs().into_iter().find(|l| l.contains(&from))
    }

    fn sample(&self) -> Sample {
        Sample { threads: self.daemon.threads(), rss_kib: self.daemon.rss_kib(), fds: self.daemon.fds() }
    }

    /// Settled runs logged so far.
    fn runs_logged(&self) -> usize {
        self.daemon
            .logs()
            .iter()
            .filter(|l| l.contains("] check ") && (l.contains(" passed in ") || l.contains(" failed (")))
            .count()
    }

    fn assert_no_secrets(&self) {
        let logs = self.daemon.logs().join("\n");
        let bodies = self.bodies.lock().unwrap().join("\n");
        for secret in [SECRET_KEY, SESSION_TOKEN, BEARER_TOKEN] {
            assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
            assert!(!bodies.contains(secret), "{secret} in a /health body:\n{bodies}");
        }
        assert!(!logs.contains("panicked") && !logs.contains("] bug: "), "a panic in the log:\n{logs}");
    }
}

/// The CPU wait the daemon's request line reports for its handler's thread
/// (`..., 612.3ms of it waiting for a CPU`); none when under a millisecond.
fn logged_cpu_wait(line: &str) -> Option<Duration> {
    let (before, _) = line.split_once("ms of it waiting for a CPU")?;
    let ms: f64 = before.rsplit(' ').next()?.parse().ok()?;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

/// How long one `/health` took, in the parts this test can tell apart.
#[derive(Clone, Copy, Debug)]
struct Timing {
    /// The TCP connect to the daemon: the kernel's handshake with the
    /// daemon's listener, before kubernary has seen the connection (a SYN
    /// lost there costs the 1 s of its first retransmission).
    connect: Duration,
    /// From the connection made to the whole answer read.
    answer: Duration,
    /// How long this (client) thread waited for a CPU during `answer`.
    client_wait: Duration,
    /// Time the hypervisor took from this machine's CPUs during `answer`
    /// (steal, all CPUs together, in 10 ms ticks): a stall no thread's
    /// wait shows. Printed with a late answer, never subtracted.
    stolen: Duration,
    /// The client's port, which the daemon's request log line names.
    port: u16,
    /// The most any of kubernary's HTTP threads (`http-accept`,
    /// `http-conn`) waited for a CPU during the exchange: an upper bound on
    /// its handler's wait (which thread served this request the test cannot
    /// tell), for attributing a late answer, never for excusing one.
    http_threads_wait: Duration,
}

impl Timing {
    fn took(&self) -> Duration {
        self.connect + self.answer
    }

    /// What the daemon took, as near as the test can tell: from the
    /// connection to the answer, less this thread's own wait for a CPU.
    fn daemon(&self) -> Duration {
        self.answer.saturating_sub(self.client_wait)
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connect {:?}, then the answer in {:?} (this thread waited {:?} for a CPU meanwhile, kubernary's HTTP threads at most {:?}, {:?} stolen from the machine's CPUs)",
            self.connect, self.answer, self.client_wait, self.http_threads_wait, self.stolen
        )
    }
}

/// `GET /health` on a new connection, timed in parts (see [`Timing`]).
fn get_health(addr: std::net::SocketAddr) -> std::io::Result<(support::Response, Timing)> {
    let began = Instant::now();
    let stream = std::net::TcpStream::connect_timeout(&addr, support::IO_TIMEOUT)?;
    let connect = began.elapsed();
    let (waited, stolen) = (support::thread_cpu_wait(), steal());
    let connected = Instant::now();
    stream.set_read_timeout(Some(support::IO_TIMEOUT))?;
    stream.set_write_timeout(Some(support::IO_TIMEOUT))?;
    let request =
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    (&stream).write_all(request.as_bytes())?;
    let response = support::read_response(std::io::BufReader::new(&stream), false)?;
    let answer = connected.elapsed();
    let since = |before: Option<Duration>, now: Option<Duration>| {
        before.zip(now).map_or(Duration::ZERO, |(b, a)| a.saturating_sub(b))
    };
    let timing = Timing {
        connect,
        answer,
        client_wait: since(waited, support::thread_cpu_wait()),
        stolen: since(stolen, steal()),
        port: stream.local_addr()?.port(),
        http_threads_wait: Duration::ZERO,
    };
    Ok((response, timing))
}

/// How long each HTTP thread of the process `pid` has waited for a CPU so
/// far (ns, schedstat), by thread id.
fn http_thread_waits(pid: u32) -> BTreeMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return BTreeMap::new() };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("http-")))
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            Some((
                t.file_name().to_string_lossy().into_owned(),
                stat.split_whitespace().nth(1)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The largest growth from `before` to `after`, by thread (a thread
/// started meanwhile, all of its wait).
fn most_waited(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Duration {
    let grown = after.iter().map(|(tid, now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)));
    Duration::from_nanos(grown.max().unwrap_or(0))
}

/// The machine's steal time so far (`/proc/stat`, all CPUs, USER_HZ ticks).
fn steal() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: u64 = stat.lines().next()?.split_whitespace().nth(8)?.parse().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What a `/health` body says against what `wants` want, check by check.
#[derive(Default)]
struct Verdict {
    /// Checks that said something else.
    problems: Vec<String>,
    /// Checks that timed out where the fault is a fast one, and whose
    /// worker kubernary shows was starved of CPU (see [`STARVED_MS`]): the
    /// truth about that run, but not about the backend, so counted apart.
    starved: Vec<String>,
}

impl Verdict {
    fn clean(&self) -> bool {
        self.problems.is_empty() && self.starved.is_empty()
    }
}

fn judge(body: &Value, wants: &[(&str, Want)], backend_wait: impl Fn(&str) -> Duration) -> Verdict {
    let mut verdict = Verdict::default();
    for (name, want) in wants {
        let result = &body[name];
        let ok = result["ok"].as_bool();
        let reason = result["reason"].as_str().unwrap_or("?");
        let worker_wait = result["run_queue_wait_ms"]
            .as_f64()
            .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0));
        let backend = backend_wait(name);
        match want {
            Want::Pass if ok == Some(true) => {}
            Want::Fail(r) if ok == Some(false) && reason == *r => {}
            // The two waits are parts of one exchange: they add up.
            _ if ok == Some(false) && reason == "timeout" && worker_wait + backend >= STARVED => verdict
                .starved
                .push(format!("{name}: want {want:?}, got {result}; backend waited {backend:?}")),
            _ => verdict.problems.push(format!(
                "{name}: want {want:?}, got {result}; the backend waited {backend:?} for a CPU meanwhile"
            )),
        }
    }
    verdict
}

/// `/health` until it says what `wants` want, up to three times: a run
/// that kubernary shows was starved past its TIMEOUT by other load gets two
/// more chances. The answer that counted, and how many tries it took.
fn health_until(rig: &Rig, wants: &[(&str, Want)]) -> (u16, Value, Timing, usize, Verdict) {
    let mut tries = 0;
    loop {
        tries += 1;
        let (status, body, timing, verdict) = rig.health_timed(wants).unwrap();
        if verdict.clean() || !verdict.problems.is_empty() || tries == 3 {
            return (status, body, timing, tries, verdict);
        }
        thread::sleep(TIMEOUT);
    }
}

/// The faults of the issue, each with what every check must say under it.
/// A tcp check only connects, so a backend that accepts passes it, whatever
/// it does next: that is the truth about the port.
fn wants(fault: &Fault) -> Vec<(&'static str, Want)> {
    let (backend, tcp) = match fault {
        Fault::Refuse => (Want::Fail("connect"), Want::Fail("connect")),
        Fault::Reset => (Want::Fail("connect"), Want::Pass),
        Fault::Blackhole => (Want::Fail("timeout"), Want::Fail("timeout")),
        Fault::Hang | Fault::SlowFirstByte(_) | Fault::Trickle(_) | Fault::StallHalfway => {
            (Want::Fail("timeout"), Want::Pass)
        }
        Fault::Status(_) => (Want::Fail("http_status"), Want::Pass),
        Fault::PlainText => (Want::Fail("tls"), Want::Pass),
        Fault::Healthy => (Want::Pass, Want::Pass),
    };
    CHECKS.iter().map(|(name, _)| (*name, if *name == "port" { tcp } else { backend })).collect()
}

fn all_pass() -> Vec<(&'static str, Want)> {
    wants(&Fault::Healthy)
}

/// One fault, the whole story; returns the figure line for the README.
fn fault_case(fault: Fault, plan: Plan) -> String {
    let rig = Rig::start(plan.verbose);
    let healthy = eventually(Duration::from_secs(10), || {
        rig.health_timed(&all_pass()).is_ok_and(|(status, _, _, verdict)| status == 200 && verdict.clean())
    });
    assert!(healthy, "the checks never passed against healthy backends: {:?}", rig.health());
    let idle = rig.sample();

    // The fault, and the answer by TIMEOUT + MARGIN.
    rig.set(&fault);
    // Runs going at the switch end by their deadline (time passing is the
    // event): the /health below starts runs that meet the fault.
    thread::sleep(TIMEOUT + Duration::from_millis(200));
    let want = wants(&fault);
    let (status, body, timing, _, verdict) = health_until(&rig, &want);
    // The daemon's part, as in the soak below.
    let took = timing.daemon();
    assert_eq!(status, 503, "{}: {body}", fault.label());
    assert!(took <= TIMEOUT + MARGIN, "{}: /health: {timing}: {body}", fault.label());
    assert!(verdict.problems.is_empty(), "{}: {:#?}", fault.label(), verdict.problems);

    // The soak: scheduled runs every 100ms, and probers.
    let start = rig.sample();
    let runs_before = rig.runs_logged();
    let stop = AtomicBool::new(false);
    let violations = Mutex::new(Vec::new());
    let starved = Mutex::new(Vec::new());
    let late = Mutex::new(Vec::new());
    let handler_starved = Mutex::new(Vec::new());
    let not_daemon = Mutex::new(Vec::new());
    let slowest_connect = Mutex::new(Vec::new());
    let answers = Mutex::new(Vec::new());
    let (mut max, mut mid) = (start, start);
    let mut names_at_max = rig.daemon.thread_names();
    thread::scope(|s| {
        for _ in 0..plan.probers {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    match rig.health_timed(&want) {
                        Ok((_, body, timing, verdict)) => {
                            // Held to TIMEOUT + MARGIN: the daemon's part.
                            // The connect before it is the kernel's, and
                            // this thread's own wait for a CPU is not the
                            // daemon's: an answer late only by those is
                            // counted apart, and printed. Seen once under
                            // load: 1.61 s with a 40 µs connect, the
                            // daemon's own line 1605 ms, every run it
                            // reported settled 0.6 s before it was written
                            // (its handler not run; docs/reliability.md).
                            // So the daemon's request line says how long
                            // its handler's thread waited for a CPU: a late
                            // answer is excused only when that wait, which
                            // kubernary measured, explains it.
                            let took = timing.took();
                            if timing.daemon() > TIMEOUT + MARGIN {
                                let logged = rig.request_logged(timing.port);
                                let handler_wait = logged.as_deref().and_then(logged_cpu_wait);
                                let explained = handler_wait.is_some_and(|wait| {
                                    timing.daemon().saturating_sub(wait) <= TIMEOUT + MARGIN
                                });
                                let _ = writeln!(
                                    std::io::stderr(),
                                    "late answer{} ({timing}; the daemon logged {logged:?}): {body}",
                                    if explained { ", excused: its handler was starved" } else { "" }
                                );
                                if explained {
                                    handler_starved.lock().unwrap().push(took);
                                } else {
                                    late.lock().unwrap().push(took);
                                }
                            } else if took > TIMEOUT + MARGIN {
                                let _ =
                                    writeln!(std::io::stderr(), "late, but not the daemon's part: {timing}");
                                not_daemon.lock().unwrap().push(took);
                            }
                            slowest_connect.lock().unwrap().push(timing.connect);
                            violations.lock().unwrap().extend(verdict.problems);
                            starved.lock().unwrap().extend(verdict.starved);
                            answers.lock().unwrap().push(took);
                        }
                        Err(e) => violations.lock().unwrap().push(e),
                    }
                    thread::sleep(plan.pause);
                }
            });
        }
        let began = Instant::now();
        while began.elapsed() < plan.soak {
            thread::sleep(Duration::from_millis(100));
            let now = rig.sample();
            if now.threads > max.threads {
                names_at_max = rig.daemon.thread_names();
            }
            max.threads = max.threads.max(now.threads);
            max.fds = max.fds.max(now.fds);
            max.rss_kib = max.rss_kib.max(now.rss_kib);
            if began.elapsed() < plan.soak / 2 {
                mid = now;
            }
        }
        stop.store(true, Ordering::SeqCst);
    });
    let end = rig.sample();
    let runs = rig.runs_logged() - runs_before;
    let violations = violations.into_inner().unwrap();
    assert!(violations.is_empty(), "{}: {} wrong answers: {violations:#?}", fault.label(), violations.len());
    let mut answers = answers.into_inner().unwrap();
    let starved = starved.into_inner().unwrap();
    let late = late.into_inner().unwrap();
    let handler_starved = handler_starved.into_inner().unwrap();
    let not_daemon = not_daemon.into_inner().unwrap();
    let slowest_connect = slowest_connect.into_inner().unwrap().into_iter().max().unwrap_or_default();
    assert!(
        late.len() * 1000 <= answers.len() * plan.late_per_mille,
        "{}: {} of {} answers came after TIMEOUT + {MARGIN:?}: {late:?}",
        fault.label(),
        late.len(),
        answers.len()
    );
    // Runs kubernary shows were starved are printed, never counted against
    // the backend; any other wrong result failed above.
    for excused in &starved {
        let _ = writeln!(std::io::stderr(), "{}: excused, the worker was starved: {excused}", fault.label());
    }
    answers.sort();
    let slowest = answers.last().copied().unwrap_or_default();
    // Each prober holds at most a connection thread and a /health handler;
    // a leak per run would grow with `runs`, which is far above this.
    let thread_bound = start.threads + 2 * plan.probers + 8;
    assert!(
        max.threads <= thread_bound,
        "{}: threads went from {} to {} (bound {thread_bound}) over {runs} runs: {names_at_max:?}",
        fault.label(),
        start.threads,
        max.threads
    );
    let fd_bound = start.fds + 2 * plan.probers + 16;
    assert!(max.fds <= fd_bound, "{}: fds went from {} to {}", fault.label(), start.fds, max.fds);
    let grew = end.rss_kib.saturating_sub(mid.rss_kib);
    assert!(grew < 8 * 1024, "{}: RSS grew {grew} KiB in the second half of the soak", fault.label());

    // Healed: once the runs under the fault are past their deadline, the
    // next one passes. The fault server leaves nothing of the fault behind
    // (held connections closed, a black hole's queue emptied: see
    // `a_heal_leaves_nothing_queued`), so a timeout here is a failure unless
    // kubernary shows the run starved, by the rule of the soak.
    rig.set(&Fault::Healthy);
    thread::sleep(TIMEOUT + Duration::from_millis(300));
    let (status, _, _, heal_tries, verdict) = health_until(&rig, &all_pass());
    assert!(
        verdict.problems.is_empty(),
        "{}: not passing after the heal: {:#?}",
        fault.label(),
        verdict.problems
    );
    if status != 200 {
        // Every miss was a run shown starved, three times over.
        let _ =
            writeln!(std::io::stderr(), "{}: excused after the heal: {:#?}", fault.label(), verdict.starved);
    }
    rig.assert_no_secrets();

    let reasons: BTreeMap<&str, String> = want
        .iter()
        .map(|(n, w)| {
            (
                *n,
                match w {
                    Want::Pass => "pass".to_string(),
                    Want::Fail(r) => r.to_string(),
                },
            )
        })
        .collect();
    let line = format!(
        "{}: /health in {} ms (TIMEOUT {TIMEOUT_TEXT}, MARGIN {} ms), reasons {reasons:?}; soak {} s: {runs} runs, {} answers (slowest {} ms, \
         {} results starved, {} late, {} late with their handler shown starved, {} late only by the connect or this test's own wait for a CPU; slowest connect {} ms), threads {} idle, {} at soak start, {} max; fds {} -> {} max; RSS {} -> {} KiB ({} KiB max); \
         after the heal, passing at the /health try {heal_tries}",
        fault.label(),
        took.as_millis(),
        MARGIN.as_millis(),
        plan.soak.as_secs(),
        answers.len(),
        slowest.as_millis(),
        starved.len(),
        late.len(),
        handler_starved.len(),
        not_daemon.len(),
        slowest_connect.as_millis(),
        idle.threads,
        start.threads,
        max.threads,
        start.fds,
        max.fds,
        start.rss_kib,
        end.rss_kib,
        max.rss_kib,
    );
    // Past libtest's capture: the figures are the point.
    let _ = writeln!(std::io::stderr(), "FIGURE fault {line}");
    line
}

#[test]
fn refused_connections() {
    fault_case(Fault::Refuse, CI);
}

#[test]
fn reset_connections() {
    fault_case(Fault::Reset, CI);
}

#[test]
fn connects_that_never_complete() {
    fault_case(Fault::Blackhole, CI);
}

#[test]
fn accepted_but_never_answered() {
    fault_case(Fault::Hang, CI);
}

#[test]
fn first_byte_after_the_timeout() {
    fault_case(Fault::SlowFirstByte(TIMEOUT + Duration::from_secs(1)), CI);
}

#[test]
fn a_body_that_trickles() {
    fault_case(Fault::Trickle(Duration::from_millis(100)), CI);
}

#[test]
fn a_response_that_stalls_halfway() {
    fault_case(Fault::StallHalfway, CI);
}

#[test]
fn server_errors() {
    fault_case(Fault::Status(503), CI);
}

#[test]
fn tls_handshake_with_a_plain_tcp_port() {
    fault_case(Fault::PlainText, CI);
}

/// A black hole is a full accept queue; the heal must leave it empty. The
/// fillers left queued were accepted one thread each after the heal, which
/// on a loaded machine took seconds (129 per server, five servers): a
/// connect meanwhile found the queue still full and lost its SYN to the 1 s
/// of its first retransmission, or waited behind the fillers for its TLS
/// handshake, and the run after the heal timed out with no CPU wait on
/// either side.
#[test]
fn a_heal_leaves_nothing_queued() {
    let ca = TestCa::new();
    let server = FaultServer::start_tls(&ca, Reply::ok());
    server.set(Fault::Blackhole);
    let full = server.queued().expect("the fault server listens");
    assert!(full > 0, "the black hole queued nothing");
    server.heal();
    assert_eq!(server.queued(), Some(0), "still queued after the heal (of {full})");
}

/// `make soak`: every fault for KUBERNARY_SOAK_SECS (default 60) with 16
/// probers.
#[test]
#[ignore = "long: make soak"]
fn soak_every_fault() {
    let plan = long_plan();
    // KUBERNARY_SOAK_FAULTS=refuse,reset,... picks some (labels as printed).
    let only = std::env::var("KUBERNARY_SOAK_FAULTS").unwrap_or_default();
    let faults = [
        Fault::Refuse,
        Fault::Reset,
        Fault::Blackhole,
        Fault::Hang,
        Fault::SlowFirstByte(TIMEOUT + Duration::from_secs(1)),
        Fault::Trickle(Duration::from_millis(100)),
        Fault::StallHalfway,
        Fault::Status(503),
        Fault::PlainText,
    ];
    let lines: Vec<String> = faults
        .into_iter()
        .filter(|f| only.is_empty() || only.split(',').any(|o| f.label().starts_with(o.trim())))
        .map(|f| fault_case(f, plan))
        .collect();
    let _ = writeln!(std::io::stderr(), "soak figures:\n  {}", lines.join("\n  "));
}

/// A FIFO that nobody writes, for HOSTALIASES: glibc opens it to look up a
/// name without dots and blocks there, as a resolver waiting on a dead name
/// server would.
fn hung_aliases(dir: &Path) -> String {
    let aliases = dir.join("aliases");
    assert!(Command::new("mkfifo").arg(&aliases).status().unwrap().success());
    aliases.display().to_string()
}

/// Lets every lookup blocked on the FIFO go on (it reads no aliases), and
/// removes the FIFO while a writer holds it open, so that no lookup can block
/// on it again: one that opened it after the writer closed, and before it
/// was removed, would wait for a writer that can never come (the cause of
/// `dns_a_hung_resolver_then_healed` hanging now and then on a busy machine:
/// the released lookup returned, the next run's lookup opened the FIFO in
/// that window, and the check stayed hung for good).
fn release_fifo(fifo: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: with no reader, opening for writing fails at once
    // instead of waiting; retry until the blocked lookup is there.
    let mut writer = None;
    let opened = eventually(Duration::from_secs(5), || {
        writer = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo).ok();
        writer.is_some()
    });
    assert!(opened, "no lookup was blocked on {fifo}");
    std::fs::remove_file(fifo).unwrap();
    // A reader blocked in open() is let through by the writer's open even if
    // the writer is gone by the time it runs (Linux counts writers that came);
    // it then reads the end of the file.
    drop(writer);
}

/// A resolver that hangs for good cannot be cancelled. Runs of an http
/// check whose host never resolves must not leave a thread behind each.
#[test]
fn a_hung_resolver_never_piles_up_threads() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = hung_aliases(dir.path());
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
    let before = d.threads();
    for _ in 0..10 {
        let (_, body) = d.json("/health");
        assert_eq!(body["web"]["reason"], "timeout", "{body}");
        thread::sleep(Duration::from_millis(100));
    }
    let after = d.threads();
    assert!(after <= before + 1, "threads grew from {before} to {after} while the resolver hung");
    release_fifo(&aliases);
}

/// The dns kind: a resolver that hangs answers at TIMEOUT and holds one
/// worker however many runs come due; once it answers again and the name
/// is in /etc/hosts, the next run passes. The heal needs a mount namespace
/// (root) to change /etc/hosts for the daemon alone; without one the test
/// stops after the hang.
#[test]
fn dns_a_hung_resolver_then_healed() {
    let dir = tempfile::tempdir().unwrap();
    let aliases = hung_aliases(dir.path());
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let args = ["--no-stats"];
    let env = [
        ("KUBERNARY_CHECKS", "names=dns"),
        ("KUBERNARY_NAMES_NAME", "kubernaryhang"),
        ("KUBERNARY_NAMES_TIMEOUT", TIMEOUT_TEXT),
        ("KUBERNARY_NAMES_INTERVAL", "100ms"),
        ("HOSTALIASES", aliases.as_str()),
    ];
    let (d, can_heal) = match Daemon::start_with_hosts(&hosts, &args, &env) {
        Some(d) => (d, true),
        None => (Daemon::start(&args, &env), false),
    };
    let began = Instant::now();
    let (status, body) = d.json("/health");
    let took = began.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["names"]["reason"], "timeout", "{body}");
    assert!(took <= TIMEOUT + MARGIN, "{took:?}");
    let start = d.threads();
    let mut max = start;
    let soak = Instant::now();
    while soak.elapsed() < CI.soak {
        let (_, body) = d.json("/health");
        assert_eq!(body["names"]["reason"], "timeout", "{body}");
        max = max.max(d.threads());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(max <= start + 4, "threads went from {start} to {max} while the resolver hung");
    let lookups = d.logs().iter().filter(|l| l.contains("check names failed")).count();
    let _ = writeln!(
        std::io::stderr(),
        "FIGURE dns hung resolver: /health in {} ms (TIMEOUT {TIMEOUT_TEXT}); soak {} s: {lookups} runs settled, threads {start} -> {max} max",
        took.as_millis(),
        CI.soak.as_secs()
    );
    if !can_heal {
        release_fifo(&aliases);
        return;
    }
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 kubernaryhang\n").unwrap();
    release_fifo(&aliases);
    // The released lookup returns, then the next run passes; on a busy
    // machine that can take a moment past TIMEOUT.
    let mut last = serde_json::Value::Null;
    let healed = support::eventually(Duration::from_secs(15), || {
        let (status, body) = d.json("/health");
        last = body;
        status == 200
    });
    assert!(healed, "not passing after the heal: {last}");
    assert_eq!(last["names"]["addresses"], "127.0.0.1", "{last}");
}

/// The credential source flaps: a container-credentials endpoint (EKS Pod
/// Identity, ECS) that serves, fails in each way a backend can, and serves
/// again. Every run asks it afresh and reports what it found, for the s3
/// check against a real S3 API that checks the signature (so a pass means
/// the served keys were used) and for the identity check.
#[test]
fn the_credential_source_flaps_and_each_run_reports_the_truth() {
    let s3 = S3Server::start();
    s3.put_object("canary", "check", b"ok");
    let ca = TestCa::new();
    let sts = FaultServer::start_tls(&ca, Reply::new(200, "text/xml", STS_REPLY));
    let creds_json = serde_json::json!({
        "AccessKeyId": s3.access_key(),
        "SecretAccessKey": s3.secret_key(),
        "Token": "flap-session-token-41c9",
        "Expiration": "2099-01-01T00:00:00Z",
    })
    .to_string();
    let creds = FaultServer::start(Reply::new(200, "application/json", &creds_json));
    let (endpoint, sts_url, uri) = (s3.endpoint(), sts.base_url(), creds.url("/v1/credentials"));
    let d = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "bucket=s3,sts=identity"),
            ("KUBERNARY_BUCKET_BUCKET", "canary"),
            ("KUBERNARY_BUCKET_ENDPOINT", &endpoint),
            ("KUBERNARY_BUCKET_TIMEOUT", "2s"),
            ("KUBERNARY_BUCKET_INTERVAL", "1h"),
            ("KUBERNARY_STS_ENDPOINT", &sts_url),
            ("KUBERNARY_STS_TIMEOUT", "2s"),
            ("KUBERNARY_STS_INTERVAL", "1h"),
            ("SSL_CERT_FILE", &ca.ca_path().display().to_string()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "flap-pod-identity-token-77e2"),
        ],
    );
    assert!(d.wait_for_log("check sts ", Duration::from_secs(10)));
    assert!(d.wait_for_log("check bucket ", Duration::from_secs(10)));
    let steps: [(Fault, Option<&str>); 9] = [
        (Fault::Healthy, None),
        (Fault::Status(500), Some("credentials")),
        (Fault::Healthy, None),
        (Fault::Hang, Some("timeout")),
        (Fault::Healthy, None),
        (Fault::Refuse, Some("credentials")),
        (Fault::Healthy, None),
        (Fault::Reset, Some("credentials")),
        (Fault::Healthy, None),
    ];
    let mut bodies = Vec::new();
    for (fault, reason) in steps {
        creds.set(fault.clone());
        let asked = creds.request_count();
        let began = Instant::now();
        let (status, body) = d.json("/health");
        let took = began.elapsed();
        assert!(took < Duration::from_secs(2) + MARGIN, "{}: {took:?}", fault.label());
        for name in ["bucket", "sts"] {
            let result = &body[name];
            match reason {
                None => {
                    assert_eq!(result["ok"], true, "{}: {body}", fault.label());
                    assert_eq!(result["credential_source"], "container", "{body}");
                }
                Some(reason) => {
                    assert_eq!(result["ok"], false, "{}: {body}", fault.label());
                    assert_eq!(result["reason"], reason, "{}: {body}", fault.label());
                }
            }
        }
        assert_eq!(status, if reason.is_none() { 200 } else { 503 }, "{body}");
        if matches!(fault, Fault::Healthy | Fault::Status(_)) {
            // Nothing cached: each check's run asked the endpoint again.
            assert_eq!(creds.request_count(), asked + 2, "{}", fault.label());
        }
        if fault == Fault::Hang {
            // The runs held by the hung endpoint were reported at their
            // deadline; their workers give up a moment later, and the next
            // step must start runs afresh rather than join those.
            assert!(eventually(Duration::from_secs(10), || creds.held_open() == 0));
        }
        bodies.push(body.to_string());
    }
    let seen = creds.requests();
    assert!(seen.iter().all(|r| r.request.header("authorization") == Some("flap-pod-identity-token-77e2")));
    let logs = d.logs().join("\n");
    for secret in [s3.secret_key(), "flap-session-token-41c9", "flap-pod-identity-token-77e2"] {
        assert!(!logs.contains(secret), "{secret} in the log");
        assert!(!bodies.iter().any(|b| b.contains(secret)), "{secret} in a body");
    }
}

#[test]
fn a_request_line_says_how_long_its_handler_waited_for_a_cpu() {
    let line = "2026-12-01T23:16:59Z [DEBUG] GET /health from 127.0.0.1:4: 503 in 1605.2ms, 612.3ms of it waiting for a CPU";
    assert_eq!(logged_cpu_wait(line), Some(Duration::from_micros(612_300)));
    assert_eq!(logged_cpu_wait("GET /health from 127.0.0.1:4: 200 in 1.2ms"), None);
}
