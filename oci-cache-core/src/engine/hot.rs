//! A small in-memory cache of hot manifests (by digest) and tag records, in front of the
//! stores, so a cached manifest request costs no storage read. Bounded; the oldest entries
//! leave first.

use std::collections::BTreeSet;
use std::sync::Mutex;

use oci_cache_storage::{TagKey, TagRecord};

use super::bounded::Bounded;
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

/// Tags held per repository, at most this many in one repository.
const KNOWN_TAGS_PER_REPO: usize = 1_000;
/// Tags held, in all repositories together, at most.
const KNOWN_TAGS: usize = 100_000;

/// The tags the cache holds (pulled through it) per (upstream, repository), for a tag list
/// the upstream cannot give. In memory, bounded; the oldest repositories leave first.
#[derive(Debug)]
pub(crate) struct KnownTags(Mutex<Bounded<(String, String), BTreeSet<String>>>);

impl Default for KnownTags {
    fn default() -> Self {
        Self(Mutex::new(Bounded::new(KNOWN_TAGS)))
    }
}

impl KnownTags {
    /// Adds (`present`) or removes `key`'s tag.
    pub(crate) fn note(&self, key: &TagKey, present: bool) {
        let Ok(mut k) = self.0.lock() else {
            return;
        };
        let repo = (key.namespace.clone(), key.repository.clone());
        let mut tags = k.get(&repo).cloned().unwrap_or_default();
        let changed = if present {
            tags.len() < KNOWN_TAGS_PER_REPO && tags.insert(key.tag.clone())
        } else {
            tags.remove(&key.tag)
        };
        if changed {
            let cost = tags.len().max(1);
            k.insert(repo, tags, cost);
        }
    }

    /// The tags held for (`upstream`, `repo`).
    pub(crate) fn of(&self, upstream: &str, repo: &str) -> BTreeSet<String> {
        self.0
            .lock()
            .ok()
            .and_then(|k| k.get(&(upstream.to_owned(), repo.to_owned())).cloned())
            .unwrap_or_default()
    }
}
