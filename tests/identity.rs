//! The identity check end to end: the real binary against moto's STS on
//! loopback. Once `enforce_auth` is called moto recomputes every request's
//! SigV4 signature (with botocore) and knows only the keys it issued, so a
//! passing check has signed its request right; the wrong-secret test shows
//! that moto does refuse a bad one.

mod support;

use std::time::{Duration, Instant};

use support::{
    ContainerCredsServer, CredsMode, Daemon, HangServer, MotoServer, StatsdReceiver, TestCa, TestCreds,
    MOTO_ACCOUNT, MOTO_DEFAULT_ARN,
};

/// /health answers as soon as a check is done, so a generous timeout costs
/// nothing and keeps a loaded CI machine from failing the tests.
const TIMEOUT: &str = "10s";

fn contains(lines: &[String], text: &str) -> bool {
    lines.iter().any(|l| l.contains(text))
}

#[test]
fn long_term_keys_report_the_users_arn_and_pass_on_it() {
    let moto = MotoServer::start();
    let keys = moto.create_user("canary");
    moto.enforce_auth();
    let endpoint = moto.endpoint();
    let statsd = StatsdReceiver::new();
    let statsd_addr = statsd.addr().to_string();
    let mut env = vec![
        ("KUBERNARY_CHECKS", "id=identity,any=identity"),
        ("KUBERNARY_ID_ENDPOINT", endpoint.as_str()),
        ("KUBERNARY_ID_EXPECT_ARN", keys.arn.as_str()),
        ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
        ("KUBERNARY_ANY_ENDPOINT", endpoint.as_str()),
        ("KUBERNARY_ANY_TIMEOUT", TIMEOUT),
    ];
    env.extend(keys.env());
    let daemon = Daemon::start(&[&statsd_addr, "--debug"], &env);

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}\nmoto log:\n{}", moto.log());
    let id = &body["id"];
    assert_eq!(id["ok"], true, "{body}");
    assert_eq!(id["kind"], "identity", "{body}");
    assert_eq!(id["arn"], format!("arn:aws:iam::{MOTO_ACCOUNT}:user/canary"), "{body}");
    assert_eq!(id["account"], MOTO_ACCOUNT, "{body}");
    assert_eq!(id["credential_source"], "env", "{body}");
    // No expectation: passes, reports the identity, and was warned about.
    assert_eq!(body["any"]["ok"], true, "{body}");
    assert_eq!(body["any"]["arn"], id["arn"], "{body}");
    let logs = daemon.logs();
    assert!(
        contains(&logs, "KUBERNARY_ANY_EXPECT_ARN and KUBERNARY_ANY_EXPECT_ROLE are not set"),
        "{logs:#?}"
    );
    assert!(!contains(&logs, "KUBERNARY_ID_EXPECT_ARN and"), "{logs:#?}");

    // The ARN of every run is in the log at debug level.
    assert!(
        daemon.wait_for_log(
            &format!("[DEBUG] check id: arn=arn:aws:iam::{MOTO_ACCOUNT}:user/canary"),
            Duration::from_secs(5)
        ),
        "{:#?}",
        daemon.logs()
    );
    assert!(!contains(&daemon.logs(), &keys.secret_access_key), "the secret leaked into the log");

    let lines = statsd.lines_until(
        |l| {
            l.iter().any(|x| x == "kubernary.id.identity.succeeded:1|c")
                && l.iter().any(|x| x.starts_with("kubernary.id.identity.duration:"))
        },
        Duration::from_secs(10),
    );
    assert!(lines.iter().any(|l| l == "kubernary.id.identity.succeeded:1|c"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("kubernary.id.identity.duration:") && l.ends_with("|ms")),
        "{lines:?}"
    );

    // A debug run traces the STS call as the http check's: through the
    // shared client, the answer's status, headers and body included.
    let (traced, steps) = daemon.debug_run("id");
    let detail = |step: &str| {
        steps
            .iter()
            .find(|(s, _)| s == step)
            .map(|(_, d)| d.as_str())
            .unwrap_or_else(|| panic!("no {step}: {traced}"))
    };
    assert_eq!(detail("request"), format!("POST {endpoint}/"), "{traced}");
    assert!(detail("connect").starts_with("connected to "), "{traced}");
    assert_eq!(detail("status"), "200 OK", "{traced}");
    assert!(detail("body").ends_with(&format!("(at most {})", 1024 * 1024)), "{traced}");
    for phase in ["credentials", "connect", "first_byte", "body"] {
        assert!(traced["phases_ms"][phase].is_number(), "no {phase} phase: {traced}");
    }
    assert!(!traced.to_string().contains(&keys.secret_access_key), "the secret in a trace: {traced}");
}

