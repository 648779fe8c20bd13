//! Runs of checks: single flight, deadlines and settlement.
//!
//! Every check is an [`Entry`] with at most one [`Run`] going at a time. The
//! scheduler and `/health` both ask an entry for a run; when one is already
//! going they join it instead of starting another, so a hung check never
//! piles up work and a burst of probes costs the backend one request.
//!
//! A run is *settled* exactly once, by whichever comes first: the worker
//! finishing the check, or someone noticing the deadline has passed (the
//! scheduler for its runs, a waiting `/health` for its own). A run settled by
//! its deadline still holds its entry until the worker returns, so a hung
//! check is reported as timed out but never started twice.
//!
//! Each entry keeps its whole state (the run going, the hysteresis tally and
//! the latest outcome) under one lock, and a run concludes under it: the
//! worker frees the entry, counts the result, keeps it as the latest and
//! hands it to the sinks in one step. So results are counted in the order
//! the runs ran and nothing that reads them can step back in time; the
//! waiters are woken after the lock is let go.
//!
//! Settled results go to the [`Sink`]s the runner was given, as a plain
//! [`Record`]: this module knows nothing of metrics or logs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender};
use log::{debug, warn};

use crate::contract::{Attempt, Check, Failure, Reason};
use crate::duration::Go;
use crate::pool::Pool;
use crate::record::{Record, Sink};
use crate::schedstat::Mark;
use crate::verdict::{Tally, Verdict};

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub result: Result<(), Failure>,
    /// Facts the check noted (`credential_source`, ...), for `/health`.
    pub notes: Vec<(&'static str, serde_json::Value)>,
    /// From the start of the run to its settlement.
    pub duration: Duration,
    /// When the run concluded, for people (`last_run` in `/health`).
    pub finished: SystemTime,
    /// When the run concluded, for measuring its age: the monotonic clock,
    /// which an NTP step cannot make falsely fresh or stale.
    pub concluded: Instant,
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
        Outcome {
            result,
            notes,
            duration,
            finished: SystemTime::now(),
            concluded: Instant::now(),
            verdict: None,
        }
    }

    /// What `/health` reports: the verdict when there is one, else the run.
    pub fn reported_ok(&self) -> bool {
        self.verdict.as_ref().map_or(self.ok(), |v| v.ok)
    }

    /// How long ago the run concluded.
    pub fn age(&self) -> Duration {
        self.concluded.elapsed()
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
    state: Mutex<State>,
}

/// Everything about a check that changes, under one lock.
struct State {
    /// The run holding the check's worker, settled or not.
    current: Option<Arc<Run>>,
    tally: Tally,
    latest: Option<Outcome>,
}

impl Entry {
    pub fn new(spec: Spec, check: Box<dyn Check>) -> Entry {
        Entry {
            state: Mutex::new(State {
                current: None,
                tally: Tally::new(spec.fail_after, spec.pass_after),
                latest: None,
            }),
            name: spec.name,
            kind: spec.kind,
            interval: spec.interval,
            timeout: spec.timeout,
            check,
        }
    }

    /// The latest settled outcome, for answers that must not run anything.
    pub fn latest(&self) -> Option<Outcome> {
        self.state().latest.clone()
    }

    pub fn verb(&self) -> &'static str {
        self.check.verb()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state is intact
        // (nothing in it is left half-changed across a call that can panic).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a result towards the check's standing, keeps it as the latest
    /// and hands it to the sinks. Called with the state locked, so that
    /// results are counted, kept and reported in the order the runs ran.
    fn conclude(&self, state: &mut State, sinks: &Sinks, outcome: &mut Outcome) {
        outcome.finished = SystemTime::now();
        outcome.concluded = Instant::now();
        let verdict = state.tally.observe(outcome.ok(), outcome.finished);
        outcome.verdict = Some(verdict.clone());
        state.latest = Some(outcome.clone());
        if sinks.is_empty() {
            return;
        }
        let record = Record {
            check: self.name.clone(),
            kind: self.kind.clone(),
            verb: self.verb(),
            result: outcome.result.clone(),
            duration: outcome.duration,
            finished: outcome.finished,
            verdict,
            notes: outcome.notes.clone(),
        };
        for sink in sinks.iter() {
            sink.settled(&record);
        }
    }
}

