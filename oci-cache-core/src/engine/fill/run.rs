//! The fill task: one upstream GET, read in batches; each batch is hashed (on the
//! blocking pool) while it is written where readers follow it and where storage keeps it;
//! the verified blob is committed and linked.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_cache_storage::BlobWriter;
use tokio::sync::watch;

use super::batch::next_batch;
use super::context::FillContext;
use super::feed::StorageFeed;
use super::spool::Spool;
use super::state::Progress;
use crate::engine::stats::EngineStats;
use crate::{Digest, EngineError, UpstreamClient, UpstreamError, Verifier};

/// One blob to download.
pub(super) struct FillJob {
    pub(super) context: Arc<FillContext>,
    pub(super) client: Arc<UpstreamClient>,
    pub(super) repo: String,
    pub(super) digest: Digest,
}

/// Where a fill's bytes go besides the spool: straight into a storage writer whose local
/// file is the spool (one copy on disk), into a storage writer fed in its own task, or,
/// when storage refused or failed, nowhere (the blob is served, not stored).
enum Sink {
    Direct(Box<dyn BlobWriter>),
    Fed(StorageFeed),
    PassThrough,
}

/// A fill under way: what arrived so far and where it went.
struct Running<'a> {
    job: &'a FillJob,
    tx: &'a watch::Sender<Progress>,
    spool: Spool,
    sink: Sink,
    size: Option<u64>,
    written: u64,
}

impl FillJob {
    /// Runs the fill to its end and publishes how it ended.
    pub(super) async fn run(self, tx: watch::Sender<Progress>) {
        match self.download(&tx).await {
            Ok(size) => tracing::debug!(digest = %self.digest, size, "fill done"),
            Err(e) => {
                EngineStats::add(&self.context.stats.fills_failed, 1);
                tracing::warn!(digest = %self.digest, error = %e, "fill failed");
                tx.send_replace(Progress::Failed(Arc::new(e)));
            }
        }
    }

