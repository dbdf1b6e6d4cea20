//! A fill's spool: where the bytes of a running fill are, for its readers. An anonymous
//! file (or the storage backend's own file) that readers read at their own offsets, with
//! the latest batches kept in memory; or, when the disk is full, a bounded buffer in memory.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};

use super::memory_budget::{Held, MemoryBudget};
use crate::EngineError;

/// The spool, shared by the fill and its readers: an anonymous file, or (when the disk is
/// full) a bounded buffer in memory.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    backing: Backing,
    recent: Arc<Mutex<Recent>>,
}

/// Bytes of the latest batches a file spool keeps in memory.
const RECENT_BYTES: usize = 4 * 1024 * 1024;

/// The latest batches written to a file spool, kept so readers that keep up with the fill
/// take them as they are instead of reading them back from the file.
#[derive(Debug, Default)]
struct Recent {
    batches: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

#[derive(Debug, Clone)]
enum Backing {
    File(Arc<File>),
    Memory {
        bytes: Arc<RwLock<Vec<u8>>>,
        held: Arc<Held>,
    },
}

fn joined(_: tokio::task::JoinError) -> EngineError {
    EngineError::TaskLost { task: "spool I/O" }
}

impl Spool {
    /// Creates an anonymous (already unlinked) file in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Self, EngineError> {
        let file = tempfile::tempfile_in(dir).map_err(EngineError::Spool)?;
        Ok(Self::from_file(file))
    }

    /// Uses a file some other writer fills (a storage backend's temp file).
    pub(crate) fn from_file(file: File) -> Self {
        Self {
            backing: Backing::File(Arc::new(file)),
            recent: Arc::default(),
        }
    }

    /// A spool in memory that refuses to grow past what `budget` (shared by all memory
    /// spools) has left: the last resort when the disk is full, so a pull is served through
    /// rather than failed.
    pub(crate) fn memory(budget: &Arc<MemoryBudget>) -> Self {
        Self {
            backing: Backing::Memory {
                bytes: Arc::default(),
                held: Arc::new(MemoryBudget::hold(budget)),
            },
            recent: Arc::default(),
        }
    }

    /// Keeps `batch`, just written at `offset`, in memory for the readers that follow
    /// (file spools only; the oldest batches are dropped past [`RECENT_BYTES`]).
    pub(crate) fn remember(&self, offset: u64, batch: Bytes) {
        if matches!(self.backing, Backing::Memory { .. }) {
            return;
        }
        let mut recent = self.recent.lock();
        recent.bytes += batch.len();
        recent.batches.push_back((offset, batch));
        while recent.bytes > RECENT_BYTES && recent.batches.len() > 1 {
            if let Some((_, old)) = recent.batches.pop_front() {
                recent.bytes -= old.len();
            }
        }
    }

    /// The bytes from `pos` up to `limit` (or the end of their batch, if sooner) when they
    /// are still in memory.
    pub(super) fn recall(&self, pos: u64, limit: u64) -> Option<Bytes> {
        let recent = self.recent.lock();
        let (offset, batch) = recent
            .batches
            .iter()
            .find(|(offset, batch)| *offset <= pos && pos < offset + batch.len() as u64)?;
        let end = limit.min(offset + batch.len() as u64);
        let from = usize::try_from(pos - offset).ok()?;
        let to = usize::try_from(end - offset).ok()?;
        (from < to).then(|| batch.slice(from..to))
    }

    /// Copies this spool's first `len` bytes into `to`.
    pub(crate) async fn copy_into(&self, to: &Spool, len: u64) -> Result<(), EngineError> {
        const STEP: u64 = 1024 * 1024;
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(STEP);
            let bytes = self.read_at(pos, n as usize).await?;
            to.write_at(pos, bytes).await?;
            pos += n;
        }
        Ok(())
    }

    /// Writes `chunk` at `offset`.
    pub(crate) async fn write_at(&self, offset: u64, chunk: Bytes) -> Result<(), EngineError> {
        match &self.backing {
            Backing::File(file) => {
                let file = Arc::clone(file);
                tokio::task::spawn_blocking(move || file.write_all_at(&chunk, offset))
                    .await
                    .map_err(joined)?
                    .map_err(EngineError::Spool)
            }
            Backing::Memory { bytes, held } => {
                let end = offset + chunk.len() as u64;
                let mut buf = bytes.write();
                if !held.grow(end.saturating_sub(buf.len() as u64)) {
                    return Err(EngineError::SpoolBudgetSpent {
                        limit: held.limit(),
                    });
                }
                let (start, end) = (offset as usize, end as usize);
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[start..end].copy_from_slice(&chunk);
                Ok(())
            }
        }
    }

    pub(super) async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, EngineError> {
        match &self.backing {
            Backing::File(file) => {
                let file = Arc::clone(file);
                // Allocated on this (runtime) thread: see the fs backend's `stream_file`.
                let mut buf = BytesMut::zeroed(len);
                tokio::task::spawn_blocking(move || {
                    file.read_exact_at(&mut buf, offset).map(|()| buf.freeze())
                })
                .await
                .map_err(joined)?
                .map_err(EngineError::Spool)
            }
            Backing::Memory { bytes, .. } => {
                let buf = bytes.read();
                let start = offset as usize;
                buf.get(start..start + len)
                    .map(Bytes::copy_from_slice)
                    .ok_or(EngineError::SpoolTooShort {
                        offset,
                        len,
                        held: buf.len() as u64,
                    })
            }
        }
    }
}
