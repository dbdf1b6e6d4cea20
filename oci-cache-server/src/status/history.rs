//! The last hour of the cache, minute by minute, for the status page's charts: the engine's
//! and the upstreams' counters sampled at each minute boundary (a task wakes every 10 s),
//! and the change within each minute. 61 samples at most: memory does not grow.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_cache_core::{Engine, Upstreams};
use parking_lot::Mutex;

/// Minutes kept.
const MINUTES: usize = 60;

/// The counters the charts are made of, summed over upstreams.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Totals {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) bytes_from_cache: u64,
    pub(crate) bytes_from_upstream: u64,
    pub(crate) upstream_requests: u64,
    pub(crate) upstream_errors: u64,
    pub(crate) upstream_latency_secs: f64,
}

impl Totals {
    /// The counters now.
    pub(crate) fn now(engine: &Engine, upstreams: &Upstreams) -> Self {
        let s = engine.stats();
        let mut t = Self {
            hits: s.blob_hits + s.manifest_hits,
            misses: s.blob_misses + s.manifest_misses,
            bytes_from_cache: s.bytes_from_cache,
            bytes_from_upstream: s.bytes_from_upstream,
            ..Self::default()
        };
        for u in upstreams.all() {
            let st = u.stats();
            t.upstream_requests += st.requests;
            t.upstream_errors += st.errors;
            t.upstream_latency_secs += st.latency_sum;
        }
        t
    }

    /// What changed from `before` to `self`.
    fn since(&self, before: &Self) -> Minute {
        let requests = self
            .upstream_requests
            .saturating_sub(before.upstream_requests);
        let latency = (self.upstream_latency_secs - before.upstream_latency_secs).max(0.0);
        let (hits, misses) = (
            self.hits.saturating_sub(before.hits),
            self.misses.saturating_sub(before.misses),
        );
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        Minute {
            start: 0,
            from_cache: hits,
            from_upstream: misses,
            bytes_from_cache: self
                .bytes_from_cache
                .saturating_sub(before.bytes_from_cache),
            bytes_from_upstream: self
                .bytes_from_upstream
                .saturating_sub(before.bytes_from_upstream),
            hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            upstream_errors: self.upstream_errors.saturating_sub(before.upstream_errors),
            upstream_latency_ms: (requests > 0).then(|| latency * 1000.0 / requests as f64),
        }
    }
}

/// One minute of the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Minute {
    /// Its start, Unix seconds.
    pub(crate) start: u64,
    /// Blob and manifest requests answered from storage.
    pub(crate) from_cache: u64,
    /// Blob and manifest requests that went to an upstream.
    pub(crate) from_upstream: u64,
    pub(crate) bytes_from_cache: u64,
    pub(crate) bytes_from_upstream: u64,
    /// Hits over requests; `None` without requests.
    pub(crate) hit_ratio: Option<f64>,
    pub(crate) upstream_errors: u64,
    /// Mean time to an upstream's response headers; `None` without upstream requests.
    pub(crate) upstream_latency_ms: Option<f64>,
}

/// The samples taken at minute boundaries.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<(u64, Totals)>>,
}

fn unix_minute(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60 * 60)
}

impl History {
    /// A history sampled by a task of the current tokio runtime (none outside one) for as
    /// long as the history is in use.
    pub(crate) fn start(engine: Arc<Engine>, upstreams: Arc<Upstreams>) -> Arc<Self> {
        let history = Arc::new(Self::default());
        history.record(
            unix_minute(SystemTime::now()),
            Totals::now(&engine, &upstreams),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<Self> = Arc::downgrade(&history);
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let Some(history) = weak.upgrade() else {
                        return;
                    };
                    let minute = unix_minute(SystemTime::now());
                    if history.last_minute() != Some(minute) {
                        history.record(minute, Totals::now(&engine, &upstreams));
                    }
                }
            });
        }
        history
    }

    fn last_minute(&self) -> Option<u64> {
        self.samples.lock().back().map(|(m, _)| *m)
    }

    /// Records the counters at the start of `minute`.
    pub(crate) fn record(&self, minute: u64, totals: Totals) {
        let mut samples = self.samples.lock();
        samples.push_back((minute, totals));
        while samples.len() > MINUTES + 1 {
            samples.pop_front();
        }
    }

    /// Each minute since the first sample (at most the last hour), the running one last,
    /// ending at `now`.
    pub(crate) fn minutes(&self, now: Totals) -> Vec<Minute> {
        let samples = self.samples.lock();
        let mut out = Vec::with_capacity(samples.len());
        for (i, (start, totals)) in samples.iter().enumerate() {
            let end = samples.get(i + 1).map_or(&now, |(_, t)| t);
            let mut m = end.since(totals);
            m.start = *start;
            out.push(m);
        }
        let skip = out.len().saturating_sub(MINUTES);
        out.split_off(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(hits: u64, misses: u64, requests: u64, latency: f64) -> Totals {
        Totals {
            hits,
            misses,
            bytes_from_cache: hits * 10,
            bytes_from_upstream: misses * 100,
            upstream_requests: requests,
            upstream_errors: 0,
            upstream_latency_secs: latency,
        }
    }

    #[test]
    fn each_minute_is_the_change_within_it_and_an_hour_is_kept() {
        let h = History::default();
        h.record(0, totals(0, 0, 0, 0.0));
        h.record(60, totals(9, 1, 1, 0.5));
        let m = h.minutes(totals(9, 3, 3, 0.7));
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].start, m[0].from_cache, m[0].from_upstream), (0, 9, 1));
        assert_eq!(m[0].hit_ratio, Some(0.9));
        assert_eq!(m[0].bytes_from_upstream, 100);
        assert_eq!(m[0].upstream_latency_ms, Some(500.0));
        assert_eq!(
            (m[1].start, m[1].from_cache, m[1].from_upstream),
            (60, 0, 2)
        );
        assert!((m[1].upstream_latency_ms.unwrap() - 100.0).abs() < 1e-6);
        for minute in 2..100 {
            h.record(minute * 60, totals(9, 3, 3, 0.7));
        }
        let m = h.minutes(totals(9, 3, 3, 0.7));
        assert_eq!(m.len(), MINUTES);
        assert_eq!(m.last().unwrap().hit_ratio, None);
    }
}
