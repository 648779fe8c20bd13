//! The static binary as a `FROM scratch` container runs it: copied into an
//! empty root that holds only what a container runtime gives a scratch image
//! (`/etc/hosts`, `/etc/resolv.conf`) plus a CA file, entered with chroot,
//! run as 65534:65534 like the image's USER, and checked over HTTPS against
//! the loopback S3 server.
//!
//! `make test` builds the static binary (`make static`) and names it in
//! `KUBERNARY_STATIC_BIN` when it runs as root, since chroot needs root.
//! Otherwise these tests say why they skip, on stderr past the test
//! harness's capture, and pass.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Daemon, S3Server, TestCa};

const BUCKET: &str = "canary";

/// The static binary to test, or `None` after saying why the test skips.
fn static_binary(test: &str) -> Option<PathBuf> {
    let skip = |why: &str| {
        // Straight to the process's stderr: libtest captures eprintln!, and
        // a skip must be seen.
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
        None
    };
    let Some(bin) = std::env::var_os("KUBERNARY_STATIC_BIN") else {
        return skip(
            "KUBERNARY_STATIC_BIN is not set (make test sets it, after make static, when run as root)",
        );
    };
    if !is_root() {
        return skip("not running as root, and chroot needs root (run make test as root)");
    }
    let bin = PathBuf::from(bin);
    assert!(bin.is_file(), "KUBERNARY_STATIC_BIN={} does not exist: run make static", bin.display());
    Some(bin)
}

/// Effective uid 0, from /proc (the tests have no libc crate).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn chroot_program() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join("chroot"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .expect("chroot (coreutils) not found")
}

/// What a container runtime gives a scratch image, and nothing else: the
/// binary, `/etc/hosts` and `/etc/resolv.conf` (as Docker writes them), and
/// a CA file as a Secret or ConfigMap would mount it.
struct EmptyRoot {
    dir: tempfile::TempDir,
}

impl EmptyRoot {
    fn new(bin: &Path, ca: &TestCa) -> EmptyRoot {
        let dir = tempfile::Builder::new()
            .prefix("kubernary-scratch-")
            .tempdir()
            .expect("tempdir for the empty root");
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::copy(bin, root.join("kubernary")).expect("copy the static binary");
        std::fs::write(
            root.join("etc/hosts"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        .unwrap();
        // A nameserver on loopback, where nothing answers: a name that is
        // not in /etc/hosts fails at once, and no query leaves the machine.
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        std::fs::copy(ca.ca_path(), root.join("ca.pem")).unwrap();
        // Readable by the unprivileged user the daemon runs as.
        for (path, mode) in [
            ("", 0o755),
            ("etc", 0o755),
            ("kubernary", 0o755),
            ("etc/hosts", 0o644),
            ("etc/resolv.conf", 0o644),
            ("ca.pem", 0o644),
        ] {
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        EmptyRoot { dir }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// chroot as the image's `USER 65534:65534`; chroot execs the binary, so
    /// the child's pid is the daemon's.
    fn command(&self) -> Vec<String> {
        vec![chroot_program(), "--userspec=65534:65534".into(), self.path(), "/kubernary".into()]
    }

    fn files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(self.dir.path()).unwrap();
                    files.push(format!("/{}", rel.display()));
                }
            }
        }
        files.sort();
        files
    }
}

