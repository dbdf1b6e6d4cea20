//! Reserving a blob's disk space ahead of its writes (`fallocate` with
//! `FALLOC_FL_KEEP_SIZE`), for a blob whose size is known: ext4 then allocates the blocks a
//! step at a time instead of reserving them page by page as bytes arrive (its delayed
//! allocation was about 4 % of a cold fill's CPU in a profile), and a disk that cannot
//! hold the next step says so before the bytes are written. The reservation runs at most
//! [`STEP`] ahead of what was written, so an upstream that declares a size far larger than
//! what it sends takes no more disk than it sent and one step.

use std::fs::File;
use std::io;

use rustix::io::Errno;

/// Bytes reserved ahead of the writes at most.
pub const STEP: u64 = 64 * 1024 * 1024;

/// The reservation of one file being written from its start to a known size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ahead {
    size: u64,
    reserved: u64,
    step: u64,
}

impl Ahead {
    /// For a file that will hold `size` bytes (`None`: unknown, nothing is reserved).
    pub(crate) fn new(size: Option<u64>) -> Self {
        Self::with_step(size, STEP)
    }

    fn with_step(size: Option<u64>, step: u64) -> Self {
        Self {
            size: size.unwrap_or(0),
            reserved: 0,
            step,
        }
    }

    /// Call before writing the file up to `end` (0 when it is created): reserves up to a
    /// step past `end` (never past the size) once less than half a step is left. An error
    /// only when the disk or the quota cannot hold that much (`ENOSPC`, `EDQUOT`) or the
    /// file system cannot hold a file that large (`EFBIG`); a file system without
    /// `fallocate` (or any other refusal) gets no reservation, is not asked again, and its
    /// writes allocate as they go.
    pub(crate) fn before_write(&mut self, file: &File, end: u64) -> io::Result<()> {
        if self.reserved >= self.size || end.saturating_add(self.step / 2) <= self.reserved {
            return Ok(());
        }
        let to = self.size.min(end.saturating_add(self.step));
        self.reserved = if reserve(file, self.reserved, to - self.reserved)? {
            to
        } else {
            self.size
        };
        Ok(())
    }
}

/// Reserves `offset..offset + len` of `file`, keeping its size; `false` when the file
/// system does not (an error only when it has no room).
fn reserve(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    loop {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, offset, len) {
            Ok(()) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e @ (Errno::NOSPC | Errno::DQUOT | Errno::FBIG)) => return Err(e.into()),
            Err(e) => {
                tracing::debug!(error = %e, "no space reservation on this file system");
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn allocated(file: &File) -> u64 {
        file.metadata().unwrap().blocks() * 512
    }

    /// The blocks come before the bytes, a step ahead of them at most and never past the
    /// size; the file's size is left alone.
    #[test]
    fn space_is_reserved_a_step_ahead_of_the_writes() {
        const STEP: u64 = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("blob")).unwrap();
        let size = 3 * STEP + 4096;
        let mut ahead = Ahead::with_step(Some(size), STEP);
        ahead.before_write(&file, 0).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 0);
        let first = allocated(&file);
        assert!((STEP..2 * STEP).contains(&first), "{first}");
        // Within the first half step: nothing more.
        ahead.before_write(&file, STEP / 4).unwrap();
        assert_eq!(allocated(&file), first);
        ahead.before_write(&file, STEP).unwrap();
        assert!(allocated(&file) >= 2 * STEP, "{}", allocated(&file));
        ahead.before_write(&file, size).unwrap();
        let all = allocated(&file);
        assert!((size..size + STEP).contains(&all), "{all}");
        assert_eq!(file.metadata().unwrap().len(), 0);

        let unknown = File::create(dir.path().join("unknown")).unwrap();
        Ahead::new(None).before_write(&unknown, 0).unwrap();
        assert_eq!(allocated(&unknown), 0);
    }

    /// A reservation past what a file may hold is an error, and reserves nothing.
    #[test]
    fn a_reservation_past_the_largest_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("blob")).unwrap();
        // `offset + len` past `i64::MAX`: EFBIG on every file system, before any block.
        let err = reserve(&file, i64::MAX as u64, 1).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(Errno::FBIG.raw_os_error()),
            "{err}"
        );
        assert_eq!(allocated(&file), 0);
    }
}
