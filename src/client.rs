//! The HTTP client that checks share: one ureq agent per trust set, built
//! once, and the mapping of ureq's errors onto failure reasons.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::time::SystemTime;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, TcpConnector, Transport,
};

use crate::clock;
use crate::contract::{Attempt, Failure, Reason, Stopwatch, Trace, TLS_EXPIRES};
use crate::tls::{Handshake, Roots, TlsConnector};

/// The most of a body a check reads. Checks want a status and a few fields,
/// never a download, so a large or endless body costs no more than this.
pub const BODY_LIMIT: u64 = 1024 * 1024;

/// An agent with the given roots, no redirects unless asked, statuses handed
/// back rather than turned into errors (the check judges them), and the
/// proxy the environment names (`HTTPS_PROXY`, `NO_PROXY`, ...), as the
/// pod's other clients and the Go original's AWS SDK use it.
/// No connection is kept for the next run either: each run connects and
/// shakes hands afresh, so a broken listener or certificate shows at once,
/// and no run fails on a pooled connection the server has just closed.
pub fn agent(roots: Roots, follow_redirects: bool) -> ureq::Agent {
    ureq::Agent::with_parts(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(if follow_redirects { 10 } else { 0 })
            .max_redirects_will_error(false)
            .proxy(ureq::Proxy::try_from_env())
            .max_idle_connections(0)
            .user_agent(concat!("kubernary/", env!("CARGO_PKG_VERSION")))
            .build(),
        ().chain(ConnectProxyConnector::default())
            .chain(Timed("connect", TcpConnector::default()))
            .chain(Timed("tls", TlsConnector::new(roots, shaken))),
        InlineResolver::default(),
    )
}

/// A debug run shows what its handshakes settled; every run notes when the
/// server's certificates run out.
fn shaken(handshake: &Handshake) {
    traced("tls", || handshake.to_string());
    EXPIRY.with(|e| e.set(handshake.earliest_expiry()));
}

/// Times a connector step as a phase of the run: only when it does the work
/// (a step handed an already-made connection, or a plain-HTTP URL for the
/// TLS step, passes it through and is not a phase).
#[derive(Debug)]
struct Timed<C>(&'static str, C);

impl<In: Transport, C: Connector<In>> Connector<In> for Timed<C> {
    type Out = C::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let works = match self.0 {
            "tls" => chained.is_some() && details.uri.scheme_str() == Some("https"),
            _ => chained.is_none(),
        };
        if works {
            let out = step(self.0, || self.1.connect(details, chained));
            // A handshake that worked is traced by the TLS step itself.
            match (&out, self.0) {
                (Ok(_), "tls") => {}
                (Ok(_), _) => traced(self.0, || format!("connected to {}", addresses(&details.addrs))),
                (Err(e), _) => traced(self.0, || format!("{} failed: {e}", addresses(&details.addrs))),
            }
            out
        } else {
            self.1.connect(details, chained)
        }
    }
}

