//! Single-flight fills: at most one upstream download per digest at a time. The download
//! runs in its own task (a client that leaves does not stop it), writes through a verifier
//! into the spool (for readers) and a storage writer, and commits only a verified blob.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_cache_storage::BlobWriter;
use tokio::sync::watch;

use super::batch::next_batch;
use super::feed::StorageFeed;
use super::links::Links;
use super::spool::{MemoryBudget, Spool, SpoolSlot};
use super::stats::EngineStats;
use crate::{BlobStore, Digest, EngineError, UpstreamClient, UpstreamError, Verifier};

/// How far a fill has come. Readers watch it.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// Waiting for the upstream's answer.
    Connecting,
    /// Bytes are arriving; `written` of them are in the spool.
    Streaming {
        /// The size the upstream announced.
        size: Option<u64>,
        /// Bytes in the spool.
        written: u64,
    },
    /// All bytes arrived and matched the digest.
    Done {
        /// The blob's size.
        size: u64,
    },
    /// The fill failed; nothing was committed.
    Failed(Arc<EngineError>),
}

/// A running fill, as its readers see it.
#[derive(Debug, Clone)]
pub(crate) struct FillHandle {
    /// The repository the fill downloads from (on its upstream).
    pub(crate) repo: Arc<str>,
    /// Set by the fill before it reports [`Progress::Streaming`].
    pub(crate) spool: SpoolSlot,
    pub(crate) progress: watch::Receiver<Progress>,
}

/// What a fill needs to download one blob.
pub(crate) struct FillJob {
    pub(crate) client: Arc<UpstreamClient>,
    pub(crate) repo: String,
    pub(crate) digest: Digest,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) idle_timeout: Duration,
    pub(crate) spool_dir: PathBuf,
    pub(crate) memory_budget: Arc<MemoryBudget>,
    pub(crate) stats: Arc<EngineStats>,
    /// Learns, once the bytes are verified, that the upstream possesses the digest and that
    /// it belongs to the repository.
    pub(crate) links: Arc<Links>,
}

/// Fills are per upstream: a client of one upstream never waits on, or fails with, a fill
/// that runs with another upstream's credentials.
type FillKey = (String, Digest);

/// The running fills, by upstream and digest.
#[derive(Debug, Default)]
pub(crate) struct FillRegistry {
    fills: Mutex<HashMap<FillKey, FillHandle>>,
}

impl FillRegistry {
    /// Number of fills running.
    pub(crate) fn len(&self) -> usize {
        self.fills.lock().map_or(0, |f| f.len())
    }

    /// The running fill of `digest` from `upstream`, if any.
    pub(crate) fn get(&self, upstream: &str, digest: &Digest) -> Option<FillHandle> {
        self.fills
            .lock()
            .ok()?
            .get(&(upstream.to_owned(), digest.clone()))
            .cloned()
    }

    /// Joins the running fill of the job's digest, or starts one in a new task; `true`
    /// when it joined.
    pub(crate) fn join_or_start(
        self: &Arc<Self>,
        job: FillJob,
    ) -> Result<(FillHandle, bool), EngineError> {
        let key: FillKey = (job.client.name().to_owned(), job.digest.clone());
        if let Some(handle) = self.get(&key.0, &key.1) {
            return Ok((handle, true));
        }
        let spool: SpoolSlot = Arc::new(RwLock::new(None));
        let (tx, rx) = watch::channel(Progress::Connecting);
        let handle = FillHandle {
            repo: Arc::from(job.repo.as_str()),
            spool: Arc::clone(&spool),
            progress: rx,
        };
        {
            let mut fills = self
                .fills
                .lock()
                .map_err(|_| EngineError::Spool(std::io::Error::other("fill registry poisoned")))?;
            if let Some(existing) = fills.get(&key) {
                return Ok((existing.clone(), true));
            }
            fills.insert(key.clone(), handle.clone());
        }
        let guard = Deregister {
            registry: Arc::clone(self),
            key,
        };
        tokio::spawn(async move {
            let result = run(&job, &spool, &tx).await;
            match result {
                Ok(size) => tracing::debug!(digest = %job.digest, size, "fill done"),
                Err(e) => {
                    EngineStats::add(&job.stats.fills_failed, 1);
                    tracing::warn!(digest = %job.digest, error = %e, "fill failed");
                    tx.send_replace(Progress::Failed(Arc::new(e)));
                }
            }
            drop(guard);
        });
        Ok((handle, false))
    }
}

