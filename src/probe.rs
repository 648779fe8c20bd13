//! `kubernary probe`: the binary probes a kubernary over HTTP, because a
//! `FROM scratch` image has no curl for its `HEALTHCHECK`.
//!
//! `kubernary probe [URL] [--timeout DURATION]` GETs the URL (default
//! `http://127.0.0.1:<port>/health`, the port from `KUBERNARY_LISTEN` or
//! 10002; a bare path such as `/livez` is taken on that same address), and
//! prints one line saying why: the status, and for a failing `/health` the
//! failing checks and their errors. Exit status: 0 on 200, 1 otherwise, 2 on
//! bad input (as for the daemon).
//!
//! It is dispatched from `main` before argh sees the command line, so the
//! Go original's `kubernary [flags] <statsd>` is unchanged: `probe` is not a
//! `host:port`, so it was never a valid statsd address.

use std::time::{Duration, Instant};

use crate::contract::Attempt;
use crate::duration::Millis;
use crate::{client, duration, tls};

/// The argument that selects the probe.
pub const COMMAND: &str = "probe";

/// Long enough for a `/health` that waits on checks with the default 2 s
/// timeout; a container runtime's own health-check timeout still bounds it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest body read for the explanation.
const BODY_LIMIT: usize = 64 * 1024;

pub const USAGE: &str = "\
Usage: kubernary probe [<url>] [--timeout <duration>]

Probes a kubernary over HTTP, for container health checks (a scratch image
has no curl). Prints one line saying why; exits 0 on 200, 1 otherwise, 2 on
bad input.

Positional Arguments:
  url               what to GET: a URL, or a path on the default address
                    (default http://127.0.0.1:<port>/health, the port taken
                    from KUBERNARY_LISTEN, else 10002)

Options:
  --timeout         give up after this long (default 10s)
  --help, help      display usage information
";

/// What the probe ended with: the exit status and the line to print.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub code: u8,
    pub line: String,
}

impl Outcome {
    fn usage(message: String) -> Outcome {
        Outcome { code: 2, line: format!("kubernary probe: {message} (see kubernary probe --help)") }
    }
}

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub timeout: Duration,
}

/// Runs the probe for `args` (what follows `probe`). Help is an outcome too
/// (status 0, the usage text).
pub fn run(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Outcome {
    let request = match parse(args, env) {
        Ok(Some(request)) => request,
        Ok(None) => return Outcome { code: 0, line: USAGE.trim_end().to_string() },
        Err(message) => return Outcome::usage(message),
    };
    probe(&request)
}

/// `Ok(None)` is a request for help.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Request>, String> {
    let mut url = None;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" | "help" => return Ok(None),
            "--timeout" => {
                let text = inline
                    .or_else(|| rest.next().cloned())
                    .ok_or("--timeout needs a duration, for example --timeout 5s")?;
                timeout = duration::parse(&text).map_err(|e| format!("--timeout: {e}"))?;
                if timeout.is_zero() {
                    return Err("--timeout: must be more than 0".into());
                }
            }
            _ if flag.starts_with('-') && flag.len() > 1 => return Err(format!("unknown flag {flag}")),
            _ if url.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => url = Some(arg.clone()),
        }
    }
    let base = default_base(env)?;
    let url = match url {
        None => format!("{base}/health"),
        Some(path) if path.starts_with('/') => format!("{base}{path}"),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => url,
        Some(other) => {
            return Err(format!("{other:?} is not an http:// or https:// URL nor a path such as /livez"))
        }
    };
    Ok(Some(Request { url, timeout }))
}

/// `http://HOST:PORT` for the daemon's listen address: `KUBERNARY_LISTEN`
/// (`:10002` by default). An address on every interface is probed on
/// loopback.
pub fn default_base(env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let listen = env("KUBERNARY_LISTEN").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let text = listen.as_deref().unwrap_or(":10002");
    let (host, port) = crate::cli::split_listen(text).map_err(|e| format!("KUBERNARY_LISTEN: {e}"))?;
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    Ok(format!("http://{host}:{port}"))
}

/// GETs the URL within the timeout and explains the answer in one line.
pub fn probe(request: &Request) -> Outcome {
    let url = &request.url;
    let unhealthy = |why: String| Outcome { code: 1, line: one_line(&format!("unhealthy: {why}")) };
    // HTTPS trusts what the checks trust: the built-in roots and
    // SSL_CERT_FILE. Plain HTTP needs no roots, and must not fail over a
    // broken SSL_CERT_FILE.
    let roots = if url.starts_with("https://") {
        match tls::root_certs(None) {
            Ok(roots) => roots,
            Err(e) => return unhealthy(format!("GET {url}: {e}")),
        }
    } else {
        tls::Roots::none()
    };
    let agent = client::agent(roots, false);
    let started = Instant::now();
    let attempt = Attempt::new(started, request.timeout);
    let reply = match client::send(agent.get(url.as_str()), &format!("GET {url}"), &attempt) {
        Ok(reply) => reply,
        Err(failure) => {
            let message = failure.message;
            // ureq's errors are named after the request; a timeout is not.
            return match message.starts_with("GET ") {
                true => unhealthy(message),
                false => unhealthy(format!("GET {url}: {message}")),
            };
        }
    };
    let took = Millis(started.elapsed());
    let summary = summarize(&reply.body, reply.status == 200);
    let tail = match summary {
        Some(s) => format!(": {s}"),
        None => String::new(),
    };
    match reply.status {
        200 => Outcome { code: 0, line: one_line(&format!("healthy: 200 from {url} in {took}{tail}")) },
        status => unhealthy(format!("{status} from {url} in {took}{tail}")),
    }
}