thread_local! {
    /// The phase clock of the run whose exchange this thread is making (see
    /// [`timed_call`]): ureq hands its resolver and connectors nothing of
    /// the run, but runs them on the caller's thread (see [`InlineResolver`]).
    static STOPWATCH: RefCell<Option<Stopwatch>> = const { RefCell::new(None) };
    /// The trace of that run, when it is a debug run.
    static TRACE: RefCell<Option<Trace>> = const { RefCell::new(None) };
    /// What the exchange's handshake found the certificates' expiry to be.
    static EXPIRY: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

/// Records a step of the current exchange's run, if it is traced.
fn traced(step: &'static str, detail: impl FnOnce() -> String) {
    if let Some(trace) = TRACE.with(|t| t.borrow().clone()) {
        trace.step(step, detail());
    }
}

fn addresses(addrs: &[std::net::SocketAddr]) -> String {
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// Runs one of ureq's steps as `phase` of the current exchange's run.
fn step<T>(phase: &'static str, work: impl FnOnce() -> T) -> T {
    let Some(watch) = STOPWATCH.with(|w| w.borrow().clone()) else { return work() };
    let outer = watch.start(phase);
    let out = work();
    watch.finish(outer);
    out
}

/// Runs one exchange's head (resolve, connect, TLS, request, the answer's
/// head) with its steps timed as phases of the attempt; the time between
/// and after them, sending the request and waiting for the answer, is
/// `first_byte`. Phases going when the run times out are counted up to
/// then, so a hung connect shows as `connect`.
fn timed_call<T>(attempt: &Attempt, call: impl FnOnce() -> T) -> T {
    let watch = attempt.stopwatch();
    let outer = watch.start("first_byte");
    STOPWATCH.with(|w| *w.borrow_mut() = Some(watch.clone()));
    TRACE.with(|t| *t.borrow_mut() = attempt.tracer());
    EXPIRY.with(|e| e.set(None));
    let out = call();
    STOPWATCH.with(|w| *w.borrow_mut() = None);
    TRACE.with(|t| *t.borrow_mut() = None);
    if let Some(at) = EXPIRY.with(Cell::take) {
        attempt.note(TLS_EXPIRES, clock::rfc3339(at));
    }
    watch.finish(outer);
    out
}

/// A finished exchange: status, headers and (bounded) body.
pub struct Reply {
    pub status: u16,
    /// The answer's headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (lower case), when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Runs a prepared request within what is left of the attempt, reading at
/// most [`BODY_LIMIT`] of the body. The whole exchange (resolve, connect,
/// TLS, headers and body) shares the one deadline.
pub fn send(
    request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    what: &str,
    attempt: &Attempt,
) -> Result<Reply, Failure> {
    let left = attempt.remaining()?;
    trace_request(&request, attempt);
    let response = timed_call(attempt, || request.config().timeout_global(Some(left)).build().call());
    finish(response, what, attempt)
}

/// [`send`] for a request with a form body.
pub fn send_form(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    form: &[(&str, &str)],
    what: &str,
    attempt: &Attempt,
) -> Result<Reply, Failure> {
    let left = attempt.remaining()?;
    trace_request(&request, attempt);
    let response = timed_call(attempt, || {
        request.config().timeout_global(Some(left)).build().send_form(form.iter().copied())
    });
    finish(response, what, attempt)
}

/// [`send`] for a request with a body given as bytes, for a body that had
/// to be known before sending (a signed one).
pub fn send_bytes(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &[u8],
    what: &str,
    attempt: &Attempt,
) -> Result<Reply, Failure> {
    let left = attempt.remaining()?;
    trace_request(&request, attempt);
    let response = timed_call(attempt, || request.config().timeout_global(Some(left)).build().send(body));
    finish(response, what, attempt)
}

/// The request line of a debug run, its URL redacted as in logs.
fn trace_request<B>(request: &ureq::RequestBuilder<B>, attempt: &Attempt) {
    attempt.trace("request", || {
        let method = request.method_ref().map_or("?", |m| m.as_str());
        let uri = request.uri_ref().map(|u| redact(&u.to_string())).unwrap_or_default();
        format!("{method} {uri}")
    });
}

/// Response headers whose values can carry a credential (or a signed URL)
/// are shown by name only.
fn header_line(name: &str, value: &[u8]) -> String {
    let lower = name.to_ascii_lowercase();
    let secret = ["auth", "cookie", "token", "secret", "key", "signature", "credential", "session"]
        .iter()
        .any(|word| lower.contains(word));
    let value = String::from_utf8_lossy(value);
    match lower.as_str() {
        _ if secret => format!("{name}: ***"),
        "location" | "content-location" | "link" | "refresh" => format!("{name}: {}", redact(&value)),
        _ => format!("{name}: {value}"),
    }
}

fn finish(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
    attempt: &Attempt,
) -> Result<Reply, Failure> {
    let mut response = response.map_err(|e| classify(what, e, attempt)).inspect_err(|failure| {
        attempt.trace("error", || format!("{}: {}", failure.reason, failure.message));
    })?;
    let status = response.status().as_u16();
    // Some checks read a header of an error answer (S3's Date and
    // x-amz-bucket-region); values that are not text are left out.
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect();
    attempt.trace("status", || {
        format!("{} {}", response.status().as_str(), response.status().canonical_reason().unwrap_or(""))
            .trim_end()
            .to_string()
    });
    attempt.trace("headers", || {
        let lines: Vec<String> = response
            .headers()
            .iter()
            .map(|(name, value)| header_line(name.as_str(), value.as_bytes()))
            .collect();
        lines.join("\n")
    });
    // Checks judge the status and a few fields: the first BODY_LIMIT bytes
    // are plenty, and the rest is left unread (connections are not reused).
    let mut bytes = Vec::new();
    attempt
        .timed("body", || {
            response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .reader()
                .take(BODY_LIMIT)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| Failure::io(what, &e, attempt))?;
    attempt.trace("body", || format!("{} bytes read (at most {BODY_LIMIT})", bytes.len()));
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply { status, headers, body })
}

/// Maps a ureq error onto a reason, with `what` (the request, no secrets) as
/// context.
pub fn classify(what: &str, err: ureq::Error, attempt: &Attempt) -> Failure {
    use ureq::Error as E;
    let timeout = attempt.timeout();
    match err {
        E::Timeout(_) => Failure::timeout(timeout),
        E::Io(ref io) => Failure::io(what, io, attempt),
        E::HostNotFound => Failure::new(Reason::Dns, format!("{what}: host not found")),
        E::ConnectionFailed => Failure::new(Reason::Connect, format!("{what}: connection failed")),
        E::Tls(text) => Failure::new(Reason::Tls, format!("{what}: TLS: {text}")),
        E::BodyExceedsLimit(limit) => {
            Failure::new(Reason::Internal, format!("{what}: answer larger than {limit} bytes"))
        }
        E::BadUri(uri) => Failure::new(Reason::Internal, format!("{what}: bad URL {uri}")),
        E::Protocol(e) => Failure::new(Reason::Connect, format!("{what}: bad HTTP answer: {e}")),
        other if attempt.expired() => {
            let _ = other;
            Failure::timeout(timeout)
        }
        other => Failure::new(Reason::Connect, format!("{what}: {other}")),
    }
}

/// Resolves on the calling thread, with no timeout of its own.
///
/// ureq's own resolver, given a timeout, resolves on a new thread and leaves
/// it behind at the deadline; with a hung resolver every run would leave one
/// more thread. On the check's worker instead, a hung lookup holds that one
/// worker, the run is reported at its deadline all the same, and single
/// flight means no second run starts while it hangs: nothing piles up.
#[derive(Debug, Default)]
struct InlineResolver(DefaultResolver);

impl Resolver for InlineResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        _: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let out = step("resolve", || self.0.resolve(uri, config, NextTimeout::default()));
        traced("resolve", || {
            let host = uri.host().unwrap_or("?");
            match &out {
                Ok(addrs) => format!("{host} -> {}", addresses(addrs)),
                Err(e) => format!("{host}: {e}"),
            }
        });
        out
    }
}

/// A URL fit for messages and logs: user info (a password, or a token used
/// as the user) becomes `***`, so does every query value (signed URLs and
/// `access_token=`), and the fragment goes. A text that does not parse as a
/// URL is shown without what could be user info, a query or a fragment.
pub fn redact(text: &str) -> String {
    // `me:pw@host` parses too, as scheme `me` and an opaque path.
    let parsed = url::Url::parse(text).ok().filter(|url| !url.cannot_be_a_base());
    let Some(mut url) = parsed else {
        return match text.split_once("://") {
            Some((scheme, _)) if text.contains('@') => format!("{scheme}://***"),
            _ if text.contains('@') => "***".into(),
            _ => text.split(['?', '#']).next().unwrap_or_default().to_string(),
        };
    };
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_password(None);
        let _ = url.set_username("***");
    }
    url.set_fragment(None);
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(key, _)| key.into_owned()).collect();
        url.query_pairs_mut().clear().extend_pairs(keys.iter().map(|key| (key, "***")));
    }
    // The parser gives `https://host` the path `/`; keep what was written.
    let had_path = text
        .split_once("://")
        .is_some_and(|(_, rest)| rest.find(['/', '?', '#']).is_some_and(|at| rest[at..].starts_with('/')));
    if !had_path && url.path() == "/" {
        return format!("{}{}", &url[..url::Position::BeforePath], &url[url::Position::AfterPath..]);
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::{header_line, redact};

    #[test]
    fn traced_headers_hide_credentials_and_signed_urls() {
        assert_eq!(header_line("Content-Length", b"4"), "Content-Length: 4");
        assert_eq!(header_line("Set-Cookie", b"session=abc"), "Set-Cookie: ***");
        assert_eq!(header_line("x-amz-security-token", b"tok"), "x-amz-security-token: ***");
        assert_eq!(header_line("WWW-Authenticate", b"Bearer realm=x"), "WWW-Authenticate: ***");
        assert_eq!(
            header_line("Location", b"https://h/o?X-Amz-Signature=sig"),
            "Location: https://h/o?X-Amz-Signature=***"
        );
    }

    #[test]
    fn redaction_hides_user_info_query_values_and_fragments() {
        assert_eq!(redact("https://me:s3cret@host:1/p?q=1"), "https://***@host:1/p?q=***");
        assert_eq!(redact("https://tok@host/x?a=1&b&c=2#frag"), "https://***@host/x?a=***&b=***&c=***");
        assert_eq!(redact("https://host/a@b?x=y@z"), "https://host/a@b?x=***");
        assert_eq!(redact("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        // The parser drops a default port.
        assert_eq!(redact("http://[::1]:80/p"), "http://[::1]/p");
        assert_eq!(redact("http://u:p@"), "http://***");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(redact("https://"), "https://");
        assert_eq!(redact("me:pw@host/x"), "***");
        assert_eq!(redact("localhost:8080/healthz?t=1"), "localhost:8080/healthz");
    }
}
