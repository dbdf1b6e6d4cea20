//! Counters of what the engine did, read by the server's metrics.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Images counted for "most pulled" at most; a new one then replaces the least pulled, so
/// the table follows what is pulled now and nobody can freeze it by filling it first.
const MAX_COUNTED_IMAGES: usize = 10_000;

/// Live counters; cheap to update from any task.
#[derive(Debug, Default)]
pub(crate) struct EngineStats {
    pub(crate) blob_hits: AtomicU64,
    pub(crate) blob_misses: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) manifest_hits: AtomicU64,
    pub(crate) manifest_misses: AtomicU64,
    pub(crate) tag_list_hits: AtomicU64,
    pub(crate) tag_list_misses: AtomicU64,
    pub(crate) tag_list_stale: AtomicU64,
    pub(crate) bytes_from_cache: AtomicU64,
    pub(crate) bytes_from_upstream: AtomicU64,
    pub(crate) pass_through_bytes: AtomicU64,
    pub(crate) fills_failed: AtomicU64,
    pub(crate) fills_over_limit: AtomicU64,
    pub(crate) eviction_failures: AtomicU64,
    pub(crate) evicted_blobs: AtomicU64,
    pub(crate) evicted_bytes: AtomicU64,
    pub(crate) stored_bytes: AtomicU64,
    pub(crate) stored_objects: AtomicU64,
    /// Pulls by (upstream, `repository:tag`).
    pulls: Mutex<HashMap<(String, String), u64>>,
}

impl EngineStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Ordering::Relaxed);
    }

    /// Counts a pull of `image` (`repository:tag`) from `upstream`.
    pub(crate) fn pulled(&self, upstream: &str, image: String) {
        let mut p = self.pulls.lock();
        let key = (upstream.to_owned(), image);
        if p.len() >= MAX_COUNTED_IMAGES && !p.contains_key(&key) {
            let least = p.iter().min_by_key(|(_, n)| **n).map(|(k, _)| k.clone());
            if let Some(least) = least {
                p.remove(&least);
            }
        }
        *p.entry(key).or_default() += 1;
    }

    /// The `n` most pulled images (`upstream/repository:tag`) of the upstreams `visible`
    /// accepts, most first.
    pub(crate) fn most_pulled(
        &self,
        n: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .pulls
            .lock()
            .iter()
            .filter(|((upstream, _), _)| visible(upstream))
            .map(|((upstream, image), v)| (format!("{upstream}/{image}"), *v))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// A copy of the engine's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Blob requests answered from storage.
    pub blob_hits: u64,
    /// Blob requests that needed a fill (started or joined).
    pub blob_misses: u64,
    /// Blob misses that joined a fill already running (no upstream request of their own).
    pub coalesced: u64,
    /// Manifest requests answered without asking the upstream.
    pub manifest_hits: u64,
    /// Manifest requests that asked the upstream.
    pub manifest_misses: u64,
    /// Tag list requests answered without asking the upstream.
    pub tag_list_hits: u64,
    /// Tag list requests that asked the upstream.
    pub tag_list_misses: u64,
    /// Tag lists served stale (the upstream down or limiting us) or built from the tags
    /// the cache holds.
    pub tag_list_stale: u64,
    /// Blob bytes sent to clients from storage.
    pub bytes_from_cache: u64,
    /// Blob bytes downloaded from upstreams by fills.
    pub bytes_from_upstream: u64,
    /// Filled bytes that storage did not take (served, not stored).
    pub pass_through_bytes: u64,
    /// Fills that failed (upstream error, wrong digest, short body...).
    pub fills_failed: u64,
    /// Fills served without being stored: no room under the storage limit after eviction.
    pub fills_over_limit: u64,
    /// Eviction passes that failed (storage unreadable, a delete refused).
    pub eviction_failures: u64,
    /// Fills running now.
    pub fills_in_flight: u64,
    /// Blobs evicted so far.
    pub evicted_blobs: u64,
    /// Bytes evicted so far.
    pub evicted_bytes: u64,
    /// Bytes stored: the last eviction pass's listing, plus what this process stored
    /// since, minus what it evicted.
    pub stored_bytes: u64,
    /// Blobs stored, counted alike.
    pub stored_objects: u64,
    /// The storage limit (`GcPolicy::max_bytes`) the eviction loop holds, if any.
    pub limit_bytes: Option<u64>,
    /// Above this, a download starts an eviction pass (the limit's high watermark).
    pub high_watermark_bytes: Option<u64>,
}

impl EngineStats {
    pub(crate) fn snapshot(&self, fills_in_flight: usize) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            blob_hits: get(&self.blob_hits),
            blob_misses: get(&self.blob_misses),
            coalesced: get(&self.coalesced),
            manifest_hits: get(&self.manifest_hits),
            manifest_misses: get(&self.manifest_misses),
            tag_list_hits: get(&self.tag_list_hits),
            tag_list_misses: get(&self.tag_list_misses),
            tag_list_stale: get(&self.tag_list_stale),
            bytes_from_cache: get(&self.bytes_from_cache),
            bytes_from_upstream: get(&self.bytes_from_upstream),
            pass_through_bytes: get(&self.pass_through_bytes),
            fills_failed: get(&self.fills_failed),
            fills_over_limit: get(&self.fills_over_limit),
            eviction_failures: get(&self.eviction_failures),
            fills_in_flight: fills_in_flight as u64,
            evicted_blobs: get(&self.evicted_blobs),
            evicted_bytes: get(&self.evicted_bytes),
            stored_bytes: get(&self.stored_bytes),
            stored_objects: get(&self.stored_objects),
            limit_bytes: None,
            high_watermark_bytes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_replaces_the_least_pulled_image() {
        let stats = EngineStats::default();
        for _ in 0..3 {
            stats.pulled("docker.io", "hot:1".to_owned());
        }
        for i in 0..MAX_COUNTED_IMAGES {
            stats.pulled("docker.io", format!("junk:{i}"));
        }
        stats.pulled("docker.io", "new:1".to_owned());
        stats.pulled("docker.io", "new:1".to_owned());
        let top = stats.most_pulled(2, |_| true);
        assert_eq!(
            top,
            [
                ("docker.io/hot:1".to_owned(), 3),
                ("docker.io/new:1".to_owned(), 2)
            ]
        );
        assert!(stats.pulls.lock().len() <= MAX_COUNTED_IMAGES);
    }
}
