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

use super::Local;
use crate::{BlobStream, BlobWriter, CommitOutcome, Digest, StorageError};

/// Bytes all copies together may lag behind their readers (in memory, on their way to the
/// disk); a copy that would go past it is given up.
const COPY_LAG_BYTES: u64 = 64 << 20;

/// `stream` (the whole blob `digest`, `size` bytes, read from the remote store), copied into
/// `local` as it is read. The copy is given up, and nothing of it stays, when the reader
/// stops early, the stream fails, or the local disk cannot keep up.
pub(crate) fn copy_while_reading(
    stream: BlobStream,
    writer: Box<dyn BlobWriter>,
    local: Arc<Local>,
    digest: Digest,
    size: u64,
) -> BlobStream {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let complete = Arc::new(AtomicBool::new(false));
    let lag = Arc::clone(&local.lag);
    let (finished, written) = (Arc::clone(&complete), Arc::clone(&lag));
    tokio::spawn(async move {
        let mut writer = writer;
        let mut ok = true;
        while let Some(chunk) = rx.recv().await {
            let len = chunk.len() as u64;
            if ok && writer.write(chunk).await.is_err() {
                ok = false;
            }
            written.fetch_sub(len, Ordering::AcqRel);
        }
        if ok && finished.load(Ordering::Acquire) {
            match writer.commit().await {
                Ok(_) => local.held(&digest, size),
                Err(e) => tracing::warn!(%digest, error = %e, "local tier: copy not kept"),
            }
        } else {
            let _ = writer.abort().await;
        }
        local.copy_ended(&digest);
    });
    Box::pin(CopyOnRead {
        inner: stream,
        tx: Some(tx),
        complete,
        lag,
        left: size,
    })
}

struct CopyOnRead {
    inner: BlobStream,
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    complete: Arc<AtomicBool>,
    /// Bytes sent to the writer tasks of all copies and not written yet.
    lag: Arc<AtomicU64>,
    /// Bytes still to come. The copy is complete when the last byte was read, whether or
    /// not the reader then polls for the end (an HTTP server that sent `Content-Length`
    /// bytes stops there).
    left: u64,
}

impl Stream for CopyOnRead {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(tx) = &this.tx {
                    let len = chunk.len() as u64;
                    let behind = this.lag.fetch_add(len, Ordering::AcqRel) + len;
                    if behind > COPY_LAG_BYTES || tx.send(chunk.clone()).is_err() {
                        this.lag.fetch_sub(len, Ordering::AcqRel);
                        this.tx = None;
                    }
                }
                this.left = this.left.saturating_sub(chunk.len() as u64);
                if this.left == 0 && this.tx.take().is_some() {
                    this.complete.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.tx = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if this.tx.take().is_some() {
                    this.complete.store(true, Ordering::Release);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Writes a blob to the remote store and, while the local disk keeps up, to the local
/// tier. The remote commit decides the outcome; the local copy is kept only after it.
pub(crate) struct TeeWriter {
    pub(crate) remote: Box<dyn BlobWriter>,
    pub(crate) local: Option<Box<dyn BlobWriter>>,
    pub(crate) tier: Arc<Local>,
    pub(crate) digest: Digest,
    pub(crate) written: u64,
}

#[async_trait]
impl BlobWriter for TeeWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.written += chunk.len() as u64;
        if let Some(local) = &mut self.local {
            if local.write(chunk.clone()).await.is_err() {
                self.local = None;
            }
        }
        self.remote.write(chunk).await
    }

    async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        let this = *self;
        let outcome = this.remote.commit().await?;
        if let Some(local) = this.local {
            match local.commit().await {
                Ok(_) => this.tier.held(&this.digest, this.written),
                Err(e) => {
                    tracing::warn!(digest = %this.digest, error = %e, "local tier: copy not kept");
                }
            }
        }
        Ok(outcome)
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        let this = *self;
        if let Some(local) = this.local {
            let _ = local.abort().await;
        }
        this.remote.abort().await
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        self.remote.flush().await
    }

    fn digest_checked_by_caller(&mut self) {
        self.remote.digest_checked_by_caller();
        if let Some(local) = &mut self.local {
            local.digest_checked_by_caller();
        }
    }
}
