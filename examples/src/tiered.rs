//! An embedder's own storage backend, plugged into the engine through the storage traits:
//! a two-tier store. Every blob lives on disk (an [`FsStore`]); small ones (manifests,
//! image configs: what every pull reads first) are also kept in memory, up to a budget, so
//! they are served without touching the disk. It passes the same conformance suite as the
//! built-in backends (`tests/tiered.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt, TryStreamExt};
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::memory::MemoryStore;
use oci_cache_storage::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage, ResolvedRange,
    StorageError, TagKey, TagRecord, TagStore,
};

/// Blobs up to this size are copied into memory when read.
pub const HOT_MAX_BLOB: u64 = 256 * 1024;

/// A filesystem store with a bounded memory tier for small blobs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TieredStore {
    hot: MemoryStore,
    cold: FsStore,
    budget: u64,
    order: Arc<Mutex<HotOrder>>,
}

/// Digests in the memory tier with their sizes, oldest first, and their total size.
type HotOrder = (VecDeque<(Digest, u64)>, u64);

impl TieredStore {
    /// A store on `cold` keeping at most `budget` bytes of small blobs in memory.
    pub fn new(cold: FsStore, budget: u64) -> Self {
        Self {
            hot: MemoryStore::new(),
            cold,
            budget,
            order: Arc::default(),
        }
    }

    /// Copies a small blob into the memory tier, dropping the oldest ones past the budget.
    async fn promote(&self, digest: &Digest, bytes: Bytes) {
        let size = bytes.len() as u64;
        let stored = match self.hot.writer(digest, Some(size)).await {
            Ok(mut w) => match w.write(bytes).await {
                Ok(()) => w.commit().await.is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if !stored {
            return;
        }
        let evicted: Vec<Digest> = match self.order.lock() {
            Ok(mut order) => {
                order.0.push_back((digest.clone(), size));
                order.1 += size;
                let mut evicted = Vec::new();
                while order.1 > self.budget {
                    let Some((old, old_size)) = order.0.pop_front() else {
                        break;
                    };
                    order.1 -= old_size;
                    evicted.push(old);
                }
                evicted
            }
            Err(_) => Vec::new(),
        };
        for old in evicted {
            let _ = BlobStore::delete(&self.hot, &old).await;
        }
    }
}

#[async_trait]
impl BlobStore for TieredStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        self.cold.head(digest).await
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        match BlobStore::get(&self.hot, digest, range).await {
            Err(StorageError::NotFound { .. }) => {}
            hit => return hit,
        }
        let (meta, resolved, body) = BlobStore::get(&self.cold, digest, range).await?;
        if range.is_some() || meta.size > HOT_MAX_BLOB {
            return Ok((meta, resolved, body));
        }
        // Small and read whole: read it once, keep a copy in memory, hand out the bytes.
        let bytes = body.try_collect::<BytesMut>().await?.freeze();
        self.promote(digest, bytes.clone()).await;
        Ok((meta, resolved, stream::once(async { Ok(bytes) }).boxed()))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        // New blobs go to disk; the fs writer's local file lets a fill serve its readers
        // from the file it writes.
        self.cold.writer(digest, expected_size).await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        BlobStore::delete(&self.hot, digest).await?;
        if let Ok(mut order) = self.order.lock() {
            if let Some(i) = order.0.iter().position(|(d, _)| d == digest) {
                if let Some((_, size)) = order.0.remove(i) {
                    order.1 -= size;
                }
            }
        }
        BlobStore::delete(&self.cold, digest).await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        self.cold.list(after, limit).await
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        self.cold.touch(digest).await
    }
}

#[async_trait]
impl TagStore for TieredStore {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        TagStore::get(&self.cold, key).await
    }

    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        self.cold.put(key, record).await
    }

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        TagStore::delete(&self.cold, key).await
    }

    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        self.cold.tags(namespace, repository).await
    }
}