/// Removes a fill from the registry when its task ends, however it ends.
struct Deregister {
    registry: Arc<FillRegistry>,
    key: FillKey,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.registry.fills.lock() {
            fills.remove(&self.key);
        }
    }
}

/// Where a fill's bytes go: straight into a storage writer whose local file readers follow
/// (one copy on disk), or into an anonymous spool file plus, in its own task, the storage.
enum Sink {
    Direct(Box<dyn BlobWriter>),
    Spooled(Option<StorageFeed>),
}

/// Downloads, verifies and commits one blob; returns its size.
async fn run(
    job: &FillJob,
    slot: &SpoolSlot,
    tx: &watch::Sender<Progress>,
) -> Result<u64, EngineError> {
    let started = std::time::Instant::now();
    let Some(_slot) = job.client.fill_slot().await else {
        return Err(EngineError::Busy {
            upstream: job.client.name().to_owned(),
        });
    };
    let resp = match job.client.blob(&job.repo, &job.digest).await {
        Err(UpstreamError::NotFound) => {
            return Err(EngineError::BlobUnknown {
                digest: job.digest.clone(),
            })
        }
        other => other?,
    };
    // The upstream serves this digest in this repository: it belongs there (which lets the
    // cache ask this upstream for it; serving stored bytes also needs possession, below).
    job.links.learn(job.client.name(), &job.repo, [&job.digest]);
    let size = resp.content_length();
    tracing::debug!(digest = %job.digest, ?size, elapsed = ?started.elapsed(), "fill: upstream answered");
    let writer = match job.blobs.writer(&job.digest, size).await {
        Ok(mut w) => {
            // This fill hashes every byte and commits only a match.
            w.digest_checked_by_caller();
            Some(w)
        }
        Err(e) => {
            tracing::warn!(digest = %job.digest, error = %e, "storage refused a writer; serving without storing");
            None
        }
    };
    let (spool, mut sink) = match writer.as_ref().and_then(|w| w.local_file()) {
        Some(file) => (
            Spool::from_file(file),
            Sink::Direct(writer.ok_or_else(no_writer)?),
        ),
        None => (
            Spool::create(&job.spool_dir).unwrap_or_else(|e| {
                tracing::warn!(digest = %job.digest, error = %e, "no spool file (disk full?); spooling in memory");
                Spool::memory(&job.memory_budget)
            }),
            Sink::Spooled(writer.map(|w| StorageFeed::start(w, job.digest.clone()))),
        ),
    };
    let mut spool = spool;
    set_spool(slot, &spool);
    tx.send_replace(Progress::Streaming { size, written: 0 });
    let mut verifier = job.digest.verifier();
    let mut body = resp.bytes_stream().fuse();
    let mut written = 0u64;
    while let Some(batch) = next_batch(&mut body, job.idle_timeout).await? {
        let len = batch.len() as u64;
        if size.is_some_and(|s| written + len > s) {
            return Err(EngineError::SizeMismatch {
                expected: size.unwrap_or(0),
                actual: written + len,
            });
        }
        // Hash on the blocking pool while the batch is stored.
        let (hashed, stored) = tokio::join!(
            hash(verifier, batch.clone()),
            store(job, slot, &mut spool, &mut sink, written, batch.clone())
        );
        verifier = hashed?;
        stored?;
        spool.remember(written, batch);
        if written == 0 {
            tracing::debug!(digest = %job.digest, elapsed = ?started.elapsed(), "fill: first batch stored");
        }
        written += len;
        EngineStats::add(&job.stats.bytes_from_upstream, len);
        if matches!(sink, Sink::Spooled(None)) {
            EngineStats::add(&job.stats.pass_through_bytes, len);
        }
        tx.send_modify(|p| {
            if let Progress::Streaming { written: w, .. } = p {
                *w = written;
            }
        });
    }
    if let Some(expected) = size.filter(|s| *s != written) {
        return Err(EngineError::SizeMismatch {
            expected,
            actual: written,
        });
    }
    let actual = verifier.finish();
    if actual != job.digest {
        return Err(EngineError::DigestMismatch {
            expected: job.digest.clone(),
            actual,
        });
    }
    // Verified: readers may finish now; the commit (fsync, rename) runs while they do.
    // The fill stays registered until the commit and its records are done, so a new request
    // finds either this fill or the stored blob, and a shutdown that waits for running
    // fills keeps both.
    tx.send_replace(Progress::Done { size: written });
    let committed = match sink {
        Sink::Direct(w) => w.commit().await.map(Some),
        Sink::Spooled(Some(feed)) => feed.commit().await,
        Sink::Spooled(None) => Ok(None),
    };
    if let Err(e) = committed {
        tracing::warn!(digest = %job.digest, error = %e, "storage commit failed; blob served but not stored");
    }
    // The upstream produced these bytes for this repository: they belong there, and stored
    // bytes of this digest may go out through this upstream from now on.
    let (upstream, digests) = (job.client.name(), [job.digest.clone()]);
    if let Err(e) = job.links.learn_pulled(upstream, &job.repo, &digests).await {
        tracing::warn!(digest = %job.digest, error = %e, "could not store the blob's link records");
    }
    Ok(written)
}

