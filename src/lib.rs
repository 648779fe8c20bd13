//! kubernary: a canary daemon for Kubernetes (or anywhere).
//!
//! The shape is a synchronous threaded daemon with no async runtime:
//!
//! - [`scheduler`]: one thread ticking on crossbeam timers, starting runs;
//! - [`runs`]: single flight per check, deadlines, settlement (one state per
//!   check under one lock), and the [`pool`] of workers that runs checks;
//! - [`record`]: what a settled run tells its sinks ([`metrics`] for statsd
//!   and Prometheus, [`logging`], the status page's history);
//! - [`server`]: tiny_http endpoints, each request handled on its
//!   connection's thread; `/health` starts or joins runs and waits for
//!   them, bounded by the checks' timeouts; [`render`] writes the answers;
//! - [`shutdown`]: one atomic flag with deadline timers;
//! - [`checks`]: one file per kind behind one small trait, the [`contract`];
//! - [`contract`]: `Check`, `Attempt`, `Failure`, `Reason`: a leaf that
//!   checks, the client, the AWS code, the runner and the server share;
//! - [`cli`] and [`config`]: flags and environment, kept apart from the core;
//! - [`probe`]: `kubernary probe`, the HTTP self-probe for scratch images.
//!
//! Modules depend on each other one way, top to bottom (an arrow reads
//! "imports"; a module may also import anything below the ones it points
//! at, and the leaves are for everyone):
//!
//! ```text
//! main → daemon → {server → {render, status}, scheduler} → runs → record
//!          │                                                ↘ pool
//!          ├→ config → {checks, runs}
//!          ├→ {metrics → prometheus, logging, history} → record   (the sinks)
//!          └→ cli → {boolean, logging}
//! checks → {aws → client, client} → contract
//! leaves:  contract → duration; record → {contract, verdict};
//!          tls → x509 → clock; boolean, duration, verdict, schedstat
//! ```
//!
//! Nothing below `runs` knows of runs, metrics or the server: a check kind,
//! the HTTP client and the AWS code see only the contract, and the sinks see
//! only plain records. The test `the_module_graph_is_one_way` holds the
//! lower layers to this.

pub mod aws;
pub mod boolean;
pub mod checks;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod duration;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod probe;
pub mod prometheus;
pub mod record;
pub mod render;
pub mod runs;
pub mod schedstat;
pub mod scheduler;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod tls;
pub mod verdict;
pub mod x509;

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

#[cfg(test)]
mod graph {
    //! The lower layers import only what the graph in the crate docs allows.
    use std::collections::BTreeSet;
    use std::path::Path;

    /// A module, and every module of ours it may import. Modules not listed
    /// (the top: daemon, server, scheduler, ...) are not held to a list.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("contract", &["duration"]),
        ("boolean", &[]),
        ("duration", &[]),
        ("verdict", &[]),
        ("clock", &[]),
        ("tls", &["x509"]),
        ("x509", &["clock"]),
        ("record", &["contract", "duration", "verdict"]),
        ("prometheus", &[]),
        ("metrics", &["prometheus", "record", "clock"]),
        ("pool", &[]),
        ("client", &["contract", "tls", "duration", "clock"]),
        ("aws", &["aws", "client", "contract", "tls", "duration", "clock"]),
        ("checks", &["checks", "aws", "client", "contract", "tls", "duration", "clock", "boolean"]),
        ("runs", &["contract", "record", "pool", "verdict", "duration", "schedstat"]),
        ("schedstat", &[]),
        ("cli", &["boolean", "duration", "logging"]),
        ("config", &["checks", "cli", "runs", "tls", "duration"]),
    ];

    /// `crate::x` and `crate::{x, y::z}` in a file: the x and y.
    fn imports(text: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let names = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String =
                    name.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "tests_support" && name != "self" {
                    found.insert(name);
                }
            }
        }
        found
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_module_graph_is_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut wrong = Vec::new();
        for path in all {
            let relative = path.strip_prefix(&src).unwrap();
            let module =
                relative.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
            let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == module) else { continue };
            let text = std::fs::read_to_string(&path).unwrap();
            for import in imports(&text) {
                if import != module && !allowed.contains(&import.as_str()) {
                    wrong.push(format!("{} imports crate::{import}", relative.display()));
                }
            }
        }
        assert!(wrong.is_empty(), "imports against the module graph (see src/lib.rs):\n{}", wrong.join("\n"));
    }

    #[test]
    fn imports_are_read_from_paths_and_groups() {
        let found = imports("use crate::a::B;\nuse crate::{c, d::E};\n let x = crate::f(1);");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["a", "c", "d", "f"]);
    }
}
