//! TLS set-up shared by every check.
//!
//! The process has exactly one rustls crypto provider (aws-lc-rs, which
//! rust-s3's rustls feature brings anyway) and installs it before any thread
//! starts: with none installed rustls panics at the first HTTPS request.
//!
//! Trust is the built-in public roots, so that HTTPS works in a `FROM scratch`
//! image, plus a private CA from `SSL_CERT_FILE` (and a check's own `CA_FILE`).
//! The roots are read once, when a check is built, not on every request,
//! and the common set is shared by all checks.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use ureq::tls::{Certificate, RootCerts};

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads every certificate from a PEM file, naming the file on failure.
pub fn read_pem_certs(path: &str) -> Result<Vec<Certificate<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read CA file {path}: {e}"))?;
    let certs: Vec<Certificate<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .map(|der| der.map(|d| Certificate::from_der(d.as_ref()).to_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse CA file {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {path} holds no PEM certificate"));
    }
    Ok(certs)
}

/// Built-in roots, plus `SSL_CERT_FILE` when set, plus `extra_ca_file`.
///
/// The built-in roots are borrowed from the binary, not copied, and the set
/// without an extra file is made once and shared by every check that uses
/// it: ureq's agents take the roots as an `Arc`.
pub fn root_certs(extra_ca_file: Option<&str>) -> Result<RootCerts, String> {
    static SHARED: OnceLock<Arc<Vec<Certificate<'static>>>> = OnceLock::new();
    if let (None, Some(shared)) = (extra_ca_file, SHARED.get()) {
        return Ok(RootCerts::Specific(shared.clone()));
    }
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()))
        .collect();
    if let Some(path) = std::env::var("SSL_CERT_FILE").ok().filter(|p| !p.is_empty()) {
        certs.extend(read_pem_certs(&path).map_err(|e| format!("SSL_CERT_FILE: {e}"))?);
    }
    if let Some(path) = extra_ca_file {
        certs.extend(read_pem_certs(path)?);
        return Ok(RootCerts::Specific(Arc::new(certs)));
    }
    Ok(RootCerts::Specific(SHARED.get_or_init(|| Arc::new(certs)).clone()))
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
}