/// Adds `batch` to the verifier, off the async threads.
async fn hash(mut verifier: Verifier, batch: Bytes) -> Result<Verifier, EngineError> {
    tokio::task::spawn_blocking(move || {
        verifier.update(&batch);
        verifier
    })
    .await
    .map_err(|e| EngineError::Spool(std::io::Error::other(e)))
}

/// Stores `batch`, which starts at `written`, where the fill keeps its bytes; on a storage
/// failure switches to serving without storing.
async fn store(
    job: &FillJob,
    slot: &SpoolSlot,
    spool: &mut Spool,
    sink: &mut Sink,
    written: u64,
    batch: Bytes,
) -> Result<(), EngineError> {
    match sink {
        Sink::Direct(w) => {
            let stored = match w.write(batch.clone()).await {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                // The storage file failed (a full disk): go on from a spool copy of what
                // arrived so far, serving without storing.
                tracing::warn!(digest = %job.digest, error = %e, "storage write failed; serving without storing");
                *spool = fallback_spool(job, spool, written, batch).await?;
                set_spool(slot, spool);
                EngineStats::add(&job.stats.pass_through_bytes, written);
                *sink = Sink::Spooled(None);
            }
        }
        Sink::Spooled(feed) => {
            if let Err(e) = spool.write_at(written, batch.clone()).await {
                tracing::warn!(digest = %job.digest, error = %e, "spool write failed; spooling in memory");
                *spool = to_memory(job, spool, written, batch.clone()).await?;
                set_spool(slot, spool);
            }
            if let Some(feed) = feed.as_mut() {
                feed.send(batch).await;
            }
        }
    }
    Ok(())
}

/// A new spool holding `old`'s first `written` bytes and then `batch`: a file in the spool
/// directory, or, when that disk is full too, memory.
async fn fallback_spool(
    job: &FillJob,
    old: &Spool,
    written: u64,
    batch: Bytes,
) -> Result<Spool, EngineError> {
    if let Ok(file) = Spool::create(&job.spool_dir) {
        let filled = match old.copy_into(&file, written).await {
            Ok(()) => file.write_at(written, batch.clone()).await,
            Err(e) => Err(e),
        };
        match filled {
            Ok(()) => return Ok(file),
            Err(e) => {
                tracing::warn!(digest = %job.digest, error = %e, "spool file failed too; spooling in memory");
            }
        }
    }
    to_memory(job, old, written, batch).await
}

/// A memory spool holding `old`'s first `written` bytes and then `batch`.
async fn to_memory(
    job: &FillJob,
    old: &Spool,
    written: u64,
    batch: Bytes,
) -> Result<Spool, EngineError> {
    let memory = Spool::memory(&job.memory_budget);
    old.copy_into(&memory, written).await?;
    memory.write_at(written, batch).await?;
    Ok(memory)
}

fn set_spool(slot: &SpoolSlot, spool: &Spool) {
    if let Ok(mut s) = slot.write() {
        *s = Some(spool.clone());
    }
}

fn no_writer() -> EngineError {
    EngineError::Spool(std::io::Error::other("storage writer vanished"))
}
