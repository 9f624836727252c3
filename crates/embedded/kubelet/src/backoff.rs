//! Restart and image-pull back-off, as the kubelet does it: the delay doubles from a base (10 s
//! upstream) up to a cap (5 min), and resets when a container ran long enough (10 min).

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// A container that ran at least this long restarts without delay and resets the back-off.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl BackoffPolicy {
    /// The delay before the next restart, given how many restarts happened in a row before
    /// (0: the first restart, which is immediate) and how long the container last ran.
    pub fn delay(&self, consecutive: u32, last_run: Duration) -> Duration {
        if last_run >= self.reset_after || consecutive == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl((consecutive - 1).min(20))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Should a container that exited with `exit_code` be restarted under `restart_policy`?
pub fn should_restart(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let p = BackoffPolicy::default();
        let short = Duration::from_secs(1);
        assert_eq!(p.delay(0, short), Duration::ZERO);
        assert_eq!(p.delay(1, short), Duration::from_secs(10));
        assert_eq!(p.delay(2, short), Duration::from_secs(20));
        assert_eq!(p.delay(5, short), Duration::from_secs(160));
        assert_eq!(p.delay(6, short), Duration::from_secs(300));
        assert_eq!(p.delay(99, short), Duration::from_secs(300));
        assert_eq!(p.delay(7, Duration::from_secs(600)), Duration::ZERO);
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(!should_restart("Never", 1));
    }
}
