//! Copies into the local tier: a remote read copied as it streams to its reader, and a
//! write that goes to the remote store and the local tier at once. A copy of a read is best
//! effort (a slow or failing local disk never slows or fails the reader); a write's local
//! copy is best effort until its file is lent (see [`TeeWriter`]). Either becomes visible
//! only when its bytes were verified against the digest.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::local::CopyGuard;
use super::upload::Uploader;
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

/// Writes a blob to the local tier and to the remote store. The remote commit decides the
/// outcome; the local copy is kept only after it.
///
/// - The local copy's file is also the writer's [`BlobWriter::local_file`], so a fill
///   serves its readers from it instead of writing a spool file of its own (one disk write
///   per cold byte, not two).
/// - The remote store is fed from that file by an [`Uploader`] task, behind the writes: a
///   slow or failing remote store never holds back the writer (nor the fill's readers);
///   the bytes wait on the local disk. The commit waits for the upload.
/// - A local failure before the file was lent ends the local copy (the remote store gets
///   the rest directly); after, it fails the write (the file's reader would miss bytes; the
///   fill then serves without storing, in the bucket too).
/// - A remote failure fails only the commit, once the upload runs behind or the file was
///   lent; before, the write.
pub(crate) struct TeeWriter {
    remote: Remote,
    /// The local writer and the copy it makes, while the local disk keeps up.
    local: Option<(Box<dyn BlobWriter>, CopyGuard)>,
    /// Whether the local file was handed out by [`BlobWriter::local_file`].
    lent: AtomicBool,
    /// Bytes written to the local writer.
    written: u64,
    /// Bytes flushed to the local file and handed to the upload.
    published: u64,
    /// The chunks written since the last publication (the remote store's, should the local
    /// copy fail before they reach the file).
    unpublished: Vec<Bytes>,
    /// Whether the remote store was given bytes directly (then no upload from the file).
    remote_fed: bool,
}

/// The remote store's side of a [`TeeWriter`].
enum Remote {
    /// Written by the tee itself (no local file to upload from, or the local copy ended).
    Direct(Box<dyn BlobWriter>),
    /// Uploaded from the local file, behind the writes.
    Behind(Uploader),
    /// Failed after the local file was lent: the commit's error.
    Failed(StorageError),
    /// Between two states (after an error on the way).
    Gone,
}

/// Unpublished bytes, at most, before a writer whose file was not lent publishes them.
const PUBLISH_EVERY: u64 = 4 << 20;

fn gone() -> StorageError {
    StorageError::Io {
        op: "write blob",
        source: std::io::Error::other("the writer failed earlier"),
    }
}

impl TeeWriter {
    /// Writes to `remote` and, when given, to the local copy `local`.
    pub(crate) fn new(
        remote: Box<dyn BlobWriter>,
        local: Option<(Box<dyn BlobWriter>, CopyGuard)>,
    ) -> Self {
        Self {
            remote: Remote::Direct(remote),
            local,
            lent: AtomicBool::new(false),
            written: 0,
            published: 0,
            unpublished: Vec::new(),
            remote_fed: false,
        }
    }

    fn is_lent(&self) -> bool {
        self.lent.load(Ordering::Acquire)
    }

    /// Writes `chunk` to the remote store directly (when it is the tee's own to write).
    async fn write_remote(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let written = match &mut self.remote {
            Remote::Direct(w) => w.write(chunk).await,
            Remote::Failed(_) => return Ok(()),
            Remote::Behind(_) | Remote::Gone => return Err(gone()),
        };
        self.remote_result(written)
    }

    /// What a remote failure means: once the local file was lent (and the local copy goes
    /// on), the commit's error; else the write's.
    fn remote_result(&mut self, result: Result<(), StorageError>) -> Result<(), StorageError> {
        match result {
            Err(e) if self.is_lent() && self.local.is_some() => {
                tracing::warn!(error = %e, "shared store failed; the blob goes on for its readers but will not be stored");
                self.remote = Remote::Failed(e);
                Ok(())
            }
            other => other,
        }
    }

