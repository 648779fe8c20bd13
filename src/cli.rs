//! The command line, kept apart from the daemon: argh for the flags, plus
//! what kingpin gave the Go original's users and argh lacks: `--flag=value`,
//! `--no-<switch>`, and a `KUBERNARY_*` variable behind every flag (the
//! command line wins).
//!
//! [`Args`] is the one table of flags: each field's help names its variable
//! (`[env KUBERNARY_X]`), and [`flags`] reads the table back from argh, so
//! that a new flag is one field (and one line in [`resolve`]) and gets
//! `--x=value`, `--no-x`, its variable and the start-up check that no check
//! name collides with it, with nothing else to keep in step.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use argh::{ArgsInfo, FlagInfoKind, FromArgs};

use crate::boolean::parse_bool;
use crate::duration;

/// Checks whether your Kubernetes cluster works.
#[derive(FromArgs, ArgsInfo, Debug, Default)]
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

    /// close a kept-alive HTTP connection when no request comes for this long (default 10s) [env KUBERNARY_HTTP_IDLE_TIMEOUT]
    #[argh(option)]
    pub http_idle_timeout: Option<String>,

    /// close an HTTP connection whose request line and headers are not all in this long after they began (default 10s) [env KUBERNARY_HTTP_HEADER_TIMEOUT]
    #[argh(option)]
    pub http_header_timeout: Option<String>,

    /// most open HTTP connections; past it the one idle longest is closed, or if none is idle the new one is answered 503 (default 128) [env KUBERNARY_MAX_CONNECTIONS]
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
    pub http_header_timeout: Duration,
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

/// A flag, as [`Args`] declares it.
#[derive(Debug, Clone)]
pub struct Flag {
    /// `--listen`.
    pub long: &'static str,
    pub short: Option<char>,
    /// True for a switch (a boolean flag).
    pub switch: bool,
    /// The variable behind it, from `[env KUBERNARY_X]` in its help.
    pub var: Option<&'static str>,
}

/// Every flag of [`Args`], `--help` and `--version` included, from argh's
/// own record of them.
pub fn flags() -> Vec<Flag> {
    Args::get_args_info()
        .flags
        .iter()
        .map(|f| Flag {
            long: f.long,
            short: f.short,
            switch: matches!(f.kind, FlagInfoKind::Switch),
            var: env_var(f.description),
        })
        .collect()
}

/// Every `KUBERNARY_*` variable the daemon reads for its own settings (not
/// a check's): no check may be named so that it would read one of these.
pub fn variables() -> Vec<&'static str> {
    let info = Args::get_args_info();
    let positionals = info.positionals.iter().filter_map(|p| env_var(p.description));
    flags().into_iter().filter_map(|f| f.var).chain(positionals).collect()
}

/// `KUBERNARY_X` from a help text that ends `[env KUBERNARY_X]` (or
/// `[env KUBERNARY_X, comma-separated]`).
fn env_var(help: &'static str) -> Option<&'static str> {
    let (_, rest) = help.split_once("[env ")?;
    let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))?;
    Some(&rest[..end]).filter(|v| !v.is_empty())
}

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
    let (argv, set) = split_equals(&argv)?;
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
    resolve(args, &set, env).map_err(Exit::Error)
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

/// Switches set on the command line, by their long name: `--debug`,
/// `-d`, `--debug=<any true or false>` and `--no-debug` (kingpin's negation,
/// offered for every switch), the last one given winning. They beat the
/// environment, so they are taken out here; argh sees the rest, with
/// `--listen=:10002` turned into `--listen :10002` as kingpin read it.
type Switches = Vec<(&'static str, bool)>;

fn split_equals(argv: &[String]) -> Result<(Vec<String>, Switches), Exit> {
    let switches: Vec<Flag> = flags().into_iter().filter(|f| f.switch && f.var.is_some()).collect();
    let named = |name: &str| switches.iter().find(|f| f.long == name).map(|f| f.long);
    let mut out = Vec::with_capacity(argv.len() + 2);
    let mut set = Switches::new();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(rest.cloned());
            break;
        }
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        };
        let short = switches.iter().find(|f| f.short.is_some_and(|c| flag == format!("-{c}")));
        // `--no-stats` is a switch of its own; `--no-debug` negates `--debug`.
        let (long, negated) = match (named(flag), short) {
            (Some(long), _) => (long, false),
            (None, Some(f)) if value.is_none() => (f.long, false),
            (None, _) => match flag.strip_prefix("--no-").and_then(|rest| named(&format!("--{rest}"))) {
                Some(long) => (long, true),
                None => {
                    out.push(flag.to_string());
                    out.extend(value.map(str::to_string));
                    continue;
                }
            },
        };
        let on = match value {
            None => true,
            Some(text) => parse_bool(text).ok_or_else(|| {
                Exit::Error(format!(
                    "{flag}: expected true or false (or 1, 0, t, f, yes, no, on, off), got {text:?}"
                ))
            })?,
        };
        set.push((long, on != negated));
    }
    Ok((out, set))
}

