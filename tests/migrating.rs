//! The Go original's own README (negz/kubernary, kept in
//! /work/shared/go-original/README.txt and quoted here), run against the
//! real kubernary binary: each example either works as that README says, or
//! fails with exactly the message docs/migrating.md shows for it, so the
//! migration guide cannot drift from the binary.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Daemon, S3Server, StatsdReceiver};

const BUCKET: &str = "canary";

fn migrating() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/migrating.md")).unwrap()
}

/// Runs kubernary to its exit: (status, stdout, stderr).
fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubernary"))
        .args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(envs.iter().copied())
        .output()
        .expect("run kubernary");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("exited, not killed"), text(&out.stdout), text(&out.stderr))
}

/// A refused example: exit status 2 and one line, which docs/migrating.md
/// quotes verbatim.
fn refused_as_documented(args: &[&str], envs: &[(&str, &str)]) {
    let (code, _, stderr) = run(args, envs);
    assert_eq!(code, 2, "kubernary {args:?} {envs:?}: {stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {stderr}");
    assert!(
        migrating().contains(line),
        "docs/migrating.md does not show what kubernary {args:?} says:\n{line}"
    );
}

fn s3_with_object(key: &str) -> S3Server {
    let s3 = S3Server::start();
    s3.put_object(BUCKET, key, b"ok");
    s3
}

fn s3_env<'a>(s3: &'a S3Server, endpoint: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("KUBERNARY_S3_BUCKET", BUCKET),
        ("KUBERNARY_S3_ENDPOINT", endpoint),
        ("AWS_ACCESS_KEY_ID", s3.access_key()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
    ]
}

/// `$ docker run negz/kubernary /kubernary/kubernary --help`: the image's
/// ENTRYPOINT is that path, so the path arrives as the first argument; the
/// help lists the Go original's flags and argument, and "also try
/// --help-long and --help-man" works too.
#[test]
fn help_as_the_go_original_readme_runs_it() {
    let binary = env!("CARGO_BIN_EXE_kubernary");
    let (code, help, stderr) = run(&[binary, "--help"], &[]);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "Checks whether your Kubernetes cluster works.",
        "--no-stats",
        "--listen",
        "-d, --debug",
        "--close-after",
        "--kill-after",
        "statsd",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    for other in ["--help-long", "--help-man"] {
        let (code, text, _) = run(&[other], &[]);
        assert_eq!((code, text.as_str()), (0, help.as_str()), "{other} prints the help");
    }
    // Also the image's own path, as the Go original's manifests name it.
    let (code, text, _) = run(&["/kubernary/kubernary", "--help"], &[]);
    assert_eq!((code, text.as_str()), (0, help.as_str()));
}

/// `usage: kubernary [<flags>] <statsd>`, every flag in the form kingpin's
/// help prints it (`--listen=":10002"`), and KUBERNARY_S3_BUCKET and
/// KUBERNARY_S3_KEY; `/health` answers 200 with `{"s3": {"ok": true,
/// "error": ""}}`; the statsd counter is `kubernary.s3.download.succeeded`.
#[test]
fn the_readme_usage_runs_an_s3_check_and_reports_it() {
    let s3 = s3_with_object("canary/object");
    let statsd = StatsdReceiver::new();
    let endpoint = s3.endpoint();
    let statsd_addr = statsd.addr().to_string();
    let mut env = s3_env(&s3, &endpoint);
    env.push(("KUBERNARY_S3_KEY", "canary/object"));
    let daemon = Daemon::start(
        &["--listen=127.0.0.1:0", "--close-after=1m", "--kill-after=2m", "-d", &statsd_addr],
        &env,
    );
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["s3"]["ok"], &body["s3"]["error"]), (&true.into(), &"".into()), "{body}");
    let lines = statsd.lines_until(
        |l| l.iter().any(|x| x == "kubernary.s3.download.succeeded:1|c"),
        Duration::from_secs(10),
    );
    assert!(lines.iter().any(|l| l == "kubernary.s3.download.succeeded:1|c"), "{lines:?}");
}

