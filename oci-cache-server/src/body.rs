//! The response body of [`CacheService`](crate::CacheService) and the helper that builds
//! one from bytes.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// The error type of a response body: a body that fails is cut, never completed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The response body of [`CacheService`](crate::CacheService).
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A body holding `bytes`.
pub(crate) fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
