//! A throw-away certificate authority for HTTPS tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

/// A CA certificate plus a leaf certificate it signed for `localhost`,
/// `127.0.0.1` and `::1`, written as PEM files into a private tempdir.
///
/// Why two certificates: rustls (webpki) refuses a self-signed certificate
/// that is its own CA when a server presents it as the leaf
/// (`CaUsedAsEndEntity`), so the server gets the leaf and the client trusts
/// only the CA (`ca.pem`, e.g. via `SSL_CERT_FILE`). Generated fresh on every
/// run, so nothing secret or expiring lives in the repository.
pub struct TestCa {
    dir: tempfile::TempDir,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    ca_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa::issue("localhost", localhost_sans(), None)
    }

    /// A CA and a leaf for `names` (DNS names, wildcards allowed) instead of
    /// localhost: for a server that stands in for a public one, such as
    /// `s3.us-east-1.amazonaws.com` reached through a private hosts file.
    pub fn for_names(names: &[&str]) -> TestCa {
        let sans = names.iter().map(|n| SanType::DnsName((*n).try_into().expect("DNS name"))).collect();
        TestCa::issue(names[0], sans, None)
    }

    /// As [`TestCa::new`], with a leaf that expires `days` from now (rcgen's
    /// default is the year 4096): for what a check shows of a certificate
    /// close to its end.
    pub fn expiring_in(days: i64) -> TestCa {
        let not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        TestCa::issue("localhost", localhost_sans(), Some(not_after))
    }

    /// A fresh CA, and a leaf it signed for `common_name` and `sans`,
    /// expiring at `not_after` if given.
    fn issue(common_name: &str, sans: Vec<SanType>, not_after: Option<time::OffsetDateTime>) -> TestCa {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(DnType::CommonName, "kubernary test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        leaf_params.distinguished_name.push(DnType::CommonName, common_name);
        leaf_params.subject_alt_names = sans;
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Some(at) = not_after {
            leaf_params.not_after = at;
        }
        let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key).expect("sign leaf with CA");

        let ca = TestCa {
            dir: tempfile::Builder::new()
                .prefix("kubernary-test-ca-")
                .tempdir()
                .expect("tempdir for test CA"),
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            // PKCS#8 "PRIVATE KEY": both rclone (Go) and rustls read it.
            key_pem: leaf_key.serialize_pem(),
            ca_der: ca_cert.der().to_vec(),
        };
        std::fs::write(ca.ca_path(), &ca.ca_pem).expect("write ca.pem");
        std::fs::write(ca.cert_path(), &ca.cert_pem).expect("write cert.pem");
        std::fs::write(ca.key_path(), &ca.key_pem).expect("write key.pem");
        ca
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate: what a client should trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The leaf certificate a server presents.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The leaf's private key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate in DER, ready for a rustls `RootCertStore`.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }
}

/// `localhost`, `127.0.0.1` and `::1`.
fn localhost_sans() -> Vec<SanType> {
    vec![
        SanType::DnsName("localhost".try_into().expect("DNS name")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}
