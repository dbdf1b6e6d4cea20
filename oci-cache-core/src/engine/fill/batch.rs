//! Gathering an upstream body into batches.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};

use crate::{EngineError, UpstreamError};

/// Bytes a fill gathers before writing them on.
const BATCH: usize = 1024 * 1024;

/// Collects what the upstream has ready, up to [`BATCH`] bytes, so the spool, the hash
/// and the storage see few large writes rather than many small ones, without waiting for
/// bytes that have not arrived. `None` at the end of the body.
pub(crate) async fn next_batch<S>(
    body: &mut S,
    idle: Duration,
) -> Result<Option<Bytes>, EngineError>
where
    S: futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let first = tokio::time::timeout(idle, body.next())
        .await
        .map_err(|_| UpstreamError::Timeout)?;
    let Some(first) = first else { return Ok(None) };
    let first = first.map_err(UpstreamError::from)?;
    if first.len() >= BATCH {
        return Ok(Some(first));
    }
    let mut batch = BytesMut::with_capacity(BATCH);
    batch.extend_from_slice(&first);
    while batch.len() < BATCH {
        match body.next().now_or_never() {
            Some(Some(chunk)) => batch.extend_from_slice(&chunk.map_err(UpstreamError::from)?),
            Some(None) | None => break,
        }
    }
    Ok(Some(batch.freeze()))
}