/// `503 SERVICE UNAVAILABLE - If one or more check fails`, with the failing
/// check's `ok` false and its `error` set, beside the passing one, as in the
/// README's `"failingcheck"` example; `kubernary.s3.download.failed` counts it.
#[test]
fn a_failing_check_answers_503_with_the_readme_json() {
    let s3 = s3_with_object("check");
    let statsd = StatsdReceiver::new();
    let endpoint = s3.endpoint();
    let statsd_addr = statsd.addr().to_string();
    let mut env = s3_env(&s3, &endpoint);
    env.extend([
        ("KUBERNARY_CHECKS", "s3,failingcheck=s3"),
        ("KUBERNARY_FAILINGCHECK_BUCKET", BUCKET),
        ("KUBERNARY_FAILINGCHECK_KEY", "missing"),
        ("KUBERNARY_FAILINGCHECK_ENDPOINT", endpoint.as_str()),
    ]);
    let daemon = Daemon::start(&[&statsd_addr], &env);
    let (status, body) = daemon.json("/health");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["s3"]["ok"], true, "{body}");
    assert_eq!(body["failingcheck"]["ok"], false, "{body}");
    assert!(body["failingcheck"]["error"].as_str().is_some_and(|e| e.contains("NoSuchKey")), "{body}");
    let lines = statsd.lines_until(
        |l| l.iter().any(|x| x == "kubernary.failingcheck.download.failed:1|c"),
        Duration::from_secs(10),
    );
    assert!(lines.iter().any(|l| l == "kubernary.failingcheck.download.failed:1|c"), "{lines:?}");
}

/// `http://kubernary/quitquitquit - Causes Kubernary to shutdown and exit
/// immediately`: kubernary answers 200 and exits 0, after draining (an idle
/// daemon has nothing to drain, so at once).
#[test]
fn quitquitquit_shuts_down_and_exits_zero() {
    let s3 = s3_with_object("check");
    let endpoint = s3.endpoint();
    let mut daemon = Daemon::start(&["--no-stats"], &s3_env(&s3, &endpoint));
    assert_eq!(daemon.get("/quitquitquit").status, 200);
    let status = daemon.wait_exit(Duration::from_secs(30)).expect("exits after /quitquitquit");
    assert_eq!(status.code(), Some(0));
}

/// The Go original defaulted KUBERNARY_S3_BUCKET to `kubernary`, a bucket
/// nobody else owns; kubernary refuses to start without one.
#[test]
fn no_bucket_is_refused_with_the_documented_message() {
    refused_as_documented(&["127.0.0.1:8125"], &[]);
}

/// kingpin exited 1 on bad input; kubernary exits 2.
#[test]
fn bad_input_exits_2_with_the_documented_messages() {
    let bucket = [("KUBERNARY_S3_BUCKET", BUCKET)];
    // An unknown flag.
    refused_as_documented(&["--bogus", "127.0.0.1:8125"], &bucket);
    // A boolean neither Go's strconv.ParseBool (kingpin's) nor kubernary reads.
    refused_as_documented(
        &["127.0.0.1:8125"],
        &[("KUBERNARY_S3_BUCKET", BUCKET), ("KUBERNARY_DEBUG", "maybe")],
    );
    // <statsd> is required, as it was, unless --no-stats.
    refused_as_documented(&[], &bucket);
    // A duration kingpin (Go's time.ParseDuration) refused too.
    refused_as_documented(&["--kill-after=2", "127.0.0.1:8125"], &bucket);
}

/// What the Go original accepted and kubernary still does, or now does.
#[test]
fn the_go_originals_spellings_still_work() {
    let bucket = ("KUBERNARY_S3_BUCKET", BUCKET);
    // Nothing leaves loopback: the check's S3 is a closed port.
    let local = ("KUBERNARY_S3_ENDPOINT", "http://127.0.0.1:1");
    for (args, envs) in [
        (vec!["--debug=false", "--no-stats"], vec![bucket]),
        // kingpin's negation of a boolean flag.
        (vec!["--no-debug", "--no-stats"], vec![bucket, ("KUBERNARY_DEBUG", "true")]),
        (vec!["--no-stats"], vec![bucket, ("KUBERNARY_DEBUG", "TRUE")]),
        (vec!["--no-stats"], vec![bucket, ("KUBERNARY_DEBUG", "1")]),
        // kingpin required <statsd> even with --no-stats; both work.
        (vec!["--no-stats", "127.0.0.1:8125"], vec![bucket]),
    ] {
        let mut envs = envs;
        envs.push(local);
        let daemon = Daemon::start(&args, &envs);
        assert_eq!(daemon.get("/livez").status, 200, "{args:?} {envs:?}");
    }
}
