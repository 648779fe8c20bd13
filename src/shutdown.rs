//! Shutdown: one shared flag, set by a signal or `/quitquitquit`, that every
//! thread can test cheaply or wait on, and the timer that bounds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use log::{error, info, warn};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    flag: AtomicBool,
    /// Dropped on trigger, which wakes every `select!` on `closed`.
    trigger: Mutex<Option<Sender<()>>>,
    closed: Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (trigger, closed) = bounded(0);
        Shutdown {
            inner: Arc::new(Inner {
                flag: AtomicBool::new(false),
                trigger: Mutex::new(Some(trigger)),
                closed,
            }),
        }
    }

    /// Starts the shutdown; false if it had already started.
    pub fn trigger(&self, why: &str) -> bool {
        if self.inner.flag.swap(true, Ordering::SeqCst) {
            return false;
        }
        info!("shutting down: {why}");
        self.inner.trigger.lock().unwrap_or_else(|e| e.into_inner()).take();
        true
    }

    pub fn is_set(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// A channel that disconnects when the shutdown starts.
    pub fn closed(&self) -> &Receiver<()> {
        &self.inner.closed
    }

    pub fn wait(&self) {
        let _ = self.inner.closed.recv();
    }
}

/// Turns SIGTERM and SIGINT into a shutdown. A second signal exits at once,
/// as an impatient operator expects of a second Ctrl-C. Only a second
/// *signal* does: the SIGTERM that Kubernetes sends right after a `preStop`
/// hook has called `/quitquitquit` is the first, and lets the drain go on.
pub fn watch_signals(shutdown: Shutdown) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    thread::Builder::new().name("signals".into()).stack_size(64 * 1024).spawn(move || {
        let mut received = false;
        for signal in signals.forever() {
            let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
            if received {
                warn!("{name} received again: exiting now");
                crate::logging::flush(Duration::from_millis(200));
                std::process::exit(128 + signal);
            }
            received = true;
            if !shutdown.trigger(&format!("{name} received")) {
                info!("{name} received: the shutdown is already under way");
            }
        }
    })?;
    Ok(())
}

/// Exits the process with status 1 once `after` has passed, whatever is
/// still going: `--kill-after` bounds the whole shutdown.
pub fn arm_kill_timer(after: Duration) {
    let spawned = thread::Builder::new().name("kill-after".into()).stack_size(64 * 1024).spawn(move || {
        thread::sleep(after);
        error!("still busy {} after the shutdown began: exiting (--kill-after)", crate::duration::Go(after));
        crate::logging::flush(Duration::from_millis(500));
        std::process::exit(1);
    });
    if let Err(e) = spawned {
        error!("cannot arm the --kill-after timer: {e}; exiting now");
        std::process::exit(1);
    }
}
