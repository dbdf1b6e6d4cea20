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

/// Where a connection stands with the next part it sends.
#[derive(Default)]
pub(super) enum Warm {
    /// Nothing checked yet.
    #[default]
    Unchecked,
    /// Being read into the page cache on the blocking pool.
    Reading(JoinHandle<io::Result<()>>),
    /// Read (or found) in the page cache: send it.
    Ready,
}

impl Warm {
    /// Ready once `count` bytes of `file` from `offset` are in the page cache, or were just
    /// read into it; the read's error, if it failed.
    pub(super) fn poll_resident(
        &mut self,
        cx: &mut Context<'_>,
        file: &Arc<File>,
        offset: u64,
        count: usize,
    ) -> Poll<io::Result<()>> {
        loop {
            match self {
                Warm::Ready => return Poll::Ready(Ok(())),
                Warm::Reading(task) => {
                    let read = std::task::ready!(Pin::new(task).poll(cx));
                    *self = Warm::Ready;
                    return Poll::Ready(read.map_err(io::Error::other).and_then(|r| r));
                }
                Warm::Unchecked if count == 0 || resident(file, offset, count) => {
                    *self = Warm::Ready;
                }
                Warm::Unchecked => {
                    WARM_READS.fetch_add(1, Ordering::Relaxed);
                    let file = Arc::clone(file);
                    *self = Warm::Reading(tokio::task::spawn_blocking(move || {
                        read_through(&file, offset, count)
                    }));
                }
            }
        }
    }

    /// The part went out (some of it): the next one is checked again.
    pub(super) fn sent(&mut self) {
        *self = Warm::Unchecked;
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
        // Checked again only once something was sent; a resident part is not read.
        warm.sent();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(warm
            .poll_resident(&mut cx, &file, 4096, 100 * 1024)
            .is_ready());
        assert!(
            matches!(warm, Warm::Ready),
            "a resident part was read again"
        );
    }

    #[tokio::test]
    async fn a_part_past_the_end_of_the_file_is_an_error() {
        let file = uncached_file(8192);
        let mut warm = Warm::default();
        let read = std::future::poll_fn(|cx| warm.poll_resident(cx, &file, 4096, 8192)).await;
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
