//! What a blob request answers.

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::{EngineError, ResolvedRange};

/// A blob body: bytes in order. An `Err` item means the body is cut and the client must
/// see a broken response, never a complete-looking one.
pub type BlobBody = BoxStream<'static, Result<Bytes, EngineError>>;

/// A blob to send to a client.
pub struct BlobResponse {
    /// The blob's total size, when known (unknown only while filling from an upstream that
    /// sent no `Content-Length`).
    pub size: Option<u64>,
    /// The part of the blob `body` holds, when a range was asked.
    pub range: Option<ResolvedRange>,
    /// The bytes.
    pub body: BlobBody,
    /// True when served from storage, false when from a fill.
    pub cached: bool,
}

impl std::fmt::Debug for BlobResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobResponse")
            .field("size", &self.size)
            .field("range", &self.range)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}
