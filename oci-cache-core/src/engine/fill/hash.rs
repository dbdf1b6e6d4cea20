//! The fill's hash stage: hashes the batches in their own task (on the blocking pool, a
//! group of a MiB or more per trip, the rest at the end), so the download never waits for
//! the hash, and hands back the verifier at the end.

use tokio::task::JoinHandle;

use super::batch::Batch;
use super::queue::{stage_queue, StageQueue, GROUP};
use crate::{EngineError, Verifier};

/// Bytes ahead of the hash, at most.
const AHEAD: usize = 4 * 1024 * 1024;

/// A verifier running in its own task.
pub(super) struct HashStage {
    queue: StageQueue,
    task: JoinHandle<Result<Verifier, EngineError>>,
}

impl HashStage {
    /// Starts hashing into `verifier`.
    pub(super) fn start(mut verifier: Verifier) -> Self {
        let (queue, mut inbox) = stage_queue(AHEAD);
        let task = tokio::spawn(async move {
            while let Some((group, room)) = inbox.next_group(GROUP).await {
                verifier = tokio::task::spawn_blocking(move || {
                    for chunk in group.chunks() {
                        verifier.update(chunk);
                    }
                    verifier
                })
                .await
                .map_err(|_| EngineError::TaskLost { task: "hash" })?;
                drop(room);
            }
            Ok(verifier)
        });
        Self { queue, task }
    }

    /// Hands the next batch to the hash (waits while the hash is [`AHEAD`] bytes behind).
    pub(super) async fn send(&self, batch: Batch) -> Result<(), EngineError> {
        self.queue
            .send(batch)
            .await
            .map_err(|()| EngineError::TaskLost { task: "hash" })
    }

    /// Waits for the hash of every batch sent and returns the verifier.
    pub(super) async fn finish(self) -> Result<Verifier, EngineError> {
        let Self { queue, task } = self;
        drop(queue);
        task.await
            .map_err(|_| EngineError::TaskLost { task: "hash" })?
    }
}
