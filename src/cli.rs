//! The command line, kept apart from the daemon: argh for the flags, plus
//! what kingpin gave the seed's users and argh lacks: `--flag=value`, and a
//! `KUBERNARY_*` variable behind every flag (the command line wins).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use argh::FromArgs;

use crate::checks::settings::parse_bool;
use crate::duration;

/// Checks whether your Kubernetes cluster works.
#[derive(FromArgs, Debug, Default)]
#[argh(
    note = "`kubernary probe [<url>]` probes a running kubernary over HTTP, for container health checks; see `kubernary probe --help`.\n--help-long and --help-man print this help too, as they did in the Go original (kingpin)."
)]
pub struct Args {
    /// don't send statsd stats [env KUBERNARY_NO_STATS]
    #[argh(switch)]
    pub no_stats: bool,

    /// address at which to expose HTTP health checks (default ":10002") [env KUBERNARY_LISTEN]
    #[argh(option)]
    pub listen: Option<String>,

    /// run with debug logging [env KUBERNARY_DEBUG]
    #[argh(switch, short = 'd')]
    pub debug: bool,

    /// wait this long at shutdown before closing HTTP connections (default 1m) [env KUBERNARY_CLOSE_AFTER]
    #[argh(option)]
    pub close_after: Option<String>,

    /// wait this long at shutdown before exiting (default 2m) [env KUBERNARY_KILL_AFTER]
    #[argh(option)]
    pub kill_after: Option<String>,

    /// how to write log lines: text or json (one object per line) (default text) [env KUBERNARY_LOG_FORMAT]
    #[argh(option)]
    pub log_format: Option<String>,

    /// log every answered request at INFO (by default they are debug lines) [env KUBERNARY_ACCESS_LOG]
    #[argh(switch)]
    pub access_log: bool,

    /// turn off the /quitquitquit endpoint [env KUBERNARY_NO_QUITQUITQUIT]
    #[argh(switch)]
    pub no_quitquitquit: bool,

    /// statsd metric name prefix (default "kubernary") [env KUBERNARY_PREFIX]
    #[argh(option)]
    pub prefix: Option<String>,

    /// a DogStatsD tag for every metric, key=value; repeatable [env KUBERNARY_TAGS, comma-separated]
    #[argh(option)]
    pub tag: Vec<String>,

    /// spread each check's first run over this long, so a DaemonSet does not hit a backend from every node at once (default 0s) [env KUBERNARY_START_JITTER]
    #[argh(option)]
    pub start_jitter: Option<String>,

    /// answer /health from the latest scheduled results instead of running checks, as ?cached=true does [env KUBERNARY_CACHED_HEALTH]
    #[argh(switch)]
    pub cached_health: bool,

    /// close an HTTP connection idle this long; one that sends without completing a request is closed after three times this (default 10s) [env KUBERNARY_HTTP_IDLE_TIMEOUT]
    #[argh(option)]
    pub http_idle_timeout: Option<String>,

    /// most open HTTP connections; past it the idlest are closed (default 512) [env KUBERNARY_MAX_CONNECTIONS]
    #[argh(option)]
    pub max_connections: Option<String>,

    /// print the version and exit
    #[argh(switch)]
    pub version: bool,

    /// address to which to send statsd metrics, host:port [env KUBERNARY_STATSD]
    #[argh(positional)]
    pub statsd: Option<String>,
}

/// The daemon's settings, parsed and checked.
#[derive(Debug, Clone)]
pub struct Options {
    pub statsd: Option<String>,
    pub listen: Vec<SocketAddr>,
    pub listen_text: String,
    pub debug: bool,
    pub close_after: Duration,
    pub kill_after: Duration,
    pub quitquitquit: bool,
    pub prefix: String,
    pub tags: Vec<(String, String)>,
    pub start_jitter: Duration,
    pub cached_health: bool,
    pub http_idle_timeout: Duration,
    pub max_connections: usize,
    pub log_format: crate::logging::Format,
    pub access_log: bool,
}

/// Why the command line ended the program: help text (status 0) or an error
/// (status 2).
#[derive(Debug)]
pub enum Exit {
    Help(String),
    Version,
    Error(String),
}

const SWITCHES: &[&str] =
    &["--no-stats", "--debug", "-d", "--no-quitquitquit", "--version", "--access-log", "--cached-health"];