/// Where settled results go, shared by the runner and its runs.
pub type Sinks = Arc<[Arc<dyn Sink>]>;

/// One run of one check.
pub struct Run {
    pub entry: Arc<Entry>,
    pub started: Instant,
    attempt: Attempt,
    /// The worker thread running the check, marked when it began.
    worker: OnceLock<Mark>,
    settlement: Mutex<Settlement>,
    sinks: Sinks,
    settled: Sender<()>,
}

#[derive(Default)]
struct Settlement {
    outcome: Option<Outcome>,
    waiters: Vec<Sender<Outcome>>,
}

impl Run {
    pub fn deadline(&self) -> Instant {
        self.started + self.entry.timeout
    }

    /// The steps of a traced run so far (see [`Runner::start_traced`]).
    pub fn trace(&self) -> Option<serde_json::Value> {
        self.attempt.trace_json()
    }

    /// Taken after the entry's state when both are needed, never before.
    fn settlement(&self) -> MutexGuard<'_, Settlement> {
        self.settlement.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_settled(&self) -> bool {
        self.settlement().outcome.is_some()
    }

    /// Settles the run unless it already is; returns the outcome that stands.
    pub fn settle(&self, outcome: Outcome) -> Outcome {
        self.conclude(outcome, false)
    }

    /// Settles the run (unless its deadline already did) and, when the
    /// worker is done with it (`free`), lets the entry start another, all
    /// under the entry's lock; then wakes the waiters.
    fn conclude(&self, mut outcome: Outcome, free: bool) -> Outcome {
        // How long the worker waited for a CPU during the run: a timeout
        // with a large figure here was the node's doing, not the backend's.
        if let Some(waited) = self.worker.get().and_then(Mark::waited_since) {
            let ms = (waited.as_secs_f64() * 10_000.0).round() / 10.0;
            outcome.notes.push(("run_queue_wait_ms", ms.into()));
        }
        let waiters = {
            let mut state = self.entry.state();
            if free && state.current.as_ref().is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), self)) {
                state.current = None;
            }
            let mut settlement = self.settlement();
            if let Some(existing) = &settlement.outcome {
                return existing.clone();
            }
            self.entry.conclude(&mut state, &self.sinks, &mut outcome);
            settlement.outcome = Some(outcome.clone());
            std::mem::take(&mut settlement.waiters)
        };
        for waiter in waiters {
            let _ = waiter.try_send(outcome.clone());
        }
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
            let mut settlement = self.settlement();
            if let Some(outcome) = &settlement.outcome {
                return outcome.clone();
            }
            let (tx, rx) = bounded(1);
            settlement.waiters.push(tx);
            rx
        };
        match receiver.recv_deadline(self.deadline()) {
            Ok(outcome) => outcome,
            Err(_) => self.settle(self.timed_out()),
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64)
}

/// The checks and the pool that runs them.
pub struct Runner {
    entries: Vec<Arc<Entry>>,
    pool: Pool,
    sinks: Sinks,
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
        let still_going = run.entry.state().current.as_ref().is_some_and(|c| Arc::ptr_eq(c, run));
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
    pub fn new(entries: Vec<Arc<Entry>>, sinks: Vec<Arc<dyn Sink>>) -> Runner {
        let pool = Pool::new(entries.len().max(1), "check");
        Runner { entries, pool, sinks: sinks.into(), settled: bounded(1) }
    }

