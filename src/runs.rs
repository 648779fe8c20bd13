//! Runs of checks: single flight, deadlines and settlement.
//!
//! Every check is an [`Entry`] with at most one [`Run`] going at a time. The
//! scheduler and `/health` both ask an entry for a run; when one is already
//! going they join it instead of starting another, so a hung check never
//! piles up work and a burst of probes costs the backend one request.
//!
//! A run is *settled* exactly once, by whichever comes first: the worker
//! finishing the check, or someone noticing the deadline has passed (the
//! scheduler for its runs, a waiting `/health` for its own). Settling records
//! the metrics, writes the log line and wakes the waiters. A run settled by
//! its deadline still holds its entry until the worker returns, so a hung
//! check is reported as timed out but never started twice.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender};
use log::{debug, info, warn};

use crate::contract::{Attempt, Check, Failure, Reason};
use crate::duration::Go;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::verdict::{Tally, Verdict};

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: Result<(), Failure>,
    /// Facts the check noted (`credential_source`, ...), for `/health`.
    pub notes: Vec<(&'static str, serde_json::Value)>,
    /// From the start of the run to its settlement.
    pub duration: Duration,
    pub finished: SystemTime,
    /// The check's standing after this run (set when the run settles).
    pub verdict: Option<Verdict>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    pub fn failed(failure: Failure) -> Outcome {
        Outcome::new(Err(failure), Vec::new(), Duration::ZERO)
    }

    pub fn new(
        result: Result<(), Failure>,
        notes: Vec<(&'static str, serde_json::Value)>,
        duration: Duration,
    ) -> Outcome {
        Outcome { result, notes, duration, finished: SystemTime::now(), verdict: None }
    }

    /// What `/health` reports: the verdict when there is one, else the run.
    pub fn reported_ok(&self) -> bool {
        self.verdict.as_ref().map_or(self.ok(), |v| v.ok)
    }
}

/// How a check is scheduled and judged, from its settings.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub kind: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub fail_after: u32,
    pub pass_after: u32,
}

/// One configured check and its run state.
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub interval: Duration,
    pub timeout: Duration,
    check: Box<dyn Check>,
    current: Mutex<Option<Arc<Run>>>,
    tally: Mutex<Tally>,
    latest: Mutex<Option<Outcome>>,
}

impl Entry {
    pub fn new(spec: Spec, check: Box<dyn Check>) -> Entry {
        Entry {
            tally: Mutex::new(Tally::new(spec.fail_after, spec.pass_after)),
            name: spec.name,
            kind: spec.kind,
            interval: spec.interval,
            timeout: spec.timeout,
            check,
            current: Mutex::new(None),
            latest: Mutex::new(None),
        }
    }

    /// The latest settled outcome, for answers that must not run anything.
    pub fn latest(&self) -> Option<Outcome> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn verb(&self) -> &'static str {
        self.check.verb()
    }

    /// Counts a result towards the check's standing and keeps it as the latest.
    fn conclude(&self, outcome: &mut Outcome) {
        let verdict =
            self.tally.lock().unwrap_or_else(|e| e.into_inner()).observe(outcome.ok(), outcome.finished);
        outcome.verdict = Some(verdict);
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome.clone());
        crate::history::record(&self.name, outcome);
    }

    /// Metrics and the log line for a result.
    fn report(&self, metrics: &Metrics, outcome: &Outcome) {
        metrics.record(self, outcome);
        let took = Millis(outcome.duration);
        match &outcome.result {
            Ok(()) => info!("check {} passed in {took}", self.name),
            Err(f) => warn!("check {} failed ({}) in {took}: {}", self.name, f.reason, f.message),
        }
        for (key, value) in &outcome.notes {
            match value {
                serde_json::Value::String(text) => debug!("check {}: {key}={text}", self.name),
                other => debug!("check {}: {key}={other}", self.name),
            }
        }
    }

    fn current(&self) -> MutexGuard<'_, Option<Arc<Run>>> {
        // A poisoned lock only means a panic elsewhere; the Option is intact.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One run of one check.
