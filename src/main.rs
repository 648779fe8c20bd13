use std::collections::HashMap;
use std::process::ExitCode;

use kubernary::cli::{self, Exit};
use kubernary::daemon::{self, EXIT_USAGE};
use kubernary::{logging, probe, tls};

/// The daemon's threads are its connections (a thread each, bounded by
/// `--max-connections`), and glibc's malloc keeps a cache of freed blocks in
/// every thread until it exits: at 50 kept-alive clients that was a third
/// of the memory. glibc can turn its cache off only through
/// `GLIBC_TUNABLES` read at exec, which meant re-executing the daemon.
/// dlmalloc instead: one heap behind one lock, no per-thread caches. Release
/// build, `wrk -t2 -c50 -d5s` on `/health`: peak RSS 9.7 MiB with glibc's
/// malloc, 6.6 MiB with dlmalloc, for about 9 µs more CPU per answer (its
/// one lock); figures in docs/reliability.md.
/// C code (the resolver) still allocates through glibc.
#[global_allocator]
static HEAP: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    // `kubernary probe ...` before argh, so that the Go original's command line,
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
        log::error!("bug: thread {} {info}", std::thread::current().name().unwrap_or("(unnamed)"));
    }));
    tls::install_crypto_provider();
    let status = daemon::run(options, &env);
    // The last lines (`stopped after ...`) reach a reader that keeps up.
    logging::flush(std::time::Duration::from_secs(1));
    ExitCode::from(status as u8)
}
