//! Feeds a fill's bytes to a storage writer in its own task, so storage hashing and writes
//! overlap with the download instead of delaying every reader.

use bytes::Bytes;
use oci_cache_storage::{BlobWriter, CommitOutcome};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Digest, StorageError};

/// Chunks in flight between the fill and the storage task.
const DEPTH: usize = 16;

/// A storage writer running in its own task. Dropping it without [`StorageFeed::commit`]
/// aborts the write (the writer is dropped, which discards what it wrote).
pub(crate) struct StorageFeed {
    tx: Option<mpsc::Sender<Bytes>>,
    task: JoinHandle<Option<Box<dyn BlobWriter>>>,
}

impl StorageFeed {
    /// Starts the task.
    pub(crate) fn start(mut writer: Box<dyn BlobWriter>, digest: Digest) -> Self {
        let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
        let task = tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if let Err(e) = writer.write(chunk).await {
                    tracing::warn!(%digest, error = %e, "storage write failed; serving without storing");
                    return None;
                }
            }
            Some(writer)
        });
        Self { tx: Some(tx), task }
    }

    /// Hands a chunk to the storage task (waits while it is [`DEPTH`] chunks behind).
    pub(crate) async fn send(&mut self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            if tx.send(chunk).await.is_err() {
                self.tx = None;
            }
        }
    }

    /// Waits for the storage task to write everything, then commits. `Ok(None)` when the
    /// storage had failed earlier (the blob is then served but not stored).
    pub(crate) async fn commit(mut self) -> Result<Option<CommitOutcome>, StorageError> {
        self.tx = None;
        match (&mut self.task).await {
            Ok(Some(writer)) => writer.commit().await.map(Some),
            _ => Ok(None),
        }
    }
}

impl Drop for StorageFeed {
    /// Stops the storage task at once (without it, the task would write what is queued
    /// before dropping the writer).
    fn drop(&mut self) {
        self.task.abort();
    }
}
