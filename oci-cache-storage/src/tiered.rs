//! A local tier in front of shared storage: each replica keeps the blobs it used recently
//! on its own disk (bounded, least recently used out first, verified when written) and reads
//! them there first, so a hot blob costs the shared store (S3) no request at all.
//!
//! - Blobs: a read is served from the local disk when held there; otherwise from the shared
//!   store, copied to the local disk as it streams (whole-blob reads only). Writes go to both
//!   (the shared store decides the outcome). Deletes remove both. Listings, and the last
//!   access an eviction looks at, are the shared store's: the fleet's view.
//! - Tag records (tags, and the engine's link records) are read locally first too. A link
//!   record never changes once written, so a local copy is used for good; a tag's local copy
//!   is used for [`TAG_LOCAL_FOR`] after it was read from or written to the shared store
//!   (another replica may have refreshed the tag since), then read again from there. When
//!   the shared store cannot be read, the local copy answers.
//!
//! The local tier is a cache of a cache: losing it (a new pod, an `emptyDir` wiped) loses
//! nothing; its blobs are read again from the shared store.

mod lru;
mod tee;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::fs::FsStore;
use crate::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage, ResolvedRange,
    StorageError, TagKey, TagRecord, TagStore,
};
use lru::Lru;

/// How long a tag's local copy is used before it is read from the shared store again.
pub const TAG_LOCAL_FOR: Duration = Duration::from_secs(10);

/// Tags whose last read from the shared store is remembered, at most.
const TAG_SYNCS: usize = 50_000;

/// The local disk and what it holds.
pub(crate) struct Local {
    store: FsStore,
    capacity: u64,
    lru: Mutex<Lru>,
    copying: Mutex<HashSet<Digest>>,
    /// Bytes read from the shared store and not yet written to the local disk, all copies
    /// together (bounded: see `tee.rs`).
    lag: Arc<std::sync::atomic::AtomicU64>,
}

impl Local {
    /// Records a verified local copy, and makes room when the tier is over its capacity.
    fn held(&self, digest: &Digest, size: u64) {
        let out = {
            let mut lru = self.lru.lock();
            lru.used(digest, size);
            if lru.total() > self.capacity {
                lru.shrink_to(self.capacity / 10 * 9)
            } else {
                Vec::new()
            }
        };
        if out.is_empty() {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            // A reader of a deleted file keeps reading it: the tier never cuts a reader.
            for digest in out {
                if let Err(e) = BlobStore::delete(&store, &digest).await {
                    tracing::warn!(%digest, error = %e, "local tier: could not remove");
                }
            }
        });
    }

    /// A copy of `digest` into the tier ended (kept or not).
    fn copy_ended(&self, digest: &Digest) {
        self.copying.lock().remove(digest);
    }

    /// Whether a blob of `size` bytes is worth a place (at most a quarter of the tier, so
    /// one large blob does not push out everything else).
    fn fits(&self, size: Option<u64>) -> bool {
        size.is_none_or(|s| s <= self.capacity / 4)
    }
}

/// Shared blob and tag stores with a bounded local tier in front. See the module docs.
#[derive(Clone)]
pub struct TieredStore {
    blobs: Arc<dyn BlobStore>,
    tags: Arc<dyn TagStore>,
    local: Arc<Local>,
    synced: Arc<Mutex<HashMap<TagKey, Instant>>>,
}

impl std::fmt::Debug for TieredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("local", &self.local.store.root())
            .field("capacity", &self.local.capacity)
            .finish_non_exhaustive()
    }
}

impl TieredStore {
    /// The shared `blobs` and `tags` with a local tier of at most `capacity` bytes of blobs
    /// in `dir` (created if missing; what it already holds is kept, oldest out first when
    /// over the capacity).
    pub async fn open(
        blobs: Arc<dyn BlobStore>,
        tags: Arc<dyn TagStore>,
        dir: &Path,
        capacity: u64,
    ) -> Result<Self, StorageError> {
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
            lru.used(&b.digest, b.size);
        }
        let local = Arc::new(Local {
            store,
            capacity,
            lru: Mutex::new(lru),
            copying: Mutex::default(),
            lag: Arc::default(),
        });
        let over = local.lru.lock().shrink_to(capacity);
        for digest in over {
            BlobStore::delete(&local.store, &digest).await?;
        }
        Ok(Self {
            blobs,
            tags,
            local,
            synced: Arc::default(),
        })
    }

    /// Bytes of blobs the local tier holds now.
    pub fn local_bytes(&self) -> u64 {
        self.local.lru.lock().total()
    }

    /// Whether the local tier holds `digest` now.
    pub fn holds_locally(&self, digest: &Digest) -> bool {
        self.local.lru.lock().touch(digest)
    }

    /// The tag record's local copy, when it may be used without asking the shared store.
    async fn local_tag(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        let immutable = key.tag.starts_with('@') || key.repository == "@";
        let fresh = immutable
            || self
                .synced
                .lock()
                .get(key)
                .is_some_and(|at| at.elapsed() < TAG_LOCAL_FOR);
        if !fresh {
            return Ok(None);
        }
        TagStore::get(&self.local.store, key).await
    }

    /// Notes how copying the shared record for `key` to the local tier went: a local copy
    /// that failed is not used (nor is a link record's, which is removed).
    fn copied(&self, key: &TagKey, result: Result<(), StorageError>) {
        match result {
            Ok(()) => self.synced_now(key),
            Err(e) => {
                self.synced.lock().remove(key);
                tracing::warn!(error = %e, "local tier: tag record not copied");
                let (store, key) = (self.local.store.clone(), key.clone());
                tokio::spawn(async move {
                    let _ = TagStore::delete(&store, &key).await;
                });
            }
        }
    }

    fn synced_now(&self, key: &TagKey) {
        let mut synced = self.synced.lock();
        if synced.len() >= TAG_SYNCS {
            synced.retain(|_, at| at.elapsed() < TAG_LOCAL_FOR);
            if synced.len() >= TAG_SYNCS {
                synced.clear();
            }
        }
        synced.insert(key.clone(), Instant::now());
    }
}

