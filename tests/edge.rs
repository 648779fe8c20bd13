//! The HTTP edge: the limits tiny_http now enforces on each connection
//! (vendor/tiny_http, see vendor/README.md), an accept loop that never
//! stops, and threads bounded by the connections. Each test drives the real
//! daemon over loopback sockets.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::Daemon;

/// A daemon whose one check fails at once without any network: the HTTP
/// layer is under test.
fn daemon(args: &[&str]) -> Daemon {
    let mut all = vec!["--no-stats"];
    all.extend_from_slice(args);
    Daemon::start(
        &all,
        &[
            ("KUBERNARY_CHECKS", "port=tcp"),
            ("KUBERNARY_PORT_ADDRESS", "127.0.0.1:1"),
            ("KUBERNARY_PORT_INTERVAL", "1h"),
        ],
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

/// One request on a kept-alive connection; the status, or why not.
fn ask(conn: &mut BufReader<TcpStream>, path: &str) -> Result<u16, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: kubernary\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    read_answer(conn).map(|a| a.status)
}

/// The next answer on a kept-alive connection, its body read past.
fn read_answer(conn: &mut BufReader<TcpStream>) -> Result<support::Response, String> {
    support::read_response(conn, false).map_err(|e| format!("no answer: {e}"))
}

/// Whether an answer says `Connection: close`.
fn closes(answer: &support::Response) -> bool {
    answer.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Everything the server sends until it closes (or 30 s pass).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn livez(addr: SocketAddr) -> Option<u16> {
    support::http_request(addr, "GET", "/livez", &[], b"").ok().map(|r| r.status)
}

#[test]
fn accepting_survives_running_out_of_file_descriptors() {
    // A low descriptor limit on the daemon alone, so a flood of connections
    // runs it out (EMFILE); then the flood goes away.
    let script = r#"ulimit -n 48 && exec "$0" "$@""#;
    let d = Daemon::start_command(
        &["sh", "-c", script, env!("CARGO_BIN_EXE_kubernary")],
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "port=tcp"),
            ("KUBERNARY_PORT_ADDRESS", "127.0.0.1:1"),
            ("KUBERNARY_PORT_INTERVAL", "1h"),
        ],
    );
    let mut kept = BufReader::new(connect(d.addr()));
    assert_eq!(ask(&mut kept, "/livez"), Ok(200), "before the flood");

    let flood: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(d.addr()).ok()).collect();
    assert!(
        d.wait_for_log("cannot accept connections", Duration::from_secs(20)),
        "{} connections did not run the daemon out of descriptors",
        flood.len()
    );
    // The connection opened before the flood is served throughout.
    assert_eq!(ask(&mut kept, "/livez"), Ok(200), "a kept-alive connection during the flood");

    drop(flood);
    // Once descriptors are free again, new connections are accepted: the
    // backlog drains, and a fresh one is answered.
    let answered = support::eventually(Duration::from_secs(30), || livez(d.addr()) == Some(200));
    assert!(answered, "/livez never answered after the flood\n{}", d.logs().join("\n"));
    assert!(d.wait_for_log("accepting connections again", Duration::from_secs(5)));
    assert_eq!(ask(&mut kept, "/livez"), Ok(200), "a kept-alive connection after the flood");
    let logs = d.logs().join("\n");
    assert!(!logs.contains("panicked") && !logs.contains("bug:"), "{logs}");
}

