//! The fill's hash stage: hashes the batches in their own task (on the blocking pool), so
//! the download never waits for the hash, and hands back the verifier at the end.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::batch::Batch;
use crate::{EngineError, Verifier};

/// Batches ahead of the hash, at most: half wait in the channel, half are being hashed
/// (the stage takes every waiting batch in one trip to the blocking pool).
const DEPTH: usize = 4;

/// A verifier running in its own task.
pub(super) struct HashStage {
    tx: mpsc::Sender<Batch>,
    task: JoinHandle<Result<Verifier, EngineError>>,
}

impl HashStage {
    /// Starts hashing into `verifier`.
    pub(super) fn start(mut verifier: Verifier) -> Self {
        let (tx, mut rx) = mpsc::channel::<Batch>(DEPTH / 2);
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Every batch already waiting goes in the same trip to the blocking pool: a
                // trip costs two context switches, and the hash is the fill's slowest stage.
                let mut batches = vec![first];
                while batches.len() < DEPTH / 2 {
                    match rx.try_recv() {
                        Ok(batch) => batches.push(batch),
                        Err(_) => break,
                    }
                }
                verifier = tokio::task::spawn_blocking(move || {
                    for chunk in batches.iter().flat_map(Batch::chunks) {
                        verifier.update(chunk);
                    }
                    verifier
                })
                .await
                .map_err(|_| EngineError::TaskLost { task: "hash" })?;
            }
            Ok(verifier)
        });
        Self { tx, task }
    }

    /// Hands the next batch to the hash (waits while the hash is [`DEPTH`] batches behind).
    pub(super) async fn send(&self, batch: Batch) -> Result<(), EngineError> {
        self.tx
            .send(batch)
            .await
            .map_err(|_| EngineError::TaskLost { task: "hash" })
    }

    /// Waits for the hash of every batch sent and returns the verifier.
    pub(super) async fn finish(self) -> Result<Verifier, EngineError> {
        drop(self.tx);
        self.task
            .await
            .map_err(|_| EngineError::TaskLost { task: "hash" })?
    }
}
