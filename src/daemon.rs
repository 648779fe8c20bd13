//! Wires the parts together and runs until the shutdown is done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, warn};

use crate::cli::Options;
use crate::duration::Go;
use crate::logging;
use crate::metrics::Metrics;
use crate::record::Sink;
use crate::runs::Runner;
use crate::server::{self, App};
use crate::shutdown::{self, Shutdown};
use crate::{config, scheduler};

/// Status for bad input: flags, environment, configuration.
pub const EXIT_USAGE: i32 = 2;

/// Runs the daemon; returns the process's exit status.
pub fn run(options: Options, env: &HashMap<String, String>) -> i32 {
    let entries = match config::checks(env) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("kubernary: {e}");
            return EXIT_USAGE;
        }
    };
    let http = match server::bind(&options.listen) {
        Ok(http) => http,
        Err(e) => {
            // Not bad input (the address parsed): the port is taken, or not ours.
            eprintln!("kubernary: listening on {} (--listen, KUBERNARY_LISTEN): {e}", options.listen_text);
            return 1;
        }
    };
    let listening = http.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| options.listen_text.clone());
    let metrics = Arc::new(Metrics::new(options.statsd.as_deref(), &options.prefix, &options.tags));
    for entry in &entries {
        metrics.prometheus.declare(&entry.name, &entry.kind);
    }
    let names: Vec<String> = entries
        .iter()
        .map(|e| format!("{} ({}, every {}, timeout {})", e.name, e.kind, Go(e.interval), Go(e.timeout)))
        .collect();
    // Where settled results go: one line per sink.
    let sinks: Vec<Arc<dyn Sink>> =
        vec![metrics.clone(), Arc::new(logging::Log), Arc::new(crate::history::Recorder)];
    let runner = Arc::new(Runner::new(entries, sinks));
    let shutdown = Shutdown::new();
    let app = Arc::new(App::new(runner.clone(), metrics, shutdown.clone(), &options));

    let started = shutdown::watch_signals(shutdown.clone())
        .and_then(|()| server::spawn(http, app.clone(), server::limits(&options)))
        .and_then(|_| scheduler::spawn(runner.clone(), shutdown.clone(), options.start_jitter));
    let scheduler = match started {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("kubernary: cannot start: {e}");
            return 1;
        }
    };
    crate::logging::started(&listening);
    info!("checks: {}", names.join(", "));
    debug!("options: {options:?}");
    if options.kill_after < options.close_after {
        warn!(
            "--kill-after ({}) is shorter than --close-after ({}): open requests are cut at kill-after",
            Go(options.kill_after),
            Go(options.close_after)
        );
    }
    match &options.statsd {
        Some(statsd) => info!("sending metrics to statsd at {statsd}"),
        None => info!("not sending metrics (--no-stats)"),
    }

    shutdown.wait();
    let began = Instant::now();
    shutdown::arm_kill_timer(options.kill_after);
    // Open requests are answered (a /health now says 503 shutting down, so
    // readiness drops), for --close-after at most, and each connection
    // ends after its answer. Then, as Go's Server.Shutdown: no new
    // connection is accepted, connections waiting between requests are
    // closed, and each other one ends after its
    // current answer (which says Connection: close); the process exits once
    // none is left open, or at the same bound, which closes what is left.
    // tiny_http counts both from its own bookkeeping.
    let close_at = began + options.close_after;
    app.start_closing();
    let mut drained = drain(close_at, || app.requests_in_progress());
    app.stop_accepting();
    drained = drained && drain(close_at, || app.connections());
    if !drained {
        warn!(
            "closing {} open connection(s), {} with a request unanswered, after {} (--close-after)",
            app.connections(),
            app.requests_in_progress(),
            Go(options.close_after)
        );
    }
    // Scheduled runs already going are settled by their own timeouts, so
    // their metrics are sent; --kill-after bounds this as well.
    let _ = scheduler.join();
    info!("stopped after {}", Go(std::time::Duration::from_millis(began.elapsed().as_millis() as u64)));
    0
}

/// Waits until `open()` is zero or `deadline` passes; true if it is.
fn drain(deadline: Instant, open: impl Fn() -> usize) -> bool {
    loop {
        if open() == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