#[test]
fn headers_dripped_slowly_are_cut_at_the_header_deadline() {
    let d = daemon(&["--http-header-timeout=2s", "--http-idle-timeout=30s"]);
    let mut stream = connect(d.addr());
    let mut dripper = stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    // A byte every 100 ms, well inside any per-read timeout, forever.
    let drip = thread::spawn(move || {
        let mut bytes = b"GET /livez HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a'));
        while !stopped.load(Ordering::SeqCst) {
            if dripper.write_all(&[*bytes.next().unwrap()]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let began = Instant::now();
    let answer = read_to_close(&mut stream);
    let took = began.elapsed();
    stop.store(true, Ordering::SeqCst);
    drip.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    assert!(took < Duration::from_secs(15), "a drip-fed request lasted {took:?} against a 2s deadline");
    assert_eq!(livez(d.addr()), Some(200));
}

#[test]
fn an_oversized_header_gets_431_then_close() {
    let d = daemon(&[]);
    let mut stream = connect(d.addr());
    let request = format!("GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20 * 1024));
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    // Under the cap, the same request is answered.
    let request = format!("GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(8 * 1024));
    assert_eq!(support::http_send_raw(d.addr(), request.as_bytes(), false).map(|r| r.status).ok(), Some(200));
}

#[test]
fn past_the_connection_cap_busy_connections_stay_and_a_new_one_gets_503() {
    let d = daemon(&["--max-connections=4", "--http-header-timeout=60s", "--http-idle-timeout=60s"]);
    // Four connections each in the middle of a request: none may be closed
    // to make room.
    let busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(d.addr());
            s.write_all(b"GET /livez HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // Each has been read by its thread (the daemon counts a request from
    // its first byte); until then a new connection could still take the
    // place of one that had not sent anything yet.
    let mut extra = None;
    let refused = support::eventually(Duration::from_secs(10), || {
        let mut s = connect(d.addr());
        let _ = s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = read_to_close(&mut s);
        let refused = answer.starts_with("HTTP/1.1 503");
        extra = Some(answer);
        refused
    });
    let answer = extra.unwrap_or_default();
    assert!(refused, "a connection past the cap: {answer:?}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    // The busy ones were left alone, and finish their requests.
    for mut s in busy {
        s.write_all(b"Host: x\r\nConnection: close\r\n\r\n").unwrap();
        let answer = read_to_close(&mut s);
        assert!(answer.starts_with("HTTP/1.1 200"), "a busy connection: {answer:?}");
    }
}

#[test]
fn past_the_connection_cap_the_longest_idle_connection_makes_room() {
    let d = daemon(&["--max-connections=4", "--http-idle-timeout=60s"]);
    // Four connections that send nothing, oldest first.
    let mut idle: Vec<TcpStream> = Vec::new();
    for _ in 0..80 {
        idle.push(connect(d.addr()));
        thread::sleep(Duration::from_millis(50));
    }
    // A probe is served, in place of the oldest idle connection, once that
    // one has waited long enough (100 ms) to count as idle rather than as a
    // request not yet read; until then the probe is refused.
    let served = support::eventually(Duration::from_secs(10), || livez(d.addr()) == Some(200));
    assert!(served, "a probe with every connection idle");
    assert_eq!(read_to_close(&mut idle[0]), "", "the oldest idle connection is closed without an answer");
    assert_eq!(ask(&mut BufReader::new(idle.pop().unwrap()), "/livez"), Ok(200), "the newest stays");
}

#[test]
fn an_idle_kept_alive_connection_is_closed_and_a_slow_request_is_not() {
    let d = daemon(&["--http-idle-timeout=1s", "--http-header-timeout=10s"]);
    let mut kept = BufReader::new(connect(d.addr()));
    assert_eq!(ask(&mut kept, "/livez"), Ok(200));
    let began = Instant::now();
    assert_eq!(read_to_close(kept.get_mut()), "", "closed without an answer");
    assert!(began.elapsed() < Duration::from_secs(10), "an idle connection stayed {:?}", began.elapsed());

    // Started before the idle timeout, finished after it: the header
    // deadline applies, not the idle timeout.
    let mut slow = connect(d.addr());
    slow.write_all(b"GET /livez HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_secs(2));
    slow.write_all(b"Host: x\r\nConnection: close\r\n\r\n").unwrap();
    let answer = read_to_close(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[test]
fn threads_stay_bounded_while_50_kept_alive_clients_hammer_health() {
    let d = daemon(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (addr, stop, answered) = (d.addr(), stop.clone(), answered.clone());
            thread::spawn(move || {
                let mut conn = BufReader::new(connect(addr));
                while !stop.load(Ordering::SeqCst) {
                    match ask(&mut conn, "/health") {
                        Ok(_) => answered.fetch_add(1, Ordering::SeqCst),
                        Err(e) => return Err(e),
                    };
                }
                Ok(())
            })
        })
        .collect();
    let began = Instant::now();
    let mut peak = 0;
    while began.elapsed() < Duration::from_secs(4) {
        peak = peak.max(d.threads());
        thread::sleep(Duration::from_millis(20));
    }
    let names = d.thread_names();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap().expect("every client is answered throughout");
    }
    assert!(answered.load(Ordering::SeqCst) >= 50, "{} answers", answered.load(Ordering::SeqCst));
    assert!(peak <= 64, "{peak} threads at 50 kept-alive clients: {names:?}");
}

#[test]
fn the_process_is_named_kubernary() {
    let d = daemon(&[]);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", d.pid())).unwrap();
    assert_eq!(comm.trim(), "kubernary");
    let environ = std::fs::read(format!("/proc/{}/environ", d.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains("GLIBC_TUNABLES"), "the daemon set GLIBC_TUNABLES");
}

/// vendor/tiny_http.patch applied to the crates.io release gives exactly
/// what is vendored: the patch is what to re-apply to a new release.
#[test]
fn the_vendor_patch_turns_the_release_into_the_vendored_tiny_http() {
    // scripts/test-deps.sh (make test) fetches it: its absence is a failure,
    // not a reason to skip the one check that the patch still applies.
    let pristine = registry_copy("tiny_http-0.12.0")
        .expect("tiny_http-0.12.0 is not in cargo's registry: run scripts/test-deps.sh (make test does)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("tiny_http");
    let status = Command::new("cp").arg("-r").arg(&pristine).arg(&copy).status().unwrap();
    assert!(status.success());
    let patch = std::fs::File::open(root.join("vendor/tiny_http.patch")).unwrap();
    let out = Command::new("patch")
        .args(["-p1", "--no-backup-if-mismatch", "--forward"])
        .current_dir(&copy)
        .stdin(patch)
        .output()
        .expect("run patch");
    assert!(out.status.success(), "the patch does not apply: {}", String::from_utf8_lossy(&out.stdout));
    let vendored = root.join("vendor/tiny_http");
    let mut compared = 0;
    for file in files(&vendored) {
        let relative = file.strip_prefix(&vendored).unwrap();
        let patched = std::fs::read(copy.join(relative))
            .unwrap_or_else(|e| panic!("{}: vendored, not in the patched release: {e}", relative.display()));
        assert!(
            patched == std::fs::read(&file).unwrap(),
            "{} differs from the patched release: run vendor/make-patch.sh",
            relative.display()
        );
        compared += 1;
    }
    for file in files(&copy.join("src")) {
        let relative = file.strip_prefix(&copy).unwrap();
        assert!(vendored.join(relative).is_file(), "{} is not vendored", relative.display());
    }
    assert!(compared > 10, "compared only {compared} files");
}

fn registry_copy(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .map(|index| index.path().join(name))
        .find(|p| p.join("Cargo.toml").is_file())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn an_unread_body_is_not_taken_for_the_next_request() {
    // tiny_http 0.12 left an unread chunked body in the socket: the next
    // request's parse began inside it (a 400), and the pipelined GET was lost.
    let d = daemon(&[]);
    let bodies: [(&str, &[u8]); 2] = [
        ("Transfer-Encoding: chunked", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        ("Content-Length: 11", b"hello world"),
    ];
    for (framing, body) in bodies {
        let mut conn = BufReader::new(connect(d.addr()));
        let mut raw = format!("POST /livez HTTP/1.1\r\nHost: kubernary\r\n{framing}\r\n\r\n").into_bytes();
        raw.extend_from_slice(body);
        raw.extend_from_slice(b"GET /livez HTTP/1.1\r\nHost: kubernary\r\n\r\n");
        conn.get_mut().write_all(&raw).unwrap();
        let first = read_answer(&mut conn).map(|a| a.status);
        let second = read_answer(&mut conn);
        assert_eq!(first, Ok(405), "{framing}: the POST");
        let answer = second.unwrap_or_else(|e| panic!("{framing}: the pipelined GET: {e}"));
        assert_eq!(answer.status, 200, "{framing}: the pipelined GET: {:?}", answer.headers);
        assert!(!closes(&answer), "{framing}: {:?}", answer.headers);
    }
}

#[test]
fn a_body_too_large_to_drain_ends_the_connection_after_the_answer() {
    // A chunked body past the body cap (64 KiB) cannot be skipped: the answer says
    // so with `Connection: close`, and nothing after it is parsed.
    let d = daemon(&[]);
    let mut conn = BufReader::new(connect(d.addr()));
    let mut raw = b"POST /livez HTTP/1.1\r\nHost: kubernary\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        raw.extend_from_slice(b"400\r\n");
        raw.extend_from_slice(&[b'a'; 0x400]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\nGET /livez HTTP/1.1\r\nHost: kubernary\r\n\r\n");
    conn.get_mut().write_all(&raw).unwrap();
    let answer = read_answer(&mut conn).expect("an answer to the POST");
    assert_eq!(answer.status, 405);
    assert!(closes(&answer), "{:?}", answer.headers);
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1"), "answered after the close: {rest:?}");
}

#[test]
fn a_connection_whose_request_has_come_is_not_closed_for_room() {
    // At the cap, a kept-alive connection idle for long enough is closed to
    // make room, but not one whose next request is in its socket, unread
    // because its thread has not run yet (a loaded machine). The daemon is
    // stopped while the requests and a new connection arrive, so on
    // SIGCONT its accept thread may well run before the connections' own.
    for round in 0..3 {
        let d = daemon(&["--max-connections=4", "--http-idle-timeout=60s"]);
        let mut kept: Vec<BufReader<TcpStream>> = (0..4).map(|_| BufReader::new(connect(d.addr()))).collect();
        for conn in &mut kept {
            assert_eq!(ask(conn, "/livez"), Ok(200), "round {round}");
        }
        thread::sleep(Duration::from_millis(300));
        d.signal("STOP");
        for conn in &mut kept {
            conn.get_mut().write_all(b"GET /livez HTTP/1.1\r\nHost: kubernary\r\n\r\n").unwrap();
        }
        let newcomer = TcpStream::connect(d.addr()).unwrap();
        thread::sleep(Duration::from_millis(100));
        d.signal("CONT");
        for (i, conn) in kept.iter_mut().enumerate() {
            let answer = read_answer(conn).map(|a| a.status);
            assert_eq!(answer, Ok(200), "round {round}: connection {i}'s request, in its socket, was cut");
        }
        drop(newcomer);
    }
}
