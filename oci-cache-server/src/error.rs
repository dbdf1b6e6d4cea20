//! The one place that maps every failure to an OCI error code, HTTP status and JSON body
//! (distribution spec, "Error Codes").

use http::{header, HeaderValue, Response, StatusCode};
use oci_cache_core::name::NameError;
use oci_cache_core::route::RouteParseError;
use oci_cache_core::{EngineError, RouteError, UpstreamError};
use oci_spec::distribution::ErrorCode;

use crate::auth::{AuthError, REALM};
use crate::body::{full_body, Body};

/// A failure of one API request, before it is turned into a response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The path is not an API route.
    #[error(transparent)]
    Path(#[from] RouteParseError),
    /// No upstream for the request.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The method is not served (push, delete).
    #[error("method not supported by a pull-through cache")]
    Unsupported,
    /// The client must authenticate (or its credentials are wrong).
    #[error("authentication required")]
    Unauthenticated,
    /// The authenticated client may not pull through this upstream.
    #[error("access to this upstream is denied")]
    Denied,
    /// Every password check slot is busy.
    #[error("too many password checks at once, retry shortly")]
    AuthBusy,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Busy => ApiError::AuthBusy,
            _ => ApiError::Unauthenticated,
        }
    }
}

/// An error code: one of the distribution spec's, or one of those CNCF distribution adds
/// for failures the spec does not name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Code {
    Spec(ErrorCode),
    /// `UNAVAILABLE`: the upstream cannot be reached or failed, sent content that does not
    /// match its digest included (502, 503, 504).
    Unavailable,
    /// `RANGE_INVALID`: the `Range` does not overlap the blob (416). The blob exists, so
    /// `BLOB_UNKNOWN` would mislead a client.
    RangeInvalid,
    /// `UNKNOWN`: an internal failure (500).
    Unknown,
}

impl Code {
    fn as_string(&self) -> String {
        match self {
            Code::Spec(c) => c.to_string(),
            Code::Unavailable => "UNAVAILABLE".to_owned(),
            Code::RangeInvalid => "RANGE_INVALID".to_owned(),
            Code::Unknown => "UNKNOWN".to_owned(),
        }
    }
}

type Extra = Option<(header::HeaderName, String)>;

/// The code, status and extra headers of an error.
fn classify(err: &ApiError) -> (Code, StatusCode, Extra) {
    use ErrorCode as C;
    use StatusCode as S;
    match err {
        ApiError::Unsupported => (Code::Spec(C::Unsupported), S::METHOD_NOT_ALLOWED, None),
        ApiError::Unauthenticated => (
            Code::Spec(C::Unauthorized),
            S::UNAUTHORIZED,
            Some((header::WWW_AUTHENTICATE, format!("Basic realm=\"{REALM}\""))),
        ),
        ApiError::AuthBusy => (
            Code::Spec(C::TooManyRequests),
            S::TOO_MANY_REQUESTS,
            Some((header::RETRY_AFTER, "1".to_owned())),
        ),
        ApiError::Denied | ApiError::Route(RouteError::Denied { .. }) => {
            (Code::Spec(C::Denied), S::FORBIDDEN, None)
        }
        ApiError::Path(RouteParseError::NotFound)
        | ApiError::Route(RouteError::UnknownUpstream { .. }) => {
            (Code::Spec(C::NameUnknown), S::NOT_FOUND, None)
        }
        // A reference that cannot name a manifest names none: 404 MANIFEST_UNKNOWN, as the
        // distribution spec's conformance suite expects (`.INVALID_MANIFEST_NAME`); a
        // malformed digest is a bad request.
        ApiError::Path(
            RouteParseError::Digest(_)
            | RouteParseError::Reference(NameError::InvalidReference("digest")),
        ) => (Code::Spec(C::DigestInvalid), S::BAD_REQUEST, None),
        ApiError::Path(RouteParseError::Reference(_)) => {
            (Code::Spec(C::ManifestUnknown), S::NOT_FOUND, None)
        }
        ApiError::Route(RouteError::Name(_)) => (Code::Spec(C::NameInvalid), S::BAD_REQUEST, None),
        ApiError::Engine(e) => classify_engine(e.root()),
    }
}

