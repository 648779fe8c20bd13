//! Check kinds: one file per kind, each behind the small [`Check`] trait.
//!
//! A check only does its work and says how it went. Deadlines, metrics, logs,
//! single flight and panics are the caller's business (see `runs`), as in
//! blackbox_exporter's prober/, so every kind gets them the same way. A check
//! is still handed its deadline through [`Attempt`](crate::contract::Attempt) so that it can bound its
//! own sockets: the caller reports a timeout at the deadline either way, but a
//! check that stops on time frees its worker for the next run.

pub mod dns;
pub mod http;
pub mod identity;
pub mod kubernetes;
pub mod s3;
pub mod settings;
pub mod tcp;

pub use settings::Settings;

use crate::contract::Check;

/// Builds a check of `kind` from its settings, or says which setting is wrong.
pub fn build(kind: &str, settings: &Settings) -> Result<Box<dyn Check>, String> {
    match kind {
        "s3" => Ok(Box::new(s3::S3::from_settings(settings)?)),
        "http" => Ok(Box::new(http::Http::from_settings(settings)?)),
        "tcp" => Ok(Box::new(tcp::Tcp::from_settings(settings)?)),
        "dns" => Ok(Box::new(dns::Dns::from_settings(settings)?)),
        "kubernetes" => Ok(Box::new(kubernetes::Kubernetes::from_settings(settings)?)),
        "identity" => Ok(Box::new(identity::Identity::from_settings(settings)?)),
        other => Err(format!("unknown check kind {other:?} (known kinds: {})", KINDS.join(", "))),
    }
}

/// Every kind [`build`] knows, for help and error messages.
pub const KINDS: &[&str] = &["s3", "http", "tcp", "dns", "kubernetes", "identity"];

/// Keys every check has (`config` reads them): `KUBERNARY_<NAME>_INTERVAL`,
/// `_TIMEOUT`, `_FAIL_AFTER` and `_PASS_AFTER`.
pub const COMMON_KEYS: &[&str] = &["INTERVAL", "TIMEOUT", "FAIL_AFTER", "PASS_AFTER"];

/// The keys a kind reads besides [`COMMON_KEYS`], each kind's own `KEYS`;
/// `None` for an unknown kind. One list per kind, in the kind's file, so
/// that tests (deploy/ manifests) and docs cannot drift from the code.
pub fn keys(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "s3" => Some(s3::KEYS),
        "http" => Some(http::KEYS),
        "tcp" => Some(tcp::KEYS),
        "dns" => Some(dns::KEYS),
        "kubernetes" => Some(kubernetes::KEYS),
        "identity" => Some(identity::KEYS),
        _ => None,
    }
}
