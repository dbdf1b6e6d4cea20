//! Blobs being read from storage right now (eviction leaves them alone), and the coarse
//! refresh of a blob's last access on every hit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::{BlobStore, Digest};

/// A hit refreshes the blob's last access at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Counts of readers per digest, and when each blob was last touched.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    readers: Mutex<HashMap<Digest, usize>>,
    touched: Mutex<HashMap<Digest, Instant>>,
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
    /// Marks `digest` as being read.
    pub(crate) fn reading(self: &Arc<Self>, digest: &Digest) -> Reading {
        {
            let mut r = self.readers.lock();
            *r.entry(digest.clone()).or_default() += 1;
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

    /// Refreshes the blob's last access in storage, at most once per [`TOUCH_EVERY`], in
    /// the background.
    pub(crate) fn touch(&self, blobs: &Arc<dyn BlobStore>, digest: &Digest) {
        let now = Instant::now();
        {
            let mut t = self.touched.lock();
            if t.get(digest)
                .is_some_and(|at| now.duration_since(*at) < TOUCH_EVERY)
            {
                return;
            }
            if t.len() > 100_000 {
                t.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
            }
            t.insert(digest.clone(), now);
        }
        let (blobs, digest) = (Arc::clone(blobs), digest.clone());
        tokio::spawn(async move {
            if let Err(e) = blobs.touch(&digest).await {
                tracing::debug!(%digest, error = %e, "could not refresh last access");
            }
        });
    }
}
