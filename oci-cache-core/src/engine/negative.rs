//! Upstream 404s for tags, remembered briefly so a burst of requests for a missing tag
//! costs one upstream request.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use oci_cache_storage::TagKey;

/// Tags the upstream said do not exist, until when.
#[derive(Debug, Default)]
pub(crate) struct NegativeCache {
    until: Mutex<HashMap<TagKey, Instant>>,
}

impl NegativeCache {
    /// True while `key` is known missing.
    pub(crate) fn contains(&self, key: &TagKey) -> bool {
        self.until
            .lock()
            .get(key)
            .copied()
            .is_some_and(|t| Instant::now() < t)
    }

    /// Remembers `key` as missing for `ttl` (nothing when `ttl` is zero).
    pub(crate) fn insert(&self, key: TagKey, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut m = self.until.lock();
        let now = Instant::now();
        m.retain(|_, t| *t > now);
        m.insert(key, now + ttl);
    }
}
