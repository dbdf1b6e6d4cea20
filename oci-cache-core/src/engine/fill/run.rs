//! The fill task: one upstream GET, read in batches. Each batch reaches the readers at
//! once (through the spool's window, in memory) and goes on to two stages that run behind
//! the download in their own tasks: the hash (`hash.rs`) and the disk (`store.rs`).
//! Reading the next batch never waits for either, within their bounded queues. The last
//! byte is released to readers only when the digest matched; the verified blob is then
//! committed and linked.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::batch::next_batch;
use super::context::FillContext;
use super::feed::StorageFeed;
use super::hash::HashStage;
use super::spool::Spool;
use super::state::Progress;
use super::store::{Sink, StoreStage, Stored};
use crate::engine::limit::Reservation;
use crate::engine::stats::EngineStats;
use crate::{Digest, EngineError, UpstreamClient, UpstreamError};
use oci_cache_storage::CommitOutcome;

/// One blob to download.
pub(super) struct FillJob {
    pub(super) context: Arc<FillContext>,
    pub(super) client: Arc<UpstreamClient>,
    pub(super) repo: String,
    pub(super) digest: Digest,
}

impl FillJob {
    /// Runs the fill to its end and publishes how it ended. A fill that succeeds stays
    /// registered (`lease`) until it has committed, so a new request finds either it or the
    /// stored blob; one that fails leaves the registry before it says so, so a new request
    /// starts a fill of its own instead of joining a failed one.
    pub(super) async fn run<L>(self, tx: watch::Sender<Progress>, lease: L) {
        let tx = Arc::new(tx);
        let mut stage = None;
        let result = self.download(&tx, &mut stage).await;
        if let Some(stage) = stage {
            // A failed fill's store stage is gone, and its temp file with it, before
            // anyone hears of the failure.
            stage.discard().await;
        }
        drop(lease);
        match result {
            Ok(size) => tracing::debug!(digest = %self.digest, size, "fill done"),
            Err(e) => {
                EngineStats::add(&self.context.stats.fills_failed, 1);
                tracing::warn!(digest = %self.digest, error = %e, "fill failed");
                tx.send_replace(Progress::Failed(Arc::new(e)));
            }
        }
    }

