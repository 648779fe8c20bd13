//! What a settled run tells the rest of the daemon: a plain [`Record`],
//! handed to every [`Sink`] (statsd and Prometheus in `metrics`, the log in
//! `logging`, the history behind the status page).
//!
//! A leaf beside the contract: sinks depend on it and not on `runs`, and
//! `runs` settles runs without knowing which sinks there are, so settlement
//! can be tested with none at all. Adding a sink is one line where the
//! daemon lists them.

use std::time::{Duration, SystemTime};

use crate::contract::Failure;
use crate::verdict::Verdict;

/// One settled run of one check (or one scheduler tick that found the check
/// still hung past its deadline, which counts as a failed run).
#[derive(Clone, Debug)]
pub struct Record {
    pub check: String,
    pub kind: String,
    /// The verb of the check's metrics: `kubernary.<check>.<verb>.succeeded`.
    pub verb: &'static str,
    pub result: Result<(), Failure>,
    /// From the start of the run to its settlement.
    pub duration: Duration,
    pub finished: SystemTime,
    /// The check's standing after this run: what `/health` reports.
    pub verdict: Verdict,
    /// Facts the check noted (`credential_source`, ...). Never a secret.
    pub notes: Vec<(&'static str, serde_json::Value)>,
}

impl Record {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The reason word of a failed run, `None` for a pass.
    pub fn reason(&self) -> Option<&'static str> {
        self.result.as_ref().err().map(|f| f.reason.as_str())
    }
}

/// Where settled results go. A sink is called with the check's state locked,
/// so that every sink sees a check's results in the order they ran: it must
/// not block (queue, or take a short lock of its own).
pub trait Sink: Send + Sync {
    fn settled(&self, record: &Record);
}