/// Parses `argv` (without the program name) against `env`.
pub fn parse(argv: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Options, Exit> {
    // The Go original's image had no ENTRYPOINT, so its users ran
    // `docker run negz/kubernary /kubernary/kubernary ...`; against ours
    // (ENTRYPOINT /kubernary/kubernary) that path arrives as an argument.
    let argv = match argv.split_first() {
        Some((first, rest)) if names_this_program(first) => rest,
        _ => argv,
    };
    // kingpin's other help flags, which scripts written for the Go original pass.
    let argv: Vec<String> = argv
        .iter()
        .map(|a| if a == "--help-long" || a == "--help-man" { "--help".to_string() } else { a.clone() })
        .collect();
    let (argv, off) = split_equals(&argv)?;
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match Args::from_args(&["kubernary"], &refs) {
        Ok(args) => args,
        Err(early) => {
            return Err(match early.status {
                Ok(()) => Exit::Help(early.output),
                Err(()) => Exit::Error(format!("{} (kubernary --help lists the flags)", early.output.trim())),
            })
        }
    };
    if args.version {
        return Err(Exit::Version);
    }
    resolve(args, &off, env).map_err(Exit::Error)
}

/// Whether `arg` is this program's own path: the image's `/kubernary/kubernary`,
/// or any path to the running executable.
fn names_this_program(arg: &str) -> bool {
    if arg == "/kubernary/kubernary" {
        return true;
    }
    let own = std::env::current_exe().and_then(std::fs::canonicalize);
    arg.contains('/') && matches!((std::fs::canonicalize(arg), own), (Ok(a), Ok(b)) if a == b)
}

/// `--listen=:10002` becomes `--listen :10002`; `--debug=true` becomes
/// `--debug`, as kingpin read them. `--debug=false` is returned apart, as a
/// switch turned off on the command line, which beats the environment.
fn split_equals(argv: &[String]) -> Result<(Vec<String>, Vec<String>), Exit> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    let mut off = Vec::new();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(rest.cloned());
            break;
        }
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                if SWITCHES.contains(&flag) {
                    match parse_bool(value) {
                        Some(true) => out.push(flag.to_string()),
                        Some(false) => off.push(flag.to_string()),
                        None => {
                            return Err(Exit::Error(format!("{flag}: expected true or false, got {value:?}")))
                        }
                    }
                } else {
                    out.push(flag.to_string());
                    out.push(value.to_string());
                }
            }
            // kingpin's negation of a switch: `--no-debug` is `--debug=false`.
            None if arg
                .strip_prefix("--no-")
                .is_some_and(|s| SWITCHES.contains(&format!("--{s}").as_str())) =>
            {
                off.push(format!("--{}", &arg[5..]))
            }
            _ => out.push(arg.clone()),
        }
    }
    Ok((out, off))
}

