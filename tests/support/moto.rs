//! A real STS (and IAM) API on loopback: moto's server.
//!
//! moto (5.2.5, pinned by scripts/test-deps.sh into .tools/moto) runs as
//! `python -m moto.server -H 127.0.0.1 -p PORT`, with the interpreter that
//! installed it. What it does, measured:
//! - it answers within about 0.35 s of being started; the first call to a
//!   service takes some 70 ms more while moto loads it;
//! - it routes a form POST to `/` by the service named in the credential
//!   scope of the `Authorization` header (`.../sts/aws4_request`); with no
//!   such header it takes the request for S3. The setup calls below send a
//!   dummy header for that;
//! - it does not check signatures until [`MotoServer::enforce_auth`]. From
//!   then on every request must be signed, with keys moto issued (an IAM
//!   user's access key, or AssumeRole's session credentials and token), and
//!   moto recomputes the signature with botocore: a wrong signature is
//!   `403 SignatureDoesNotMatch`, an unknown key `403 InvalidClientTokenId`.
//!   So a check that passes then has signed its request right;
//! - GetCallerIdentity with keys it does not know (auth not enforced)
//!   answers `arn:aws:sts::123456789012:user/moto`; with an IAM user's key,
//!   `arn:aws:iam::123456789012:user/NAME`; with AssumeRole's,
//!   `arn:aws:sts::123456789012:assumed-role/ROLE/SESSION`;
//! - an unknown action is a 500 with an HTML body.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::{self, Response};
use super::{free_port, TestCa};

/// moto's default account.
pub const MOTO_ACCOUNT: &str = "123456789012";

/// What moto says for keys it does not know, with auth not enforced.
pub const MOTO_DEFAULT_ARN: &str = "arn:aws:sts::123456789012:user/moto";

/// A cold Python start on a loaded CI machine.
const START_DEADLINE: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;

/// A trust policy any principal may assume.
const TRUST_ANYONE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;

/// Where scripts/test-deps.sh put moto, and the Python that runs it.
pub fn moto_install() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/moto");
    let python = std::fs::read_to_string(dir.join("python"))
        .map(|p| PathBuf::from(p.trim()))
        .ok()
        .filter(|p| p.is_file() && dir.join("moto/server.py").is_file())
        .unwrap_or_else(|| {
            panic!("moto not found: run scripts/test-deps.sh (make test does) [looked in {}]", dir.display())
        });
    (dir, python)
}

/// Access keys moto handed out, and the ARN GetCallerIdentity gives for them.
#[derive(Debug, Clone)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub arn: String,
}

impl AwsKeys {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for session
    /// credentials, `AWS_SESSION_TOKEN`, for a daemon's environment.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.as_str()),
        ];
        if let Some(token) = &self.session_token {
            env.push(("AWS_SESSION_TOKEN", token));
        }
        env
    }
}

/// moto's server on a loopback port; killed on drop.
pub struct MotoServer {
    child: Child,
    addr: SocketAddr,
    tls: bool,
    // Holds moto.log; removed on drop, after the child died.
    root: tempfile::TempDir,
}

impl MotoServer {
    /// Plain HTTP on `http://127.0.0.1:PORT`.
    pub fn start() -> MotoServer {
        MotoServer::start_inner(None)
    }

    /// HTTPS on `https://127.0.0.1:PORT` with `ca`'s leaf certificate. The
    /// setup calls below speak plain HTTP, so they do not work here: use it
    /// with keys moto does not know, auth not enforced.
    pub fn start_tls(ca: &TestCa) -> MotoServer {
        MotoServer::start_inner(Some(ca))
    }