    /// Flushes the local copy and hands what it holds to the upload.
    async fn flush_local(&mut self) -> Result<(), StorageError> {
        let Some((local, _)) = &mut self.local else {
            return Ok(());
        };
        if let Err(e) = local.flush().await {
            return self.local_failed(e, None).await;
        }
        let chunks = std::mem::take(&mut self.unpublished);
        self.published = self.written;
        if let Remote::Direct(_) = &self.remote {
            // The upload starts from the file's first byte: only while the remote store has
            // been given nothing directly, and inside a runtime (it is a task).
            let file = if self.remote_fed || tokio::runtime::Handle::try_current().is_err() {
                None
            } else {
                self.local.as_ref().and_then(|(l, _)| l.local_file())
            };
            if let Some(file) = file {
                if let Remote::Direct(w) = std::mem::replace(&mut self.remote, Remote::Gone) {
                    self.remote = Remote::Behind(Uploader::start(w, file));
                }
            } else {
                self.remote_fed = true;
                for chunk in chunks {
                    self.write_remote(chunk).await?;
                }
            }
        }
        if let Remote::Behind(upload) = &self.remote {
            upload.publish(self.published);
        }
        Ok(())
    }

    /// The local copy failed with `e` (at `chunk`, when a write failed): an error once its
    /// file was lent; before, the copy ends and the remote store gets the rest directly.
    async fn local_failed(
        &mut self,
        e: StorageError,
        chunk: Option<Bytes>,
    ) -> Result<(), StorageError> {
        if self.is_lent() {
            return Err(e);
        }
        tracing::debug!(error = %e, "local tier: copy given up");
        self.local = None;
        match std::mem::replace(&mut self.remote, Remote::Gone) {
            Remote::Behind(upload) => {
                self.remote = Remote::Direct(upload.finish(self.published).await?);
            }
            other => self.remote = other,
        }
        let rest = std::mem::take(&mut self.unpublished);
        for chunk in rest.into_iter().chain(chunk) {
            self.write_remote(chunk).await?;
        }
        Ok(())
    }

    async fn abort_local(&mut self) {
        if let Some((local, _guard)) = self.local.take() {
            let _ = local.abort().await;
        }
    }
}

