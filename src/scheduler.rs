//! The scheduler: one thread that runs each check at start and then every
//! INTERVAL, and settles its runs that outlive their deadline.
//!
//! It sleeps on a crossbeam timer channel until the next thing is due (a
//! tick or a deadline), or until the shutdown starts, so an idle daemon uses
//! no CPU. After the shutdown it starts nothing new and stays only until the
//! runs it started are settled.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{at, never, select};
use log::debug;

use crate::duration::Millis;
use crate::runs::{Run, Runner};
use crate::shutdown::Shutdown;

pub fn spawn(
    runner: Arc<Runner>,
    shutdown: Shutdown,
    start_jitter: Duration,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("scheduler".into()).stack_size(128 * 1024).spawn(move || {
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&runner, &shutdown, start_jitter)));
        if ran.is_err() {
            // Without its scheduler the canary would answer /livez and
            // check nothing; better to exit and be restarted.
            log::error!("bug: the scheduler stopped; exiting");
            std::process::exit(70);
        }
    })
}

fn run(runner: &Runner, shutdown: &Shutdown, start_jitter: Duration) {
    let start = Instant::now();
    let mut due: Vec<Instant> =
        runner.entries().iter().map(|e| start + spread(&e.name, start_jitter)).collect();
    if !start_jitter.is_zero() {
        for (entry, due) in runner.entries().iter().zip(&due) {
            debug!("check {}: first run in {}", entry.name, Millis(due.duration_since(start)));
        }
    }
    let mut pending: Vec<Arc<Run>> = Vec::new();
    loop {
        // Runs past their deadline are settled before any tick, so that a
        // tick due at a deadline finds the run timed out, and reports it as
        // still going only after its own timeout.
        pending.retain(|run| run.settle_if_overdue().is_none() && !run.is_settled());
        let now = Instant::now();
        let stopping = shutdown.is_set();
        if !stopping {
            for (entry, due) in runner.entries().iter().zip(due.iter_mut()) {
                if *due > now {
                    continue;
                }
                if let Some(run) = runner.start_if_idle(entry) {
                    pending.push(run);
                }
                // Skip ticks missed while the machine was suspended or busy,
                // rather than firing them in a burst.
                *due += entry.interval;
                if *due <= now {
                    *due = now + entry.interval;
                }
            }
        }
        if stopping && pending.is_empty() {
            debug!("scheduler: stopped");
            return;
        }
        let next_deadline = pending.iter().map(|r| r.deadline()).min();
        let next_tick = if stopping { None } else { due.iter().min().copied() };
        let Some(next) = [next_deadline, next_tick].into_iter().flatten().min() else {
            // Nothing configured and nothing pending: wait for the shutdown.
            shutdown.wait();
            continue;
        };
        // A closed shutdown channel is always ready, so after the shutdown
        // only timers and settlements wake us.
        let closed = if stopping { never() } else { shutdown.closed().clone() };
        select! {
            recv(closed) -> _ => {},
            recv(runner.settled()) -> _ => {},
            recv(at(next)) -> _ => {},
        }
    }
}

/// A random delay in `[0, jitter)`. std's hasher is keyed at random per
/// process, which is all the randomness this needs: different on every node.
fn spread(name: &str, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    name.hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    let nanos = jitter.as_nanos().min(u64::MAX as u128) as u64;
    Duration::from_nanos(hasher.finish() % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Attempt, Check, Failure};
    use crate::runs::{Entry, Spec};
    use crate::tests_support::Recorder;

    /// Hangs until the test ends.
    struct Hangs(crossbeam_channel::Receiver<()>);

    impl Check for Hangs {
        fn verb(&self) -> &'static str {
            "hang"
        }
        fn run(&self, _: &Attempt) -> Result<(), Failure> {
            let _ = self.0.recv();
            Ok(())
        }
    }

    /// With the interval equal to the timeout, every tick is due at the
    /// hung run's deadline. The first failure reported is the run's own
    /// timeout; the ticks after it say the run is still going.
    #[test]
    fn a_tick_on_a_deadline_reports_the_timeout_first() {
        let (release, hang) = crossbeam_channel::bounded(1);
        let every = Duration::from_millis(200);
        let spec = Spec {
            name: "t".into(),
            kind: "test".into(),
            interval: every,
            timeout: every,
            fail_after: 1,
            pass_after: 1,
        };
        let recorder = Arc::new(Recorder::default());
        let runner = Arc::new(Runner::new(
            vec![Arc::new(Entry::new(spec, Box::new(Hangs(hang))))],
            vec![recorder.clone()],
        ));
        let shutdown = Shutdown::new();
        let scheduler = spawn(runner, shutdown.clone(), Duration::ZERO).unwrap();
        let records = recorder.wait_for(3);
        shutdown.trigger("test over");
        drop(release);
        scheduler.join().unwrap();
        let messages: Vec<String> = records.iter().map(|r| r.result.clone().unwrap_err().message).collect();
        assert_eq!(messages[0], "timed out after 200ms", "{messages:#?}");
        assert!(messages[1..].iter().all(|m| m.contains("is still going")), "{messages:#?}");
    }

    #[test]
    fn spread_stays_within_the_jitter_and_varies() {
        assert_eq!(spread("s3", Duration::ZERO), Duration::ZERO);
        let jitter = Duration::from_secs(10);
        let delays: Vec<Duration> = (0..50).map(|_| spread("s3", jitter)).collect();
        assert!(delays.iter().all(|d| *d < jitter));
        assert!(delays.iter().any(|d| *d != delays[0]), "no spread: {delays:?}");
    }
}