#[test]
fn keys_moto_does_not_know_get_its_default_user_arn() {
    // Auth not enforced: moto answers for any key, as its own user.
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "id=identity"),
            ("KUBERNARY_ID_ENDPOINT", &endpoint),
            ("KUBERNARY_ID_EXPECT_ARN", "arn:aws:sts::*:user/moto"),
            ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "kubernary-test-secret"),
        ],
    );
    let (status, body) = daemon.json("/health/id");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"]["arn"], MOTO_DEFAULT_ARN, "{body}");
}

#[test]
fn a_wrong_secret_is_denied_with_stss_reason() {
    let moto = MotoServer::start();
    let keys = moto.create_user("canary");
    moto.enforce_auth();
    let endpoint = moto.endpoint();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "id=identity"),
            ("KUBERNARY_ID_ENDPOINT", &endpoint),
            ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
            ("AWS_ACCESS_KEY_ID", &keys.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all"),
        ],
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["id"]["reason"], "denied", "{body}");
    assert_eq!(body["id"]["credential_source"], "env", "{body}");
    let error = body["id"]["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("sts GetCallerIdentity at {endpoint}/ failed: ")), "{error}");
    assert!(error.contains("403 SignatureDoesNotMatch"), "{error}");
    assert!(!error.contains("not-the-secret-at-all"), "{error}");
    assert!(body["id"].get("arn").is_none(), "{body}");
}

#[test]
fn assumed_role_passes_for_its_role_and_fails_with_both_arns_for_another() {
    let moto = MotoServer::start();
    let role = moto.create_role("my-role");
    moto.create_role("node-role");
    let keys = moto.assume_role(&role, "kubernary-test");
    moto.enforce_auth();
    let session_arn = format!("arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/my-role/kubernary-test");
    assert_eq!(keys.arn, session_arn);

    let endpoint = moto.endpoint();
    let my_pattern = format!("arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/my-role/*");
    let node_pattern = format!("arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/node-role/*");
    let statsd = StatsdReceiver::new();
    let statsd_addr = statsd.addr().to_string();
    let per_check: Vec<(String, String)> = ["MINE", "PATTERN", "NODE", "NODE_ARN"]
        .iter()
        .flat_map(|name| {
            [
                (format!("KUBERNARY_{name}_ENDPOINT"), endpoint.clone()),
                (format!("KUBERNARY_{name}_TIMEOUT"), TIMEOUT.to_string()),
            ]
        })
        .collect();
    let mut env = vec![
        ("KUBERNARY_CHECKS", "mine=identity,pattern=identity,node=identity,node-arn=identity"),
        ("KUBERNARY_MINE_EXPECT_ROLE", "my-role"),
        ("KUBERNARY_PATTERN_EXPECT_ARN", my_pattern.as_str()),
        ("KUBERNARY_NODE_EXPECT_ROLE", "node-role"),
        ("KUBERNARY_NODE_ARN_EXPECT_ARN", node_pattern.as_str()),
    ];
    env.extend(per_check.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.extend(keys.env());
    let daemon = Daemon::start(&[&statsd_addr], &env);

    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}\nmoto log:\n{}", moto.log());
    for name in ["mine", "pattern", "node", "node-arn"] {
        assert_eq!(body[name]["arn"], session_arn, "{name}: {body}");
        assert_eq!(body[name]["credential_source"], "env", "{name}: {body}");
    }
    assert_eq!(body["mine"]["ok"], true, "{body}");
    assert_eq!(body["pattern"]["ok"], true, "{body}");

    assert_eq!(body["node"]["ok"], false, "{body}");
    assert_eq!(body["node"]["reason"], "wrong_identity", "{body}");
    assert_eq!(
        body["node"]["error"],
        format!("got {session_arn} (credentials from env), want role node-role"),
        "{body}"
    );
    assert_eq!(body["node-arn"]["reason"], "wrong_identity", "{body}");
    assert_eq!(
        body["node-arn"]["error"],
        format!("got {session_arn} (credentials from env), want {node_pattern}"),
        "{body}"
    );

    let (status, one) = daemon.json("/health/mine");
    assert_eq!(status, 200, "{one}");

    let lines = statsd.lines_until(
        |l| l.iter().any(|x| x == "kubernary.node.identity.failed:1|c"),
        Duration::from_secs(10),
    );
    assert!(lines.iter().any(|l| l == "kubernary.node.identity.failed:1|c"), "{lines:?}");
}

