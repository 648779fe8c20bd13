//! How long a thread has waited for a CPU: the second field of Linux's
//! `/proc/.../schedstat`, time spent runnable on a run queue but not
//! running, in nanoseconds.
//!
//! A run that times out because its worker could not get a CPU (other work
//! on a busy node) says so with this figure, so that a person, or a test,
//! can tell a starved canary from a slow backend.

use std::time::Duration;

/// A thread, and how long it had waited for a CPU when it was marked.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    tid: i32,
    waited: u64,
}

impl Mark {
    /// The calling thread, now; `None` where the kernel does not say.
    pub fn here() -> Option<Mark> {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        Some(Mark { tid, waited: read("/proc/thread-self/schedstat")? })
    }

    /// How long the marked thread has waited for a CPU since it was marked;
    /// readable from any thread of the process.
    pub fn waited_since(&self) -> Option<Duration> {
        let now = read(&format!("/proc/self/task/{}/schedstat", self.tid))?;
        Some(Duration::from_nanos(now.saturating_sub(self.waited)))
    }
}

fn read(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_cannot_get_a_cpu_has_waited() {
        let Some(mark) = Mark::here() else { return }; // not Linux
                                                       // More spinning threads than CPUs: this one waits its turn.
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..cpus * 2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || while !stop.load(std::sync::atomic::Ordering::Relaxed) {})
            })
            .collect();
        let began = std::time::Instant::now();
        while began.elapsed() < Duration::from_millis(300) {}
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinners.into_iter().for_each(|s| s.join().unwrap());
        let waited = std::thread::spawn(move || mark.waited_since()).join().unwrap().unwrap();
        assert!(waited > Duration::ZERO, "{waited:?}");
    }
}