/// For a `/health` answer (`{"name": {"ok": bool, "error": "..."}}`) the
/// checks that pass, or the failing ones with their errors; for anything
/// else, the start of the body.
fn summarize(body: &str, ok: bool) -> Option<String> {
    let body = truncate(body, BODY_LIMIT);
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(body) {
        let checks: Vec<(&String, &serde_json::Value)> =
            map.iter().filter(|(_, v)| v.get("ok").is_some_and(|o| o.is_boolean())).collect();
        if !checks.is_empty() {
            let failing: Vec<String> = checks
                .iter()
                .filter(|(_, v)| v["ok"] != true)
                .map(|(name, v)| {
                    let error = v.get("error").and_then(|e| e.as_str()).unwrap_or("");
                    match error.is_empty() {
                        true => format!("{name} failed"),
                        false => format!("{name}: {error}"),
                    }
                })
                .collect();
            return Some(match failing.is_empty() {
                true => {
                    let mut names: Vec<&str> = checks.iter().map(|(n, _)| n.as_str()).collect();
                    names.sort_unstable();
                    format!("{} pass", names.join(", "))
                }
                false => failing.join("; "),
            });
        }
    }
    let text = body.trim();
    if text.is_empty() || (ok && text.len() > 80) {
        return None;
    }
    Some(truncate(text, 200).to_string())
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Health checkers keep one line of output; so do log scrapers.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Option<Request>, String> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse(&args, &|name| env.get(name).cloned())
    }

    fn url(args: &[&str], env: &[(&str, &str)]) -> String {
        parse_with(args, env).unwrap().unwrap().url
    }

    #[test]
    fn the_default_url_follows_the_listen_address() {
        assert_eq!(url(&[], &[]), "http://127.0.0.1:10002/health");
        assert_eq!(url(&[], &[("KUBERNARY_LISTEN", ":9000")]), "http://127.0.0.1:9000/health");
        assert_eq!(url(&[], &[("KUBERNARY_LISTEN", "0.0.0.0:9000")]), "http://127.0.0.1:9000/health");
        assert_eq!(url(&[], &[("KUBERNARY_LISTEN", "[::]:9000")]), "http://[::1]:9000/health");
        assert_eq!(
            url(&["/livez"], &[("KUBERNARY_LISTEN", "localhost:9000")]),
            "http://localhost:9000/livez"
        );
        assert_eq!(url(&["https://example.test:1/health/s3"], &[]), "https://example.test:1/health/s3");
    }

    #[test]
    fn timeout_in_both_spellings() {
        let r = parse_with(&["--timeout", "3s"], &[]).unwrap().unwrap();
        assert_eq!(r.timeout, Duration::from_secs(3));
        let r = parse_with(&["--timeout=250ms", "/livez"], &[]).unwrap().unwrap();
        assert_eq!(r.timeout, Duration::from_millis(250));
        assert_eq!(parse_with(&[], &[]).unwrap().unwrap().timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_input_names_what_to_fix() {
        let err = |args: &[&str], env: &[(&str, &str)]| parse_with(args, env).unwrap_err();
        assert!(err(&["--timeout", "5x"], &[]).starts_with("--timeout: invalid duration"));
        assert!(err(&["--timeout"], &[]).starts_with("--timeout needs a duration"));
        assert_eq!(err(&["--bogus"], &[]), "unknown flag --bogus");
        assert!(err(&["127.0.0.1:10002"], &[]).contains("is not an http:// or https:// URL"));
        assert!(err(&["/a", "/b"], &[]).starts_with("unexpected argument"));
        assert!(err(&[], &[("KUBERNARY_LISTEN", "nonsense")]).starts_with("KUBERNARY_LISTEN:"));
        assert_eq!(parse_with(&["--help"], &[]), Ok(None));
        let outcome = run(&["--bogus".to_string()], &|_| None);
        assert_eq!(outcome.code, 2);
    }

    #[test]
    fn a_health_body_is_summarized() {
        let body = r#"{"s3":{"ok":true,"error":""},"logs":{"ok":false,"error":"timed out after 2s"}}"#;
        assert_eq!(summarize(body, false).unwrap(), "logs: timed out after 2s");
        let body = r#"{"s3":{"ok":true,"error":""},"logs":{"ok":true,"error":""}}"#;
        assert_eq!(summarize(body, true).unwrap(), "logs, s3 pass");
        assert_eq!(summarize("ok\n", true).unwrap(), "ok");
        assert_eq!(summarize("", false), None);
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