#[async_trait]
impl BlobStore for TieredStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        if self.local.lru.lock().touch(digest) {
            if let Some(meta) = BlobStore::head(&self.local.store, digest).await? {
                return Ok(Some(meta));
            }
            self.local.lru.lock().forget(digest);
        }
        self.blobs.head(digest).await
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        if self.local.lru.lock().touch(digest) {
            match BlobStore::get(&self.local.store, digest, range).await {
                Err(StorageError::NotFound { .. }) => self.local.lru.lock().forget(digest),
                other => return other,
            }
        }
        let (meta, resolved, stream) = self.blobs.get(digest, range).await?;
        let whole = resolved.start == 0 && resolved.end == meta.size;
        if !whole || !self.local.fits(Some(meta.size)) {
            return Ok((meta, resolved, stream));
        }
        if !self.local.copying.lock().insert(digest.clone()) {
            return Ok((meta, resolved, stream));
        }
        let writer = match BlobStore::writer(&self.local.store, digest, Some(meta.size)).await {
            Ok(w) => w,
            Err(e) => {
                self.local.copy_ended(digest);
                tracing::warn!(%digest, error = %e, "local tier: cannot write");
                return Ok((meta, resolved, stream));
            }
        };
        let size = meta.size;
        let stream = tee::copy_while_reading(
            stream,
            writer,
            Arc::clone(&self.local),
            digest.clone(),
            size,
        );
        Ok((meta, resolved, stream))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        let remote = self.blobs.writer(digest, expected_size).await?;
        let local = if self.local.fits(expected_size) {
            BlobStore::writer(&self.local.store, digest, expected_size)
                .await
                .ok()
        } else {
            None
        };
        Ok(Box::new(tee::TeeWriter {
            remote,
            local,
            tier: Arc::clone(&self.local),
            digest: digest.clone(),
            written: 0,
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.local.lru.lock().forget(digest);
        self.blobs.delete(digest).await?;
        BlobStore::delete(&self.local.store, digest).await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        self.blobs.list(after, limit).await
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        if self.local.lru.lock().touch(digest) {
            let _ = BlobStore::touch(&self.local.store, digest).await;
        }
        self.blobs.touch(digest).await
    }

    async fn last_access(&self, digest: &Digest) -> Result<Option<SystemTime>, StorageError> {
        self.blobs.last_access(digest).await
    }

    async fn open_file(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<(BlobMeta, ResolvedRange, std::fs::File)>, StorageError> {
        if !self.local.lru.lock().touch(digest) {
            return Ok(None);
        }
        match BlobStore::open_file(&self.local.store, digest, range).await {
            Err(StorageError::NotFound { .. }) => {
                self.local.lru.lock().forget(digest);
                Ok(None)
            }
            other => other,
        }
    }
}

#[async_trait]
impl TagStore for TieredStore {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        if let Some(record) = self.local_tag(key).await? {
            return Ok(Some(record));
        }
        match self.tags.get(key).await {
            Ok(found) => {
                let copied = match &found {
                    Some(record) => TagStore::put(&self.local.store, key, record).await,
                    None => TagStore::delete(&self.local.store, key).await,
                };
                self.copied(key, copied);
                Ok(found)
            }
            Err(e) => match TagStore::get(&self.local.store, key).await {
                Ok(Some(record)) => {
                    tracing::warn!(error = %e, "shared tag store unreadable; answering from the local tier");
                    Ok(Some(record))
                }
                _ => Err(e),
            },
        }
    }

    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        self.tags.put(key, record).await?;
        let copied = TagStore::put(&self.local.store, key, record).await;
        self.copied(key, copied);
        Ok(())
    }

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        self.tags.delete(key).await?;
        let copied = TagStore::delete(&self.local.store, key).await;
        self.copied(key, copied);
        Ok(())
    }

    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        self.tags.tags(namespace, repository).await
    }
}
