//! TLS for every check: the trust set, and the TLS step of the HTTP
//! client's connector chain.
//!
//! The process has exactly one rustls crypto provider, ring (aws-lc-rs,
//! rustls' default, made the static binary 700 KB larger and its build
//! slower for nothing a canary's TLS needs), and installs it before any
//! thread starts: with none installed rustls panics at the first HTTPS
//! request.
//!
//! Trust is the built-in public roots (webpki-roots' trust anchors, the one
//! set in the binary, so that HTTPS works in a `FROM scratch` image), plus a
//! private CA from `SSL_CERT_FILE` and a check's own `CA_FILE`. Each trust
//! set becomes a rustls config once, when a check is built; the set without
//! an extra file is made once and shared by all checks.
//!
//! The handshake is ours rather than ureq's connector so that a debug run
//! can show what was negotiated and what the server presented (protocol,
//! cipher suite, the certificate's subject, issuer and expiry): ureq keeps
//! its rustls connection to itself.

use std::fmt;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use ureq::unversioned::transport::time::{Duration as UreqDuration, Instant as UreqInstant};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

use crate::x509;

/// Installs ring as the process-wide rustls provider. Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every certificate from a PEM file, naming the file on failure.
pub fn read_pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read CA file {path}: {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse CA file {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {path} holds no PEM certificate"));
    }
    Ok(certs)
}

/// A trust set, as the rustls config every handshake under it shares.
#[derive(Clone)]
pub struct Roots(Arc<ClientConfig>);

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Roots")
    }
}

impl Roots {
    /// Trusts nothing: for an agent that only speaks plain HTTP.
    pub fn none() -> Roots {
        roots(RootCertStore::empty())
    }
}

/// Built-in roots, plus `SSL_CERT_FILE` when set, plus `extra_ca_file`:
/// (the variable that named it, its path), the variable leading any error.
pub fn root_certs(extra_ca_file: Option<(&str, &str)>) -> Result<Roots, String> {
    static SHARED: OnceLock<Roots> = OnceLock::new();
    if let (None, Some(shared)) = (extra_ca_file, SHARED.get()) {
        return Ok(shared.clone());
    }
    // The anchors are borrowed from the binary: nothing to parse.
    let mut store = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = std::env::var("SSL_CERT_FILE").ok().filter(|p| !p.is_empty()) {
        add(&mut store, &path).map_err(|e| format!("SSL_CERT_FILE: {e}"))?;
    }
    if let Some((var, path)) = extra_ca_file {
        add(&mut store, path).map_err(|e| format!("{var}: {e}"))?;
        return Ok(roots(store));
    }
    Ok(SHARED.get_or_init(|| roots(store)).clone())
}

/// A private CA file's certificates. A bundle (`SSL_CERT_FILE` may be a
/// system's) can hold a certificate webpki cannot use as an anchor; that one
/// is left out with a warning, as other TLS stacks do, but a file with no
/// usable certificate at all is refused.
fn add(store: &mut RootCertStore, path: &str) -> Result<(), String> {
    let (added, ignored) = store.add_parsable_certificates(read_pem_certs(path)?);
    if added == 0 {
        return Err(format!("CA file {path}: none of its {ignored} certificates can be a trust anchor"));
    }
    if ignored > 0 {
        log::warn!(
            "CA file {path}: {ignored} of its {} certificates cannot be a trust anchor, left out",
            added + ignored
        );
    }
    Ok(())
}

fn roots(store: RootCertStore) -> Roots {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Roots(Arc::new(config))
}

/// What a handshake settled, for the debug trace.
pub struct Handshake<'a> {
    pub host: &'a str,
    pub connection: &'a ClientConnection,
}

impl Handshake<'_> {
    /// When the first certificate of the chain the server presented
    /// expires (as blackbox_exporter's `probe_ssl_earliest_cert_expiry`):
    /// an intermediate can run out before the leaf.
    pub fn earliest_expiry(&self) -> Option<SystemTime> {
        let chain = self.connection.peer_certificates()?;
        chain.iter().filter_map(|der| x509::summarize(der)).map(|cert| cert.not_after).min()
    }
}

