//! The local disk of the tier: an [`FsStore`] and what it holds (an LRU index charged by
//! disk blocks), the copies into it that are running (their bytes reserved before they
//! start), and deletions that must win over a copy still running.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;

use super::lru::Lru;
use crate::fs::FsStore;
use crate::{BlobStore, Digest, StorageError};

/// Blobs the index holds at most (each costs a few hundred bytes of memory).
const MAX_ENTRIES: usize = 200_000;

/// What a blob of `size` bytes takes on disk, about: whole 4 KiB blocks, at least one.
fn charge(size: u64) -> u64 {
    size.div_ceil(4096).max(1) * 4096
}

/// Copies running into the tier.
#[derive(Debug, Default)]
struct Copies {
    running: HashMap<Digest, u64>,
    bytes: u64,
    /// Deleted while their copy ran: the copy must not stay.
    cancelled: HashSet<Digest>,
}

/// The local disk and what it holds.
pub(crate) struct Local {
    pub(super) store: FsStore,
    pub(super) capacity: u64,
    lru: Mutex<Lru>,
    copies: Mutex<Copies>,
    /// Bytes read from the shared store and not yet written to the local disk, all copies
    /// together (bounded: see `tee.rs`).
    pub(super) lag: Arc<AtomicU64>,
}

impl Local {
    /// The tier in `dir` (created if missing): what it holds is kept, oldest out first when
    /// over `capacity`.
    pub(super) async fn open(dir: &Path, capacity: u64) -> Result<Self, StorageError> {
        let store = FsStore::open(dir).await?;
        let mut held = Vec::new();
        let mut after = None;
        loop {
            let page = BlobStore::list(&store, after.as_ref(), 1000).await?;
            held.extend(page.blobs);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        held.sort_by_key(|b| b.last_access);
        let mut lru = Lru::default();
        for b in &held {
            lru.used(&b.digest, charge(b.size));
        }
        let mut over = lru.shrink_to(capacity);
        while lru.len() > MAX_ENTRIES {
            let Some(oldest) = lru.oldest() else { break };
            lru.forget(&oldest);
            over.push(oldest);
        }
        for digest in over {
            BlobStore::delete(&store, &digest).await?;
        }
        Ok(Self {
            store,
            capacity,
            lru: Mutex::new(lru),
            copies: Mutex::default(),
            lag: Arc::default(),
        })
    }

    /// Whether the tier holds `digest` (and marks it used).
    pub(super) fn holds(&self, digest: &Digest) -> bool {
        self.lru.lock().touch(digest)
    }

    /// Drops `digest` from the index (its file is gone or unreadable).
    pub(super) fn forget(&self, digest: &Digest) {
        self.lru.lock().forget(digest);
    }

    /// Disk charged to the blobs held.
    pub(super) fn bytes(&self) -> u64 {
        self.lru.lock().total()
    }

    /// Starts a copy of `digest` (`size` bytes): `false` when one already runs, or when it
    /// is larger than a quarter of the tier (one large blob must not push out all else).
    /// Room for it is made first, and stays reserved until [`Local::end_copy`].
    pub(super) fn begin_copy(self: &Arc<Self>, digest: &Digest, size: u64) -> bool {
        let size = charge(size);
        if size > self.capacity / 4 {
            return false;
        }
        let reserved = {
            let mut copies = self.copies.lock();
            if copies.running.contains_key(digest) {
                return false;
            }
            copies.running.insert(digest.clone(), size);
            copies.bytes += size;
            copies.bytes
        };
        self.make_room(reserved);
        true
    }

    /// A copy begun with [`Local::begin_copy`] ended; `kept` when its blob was committed.
    pub(super) fn end_copy(self: &Arc<Self>, digest: &Digest, kept: bool) {
        let (size, cancelled) = {
            let mut copies = self.copies.lock();
            let size = copies.running.remove(digest).unwrap_or(0);
            copies.bytes = copies.bytes.saturating_sub(size);
            (size, copies.cancelled.remove(digest))
        };
        if !kept {
            return;
        }
        if cancelled {
            self.remove_later(vec![digest.clone()]);
            return;
        }
        self.lru.lock().used(digest, size);
        let reserved = self.copies.lock().bytes;
        self.make_room(reserved);
    }

    /// Removes `digest` from the disk (and from any copy running).
    pub(super) async fn remove(&self, digest: &Digest) {
        {
            let mut copies = self.copies.lock();
            if copies.running.contains_key(digest) {
                copies.cancelled.insert(digest.clone());
            }
        }
        if let Err(e) = BlobStore::delete(&self.store, digest).await {
            tracing::warn!(%digest, error = %e, "local tier: could not remove");
        }
        self.forget(digest);
    }

    /// Evicts the least recently used blobs until they and `reserved` bytes fit (with a
    /// tenth of the tier to spare) and the index is within [`MAX_ENTRIES`].
    fn make_room(&self, reserved: u64) {
        let out = {
            let mut lru = self.lru.lock();
            let mut out = Vec::new();
            if lru.total() + reserved > self.capacity {
                let target = (self.capacity / 10 * 9).saturating_sub(reserved);
                out = lru.shrink_to(target);
            }
            while lru.len() > MAX_ENTRIES {
                let Some(oldest) = lru.oldest() else { break };
                lru.forget(&oldest);
                out.push(oldest);
            }
            out
        };
        self.remove_later(out);
    }

    /// Deletes files in the background. A reader of a deleted file keeps reading it: the
    /// tier never cuts a reader.
    fn remove_later(&self, digests: Vec<Digest>) {
        if digests.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            for digest in digests {
                if let Err(e) = BlobStore::delete(&store, &digest).await {
                    tracing::warn!(%digest, error = %e, "local tier: could not remove");
                }
            }
        });
    }
}

/// Ends its copy (not kept) when dropped before [`CopyGuard::kept`].
pub(crate) struct CopyGuard {
    pub(super) local: Arc<Local>,
    pub(super) digest: Digest,
    pub(super) ended: bool,
}

impl CopyGuard {
    /// The copy was committed.
    pub(crate) fn kept(mut self) {
        self.ended = true;
        self.local.end_copy(&self.digest, true);
    }
}

impl Drop for CopyGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.local.end_copy(&self.digest, false);
        }
    }
}
