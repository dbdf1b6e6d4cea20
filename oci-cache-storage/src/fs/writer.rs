//! The streaming blob writer of the filesystem backend.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::publish::{self, Mode};
use super::{blocking, Layout};
use crate::space::Ahead;
use crate::write_check::WriteCheck;
use crate::{BlobWriter, CommitOutcome, Digest, StorageError};

/// Small chunks are gathered up to this many bytes before one write to the file.
const BUFFER: usize = 256 * 1024;

/// Writes a blob to a temporary file in `tmp/`, hashing every chunk, and publishes it on
/// commit. Dropping it uncommitted removes the temporary file.
pub(super) struct FsWriter {
    /// `None` once a write failed or was cancelled: the file's content is then unknown and
    /// the writer can only be discarded.
    file: Option<File>,
    /// A read-only handle on the same file, for [`BlobWriter::local_file`].
    reader: File,
    /// The disk space reserved ahead of the writes (blobs of known size).
    ahead: Ahead,
    /// Bytes written to the file so far.
    written: u64,
    pending: BytesMut,
    temp: PathBuf,
    target: PathBuf,
    digest: Digest,
    expected_size: Option<u64>,
    check: WriteCheck,
    /// Set once the temporary file was published or removed.
    finished: bool,
}

fn broken() -> StorageError {
    StorageError::Io {
        op: "write blob",
        source: io::Error::other("an earlier write to this blob writer failed"),
    }
}

impl FsWriter {
    pub(super) async fn create(
        layout: &Layout,
        digest: &Digest,
        expected_size: Option<u64>,
    ) -> Result<Self, StorageError> {
        let temp = publish::temp_path(&layout.tmp, "blob");
        let path = temp.clone();
        let (file, reader, ahead) = blocking("create temp blob", move || {
            let file = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(StorageError::io("create temp blob"))?;
            let reader = File::open(&path).map_err(StorageError::io("open temp blob"))?;
            // A disk that cannot hold the blob's first step refuses it now, before a byte
            // is fetched (no `FsWriter` exists yet to remove the file when dropped).
            let mut ahead = Ahead::new(expected_size);
            if let Err(e) = ahead.before_write(&file, 0) {
                if let Err(e) = publish::remove_if_exists(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove temp blob");
                }
                return Err(StorageError::io("reserve space for blob")(e));
            }
            Ok((file, reader, ahead))
        })
        .await?;
        Ok(Self {
            file: Some(file),
            reader,
            ahead,
            written: 0,
            pending: BytesMut::new(),
            temp,
            target: layout.blob_path(digest),
            digest: digest.clone(),
            expected_size,
            check: WriteCheck::new(digest),
            finished: false,
        })
    }

    /// Writes the gathered bytes to the file.
    async fn flush_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = self.pending.split().freeze();
        self.write_out(data).await
    }

    /// Writes `data` to the file.
    async fn write_out(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.write_all(vec![data]).await
    }

    /// Writes every byte of `chunks`, in order, in one trip to the blocking pool, with the
    /// space for them reserved first.
    async fn write_all(&mut self, chunks: Vec<Bytes>) -> Result<(), StorageError> {
        let mut file = self.file.take().ok_or_else(broken)?;
        let mut ahead = self.ahead;
        let end = self.written + chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        let (file, ahead) = blocking("write blob", move || {
            ahead
                .before_write(&file, end)
                .map_err(StorageError::io("reserve space for blob"))?;
            write_all_vectored(&mut file, &chunks).map_err(StorageError::io("write blob"))?;
            Ok((file, ahead))
        })
        .await?;
        self.file = Some(file);
        self.ahead = ahead;
        self.written = end;
        Ok(())
    }
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if self.file.is_none() {
            return Err(broken());
        }
        self.check.update(&chunk);
        if self.pending.is_empty() && chunk.len() >= BUFFER {
            // A large chunk goes to the file as it is, without a copy.
            return self.write_out(chunk).await;
        }
        self.pending.extend_from_slice(&chunk);
        if self.pending.len() >= BUFFER {
            self.flush_pending().await?;
        }
        Ok(())
    }

    /// Every chunk (after what was pending) in one trip to the blocking pool, in vectored
    /// writes: a cold fill hands over a batch of a few chunks per MiB (many more over TLS,
    /// 16 KiB each), and each trip costs two context switches.
    async fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<(), StorageError> {
        if chunks.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            return Err(broken());
        }
        let mut out = Vec::with_capacity(chunks.len() + 1);
        if !self.pending.is_empty() {
            out.push(self.pending.split().freeze());
        }
        for chunk in chunks {
            self.check.update(chunk);
            out.push(chunk.clone());
        }
        self.write_all(out).await
    }

    async fn commit(mut self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        self.flush_pending().await?;
        self.check.check(&self.digest, self.expected_size)?;
        let file = self.file.take().ok_or_else(broken)?;
        let (temp, target) = (self.temp.clone(), self.target.clone());
        let outcome = blocking("commit blob", move || {
            publish::publish(file, &temp, &target, Mode::NoClobber)
                .map_err(StorageError::io("commit blob"))
        })
        .await?;
        self.finished = true;
        Ok(outcome)
    }

    fn local_file(&self) -> Option<File> {
        self.reader.try_clone().ok()
    }

    async fn flush(&mut self) -> Result<(), StorageError> {
        self.flush_pending().await
    }

    fn digest_checked_by_caller(&mut self) {
        self.check.skip_digest();
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        drop(self.file.take());
        let temp = self.temp.clone();
        blocking("abort blob", move || {
            publish::remove_if_exists(&temp).map_err(StorageError::io("remove temp blob"))
        })
        .await?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.finished {
            drop(self.file.take());
            if let Err(e) = publish::remove_if_exists(&self.temp) {
                tracing::warn!(path = %self.temp.display(), error = %e, "cannot remove temp blob");
            }
        }
    }
}

/// Writes every byte of `chunks`, in order, with as few `writev` calls as the kernel takes.
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