impl fmt::Display for Handshake<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.connection.protocol_version().map_or("?".into(), |v| format!("{v:?}"));
        let suite =
            self.connection.negotiated_cipher_suite().map_or("?".into(), |s| format!("{:?}", s.suite()));
        // `TLSv1_3` reads better as `TLSv1.3`.
        write!(f, "{} {suite} with {}", version.replace('_', "."), self.host)?;
        let leaf = self.connection.peer_certificates().and_then(|chain| chain.first());
        match leaf.map(|der| x509::summarize(der)) {
            Some(Some(cert)) => write!(f, "; certificate {cert}"),
            Some(None) => f.write_str("; certificate not readable"),
            None => Ok(()),
        }
    }
}

/// The TLS step of a connector chain: wraps the connection it is handed
/// when the URL is `https`, under `roots`, and tells `shaken` what the
/// handshake settled.
pub struct TlsConnector {
    roots: Roots,
    shaken: fn(&Handshake),
}

impl TlsConnector {
    pub fn new(roots: Roots, shaken: fn(&Handshake)) -> TlsConnector {
        TlsConnector { roots, shaken }
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else { return Ok(None) };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default();
        // An IPv6 literal comes bracketed, as written in the URL.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name =
            ServerName::try_from(bare.to_string()).map_err(|_| ureq::Error::BadUri(host.to_string()))?;
        let mut connection = ClientConnection::new(self.roots.0.clone(), name).map_err(tls_error)?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        // The handshake gets what is left of the connection's time, which
        // began with the connect.
        socket.set_timeout(NextTimeout { after: left(details), ..details.timeout });
        connection.complete_io(&mut socket)?;
        (self.shaken)(&Handshake { host: bare, connection: &connection });
        let buffers =
            LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(TlsTransport { buffers, stream: StreamOwned { conn: connection, sock: socket } })))
    }
}

fn left(details: &ConnectionDetails) -> UreqDuration {
    match (details.timeout.after, details.now, (details.current_time)()) {
        (UreqDuration::Exact(after), UreqInstant::Exact(began), UreqInstant::Exact(now)) => {
            UreqDuration::Exact(after.saturating_sub(now.saturating_duration_since(began)))
        }
        (after, _, _) => after,
    }
}

fn tls_error(err: rustls::Error) -> ureq::Error {
    ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}

/// A connection after the handshake: what ureq reads and writes through.
pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        self.stream.write_all(&self.buffers.output()[..amount])?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let amount = self.stream.read(self.buffers.input_append_buf())?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_are_read_or_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.pem();
        let two = file("two.pem", &format!("{cert}{cert}"));
        assert_eq!(read_pem_certs(&two).unwrap().len(), 2);
        let none = file("none.pem", "not a certificate\n");
        assert_eq!(read_pem_certs(&none).unwrap_err(), format!("CA file {none} holds no PEM certificate"));
        let broken = file("broken.pem", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n");
        assert!(read_pem_certs(&broken)
            .unwrap_err()
            .starts_with(&format!("cannot parse CA file {broken}: ")));
        let missing = dir.path().join("missing.pem").display().to_string();
        assert!(read_pem_certs(&missing)
            .unwrap_err()
            .starts_with(&format!("cannot read CA file {missing}: ")));
    }

    #[test]
    fn a_ca_file_with_no_usable_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.pem();
        // Valid PEM framing around DER that is no certificate.
        let junk = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let only_junk = file("junk.pem", &format!("{junk}{junk}"));
        let err = root_certs(Some(("X_CA_FILE", &only_junk))).unwrap_err();
        assert_eq!(
            err,
            format!("X_CA_FILE: CA file {only_junk}: none of its 2 certificates can be a trust anchor")
        );
        root_certs(Some(("X_CA_FILE", &file("mixed.pem", &format!("{junk}{good}"))))).unwrap();
        let missing = dir.path().join("missing.pem").display().to_string();
        let err = root_certs(Some(("X_CA_FILE", &missing))).unwrap_err();
        assert!(err.starts_with(&format!("X_CA_FILE: cannot read CA file {missing}: ")), "{err}");
    }
}