    fn start_inner(tls: Option<&TestCa>) -> MotoServer {
        let (dir, python) = moto_install();
        let root = tempfile::Builder::new().prefix("kubernary-moto-").tempdir().expect("tempdir for moto");
        let log_path = root.path().join("moto.log");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = File::create(&log_path).expect("create moto.log");
            let mut cmd = Command::new(&python);
            cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"]).arg(port.to_string());
            if let Some(ca) = tls {
                cmd.arg("-c").arg(ca.cert_path());
                cmd.arg("-k").arg(ca.key_path());
            }
            cmd.env("PYTHONPATH", &dir)
                .env("HOME", root.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log file"))
                .stderr(log);
            // No AWS_* setting of the developer's reaches moto.
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("AWS_") {
                    cmd.env_remove(name);
                }
            }
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", python.display()));
            let scheme = if tls.is_some() { "https" } else { "http" };
            match wait_listening(&mut child, scheme, addr, &log_path) {
                Ok(()) => return MotoServer { child, addr, tls: tls.is_some(), root },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if !last_log.contains("already in use") {
                        panic!("moto did not start: {why}\nmoto log:\n{last_log}");
                    }
                }
            }
        }
        panic!("moto: no free port after {START_ATTEMPTS} attempts\nlast log:\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`, or `https://` with TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// moto's own output (one line per request), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("moto.log")).unwrap_or_default()
    }

    /// An unsigned call of `Action` on `service` (`iam`, `sts`); panics
    /// unless moto answers 200. Before `enforce_auth` only.
    pub fn call(&self, service: &str, params: &[(&str, &str)]) -> String {
        let response = self.try_call(service, params);
        if response.status != 200 {
            panic!(
                "moto {service} {params:?}: {} {}\nmoto log:\n{}",
                response.status,
                response.body,
                self.log()
            );
        }
        response.body
    }

    pub fn try_call(&self, service: &str, params: &[(&str, &str)]) -> Response {
        let body = form(params);
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDKUBERNARYSETUP/20150830/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        http::request(
            self.addr,
            "POST",
            "/",
            &[("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", &scope)],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("moto {service} call: {e}\nmoto log:\n{}", self.log()))
    }

    /// An IAM user with an access key.
    pub fn create_user(&self, name: &str) -> AwsKeys {
        self.call("iam", &[("Action", "CreateUser"), ("Version", "2010-05-08"), ("UserName", name)]);
        let body =
            self.call("iam", &[("Action", "CreateAccessKey"), ("Version", "2010-05-08"), ("UserName", name)]);
        AwsKeys {
            access_key_id: tag(&body, "AccessKeyId"),
            secret_access_key: tag(&body, "SecretAccessKey"),
            session_token: None,
            arn: format!("arn:aws:iam::{MOTO_ACCOUNT}:user/{name}"),
        }
    }

    /// A role anyone may assume; returns its ARN.
    pub fn create_role(&self, name: &str) -> String {
        let body = self.call(
            "iam",
            &[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", name),
                ("AssumeRolePolicyDocument", TRUST_ANYONE),
            ],
        );
        tag(&body, "Arn")
    }

    /// Session credentials for `role_arn`.
    pub fn assume_role(&self, role_arn: &str, session: &str) -> AwsKeys {
        let body = self.call(
            "sts",
            &[
                ("Action", "AssumeRole"),
                ("Version", "2011-06-15"),
                ("RoleArn", role_arn),
                ("RoleSessionName", session),
            ],
        );
        AwsKeys {
            access_key_id: tag(&body, "AccessKeyId"),
            secret_access_key: tag(&body, "SecretAccessKey"),
            session_token: Some(tag(&body, "SessionToken")),
            arn: tag(&body, "Arn"),
        }
    }

    /// From now on moto checks every request's signature and key (see the
    /// module's doc); the setup calls above no longer work.
    pub fn enforce_auth(&self) {
        let response = http::request(
            self.addr,
            "POST",
            "/moto-api/reset-auth",
            // moto reads the raw body, which Flask leaves empty for a form.
            &[("Content-Type", "text/plain")],
            b"0",
        )
        .expect("moto reset-auth");
        assert_eq!(response.status, 200, "moto reset-auth: {}\nmoto log:\n{}", response.body, self.log());
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for werkzeug's `Running on` line (printed once the socket is bound)
/// and a connection: together they mean moto, not a process that took the
/// port first, is listening.
fn wait_listening(child: &mut Child, scheme: &str, addr: SocketAddr, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("moto exited with {status}"));
        }
        let started = std::fs::read_to_string(log_path)
            .is_ok_and(|log| log.contains(&format!("Running on {scheme}://{addr}")));
        if started && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no `Running on {scheme}://{addr}` line and connection within {START_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `application/x-www-form-urlencoded`.
fn form(params: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// The text of the first `<name>` element; panics with the body if absent.
fn tag(body: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start =
        body.find(&open).unwrap_or_else(|| panic!("no <{name}> in moto's answer: {body}")) + open.len();
    let end = start
        + body[start..]
            .find(&format!("</{name}>"))
            .unwrap_or_else(|| panic!("no </{name}> in moto's answer: {body}"));
    body[start..end].to_string()
}