    /// Downloads, verifies and commits one blob; returns its size.
    async fn download(&self, tx: &watch::Sender<Progress>) -> Result<u64, EngineError> {
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
        let (spool, sink) = self.sink(size).await;
        let mut fill = Running {
            job: self,
            tx,
            spool,
            sink,
            size,
            written: 0,
        };
        fill.publish();
        let mut verifier = self.digest.verifier();
        let mut body = resp.bytes_stream().fuse();
        while let Some(batch) = next_batch(&mut body, ctx.idle_timeout).await? {
            fill.check_size(batch.len() as u64)?;
            // Hash on the blocking pool while the batch is stored.
            let (hashed, stored) = tokio::join!(hash(verifier, batch.clone()), fill.store(batch));
            verifier = hashed?;
            stored?;
        }
        if let Some(expected) = size.filter(|s| *s != fill.written) {
            return Err(EngineError::SizeMismatch {
                expected,
                actual: fill.written,
            });
        }
        let actual = verifier.finish();
        if actual != self.digest {
            return Err(EngineError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        fill.finish().await
    }

    /// Where the bytes will go: the storage writer's own file when it has one, else a
    /// spool file (or memory, when the disk is full) and the writer fed in its own task.
    async fn sink(&self, size: Option<u64>) -> (Spool, Sink) {
        let ctx = &self.context;
        let writer = match ctx.blobs.writer(&self.digest, size).await {
            Ok(mut w) => {
                // This fill hashes every byte and commits only a match.
                w.digest_checked_by_caller();
                Some(w)
            }
            Err(e) => {
                tracing::warn!(digest = %self.digest, error = %e, "storage refused a writer; serving without storing");
                None
            }
        };
        let writer = match writer {
            Some(w) => match w.local_file() {
                Some(file) => return (Spool::from_file(file), Sink::Direct(w)),
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
        (spool, sink)
    }
}

impl Running<'_> {
    /// Tells readers where the bytes are and how many arrived.
    fn publish(&self) {
        self.tx.send_replace(Progress::Streaming {
            size: self.size,
            written: self.written,
            spool: self.spool.clone(),
        });
    }

    /// Fails when `len` more bytes would pass the announced size.
    fn check_size(&self, len: u64) -> Result<(), EngineError> {
        match self.size {
            Some(expected) if self.written + len > expected => Err(EngineError::SizeMismatch {
                expected,
                actual: self.written + len,
            }),
            _ => Ok(()),
        }
    }

    /// Stores `batch` (the next bytes) where the fill keeps them and tells readers; on a
    /// storage failure goes on serving without storing.
    async fn store(&mut self, batch: Bytes) -> Result<(), EngineError> {
        let ctx = &self.job.context;
        let len = batch.len() as u64;
        match &mut self.sink {
            Sink::Direct(w) => {
                let stored = match w.write(batch.clone()).await {
                    Ok(()) => w.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = stored {
                    // The storage file failed (a full disk): go on from a spool copy of what
                    // arrived so far, serving without storing.
                    tracing::warn!(digest = %self.job.digest, error = %e, "storage write failed; serving without storing");
                    self.spool = self.copy_spool(batch.clone()).await?;
                    EngineStats::add(&ctx.stats.pass_through_bytes, self.written);
                    self.sink = Sink::PassThrough;
                }
            }
            Sink::Fed(_) | Sink::PassThrough => {
                if let Err(e) = self.spool.write_at(self.written, batch.clone()).await {
                    tracing::warn!(digest = %self.job.digest, error = %e, "spool write failed; spooling in memory");
                    self.spool = self.memory_copy(batch.clone()).await?;
                }
                if let Sink::Fed(feed) = &mut self.sink {
                    feed.send(batch.clone()).await;
                }
            }
        }
        self.spool.remember(self.written, batch);
        if self.written == 0 {
            tracing::debug!(digest = %self.job.digest, "fill: first batch stored");
        }
        self.written += len;
        EngineStats::add(&ctx.stats.bytes_from_upstream, len);
        if matches!(self.sink, Sink::PassThrough) {
            EngineStats::add(&ctx.stats.pass_through_bytes, len);
        }
        self.publish();
        Ok(())
    }

    /// A new spool holding what arrived so far and then `batch`: a file in the spool
    /// directory, or, when that disk is full too, memory.
    async fn copy_spool(&mut self, batch: Bytes) -> Result<Spool, EngineError> {
        if let Ok(file) = Spool::create(&self.job.context.spool_dir) {
            let filled = match self.spool.copy_into(&file, self.written).await {
                Ok(()) => file.write_at(self.written, batch.clone()).await,
                Err(e) => Err(e),
            };
            match filled {
                Ok(()) => return Ok(file),
                Err(e) => {
                    tracing::warn!(digest = %self.job.digest, error = %e, "spool file failed too; spooling in memory");
                }
            }
        }
        self.memory_copy(batch).await
    }

    /// A memory spool holding what arrived so far and then `batch`. (`&mut`: the fill is
    /// `Send` but not `Sync`.)
    async fn memory_copy(&mut self, batch: Bytes) -> Result<Spool, EngineError> {
        let memory = Spool::memory(&self.job.context.memory_budget);
        self.spool.copy_into(&memory, self.written).await?;
        memory.write_at(self.written, batch).await?;
        Ok(memory)
    }

    /// The blob is verified: readers may finish now, while the commit (fsync, rename) and
    /// the link records are made. Returns the blob's size.
    async fn finish(self) -> Result<u64, EngineError> {
        let job = self.job;
        self.tx.send_replace(Progress::Done {
            size: self.written,
            spool: self.spool.clone(),
        });
        let committed = match self.sink {
            Sink::Direct(w) => w.commit().await.map(Some),
            Sink::Fed(feed) => feed.commit().await,
            Sink::PassThrough => Ok(None),
        };
        if let Err(e) = committed {
            tracing::warn!(digest = %job.digest, error = %e, "storage commit failed; blob served but not stored");
        }
        // The upstream produced these bytes for this repository: they belong there, and
        // stored bytes of this digest may go out through this upstream from now on.
        let digests = [job.digest.clone()];
        let links = &job.context.links;
        if let Err(e) = links
            .learn_pulled(job.client.name(), &job.repo, &digests)
            .await
        {
            tracing::warn!(digest = %job.digest, error = %e, "could not store the blob's link records");
        }
        Ok(self.written)
    }
}

/// Adds `batch` to the verifier, off the async threads.
async fn hash(mut verifier: Verifier, batch: Bytes) -> Result<Verifier, EngineError> {
    tokio::task::spawn_blocking(move || {
        verifier.update(&batch);
        verifier
    })
    .await
    .map_err(|_| EngineError::TaskLost { task: "hash" })
}
