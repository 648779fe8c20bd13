//! The real `kubernary` binary as a child process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{self, Response};

/// Cold start on a loaded CI machine, plus the first debug build's page-in.
const LISTEN_DEADLINE: Duration = Duration::from_secs(20);

/// A running (or exited) kubernary. Killed on drop if still running.
pub struct Daemon {
    child: Child,
    exit: Option<ExitStatus>,
    listen: Option<SocketAddr>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    home: tempfile::TempDir,
}

impl Daemon {
    /// Starts kubernary and waits until it logs `listening on <addr>`.
    /// Panics (with the daemon's output) if it exits first or takes longer
    /// than 20 s.
    ///
    /// `--listen 127.0.0.1:0` is added unless `args` has a `--listen` or
    /// `envs` sets `KUBERNARY_LISTEN` (a flag beats the environment, so
    /// adding it would defeat tests of the variable). See `spawn_raw` for
    /// the environment the daemon gets.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_command(&[env!("CARGO_BIN_EXE_kubernary")], args, envs)
    }

    /// [`Daemon::start`] for another way of running kubernary: `command` is
    /// the program and the arguments that come before kubernary's own, e.g.
    /// `["chroot", "/tmp/root", "/kubernary"]` for a static binary in an
    /// empty root. The pid is the daemon's when the program `exec`s it.
    pub fn start_command(command: &[&str], args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_echoing(command, args, envs, true)
    }

    /// [`Daemon::start`] without echoing the daemon's lines into the test's
    /// captured output (they are still kept for `logs()`): for soaks, whose
    /// hundreds of megabytes of log would only slow the test process down.
    pub fn start_quiet(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_echoing(&[env!("CARGO_BIN_EXE_kubernary")], args, envs, false)
    }

    fn start_echoing(command: &[&str], args: &[&str], envs: &[(&str, &str)], echo: bool) -> Daemon {
        let mut d = Daemon::spawn(command, args, envs, true, echo);
        let deadline = Instant::now() + LISTEN_DEADLINE;
        loop {
            if let Some(addr) = listen_addr(&d.logs()) {
                d.listen = Some(addr);
                return d;
            }
            if let Some(status) = d.try_exit() {
                d.join_readers();
                panic!(
                    "kubernary exited with {status} before listening\nargs: {args:?}\n{}",
                    d.output_for_panic()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "kubernary did not log `listening on` within {LISTEN_DEADLINE:?}\n{}",
                    d.output_for_panic()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Daemon::start`] in a mount namespace of its own where `/etc/hosts`
    /// is `hosts` (bind-mounted): writing that file then makes a name
    /// resolve, through /etc/hosts and never DNS, while the daemon runs.
    /// Needs root and `unshare`; `None`, after saying why on stderr, when
    /// this machine cannot.
    pub fn start_with_hosts(hosts: &Path, args: &[&str], envs: &[(&str, &str)]) -> Option<Daemon> {
        if let Err(why) = can_unshare() {
            let _ = writeln!(std::io::stderr(), "SKIPPED (needs a mount namespace): {why}");
            return None;
        }
        let hosts = hosts.display().to_string();
        let script = r#"mount --bind "$0" /etc/hosts && exec "$@""#;
        let command = ["unshare", "-m", "sh", "-c", script, &hosts, env!("CARGO_BIN_EXE_kubernary")];
        Some(Daemon::start_command(&command, args, envs))
    }

    /// Starts kubernary with exactly `args` and does not wait for anything:
    /// for bad-input tests that expect it to exit.
    ///
    /// The environment is cleared so the developer's AWS_*, KUBERNARY_* or
    /// proxy variables cannot leak into a test. Then: `PATH`;
    /// `AWS_EC2_METADATA_DISABLED=true` so no test ever reaches
    /// 169.254.169.254; `HOME` = a fresh empty tempdir so no real `~/.aws`
    /// is read; `RUST_BACKTRACE=1` so a panic is diagnosable; then `envs`,
    /// which override all of these (e.g. a `HOME` the test filled in).
    pub fn spawn_raw(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(&[env!("CARGO_BIN_EXE_kubernary")], args, envs, false, true)
    }

    fn spawn(command: &[&str], args: &[&str], envs: &[(&str, &str)], add_listen: bool, echo: bool) -> Daemon {
        let home = tempfile::Builder::new().prefix("kubernary-home-").tempdir().expect("tempdir for HOME");
        let (program, leading) = command.split_first().expect("a program to run");
        let mut cmd = Command::new(program);
        cmd.args(leading)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // glibc then never asks a DNS server: /etc/hosts still answers
            // `localhost`, and any other name fails at once, so no test sends
            // a packet off this machine.
            .env("RES_OPTIONS", "attempts:0")
            .env("HOME", home.path())
            .env("RUST_BACKTRACE", "1");
        let has_listen = args.iter().any(|a| *a == "--listen" || a.starts_with("--listen="))
            || envs.iter().any(|(k, _)| *k == "KUBERNARY_LISTEN");
        if add_listen && !has_listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubernary");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect_lines(
                child.stderr.take().expect("piped stderr"),
                stderr.clone(),
                echo.then_some("[daemon] "),
            ),
            collect_lines(
                child.stdout.take().expect("piped stdout"),
                stdout.clone(),
                echo.then_some("[daemon stdout] "),
            ),
        ];
        Daemon { child, exit: None, listen: None, stderr, stdout, readers, home }
    }

    /// The HTTP address from the `listening on` line. For `spawn_raw`
    /// daemons it is looked up in the logs so far; panics if not there.
    pub fn addr(&self) -> SocketAddr {
        self.listen
            .or_else(|| listen_addr(&self.logs()))
            .unwrap_or_else(|| panic!("kubernary has not logged `listening on`\n{}", self.output_for_panic()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's thread count, from /proc (0 once it has exited).
    pub fn threads(&self) -> usize {
        self.proc_status("Threads:")
    }

    /// The daemon's resident memory in KiB, from /proc (0 once it has exited).
    pub fn rss_kib(&self) -> usize {
        self.proc_status("VmRSS:")
    }

    /// How many of the daemon's threads have each name (`comm`; threads
    /// started by an unnamed thread show their parent's name), for
    /// messages when a thread count is off.
    pub fn thread_names(&self) -> std::collections::BTreeMap<String, usize> {
        let mut names = std::collections::BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else { return names };
        for task in tasks.flatten() {
            if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
                *names.entry(comm.trim().to_string()).or_insert(0) += 1;
            }
        }
        names
    }

    /// Open file descriptors (sockets included), from /proc.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    fn proc_status(&self, field: &str) -> usize {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix(field)
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// The fresh HOME the daemon runs with (unless `envs` replaced it).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// GET `path`; panics if no HTTP answer comes (connection refused,
    /// reset, timeout). Use `try_request` when that is the point.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path)
    }

    pub fn request(&self, method: &str, path: &str) -> Response {
        self.try_request(method, path, &[], b"")
            .unwrap_or_else(|e| panic!("{method} {path}: no HTTP answer: {e}\n{}", self.output_for_panic()))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        http::request(self.addr(), method, path, headers, body)
    }

    /// Sends bytes as-is (malformed requests) and parses the answer.
    pub fn send_raw(&self, raw: &[u8]) -> std::io::Result<Response> {
        http::send_raw(self.addr(), raw, false)
    }

    /// `/health/<name>?debug=true`: the check's result and its trace as
    /// (step, detail), checking that the steps' offsets only grow. A run
    /// already going (the one at start letting go of its worker) would be
    /// joined untraced, so this asks until its run is one of its own.
    pub fn debug_run(&self, name: &str) -> (serde_json::Value, Vec<(String, String)>) {
        let mut result = serde_json::Value::Null;
        let own = super::eventually(Duration::from_secs(10), || {
            result = self.json(&format!("/health/{name}?debug=true")).1[name].clone();
            result.get("trace_note").is_none()
        });
        assert!(own, "every debug run of {name} joined one going: {result}");
        let steps = result["trace"].as_array().unwrap_or_else(|| panic!("no trace: {result}"));
        let mut last = 0.0;
        for step in steps {
            let at = step["at_ms"].as_f64().unwrap_or_else(|| panic!("no offset: {result}"));
            assert!(at >= last, "offsets go back: {result}");
            last = at;
        }
        let list = steps
            .iter()
            .map(|s| (s["step"].as_str().unwrap().to_string(), s["detail"].as_str().unwrap().to_string()))
            .collect();
        (result, list)
    }

    /// GET `path` and parse the body as JSON; panics with the body if it is
    /// not JSON.
    pub fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.get(path);
        let value = serde_json::from_str(&resp.body).unwrap_or_else(|e| {
            panic!("GET {path}: status {} body is not JSON ({e}): {:?}", resp.status, resp.body)
        });
        (resp.status, value)
    }

    /// Everything the daemon wrote to stderr (its log) so far, one entry
    /// per line.
    pub fn logs(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything written to stdout so far (argh prints `--help` there).
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Whether a log line containing `substr` appears within `timeout`
    /// (lines already logged count).
    pub fn wait_for_log(&self, substr: &str, timeout: Duration) -> bool {
        super::eventually(timeout, || self.stderr.lock().unwrap().iter().any(|l| l.contains(substr)))
    }

    /// Sends a signal by name (`"TERM"`, `"INT"`, `"KILL"`, ...). Uses the
    /// shell's `kill` builtin so the tests need no libc crate. Panics if the
    /// daemon was already reaped (its pid may belong to someone else now).
    pub fn signal(&self, sig: &str) {
        assert!(self.exit.is_none(), "signal {sig}: kubernary already exited with {:?}", self.exit);
        let status = Command::new("sh")
            .args(["-c", r#"kill -s "$0" "$1""#, sig, &self.child.id().to_string()])
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -s {sig} {} failed: {status}", self.child.id());
    }

    /// Waits up to `timeout` for the daemon to exit. On exit, also waits
    /// (briefly) for its last output lines, so `logs()` is complete.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                self.join_readers();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait kubernary");
        }
        self.exit
    }

    /// The readers end at EOF, which comes when the daemon exits, unless
    /// something it started still holds the pipes; do not wait forever.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !self.readers.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn output_for_panic(&self) -> String {
        format!(
            "--- kubernary stderr ---\n{}\n--- kubernary stdout ---\n{}",
            self.logs().join("\n"),
            self.stdout().join("\n")
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` line by line into `sink`, echoing each line with `prefix`
/// to the test's stderr (captured by libtest and shown only when the test
/// fails) unless `prefix` is None.
fn collect_lines(
    pipe: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    prefix: Option<&'static str>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    if let Some(prefix) = prefix {
                        eprintln!("{prefix}{line}");
                    }
                    sink.lock().unwrap().push(line);
                }
            }
        }
    })
}

/// The address in the first `listening on <addr>` line. An unspecified IP
/// (`0.0.0.0`, `[::]`, from a `:PORT` listen address) becomes the loopback
/// address of its family, which is what a test should connect to.
fn listen_addr(lines: &[String]) -> Option<SocketAddr> {
    lines.iter().find_map(|line| {
        let rest = &line[line.find("listening on ")? + "listening on ".len()..];
        let token = rest.split_whitespace().next()?;
        // Tolerate quoting or punctuation around the address.
        let token = token
            .trim_start_matches(|c: char| !(c.is_ascii_digit() || c == '['))
            .trim_end_matches(|c: char| !c.is_ascii_digit());
        let mut addr: SocketAddr = token.parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Some(addr)
    })
}

/// Whether this process may run a command in a mount namespace of its own
/// with a bind mount (root, and `unshare` that works here).
fn can_unshare() -> Result<(), String> {
    let euid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    });
    if euid.as_deref() != Some("0") {
        return Err("not running as root".into());
    }
    let tried = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match tried {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("unshare -m with a bind mount failed: {status}")),
        Err(e) => Err(format!("cannot run unshare: {e}")),
    }
}
