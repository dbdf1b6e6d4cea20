//! A circuit breaker per upstream endpoint: after `threshold` consecutive failures
//! (connect errors, timeouts, 5xx) requests skip the endpoint for a cool-down, so misses
//! fail in milliseconds instead of waiting for timeouts; after it, one probe is let through.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

/// The breaker of one endpoint.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::default(),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Whether a request may go to the endpoint now. While open, no; once the cool-down
    /// has passed, one request (the probe) may, and the next cool-down starts.
    pub(crate) fn allow(&self) -> bool {
        let mut s = self.state.lock();
        match s.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                s.open_until = Some(Instant::now() + self.cooldown);
                true
            }
        }
    }

    /// The endpoint answered (any status below 500).
    pub(crate) fn success(&self) {
        let mut s = self.state.lock();
        *s = State::default();
    }

    /// The endpoint failed.
    pub(crate) fn failure(&self) {
        let mut s = self.state.lock();
        s.failures += 1;
        if s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.cooldown);
        }
    }

    /// True while requests are being refused.
    pub(crate) fn is_open(&self) -> bool {
        self.state
            .lock()
            .open_until
            .is_some_and(|until| Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(30));
        b.failure();
        b.failure();
        assert!(b.allow() && !b.is_open());
        b.failure();
        assert!(!b.allow() && b.is_open());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.allow(), "only one");
        b.success();
        assert!(b.allow() && !b.is_open());
    }
}