pub struct Run {
    pub entry: Arc<Entry>,
    pub started: Instant,
    attempt: Attempt,
    state: Mutex<RunState>,
    metrics: Arc<Metrics>,
    settled: Sender<()>,
}

#[derive(Default)]
struct RunState {
    outcome: Option<Outcome>,
    waiters: Vec<Sender<Outcome>>,
}

impl Run {
    pub fn deadline(&self) -> Instant {
        self.started + self.entry.timeout
    }

    fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_settled(&self) -> bool {
        self.state().outcome.is_some()
    }

    /// Settles the run unless it already is; returns the outcome that stands.
    pub fn settle(&self, mut outcome: Outcome) -> Outcome {
        let waiters = {
            let mut state = self.state();
            if let Some(existing) = &state.outcome {
                return existing.clone();
            }
            self.entry.conclude(&mut outcome);
            state.outcome = Some(outcome.clone());
            std::mem::take(&mut state.waiters)
        };
        for waiter in waiters {
            let _ = waiter.try_send(outcome.clone());
        }
        self.entry.report(&self.metrics, &outcome);
        let _ = self.settled.try_send(());
        outcome
    }

    /// The failure of a run that is past its deadline and still going.
    fn still_going(&self) -> Failure {
        Failure::new(
            Reason::Timeout,
            format!(
                "timed out after {}; the run started {} ago is still going, so no new one was started",
                Go(self.entry.timeout),
                Go(round_ms(self.started.elapsed()))
            ),
        )
    }

    /// Settles the run as timed out if its deadline has passed.
    pub fn settle_if_overdue(&self) -> Option<Outcome> {
        (Instant::now() >= self.deadline()).then(|| self.settle(self.timed_out()))
    }

    /// What was noted before the deadline (`credential_source`, ...) stays
    /// in the report: it often says why the run hung.
    fn timed_out(&self) -> Outcome {
        Outcome::new(Err(Failure::timeout(self.entry.timeout)), self.attempt.notes(), self.entry.timeout)
    }

    /// Waits for the outcome, no later than the deadline.
    pub fn wait(&self) -> Outcome {
        let receiver = {
            let mut state = self.state();
            if let Some(outcome) = &state.outcome {
                return outcome.clone();
            }
            let (tx, rx) = bounded(1);
            state.waiters.push(tx);
            rx
        };
        match receiver.recv_deadline(self.deadline()) {
            Ok(outcome) => outcome,
            Err(_) => self.settle(self.timed_out()),
        }
    }
}

/// `12.3ms`: run times are mostly under a second, where Go's format is coarse.
pub struct Millis(pub Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}ms", self.0.as_secs_f64() * 1000.0)
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64)
}

/// The checks and the pool that runs them.
pub struct Runner {
    entries: Vec<Arc<Entry>>,
    pool: Pool,
    metrics: Arc<Metrics>,
    settled: (Sender<()>, Receiver<()>),
}

/// What [`Runner::start`] did.
pub enum Started {
    New(Arc<Run>),
    /// `late`: the run was already past its deadline when joined.
    Joined {
        run: Arc<Run>,
        late: bool,
    },
}

impl Started {
    pub fn run(&self) -> &Arc<Run> {
        match self {
            Started::New(run) | Started::Joined { run, .. } => run,
        }
    }

    /// Waits for the outcome, no later than the run's deadline. A run joined
    /// after its deadline says that it is still going, since that is why no
    /// new one started.
    pub fn wait(&self) -> Outcome {
        let outcome = self.run().wait();
        let Started::Joined { run, late: true } = self else {
            return outcome;
        };
        let entry = &run.entry;
        let still_going = entry.current().as_ref().is_some_and(|c| Arc::ptr_eq(c, run));
        match &outcome.result {
            Err(f) if f.reason == Reason::Timeout && still_going => {
                let mut outcome = outcome.clone();
                outcome.result = Err(run.still_going());
                outcome
            }
            _ => outcome,
        }
    }
}