    /// Ready after any run settles, for a scheduler waiting on its runs.
    pub fn settled(&self) -> &Receiver<()> {
        &self.settled.1
    }

    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    pub fn entry(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Starts a run of `entry`, or joins the one going.
    pub fn start(&self, entry: &Arc<Entry>) -> Started {
        self.start_with(entry, false)
    }

    /// [`Runner::start`] for `/health/<name>?debug=true`: a new run records
    /// its steps. It is an ordinary run otherwise (single flight, counted,
    /// reported to the sinks); when one is already going it is joined, and
    /// that run has no trace unless it was started traced too.
    pub fn start_traced(&self, entry: &Arc<Entry>) -> Started {
        self.start_with(entry, true)
    }

    fn start_with(&self, entry: &Arc<Entry>, traced: bool) -> Started {
        let mut state = entry.state();
        if let Some(run) = state.current.as_ref() {
            return Started::Joined { run: run.clone(), late: run.deadline() <= Instant::now() };
        }
        let started = Instant::now();
        let run = Arc::new(Run {
            entry: entry.clone(),
            started,
            attempt: if traced {
                Attempt::traced(started, entry.timeout)
            } else {
                Attempt::new(started, entry.timeout)
            },
            worker: OnceLock::new(),
            settlement: Mutex::new(Settlement::default()),
            sinks: self.sinks.clone(),
            settled: self.settled.0.clone(),
        });
        state.current = Some(run.clone());
        drop(state);
        let job = run.clone();
        if let Err(e) = self.pool.submit(move || execute(job)) {
            // Only when the pool is gone; say so rather than hang the caller.
            run.conclude(Outcome::failed(Failure::new(Reason::Internal, e)), true);
        }
        Started::New(run)
    }

    /// Starts a run unless one is going (a scheduler tick that finds its
    /// check still running is skipped).
    pub fn start_if_idle(&self, entry: &Arc<Entry>) -> Option<Arc<Run>> {
        let (run, late) = match self.start(entry) {
            Started::New(run) => return Some(run),
            Started::Joined { run, late } => (run, late),
        };
        if !late {
            debug!(
                "check {}: tick skipped, the run started {} ago is still going",
                entry.name,
                Go(round_ms(run.started.elapsed()))
            );
            return None;
        }
        // Hung past its deadline. The run's own timeout comes first (no one
        // may have been waiting for it, if /health started it and its client
        // left); then each tick counts as one more failed run, so rates,
        // alerts and hysteresis go on telling the truth while the check
        // hangs; unless it returned in the meantime.
        run.settle_if_overdue();
        let mut state = entry.state();
        if state.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &run)) {
            let mut outcome = Outcome::new(Err(run.still_going()), run.attempt.notes(), entry.timeout);
            entry.conclude(&mut state, &self.sinks, &mut outcome);
        }
        None
    }

    /// Runs still holding a worker.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        self.entries.iter().filter(|e| e.state().current.is_some()).count()
    }
}

/// The worker side of a run: the check itself, with panics contained.
fn execute(run: Arc<Run>) {
    if let Some(mark) = Mark::here() {
        let _ = run.worker.set(mark);
    }
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
    if let Err(failure) = &result {
        attempt.trace("failed", || format!("{}: {}", failure.reason, failure.message));
    }
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
    // Past its deadline (and maybe reported at it already): until it
    // returns, a request for the check joins this run.
    let overran = run.is_settled() || duration > entry.timeout;
    // A check that answers a moment late, after a waiter has already given
    // up, still gets the timeout it was reported with.
    let result = if duration > entry.timeout && result.is_ok() {
        Err(Failure::timeout(entry.timeout))
    } else {
        result
    };
    // Free the entry and settle in one step: a request arriving the moment
    // the waiters are answered starts a fresh run rather than joining this
    // finished one, and no fresh run can conclude before this one.
    run.conclude(Outcome::new(result, attempt.notes(), duration), true);
    if overran {
        debug!(
            "check {}: the run that timed out returned after {}; the check is free",
            entry.name,
            Go(round_ms(duration))
        );
    }
}

#[cfg(test)]
mod tests {
    //! A real backend cannot hang on command or panic, so these use checks
    //! that do exactly that.
    use super::*;
    use crate::tests_support::Recorder;
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

    fn runner(check: Box<dyn Check>, timeout: Duration) -> (Runner, Arc<Entry>, Arc<Recorder>) {
        let spec = Spec {
            name: "t".into(),
            kind: "test".into(),
            interval: Duration::from_secs(60),
            timeout,
            fail_after: 1,
            pass_after: 1,
        };
        let entry = Arc::new(Entry::new(spec, check));
        let recorder = Arc::new(Recorder::default());
        (Runner::new(vec![entry.clone()], vec![recorder.clone()]), entry, recorder)
    }