fn resolve(args: Args, off: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Options, String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    // The switch's flag spellings, so that `--flag=false` beats the variable.
    let flags = |name: &str| -> &'static [&'static str] {
        match name {
            "KUBERNARY_NO_STATS" => &["--no-stats"],
            "KUBERNARY_DEBUG" => &["--debug", "-d"],
            "KUBERNARY_NO_QUITQUITQUIT" => &["--no-quitquitquit"],
            "KUBERNARY_CACHED_HEALTH" => &["--cached-health"],
            "KUBERNARY_ACCESS_LOG" => &["--access-log"],
            _ => &[],
        }
    };
    let switch = |given: bool, name: &str| -> Result<bool, String> {
        if off.iter().any(|f| flags(name).contains(&f.as_str())) {
            return Ok(false);
        }
        if given {
            return Ok(true);
        }
        match env(name) {
            None => Ok(false),
            Some(v) => parse_bool(&v).ok_or_else(|| format!("{name}: expected true or false, got {v:?}")),
        }
    };
    // A value from the command line is named by its flag in errors, one from
    // the environment by its variable, so the user knows what to fix.
    let option = |given: Option<String>, flag: &str, var: &str, default: &str| -> (String, String) {
        match (given, env(var)) {
            (Some(v), _) => (v, flag.to_string()),
            (None, Some(v)) => (v, var.to_string()),
            (None, None) => (default.to_string(), flag.to_string()),
        }
    };
    let duration =
        |(text, source): (String, String)| duration::parse(&text).map_err(|e| format!("{source}: {e}"));

    let no_stats = switch(args.no_stats, "KUBERNARY_NO_STATS")?;
    let debug = switch(args.debug, "KUBERNARY_DEBUG")?;
    let no_quit = switch(args.no_quitquitquit, "KUBERNARY_NO_QUITQUITQUIT")?;
    let close_after = duration(option(args.close_after, "--close-after", "KUBERNARY_CLOSE_AFTER", "1m"))?;
    let kill_after = duration(option(args.kill_after, "--kill-after", "KUBERNARY_KILL_AFTER", "2m"))?;
    let (listen_text, listen_source) = option(args.listen, "--listen", "KUBERNARY_LISTEN", ":10002");
    let listen = listen_addresses(&listen_text).map_err(|e| format!("{listen_source}: {e}"))?;

    let statsd = match (args.statsd, env("KUBERNARY_STATSD")) {
        (Some(v), _) => Some((v, "<statsd>")),
        (None, Some(v)) => Some((v, "KUBERNARY_STATSD")),
        (None, None) => None,
    };
    let statsd = match (no_stats, statsd) {
        (true, _) => None,
        (false, None) => {
            return Err("missing <statsd>: give the statsd address as host:port (or KUBERNARY_STATSD), or --no-stats to send no metrics".into())
        }
        (false, Some((address, source))) => {
            check_host_port(&address).map_err(|e| format!("{source}: {e}"))?;
            Some(address)
        }
    };
    let cached_health = switch(args.cached_health, "KUBERNARY_CACHED_HEALTH")?;
    let start_jitter = duration(option(args.start_jitter, "--start-jitter", "KUBERNARY_START_JITTER", "0s"))?;
    let (prefix, prefix_source) = option(args.prefix, "--prefix", "KUBERNARY_PREFIX", "kubernary");
    if prefix.is_empty() || prefix.contains([':', '|', '@', '#', ' ']) {
        return Err(format!(
            "{prefix_source}: {prefix:?} cannot name statsd metrics (no ':', '|', '@', '#' or spaces)"
        ));
    }
    let (tag_texts, tag_source) = if args.tag.is_empty() {
        let from_env: Vec<String> = env("KUBERNARY_TAGS")
            .map(|v| v.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect())
            .unwrap_or_default();
        (from_env, "KUBERNARY_TAGS")
    } else {
        (args.tag, "--tag")
    };
    let tags = tag_texts
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() && !t.contains([',', '|', '#']) => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => Err(format!("{tag_source}: {t:?} is not key=value")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let http_idle_timeout = duration(option(
        args.http_idle_timeout,
        "--http-idle-timeout",
        "KUBERNARY_HTTP_IDLE_TIMEOUT",
        "10s",
    ))?;
    if http_idle_timeout.is_zero() {
        return Err("--http-idle-timeout: must be more than 0".into());
    }
    let (max_text, max_source) =
        option(args.max_connections, "--max-connections", "KUBERNARY_MAX_CONNECTIONS", "512");
    let max_connections = max_text
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{max_source}: expected a whole number above 0, got {max_text:?}"))?;
    let access_log = switch(args.access_log, "KUBERNARY_ACCESS_LOG")?;
    let (format_text, format_source) =
        option(args.log_format, "--log-format", "KUBERNARY_LOG_FORMAT", "text");
    let log_format = format_text.parse().map_err(|e| format!("{format_source}: {e}"))?;
    Ok(Options {
        statsd,
        listen,
        listen_text,
        debug,
        close_after,
        kill_after,
        quitquitquit: !no_quit,
        prefix,
        tags,
        start_jitter,
        cached_health,
        http_idle_timeout,
        max_connections,
        log_format,
        access_log,
    })
}

/// `host:port` with a numeric port; the host is resolved later, and again
/// while the daemon runs, so a statsd that does not resolve yet is no error.
fn check_host_port(address: &str) -> Result<(), String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{address:?} is not host:port (for example statsd:8125 or 127.0.0.1:8125)")),
    }
}

/// Go's listen syntax: `:10002` is every interface (IPv6 and IPv4 where the
/// kernel has IPv6, else IPv4), `host:port` one address.
pub fn listen_addresses(text: &str) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = split_listen(text)?;
    if host.is_empty() {
        return Ok(vec![SocketAddr::from(([0u16; 8], port)), SocketAddr::from(([0, 0, 0, 0], port))]);
    }
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("{text:?}: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolves to no address"));
    }
    Ok(addrs)
}

