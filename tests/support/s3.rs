//! A real S3 API on loopback: `rclone serve s3` over a local folder.
//!
//! rclone (1.75.2, pinned by scripts/test-deps.sh) checks SigV4 signatures
//! against the `--auth-key` pair, so a wrong secret is refused the way AWS
//! refuses it, and it answers with AWS's XML error codes. What it returns,
//! measured with curl --aws-sigv4:
//! - no or non-SigV4 `Authorization`: 400 `UnsupportedAlgorithm`
//!   (not 403: rclone's gofakes3 rejects the missing algorithm first);
//! - unknown access key: 403 `InvalidAccessKeyId`;
//! - wrong secret: 403 `SignatureDoesNotMatch`;
//! - missing key in an existing bucket: 404 `NoSuchKey`;
//! - missing bucket: 404 `NoSuchBucket`.
//!
//! It does not check the region in the signature's scope, and accepts (and
//! ignores) an `x-amz-security-token`, so temporary credentials work too.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TestCa};

const ACCESS_KEY: &str = "AKIAKUBERNARYTEST";
const SECRET_KEY: &str = "kubernary-test-secret-0123456789";

/// rclone usually listens within 100 ms, but a loaded CI machine running
/// many tests in parallel can be far slower to page in an 85 MB binary.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Another process can take the port between `free_port()` and rclone's
/// bind; a few fresh ports make that race irrelevant.
const START_ATTEMPTS: usize = 5;

/// The rclone binary: `$RCLONE` if set (to try another build), else the copy
/// `scripts/test-deps.sh` installs.
pub fn rclone_path() -> PathBuf {
    let path = match std::env::var_os("RCLONE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/rclone/bin/rclone"),
    };
    if !path.is_file() {
        panic!("rclone not found: run scripts/test-deps.sh (make test does) [looked for {}]", path.display());
    }
    path
}

/// `rclone serve s3` over a fresh temporary folder; each subfolder of
/// `data_dir()` is a bucket, each file below it an object. Killed on drop.
pub struct S3Server {
    child: Child,
    addr: SocketAddr,
    tls: bool,
    // Holds `data/` and `rclone.log`; removed on drop, after the child died.
    root: tempfile::TempDir,
}

impl S3Server {
    /// Plain HTTP on `http://127.0.0.1:PORT`.
    pub fn start() -> S3Server {
        S3Server::start_inner(None)
    }

    /// HTTPS with `ca`'s leaf certificate; the endpoint is
    /// `https://localhost:PORT` so clients verify the name as they would in
    /// production (the leaf also names 127.0.0.1). rclone listens on
    /// 127.0.0.1 only: a client that resolves `localhost` to ::1 first gets
    /// "connection refused" there and falls back to 127.0.0.1.
    pub fn start_tls(ca: &TestCa) -> S3Server {
        S3Server::start_inner(Some(ca))
    }

    fn start_inner(tls: Option<&TestCa>) -> S3Server {
        let rclone = rclone_path();
        let root = tempfile::Builder::new().prefix("kubernary-s3-").tempdir().expect("tempdir for S3 server");
        let data = root.path().join("data");
        std::fs::create_dir(&data).expect("create S3 data dir");
        let log_path = root.path().join("rclone.log");

        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = File::create(&log_path).expect("create rclone.log");
            let mut cmd = Command::new(&rclone);
            cmd.arg("serve")
                .arg("s3")
                // No rclone.conf from the developer's home can change behaviour.
                .args(["--config", "/dev/null"])
                // Objects written or removed by a test are visible at once;
                // the default 5m directory cache would serve stale listings.
                .args(["--dir-cache-time", "0s"])
                .arg("--auth-key")
                .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
                .arg("--addr")
                .arg(addr.to_string());
            if let Some(ca) = tls {
                cmd.arg("--cert").arg(ca.cert_path());
                cmd.arg("--key").arg(ca.key_path());
            }
            cmd.arg(&data).stdin(Stdio::null()).stdout(log.try_clone().expect("dup log file")).stderr(log);
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", rclone.display()));

            match wait_listening(&mut child, addr, &log_path) {
                Ok(()) => return S3Server { child, addr, tls: tls.is_some(), root },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    // Only a lost race for the port is worth another try;
                    // anything else (bad flag, bad cert) would fail again.
                    if !last_log.contains("address already in use") {
                        panic!("rclone serve s3 did not start: {why}\nrclone log:\n{last_log}");
                    }
                }
            }
        }
        panic!("rclone serve s3: no free port after {START_ATTEMPTS} attempts\nlast log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// The served folder: `<data_dir>/<bucket>/<key>`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// rclone's own output, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("rclone.log")).unwrap_or_default()
    }

    /// Creates an empty bucket (a folder), so that a missing key in it is
    /// `NoSuchKey` rather than `NoSuchBucket`.
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.data_dir().join(bucket)).expect("create bucket dir");
    }

    /// Writes an object straight into the folder (no S3 call needed: with
    /// `--dir-cache-time 0s` rclone sees it on the next request). `key` may
    /// contain `/`.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let path = self.data_dir().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().expect("object path has a parent"))
            .expect("create object parent dirs");
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Deletes an object; the bucket folder stays. Removing a missing object
    /// is not an error, so tests can make sure one is gone.
    pub fn remove_object(&self, bucket: &str, key: &str) {
        let path = self.data_dir().join(bucket).join(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", path.display()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until rclone has bound `addr` and accepts connections there.
///
/// A connect alone is not proof: if another process took the port between
/// `free_port()` and rclone's bind, the connect reaches that process while
/// rclone is about to exit with "address already in use". rclone logs
/// `Starting s3 server on [...]` only after its listener is bound, so
/// that line plus a successful connect means it is really rclone.
fn wait_listening(child: &mut Child, addr: SocketAddr, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("rclone exited with {status}"));
        }
        let started =
            std::fs::read_to_string(log_path).is_ok_and(|log| log.contains("Starting s3 server on"));
        if started && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no `Starting s3 server on` log line and connection to {addr} within {START_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
