//! Memory backend: everything in process memory, lost on exit. For tests and small setups.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};

use crate::write_check::WriteCheck;
use crate::{
    resolve_request, BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, CommitOutcome, Digest,
    ListPage, ResolvedRange, StorageError, TagKey, TagRecord, TagStore,
};

/// Size of the chunks `get` streams.
const CHUNK: usize = 64 * 1024;

/// A [`BlobStore`] and [`TagStore`] kept in memory. Clones share the same contents.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    blobs: Mutex<BTreeMap<Digest, Entry>>,
    tags: Mutex<BTreeMap<TagKey, TagRecord>>,
}

#[derive(Debug, Clone)]
struct Entry {
    bytes: Bytes,
    last_access: SystemTime,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&self, digest: &Digest) -> Option<Entry> {
        self.inner.blobs.lock().get(digest).cloned()
    }
}

fn meta(digest: &Digest, entry: &Entry) -> BlobMeta {
    BlobMeta {
        digest: digest.clone(),
        size: entry.bytes.len() as u64,
        last_access: entry.last_access,
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        Ok(self.entry(digest).map(|e| meta(digest, &e)))
    }

    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        let entry = self.entry(digest).ok_or_else(|| StorageError::NotFound {
            digest: digest.clone(),
        })?;
        let blob_meta = meta(digest, &entry);
        let resolved = resolve_request(range, blob_meta.size)?;
        let part = entry
            .bytes
            .slice(resolved.start as usize..resolved.end as usize);
        let len = part.len();
        let chunks = (0..len)
            .step_by(CHUNK)
            .map(move |at| Ok(part.slice(at..len.min(at + CHUNK))));
        Ok((blob_meta, resolved, stream::iter(chunks).boxed()))
    }

    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        Ok(Box::new(MemoryWriter {
            inner: Arc::clone(&self.inner),
            digest: digest.clone(),
            expected_size,
            check: WriteCheck::new(digest),
            buf: BytesMut::new(),
        }))
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.inner.blobs.lock().remove(digest);
        Ok(())
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        let limit = limit.max(1);
        let blobs = self.inner.blobs.lock();
        let mut page: Vec<BlobMeta> = blobs
            .iter()
            .filter(|(d, _)| after.is_none_or(|a| *d > a))
            .take(limit + 1)
            .map(|(d, e)| meta(d, e))
            .collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|m| m.digest.clone())
        } else {
            None
        };
        Ok(ListPage { blobs: page, next })
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StorageError> {
        let mut blobs = self.inner.blobs.lock();
        let entry = blobs
            .get_mut(digest)
            .ok_or_else(|| StorageError::NotFound {
                digest: digest.clone(),
            })?;
        entry.last_access = SystemTime::now();
        Ok(())
    }
}

/// Buffers a blob in memory until it is committed.
struct MemoryWriter {
    inner: Arc<Inner>,
    digest: Digest,
    expected_size: Option<u64>,
    check: WriteCheck,
    buf: BytesMut,
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.check.update(&chunk);
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    fn digest_checked_by_caller(&mut self) {
        self.check.skip_digest();
    }

    async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        self.check.check(&self.digest, self.expected_size)?;
        let mut blobs = self.inner.blobs.lock();
        if blobs.contains_key(&self.digest) {
            return Ok(CommitOutcome::AlreadyExists);
        }
        let entry = Entry {
            bytes: self.buf.freeze(),
            last_access: SystemTime::now(),
        };
        blobs.insert(self.digest, entry);
        Ok(CommitOutcome::Stored)
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[async_trait]
impl TagStore for MemoryStore {
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError> {
        Ok(self.inner.tags.lock().get(key).cloned())
    }

    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError> {
        self.inner.tags.lock().insert(key.clone(), record.clone());
        Ok(())
    }

    async fn delete(&self, key: &TagKey) -> Result<(), StorageError> {
        self.inner.tags.lock().remove(key);
        Ok(())
    }

    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .inner
            .tags
            .lock()
            .keys()
            .filter(|k| k.namespace == namespace && k.repository == repository)
            .map(|k| k.tag.clone())
            .collect())
    }
}