/// A listen address's host (empty for every interface, IPv6 brackets
/// removed) and port.
pub fn split_listen(text: &str) -> Result<(&str, u16), String> {
    let bad = || format!("{text:?} is not an address to listen on (for example :10002 or 127.0.0.1:10002)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(argv: &[&str], env: &[(&str, &str)]) -> Result<Options, Exit> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        parse(&argv, &|name| env.get(name).cloned())
    }

    fn error(argv: &[&str], env: &[(&str, &str)]) -> String {
        match parse_with(argv, env) {
            Err(Exit::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn seed_defaults() {
        let o = parse_with(&["statsd:8125"], &[]).unwrap();
        assert_eq!(o.statsd.as_deref(), Some("statsd:8125"));
        assert_eq!(o.close_after, Duration::from_secs(60));
        assert_eq!(o.kill_after, Duration::from_secs(120));
        assert_eq!(o.listen_text, ":10002");
        assert!(o.listen.iter().all(|a| a.port() == 10002));
        assert!(!o.debug && o.quitquitquit);
    }

    #[test]
    fn flags_with_equals_and_short_debug() {
        let o =
            parse_with(&["--listen=127.0.0.1:9000", "--close-after=1m30s", "-d", "--no-stats"], &[]).unwrap();
        assert_eq!(o.listen, vec!["127.0.0.1:9000".parse().unwrap()]);
        assert_eq!(o.close_after, Duration::from_secs(90));
        assert!(o.debug);
        assert_eq!(o.statsd, None);
    }

    #[test]
    fn environment_backs_every_flag_and_the_command_line_wins() {
        let env = [
            ("KUBERNARY_STATSD", "env:8125"),
            ("KUBERNARY_LISTEN", "127.0.0.1:9001"),
            ("KUBERNARY_DEBUG", "true"),
            ("KUBERNARY_CLOSE_AFTER", "5s"),
            ("KUBERNARY_KILL_AFTER", "10s"),
            ("KUBERNARY_NO_QUITQUITQUIT", "1"),
        ];
        let o = parse_with(&[], &env).unwrap();
        assert_eq!(o.statsd.as_deref(), Some("env:8125"));
        assert_eq!(o.listen_text, "127.0.0.1:9001");
        assert!(o.debug && !o.quitquitquit);
        assert_eq!((o.close_after, o.kill_after), (Duration::from_secs(5), Duration::from_secs(10)));
        let o = parse_with(&["--debug=false", "--no-quitquitquit=false", "s:1"], &env).unwrap();
        assert!(!o.debug && o.quitquitquit, "--flag=false beats the environment");
        let o = parse_with(&["--kill-after", "3s", "cli:8125"], &env).unwrap();
        assert_eq!(o.kill_after, Duration::from_secs(3));
        assert_eq!(o.statsd.as_deref(), Some("cli:8125"));
        assert!(parse_with(&[], &[("KUBERNARY_NO_STATS", "true")]).unwrap().statsd.is_none());
    }

    #[test]
    fn prefix_tags_jitter_and_cached_health() {
        let o = parse_with(
            &[
                "--prefix=canary",
                "--tag",
                "env=prod",
                "--tag=team=sre",
                "--start-jitter=10s",
                "--cached-health",
                "s:1",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(o.prefix, "canary");
        assert_eq!(o.tags, vec![("env".into(), "prod".into()), ("team".into(), "sre".into())]);
        assert_eq!(o.start_jitter, Duration::from_secs(10));
        assert!(o.cached_health);
        let o = parse_with(&["s:1"], &[("KUBERNARY_TAGS", "a=1, b=2"), ("KUBERNARY_PREFIX", "p")]).unwrap();
        assert_eq!(o.tags, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert_eq!((o.prefix.as_str(), o.start_jitter, o.cached_health), ("p", Duration::ZERO, false));
        assert!(error(&["--tag", "novalue", "s:1"], &[]).starts_with("--tag: \"novalue\" is not key=value"));
        assert!(error(&["--prefix", "a:b", "s:1"], &[]).starts_with("--prefix:"));
    }

    #[test]
    fn bad_input_names_what_to_fix() {
        assert!(
            error(&["--close-after", "5x", "s:1"], &[]).starts_with("--close-after: invalid duration \"5x\"")
        );
        assert!(error(&["s:1"], &[("KUBERNARY_KILL_AFTER", "ten")])
            .starts_with("KUBERNARY_KILL_AFTER: invalid duration"));
        assert!(error(&["--listen", "nonsense", "s:1"], &[])
            .starts_with("--listen: \"nonsense\" is not an address"));
        assert!(error(&["statsd"], &[]).starts_with("<statsd>: \"statsd\" is not host:port"));
        assert!(error(&[], &[]).starts_with("missing <statsd>"));
        assert!(error(&["--bogus", "s:1"], &[]).contains("--bogus"));
        assert!(error(&["s:1"], &[("KUBERNARY_DEBUG", "maybe")])
            .starts_with("KUBERNARY_DEBUG: expected true or false"));
    }

    #[test]
    fn help_reads_like_the_seed() {
        let Err(Exit::Help(text)) = parse_with(&["--help"], &[]) else { panic!("no help") };
        for needle in [
            "--no-stats",
            "--listen",
            "--debug",
            "--close-after",
            "--kill-after",
            "statsd",
            "Checks whether your Kubernetes cluster works.",
        ] {
            assert!(text.contains(needle), "help lacks {needle}:\n{text}");
        }
    }

    #[test]
    fn kingpin_spellings_from_the_go_original() {
        let env = [("KUBERNARY_DEBUG", "true"), ("KUBERNARY_CACHED_HEALTH", "true")];
        let o = parse_with(&["--no-debug", "--no-cached-health", "s:1"], &env).unwrap();
        assert!(!o.debug && !o.cached_health, "--no-<switch> beats the environment");
        assert!(!parse_with(&["--cached-health=false", "s:1"], &env).unwrap().cached_health);
        for help in ["--help-long", "--help-man"] {
            assert!(matches!(parse_with(&[help], &[]), Err(Exit::Help(_))), "{help}");
        }
    }
}
