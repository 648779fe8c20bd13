//! The command line as users meet it: help, version, and every kind of bad
//! input exiting 2 with one line that names what to fix.

mod support;

use std::time::Duration;

use support::Daemon;

/// Runs the binary expecting it to exit; returns (status, stderr, stdout).
fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut daemon = Daemon::spawn_raw(args, envs);
    let status = daemon.wait_exit(Duration::from_secs(20)).expect("kubernary should exit");
    (status.code().unwrap_or(-1), daemon.logs().join("\n"), daemon.stdout().join("\n"))
}

const BUCKET: (&str, &str) = ("KUBERNARY_S3_BUCKET", "b");

fn usage_error(args: &[&str], envs: &[(&str, &str)], expect: &str) {
    let (code, stderr, _) = run(args, envs);
    assert_eq!(code, 2, "args {args:?} env {envs:?}: {stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_reads_like_the_go_original() {
    let (code, _, stdout) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for needle in [
        "Usage: kubernary",
        "Checks whether your Kubernetes cluster works.",
        "--no-stats",
        "--listen",
        "-d, --debug",
        "--close-after",
        "--kill-after",
        "statsd",
        "KUBERNARY_LISTEN",
    ] {
        assert!(stdout.contains(needle), "help lacks {needle:?}:\n{stdout}");
    }
}

#[test]
fn version_prints_the_version_and_the_git_commit() {
    let (code, _, stdout) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!("kubernary {}", env!("CARGO_PKG_VERSION"))), "{stdout}");
    // build.rs asks git; the tests run in a checkout, so it must have said.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => {
            assert_eq!(stdout.trim(), format!("kubernary {} (commit {head})", env!("CARGO_PKG_VERSION")),)
        }
        None => assert!(stdout.contains("(commit "), "{stdout}"),
    }
}

#[test]
fn unknown_flag() {
    usage_error(&["--frobnicate", "127.0.0.1:8125"], &[BUCKET], "--frobnicate");
}

#[test]
fn bad_durations_name_the_flag_or_variable() {
    usage_error(
        &["--close-after=5parsecs", "127.0.0.1:8125"],
        &[BUCKET],
        "--close-after: invalid duration \"5parsecs\"",
    );
    usage_error(
        &["127.0.0.1:8125"],
        &[BUCKET, ("KUBERNARY_KILL_AFTER", "2")],
        "KUBERNARY_KILL_AFTER: invalid duration \"2\": missing unit",
    );
    usage_error(
        &["127.0.0.1:8125"],
        &[BUCKET, ("KUBERNARY_S3_INTERVAL", "often")],
        "KUBERNARY_S3_INTERVAL: invalid duration",
    );
    usage_error(
        &["127.0.0.1:8125"],
        &[BUCKET, ("KUBERNARY_S3_TIMEOUT", "0s")],
        "KUBERNARY_S3_TIMEOUT: must be more than 0",
    );
}

#[test]
fn bad_addresses() {
    usage_error(
        &["--listen", "not-an-address", "127.0.0.1:8125"],
        &[BUCKET],
        "--listen: \"not-an-address\" is not an address",
    );
    usage_error(&["statsd-without-port"], &[BUCKET], "<statsd>: \"statsd-without-port\" is not host:port");
    usage_error(&[], &[BUCKET], "missing <statsd>");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr, _) = run(&["--listen", &addr, "--no-stats"], &[BUCKET]);
    assert_eq!(code, 1, "a taken port is not bad input: {stderr}");
    assert!(stderr.contains(&format!("listening on {addr}")) && stderr.contains("in use"), "{stderr}");
}

#[test]
fn missing_or_wrong_check_configuration() {
    usage_error(&["--no-stats"], &[], "no check configured: set KUBERNARY_S3_BUCKET");
    usage_error(&["--no-stats"], &[("KUBERNARY_CHECKS", "s3")], "KUBERNARY_S3_BUCKET is not set");
    usage_error(&["--no-stats"], &[("KUBERNARY_CHECKS", "x=teleport")], "unknown check kind \"teleport\"");
    usage_error(&["--no-stats"], &[BUCKET, ("KUBERNARY_S3_ENDPOINT", "ftp://x")], "KUBERNARY_S3_ENDPOINT");
    usage_error(
        &["--no-stats"],
        &[BUCKET, ("KUBERNARY_DEBUG", "perhaps")],
        "KUBERNARY_DEBUG: expected true or false",
    );
}

#[test]
fn a_check_named_like_a_daemon_variable_is_refused() {
    // `http-idle` would read its timeout from KUBERNARY_HTTP_IDLE_TIMEOUT.
    usage_error(
        &["--no-stats"],
        &[("KUBERNARY_CHECKS", "http-idle=http"), ("KUBERNARY_HTTP_IDLE_URL", "http://127.0.0.1:9/")],
        "check \"http-idle\" would read its TIMEOUT from KUBERNARY_HTTP_IDLE_TIMEOUT, which is the daemon's own setting (--http-idle-timeout)",
    );
}

#[test]
fn go_spellings_of_booleans_and_kingpins_negations_reach_the_daemon() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = backend.local_addr().unwrap().to_string();
    // --no-stats=T (Go's ParseBool), --no-debug beating KUBERNARY_DEBUG=True,
    // and --cached-health from KUBERNARY_CACHED_HEALTH=t.
    let daemon = Daemon::start(
        &["--no-stats=T", "--no-debug"],
        &[
            ("KUBERNARY_CHECKS", "t=tcp"),
            ("KUBERNARY_T_ADDRESS", &address),
            ("KUBERNARY_DEBUG", "True"),
            ("KUBERNARY_CACHED_HEALTH", "t"),
        ],
    );
    // Logged after the options (a debug line), by the same thread.
    assert!(daemon.wait_for_log("not sending metrics (--no-stats)", Duration::from_secs(10)));
    assert!(daemon.logs().iter().all(|l| !l.contains("[DEBUG]")), "--no-debug lost to KUBERNARY_DEBUG");
    // Only a cached answer says how old it is, or that there is none yet.
    let (_, body) = daemon.json("/health");
    assert!(body["t"].get("age_seconds").is_some() || body["t"]["reason"] == "stale", "{body}");
}

#[test]
fn environment_configures_the_daemon() {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let daemon = Daemon::start(
        &[],
        &[BUCKET, ("KUBERNARY_NO_STATS", "true"), ("KUBERNARY_LISTEN", &listen), ("KUBERNARY_DEBUG", "1")],
    );
    assert_eq!(daemon.addr().to_string(), listen);
    assert_eq!(daemon.get("/livez").status, 200);
    assert!(
        daemon.wait_for_log("[DEBUG]", Duration::from_secs(10)),
        "KUBERNARY_DEBUG did not turn on debug logs"
    );
}
