//! Which checks to run, from `KUBERNARY_CHECKS` and each check's
//! `KUBERNARY_<NAME>_<KEY>` variables.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::checks::{self, Settings};
use crate::cli;
use crate::runs::{Entry, Spec};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds every configured check, or says what to set.
pub fn checks(env: &HashMap<String, String>) -> Result<Vec<Arc<Entry>>, String> {
    let list = match env.get("KUBERNARY_CHECKS").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(list) => list.to_string(),
        // The Go original ran its S3 check whenever a bucket was given.
        None if env.get("KUBERNARY_S3_BUCKET").is_some_and(|b| !b.trim().is_empty()) => "s3".to_string(),
        None => {
            return Err(format!(
                "no check configured: set KUBERNARY_S3_BUCKET to your canary bucket (there is no default: the Go original's, \"kubernary\", is a bucket nobody else owns), or KUBERNARY_CHECKS to a list of name or name=kind (kinds: {})",
                checks::KINDS.join(", ")
            ))
        }
    };
    let mut entries: Vec<Arc<Entry>> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, kind) = item.split_once('=').map(|(n, k)| (n.trim(), k.trim())).unwrap_or((item, item));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!(
                "KUBERNARY_CHECKS: check name {name:?} may hold only letters, digits, '-' and '_' (it names metrics and JSON keys)"
            ));
        }
        if entries.iter().any(|e| e.name == name) {
            return Err(format!("KUBERNARY_CHECKS: check {name:?} is listed twice"));
        }
        let prefix = |n: &str| n.to_ascii_uppercase().replace('-', "_");
        if let Some(other) = entries.iter().find(|e| prefix(&e.name) == prefix(name)) {
            return Err(format!(
                "KUBERNARY_CHECKS: checks {:?} and {name:?} would both read KUBERNARY_{}_*; rename one",
                other.name,
                prefix(name)
            ));
        }
        let settings = Settings::new(name, env);
        reads_no_daemon_variable(name, kind, &settings)?;
        let interval = settings.duration("INTERVAL", DEFAULT_INTERVAL)?;
        let timeout = settings.duration("TIMEOUT", DEFAULT_TIMEOUT)?;
        if interval.is_zero() {
            return Err(format!("{}: must be more than 0", settings.var("INTERVAL")));
        }
        if timeout.is_zero() {
            return Err(format!("{}: must be more than 0", settings.var("TIMEOUT")));
        }
        let count = |key: &str| -> Result<u32, String> {
            let n = settings.number(key, 1)?;
            u32::try_from(n)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{}: must be a whole number from 1 up, got {n}", settings.var(key)))
        };
        let spec = Spec {
            name: name.to_string(),
            kind: kind.to_string(),
            interval,
            timeout,
            fail_after: count("FAIL_AFTER")?,
            pass_after: count("PASS_AFTER")?,
        };
        let check = checks::build(kind, &settings).map_err(|e| format!("check {name:?}: {e}"))?;
        entries.push(Arc::new(Entry::new(spec, check)));
    }
    if entries.is_empty() {
        return Err("KUBERNARY_CHECKS lists no check".into());
    }
    Ok(entries)
}

/// A check reads `KUBERNARY_<NAME>_<KEY>`: a check named `http-idle` would
/// read `KUBERNARY_HTTP_IDLE_TIMEOUT`, which sets the daemon's
/// `--http-idle-timeout`. Refused, rather than one setting meaning two things.
fn reads_no_daemon_variable(name: &str, kind: &str, settings: &Settings) -> Result<(), String> {
    let daemon = cli::variables();
    let keys = checks::COMMON_KEYS.iter().chain(checks::keys(kind).unwrap_or_default());
    for key in keys {
        let var = settings.var(key);
        if daemon.contains(&var.as_str()) {
            let flag = cli::flags().into_iter().find(|f| f.var == Some(var.as_str())).map(|f| f.long);
            let owner = flag.map(|f| format!(" ({f})")).unwrap_or_default();
            return Err(format!(
                "KUBERNARY_CHECKS: check {name:?} would read its {key} from {var}, which is the daemon's own setting{owner}; give the check another name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_bucket_alone_means_the_go_originals_s3_check() {
        crate::tls::install_crypto_provider();
        let entries = checks(&env(&[("KUBERNARY_S3_BUCKET", "b")])).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].name.as_str(), entries[0].kind.as_str()), ("s3", "s3"));
        assert_eq!((entries[0].interval, entries[0].timeout), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT));
    }

    #[test]
    fn names_and_kinds() {
        crate::tls::install_crypto_provider();
        let entries = checks(&env(&[
            ("KUBERNARY_CHECKS", "s3, logs=s3"),
            ("KUBERNARY_S3_BUCKET", "a"),
            ("KUBERNARY_LOGS_BUCKET", "b"),
            ("KUBERNARY_LOGS_INTERVAL", "1m"),
            ("KUBERNARY_LOGS_TIMEOUT", "500ms"),
        ]))
        .unwrap();
        assert_eq!(entries[1].name, "logs");
        assert_eq!(entries[1].interval, Duration::from_secs(60));
        assert_eq!(entries[1].timeout, Duration::from_millis(500));
    }

    #[test]
    fn errors_say_what_to_set() {
        crate::tls::install_crypto_provider();
        let err = |pairs: &[(&str, &str)]| checks(&env(pairs)).err().unwrap();
        assert!(err(&[]).starts_with("no check configured: set KUBERNARY_S3_BUCKET"));
        assert_eq!(
            err(&[("KUBERNARY_CHECKS", "s3")]),
            "check \"s3\": KUBERNARY_S3_BUCKET is not set: it names the bucket to read from"
        );
        assert!(err(&[("KUBERNARY_CHECKS", "x=nope")]).contains("unknown check kind \"nope\""));
        assert!(err(&[("KUBERNARY_CHECKS", "s3,s3"), ("KUBERNARY_S3_BUCKET", "b")]).contains("listed twice"));
        assert!(err(&[("KUBERNARY_CHECKS", "a-b=s3,a_b=s3"), ("KUBERNARY_A_B_BUCKET", "b")])
            .contains("would both read KUBERNARY_A_B_*"));
        assert!(err(&[("KUBERNARY_CHECKS", "a b=s3")]).contains("may hold only"));
        assert_eq!(
            err(&[("KUBERNARY_CHECKS", "http-idle=http"), ("KUBERNARY_HTTP_IDLE_URL", "http://127.0.0.1:1/")]),
            "KUBERNARY_CHECKS: check \"http-idle\" would read its TIMEOUT from KUBERNARY_HTTP_IDLE_TIMEOUT, which is the daemon's own setting (--http-idle-timeout); give the check another name"
        );
        // A name that only shares a prefix with a daemon variable is fine.
        let http = [("KUBERNARY_CHECKS", "http"), ("KUBERNARY_HTTP_URL", "http://127.0.0.1:1/")];
        assert_eq!(checks(&env(&http)).unwrap()[0].name, "http");
        assert!(err(&[("KUBERNARY_S3_BUCKET", "b"), ("KUBERNARY_S3_TIMEOUT", "2")])
            .starts_with("KUBERNARY_S3_TIMEOUT: invalid duration"));
    }
}