/// Runs the binary in the root to completion: (status, stdout, stderr).
fn run_in(root: &EmptyRoot, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let command = root.command();
    let out = Command::new(&command[0])
        .args(&command[1..])
        .args(args)
        .env_clear()
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run chroot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_static_binary_runs_in_an_empty_root_with_https_checks() {
    let Some(bin) = static_binary("the_static_binary_runs_in_an_empty_root_with_https_checks") else {
        return;
    };
    let ca = TestCa::new();
    let s3 = S3Server::start_tls(&ca);
    s3.put_object(BUCKET, "check", b"ok");
    s3.put_object("second-bucket", "canary/object", b"ok");
    let root = EmptyRoot::new(&bin, &ca);
    assert_eq!(root.files(), ["/ca.pem", "/etc/hosts", "/etc/resolv.conf", "/kubernary"]);

    // https://localhost:PORT: the name resolves through /etc/hosts (a static
    // glibc needs no NSS module for that), and the private CA comes from
    // SSL_CERT_FILE beside the built-in roots.
    let endpoint = s3.endpoint();
    assert!(endpoint.starts_with("https://localhost:"), "{endpoint}");
    let port_address = format!("localhost:{}", s3.port());
    let envs = [
        // Beside s3 over HTTPS, a tcp and a dns check: both resolve
        // `localhost` from the root's /etc/hosts with no NSS modules.
        ("KUBERNARY_CHECKS", "s3,second=s3,port=tcp,resolve=dns"),
        ("KUBERNARY_S3_BUCKET", BUCKET),
        ("KUBERNARY_S3_ENDPOINT", &endpoint),
        ("KUBERNARY_SECOND_BUCKET", "second-bucket"),
        ("KUBERNARY_SECOND_KEY", "canary/object"),
        ("KUBERNARY_SECOND_ENDPOINT", &endpoint),
        ("KUBERNARY_SECOND_TIMEOUT", "5s"),
        ("KUBERNARY_PORT_ADDRESS", &port_address),
        ("KUBERNARY_RESOLVE_NAME", "localhost"),
        ("SSL_CERT_FILE", "/ca.pem"),
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ];
    let command = root.command();
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    // `localhost:0` as the listen address: resolved in the empty root too.
    let daemon = Daemon::start_command(&command, &["--no-stats", "--listen", "localhost:0"], &envs);

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}\n{}", s3.log());
    for check in ["s3", "second", "port", "resolve"] {
        assert_eq!(body[check]["ok"], true, "{check}: {body}");
        assert_eq!(body[check]["error"], "", "{check}: {body}");
    }
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    // The daemon runs as the image's user, not as root.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid.split_whitespace().nth(1), Some("65534"), "{uid}");

    // The image's HEALTHCHECK: the self-probe, from inside the same root.
    let url = format!("http://{}/health", daemon.addr());
    let (code, stdout, stderr) = run_in(&root, &["probe", &url], &[]);
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");
    assert!(stdout.starts_with("healthy: 200 from "), "{stdout}");
    let listen = daemon.addr().to_string();
    let (code, stdout, stderr) = run_in(&root, &["probe", "/livez"], &[("KUBERNARY_LISTEN", &listen)]);
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");

    // A name that is in neither /etc/hosts nor DNS fails as a dns error,
    // promptly, without panicking.
    let (code, _, stderr) =
        run_in(&root, &["probe", "--timeout", "5s", "http://no-such-name.invalid:1/health"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("unhealthy: GET http://no-such-name.invalid:1/health"), "{stderr}");
}

#[test]
fn the_static_binary_is_static_and_knows_its_commit() {
    let Some(bin) = static_binary("the_static_binary_is_static_and_knows_its_commit") else {
        return;
    };
    let elf = std::fs::read(&bin).unwrap();
    assert!(elf.starts_with(b"\x7fELF\x02\x01"), "not a 64-bit LSB ELF");
    assert!(
        !program_headers(&elf).contains(&PT_INTERP),
        "{} asks for a dynamic loader (PT_INTERP): not static",
        bin.display()
    );
    let _ = writeln!(std::io::stderr(), "static binary {}: {} bytes", bin.display(), elf.len());

    let ca = TestCa::new();
    let root = EmptyRoot::new(&bin, &ca);
    let (code, stdout, stderr) = run_in(&root, &["--version"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with(&format!("kubernary {} (commit ", env!("CARGO_PKG_VERSION"))), "{stdout}");
    assert!(!stdout.contains("(commit unknown)"), "{stdout}");
}

const PT_INTERP: u32 = 3;

/// The `p_type` of every program header of a 64-bit little-endian ELF.
fn program_headers(elf: &[u8]) -> Vec<u32> {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).map(|i| u32_at(phoff + i * entsize)).collect()
}
