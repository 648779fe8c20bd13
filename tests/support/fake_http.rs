//! Small loopback servers standing in for the things checks talk to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Accepts on `listener` until `stop` is set, handing each connection to
/// `handle`. Drop-side wakes it with a throw-away connection, since a
/// blocking `accept` cannot be interrupted otherwise.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    mut handle: impl FnMut(TcpStream) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(stream) = conn {
                handle(stream);
            }
        }
    })
}

fn stop_accept_loop(addr: SocketAddr, stop: &AtomicBool, thread: Option<JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    if let Some(t) = thread {
        let _ = t.join();
    }
}

/// Whether the client end of an accepted connection is still open. What
/// the client sent and nobody read is read and dropped, to get to its FIN.
pub(super) fn peer_open(mut conn: &TcpStream) -> bool {
    use std::io::Read;
    if conn.set_nonblocking(true).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

/// A TCP server that accepts connections and never answers, keeping them
/// open until it is dropped: the backend that makes a check time out
/// after connecting (as opposed to a closed port, which fails at once).
pub struct HangServer {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HangServer {
    pub fn start() -> HangServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hang server");
        let addr = listener.local_addr().expect("hang server addr");
        let conns = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let kept = conns.clone();
        let thread = accept_loop(listener, stop.clone(), move |s| kept.lock().unwrap().push(s));
        HangServer { addr, conns, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for URL-shaped settings.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections were accepted (and are being held).
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// How many accepted connections the client has not closed yet: a
    /// check's worker closes its socket when it gives up, so this falls to
    /// zero once every run that reached this server has returned.
    pub fn open_connections(&self) -> usize {
        self.conns.lock().unwrap().iter().filter(|c| peer_open(c)).count()
    }
}

impl Drop for HangServer {
    fn drop(&mut self) {
        stop_accept_loop(self.addr, &self.stop, self.thread.take());
        self.conns.lock().unwrap().clear();
    }
}

/// Credentials the fake endpoint hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCreds {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
}

impl TestCreds {
    pub fn new(access_key_id: &str, secret_access_key: &str, token: &str) -> TestCreds {
        TestCreds {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            token: token.into(),
        }
    }
}

/// What `ContainerCredsServer` answers from now on.
#[derive(Debug, Clone)]
pub enum CredsMode {
    /// 200 with the ECS/EKS credentials JSON.
    Serve(TestCreds),
    /// This status with a short JSON error body.
    Fail(u16),
}

/// One request as the fake endpoint saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct CredsState {
    mode: Mutex<CredsMode>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// The container credentials endpoint (ECS task role, EKS Pod Identity) on
/// loopback: point `AWS_CONTAINER_CREDENTIALS_FULL_URI` at `full_uri()`.
/// Any path answers. `set_mode` switches between serving and failing while
/// the daemon runs, so tests can make the credential source flap; every
/// request is recorded (the `Authorization` header carries the Pod
/// Identity token, which tests may check was sent).
pub struct ContainerCredsServer {
    addr: SocketAddr,
    state: Arc<CredsState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ContainerCredsServer {
    pub fn start(mode: CredsMode) -> ContainerCredsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind creds server");
        let addr = listener.local_addr().expect("creds server addr");
        let state = Arc::new(CredsState { mode: Mutex::new(mode), requests: Mutex::new(Vec::new()) });
        let stop = Arc::new(AtomicBool::new(false));
        let shared = state.clone();
        // Thread per connection: a client that stalls mid-request must not
        // block the next one.
        let thread = accept_loop(listener, stop.clone(), move |stream| {
            let shared = shared.clone();
            std::thread::spawn(move || serve_creds(stream, &shared));
        });
        ContainerCredsServer { addr, state, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1/credentials`, the shape EKS Pod Identity
    /// uses for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn full_uri(&self) -> String {
        format!("http://{}/v1/credentials", self.addr)
    }

    pub fn set_mode(&self, mode: CredsMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for ContainerCredsServer {
    fn drop(&mut self) {
        stop_accept_loop(self.addr, &self.stop, self.thread.take());
    }
}

fn serve_creds(stream: TcpStream, state: &CredsState) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let Some(req) = read_request_head(&mut reader) else {
        return; // not HTTP, or our own wake-up connection
    };
    // Drain a body if one was sent, so closing does not reset the socket
    // before the client has read the answer.
    if let Some(len) = req.header("Content-Length").and_then(|l| l.parse::<u64>().ok()) {
        let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
    }
    state.requests.lock().unwrap().push(req);

    let mode = state.mode.lock().unwrap().clone();
    let (status, body) = match mode {
        CredsMode::Serve(c) => (
            200,
            serde_json::json!({
                "AccessKeyId": c.access_key_id,
                "SecretAccessKey": c.secret_access_key,
                "Token": c.token,
                "Expiration": "2099-01-01T00:00:00Z",
            })
            .to_string(),
        ),
        CredsMode::Fail(status) => (
            status,
            serde_json::json!({
                "code": "TestFailure",
                "message": format!("fake credentials endpoint told to fail with {status}"),
            })
            .to_string(),
        ),
    };
    let reason = if status == 200 { "OK" } else { "Test Failure" };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(answer.as_bytes());
    let _ = (&stream).flush();
}

fn read_request_head(reader: &mut impl BufRead) -> Option<RecordedRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(RecordedRequest { method, path, headers })
}