#[test]
fn container_credentials_are_reported_as_container() {
    let moto = MotoServer::start();
    let role = moto.create_role("my-role");
    let keys = moto.assume_role(&role, "pod-identity");
    moto.enforce_auth();
    let creds = ContainerCredsServer::start(CredsMode::Serve(TestCreds::new(
        &keys.access_key_id,
        &keys.secret_access_key,
        keys.session_token.as_deref().unwrap(),
    )));
    let full_uri = creds.full_uri();
    let endpoint = moto.endpoint();
    // No ENDPOINT key: the SDKs' AWS_ENDPOINT_URL_STS points at moto.
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "id=identity"),
            ("KUBERNARY_ID_EXPECT_ROLE", "my-role"),
            ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
            ("AWS_ENDPOINT_URL_STS", &endpoint),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token"),
        ],
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}\nmoto log:\n{}", moto.log());
    assert_eq!(body["id"]["credential_source"], "container", "{body}");
    assert_eq!(body["id"]["arn"], keys.arn, "{body}");
    let requests = creds.requests();
    assert!(requests.iter().any(|r| r.header("Authorization") == Some("pod-identity-token")), "{requests:?}");
}

#[test]
fn https_with_a_private_ca_from_ssl_cert_file_and_without() {
    let ca = TestCa::new();
    let moto = MotoServer::start_tls(&ca);
    let endpoint = moto.endpoint();
    let ca_file = ca.ca_path();
    let env = [
        ("KUBERNARY_CHECKS", "id=identity"),
        ("KUBERNARY_ID_ENDPOINT", endpoint.as_str()),
        ("KUBERNARY_ID_EXPECT_ARN", MOTO_DEFAULT_ARN),
        ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
        ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
        ("AWS_SECRET_ACCESS_KEY", "kubernary-test-secret"),
    ];
    let mut trusting = env.to_vec();
    trusting.push(("SSL_CERT_FILE", ca_file.to_str().unwrap()));
    let daemon = Daemon::start(&["--no-stats"], &trusting);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}\nmoto log:\n{}", moto.log());
    assert_eq!(body["id"]["arn"], MOTO_DEFAULT_ARN, "{body}");
    drop(daemon);

    let daemon = Daemon::start(&["--no-stats"], &env);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["id"]["reason"], "tls", "{body}");
}

#[test]
fn a_backend_that_never_answers_times_out_at_the_deadline() {
    let hang = HangServer::start();
    let endpoint = hang.url();
    let daemon = Daemon::start(
        &["--no-stats", "--debug"],
        &[
            ("KUBERNARY_CHECKS", "id=identity"),
            ("KUBERNARY_ID_ENDPOINT", &endpoint),
            ("KUBERNARY_ID_TIMEOUT", "1s"),
            ("KUBERNARY_ID_EXPECT_ROLE", "my-role"),
            ("AWS_ACCESS_KEY_ID", "AKIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "kubernary-test-secret"),
        ],
    );
    // The scheduler's first run starts with the daemon; a /health now would
    // join it. Let it time out and its worker return first (--debug says
    // when a timed-out run's worker lets go).
    let returned = |runs: usize| {
        let line = "check id: the run that timed out returned";
        let done = support::eventually(Duration::from_secs(10), || {
            daemon.logs().iter().filter(|l| l.contains(line)).count() >= runs
        });
        assert!(done, "run {runs}'s worker never returned: {:#?}", daemon.logs());
    };
    returned(1);
    for round in 0..2 {
        let started = Instant::now();
        let (status, body) = daemon.json("/health/id");
        let took = started.elapsed();
        assert_eq!(status, 503, "round {round}: {body}");
        assert_eq!(body["id"]["reason"], "timeout", "round {round}: {body}");
        // "timed out after 1s", not "the run started ... is still going":
        // each run let go of its socket at its deadline, so this one (and
        // the scheduler's before it) made way for a new run.
        assert_eq!(body["id"]["error"], "timed out after 1s", "round {round}: {body}");
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(4),
            "round {round}: answered after {took:?}"
        );
        assert!(hang.connections() > round, "the request never reached the backend");
        // Its worker lets go before the next run is asked for.
        returned(round + 2);
    }
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("KUBERNARY_ID_EXPECT_ARN", "arn:aws:sts::1:assumed-role/r/*"),
                ("KUBERNARY_ID_EXPECT_ROLE", "r"),
            ],
            "KUBERNARY_ID_EXPECT_ARN and KUBERNARY_ID_EXPECT_ROLE are both set",
        ),
        (&[("KUBERNARY_ID_EXPECT_ARN", "my-role")], "KUBERNARY_ID_EXPECT_ARN: \"my-role\" is not an ARN"),
        (
            &[("KUBERNARY_ID_EXPECT_ROLE", "arn:aws:iam::1:role/r")],
            "KUBERNARY_ID_EXPECT_ROLE: \"arn:aws:iam::1:role/r\" is an ARN",
        ),
        (
            &[("KUBERNARY_ID_ENDPOINT", "127.0.0.1:5000")],
            "KUBERNARY_ID_ENDPOINT: \"127.0.0.1:5000\" is not an http:// or https:// URL",
        ),
    ];
    for (settings, message) in cases {
        let mut env = vec![("KUBERNARY_CHECKS", "id=identity")];
        env.extend_from_slice(settings);
        let mut daemon = Daemon::spawn_raw(&["--no-stats", "--listen", "127.0.0.1:0"], &env);
        let status =
            daemon.wait_exit(Duration::from_secs(10)).expect("kubernary should exit on bad configuration");
        let logs = daemon.logs();
        assert_eq!(status.code(), Some(2), "{settings:?}: {logs:#?}");
        assert!(
            logs.len() == 1 && logs[0].contains(message),
            "{settings:?}: want one line with {message:?}, got {logs:#?}"
        );
    }
}

