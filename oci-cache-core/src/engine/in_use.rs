//! Blobs being read from storage right now (eviction leaves them alone), and the coarse
//! refresh of a blob's last access on every hit and, for as long as a read lasts, every
//! [`EngineConfig::touch_every`](crate::EngineConfig::touch_every): another process that
//! evicts from the same storage sees a blob being read here as recently used, however long
//! the read takes (see [`GcPolicy::min_idle`](crate::gc::GcPolicy::min_idle)).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::{BlobStore, Digest};

/// Readers of one digest, and whether its refresh task runs.
#[derive(Debug, Default)]
struct Readers {
    count: usize,
    refreshing: bool,
}

/// Counts of readers per digest, and when each blob was last touched.
pub(crate) struct Usage {
    blobs: Arc<dyn BlobStore>,
    every: Duration,
    /// An entry stays while its refresh task runs, with a count of 0 when the readers are
    /// gone, so that at most one task per digest ever runs.
    readers: Mutex<HashMap<Digest, Readers>>,
    touched: Mutex<HashMap<Digest, Instant>>,
}

impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// Marks a blob as being read until dropped.
pub(crate) struct Reading {
    usage: Arc<Usage>,
    digest: Digest,
}

impl Drop for Reading {
    fn drop(&mut self) {
        let mut r = self.usage.readers.lock();
        if let Some(entry) = r.get_mut(&self.digest) {
            entry.count = entry.count.saturating_sub(1);
            if entry.count == 0 && !entry.refreshing {
                r.remove(&self.digest);
            }
        }
    }
}

impl Usage {
    /// Usage of `blobs`, whose last access a hit refreshes at most once per `every`.
    pub(crate) fn new(blobs: Arc<dyn BlobStore>, every: Duration) -> Self {
        Self {
            blobs,
            every: every.max(Duration::from_millis(100)),
            readers: Mutex::default(),
            touched: Mutex::default(),
        }
    }

    /// Marks `digest` as being read. A reader of a digest without a refresh task starts
    /// one, which refreshes its last access every `every` until no reader is left (one task
    /// per digest at most, however readers come and go).
    pub(crate) fn reading(self: &Arc<Self>, digest: &Digest) -> Reading {
        let start = {
            let mut r = self.readers.lock();
            let entry = r.entry(digest.clone()).or_default();
            entry.count += 1;
            !std::mem::replace(&mut entry.refreshing, true)
        };
        if start {
            self.spawn_refresh(digest.clone());
        }
        Reading {
            usage: Arc::clone(self),
            digest: digest.clone(),
        }
    }

    /// Refreshes `digest`'s last access every `every` while it has readers.
    fn spawn_refresh(self: &Arc<Self>, digest: Digest) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if let Some(entry) = self.readers.lock().get_mut(&digest) {
                entry.refreshing = false;
            }
            return;
        };
        let usage = Arc::downgrade(self);
        let every = self.every;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(usage) = usage.upgrade() else { return };
                {
                    let mut r = usage.readers.lock();
                    if r.get(&digest).is_none_or(|e| e.count == 0) {
                        r.remove(&digest);
                        return;
                    }
                }
                usage.touch_now(&digest).await;
            }
        });
    }

    /// The digests being read now.
    pub(crate) fn in_use(&self) -> HashSet<Digest> {
        self.readers
            .lock()
            .iter()
            .filter(|(_, e)| e.count > 0)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Refreshes the blob's last access in storage, at most once per `every`, in the
    /// background.
    pub(crate) fn touch(self: &Arc<Self>, digest: &Digest) {
        let now = Instant::now();
        {
            let mut t = self.touched.lock();
            if t.get(digest)
                .is_some_and(|at| now.duration_since(*at) < self.every)
            {
                return;
            }
            if t.len() > 100_000 {
                t.retain(|_, at| now.duration_since(*at) < self.every);
            }
            t.insert(digest.clone(), now);
        }
        let (usage, digest) = (Arc::clone(self), digest.clone());
        tokio::spawn(async move { usage.touch_now(&digest).await });
    }

    /// Refreshes the blob's last access in storage now.
    async fn touch_now(&self, digest: &Digest) {
        self.touched.lock().insert(digest.clone(), Instant::now());
        if let Err(e) = self.blobs.touch(digest).await {
            tracing::debug!(%digest, error = %e, "could not refresh last access");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use oci_cache_storage::memory::MemoryStore;
    use oci_cache_storage::{
        BlobMeta, BlobStream, BlobWriter, ByteRange, ListPage, ResolvedRange, StorageError,
    };

    use super::*;

    /// A memory store that counts touches.
    #[derive(Default)]
    struct Touches {
        inner: MemoryStore,
        n: AtomicUsize,
    }

    #[async_trait]
    impl BlobStore for Touches {
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
            s: Option<u64>,
        ) -> Result<Box<dyn BlobWriter>, StorageError> {
            self.inner.writer(d, s).await
        }
        async fn delete(&self, d: &Digest) -> Result<(), StorageError> {
            BlobStore::delete(&self.inner, d).await
        }
        async fn list(&self, a: Option<&Digest>, l: usize) -> Result<ListPage, StorageError> {
            self.inner.list(a, l).await
        }
        async fn touch(&self, _: &Digest) -> Result<(), StorageError> {
            self.n.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_long_read_is_refreshed_and_readers_coming_and_going_start_one_task() {
        let store = Arc::new(Touches::default());
        let usage = Arc::new(Usage::new(store.clone(), Duration::from_millis(100)));
        let d = Digest::sha256_of(b"blob");
        // 1000 short reads of one digest, then one read that lasts 550 ms: about 5
        // refreshes, not one task (and its refreshes) per short read.
        for _ in 0..1000 {
            drop(usage.reading(&d));
        }
        let long = usage.reading(&d);
        tokio::time::sleep(Duration::from_millis(550)).await;
        let n = store.n.load(Ordering::SeqCst);
        assert!((4..=6).contains(&n), "{n} refreshes in 550 ms");
        assert!(usage.in_use().contains(&d));
        drop(long);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let after = store.n.load(Ordering::SeqCst);
        assert!(after <= n + 1, "refreshed after the last reader left");
        assert!(usage.in_use().is_empty());
        assert!(
            usage.readers.lock().is_empty(),
            "the refresh task did not end"
        );
    }
}
