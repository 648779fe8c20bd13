//! `kubernetes`: GET the API server's `/readyz` with the pod's
//! service-account token, as every controller in the cluster does.
//!
//! Keys (`KUBERNARY_<NAME>_<KEY>`):
//! - `URL`: the API server; default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`
//!   (port 443 when unset, an IPv6 host in brackets), which the kubelet sets
//!   in every pod. Outside a pod, with neither set, the check cannot start.
//! - `PATH` (default `/readyz`): what to GET, such as `/livez` or `/version`.
//! - `TOKEN_FILE` (default `/var/run/secrets/kubernetes.io/serviceaccount/token`):
//!   read again on every run, since projected tokens rotate (the kubelet
//!   renews them well before they expire). A token that cannot be read is a
//!   failing run (`credentials`), not a failed start: proving that the pod's
//!   identity works is what the check is for.
//! - `CA_FILE` (default `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`):
//!   the cluster's CA, read once at start-up beside the built-in roots and
//!   `SSL_CERT_FILE`. A `CA_FILE` that was given and cannot be read stops
//!   the start; the default one missing only logs a warning (an API server
//!   behind a public certificate still works).
//!
//! Reasons: 401 and 403 are `denied` with a message saying the token was
//! refused (never the token itself); 404 `not_found`; any other non-2xx
//! `http_status`, with the failing checks `/readyz` lists; `credentials`
//! for a missing or empty token file; `dns`, `connect`, `tls`, `timeout`
//! for the transport.

use std::path::Path;

use log::warn;

use crate::checks::http::{check_url, name_timeout, status_text};
use crate::checks::Settings;
use crate::client;
use crate::client::redact;
use crate::contract::{Attempt, Check, Failure, Reason};
use crate::tls;

pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// The keys this kind reads besides [`COMMON_KEYS`](super::COMMON_KEYS).
pub const KEYS: &[&str] = &["URL", "TOKEN_FILE", "CA_FILE", "PATH"];

pub struct Kubernetes {
    /// Base URL and path.
    url: String,
    /// `GET <url>` for messages, a password in the URL hidden.
    what: String,
    token_file: String,
    agent: ureq::Agent,
}

impl Kubernetes {
    pub fn from_settings(settings: &Settings) -> Result<Kubernetes, String> {
        let base = base_url(settings)?;
        let path = settings.or("PATH", "/readyz");
        if !path.starts_with('/') {
            return Err(format!(
                "{}: {path:?} must start with / (such as /readyz or /version)",
                settings.var("PATH")
            ));
        }
        let url = format!("{}{path}", base.trim_end_matches('/'));
        check_url(&settings.var("PATH"), &url)?;
        let token_file = settings.or("TOKEN_FILE", DEFAULT_TOKEN_FILE).to_string();
        let ca_var = settings.var("CA_FILE");
        let roots = match settings.get("CA_FILE") {
            Some(path) => tls::root_certs(Some((&ca_var, path)))?,
            None if Path::new(DEFAULT_CA_FILE).exists() => tls::root_certs(Some((&ca_var, DEFAULT_CA_FILE)))?,
            None => {
                warn!(
                    "{DEFAULT_CA_FILE} does not exist and {} is not set: the API server at {} \
                     must present a certificate from the built-in roots or SSL_CERT_FILE",
                    settings.var("CA_FILE"),
                    redact(&base)
                );
                tls::root_certs(None)?
            }
        };
        Ok(Kubernetes {
            what: format!("GET {}", redact(&url)),
            url,
            token_file,
            agent: client::agent(roots, false),
        })
    }

    /// The token, read now, or a `credentials` failure naming the file.
    fn token(&self) -> Result<String, Failure> {
        let file = &self.token_file;
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::new(
                Reason::Credentials,
                format!(
                    "{}: cannot read the service-account token from {file}: {e} \
                     (is automountServiceAccountToken off?)",
                    self.what
                ),
            )
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Failure::new(
                Reason::Credentials,
                format!("{}: the token file {file} is empty", self.what),
            ));
        }
        // A header value cannot hold these; say so without echoing it.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Failure::new(
                Reason::Credentials,
                format!("{}: the token file {file} holds characters a bearer token cannot have", self.what),
            ));
        }
        Ok(token.to_string())
    }
}

