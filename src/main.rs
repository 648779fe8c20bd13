use std::collections::HashMap;
use std::process::ExitCode;

use kubernary::cli::{self, Exit};
use kubernary::daemon::{self, EXIT_USAGE};
use kubernary::{logging, probe, tls};

fn main() -> ExitCode {
    fewer_arenas();
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

/// glibc gives threads up to eight malloc arenas per core, each keeping
/// the memory it freed; the daemon's threads are its connections, so under
/// load that is memory held for nothing. Two arenas: 0.2-0.3 MiB less RSS
/// at 50 busy connections (release build, `wrk -t2 -c50`), at the same
/// throughput. Set before any thread starts; no exec, so the process keeps
/// its name. `MALLOC_ARENA_MAX`, when set, stands. (glibc's per-thread
/// cache, the larger share, has no such call: see docs/reliability.md.)
fn fewer_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; no thread has started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