impl Runner {
    /// The pool has one worker per check: a check holds at most one worker
    /// (single flight), so even every check hung at once cannot starve another.
    pub fn new(entries: Vec<Arc<Entry>>, metrics: Arc<Metrics>) -> Runner {
        let pool = Pool::new(entries.len().max(1), "check");
        Runner { entries, pool, metrics, settled: bounded(1) }
    }

    /// Ready after any run settles, for a scheduler waiting on its runs.
    pub fn settled(&self) -> &Receiver<()> {
        &self.settled.1
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Starts a run of `entry`, or joins the one going.
    pub fn start(&self, entry: &Arc<Entry>) -> Started {
        let mut current = entry.current();
        if let Some(run) = current.as_ref() {
            return Started::Joined { run: run.clone(), late: run.deadline() <= Instant::now() };
        }
        let started = Instant::now();
        let run = Arc::new(Run {
            entry: entry.clone(),
            started,
            attempt: Attempt::new(started, entry.timeout),
            state: Mutex::new(RunState::default()),
            metrics: self.metrics.clone(),
            settled: self.settled.0.clone(),
        });
        *current = Some(run.clone());
        drop(current);
        let job = run.clone();
        if let Err(e) = self.pool.submit(move || execute(job)) {
            // Only when the pool is gone; say so rather than hang the caller.
            run.settle(Outcome::failed(Failure::new(Reason::Internal, e)));
            *entry.current() = None;
        }
        Started::New(run)
    }

    /// Starts a run unless one is going (a scheduler tick that finds its
    /// check still running is skipped).
    pub fn start_if_idle(&self, entry: &Arc<Entry>) -> Option<Arc<Run>> {
        match self.start(entry) {
            Started::New(run) => Some(run),
            Started::Joined { run, late } => {
                if late {
                    // Hung past its deadline: each tick counts as one more
                    // failed run, so rates, alerts and hysteresis go on
                    // telling the truth while the check hangs.
                    let mut outcome =
                        Outcome::new(Err(run.still_going()), run.attempt.notes(), entry.timeout);
                    entry.conclude(&mut outcome);
                    entry.report(&self.metrics, &outcome);
                } else {
                    debug!(
                        "check {}: tick skipped, the run started {} ago is still going",
                        entry.name,
                        Go(round_ms(run.started.elapsed()))
                    );
                }
                None
            }
        }
    }

    /// Runs still holding a worker.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        self.entries.iter().filter(|e| e.current().is_some()).count()
    }
}

/// The worker side of a run: the check itself, with panics contained.
fn execute(run: Arc<Run>) {
    let entry = &run.entry;
    let attempt = &run.attempt;
    let result = catch_unwind(AssertUnwindSafe(|| entry.check.run(attempt))).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Failure::new(Reason::Internal, format!("check panicked: {text}")))
    });
    let duration = run.started.elapsed();
    // Checks bound their sockets by the deadline, so returning a moment
    // after it is normal; a check that overruns by far is worth a warning.
    if run.is_settled() && duration > entry.timeout + Duration::from_millis(500) {
        warn!(
            "check {} returned after {}, {} past its {} timeout",
            entry.name,
            Go(round_ms(duration)),
            Go(round_ms(duration.saturating_sub(entry.timeout))),
            Go(entry.timeout)
        );
    }
    // A check that answers a moment late, after a waiter has already given
    // up, still gets the timeout it was reported with.
    let result = if duration > entry.timeout && result.is_ok() {
        Err(Failure::timeout(entry.timeout))
    } else {
        result
    };
    // The check is done: free the entry before settling, so that a request
    // arriving the moment this run's waiters are answered starts a fresh run
    // rather than joining this finished one and reading its old result.
    {
        let mut current = entry.current();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &run)) {
            *current = None;
        }
    }
    run.settle(Outcome::new(result, attempt.notes(), duration));
}