#[async_trait]
impl BlobWriter for TeeWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let Some((local, _)) = &mut self.local else {
            return self.write_remote(chunk).await;
        };
        if let Err(e) = local.write(chunk.clone()).await {
            return self.local_failed(e, Some(chunk)).await;
        }
        self.written += chunk.len() as u64;
        self.unpublished.push(chunk);
        if self.written - self.published >= PUBLISH_EVERY {
            self.flush_local().await?;
        }
        Ok(())
    }

    /// The group goes to the local copy in one call (the filesystem writer's single trip
    /// to the blocking pool). If that fails, the local copy's content is unknown: as with
    /// [`BlobWriter::write`], it is given up (unless its file was lent) and the remote
    /// store gets what it lacks, the whole group included, in order.
    async fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), StorageError> {
        let Some((local, _)) = &mut self.local else {
            for chunk in chunks {
                self.write_remote(chunk.clone()).await?;
            }
            return Ok(());
        };
        if let Err(e) = local.write_chunks(chunks).await {
            self.local_failed(e, None).await?;
            for chunk in chunks {
                self.write_remote(chunk.clone()).await?;
            }
            return Ok(());
        }
        for chunk in chunks {
            self.written += chunk.len() as u64;
            self.unpublished.push(chunk.clone());
        }
        if self.written - self.published >= PUBLISH_EVERY {
            self.flush_local().await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        let mut this = *self;
        this.flush_local().await?;
        let remote = match std::mem::replace(&mut this.remote, Remote::Gone) {
            Remote::Direct(w) => Ok(w),
            Remote::Behind(upload) => upload.finish(this.published).await,
            Remote::Failed(e) => Err(e),
            Remote::Gone => Err(gone()),
        };
        let outcome = match remote {
            Ok(w) => w.commit().await,
            Err(e) => Err(e),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                this.abort_local().await;
                return Err(e);
            }
        };
        if let Some((local, guard)) = this.local.take() {
            match local.commit().await {
                Ok(_) => guard.kept(),
                Err(e) => tracing::warn!(error = %e, "local tier: copy not kept"),
            }
        }
        Ok(outcome)
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        let mut this = *self;
        this.abort_local().await;
        match std::mem::replace(&mut this.remote, Remote::Gone) {
            Remote::Direct(w) => w.abort().await,
            // Dropping the upload drops the remote writer, which discards what it wrote.
            Remote::Behind(_) | Remote::Failed(_) | Remote::Gone => Ok(()),
        }
    }

    fn local_file(&self) -> Option<std::fs::File> {
        let file = self.local.as_ref()?.0.local_file()?;
        self.lent.store(true, Ordering::Release);
        Some(file)
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        self.flush_local().await?;
        let flushed = match &mut self.remote {
            Remote::Direct(w) => w.flush().await,
            _ => return Ok(()),
        };
        self.remote_result(flushed)
    }

    fn digest_checked_by_caller(&mut self) {
        if let Remote::Direct(w) = &mut self.remote {
            w.digest_checked_by_caller();
        }
        if let Some((local, _)) = &mut self.local {
            local.digest_checked_by_caller();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::FileExt;
    use std::time::Duration;

    use super::*;
    use crate::memory::MemoryStore;
    use crate::tiered::local::Local;
    use crate::{BlobStore, Digest};

    /// A writer that fails at every write: a full local disk (with its file) or an S3
    /// that is down (without).
    struct Failing(Option<std::fs::File>);

    #[async_trait]
    impl BlobWriter for Failing {
        async fn write(&mut self, _: Bytes) -> Result<(), StorageError> {
            Err(StorageError::io("write blob")(std::io::Error::other(
                "failing on purpose",
            )))
        }
        async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
            Ok(CommitOutcome::Stored)
        }
        async fn abort(self: Box<Self>) -> Result<(), StorageError> {
            Ok(())
        }
        fn local_file(&self) -> Option<std::fs::File> {
            self.0.as_ref()?.try_clone().ok()
        }
    }

    /// A remote store that takes each write only when the gate lets it through.
    struct GatedRemote {
        inner: Box<dyn BlobWriter>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    #[async_trait]
    impl BlobWriter for GatedRemote {
        async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
            self.gate.acquire().await.unwrap().forget();
            self.inner.write(chunk).await
        }
        async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
            self.inner.commit().await
        }
        async fn abort(self: Box<Self>) -> Result<(), StorageError> {
            self.inner.abort().await
        }
    }

    async fn local_tier(dir: &std::path::Path) -> Arc<Local> {
        Arc::new(Local::open(dir, 1 << 30).await.unwrap())
    }

    /// A tee into `remote` with a local copy on the tier's own disk (or `local` instead).
    async fn tee(
        tier: &Arc<Local>,
        digest: &Digest,
        size: u64,
        remote: Box<dyn BlobWriter>,
        local: Option<Box<dyn BlobWriter>>,
    ) -> TeeWriter {
        assert!(tier.begin_copy(digest, size));
        let local = match local {
            Some(l) => l,
            None => BlobStore::writer(&tier.store, digest, Some(size))
                .await
                .unwrap(),
        };
        let guard = CopyGuard {
            local: Arc::clone(tier),
            digest: digest.clone(),
            ended: false,
        };
        TeeWriter::new(remote, Some((local, guard)))
    }

    /// Before its file was handed out, a failing local disk ends only the local copy (the
    /// remote store gets every byte); after, it fails the write: a reader of that file
    /// would miss the bytes.
    #[tokio::test]
    async fn a_local_failure_fails_the_write_only_once_the_local_file_was_lent() {
        let dir = tempfile::tempdir().unwrap();
        let tier = local_tier(dir.path()).await;
        let digest = Digest::sha256_of(b"abc");
        let shared = MemoryStore::default();
        let disk = || Some(Box::new(Failing(Some(tempfile::tempfile().unwrap()))) as _);

        let remote = shared.writer(&digest, Some(3)).await.unwrap();
        let mut quiet = tee(&tier, &digest, 3, remote, disk()).await;
        quiet.write(Bytes::from_static(b"abc")).await.unwrap();
        assert!(quiet.local.is_none(), "the failed local copy goes on");
        assert!(quiet.local_file().is_none());
        assert_eq!(
            Box::new(quiet).commit().await.unwrap(),
            CommitOutcome::Stored
        );
        assert!(shared.head(&digest).await.unwrap().is_some());

        let remote = shared.writer(&digest, Some(3)).await.unwrap();
        let mut lent = tee(&tier, &digest, 3, remote, disk()).await;
        assert!(lent.local_file().is_some());
        assert!(lent.write(Bytes::from_static(b"abc")).await.is_err());
    }

    /// A group of chunks that fails on the local disk after earlier bytes went there: the
    /// remote store still gets every byte in order (those not yet handed to it, then the
    /// group) and the commit stores the blob; once the local file was lent, the group's
    /// write fails instead.
    #[tokio::test]
    async fn a_group_failing_on_the_local_disk_reaches_the_remote_store_whole() {
        let dir = tempfile::tempdir().unwrap();
        let tier = local_tier(dir.path()).await;
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256_of(&bytes);
        let group: Vec<Bytes> = bytes[100_000..]
            .chunks(70_000)
            .map(Bytes::copy_from_slice)
            .collect();
        for lend in [false, true] {
            let shared = MemoryStore::default();
            let remote = shared.writer(&digest, Some(300_000)).await.unwrap();
            let local = Quirky {
                chunk_calls: Some(1),
                ..Quirky::over(&tier, &digest, 300_000).await
            };
            let mut w = tee(&tier, &digest, 300_000, remote, Some(Box::new(local))).await;
            let _file = if lend { w.local_file() } else { None };
            w.write_chunks(&[Bytes::copy_from_slice(&bytes[..100_000])])
                .await
                .unwrap();
            // Flushed: without a lent file, the upload from the file starts here, and the
            // failure below must finish it before the bucket gets the group directly.
            w.flush().await.unwrap();
            let written = w.write_chunks(&group).await;
            if lend {
                assert!(written.is_err(), "a lent file would miss the group");
                continue;
            }
            written.unwrap();
            assert!(w.local.is_none(), "the failed local copy goes on");
            assert_eq!(Box::new(w).commit().await.unwrap(), CommitOutcome::Stored);
            let mut read = Vec::new();
            let (_, _, mut stream) = shared.get(&digest, None).await.unwrap();
            while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                read.extend_from_slice(&chunk.unwrap());
            }
            assert!(read == bytes, "the remote store's copy differs");
        }
    }

    /// A local writer that delegates to `inner`, with two faults: `write_chunks` fails
    /// once `chunk_calls` successful calls are used up (never when `None`), and
    /// `local_file` gives no file for the first `file_refusals` asks (say, out of
    /// descriptors).
    struct Quirky {
        inner: Box<dyn BlobWriter>,
        chunk_calls: Option<usize>,
        file_refusals: std::sync::atomic::AtomicUsize,
    }

    impl Quirky {
        async fn over(tier: &Local, digest: &Digest, size: u64) -> Self {
            Self {
                inner: BlobStore::writer(&tier.store, digest, Some(size))
                    .await
                    .unwrap(),
                chunk_calls: None,
                file_refusals: std::sync::atomic::AtomicUsize::new(0),
            }
        }
    }

    #[async_trait]
    impl BlobWriter for Quirky {
        async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
            self.inner.write(chunk).await
        }
        async fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), StorageError> {
            if let Some(calls) = &mut self.chunk_calls {
                if *calls == 0 {
                    return Err(StorageError::io("write blob")(std::io::Error::other(
                        "failing on purpose",
                    )));
                }
                *calls -= 1;
            }
            self.inner.write_chunks(chunks).await
        }
        async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
            self.inner.commit().await
        }
        async fn abort(self: Box<Self>) -> Result<(), StorageError> {
            self.inner.abort().await
        }
        async fn flush(&mut self) -> Result<(), StorageError> {
            self.inner.flush().await
        }
        fn local_file(&self) -> Option<std::fs::File> {
            let left = self.file_refusals.load(Ordering::SeqCst);
            if left > 0 {
                self.file_refusals.store(left - 1, Ordering::SeqCst);
                return None;
            }
            self.inner.local_file()
        }
    }

    /// A remote failure never fails a write: the local file goes on growing for its
    /// readers, and the commit fails with it (nothing kept locally either).
    #[tokio::test]
    async fn a_remote_failure_fails_the_commit_not_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        let tier = local_tier(dir.path()).await;
        let digest = Digest::sha256_of(b"abcdef");
        for lend in [false, true] {
            let mut w = tee(&tier, &digest, 6, Box::new(Failing(None)), None).await;
            let file = if lend { w.local_file() } else { None };
            w.write(Bytes::from_static(b"abc")).await.unwrap();
            w.flush().await.unwrap();
            w.write(Bytes::from_static(b"def")).await.unwrap();
            w.flush().await.unwrap();
            if let Some(file) = file {
                let mut read = [0u8; 6];
                file.read_exact_at(&mut read, 0).unwrap();
                assert_eq!(&read, b"abcdef");
            }
            assert!(Box::new(w).commit().await.is_err(), "lent: {lend}");
            assert!(
                !tier.holds(&digest),
                "a copy the shared store lacks was kept"
            );
        }
    }

    /// The writer never waits for the remote store: 16 MiB are written and readable in
    /// the local file while the remote store has taken nothing; the commit waits for the
    /// upload, and the remote store then holds every byte, in order.
    #[tokio::test]
    async fn a_stalled_remote_store_never_holds_back_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let tier = local_tier(dir.path()).await;
        let data: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
        let digest = Digest::sha256_of(&data);
        let size = data.len() as u64;
        let shared = MemoryStore::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let remote = Box::new(GatedRemote {
            inner: shared.writer(&digest, Some(size)).await.unwrap(),
            gate: Arc::clone(&gate),
        });
        let mut w = tee(&tier, &digest, size, remote, None).await;
        w.digest_checked_by_caller();
        let file = w.local_file().expect("the local file");
        let wrote = tokio::time::timeout(Duration::from_secs(60), async {
            for chunk in data.chunks(1 << 20) {
                w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
                w.flush().await.unwrap();
            }
        })
        .await;
        assert!(wrote.is_ok(), "the writes waited for the remote store");
        let mut read = vec![0u8; data.len()];
        file.read_exact_at(&mut read, 0).unwrap();
        assert!(
            read == data,
            "the local file does not hold the bytes written"
        );
        assert!(shared.head(&digest).await.unwrap().is_none());
        gate.add_permits(1 << 20);
        assert_eq!(Box::new(w).commit().await.unwrap(), CommitOutcome::Stored);
        let (_, _, stream) = BlobStore::get(&shared, &digest, None).await.unwrap();
        let stored: Vec<u8> = crate::conformance::read_all(stream).await;
        assert!(stored == data, "the remote store holds other bytes");
        assert!(tier.holds(&digest), "the local copy was not kept");
    }

    /// Once the remote store was given bytes directly (no local file to upload from at
    /// the time), no upload from the file starts later: it would send the first bytes
    /// twice.
    #[tokio::test]
    async fn no_upload_from_the_file_after_direct_writes() {
        let dir = tempfile::tempdir().unwrap();
        let tier = local_tier(dir.path()).await;
        let data: Vec<u8> = (0..10u32 << 20).map(|i| (i % 253) as u8).collect();
        let digest = Digest::sha256_of(&data);
        let size = data.len() as u64;
        let shared = MemoryStore::default();
        let remote = shared.writer(&digest, Some(size)).await.unwrap();
        let local = Quirky {
            file_refusals: std::sync::atomic::AtomicUsize::new(1),
            ..Quirky::over(&tier, &digest, size).await
        };
        let mut w = tee(&tier, &digest, size, remote, Some(Box::new(local))).await;
        for chunk in data.chunks(1 << 20) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert_eq!(Box::new(w).commit().await.unwrap(), CommitOutcome::Stored);
        let (_, _, stream) = BlobStore::get(&shared, &digest, None).await.unwrap();
        let stored: Vec<u8> = crate::conformance::read_all(stream).await;
        assert!(stored == data, "the remote store holds other bytes");
    }
}
