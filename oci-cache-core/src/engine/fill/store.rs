//! The fill's store stage: writes the batches, in their own task, where the fill keeps
//! them for readers behind the window and for storage, so the download never waits for
//! the disk. On a storage failure it goes on serving without storing.

use std::sync::Arc;

use oci_cache_storage::BlobWriter;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::batch::Batch;
use super::context::FillContext;
use super::feed::StorageFeed;
use super::queue::{stage_queue, StageQueue, GROUP};
use super::spool::Spool;
use super::state::Progress;
use crate::engine::stats::EngineStats;
use crate::{Digest, EngineError};

/// Bytes waiting for the disk, at most: the download runs this far ahead of a slow disk
/// (with the window's stored batches, this bounds a fill's memory).
const AHEAD: usize = 8 * 1024 * 1024;

/// Where a fill's bytes go besides the window: straight into a storage writer whose local
/// file is the spool (one copy on disk), into a spool file plus a storage writer fed in its
/// own task, or, when storage refused or failed, only a spool (served, not stored).
pub(super) enum Sink {
    Direct(Box<dyn BlobWriter>),
    Fed(StorageFeed),
    PassThrough,
}

/// What the store stage leaves for the commit.
pub(super) struct Stored {
    pub(super) sink: Sink,
    pub(super) spool: Spool,
}

/// The store stage's task. Dropping it stops the task, and a storage writer it held is
/// dropped, which discards what it wrote.
pub(super) struct StoreStage {
    queue: StageQueue,
    task: JoinHandle<Result<Stored, EngineError>>,
}

/// The stage's state inside its task.
struct Store {
    context: Arc<FillContext>,
    digest: Digest,
    progress: Arc<watch::Sender<Progress>>,
    spool: Spool,
    sink: Sink,
    written: u64,
}

impl StoreStage {
    /// Starts storing into `spool` and `sink`; readers learn of a change of spool through
    /// `progress`.
    pub(super) fn start(
        context: Arc<FillContext>,
        digest: Digest,
        progress: Arc<watch::Sender<Progress>>,
        spool: Spool,
        sink: Sink,
    ) -> Self {
        let (queue, mut inbox) = stage_queue(AHEAD);
        let mut store = Store {
            context,
            digest,
            progress,
            spool,
            sink,
            written: 0,
        };
        let task = tokio::spawn(async move {
            // A memory spool takes each batch as it comes: the shared budget is charged
            // as the bytes arrive, not a group later.
            while let Some((group, room)) = inbox.next_group(store.group_size()).await {
                store.write(group).await?;
                drop(room);
            }
            Ok(Stored {
                sink: store.sink,
                spool: store.spool,
            })
        });
        Self { queue, task }
    }

    /// Hands the next batch to the stage (waits while [`AHEAD`] bytes wait). An error
    /// means the stage failed; [`StoreStage::finish`] says how.
    pub(super) async fn send(&self, batch: Batch) -> Result<(), ()> {
        self.queue.send(batch).await
    }

    /// No more batches: the stage writes what it was gathering without waiting for more.
    pub(super) fn close(&mut self) {
        self.queue.close();
    }

    /// Waits until every batch sent is written (and readable behind the window).
    pub(super) async fn finish(mut self) -> Result<Stored, EngineError> {
        self.queue.close();
        (&mut self.task)
            .await
            .map_err(|_| EngineError::TaskLost { task: "store" })?
    }

    /// Stops the stage and waits until its task is gone: a storage writer it held has been
    /// dropped (which discards what it wrote) when this returns.
    pub(super) async fn discard(mut self) {
        self.task.abort();
        // Cancelled, or finished before the abort: either way the task's state is dropped.
        let _ = (&mut self.task).await;
    }
}

impl Drop for StoreStage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Bytes to gather before a write: a group for a file, each batch for memory.
    fn group_size(&self) -> usize {
        if self.spool.in_memory() {
            1
        } else {
            GROUP
        }
    }

    /// Writes `batch`, the next bytes (a group of batches: one trip to the blocking pool),
    /// and tells the window they are stored.
    async fn write(&mut self, batch: Batch) -> Result<(), EngineError> {
        let len = batch.len() as u64;
        match &mut self.sink {
            Sink::Direct(w) => {
                let mut stored = w.write_chunks(batch.chunks()).await;
                if stored.is_ok() {
                    stored = w.flush().await;
                }
                if let Err(e) = stored {
                    // The storage file failed (a full disk): go on from a spool copy of what
                    // was stored so far, serving without storing.
                    tracing::warn!(digest = %self.digest, error = %e, "storage write failed; serving without storing");
                    let spool = self.copy_spool(&batch).await?;
                    self.move_to(spool);
                    EngineStats::add(&self.context.stats.pass_through_bytes, self.written);
                    self.sink = Sink::PassThrough;
                }
            }
            Sink::Fed(_) | Sink::PassThrough => {
                if let Err(e) = write_batch(&self.spool, self.written, &batch).await {
                    tracing::warn!(digest = %self.digest, error = %e, "spool write failed; spooling in memory");
                    let spool = self.memory_copy(&batch).await?;
                    self.move_to(spool);
                }
                if let Sink::Fed(feed) = &mut self.sink {
                    for chunk in batch.chunks() {
                        feed.send(chunk.clone()).await;
                    }
                }
            }
        }
        self.written += len;
        self.spool.stored(self.written);
        if matches!(self.sink, Sink::PassThrough) {
            EngineStats::add(&self.context.stats.pass_through_bytes, len);
        }
        Ok(())
    }

    /// Moves to another backing (keeping the window) and tells the readers.
    fn move_to(&mut self, backing: Spool) {
        self.spool = self.spool.moved_to(backing);
        let moved = self.spool.clone();
        self.progress.send_modify(|p| {
            if let Progress::Streaming { spool, .. } = p {
                *spool = moved;
            }
        });
    }

    /// A new backing holding what was stored so far and then `batch`: a file in the spool
    /// directory, or, when that disk is full too, memory.
    async fn copy_spool(&mut self, batch: &Batch) -> Result<Spool, EngineError> {
        if let Ok(file) = Spool::create(&self.context.spool_dir) {
            let filled = match self.spool.copy_into(&file, self.written).await {
                Ok(()) => write_batch(&file, self.written, batch).await,
                Err(e) => Err(e),
            };
            match filled {
                Ok(()) => return Ok(file),
                Err(e) => {
                    tracing::warn!(digest = %self.digest, error = %e, "spool file failed too; spooling in memory");
                }
            }
        }
        self.memory_copy(batch).await
    }

    /// A memory backing holding what was stored so far and then `batch`. (`&mut`: the
    /// stage is `Send` but not `Sync`.)
    async fn memory_copy(&mut self, batch: &Batch) -> Result<Spool, EngineError> {
        let memory = Spool::memory(&self.context.memory_budget);
        self.spool.copy_into(&memory, self.written).await?;
        write_batch(&memory, self.written, batch).await?;
        Ok(memory)
    }
}

/// Writes `batch`'s chunks into `spool` from `offset` on.
async fn write_batch(spool: &Spool, offset: u64, batch: &Batch) -> Result<(), EngineError> {
    spool.write_chunks_at(offset, batch.chunks()).await
}
