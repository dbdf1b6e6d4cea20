//! Per-upstream request counters and a latency histogram (time to response headers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Live counters of one upstream.
#[derive(Debug, Default)]
pub(crate) struct UpstreamStats {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_micros: AtomicU64,
}

/// A copy of an upstream's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamStatsSnapshot {
    /// Requests sent (each endpoint attempt counts).
    pub requests: u64,
    /// Requests that failed: unreachable, timed out, 5xx, 429, or circuit open.
    pub errors: u64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`] (`le` semantics).
    pub latency_buckets: Vec<(f64, u64)>,
    /// Sum of all latencies in seconds.
    pub latency_sum: f64,
}

impl UpstreamStats {
    /// Records one answered request (any status) and how long its headers took.
    pub(crate) fn observe(&self, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Records one failed request.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> UpstreamStatsSnapshot {
        let mut cumulative = 0;
        let latency_buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        #[allow(clippy::cast_precision_loss)] // microsecond sums stay far below 2^52
        let latency_sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        UpstreamStatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency_buckets,
            latency_sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let s = UpstreamStats::default();
        s.observe(Duration::from_millis(3));
        s.observe(Duration::from_millis(300));
        s.observe(Duration::from_secs(60));
        s.error();
        let snap = s.snapshot();
        assert_eq!((snap.requests, snap.errors), (3, 1));
        assert_eq!(snap.latency_buckets[0], (0.005, 1));
        assert_eq!(snap.latency_buckets[6], (0.5, 2));
        assert_eq!(
            snap.latency_buckets.last().unwrap().1,
            2,
            "60 s falls only in +Inf"
        );
        assert!((snap.latency_sum - 60.303).abs() < 1e-6);
    }
}
