//! Worker threads fed by a channel: a small fixed [`Pool`] for checks, and an
//! [`Elastic`] one for `/health` handlers.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// Worker stacks: a check is a few frames of HTTP and TLS client code, far
/// below this; the default 2 MiB would only reserve address space.
const STACK_SIZE: usize = 256 * 1024;

pub struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// Starts `size` workers named `<name>-<n>`. The queue is unbounded
    /// because its users bound it: each check has at most one job queued or
    /// running.
    pub fn new(size: usize, name: &str) -> Pool {
        let (jobs, queue) = unbounded::<Job>();
        for n in 0..size {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("{name}-{n}"))
                .stack_size(STACK_SIZE)
                .spawn(move || {
                    for job in queue {
                        // Jobs contain their own panics; this keeps the worker
                        // alive if one does not.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .expect("spawning a worker thread at start-up");
        }
        Pool { jobs }
    }

    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), String> {
        self.jobs.send(Box::new(job)).map_err(|_| "the worker pool has stopped".to_string())
    }
}

/// Threads made on demand and kept for reuse: a job goes to an idle thread
/// if there is one, else to a new thread; a thread idle for `linger` ends.
/// So a burst costs as many threads as jobs run at once, not one per job,
/// and none are left once it is over. The caller bounds the jobs in flight.
pub struct Elastic {
    name: &'static str,
    stack: usize,
    linger: Duration,
    jobs: Sender<ElasticJob>,
    queue: Receiver<ElasticJob>,
    /// Threads waiting for a job, less the jobs sent and not yet taken: a
    /// job may only be sent while this is above zero, after taking one off.
    idle: Arc<AtomicUsize>,
}

impl Elastic {
    pub fn new(name: &'static str, stack: usize, linger: Duration) -> Elastic {
        let (jobs, queue) = unbounded::<ElasticJob>();
        Elastic { name, stack, linger, jobs, queue, idle: Arc::new(AtomicUsize::new(0)) }
    }

    /// Runs `job` on an idle thread, or on a new one; `Err` when no thread
    /// could be made, and then `job` has been dropped without running.
    ///
    /// The job may call [`Release::now`] before its last step, typically the
    /// write that lets its client send the next request: the thread then
    /// counts as idle already, and that request reuses it instead of finding
    /// every thread busy and making another.
    pub fn submit(&self, job: impl FnOnce(&Release) + Send + 'static) -> std::io::Result<()> {
        if take_one(&self.idle) {
            // A thread is (or is about to be) waiting and, counted off, will
            // stay for this job.
            let _ = self.jobs.send(Box::new(job));
            return Ok(());
        }
        let (queue, idle, linger) = (self.queue.clone(), self.idle.clone(), self.linger);
        thread::Builder::new().name(self.name.into()).stack_size(self.stack).spawn(move || {
            let mut job: ElasticJob = Box::new(job);
            loop {
                let release = Release { idle: &idle, done: Cell::new(false) };
                let _ = catch_unwind(AssertUnwindSafe(|| job(&release)));
                release.now();
                job = match queue.recv_timeout(linger) {
                    Ok(next) => next,
                    // Leave only if no job was meant for us meanwhile.
                    Err(_) if take_one(&idle) => return,
                    Err(_) => match queue.recv() {
                        Ok(next) => next,
                        Err(_) => return,
                    },
                };
            }
        })?;
        Ok(())
    }
}

type ElasticJob = Box<dyn FnOnce(&Release) + Send>;

/// Lets a job of an [`Elastic`] pool count its thread idle before it ends.
pub struct Release<'a> {
    idle: &'a AtomicUsize,
    done: Cell<bool>,
}

impl Release<'_> {
    /// From now on the thread may be given the next job, which waits until
    /// this one has returned. Later calls do nothing.
    pub fn now(&self) {
        if !self.done.replace(true) {
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Decrements `count` unless it is zero; whether it did.
fn take_one(count: &AtomicUsize) -> bool {
    count.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[test]
    fn elastic_threads_are_reused_and_leave_when_idle() {
        let pool = Elastic::new("t", 64 * 1024, Duration::from_millis(200));
        let seen = Arc::new(Mutex::new(HashSet::new()));
        for _ in 0..20 {
            let (done, wait) = crossbeam_channel::bounded(1);
            let seen = seen.clone();
            pool.submit(move |_| {
                seen.lock().unwrap().insert(thread::current().id());
                done.send(()).unwrap();
            })
            .unwrap();
            wait.recv().unwrap();
            // Let the thread mark itself idle before the next job.
            while pool.idle.load(Ordering::SeqCst) == 0 {
                thread::yield_now();
            }
        }
        assert_eq!(seen.lock().unwrap().len(), 1, "one thread for jobs one at a time");
        thread::sleep(Duration::from_millis(400));
        assert_eq!(pool.idle.load(Ordering::SeqCst), 0, "the idle thread left");
    }

    #[test]
    fn elastic_runs_jobs_side_by_side() {
        let pool = Elastic::new("t", 64 * 1024, Duration::from_secs(1));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let (done, wait) = crossbeam_channel::unbounded();
        for _ in 0..8 {
            let (barrier, done) = (barrier.clone(), done.clone());
            // Each blocks until all eight run at once.
            pool.submit(move |_| {
                barrier.wait();
                done.send(()).unwrap();
            })
            .unwrap();
        }
        for _ in 0..8 {
            wait.recv_timeout(Duration::from_secs(5)).expect("all eight ran at once");
        }
    }
}
