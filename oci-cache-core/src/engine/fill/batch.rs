//! Gathering an upstream body into batches, without copying: a batch is the chunks the
//! HTTP client read from the socket (a few hundred KiB each), as they are.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};

use crate::{EngineError, UpstreamError};

/// Bytes a fill gathers before handing them on.
const BATCH: usize = 1024 * 1024;

/// The chunks of a batch, in order. Cloning it clones handles, not bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Batch {
    /// Bytes in the batch.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The chunks, in order.
    pub(crate) fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Adds `other`'s chunks after these.
    pub(crate) fn append(&mut self, other: Batch) {
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }
}

impl From<Bytes> for Batch {
    fn from(chunk: Bytes) -> Self {
        let mut batch = Batch::default();
        batch.push(chunk);
        batch
    }
}

/// Collects what the upstream has ready, up to [`BATCH`] bytes, so the stages see few
/// batches rather than many small chunks, without waiting for bytes that have not arrived
/// and without copying them (an earlier version copied every chunk into one buffer: a
/// memmove and fresh pages for every byte of a cold fill). `None` at the end of the body.
pub(crate) async fn next_batch<S>(
    body: &mut S,
    idle: Duration,
) -> Result<Option<Batch>, EngineError>
where
    S: futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let first = tokio::time::timeout(idle, body.next())
        .await
        .map_err(|_| UpstreamError::Timeout)?;
    let Some(first) = first else { return Ok(None) };
    let mut batch = Batch::from(first.map_err(UpstreamError::from)?);
    while batch.len() < BATCH {
        match body.next().now_or_never() {
            Some(Some(chunk)) => batch.push(chunk.map_err(UpstreamError::from)?),
            Some(None) | None => break,
        }
    }
    Ok(Some(batch))
}
