//! A small in-memory cache of hot manifests (by digest) and tag records, in front of the
//! stores, so a cached manifest request costs no storage read. Bounded; the oldest entries
//! leave first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use oci_cache_storage::{TagKey, TagRecord};

use crate::manifest::Manifest;
use crate::Digest;

/// Bytes of manifests kept.
const MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Tag records kept.
const TAG_RECORDS: usize = 4096;

/// The hot manifests and tag records.
#[derive(Debug)]
pub(crate) struct Hot {
    manifests: Mutex<Bounded<Digest, Manifest>>,
    tags: Mutex<Bounded<TagKey, TagRecord>>,
}

impl Default for Hot {
    fn default() -> Self {
        Self {
            manifests: Mutex::new(Bounded::new(MANIFEST_BYTES)),
            tags: Mutex::new(Bounded::new(TAG_RECORDS)),
        }
    }
}

impl Hot {
    /// The manifest with this digest, if hot.
    pub(crate) fn manifest(&self, digest: &Digest) -> Option<Manifest> {
        self.manifests.lock().ok()?.get(digest).cloned()
    }

    /// Keeps a manifest read from (or written to) storage.
    pub(crate) fn keep_manifest(&self, manifest: &Manifest) {
        if let Ok(mut m) = self.manifests.lock() {
            let cost = manifest.bytes.len() + manifest.media_type.len();
            m.insert(manifest.digest.clone(), manifest.clone(), cost);
        }
    }

    /// Forgets a manifest (its blob was removed from storage).
    pub(crate) fn forget_manifest(&self, digest: &Digest) {
        if let Ok(mut m) = self.manifests.lock() {
            m.remove(digest);
        }
    }

    /// The tag record, if hot.
    pub(crate) fn tag(&self, key: &TagKey) -> Option<TagRecord> {
        self.tags.lock().ok()?.get(key).cloned()
    }

    /// Keeps a tag record as just read from or written to the tag store.
    pub(crate) fn keep_tag(&self, key: &TagKey, record: &TagRecord) {
        if let Ok(mut t) = self.tags.lock() {
            t.insert(key.clone(), record.clone(), 1);
        }
    }

    /// Forgets a tag record (deleted from the tag store).
    pub(crate) fn forget_tag(&self, key: &TagKey) {
        if let Ok(mut t) = self.tags.lock() {
            t.remove(key);
        }
    }
}

/// A map holding at most `budget` units of cost, dropping the oldest insertions first.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, (V, usize)>,
    order: VecDeque<K>,
    cost: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cost: 0,
            budget,
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    fn insert(&mut self, key: K, value: V, cost: usize) {
        if cost > self.budget {
            return;
        }
        match self.map.insert(key.clone(), (value, cost)) {
            Some((_, old)) => self.cost -= old,
            None => self.order.push_back(key),
        }
        self.cost += cost;
        while self.cost > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, c)) = self.map.remove(&oldest) {
                self.cost -= c;
            }
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, c)) = self.map.remove(key) {
            self.cost -= c;
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    #[test]
    fn drops_oldest_past_budget_and_counts_replacements_once() {
        let mut b = Bounded::new(10);
        b.insert("a", 1, 4);
        b.insert("b", 2, 4);
        b.insert("a", 3, 4); // replaces a: cost stays 8
        assert_eq!(b.get(&"a"), Some(&3));
        b.insert("c", 4, 4); // 12 > 10: the oldest insertion (a) goes
        assert_eq!(b.get(&"a"), None);
        assert_eq!(b.get(&"b"), Some(&2));
        assert_eq!(b.get(&"c"), Some(&4));
        b.insert("huge", 5, 11); // larger than the budget: not kept
        assert_eq!(b.get(&"huge"), None);
        b.remove(&"b");
        assert_eq!(b.get(&"b"), None);
        assert_eq!(b.cost, 4);
    }
}
