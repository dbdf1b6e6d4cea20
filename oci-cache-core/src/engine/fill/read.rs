//! Readers of a running fill: each follows the fill's state at its own offset, ranges
//! included, so any number of clients are served by one upstream download as it grows.

use bytes::Bytes;
use futures_util::stream;

use super::spool::Recall;
use super::state::{FillHandle, Progress};
use crate::engine::response::BlobBody;
use crate::EngineError;

struct Reader {
    handle: FillHandle,
    pos: u64,
    end: Option<u64>,
    chunk: u64,
    finished: bool,
}

/// Streams `start..end` (or to the end of the blob) from a running or finished fill. The
/// final byte of the blob is only released once the fill has verified the digest, so a
/// client never receives a complete-looking body that failed verification.
pub(crate) fn read(handle: FillHandle, start: u64, end: Option<u64>, chunk: usize) -> BlobBody {
    let reader = Reader {
        handle,
        pos: start,
        end,
        chunk: chunk as u64,
        finished: false,
    };
    Box::pin(stream::unfold(reader, |mut r| async move {
        if r.finished {
            return None;
        }
        match r.next_chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), r)),
            Ok(None) => None,
            Err(e) => {
                r.finished = true;
                Some((Err(e), r))
            }
        }
    }))
}

impl Reader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, EngineError> {
        loop {
            let progress = self.handle.progress.borrow_and_update().clone();
            let (readable, size, spool, done) = match progress {
                Progress::Connecting => (0, None, None, false),
                Progress::Streaming {
                    size,
                    received,
                    spool,
                } => {
                    // Hold back the blob's last byte until it is verified.
                    let limit = size.map_or(received, |s| received.min(s.saturating_sub(1)));
                    (limit, size, Some(spool), false)
                }
                Progress::Done { size, spool } => (size, Some(size), Some(spool), true),
                Progress::Failed(e) => return Err(EngineError::Shared(e)),
            };
            let end = self.end.or(if done { size } else { None });
            if end.is_some_and(|e| self.pos >= e) {
                return Ok(None);
            }
            let limit = end.map_or(readable, |e| readable.min(e));
            if let Some(spool) = spool.filter(|_| limit > self.pos) {
                let bytes = match spool.recall(self.pos, limit) {
                    Recall::Memory(bytes) => Some(bytes),
                    Recall::Backing { end } if end > self.pos => {
                        let len = (end - self.pos).min(self.chunk) as usize;
                        Some(spool.read_at(self.pos, len).await?)
                    }
                    Recall::Backing { .. } => None,
                };
                if let Some(bytes) = bytes {
                    self.pos += bytes.len() as u64;
                    return Ok(Some(bytes));
                }
            }
            if done {
                // The fill finished short of the range's end: the range lies past the blob.
                return Err(EngineError::RangeNotSatisfiable {
                    size: size.unwrap_or(0),
                });
            }
            if self.handle.progress.changed().await.is_err() {
                return Err(EngineError::FillLost);
            }
        }
    }
}
