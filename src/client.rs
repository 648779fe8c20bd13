//! The HTTP client that checks share: one ureq agent per trust set, built
//! once, and the mapping of ureq's errors onto failure reasons.

use std::cell::RefCell;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector, TcpConnector,
    Transport,
};

use crate::contract::{Attempt, Failure, Reason};

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
pub fn agent(roots: RootCerts, follow_redirects: bool) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    ureq::Agent::with_parts(
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(if follow_redirects { 10 } else { 0 })
            .max_redirects_will_error(false)
            .proxy(ureq::Proxy::try_from_env())
            .max_idle_connections(0)
            .user_agent(concat!("kubernary/", env!("CARGO_PKG_VERSION")))
            .build(),
        ().chain(ConnectProxyConnector::default())
            .chain(Timed("connect", TcpConnector::default()))
            .chain(Timed("tls", AgentTls::default())),
        InlineResolver::default(),
    )
}

/// ureq's TLS step, with the rustls config built once per agent.
///
/// ureq caches an agent's rustls config (the parsed root store and the rest)
/// only for requests made with the agent's own config. Ours carry a config
/// of their own, for their deadline ([`send`]), and for those ureq built
/// the whole config again, every root certificate parsed, on every HTTPS
/// request. Those configs differ from the agent's in timeouts only, never
/// in TLS, so the TLS step is told it runs on the agent's config and uses
/// the one it built first. (The same chain as ureq's default connector
/// otherwise, less the SOCKS and missing-provider warnings we cannot hit.)
#[derive(Debug, Default)]
struct AgentTls(RustlsConnector);

impl<In: Transport> Connector<In> for AgentTls {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let agent_level = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: false,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: details.register_shutdown.clone(),
        };
        self.0.connect(&agent_level, chained)
    }
}

/// Times a connector step as a phase of the run: only when it did the work
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
        let started = Instant::now();
        let out = self.1.connect(details, chained);
        if works {
            mark(self.0, started.elapsed());
        }
        out
    }
}

thread_local! {
    /// The phases ureq's steps took during the current [`send`], on this
    /// thread: the resolver and the connectors run on the caller's thread
    /// (see [`InlineResolver`]), and ureq hands them nothing of the run.
    static PHASES: RefCell<Vec<(&'static str, Duration)>> = const { RefCell::new(Vec::new()) };
}

fn mark(phase: &'static str, took: Duration) {
    PHASES.with(|p| p.borrow_mut().push((phase, took)));
}

/// Runs one exchange's head (resolve, connect, TLS, request, response head)
/// and records its phases in the attempt; what is left of its time, after
/// the steps ureq took, is the wait for the first byte.
fn timed_call<T>(attempt: &Attempt, call: impl FnOnce() -> T) -> T {
    PHASES.with(|p| p.borrow_mut().clear());
    let started = Instant::now();
    let out = call();
    let total = started.elapsed();
    let steps = PHASES.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut spent = Duration::ZERO;
    for (phase, took) in steps {
        attempt.phase(phase, took);
        spent += took;
    }
    attempt.phase("first_byte", total.saturating_sub(spent));
    out
}

/// A finished exchange: status and (bounded) body.
pub struct Reply {
    pub status: u16,
    pub body: String,
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
    let response = timed_call(attempt, || request.config().timeout_global(Some(left)).build().send(body));
    finish(response, what, attempt)
}

fn finish(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    what: &str,
    attempt: &Attempt,
) -> Result<Reply, Failure> {
    let mut response = response.map_err(|e| classify(what, e, attempt))?;
    let status = response.status().as_u16();
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
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply { status, body })
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
        E::Rustls(e) => Failure::new(Reason::Tls, format!("{what}: TLS: {e}")),
        E::Pem(e) => Failure::new(Reason::Tls, format!("{what}: TLS: {e}")),
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
        let started = Instant::now();
        let resolved = self.0.resolve(uri, config, NextTimeout::default());
        mark("resolve", started.elapsed());
        resolved
    }
}

/// A URL fit for messages and logs: user info (a password, or a token used
/// as the user) becomes `***`, so does every query value (signed URLs and
/// `access_token=`), and the fragment goes.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let hidden: Vec<String> = query
                .split('&')
                .map(|pair| format!("{}=***", pair.split('=').next().unwrap_or("")))
                .collect();
            format!("{path}?{}", hidden.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}
