//! A small fixed pool of worker threads fed by a channel, for checks.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use crossbeam_channel::{unbounded, Sender};

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