/// A daemon whose `id` check asks `server` for its identity with keys from
/// the environment (with a session token: temporary credentials).
fn sts_daemon(server: &support::WebServer) -> Daemon {
    let url = server.base_url();
    Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "id=identity"),
            ("KUBERNARY_ID_ENDPOINT", url.as_str()),
            ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
            ("AWS_ACCESS_KEY_ID", "ASIAKUBERNARYTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session-token-xyz"),
        ],
    )
}

fn sts_failure(daemon: &Daemon) -> (String, String) {
    let (status, body) = daemon.json("/health/id");
    assert_eq!(status, 503, "{body}");
    (body["id"]["reason"].as_str().unwrap().into(), body["id"]["error"].as_str().unwrap().into())
}

#[test]
fn an_expired_signature_at_sts_is_clock_skew_by_how_much() {
    let server = support::WebServer::start();
    // STS's clock 7 minutes ahead of ours: our signature is "expired".
    let now = std::time::SystemTime::now();
    let theirs = now + Duration::from_secs(7 * 60);
    let message = format!(
        "Signature expired: {} is now earlier than {} ({} - 5 min.)",
        support::aws::amz_date(now),
        support::aws::amz_date(theirs - Duration::from_secs(5 * 60)),
        support::aws::amz_date(theirs)
    );
    let date = support::aws::http_date(theirs);
    server.route("/", support::aws::sts_error(403, "SignatureDoesNotMatch", &message, &[("Date", &date)]));
    let daemon = sts_daemon(&server);
    let (reason, error) = sts_failure(&daemon);
    assert_eq!(reason, "clock_skew", "{error}");
    // Whole seconds: 6m59s or 7m0s, by when the answer is read.
    assert!(
        error.contains("this node's clock is 6m5") || error.contains("this node's clock is 7m0s"),
        "{error}"
    );
    assert!(error.contains("behind STS's"), "{error}");
    assert!(error.contains("403 SignatureDoesNotMatch: Signature expired"), "{error}");
}

#[test]
fn an_expired_token_at_sts_names_the_source() {
    let server = support::WebServer::start();
    server.route(
        "/",
        support::aws::sts_error(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
            &[],
        ),
    );
    let daemon = sts_daemon(&server);
    let (reason, error) = sts_failure(&daemon);
    assert_eq!(reason, "credentials", "{error}");
    assert!(
        error.contains(
            "the credentials from env expired: AWS_SESSION_TOKEN in the environment is never renewed"
        ),
        "{error}"
    );
    assert!(!error.contains("session-token-xyz"), "the token leaked: {error}");
}

/// IRSA's own failures, as STS answers AssumeRoleWithWebIdentity: each
/// error says what to fix in the set-up, and never shows the token.
#[test]
fn web_identity_failures_say_what_to_fix() {
    let server = support::WebServer::start();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "eyJhbGciOiJSUzI1NiJ9.projected-token.sig").unwrap();
    let token_path = token.path().display().to_string();
    let url = server.base_url();
    let daemon = Daemon::start(
        &["--no-stats"],
        &[
            ("KUBERNARY_CHECKS", "id=identity"),
            ("KUBERNARY_ID_TIMEOUT", TIMEOUT),
            // STS for both the credentials and the check.
            ("AWS_ENDPOINT_URL_STS", url.as_str()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/canary"),
        ],
    );
    let cases = [
        (
            "ExpiredTokenException",
            "Token expired: current date/time 1795453310 must be before the expiration date/time 1795449710",
            format!("the service-account token in {token_path} has expired"),
        ),
        (
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
            "create the cluster's IAM OIDC identity provider".to_string(),
        ),
        (
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            "the role's trust policy does not admit this service account".to_string(),
        ),
    ];
    for (code, message, want) in cases {
        let status = if code == "AccessDenied" { 403 } else { 400 };
        server.route("/", support::aws::sts_error(status, code, message, &[]));
        let (reason, error) = sts_failure(&daemon);
        assert_eq!(reason, "credentials", "{error}");
        assert!(error.contains(&want), "{code}: want {want:?} in {error}");
        assert!(error.contains(&format!("{status} {code}: {message}")), "{error}");
        assert!(!error.contains("projected-token"), "the token leaked: {error}");
    }
}
