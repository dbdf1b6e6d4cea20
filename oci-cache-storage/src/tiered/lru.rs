//! Which blobs the local tier holds, their sizes and their order of use: least recently
//! used first out when the tier is over its capacity.

use std::collections::{BTreeMap, HashMap};

use crate::Digest;

/// The local tier's index. Not thread-safe by itself: the tier keeps it behind a lock.
#[derive(Debug, Default)]
pub(crate) struct Lru {
    entries: HashMap<Digest, (u64, u64)>,
    order: BTreeMap<u64, Digest>,
    tick: u64,
    total: u64,
}

impl Lru {
    /// Records a blob now held (or used again) as the most recently used.
    pub(crate) fn used(&mut self, digest: &Digest, size: u64) {
        self.forget(digest);
        self.tick += 1;
        self.entries.insert(digest.clone(), (size, self.tick));
        self.order.insert(self.tick, digest.clone());
        self.total += size;
    }

    /// Marks a held blob as the most recently used; `false` when it is not held.
    pub(crate) fn touch(&mut self, digest: &Digest) -> bool {
        match self.entries.get(digest).map(|(size, _)| *size) {
            Some(size) => {
                self.used(digest, size);
                true
            }
            None => false,
        }
    }

    /// Drops a blob from the index.
    pub(crate) fn forget(&mut self, digest: &Digest) {
        if let Some((size, tick)) = self.entries.remove(digest) {
            self.order.remove(&tick);
            self.total -= size;
        }
    }

    /// Bytes held.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Blobs held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The least recently used blob.
    pub(crate) fn oldest(&self) -> Option<Digest> {
        self.order.first_key_value().map(|(_, d)| d.clone())
    }

    /// Removes the least recently used blobs until at most `target` bytes are held, and
    /// returns them (for deletion from the disk).
    pub(crate) fn shrink_to(&mut self, target: u64) -> Vec<Digest> {
        let mut out = Vec::new();
        while self.total > target {
            let Some((_, digest)) = self.order.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&digest) {
                self.total -= size;
            }
            out.push(digest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn the_least_recently_used_go_first_and_totals_follow() {
        let mut lru = Lru::default();
        lru.used(&d(1), 10);
        lru.used(&d(2), 20);
        lru.used(&d(3), 30);
        assert!(lru.touch(&d(1)));
        assert!(!lru.touch(&d(9)));
        assert_eq!(lru.total(), 60);
        assert_eq!(lru.shrink_to(35), vec![d(2), d(3)]);
        assert_eq!(lru.total(), 10);
        lru.used(&d(1), 10);
        assert_eq!(
            lru.total(),
            10,
            "recording a held blob again does not count it twice"
        );
        lru.forget(&d(1));
        assert_eq!((lru.total(), lru.shrink_to(0)), (0, vec![]));
    }
}
