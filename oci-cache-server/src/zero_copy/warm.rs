//! Keeping the disk off the runtime's threads: `sendfile` reads whatever the page cache
//! lacks synchronously, on the thread that calls it. Before each `sendfile` the part to go
//! out is checked in the page cache (its first and last page, with `RWF_NOWAIT` reads of one
//! byte); a part that is not there is read through the page cache on the blocking pool
//! first, 64 KiB at a time, and only then sent. A part evicted again meanwhile goes out
//! anyway rather than being read again (progress over a thrashing cache).

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use oci_cache_storage::page_cache;
use tokio::task::JoinHandle;

/// Buffer of a read that brings a part into the page cache.
const READ_BUF: usize = 64 * 1024;

/// Parts read into the page cache before `sendfile` sent them, by every connection since
/// start.
static WARM_READS: AtomicU64 = AtomicU64::new(0);

/// Parts of cached blobs read from the disk into the page cache on the blocking pool before
/// `sendfile` sent them (the `oci_cache_zero_copy_disk_reads_total` metric).
pub(crate) fn warm_reads() -> u64 {
    WARM_READS.load(Ordering::Relaxed)
}

/// What a connection knows of the page cache for the part it is sending.
#[derive(Default)]
pub(super) struct Warm {
    /// The part's bytes before this file offset are in the page cache: checked, or read
    /// into it (not checked again, so a part evicted meanwhile still makes progress).
    until: u64,
    /// A read into the page cache on the blocking pool, and the offset it ends at.
    reading: Option<(JoinHandle<io::Result<()>>, u64)>,
}

impl Warm {
    /// Ready once `count` bytes of `file` from `offset` are in the page cache, or were read
    /// into it; the read's error, if it failed.
    pub(super) fn poll_resident(
        &mut self,
        cx: &mut Context<'_>,
        file: &Arc<File>,
        offset: u64,
        count: usize,
    ) -> Poll<io::Result<()>> {
        let end = offset + count as u64;
        loop {
            if let Some((task, read_end)) = &mut self.reading {
                let read = std::task::ready!(Pin::new(task).poll(cx));
                self.until = self.until.max(*read_end);
                self.reading = None;
                read.map_err(io::Error::other).and_then(|r| r)?;
            }
            if count == 0 || end <= self.until {
                return Poll::Ready(Ok(()));
            }
            if resident(file, offset, count) {
                self.until = end;
                return Poll::Ready(Ok(()));
            }
            WARM_READS.fetch_add(1, Ordering::Relaxed);
            let file = Arc::clone(file);
            let read = tokio::task::spawn_blocking(move || read_through(&file, offset, count));
            self.reading = Some((read, end));
        }
    }

    /// The part was sent whole: the next one starts unknown.
    pub(super) fn part_done(&mut self) {
        self.until = 0;
    }
}

impl Drop for Warm {
    /// A read not started yet never starts (the connection is gone); one running finishes.
    fn drop(&mut self) {
        if let Some((task, _)) = &self.reading {
            task.abort();
        }
    }
}

/// Whether the first and the last page of `count` (> 0) bytes of `file` from `offset` are in
/// the page cache. A file that ends before them counts as not (the read then says so).
fn resident(file: &File, offset: u64, count: usize) -> bool {
    let mut byte = [0u8; 1];
    let last = offset + count as u64 - 1;
    [offset, last]
        .into_iter()
        .all(|at| matches!(page_cache::read_cached(file, &mut byte, at), Ok(1)))
}

/// Reads `count` bytes of `file` from `offset` (into a small buffer, thrown away): the page
/// cache holds them afterwards. An error when the file ends before.
fn read_through(file: &File, offset: u64, count: usize) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF.min(count)];
    let end = offset + count as u64;
    let mut at = offset;
    while at < end {
        let n = usize::try_from(end - at).map_or(buf.len(), |left| left.min(buf.len()));
        file.read_exact_at(&mut buf[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::num::NonZeroU64;

    use super::*;

    /// A file of `len` bytes on the disk, none of them in the page cache.
    fn uncached_file(len: usize) -> Arc<File> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_all().unwrap();
        rustix::fs::fadvise(
            &file,
            0,
            NonZeroU64::new(len as u64),
            rustix::fs::Advice::DontNeed,
        )
        .unwrap();
        assert!(
            !resident(&file, 0, len),
            "the temp dir keeps its files in memory (tmpfs?): this test needs one on a disk"
        );
        Arc::new(file)
    }

    #[tokio::test]
    async fn a_part_not_in_the_page_cache_is_read_into_it_off_the_runtime_first() {
        let file = uncached_file(300 * 1024);
        let mut warm = Warm::default();
        let before = warm_reads();
        std::future::poll_fn(|cx| warm.poll_resident(cx, &file, 4096, 200 * 1024))
            .await
            .unwrap();
        assert!(warm_reads() > before);
        assert!(resident(&file, 4096, 200 * 1024));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // What was read is not checked or read again for the same part, even once evicted
        // (a client reading a few KiB per send must not cost a read per send).
        let evict = rustix::fs::Advice::DontNeed;
        rustix::fs::fadvise(&*file, 0, None, evict).unwrap();
        assert!(warm
            .poll_resident(&mut cx, &file, 70_000, 100_000)
            .is_ready());
        assert!(warm.reading.is_none(), "a part read before was read again");
        // The next part starts unknown, and a resident one is not read.
        warm.part_done();
        std::future::poll_fn(|cx| warm.poll_resident(cx, &file, 0, 8192))
            .await
            .unwrap();
        assert!(warm.poll_resident(&mut cx, &file, 0, 4096).is_ready());
        assert!(warm.reading.is_none(), "a resident part was read");
        warm.part_done();
        assert!(warm.poll_resident(&mut cx, &file, 0, 8192).is_ready());
        assert!(warm.reading.is_none(), "a resident part was read");
    }

    #[tokio::test]
    async fn a_part_past_the_end_of_the_file_is_an_error() {
        let file = uncached_file(8192);
        let mut warm = Warm::default();
        let read = std::future::poll_fn(|cx| warm.poll_resident(cx, &file, 4096, 8192)).await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
