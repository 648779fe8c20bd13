//! Logs to stderr, one line per event, with time and level.
//!
//! `--debug` turns on debug lines from kubernary only. Other crates stay at
//! warnings: at debug level attohttpc prints full request URLs, and a signed
//! URL is a secret.

use log::LevelFilter;
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

pub fn init(debug: bool) {
    let level = if debug { LevelFilter::Debug } else { LevelFilter::Info };
    let ours = ConfigBuilder::new()
        .add_filter_allow_str("kubernary")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    // tiny_http's one error line is its accept loop ending, which the
    // server's supervisor reports itself (and expects at the shutdown).
    let theirs = ConfigBuilder::new()
        .add_filter_ignore_str("kubernary")
        .add_filter_ignore_str("tiny_http")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let loggers: Vec<Box<dyn SharedLogger>> = vec![
        TermLogger::new(level, ours, TerminalMode::Stderr, ColorChoice::Never),
        WriteLogger::new(LevelFilter::Warn, theirs, std::io::stderr()),
    ];
    let _ = CombinedLogger::init(loggers);
}