impl Check for Kubernetes {
    fn verb(&self) -> &'static str {
        "request"
    }

    fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
        attempt.remaining().map_err(|f| name_timeout(f, &self.what))?;
        let token = self.token()?;
        let request = self.agent.get(&self.url).header("Authorization", format!("Bearer {token}"));
        drop(token);
        let reply = client::send(request, &self.what, attempt).map_err(|f| name_timeout(f, &self.what))?;
        let status = reply.status;
        attempt.note("status_code", status);
        if (200..300).contains(&status) {
            return Ok(());
        }
        // Not `401 Unauthorized: Unauthorized`.
        let phrase = status_text(status);
        let said = summary(&reply.body)
            .filter(|s| !phrase.to_ascii_lowercase().ends_with(&s.to_ascii_lowercase()))
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        let message = match status {
            401 => format!(
                "{}: {}: the API server refused the service-account token from {} \
                 (expired, revoked, or issued by another cluster){said}",
                self.what,
                status_text(status),
                self.token_file
            ),
            403 => format!(
                "{}: {}: the API server refused the service-account token from {} \
                 for this path (its identity lacks permission){said}",
                self.what,
                status_text(status),
                self.token_file
            ),
            _ => format!("{}: {}{said}", self.what, status_text(status)),
        };
        Err(Failure::new(Reason::for_status(status), message))
    }
}

/// `URL`, or the in-cluster address the kubelet puts in every pod.
fn base_url(settings: &Settings) -> Result<String, String> {
    if let Some(url) = settings.get("URL") {
        check_url(&settings.var("URL"), url)?;
        return Ok(url.to_string());
    }
    let Some(host) = settings.global("KUBERNETES_SERVICE_HOST") else {
        return Err(format!(
            "{var} is not set and neither is KUBERNETES_SERVICE_HOST (not running in a pod?): \
             set {var} to the API server's URL, such as https://127.0.0.1:6443",
            var = settings.var("URL")
        ));
    };
    let port = settings.global("KUBERNETES_SERVICE_PORT").unwrap_or("443");
    if port.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
        return Err(format!(
            "KUBERNETES_SERVICE_PORT: {port:?} is not a port; set {} to the API server's URL",
            settings.var("URL")
        ));
    }
    let host =
        if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    let url = format!("https://{host}:{port}");
    check_url("KUBERNETES_SERVICE_HOST", &url)?;
    Ok(url)
}

/// What the API server said, in one short line: a `Status` object's
/// message, the failed checks `/readyz` lists (`[-]etcd failed: ...`), or
/// the first line of the body.
fn summary(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(message) = json.get("message").and_then(|m| m.as_str()) {
            return Some(clip(message));
        }
    }
    let failed: Vec<&str> = body.lines().map(str::trim).filter(|l| l.starts_with("[-]")).collect();
    if !failed.is_empty() {
        return Some(clip(&failed.join("; ")));
    }
    body.lines().next().map(clip)
}

fn clip(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_url_comes_from_the_pod_environment() {
        let base = |pairs: &[(&str, &str)]| base_url(&Settings::new("k8s", &env(pairs)));
        assert_eq!(base(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]).unwrap(), "https://10.96.0.1:443");
        assert_eq!(
            base(&[("KUBERNETES_SERVICE_HOST", "fd00::1"), ("KUBERNETES_SERVICE_PORT", "6443")]).unwrap(),
            "https://[fd00::1]:6443"
        );
        assert_eq!(
            base(&[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNARY_K8S_URL", "https://localhost:6443")
            ])
            .unwrap(),
            "https://localhost:6443"
        );
        let err = base(&[]).unwrap_err();
        assert!(
            err.starts_with("KUBERNARY_K8S_URL is not set and neither is KUBERNETES_SERVICE_HOST"),
            "{err}"
        );
        let err = base(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("KUBERNETES_SERVICE_PORT", "https")])
            .unwrap_err();
        assert!(err.starts_with("KUBERNETES_SERVICE_PORT: "), "{err}");
    }

    #[test]
    fn summaries_are_short() {
        assert_eq!(
            summary(r#"{"kind":"Status","message":"forbidden: User \"x\" cannot get path \"/readyz\"","code":403}"#)
                .unwrap(),
            r#"forbidden: User "x" cannot get path "/readyz""#
        );
        assert_eq!(
            summary("[+]ping ok\n[-]etcd failed: reason withheld\n[-]log failed\nreadyz check failed")
                .unwrap(),
            "[-]etcd failed: reason withheld; [-]log failed"
        );
        assert_eq!(summary("  \n").as_deref(), None);
        assert_eq!(summary(&"x".repeat(500)).unwrap().len(), 303);
    }
}