fn resolve(args: Args, set: &Switches, env: &dyn Fn(&str) -> Option<String>) -> Result<Options, String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let all = flags();
    // A switch's value: the last time the command line set it, else its
    // variable, else off. (`given` is argh's, which never sees a switch.)
    let switch = |given: bool, var: &str| -> Result<bool, String> {
        let long = all.iter().find(|f| f.switch && f.var == Some(var)).map(|f| f.long);
        if let Some((_, on)) = set.iter().rev().find(|(flag, _)| Some(*flag) == long) {
            return Ok(*on);
        }
        match env(var) {
            None => Ok(given),
            Some(v) => parse_bool(&v).ok_or_else(|| {
                format!("{var}: expected true or false (or 1, 0, t, f, yes, no, on, off), got {v:?}")
            }),
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
    // A timeout of 0 would cut every connection at once.
    let positive = |(text, source): (String, String)| match duration::parse(&text) {
        Ok(d) if d.is_zero() => Err(format!("{source}: must be more than 0")),
        other => other.map_err(|e| format!("{source}: {e}")),
    };

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
    let http_idle_timeout = positive(option(
        args.http_idle_timeout,
        "--http-idle-timeout",
        "KUBERNARY_HTTP_IDLE_TIMEOUT",
        "10s",
    ))?;
    let http_header_timeout = positive(option(
        args.http_header_timeout,
        "--http-header-timeout",
        "KUBERNARY_HTTP_HEADER_TIMEOUT",
        "10s",
    ))?;
    let (max_text, max_source) =
        option(args.max_connections, "--max-connections", "KUBERNARY_MAX_CONNECTIONS", "128");
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
        http_header_timeout,
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
    fn the_go_originals_defaults() {
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

    /// Every way to spell true or false: Go's `strconv.ParseBool` (what the
    /// Go original's users have in their manifests) and ours.
    const TRUE: &[&str] = &["1", "t", "T", "TRUE", "true", "True", "yes", "on", "YES", "On"];
    const FALSE: &[&str] = &["0", "f", "F", "FALSE", "false", "False", "no", "off", "NO", "Off"];

    /// What the parsed options say of a switch. A new switch must be added
    /// here, or the table test below fails naming it.
    fn switch_value(o: &Options, long: &str) -> bool {
        match long {
            "--no-stats" => o.statsd.is_none(),
            "--debug" => o.debug,
            "--no-quitquitquit" => !o.quitquitquit,
            "--cached-health" => o.cached_health,
            "--access-log" => o.access_log,
            other => {
                panic!("{other}: a switch this test does not know; say in switch_value how Options shows it")
            }
        }
    }

    /// Every switch × every command-line form × its variable unset or set
    /// to every spelling: the command line wins, then the variable, then off.
    #[test]
    fn every_switch_in_every_spelling_on_the_command_line_and_in_its_variable() {
        let switches: Vec<Flag> = flags().into_iter().filter(|f| f.switch && f.var.is_some()).collect();
        assert!(switches.len() >= 4, "{switches:?}");
        let spellings = || TRUE.iter().map(|s| (*s, true)).chain(FALSE.iter().map(|s| (*s, false)));
        let mut cases = 0;
        for flag in &switches {
            let var = flag.var.unwrap();
            // (argv, what the command line says, if anything)
            let mut forms: Vec<(Vec<String>, Option<bool>)> = vec![
                (vec![], None),
                (vec![flag.long.to_string()], Some(true)),
                (vec![format!("--no-{}", &flag.long[2..])], Some(false)),
                (vec![flag.long.to_string(), format!("--no-{}", &flag.long[2..])], Some(false)),
                (vec![format!("--no-{}", &flag.long[2..]), flag.long.to_string()], Some(true)),
            ];
            if let Some(c) = flag.short {
                forms.push((vec![format!("-{c}")], Some(true)));
            }
            forms.extend(spellings().map(|(text, on)| (vec![format!("{}={text}", flag.long)], Some(on))));
            let envs = std::iter::once((None, None)).chain(spellings().map(|(t, on)| (Some(t), Some(on))));
            for (env_text, env_on) in envs {
                for (argv, cli_on) in &forms {
                    let mut argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    argv.push("s:1");
                    let env: Vec<(&str, &str)> = env_text.map(|t| (var, t)).into_iter().collect();
                    let options =
                        parse_with(&argv, &env).unwrap_or_else(|e| panic!("{argv:?} with {env:?}: {e:?}"));
                    let expected = cli_on.or(env_on).unwrap_or(false);
                    assert_eq!(switch_value(&options, flag.long), expected, "{argv:?} with {env:?}");
                    cases += 1;
                }
            }
        }
        println!("{cases} cases over {} switches", switches.len());
    }

    #[test]
    fn a_switch_with_a_value_that_is_no_boolean_is_refused() {
        let e = error(&["--debug=maybe", "s:1"], &[]);
        assert!(e.starts_with("--debug: expected true or false"), "{e}");
        let e = error(&["s:1"], &[("KUBERNARY_CACHED_HEALTH", "sure")]);
        assert!(e.starts_with("KUBERNARY_CACHED_HEALTH: expected true or false"), "{e}");
        // A timeout of 0 is refused, named where it came from.
        assert_eq!(
            error(&["--http-idle-timeout=0s", "s:1"], &[]),
            "--http-idle-timeout: must be more than 0"
        );
        let e = error(&["s:1"], &[("KUBERNARY_HTTP_HEADER_TIMEOUT", "0s")]);
        assert_eq!(e, "KUBERNARY_HTTP_HEADER_TIMEOUT: must be more than 0");
    }

    #[test]
    fn the_daemon_variables_come_from_the_help() {
        let vars = variables();
        for var in [
            "KUBERNARY_NO_STATS",
            "KUBERNARY_LISTEN",
            "KUBERNARY_HTTP_IDLE_TIMEOUT",
            "KUBERNARY_TAGS",
            "KUBERNARY_STATSD",
        ] {
            assert!(vars.contains(&var), "{var} missing from {vars:?}");
        }
        // Every flag but --help and --version has a variable.
        let without: Vec<_> = flags().into_iter().filter(|f| f.var.is_none()).map(|f| f.long).collect();
        assert_eq!(without, ["--help", "--version"]);
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
    fn help_reads_like_the_go_original() {
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
