//! kubernary: a canary daemon for Kubernetes (or anywhere).
//!
//! The shape is a synchronous threaded daemon with no async runtime:
//!
//! - [`scheduler`]: one thread ticking on crossbeam timers, starting runs;
//! - [`runs`]: single flight per check, deadlines, settlement, and the
//!   [`pool`] of workers that runs checks;
//! - [`server`]: tiny_http endpoints; `/health` starts or joins runs and
//!   waits for them, bounded by the checks' timeouts;
//! - [`shutdown`]: one atomic flag with deadline timers;
//! - [`metrics`]: statsd through cadence, never in a check's way;
//! - [`checks`]: one file per kind behind one small trait, the [`contract`];
//! - [`contract`]: `Check`, `Attempt`, `Failure`, `Reason`: a leaf that
//!   checks, the client, the AWS code, the runner and the server share;
//! - [`cli`] and [`config`]: flags and environment, kept apart from the core;
//! - [`probe`]: `kubernary probe`, the HTTP self-probe for scratch images.

pub mod aws;
pub mod checks;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod duration;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod probe;
pub mod prometheus;
pub mod reaper;
pub mod record;
pub mod runs;
pub mod scheduler;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod verdict;

/// `0.1.0 (commit 1a2b3c4)`: the crate's version and the git commit it was
/// built from (`unknown` when neither git nor `KUBERNARY_COMMIT` said; see
/// build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KUBERNARY_COMMIT"), ")");

#[cfg(test)]
mod tests_support {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use crate::record::{Record, Sink};

    /// A sink that keeps every record, in the order it was handed them.
    #[derive(Default)]
    pub struct Recorder {
        records: Mutex<Vec<Record>>,
        added: Condvar,
    }

    impl Sink for Recorder {
        fn settled(&self, record: &Record) {
            self.records.lock().unwrap().push(record.clone());
            self.added.notify_all();
        }
    }

    impl Recorder {
        pub fn records(&self) -> Vec<Record> {
            self.records.lock().unwrap().clone()
        }

        /// The records once there are at least `n`, waiting up to 10 s.
        pub fn wait_for(&self, n: usize) -> Vec<Record> {
            let records = self.records.lock().unwrap();
            let (records, _) =
                self.added.wait_timeout_while(records, Duration::from_secs(10), |r| r.len() < n).unwrap();
            records.clone()
        }
    }

    /// Polls `cond` for up to 5 s.
    pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }
}
