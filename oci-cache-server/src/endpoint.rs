//! What a request path names, parsed once per request: an operator endpoint or an API
//! route (or why the path is neither). The metrics label comes from the same value.

use oci_cache_core::route::{parse_path, Route, RouteParseError};

/// An operator endpoint beside the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpsPath {
    /// `/healthz`: the process answers.
    Health,
    /// `/readyz`: storage takes writes; upstream circuits.
    Ready,
    /// `/` and `/status`: the HTML status page.
    StatusPage,
    /// `/status.json`.
    StatusJson,
    /// `/metrics`: Prometheus or OpenMetrics.
    Metrics,
}

impl OpsPath {
    /// The operator endpoint at `path`, if it is one.
    fn parse(path: &str) -> Option<Self> {
        Some(match path {
            "/healthz" => Self::Health,
            "/readyz" => Self::Ready,
            "/" | "/status" => Self::StatusPage,
            "/status.json" => Self::StatusJson,
            "/metrics" => Self::Metrics,
            _ => return None,
        })
    }
}

/// What a request path names.
#[derive(Debug)]
pub(crate) enum Endpoint {
    /// An operator endpoint.
    Ops(OpsPath),
    /// An API route, or why the path is none.
    Api(Result<Route, RouteParseError>),
}

impl Endpoint {
    /// Parses a request path (without the query).
    pub(crate) fn parse(path: &str) -> Self {
        match OpsPath::parse(path) {
            Some(ops) => Self::Ops(ops),
            None => Self::Api(parse_path(path)),
        }
    }

    /// The route label of the request, for metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Ops(OpsPath::Health | OpsPath::Ready) => "health",
            Self::Ops(OpsPath::StatusPage | OpsPath::StatusJson) => "status",
            Self::Ops(OpsPath::Metrics) => "metrics",
            Self::Api(Ok(Route::ApiVersion)) => "version",
            Self::Api(Ok(Route::Manifest { .. })) => "manifest",
            Self::Api(Ok(Route::Blob { .. })) => "blob",
            Self::Api(Ok(Route::TagsList { .. })) => "tags",
            Self::Api(Ok(Route::Referrers { .. })) => "referrers",
            Self::Api(Ok(Route::Upload)) => "upload",
            Self::Api(Err(_)) => "other",
        }
    }
}

/// Whether `path` is a health probe (`/healthz`, `/readyz`): answered without a
/// connection slot, so probes pass while every slot serves a request.
pub(crate) fn is_probe(path: &str) -> bool {
    matches!(OpsPath::parse(path), Some(OpsPath::Health | OpsPath::Ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let label = |path: &str| Endpoint::parse(path).label();
        assert_eq!(label("/healthz"), "health");
        assert_eq!(label("/readyz"), "health");
        assert_eq!(label("/"), "status");
        assert_eq!(label("/status.json"), "status");
        assert_eq!(label("/metrics"), "metrics");
        assert_eq!(label("/v2/"), "version");
        assert_eq!(label("/v2/a/manifests/latest"), "manifest");
        assert_eq!(label("/v2/a/blobs/uploads/"), "upload");
        assert_eq!(label("/v2/a/tags/list"), "tags");
        assert_eq!(label("/elsewhere"), "other");
        assert!(is_probe("/readyz") && !is_probe("/metrics"));
    }
}
