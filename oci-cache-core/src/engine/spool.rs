//! A fill's spool: an anonymous file the fill appends to and every reader reads from at its
//! own offset, so any number of clients follow one upstream download as it grows.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use tokio::sync::watch;

use super::fill::Progress;
use super::memory_budget::Held;
pub(crate) use super::memory_budget::MemoryBudget;
use super::BlobBody;
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

fn joined(e: tokio::task::JoinError) -> EngineError {
    EngineError::Spool(std::io::Error::other(e))
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
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
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
    fn recall(&self, pos: u64, limit: u64) -> Option<Bytes> {
        let recent = self.recent.lock().ok()?;
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
                let mut buf = bytes.write().map_err(|_| {
                    EngineError::Spool(std::io::Error::other("spool lock poisoned"))
                })?;
                if !held.grow(end.saturating_sub(buf.len() as u64)) {
                    return Err(EngineError::Spool(std::io::Error::other(format!(
                        "disk full and the memory spools' budget of {} bytes is spent",
                        held.limit()
                    ))));
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

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, EngineError> {
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
                let buf = bytes.read().map_err(|_| {
                    EngineError::Spool(std::io::Error::other("spool lock poisoned"))
                })?;
                let start = offset as usize;
                buf.get(start..start + len)
                    .map(Bytes::copy_from_slice)
                    .ok_or_else(|| {
                        EngineError::Spool(std::io::Error::other("read past the memory spool"))
                    })
            }
        }
    }
}

/// Where a fill's readers read: set before the fill reports streaming; replaced (with a
/// copy) if the storage file the fill wrote into fails.
pub(crate) type SpoolSlot = Arc<RwLock<Option<Spool>>>;

struct ReadState {
    spool: SpoolSlot,
    progress: watch::Receiver<Progress>,
    pos: u64,
    end: Option<u64>,
    chunk: u64,
    finished: bool,
}

/// Streams `start..end` (or to the end of the blob) from a running or finished fill. The
/// final byte of the blob is only released once the fill has verified the digest, so a
/// client never receives a complete-looking body that failed verification.
pub(crate) fn read(
    spool: SpoolSlot,
    progress: watch::Receiver<Progress>,
    start: u64,
    end: Option<u64>,
    chunk: usize,
) -> BlobBody {
    let state = ReadState {
        spool,
        progress,
        pos: start,
        end,
        chunk: chunk as u64,
        finished: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        match next_chunk(&mut st).await {
            Ok(Some(bytes)) => Some((Ok(bytes), st)),
            Ok(None) => None,
            Err(e) => {
                st.finished = true;
                Some((Err(e), st))
            }
        }
    }))
}

async fn next_chunk(st: &mut ReadState) -> Result<Option<Bytes>, EngineError> {
    loop {
        let progress = st.progress.borrow_and_update().clone();
        let (readable, size, done) = match progress {
            Progress::Connecting => (0, None, false),
            Progress::Streaming { size, written } => {
                // Hold back the blob's last byte until it is verified.
                let limit = size.map_or(written, |s| written.min(s.saturating_sub(1)));
                (limit, size, false)
            }
            Progress::Done { size } => (size, Some(size), true),
            Progress::Failed(e) => return Err(EngineError::Shared(e)),
        };
        let end = st.end.or(if done { size } else { None });
        if end.is_some_and(|e| st.pos >= e) {
            return Ok(None);
        }
        let limit = end.map_or(readable, |e| readable.min(e));
        if limit > st.pos {
            let len = (limit - st.pos).min(st.chunk) as usize;
            let spool = st
                .spool
                .read()
                .ok()
                .and_then(|s| s.clone())
                .ok_or_else(|| {
                    EngineError::Spool(std::io::Error::other("fill streaming without a spool"))
                })?;
            let bytes = match spool.recall(st.pos, limit) {
                Some(bytes) => bytes,
                None => spool.read_at(st.pos, len).await?,
            };
            st.pos += bytes.len() as u64;
            return Ok(Some(bytes));
        }
        if done {
            // The fill finished short of the range's end: the range lies past the blob.
            return Err(EngineError::RangeNotSatisfiable {
                size: size.unwrap_or(0),
            });
        }
        if st.progress.changed().await.is_err() {
            return Err(EngineError::Spool(std::io::Error::other(
                "fill ended without a result",
            )));
        }
    }
}
