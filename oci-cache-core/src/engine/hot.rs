//! A small in-memory cache of hot manifests (by digest) and tag records, in front of the
//! stores, so a cached manifest request costs no storage read. Bounded; the oldest entries
//! leave first.

use parking_lot::Mutex;

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
        self.manifests.lock().get(digest).cloned()
    }

    /// Keeps a manifest read from (or written to) storage.
    pub(crate) fn keep_manifest(&self, manifest: &Manifest) {
        let mut m = self.manifests.lock();
        let cost = manifest.bytes.len() + manifest.media_type.len();
        m.insert(manifest.digest.clone(), manifest.clone(), cost);
    }

    /// Forgets a manifest (its blob was removed from storage).
    pub(crate) fn forget_manifest(&self, digest: &Digest) {
        let mut m = self.manifests.lock();
        m.remove(digest);
    }

    /// The tag record, if hot.
    pub(crate) fn tag(&self, key: &TagKey) -> Option<TagRecord> {
        self.tags.lock().get(key).cloned()
    }

    /// Keeps a tag record as just read from or written to the tag store.
    pub(crate) fn keep_tag(&self, key: &TagKey, record: &TagRecord) {
        let mut t = self.tags.lock();
        t.insert(key.clone(), record.clone(), 1);
    }

    /// Forgets a tag record (deleted from the tag store).
    pub(crate) fn forget_tag(&self, key: &TagKey) {
        let mut t = self.tags.lock();
        t.remove(key);
    }
}