#[cfg(test)]
mod tests {
    //! A real backend cannot hang on command or panic, so these use checks
    //! that do exactly that.
    use super::*;
    use crossbeam_channel::Receiver;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Blocks each run until the test releases it, counting runs started.
    struct Gate {
        started: Arc<AtomicUsize>,
        release: Receiver<()>,
    }

    impl Check for Gate {
        fn verb(&self) -> &'static str {
            "gate"
        }
        fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
            attempt.note("step", "waiting at the gate");
            self.started.fetch_add(1, Ordering::SeqCst);
            let _ = self.release.recv();
            Ok(())
        }
    }

    struct Panics;

    impl Check for Panics {
        fn verb(&self) -> &'static str {
            "panic"
        }
        fn run(&self, _: &Attempt) -> Result<(), Failure> {
            panic!("boom")
        }
    }

    fn runner(check: Box<dyn Check>, timeout: Duration) -> (Runner, Arc<Entry>) {
        let spec = Spec {
            name: "t".into(),
            kind: "test".into(),
            interval: Duration::from_secs(60),
            timeout,
            fail_after: 1,
            pass_after: 1,
        };
        let entry = Arc::new(Entry::new(spec, check));
        (Runner::new(vec![entry.clone()], Arc::new(Metrics::new(None, "kubernary", &[]))), entry)
    }

    #[test]
    fn a_hung_check_times_out_and_is_never_started_twice() {
        let started = Arc::new(AtomicUsize::new(0));
        let (release, gate) = bounded(10);
        let (runner, entry) =
            runner(Box::new(Gate { started: started.clone(), release: gate }), Duration::from_millis(100));

        let first = runner.start(&entry);
        assert!(matches!(first, Started::New(_)));
        let outcome = first.wait();
        assert_eq!(outcome.result.unwrap_err().reason, Reason::Timeout);
        assert_eq!(outcome.notes, vec![("step", "waiting at the gate".into())], "notes survive a timeout");

        // Still hung: a tick is skipped, but counts as one more failed run,
        // and a probe joins, reporting why.
        assert!(runner.start_if_idle(&entry).is_none());
        let latest = entry.latest().unwrap();
        assert_eq!(latest.verdict.unwrap().consecutive_failures, 2, "the skipped tick counts as a failure");
        assert!(runner
            .metrics()
            .prometheus
            .render()
            .contains("kubernary_check_runs_total{check=\"t\",result=\"failure\"} 2"));
        let joined = runner.start(&entry);
        assert!(matches!(joined, Started::Joined { late: true, .. }));
        let message = joined.wait().result.unwrap_err().message;
        assert!(message.contains("is still going, so no new one was started"), "{message}");
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(runner.busy(), 1);

        // Once it returns, the next run starts afresh.
        release.send(()).unwrap();
        assert!(crate::tests_support::eventually(|| runner.busy() == 0));
        release.send(()).unwrap();
        assert!(runner.start(&entry).wait().ok());
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn waiters_share_one_outcome() {
        let started = Arc::new(AtomicUsize::new(0));
        let (release, gate) = bounded(10);
        let (runner, entry) =
            runner(Box::new(Gate { started: started.clone(), release: gate }), Duration::from_secs(10));
        let runner = Arc::new(runner);
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let (runner, entry) = (runner.clone(), entry.clone());
                std::thread::spawn(move || runner.start(&entry).wait().ok())
            })
            .collect();
        assert!(crate::tests_support::eventually(|| started.load(Ordering::SeqCst) == 1));
        std::thread::sleep(Duration::from_millis(50));
        release.send(()).unwrap();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_check_fails_as_internal_and_the_worker_lives_on() {
        let (runner, entry) = runner(Box::new(Panics), Duration::from_secs(5));
        for _ in 0..3 {
            let failure = runner.start(&entry).wait().result.unwrap_err();
            assert_eq!(failure.reason, Reason::Internal);
            assert_eq!(failure.message, "check panicked: boom");
            assert!(crate::tests_support::eventually(|| runner.busy() == 0));
        }
    }
}
