//! The content-addressed blob store contract.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::{ByteRange, Digest, StorageError};

/// A stream of a blob's bytes, in order.
pub type BlobStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// What is known of a stored blob without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last read or written (coarse: backends may refresh it lazily).
    pub last_access: SystemTime,
}

/// One page of [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Blobs in ascending digest order (by their canonical string form).
    pub blobs: Vec<BlobMeta>,
    /// Pass this as `after` to get the next page; `None` on the last page.
    pub next: Option<Digest>,
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The blob is now stored, made visible by this writer.
    Stored,
    /// The blob was already stored; the written bytes were verified and then discarded.
    AlreadyExists,
}

/// Content-addressed, immutable blobs.
///
/// # Contract
/// - A blob is visible (to `head`, `get`, `list`) only after a writer for its digest has
///   committed, and then it is visible whole: never a partial blob, even after a crash.
/// - [`BlobWriter::commit`] verifies that the bytes written hash to the writer's digest (and
///   match the expected size, when one was given); on mismatch nothing becomes visible and
///   the commit returns [`StorageError::DigestMismatch`] or [`StorageError::SizeMismatch`].
///   One exception: after [`BlobWriter::digest_checked_by_caller`] the writer may skip the
///   hash, because its caller promised to commit only bytes it hashed and found matching
///   (the pull-through engine hashes every byte of a fill once, not twice); the size is
///   still checked.
/// - [`BlobWriter::flush`] returns once every byte written so far has left the writer's
///   buffers; it never makes a blob visible.
/// - [`BlobWriter::local_file`], when the backend writes a local file, is a read handle on
///   it: after `flush`, each byte written is readable through it at the offset it was
///   written at, and it stays readable, unchanged, after commit or abort for as long as the
///   handle is open. Backends without a local file return `None`.
/// - Committing a digest that is already stored succeeds ([`CommitOutcome::AlreadyExists`]).
/// - Dropping or aborting a writer leaves nothing behind that is visible.
/// - Several writers of one digest may run at once; all that verify succeed and exactly one
///   copy is visible afterwards.
/// - Deleting a missing digest succeeds.
/// - `get` of a missing blob is [`StorageError::NotFound`]; a range that does not overlap
///   the blob is [`StorageError::RangeNotSatisfiable`].
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size and last access of a stored blob, `None` if it is not stored.
    async fn head(&self, digest: &Digest) -> Result<Option<BlobMeta>, StorageError>;

    /// Streams the blob, or the part of it `range` selects. Returns the blob's total size
    /// and the resolved range along with the stream.
    async fn get(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, crate::ResolvedRange, BlobStream), StorageError>;

    /// Opens a writer for a blob that must hash to `digest` (and be `expected_size` bytes
    /// long, when given).
    async fn writer(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn BlobWriter>, StorageError>;

    /// Removes a blob. Succeeds when it is not stored.
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Lists stored blobs in ascending digest order, at most `limit` per page, starting
    /// after `after`.
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<ListPage, StorageError>;

    /// Records that the blob was just used (for least-recently-used eviction).
    async fn touch(&self, digest: &Digest) -> Result<(), StorageError>;

    /// The blob's last access as every process sharing this storage sees it (for an
    /// eviction that must not remove what another process reads), `None` if it is not
    /// stored. The default is [`BlobStore::head`]'s; a store with a private tier in front
    /// of shared storage asks the shared one.
    async fn last_access(&self, digest: &Digest) -> Result<Option<SystemTime>, StorageError> {
        Ok(self.head(digest).await?.map(|m| m.last_access))
    }

    /// For backends that keep each blob in a local file: the open file of a stored blob,
    /// with its metadata and the part `range` selects, so that a server can send it with
    /// `sendfile` instead of reading it into memory. The file holds exactly the blob's
    /// bytes and stays readable while open, even if the blob is deleted meanwhile. A
    /// missing blob and a range that does not overlap it fail as in [`BlobStore::get`].
    /// `Ok(None)` (the default) for backends without local files.
    async fn open_file(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<(BlobMeta, crate::ResolvedRange, std::fs::File)>, StorageError> {
        let _ = (digest, range);
        Ok(None)
    }
}

/// A streaming writer for one blob. See the [`BlobStore`] contract.
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends a chunk.
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError>;

    /// Appends several chunks, in order: the same as [`BlobWriter::write`] on each, which
    /// is what the default does. A backend may write them in one go (the filesystem
    /// backend makes one trip to the blocking pool for all of them).
    async fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), StorageError> {
        for chunk in chunks {
            self.write(chunk.clone()).await?;
        }
        Ok(())
    }

    /// Verifies what was written and makes the blob visible atomically.
    async fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError>;

    /// Discards what was written. Dropping the writer does the same, possibly later.
    async fn abort(self: Box<Self>) -> Result<(), StorageError>;

    /// For backends that write a local file: a read handle on it (see the contract). A
    /// pull-through fill then serves its clients from this file instead of keeping a second
    /// copy. `None` (the default) for backends without a local file.
    fn local_file(&self) -> Option<std::fs::File> {
        None
    }

    /// Writes out whatever the writer buffered, so [`BlobWriter::local_file`] shows it. The
    /// default does nothing (right for writers without a local file).
    async fn flush(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Tells the writer that its caller hashes every byte it writes and calls
    /// [`BlobWriter::commit`] only after that hash matched the digest (as the pull-through
    /// engine does), so the writer may skip hashing the same bytes a second time. `commit`
    /// still checks the size. Call it before the first write. The default ignores it and
    /// keeps checking the digest, which is always allowed.
    fn digest_checked_by_caller(&mut self) {}
}
