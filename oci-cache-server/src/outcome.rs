//! What answering a request gives back to [`CacheService`](crate::CacheService): the
//! response, and what the request log line says of it beyond method, route and status.

use http::Response;

use crate::body::Body;

/// A response and its log details.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The response, before the service adds its common headers.
    pub(crate) response: Response<Body>,
    /// What the request log says of it.
    pub(crate) log: LogInfo,
}

impl Outcome {
    /// A response with nothing to log beyond method, route and status.
    pub(crate) fn plain(response: Response<Body>) -> Self {
        Self {
            response,
            log: LogInfo::default(),
        }
    }
}

/// What the request log line says beyond method, route and status.
#[derive(Debug, Clone)]
pub(crate) struct LogInfo {
    /// The upstream the request was routed to, once it was.
    pub(crate) upstream: Option<String>,
    /// `hit` (from storage) or `miss` (from a fill) for blobs, `stale` for a tag list or
    /// referrers answer the upstream could not refresh; `-` otherwise.
    pub(crate) cache: &'static str,
}

impl Default for LogInfo {
    fn default() -> Self {
        Self {
            upstream: None,
            cache: "-",
        }
    }
}
