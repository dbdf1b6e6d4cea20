//! A fill's spool: where the bytes of a running fill are, for its readers. A window in
//! memory holds every batch from the moment it arrives until it is stored (and the latest
//! few MiB after), so readers that keep up never wait for the disk; behind the window, an
//! anonymous file (or the storage backend's own file) that readers read at their own
//! offsets, or, when the disk is full, a bounded buffer in memory.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use oci_cache_storage::page_cache;
use parking_lot::{Mutex, RwLock};

use super::memory_budget::{Held, MemoryBudget};
use crate::EngineError;

/// The spool, shared by the fill and its readers: the window in memory, and behind it an
/// anonymous file or (when the disk is full) a bounded buffer in memory.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    backing: Backing,
    window: Arc<Mutex<Window>>,
}

/// Bytes of stored batches the window keeps besides those not stored yet.
const RECENT_BYTES: usize = 4 * 1024 * 1024;

/// The chunks that arrived and are not stored yet, and the latest stored ones: readers
/// that keep up with the fill take them as they are, without waiting for the disk or
/// reading them back.
#[derive(Debug, Default)]
struct Window {
    batches: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// Bytes `0..stored` are in the backing; the window drops only those.
    stored: u64,
}

impl Window {
    /// Drops the oldest stored batches while the window holds more than [`RECENT_BYTES`].
    fn trim(&mut self) {
        while self.bytes > RECENT_BYTES {
            match self.batches.front() {
                Some((offset, batch)) if offset + batch.len() as u64 <= self.stored => {
                    self.bytes -= batch.len();
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }
}

/// Where a reader finds the bytes at its position.
pub(super) enum Recall {
    /// In the window: these bytes.
    Memory(Bytes),
    /// In the backing, up to (not including) this offset.
    Backing { end: u64 },
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
            window: Arc::default(),
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
            window: Arc::default(),
        }
    }

    /// Whether the bytes are kept in memory (charged to the shared budget as they are
    /// written), not in a file.
    pub(super) fn in_memory(&self) -> bool {
        matches!(self.backing, Backing::Memory { .. })
    }

    /// `backing`'s storage with this spool's window: for a fill that moves its bytes to
    /// another backing while batches that are not stored yet wait in the window.
    pub(super) fn moved_to(&self, backing: Spool) -> Spool {
        Spool {
            backing: backing.backing,
            window: Arc::clone(&self.window),
        }
    }

    /// Keeps `batch`, which just arrived and starts at `offset`, in the window until it is
    /// stored.
    pub(super) fn arrived(&self, offset: u64, batch: Bytes) {
        let mut window = self.window.lock();
        window.bytes += batch.len();
        window.batches.push_back((offset, batch));
        window.trim();
    }

    /// Notes that bytes `0..end` are in the backing now.
    pub(super) fn stored(&self, end: u64) {
        let mut window = self.window.lock();
        window.stored = window.stored.max(end);
        window.trim();
    }

    /// Where the bytes from `pos` (before `limit`, which no more than what arrived) are:
    /// in the window (up to the end of their batch), or in the backing up to where the
    /// window starts.
    pub(super) fn recall(&self, pos: u64, limit: u64) -> Recall {
        let window = self.window.lock();
        // The chunks are in offset order: the one holding `pos` is the last that starts at
        // or before it.
        let after = window.batches.partition_point(|(offset, _)| *offset <= pos);
        let found = after
            .checked_sub(1)
            .and_then(|i| window.batches.get(i))
            .filter(|(offset, batch)| pos < offset + batch.len() as u64);
        if let Some((offset, batch)) = found {
            let end = limit.min(offset + batch.len() as u64);
            // Both fit a usize: they lie within the batch.
            let (from, to) = ((pos - offset) as usize, (end - offset) as usize);
            if from < to {
                return Recall::Memory(batch.slice(from..to));
            }
        }
        let start = window.batches.front().map_or(limit, |(offset, _)| *offset);
        Recall::Backing {
            end: limit.min(start.max(pos)),
        }
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

    /// Writes `chunks`, one after the other, from `offset` on: into a file in one trip to
    /// the blocking pool, into memory under one lock (charged to the budget).
    pub(crate) async fn write_chunks_at(
        &self,
        offset: u64,
        chunks: &[Bytes],
    ) -> Result<(), EngineError> {
        match &self.backing {
            Backing::File(file) => {
                let file = Arc::clone(file);
                let chunks = chunks.to_vec();
                tokio::task::spawn_blocking(move || {
                    let mut pos = offset;
                    for chunk in &chunks {
                        file.write_all_at(chunk, pos)?;
                        pos += chunk.len() as u64;
                    }
                    Ok(())
                })
                .await
                .map_err(joined)?
                .map_err(EngineError::Spool)
            }
            Backing::Memory { bytes, held } => {
                let mut buf = bytes.write();
                let mut pos = offset;
                for chunk in chunks {
                    let end = pos + chunk.len() as u64;
                    if !held.grow(end.saturating_sub(buf.len() as u64)) {
                        return Err(EngineError::SpoolBudgetSpent {
                            limit: held.limit(),
                        });
                    }
                    let (start, end) = (pos as usize, end as usize);
                    if buf.len() < end {
                        buf.resize(end, 0);
                    }
                    buf[start..end].copy_from_slice(chunk);
                    pos = end as u64;
                }
                Ok(())
            }
        }
    }

    /// Writes `chunk` at `offset`.
    pub(crate) async fn write_at(&self, offset: u64, chunk: Bytes) -> Result<(), EngineError> {
        self.write_chunks_at(offset, std::slice::from_ref(&chunk))
            .await
    }

    pub(super) async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, EngineError> {
        match &self.backing {
            Backing::File(file) => {
                // What the fill just wrote is in the page cache: read here, without a trip
                // to the blocking pool; only the rest (if the kernel dropped it) there.
                page_cache::read_at(Arc::clone(file), offset, len)
                    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of any sizes, as the HTTP client reads them: a reader at any position gets
    /// the bytes of the chunk holding it, up to the limit; before the window (once stored
    /// chunks are trimmed) it is sent to the backing.
    #[test]
    fn the_window_finds_the_chunk_holding_any_position() {
        let spool = Spool::memory(&MemoryBudget::new(1 << 30));
        let sizes = [1usize, 7, 4096, 3, 65_536, 1, 1_000_000, 2, 3_500_000, 5];
        let mut all = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let chunk: Vec<u8> = (0..*size).map(|j| (i * 31 + j) as u8).collect();
            spool.arrived(all.len() as u64, Bytes::from(chunk.clone()));
            all.extend_from_slice(&chunk);
        }
        let total = all.len() as u64;
        let mut pos = 0u64;
        while pos < total {
            let Recall::Memory(bytes) = spool.recall(pos, total) else {
                panic!("position {pos} not in the window");
            };
            assert!(!bytes.is_empty());
            assert_eq!(&bytes[..], &all[pos as usize..pos as usize + bytes.len()]);
            pos += bytes.len() as u64;
        }
        // A limit inside a chunk cuts the answer there.
        let Recall::Memory(bytes) = spool.recall(5000, 5005) else {
            panic!("not in the window");
        };
        assert_eq!(&bytes[..], &all[5000..5005]);
        // Stored and trimmed: the first chunks leave the window (it keeps 4 MiB of stored
        // bytes), and their positions go to the backing.
        spool.stored(total);
        match spool.recall(0, total) {
            Recall::Backing { end } => assert!(end > 0 && end < total, "{end}"),
            Recall::Memory(_) => panic!("trimmed bytes are still in the window"),
        }
    }

    /// A group of chunks lands in order after what is there, in a file and in memory.
    #[tokio::test]
    async fn chunks_written_together_follow_each_other_in_file_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let budget = MemoryBudget::new(1 << 20);
        for spool in [Spool::create(dir.path()).unwrap(), Spool::memory(&budget)] {
            let all: Vec<u8> = (0..100_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
            spool
                .write_at(0, Bytes::copy_from_slice(&all[..1000]))
                .await
                .unwrap();
            let chunks: Vec<Bytes> = all[1000..]
                .chunks(33_333)
                .map(Bytes::copy_from_slice)
                .collect();
            spool.write_chunks_at(1000, &chunks).await.unwrap();
            let got = spool.read_at(0, all.len()).await.unwrap();
            assert!(got[..] == all[..], "memory: {}", spool.in_memory());
        }
    }

    /// Behind the window, a reader gets the file's bytes at its own offset, whether the
    /// page cache holds them (read on the runtime thread), none of them (the blocking
    /// pool), or the first part only (both, the rest from where the cached part ended).
    #[tokio::test]
    async fn reads_behind_the_window_give_the_files_bytes_cached_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::create(dir.path()).unwrap();
        let all: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for (i, part) in all.chunks(700_000).enumerate() {
            spool
                .write_at(i as u64 * 700_000, Bytes::copy_from_slice(part))
                .await
                .unwrap();
        }
        let Backing::File(file) = &spool.backing else {
            panic!("not a file spool");
        };
        let file = Arc::clone(file);
        let cached = |offset: u64, len: usize| {
            let mut buf = vec![0; len];
            page_cache::read_cached(&file, &mut buf, offset).unwrap()
        };
        let drop_pages = || {
            file.sync_all().unwrap();
            rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        };
        let reads = [
            (0, 10),
            (1, 65_536),
            (699_999, 2),
            (1_500_000, 600_000),
            (2_999_990, 10),
        ];
        let check = |what: &'static str| {
            let spool = spool.clone();
            let all = all.clone();
            async move {
                for (offset, len) in reads {
                    let got = spool.read_at(offset, len).await.unwrap();
                    let want = &all[offset as usize..offset as usize + len];
                    assert!(&got[..] == want, "{what}: bytes at {offset}+{len} differ");
                }
            }
        };
        assert_eq!(
            cached(1_500_000, 600_000),
            600_000,
            "written bytes not cached"
        );
        check("all cached").await;
        drop_pages();
        assert!(cached(1_500_000, 600_000) < 600_000, "pages not dropped");
        check("none cached").await;
        // Cache 1_500_000..1_800_000 only: the long read is cached for its first part.
        drop_pages();
        // No readahead: the read below caches what it reads and no more.
        rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::Random).unwrap();
        let mut head = vec![0; 300_000];
        file.read_exact_at(&mut head, 1_500_000).unwrap();
        let part = cached(1_500_000, 600_000);
        assert!((300_000..600_000).contains(&part), "cached part: {part}");
        check("part cached").await;
        assert!(
            spool.read_at(2_999_999, 2).await.is_err(),
            "a read past the end"
        );
    }
}
