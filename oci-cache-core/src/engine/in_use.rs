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

/// Counts of readers per digest, and when each blob was last touched.
pub(crate) struct Usage {
    blobs: Arc<dyn BlobStore>,
    every: Duration,
    readers: Mutex<HashMap<Digest, usize>>,
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
        if let Some(n) = r.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
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

    /// Marks `digest` as being read. The first reader of a digest starts a task that
    /// refreshes its last access every `every` until the last reader is gone.
    pub(crate) fn reading(self: &Arc<Self>, digest: &Digest) -> Reading {
        let first = {
            let mut r = self.readers.lock();
            let n = r.entry(digest.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let usage = Arc::downgrade(self);
                let digest = digest.clone();
                let every = self.every;
                runtime.spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        let Some(usage) = usage.upgrade() else { return };
                        if !usage.readers.lock().contains_key(&digest) {
                            return;
                        }
                        usage.touch_now(&digest).await;
                    }
                });
            }
        }
        Reading {
            usage: Arc::clone(self),
            digest: digest.clone(),
        }
    }

    /// The digests being read now.
    pub(crate) fn in_use(&self) -> HashSet<Digest> {
        self.readers.lock().keys().cloned().collect()
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