    /// Downloads, verifies and commits one blob; returns its size. The store stage it
    /// starts stays in `stage` when it fails, for the caller to discard.
    async fn download(
        &self,
        tx: &Arc<watch::Sender<Progress>>,
        stage: &mut Option<StoreStage>,
    ) -> Result<u64, EngineError> {
        let ctx = &self.context;
        let started = std::time::Instant::now();
        let Some(_slot) = self.client.fill_slot().await else {
            return Err(EngineError::Busy {
                upstream: self.client.name().to_owned(),
            });
        };
        let resp = match self.client.blob(&self.repo, &self.digest).await {
            Err(UpstreamError::NotFound) => {
                return Err(EngineError::BlobUnknown {
                    digest: self.digest.clone(),
                })
            }
            other => other?,
        };
        // The upstream serves this digest in this repository: it belongs there (which lets
        // the cache ask this upstream for it; serving stored bytes also needs possession).
        ctx.links
            .learn(self.client.name(), &self.repo, [&self.digest]);
        let size = resp.content_length();
        tracing::debug!(digest = %self.digest, ?size, elapsed = ?started.elapsed(), "fill: upstream answered");
        let (spool, sink, room) = self.sink(size).await;
        tx.send_replace(Progress::Streaming {
            size,
            received: 0,
            spool: spool.clone(),
        });
        let hash = HashStage::start(self.digest.verifier());
        let store = stage.insert(StoreStage::start(
            Arc::clone(ctx),
            self.digest.clone(),
            Arc::clone(tx),
            spool.clone(),
            sink,
        ));
        let mut received = 0u64;
        let mut body = resp.bytes_stream().fuse();
        while let Some(batch) = next_batch(&mut body, ctx.idle_timeout).await? {
            let len = batch.len() as u64;
            if let Some(expected) = size.filter(|s| received + len > *s) {
                return Err(EngineError::SizeMismatch {
                    expected,
                    actual: received + len,
                });
            }
            // Readers take the batch from the window at once; the stages follow.
            for chunk in batch.chunks() {
                spool.arrived(received, chunk.clone());
                received += chunk.len() as u64;
            }
            tx.send_modify(|p| {
                if let Progress::Streaming { received: r, .. } = p {
                    *r = received;
                }
            });
            EngineStats::add(&ctx.stats.bytes_from_upstream, len);
            if received == len {
                tracing::debug!(digest = %self.digest, elapsed = ?started.elapsed(), "fill: first batch arrived");
            }
            hash.send(batch.clone()).await?;
            if store.send(batch).await.is_err() {
                // The store stage failed: its error is the fill's.
                if let Some(failed) = stage.take() {
                    failed.finish().await?;
                }
                return Err(EngineError::TaskLost { task: "store" });
            }
        }
        if let Some(expected) = size.filter(|s| *s != received) {
            return Err(EngineError::SizeMismatch {
                expected,
                actual: received,
            });
        }
        // The store writes its last group while the hash takes its own.
        store.close();
        let actual = hash.finish().await?.finish();
        if actual != self.digest {
            return Err(EngineError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        let Some(store) = stage.take() else {
            return Err(EngineError::TaskLost { task: "store" });
        };
        let stored = store.finish().await?;
        self.commit(tx, stored, room, received).await;
        Ok(received)
    }

    /// Where the bytes will go: the storage writer's own file when it has one, else a
    /// spool file (or memory, when the disk is full) and the writer fed in its own task;
    /// only a spool when storage has no room under its limit. With the room it holds.
    async fn sink(&self, size: Option<u64>) -> (Spool, Sink, Option<Reservation>) {
        let ctx = &self.context;
        let mut room = ctx.limit.admit(size).await;
        if room.is_none() {
            EngineStats::add(&ctx.stats.fills_over_limit, 1);
            tracing::info!(digest = %self.digest, ?size, "no room under the storage limit; serving without storing");
        }
        let writer = match room.as_ref().map(|_| ()) {
            None => None,
            Some(()) => match ctx.blobs.writer(&self.digest, size).await {
                Ok(mut w) => {
                    // This fill hashes every byte and commits only a match.
                    w.digest_checked_by_caller();
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!(digest = %self.digest, error = %e, "storage refused a writer; serving without storing");
                    room = None;
                    None
                }
            },
        };
        let writer = match writer {
            Some(w) => match w.local_file() {
                Some(file) => return (Spool::from_file(file), Sink::Direct(w), room),
                None => Some(w),
            },
            None => None,
        };
        let spool = Spool::create(&ctx.spool_dir).unwrap_or_else(|e| {
            tracing::warn!(digest = %self.digest, error = %e, "no spool file (disk full?); spooling in memory");
            Spool::memory(&ctx.memory_budget)
        });
        let sink = match writer {
            Some(w) => Sink::Fed(StorageFeed::start(w, self.digest.clone())),
            None => Sink::PassThrough,
        };
        (spool, sink, room)
    }

    /// The blob is verified and every byte is readable: readers may finish now, while the
    /// commit (fsync, rename) and the link records are made.
    async fn commit(
        &self,
        tx: &watch::Sender<Progress>,
        stored: Stored,
        room: Option<Reservation>,
        size: u64,
    ) {
        let Stored { sink, spool } = stored;
        tx.send_replace(Progress::Done { size, spool });
        let committed = match sink {
            Sink::Direct(w) => w.commit().await.map(Some),
            Sink::Fed(feed) => feed.commit().await,
            Sink::PassThrough => Ok(None),
        };
        match committed {
            Ok(Some(CommitOutcome::Stored)) => {
                if let Some(room) = room {
                    room.stored(size);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(digest = %self.digest, error = %e, "storage commit failed; blob served but not stored");
            }
        }
        // The upstream produced these bytes for this repository: they belong there, and
        // stored bytes of this digest may go out through this upstream from now on.
        let digests = [self.digest.clone()];
        let links = &self.context.links;
        if let Err(e) = links
            .learn_pulled(self.client.name(), &self.repo, &digests)
            .await
        {
            tracing::warn!(digest = %self.digest, error = %e, "could not store the blob's link records");
        }
    }
}
