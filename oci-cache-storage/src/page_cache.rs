//! Reading what the page cache already holds, on the calling thread, without ever waiting
//! for the disk (`preadv2` with `RWF_NOWAIT`). An async caller reads a warm file this way
//! without a trip to the blocking pool (two context switches per read), and sends only
//! what was not cached there.

use std::fs::File;
use std::io::{self, ErrorKind, IoSliceMut};

/// Reads into `buf` from `offset` what the page cache holds, without waiting for the disk;
/// returns how many bytes that was: all of `buf` when it is cached, fewer (0 included)
/// when some is not or the filesystem does not support `RWF_NOWAIT`. The rest is for a
/// blocking read. An error only when the file ends before `offset + buf.len()`.
pub fn read_cached(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let mut slices = [IoSliceMut::new(&mut buf[done..])];
        let at = offset + done as u64;
        match rustix::io::preadv2(file, &mut slices, at, rustix::io::ReadWriteFlags::NOWAIT) {
            Ok(0) => return Err(io::Error::from(ErrorKind::UnexpectedEof)),
            Ok(k) => done += k,
            Err(rustix::io::Errno::INTR) => {}
            // EAGAIN: not cached; EOPNOTSUPP and the like: no RWF_NOWAIT here.
            Err(_) => break,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_freshly_written_file_is_read_from_the_page_cache() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(read_cached(&file, &mut buf, 3).unwrap(), 4);
        assert_eq!(&buf, b"3456");
    }

    #[test]
    fn a_read_past_the_end_of_the_file_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123").unwrap();
        let mut buf = [0u8; 8];
        assert!(read_cached(&file, &mut buf, 0).is_err());
    }
}
