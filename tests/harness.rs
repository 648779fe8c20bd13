//! Smoke tests for the test harness itself (tests/support), without the
//! daemon: if these fail, every other integration test's failure is
//! suspect. Needs rclone: run scripts/test-deps.sh first.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{
    eventually, http_request, ContainerCredsServer, CredsMode, HangServer, S3Server, StatsdReceiver, TestCa,
    TestCreds,
};

#[test]
fn rclone_over_http_refuses_unsigned_requests() {
    let t0 = Instant::now();
    let s3 = S3Server::start();
    eprintln!("rclone serve s3 (http) up in {:?}", t0.elapsed());
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"), "{}", s3.endpoint());

    s3.put_object("bucket", "dir/check", b"canary payload");
    assert!(s3.data_dir().join("bucket/dir/check").is_file());

    // No Authorization header at all: rclone 1.75.2 answers 400
    // UnsupportedAlgorithm (a signed request with a wrong secret gets 403
    // SignatureDoesNotMatch); either way never the object.
    let resp = http_request(s3.addr(), "GET", "/bucket/dir/check", &[], b"").expect("GET");
    assert!(resp.status == 400 || resp.status == 403, "unsigned GET: {} {}", resp.status, resp.body);
    assert!(resp.body.contains("<Error>"), "not an S3 error: {}", resp.body);
    assert!(!resp.body.contains("canary payload"), "{}", resp.body);

    s3.remove_object("bucket", "dir/check");
    s3.remove_object("bucket", "dir/check"); // already gone: not an error
    assert!(!s3.data_dir().join("bucket/dir/check").exists());
    assert!(s3.data_dir().join("bucket").is_dir(), "bucket must survive");
}

#[test]
fn rclone_over_https_presents_a_leaf_signed_by_the_test_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new();
    for (path, marker) in
        [(ca.ca_path(), ca.ca_pem()), (ca.cert_path(), ca.cert_pem()), (ca.key_path(), ca.key_pem())]
    {
        assert_eq!(std::fs::read_to_string(&path).unwrap(), marker, "{}", path.display());
    }
    assert_ne!(ca.ca_pem(), ca.cert_pem(), "leaf must not be the CA itself");

    let t0 = Instant::now();
    let s3 = S3Server::start_tls(&ca);
    eprintln!("rclone serve s3 (https) up in {:?}", t0.elapsed());
    assert_eq!(s3.endpoint(), format!("https://localhost:{}", s3.port()));

    // The CA, read back from ca.pem, is the only root: this proves the file
    // is what a client given SSL_CERT_FILE=ca.pem would trust.
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.ca_pem().as_bytes()) {
        roots.add(cert.expect("parse ca.pem")).expect("add CA root");
    }
    assert_eq!(roots.len(), 1);
    let config =
        Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth());

    // Both names the leaf carries must verify.
    for name in ["localhost", "127.0.0.1"] {
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), server_name).unwrap();
        let tcp = TcpStream::connect(s3.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("TLS handshake as {name}: {e}"));
        let mut answer = Vec::new();
        match tls.read_to_end(&mut answer) {
            Ok(_) => {}
            // A peer that closes without close_notify; the answer is in.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => panic!("read over TLS as {name}: {e}"),
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 "), "as {name}: {answer}");
        assert!(answer.contains("<Error>"), "as {name}: {answer}");
    }
}

#[test]
fn statsd_receiver_splits_datagrams_into_lines() {
    let statsd = StatsdReceiver::new();
    assert!(statsd.addr().ip().is_loopback());
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"kubernary.s3.download.succeeded:1|c\nkubernary.s3.download.duration:12|ms", statsd.addr())
        .unwrap();
    sender.send_to(b"kubernary.s3.download.failed:1|c\n", statsd.addr()).unwrap();

    let lines = statsd.lines_until(|l| l.len() >= 3, Duration::from_secs(5));
    assert_eq!(
        lines,
        [
            "kubernary.s3.download.succeeded:1|c",
            "kubernary.s3.download.duration:12|ms",
            "kubernary.s3.download.failed:1|c",
        ]
    );

    // Nothing more was sent: drain waits its full time and returns nothing.
    let t0 = Instant::now();
    assert!(statsd.drain(Duration::from_millis(200)).is_empty());
    assert!(t0.elapsed() >= Duration::from_millis(200));
}

#[test]
fn container_creds_server_serves_then_fails() {
    let creds = TestCreds::new("AKIACONTAINERTEST", "container-secret", "container-token");
    let server = ContainerCredsServer::start(CredsMode::Serve(creds));
    assert!(server.full_uri().starts_with("http://127.0.0.1:"));

    let resp = http_request(
        server.addr(),
        "GET",
        "/v1/credentials",
        &[("Authorization", "pod-identity-token")],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(json["AccessKeyId"], "AKIACONTAINERTEST");
    assert_eq!(json["SecretAccessKey"], "container-secret");
    assert_eq!(json["Token"], "container-token");
    assert_eq!(json["Expiration"], "2099-01-01T00:00:00Z");

    server.set_mode(CredsMode::Fail(500));
    let resp = http_request(server.addr(), "GET", "/v1/credentials", &[], b"").unwrap();
    assert_eq!(resp.status, 500, "{}", resp.body);

    assert!(eventually(Duration::from_secs(5), || server.request_count() == 2));
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/v1/credentials");
    assert_eq!(reqs[0].header("authorization"), Some("pod-identity-token"));
    assert_eq!(reqs[1].header("authorization"), None);
}

#[test]
fn hang_server_accepts_and_never_answers() {
    let hang = HangServer::start();
    let mut conn = TcpStream::connect(hang.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    let err = conn.read(&mut buf).expect_err("hang server must not answer or close");
    assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{err}");
    assert!(eventually(Duration::from_secs(5), || hang.connections() == 1));
}