fn classify_engine(e: &EngineError) -> (Code, StatusCode, Extra) {
    use ErrorCode as C;
    use StatusCode as S;
    match e {
        EngineError::BlobUnknown { .. } => (Code::Spec(C::BlobUnknown), S::NOT_FOUND, None),
        EngineError::ManifestUnknown => (Code::Spec(C::ManifestUnknown), S::NOT_FOUND, None),
        EngineError::NameUnknown { .. } => (Code::Spec(C::NameUnknown), S::NOT_FOUND, None),
        EngineError::ManifestInvalid(_) => (Code::Spec(C::ManifestInvalid), S::BAD_REQUEST, None),
        // The upstream sent bytes that are not the blob: its failure, not the client's
        // (DIGEST_INVALID would tell the client its own digest is wrong).
        EngineError::DigestMismatch { .. } | EngineError::SizeMismatch { .. } => {
            (Code::Unavailable, S::BAD_GATEWAY, None)
        }
        EngineError::RangeNotSatisfiable { size } => (
            Code::RangeInvalid,
            S::RANGE_NOT_SATISFIABLE,
            Some((header::CONTENT_RANGE, format!("bytes */{size}"))),
        ),
        EngineError::Upstream(u) => match u {
            UpstreamError::NotFound => (Code::Spec(C::NameUnknown), S::NOT_FOUND, None),
            UpstreamError::Unauthorized => (Code::Spec(C::Unauthorized), S::BAD_GATEWAY, None),
            UpstreamError::Denied => (Code::Spec(C::Denied), S::FORBIDDEN, None),
            UpstreamError::TooManyRequests { retry_after } => (
                Code::Spec(C::TooManyRequests),
                S::TOO_MANY_REQUESTS,
                retry_after.map(|d| (header::RETRY_AFTER, d.as_secs().to_string())),
            ),
            UpstreamError::Timeout => (Code::Unavailable, S::GATEWAY_TIMEOUT, None),
            // The upstream answered, with something the cache will not use.
            UpstreamError::NotAManifest { .. } => {
                (Code::Spec(C::ManifestInvalid), S::BAD_GATEWAY, None)
            }
            UpstreamError::BodyTooLarge { .. }
            | UpstreamError::RedirectRefused { .. }
            | UpstreamError::RealmRefused { .. }
            | UpstreamError::InvalidResponse { .. } => (Code::Unavailable, S::BAD_GATEWAY, None),
            _ => (Code::Unavailable, S::SERVICE_UNAVAILABLE, None),
        },
        EngineError::Busy { .. } | EngineError::SpoolBudgetSpent { .. } => (
            Code::Unavailable,
            S::SERVICE_UNAVAILABLE,
            Some((header::RETRY_AFTER, "5".to_owned())),
        ),
        // Storage, Spool, SpoolTooShort, FillLost, TaskLost: failures of the cache itself.
        _ => (Code::Unknown, S::INTERNAL_SERVER_ERROR, None),
    }
}

/// The OCI error response for `err`: `{"errors":[{"code","message"}]}` with the spec's
/// status. The message is the error's text, which never carries credentials.
pub fn error_response(err: &ApiError) -> Response<Body> {
    let (code, status, extra) = classify(err);
    let body = serde_json::json!({
        "errors": [{ "code": code.as_string(), "message": err.to_string() }]
    });
    let mut resp = Response::new(full_body(body.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((name, value)) = extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_password_checks_are_429_with_retry_after() {
        let resp = error_response(&ApiError::from(AuthError::Busy));
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = error_response(&ApiError::from(AuthError::InvalidCredentials));
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn an_upstream_answer_that_is_not_a_manifest_is_502() {
        let not = oci_cache_core::manifest::ManifestError::NotAManifest { reason: "x" };
        let err = ApiError::Engine(EngineError::Upstream(UpstreamError::NotAManifest {
            source: not,
        }));
        assert_eq!(error_response(&err).status(), StatusCode::BAD_GATEWAY);
    }

    fn code_and_status(e: EngineError) -> (String, StatusCode, Extra) {
        let (code, status, extra) = classify(&ApiError::Engine(e));
        (code.as_string(), status, extra)
    }

    #[test]
    fn a_range_past_the_end_is_416_range_invalid_with_the_size() {
        let (code, status, extra) = code_and_status(EngineError::RangeNotSatisfiable { size: 7 });
        assert_eq!(
            (code.as_str(), status),
            ("RANGE_INVALID", StatusCode::RANGE_NOT_SATISFIABLE)
        );
        assert_eq!(extra, Some((header::CONTENT_RANGE, "bytes */7".to_owned())));
    }

    #[test]
    fn bytes_from_the_upstream_that_are_not_the_blob_are_502_unavailable() {
        let d = |b: &[u8]| oci_cache_core::Digest::sha256_of(b);
        for e in [
            EngineError::DigestMismatch {
                expected: d(b"a"),
                actual: d(b"b"),
            },
            EngineError::SizeMismatch {
                expected: 1,
                actual: 2,
            },
        ] {
            let shared = EngineError::Shared(std::sync::Arc::new(e));
            let (code, status, _) = classify(&ApiError::Engine(shared));
            assert_eq!(
                (code.as_string().as_str(), status),
                ("UNAVAILABLE", StatusCode::BAD_GATEWAY)
            );
        }
    }

    #[test]
    fn internal_failures_are_500_unknown_and_a_spent_memory_budget_is_503() {
        for e in [
            EngineError::FillLost,
            EngineError::TaskLost { task: "hash" },
            EngineError::SpoolTooShort {
                offset: 1,
                len: 2,
                held: 0,
            },
        ] {
            let (code, status, _) = code_and_status(e);
            assert_eq!(
                (code.as_str(), status),
                ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR)
            );
        }
        let (code, status, extra) = code_and_status(EngineError::SpoolBudgetSpent { limit: 1 });
        assert_eq!(
            (code.as_str(), status),
            ("UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(extra, Some((header::RETRY_AFTER, "5".to_owned())));
    }
}
