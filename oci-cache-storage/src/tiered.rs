//! A local tier in front of shared storage: each replica keeps the blobs it used recently
//! on its own disk (bounded, least recently used out first, verified when written) and reads
//! them there first, so a hot blob costs the shared store (S3) no request at all.
//!
//! - Blobs: a read is served from the local disk when held there; otherwise from the shared
//!   store, copied to the local disk as it streams (whole-blob reads only). Writes of a
//!   known size go to both (the shared store decides the outcome). Deletes remove both.
//!   Listings, and the last access an eviction looks at, are the shared store's: the
//!   fleet's view. Any local failure falls back to the shared store.
//! - Tag records are read locally first too (see `tags.rs`); the engine's own records (link,
//!   possession, tag-list and referrers records, named `@...`) go to the shared store only.
//!
//! The local tier is a cache of a cache: losing it (a new pod, an `emptyDir` wiped) loses
//! nothing; its blobs are read again from the shared store.

mod local;
mod lru;
mod tags;
mod tee;
mod upload;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage, ResolvedRange,
    StorageError, TagKey, TagStore,
};
use local::{CopyGuard, Local};
pub use tags::TAG_LOCAL_FOR;

/// Shared blob and tag stores with a bounded local tier in front. See the module docs.
#[derive(Clone)]
pub struct TieredStore {
    blobs: Arc<dyn BlobStore>,
    tags: Arc<dyn TagStore>,
    local: Arc<Local>,
    /// When each tag was last read from or written to the shared store.
    synced: Arc<Mutex<HashMap<TagKey, Instant>>>,
    /// Until when the shared tag store is taken as down (local copies answer).
    down_until: Arc<Mutex<Option<Instant>>>,
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
    /// (charged by disk blocks) in `dir` (created if missing; what it already holds is
    /// kept, oldest out first when over the capacity).
    pub async fn open(
        blobs: Arc<dyn BlobStore>,
        tags: Arc<dyn TagStore>,
        dir: &Path,
        capacity: u64,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            blobs,
            tags,
            local: Arc::new(Local::open(dir, capacity).await?),
            synced: Arc::default(),
            down_until: Arc::default(),
        })
    }

    /// Disk the local tier's blobs take now (whole 4 KiB blocks).
    pub fn local_bytes(&self) -> u64 {
        self.local.bytes()
    }

    /// Whether the local tier holds `digest` now.
    pub fn holds_locally(&self, digest: &Digest) -> bool {
        self.local.holds(digest)
    }

    /// Logs a local failure and drops the blob from the index: the shared store answers.
    fn local_failed(&self, digest: &Digest, e: &StorageError) {
        tracing::warn!(%digest, error = %e, "local tier: read failed; reading the shared store");
        self.local.forget(digest);
    }
}

#[async_trait]
impl BlobStore for TieredStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        if self.local.holds(digest) {
            match BlobStore::head(&self.local.store, digest).await {
                Ok(Some(meta)) => return Ok(Some(meta)),
                Ok(None) => self.local.forget(digest),
                Err(e) => self.local_failed(digest, &e),
            }
        }
        self.blobs.head(digest).await
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        if self.local.holds(digest) {
            match BlobStore::get(&self.local.store, digest, range).await {
                Ok(found) => return Ok(found),
                Err(StorageError::RangeNotSatisfiable { size }) => {
                    return Err(StorageError::RangeNotSatisfiable { size })
                }
                Err(StorageError::NotFound { .. }) => self.local.forget(digest),
                Err(e) => self.local_failed(digest, &e),
            }
        }
        let (meta, resolved, stream) = self.blobs.get(digest, range).await?;
        let whole = resolved.start == 0 && resolved.end == meta.size;
        if !whole || !self.local.begin_copy(digest, meta.size) {
            return Ok((meta, resolved, stream));
        }
        let guard = CopyGuard {
            local: Arc::clone(&self.local),
            digest: digest.clone(),
            ended: false,
        };
        let writer = match BlobStore::writer(&self.local.store, digest, Some(meta.size)).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "local tier: cannot write");
                return Ok((meta, resolved, stream));
            }
        };
        let size = meta.size;
        let stream = tee::copy_while_reading(stream, writer, guard, size);
        Ok((meta, resolved, stream))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        let remote = self.blobs.writer(digest, expected_size).await?;
        let mut local = None;
        if let Some(size) = expected_size {
            if self.local.begin_copy(digest, size) {
                let guard = CopyGuard {
                    local: Arc::clone(&self.local),
                    digest: digest.clone(),
                    ended: false,
                };
                local = BlobStore::writer(&self.local.store, digest, Some(size))
                    .await
                    .ok()
                    .map(|w| (w, guard));
            }
        }
        Ok(Box::new(tee::TeeWriter::new(remote, local)))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        let shared = self.blobs.delete(digest).await;
        self.local.remove(digest).await;
        shared
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        self.blobs.list(after, limit).await
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        if self.local.holds(digest) {
            if let Err(StorageError::NotFound { .. }) =
                BlobStore::touch(&self.local.store, digest).await
            {
                self.local.forget(digest);
            }
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
        if !self.local.holds(digest) {
            return Ok(None);
        }
        match BlobStore::open_file(&self.local.store, digest, range).await {
            Err(StorageError::RangeNotSatisfiable { size }) => {
                Err(StorageError::RangeNotSatisfiable { size })
            }
            Err(e) => {
                self.local_failed(digest, &e);
                Ok(None)
            }
            ok => ok,
        }
    }
}
