//! Copies into the local tier: a remote read copied as it streams to its reader, and a
//! write that goes to the remote store and the local tier at once. The local copy is best
//! effort (a slow or failing local disk never slows or fails the reader or the writer), and
//! becomes visible only when its bytes were verified against the digest.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::local::CopyGuard;
use crate::{BlobStream, BlobWriter, CommitOutcome, StorageError};

/// Bytes all copies together may lag behind their readers (in memory, on their way to the
/// disk); a copy that would go past it is given up.
const COPY_LAG_BYTES: u64 = 64 << 20;

/// Gives the bytes a copy still had queued back to the shared lag budget when its writer
/// task ends, however it ends.
struct Queued {
    global: Arc<AtomicU64>,
    mine: Arc<AtomicU64>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        let left = self.mine.swap(0, Ordering::AcqRel);
        self.global.fetch_sub(left, Ordering::AcqRel);
    }
}

/// `stream` (the whole blob, `size` bytes, read from the remote store), copied through
/// `writer` as it is read; `guard` ends the copy. The copy is given up, and nothing of it
/// stays, when the reader stops before the last byte, the stream fails, or the local disk
/// cannot keep up.
pub(crate) fn copy_while_reading(
    stream: BlobStream,
    writer: Box<dyn BlobWriter>,
    guard: CopyGuard,
    size: u64,
) -> BlobStream {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let complete = Arc::new(AtomicBool::new(false));
    let lag = Arc::clone(&guard.local.lag);
    let mine = Arc::new(AtomicU64::new(0));
    let queued = Queued {
        global: Arc::clone(&lag),
        mine: Arc::clone(&mine),
    };
    let finished = Arc::clone(&complete);
    tokio::spawn(async move {
        let queued = queued;
        let mut writer = writer;
        let mut ok = true;
        while let Some(chunk) = rx.recv().await {
            let len = chunk.len() as u64;
            if ok && writer.write(chunk).await.is_err() {
                ok = false;
            }
            queued.mine.fetch_sub(len, Ordering::AcqRel);
            queued.global.fetch_sub(len, Ordering::AcqRel);
        }
        if ok && finished.load(Ordering::Acquire) {
            match writer.commit().await {
                Ok(_) => guard.kept(),
                Err(e) => tracing::warn!(error = %e, "local tier: copy not kept"),
            }
        } else {
            let _ = writer.abort().await;
        }
    });
    Box::pin(CopyOnRead {
        inner: stream,
        tx: Some(tx),
        complete,
        lag,
        mine,
        left: size,
    })
}

struct CopyOnRead {
    inner: BlobStream,
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    complete: Arc<AtomicBool>,
    /// Bytes sent to the writer tasks of all copies and not written yet.
    lag: Arc<AtomicU64>,
    /// Those of this copy.
    mine: Arc<AtomicU64>,
    /// Bytes still to come. The copy is complete when the last byte was read, whether or
    /// not the reader then polls for the end (an HTTP server that sent `Content-Length`
    /// bytes stops there).
    left: u64,
}

impl CopyOnRead {
    /// Queues `chunk` for the copy, or gives the copy up when all copies lag too far.
    fn queue(&mut self, chunk: &Bytes) {
        let Some(tx) = &self.tx else { return };
        let len = chunk.len() as u64;
        let behind = self.lag.fetch_add(len, Ordering::AcqRel) + len;
        self.mine.fetch_add(len, Ordering::AcqRel);
        if behind > COPY_LAG_BYTES || tx.send(chunk.clone()).is_err() {
            self.lag.fetch_sub(len, Ordering::AcqRel);
            self.mine.fetch_sub(len, Ordering::AcqRel);
            self.tx = None;
        }
    }
}

