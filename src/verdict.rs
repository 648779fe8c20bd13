//! What `/health` says about a check over time: hysteresis over runs.
//!
//! A check is reported failing after `FAIL_AFTER` consecutive failed runs and
//! passing again after `PASS_AFTER` consecutive passes. Both default to 1,
//! the Go original's behaviour: every run is reported as it went. Before its first
//! run a check has no verdict; the first run sets one directly, so a canary
//! that starts broken does not claim health while it counts.

use std::time::SystemTime;

/// The standing of one check after a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What `/health` reports: the run's own result, smoothed by hysteresis.
    pub ok: bool,
    pub consecutive_failures: u32,
    pub last_success: Option<SystemTime>,
    pub last_run: SystemTime,
}

/// Running counts for one check.
#[derive(Debug)]
pub struct Tally {
    fail_after: u32,
    pass_after: u32,
    reported: Option<bool>,
    failures: u32,
    passes: u32,
    last_success: Option<SystemTime>,
}

impl Tally {
    pub fn new(fail_after: u32, pass_after: u32) -> Tally {
        Tally {
            fail_after: fail_after.max(1),
            pass_after: pass_after.max(1),
            reported: None,
            failures: 0,
            passes: 0,
            last_success: None,
        }
    }

    /// Counts one run that ended at `at`.
    pub fn observe(&mut self, ok: bool, at: SystemTime) -> Verdict {
        if ok {
            self.passes += 1;
            self.failures = 0;
            self.last_success = Some(at);
        } else {
            self.failures += 1;
            self.passes = 0;
        }
        let reported = match self.reported {
            None => ok,
            Some(true) if !ok => self.failures < self.fail_after,
            Some(false) if ok => self.passes >= self.pass_after,
            Some(current) => current,
        };
        self.reported = Some(reported);
        Verdict {
            ok: reported,
            consecutive_failures: self.failures,
            last_success: self.last_success,
            last_run: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tally: &mut Tally, results: &[bool]) -> Vec<bool> {
        results.iter().map(|&ok| tally.observe(ok, SystemTime::now()).ok).collect()
    }

    #[test]
    fn defaults_report_every_run_as_it_went() {
        let mut t = Tally::new(1, 1);
        assert_eq!(run(&mut t, &[true, false, true, false, false]), [true, false, true, false, false]);
    }

    #[test]
    fn fail_after_and_pass_after_smooth_flaps() {
        let mut t = Tally::new(3, 2);
        // Passing; two failures are tolerated, the third is reported.
        assert_eq!(run(&mut t, &[true, false, false, true]), [true, true, true, true]);
        assert_eq!(run(&mut t, &[false, false, false]), [true, true, false]);
        // Failing: one pass is not enough to recover, two are.
        assert_eq!(run(&mut t, &[true, false, true, true]), [false, false, false, true]);
    }

    #[test]
    fn fail_fail_pass_is_followed_with_counts() {
        let mut t = Tally::new(2, 1);
        let v = t.observe(true, SystemTime::UNIX_EPOCH);
        assert_eq!((v.ok, v.consecutive_failures), (true, 0));
        let v = t.observe(false, SystemTime::now());
        assert_eq!((v.ok, v.consecutive_failures), (true, 1));
        let v = t.observe(false, SystemTime::now());
        assert_eq!((v.ok, v.consecutive_failures, v.last_success), (false, 2, Some(SystemTime::UNIX_EPOCH)));
        let v = t.observe(true, SystemTime::now());
        assert_eq!((v.ok, v.consecutive_failures), (true, 0));
    }

    #[test]
    fn the_first_run_decides_directly() {
        assert!(!Tally::new(3, 1).observe(false, SystemTime::now()).ok);
        assert!(Tally::new(1, 3).observe(true, SystemTime::now()).ok);
    }
}