    #[test]
    fn a_hung_check_times_out_and_is_never_started_twice() {
        let started = Arc::new(AtomicUsize::new(0));
        let (release, gate) = bounded(10);
        let (runner, entry, recorder) =
            runner(Box::new(Gate { started: started.clone(), release: gate }), Duration::from_millis(100));

        let first = runner.start(&entry);
        assert!(matches!(first, Started::New(_)));
        let outcome = first.wait();
        assert_eq!(outcome.result.unwrap_err().reason, Reason::Timeout);
        assert_eq!(outcome.notes[0], ("step", "waiting at the gate".into()), "notes survive a timeout");
        let (key, waited) = &outcome.notes[1];
        assert_eq!(*key, "run_queue_wait_ms", "the worker's wait for a CPU is noted");
        assert!(waited.as_f64().unwrap() >= 0.0);

        // Still hung: a tick is skipped, but counts as one more failed run,
        // and a probe joins, reporting why.
        assert!(runner.start_if_idle(&entry).is_none());
        let latest = entry.latest().unwrap();
        assert_eq!(latest.verdict.unwrap().consecutive_failures, 2, "the skipped tick counts as a failure");
        let reasons: Vec<_> = recorder.records().iter().map(Record::reason).collect();
        assert_eq!(reasons, [Some("timeout"), Some("timeout")], "the sinks were told of both");
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

    /// A run nobody waits for (its /health client left) is past its
    /// deadline when a tick finds it: its own timeout is counted first, then
    /// the tick's "still going".
    #[test]
    fn a_tick_settles_an_overdue_run_before_counting_it_still_going() {
        let (release, gate) = bounded(10);
        let started = Arc::new(AtomicUsize::new(0));
        let (runner, entry, recorder) =
            runner(Box::new(Gate { started: started.clone(), release: gate }), Duration::from_millis(50));
        let run = runner.start(&entry).run().clone();
        // Time passing is the event here.
        std::thread::sleep(run.deadline().saturating_duration_since(Instant::now()));
        assert!(runner.start_if_idle(&entry).is_none());
        let messages: Vec<String> =
            recorder.records().iter().map(|r| r.result.clone().unwrap_err().message).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0], "timed out after 50ms", "the run's own timeout first");
        assert!(messages[1].contains("is still going"), "{messages:?}");
        release.send(()).unwrap();
    }

    /// An NTP step moves the wall clock, not the age of a result.
    #[test]
    fn the_age_of_a_result_ignores_the_wall_clock() {
        let mut outcome = Outcome::new(Ok(()), Vec::new(), Duration::ZERO);
        outcome.finished -= Duration::from_secs(3600);
        assert!(outcome.age() < Duration::from_secs(60), "{:?}", outcome.age());
        outcome.finished += Duration::from_secs(7200);
        assert!(outcome.age() < Duration::from_secs(60), "{:?}", outcome.age());
    }

    #[test]
    fn waiters_share_one_outcome() {
        let started = Arc::new(AtomicUsize::new(0));
        let (release, gate) = bounded(10);
        let (runner, entry, _) =
            runner(Box::new(Gate { started: started.clone(), release: gate }), Duration::from_secs(10));
        let runner = Arc::new(runner);
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let (runner, entry) = (runner.clone(), entry.clone());
                std::thread::spawn(move || runner.start(&entry).wait().ok())
            })
            .collect();
        assert!(crate::tests_support::eventually(|| started.load(Ordering::SeqCst) == 1));
        // All five are waiting on the one run before it ends.
        let run = entry.state().current.clone().unwrap();
        assert!(crate::tests_support::eventually(|| run.settlement().waiters.len() == 5));
        release.send(()).unwrap();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    /// Passes on even runs and fails on odd ones, noting its run number.
    struct Flip {
        runs: AtomicUsize,
    }

    impl Check for Flip {
        fn verb(&self) -> &'static str {
            "flip"
        }
        fn run(&self, attempt: &Attempt) -> Result<(), Failure> {
            let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            attempt.note("run", n);
            match n % 2 {
                0 => Ok(()),
                _ => Err(Failure::new(Reason::Internal, "odd run")),
            }
        }
    }

    /// Asks for runs of `entry` for 2 s: a waiter as a probe does, else as
    /// fast as it can (starting a run the moment the last one frees the
    /// entry); the outcomes of the runs it saw.
    fn hammer(runner: &Runner, entry: &Arc<Entry>, waits: bool) -> Vec<Outcome> {
        let until = Instant::now() + Duration::from_secs(2);
        let (mut outcomes, mut runs) = (Vec::new(), Vec::new());
        while Instant::now() < until {
            match runner.start(entry) {
                started if waits => outcomes.push(started.wait()),
                Started::New(run) => runs.push(run),
                Started::Joined { .. } => std::thread::yield_now(),
            }
        }
        outcomes.extend(runs.iter().map(|run| run.wait()));
        outcomes
    }

    /// Runs of one check follow each other (single flight), so their
    /// results must be counted in the order they ran, however many threads
    /// ask at once: `last_run` only moves forward, and a check that flips
    /// every run never shows two failures in a row.
    #[test]
    fn results_never_step_backwards_under_a_hammer() {
        let spec = |name: &str| Spec {
            name: name.into(),
            kind: "test".into(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(120),
            fail_after: 1,
            pass_after: 1,
        };
        let flip = || Box::new(Flip { runs: AtomicUsize::new(0) });
        // Idle neighbours give the pool spare workers, as in the daemon, so
        // a new run can start on one while the last one is still settling.
        let entries: Vec<Arc<Entry>> = ["t", "idle-1", "idle-2", "idle-3"]
            .iter()
            .map(|n| Arc::new(Entry::new(spec(n), flip())))
            .collect();
        let entry = entries[0].clone();
        let recorder = Arc::new(Recorder::default());
        let runner = Arc::new(Runner::new(entries, vec![recorder.clone()]));
        let hammers: Vec<_> = (0..8)
            .map(|n| {
                let (runner, entry) = (runner.clone(), entry.clone());
                std::thread::spawn(move || hammer(&runner, &entry, n % 2 == 0))
            })
            .collect();
        let mut seen = std::collections::BTreeMap::new();
        for hammer in hammers {
            for outcome in hammer.join().unwrap() {
                let run = outcome.notes.iter().find(|(k, _)| *k == "run").unwrap().1.as_u64().unwrap();
                seen.insert(run, outcome.verdict.unwrap());
            }
        }
        let mut previous: Option<(u64, Verdict)> = None;
        for (run, verdict) in &seen {
            assert!(verdict.consecutive_failures <= 1, "run {run} counted after a later one: {verdict:?}");
            if let Some((before, earlier)) = &previous {
                assert!(
                    verdict.last_run >= earlier.last_run,
                    "run {run} concluded before run {before}: {verdict:?} vs {earlier:?}"
                );
            }
            previous = Some((*run, verdict.clone()));
        }
        let last = *seen.keys().last().unwrap();
        let latest = entry.latest().unwrap();
        assert_eq!(latest.notes[0], ("run", last.into()), "the latest result is the last run's");
        // The sinks were handed every run once, in the order they ran.
        let told: Vec<u64> = recorder.records().iter().map(|r| r.notes[0].1.as_u64().unwrap()).collect();
        assert_eq!(told, (1..=last).collect::<Vec<_>>(), "the sinks saw the runs in order");
    }

    #[test]
    fn a_panicking_check_fails_as_internal_and_the_worker_lives_on() {
        let (runner, entry, _) = runner(Box::new(Panics), Duration::from_secs(5));
        for _ in 0..3 {
            let failure = runner.start(&entry).wait().result.unwrap_err();
            assert_eq!(failure.reason, Reason::Internal);
            assert_eq!(failure.message, "check panicked: boom");
            assert!(crate::tests_support::eventually(|| runner.busy() == 0));
        }
    }
}
