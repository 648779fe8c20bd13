use std::collections::HashMap;
use std::process::ExitCode;

use kubernary::cli::{self, Exit};
use kubernary::daemon::{self, EXIT_USAGE};
use kubernary::{logging, probe, tls};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if argv.first().map(String::as_str) != Some(probe::COMMAND) {
        lean_threads();
    }
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    // `kubernary probe ...` before argh, so that the seed's command line,
    // `kubernary [flags] <statsd>`, stays exactly as it was.
    if argv.first().map(String::as_str) == Some(probe::COMMAND) {
        tls::install_crypto_provider();
        let outcome = probe::run(&argv[1..], &|name| env.get(name).cloned());
        match outcome.code {
            0 => println!("{}", outcome.line),
            _ => eprintln!("{}", outcome.line),
        }
        return ExitCode::from(outcome.code);
    }
    let options = match cli::parse(&argv, &|name| env.get(name).cloned()) {
        Ok(options) => options,
        Err(Exit::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(Exit::Version) => {
            println!("kubernary {}", kubernary::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(Exit::Error(message)) => {
            eprintln!("kubernary: {message}");
            return ExitCode::from(EXIT_USAGE as u8);
        }
    };
    logging::init(options.debug, options.log_format, options.access_log);
    // A panic is a bug; log it as one line like every other event, and let
    // the worker that caught it report the check as failed.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        log::error!("bug: thread {} {info}", thread.name().unwrap_or("(http library)"));
        // Every thread of ours has a name. tiny_http's accept thread panics
        // when it cannot spawn a connection thread, and then accepts no more.
        if thread.name().is_none() && info.to_string().contains("failed to spawn thread") {
            kubernary::server::accept_thread_died();
        }
    }));
    tls::install_crypto_provider();
    let status = daemon::run(options, &env);
    // The last lines (`stopped after ...`) reach a reader that keeps up.
    logging::flush(std::time::Duration::from_secs(1));
    ExitCode::from(status as u8)
}

/// tiny_http's connection threads get this stack instead of Rust's default
/// 2 MiB (our own threads set theirs): a request is parsed in a few frames.
const LIBRARY_THREAD_STACK: &str = "262144";

/// glibc's malloc gives every thread a cache of the blocks it freed
/// (tcache), held until the thread exits. The daemon has a thread per open
/// connection and per waiting `/health`, so under load those caches were
/// about a third of its memory: `make bench`, 50 connections, RSS peak
/// 10.2 MiB with them, 6.5 MiB without, at the same throughput. Tunables are
/// read only at start-up, so the daemon starts itself again with the cache
/// off, once, unless `GLIBC_TUNABLES` is already set (the operator's choice
/// stands). Without /proc (a bare chroot) it carries on as it is.
///
/// Also sizes the stacks of threads that libraries start (see
/// [`LIBRARY_THREAD_STACK`]); Rust reads the variable at the first spawn,
/// and none has happened yet.
fn lean_threads() {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", LIBRARY_THREAD_STACK);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let program = args.next().unwrap_or_default();
        // Returns only if the exec failed.
        let _ = std::process::Command::new("/proc/self/exe")
            .arg0(program)
            .args(args)
            .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
            .exec();
    }
}