impl Stream for CopyOnRead {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.queue(&chunk);
                this.left = this.left.saturating_sub(chunk.len() as u64);
                if this.left == 0 {
                    if let Some(tx) = this.tx.take() {
                        // Complete before the channel closes: the writer then commits.
                        this.complete.store(true, Ordering::Release);
                        drop(tx);
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.tx = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(tx) = this.tx.take() {
                    this.complete.store(true, Ordering::Release);
                    drop(tx);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Writes a blob to the remote store and, while the local disk keeps up, to the local
/// tier. The remote commit decides the outcome; the local copy is kept only after it.
///
/// The local copy's file is also the writer's [`BlobWriter::local_file`], so a fill serves
/// its readers from it instead of writing a spool file of its own (one disk write per cold
/// byte, not two). Once that file was handed out, a local failure fails the write (its
/// reader would otherwise miss bytes); before, the writer goes on with the remote store
/// alone.
pub(crate) struct TeeWriter {
    pub(crate) remote: Box<dyn BlobWriter>,
    /// The local writer and the copy it makes, while the local disk keeps up.
    pub(crate) local: Option<(Box<dyn BlobWriter>, CopyGuard)>,
    /// Whether the local file was handed out by [`BlobWriter::local_file`].
    pub(crate) lent: AtomicBool,
}

impl TeeWriter {
    /// What a local failure means: an error when the local file was handed out, else the
    /// end of the local copy.
    fn local_failed(&mut self, e: StorageError) -> Result<(), StorageError> {
        if self.lent.load(Ordering::Acquire) {
            return Err(e);
        }
        self.local = None;
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for TeeWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if let Some((local, _)) = &mut self.local {
            if let Err(e) = local.write(chunk.clone()).await {
                self.local_failed(e)?;
            }
        }
        self.remote.write(chunk).await
    }

    async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        let this = *self;
        let outcome = this.remote.commit().await?;
        if let Some((local, guard)) = this.local {
            match local.commit().await {
                Ok(_) => guard.kept(),
                Err(e) => tracing::warn!(error = %e, "local tier: copy not kept"),
            }
        }
        Ok(outcome)
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        let this = *self;
        if let Some((local, _guard)) = this.local {
            let _ = local.abort().await;
        }
        this.remote.abort().await
    }

    fn local_file(&self) -> Option<std::fs::File> {
        let file = self.local.as_ref()?.0.local_file()?;
        self.lent.store(true, Ordering::Release);
        Some(file)
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        if let Some((local, _)) = &mut self.local {
            if let Err(e) = local.flush().await {
                self.local_failed(e)?;
            }
        }
        self.remote.flush().await
    }

    fn digest_checked_by_caller(&mut self) {
        self.remote.digest_checked_by_caller();
        if let Some((local, _)) = &mut self.local {
            local.digest_checked_by_caller();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::memory::MemoryStore;
    use crate::tiered::local::Local;
    use crate::{BlobStore, Digest};

    /// A local writer whose disk fails at the first write.
    struct FailingDisk(std::fs::File);

    #[async_trait]
    impl BlobWriter for FailingDisk {
        async fn write(&mut self, _: Bytes) -> Result<(), StorageError> {
            Err(StorageError::io("write blob")(std::io::Error::other(
                "disk full",
            )))
        }
        async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
            Ok(CommitOutcome::Stored)
        }
        async fn abort(self: Box<Self>) -> Result<(), StorageError> {
            Ok(())
        }
        fn local_file(&self) -> Option<std::fs::File> {
            self.0.try_clone().ok()
        }
    }

    async fn tee(dir: &std::path::Path, digest: &Digest) -> TeeWriter {
        let local = Arc::new(Local::open(dir, 1 << 30).await.unwrap());
        assert!(local.begin_copy(digest, 3));
        let guard = CopyGuard {
            local,
            digest: digest.clone(),
            ended: false,
        };
        let remote = MemoryStore::default()
            .writer(digest, Some(3))
            .await
            .unwrap();
        TeeWriter {
            remote,
            local: Some((Box::new(FailingDisk(tempfile::tempfile().unwrap())), guard)),
            lent: AtomicBool::new(false),
        }
    }

    /// Before its file was handed out, a failing local disk ends only the local copy; after,
    /// it fails the write: a reader of that file would miss the bytes.
    #[tokio::test]
    async fn a_local_failure_fails_the_write_only_once_the_local_file_was_lent() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::sha256_of(b"abc");

        let mut quiet = tee(dir.path(), &digest).await;
        quiet.write(Bytes::from_static(b"abc")).await.unwrap();
        assert!(quiet.local.is_none(), "the failed local copy goes on");
        assert!(quiet.local_file().is_none());
        assert_eq!(
            Box::new(quiet).commit().await.unwrap(),
            CommitOutcome::Stored
        );

        let mut lent = tee(dir.path(), &digest).await;
        assert!(lent.local_file().is_some());
        assert!(lent.write(Bytes::from_static(b"abc")).await.is_err());
    }
}
