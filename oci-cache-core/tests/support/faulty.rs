//! A store wrapper that misbehaves on purpose when writing blobs (a full disk, a disk that
//! fills up, a disk that waits); everything else goes to the store inside.

use std::sync::Arc;

use async_trait::async_trait;
use oci_cache_core::{
    BlobMeta, BlobStore, BlobStream, BlobWriter, ByteRange, Digest, ListPage, ResolvedRange,
    StorageError,
};
use tokio::sync::Semaphore;

/// How a [`FaultyStore`] misbehaves.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Every writer is refused (a full disk before the fill starts).
    RefuseWriters,
    /// Writers fail once this many bytes were written (a disk filling up mid-fill).
    FailAfter(u64),
    /// Each write waits for a permit of this semaphore (a disk that is slow or stuck).
    WaitFor(Arc<Semaphore>),
    /// A writer dropped uncommitted takes a while to go (removing a big temp file), then
    /// sets this flag.
    SlowDrop(Arc<std::sync::atomic::AtomicBool>),
}

/// A store wrapper that misbehaves on blob writes; everything else goes to `inner`.
pub struct FaultyStore {
    pub inner: Arc<dyn BlobStore>,
    pub fault: Fault,
}

struct FaultyWriter {
    inner: Box<dyn BlobWriter>,
    written: u64,
    fault: Fault,
    _slow_drop: Option<SlowDrop>,
}

/// Sleeps when dropped, then sets its flag ([`Fault::SlowDrop`]).
struct SlowDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn no_space() -> StorageError {
    StorageError::Io {
        op: "write blob",
        source: std::io::Error::other("No space left on device"),
    }
}

#[async_trait]
impl BlobWriter for FaultyWriter {
    async fn write(&mut self, chunk: bytes::Bytes) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
        match &self.fault {
            Fault::FailAfter(limit) if self.written > *limit => return Err(no_space()),
            Fault::WaitFor(gate) => gate.acquire().await.unwrap().forget(),
            _ => {}
        }
        self.inner.write(chunk).await
    }
    async fn commit(self: Box<Self>) -> Result<oci_cache_storage::CommitOutcome, StorageError> {
        self.inner.commit().await
    }
    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        self.inner.abort().await
    }
    fn local_file(&self) -> Option<std::fs::File> {
        self.inner.local_file()
    }
    async fn flush(&mut self) -> Result<(), StorageError> {
        self.inner.flush().await
    }
    fn digest_checked_by_caller(&mut self) {
        self.inner.digest_checked_by_caller();
    }
}

#[async_trait]
impl BlobStore for FaultyStore {
    async fn head(&self, d: &Digest) -> Result<Option<BlobMeta>, StorageError> {
        self.inner.head(d).await
    }
    async fn get(
        &self,
        d: &Digest,
        r: Option<ByteRange>,
    ) -> Result<(BlobMeta, ResolvedRange, BlobStream), StorageError> {
        self.inner.get(d, r).await
    }
    async fn writer(
        &self,
        d: &Digest,
        size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError> {
        if matches!(self.fault, Fault::RefuseWriters) {
            return Err(no_space());
        }
        Ok(Box::new(FaultyWriter {
            inner: self.inner.writer(d, size).await?,
            written: 0,
            fault: self.fault.clone(),
            _slow_drop: match &self.fault {
                Fault::SlowDrop(gone) => Some(SlowDrop(Arc::clone(gone))),
                _ => None,
            },
        }))
    }
    async fn delete(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.delete(d).await
    }
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError> {
        self.inner.list(after, limit).await
    }
    async fn touch(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.touch(d).await
    }
}
