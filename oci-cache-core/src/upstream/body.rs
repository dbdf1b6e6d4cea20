//! Small upstream bodies read into memory (manifests, tokens, tag lists), each with a limit:
//! read chunk by chunk, so a body that never ends is cut at its limit.

use std::fmt;

use bytes::{Bytes, BytesMut};
use reqwest::Response;

use super::UpstreamError;

/// Largest token endpoint response read (tokens are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Largest tag list page read.
pub const MAX_TAG_LIST_BYTES: usize = 4 * 1024 * 1024;

/// Which upstream body went over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyKind {
    /// A manifest ([`crate::manifest::MAX_MANIFEST_BYTES`]).
    Manifest,
    /// A token endpoint response ([`MAX_TOKEN_BYTES`]).
    Token,
    /// A tag list ([`MAX_TAG_LIST_BYTES`]).
    TagList,
}

impl fmt::Display for BodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyKind::Manifest => "manifest",
            BodyKind::Token => "token response",
            BodyKind::TagList => "tag list",
        })
    }
}

/// Reads the whole body, failing with [`UpstreamError::BodyTooLarge`] as soon as it is
/// announced or found to be longer than `limit`.
pub(crate) async fn read_limited(
    mut resp: Response,
    body: BodyKind,
    limit: usize,
) -> Result<Bytes, UpstreamError> {
    let too_large = UpstreamError::BodyTooLarge { body, limit };
    if resp.content_length().is_some_and(|len| len > limit as u64) {
        return Err(too_large);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
