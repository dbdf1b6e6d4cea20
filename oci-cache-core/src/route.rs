//! The request path of the OCI distribution API (pull side), parsed. See the distribution
//! spec, "Endpoints". The repository name is returned raw: the upstream prefix, if any, is
//! stripped and the name validated when the request is routed to an upstream.

use crate::name::{NameError, Reference};
use crate::{Digest, DigestError};

/// What a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    ApiVersion,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// The raw repository name (may carry an upstream prefix).
        name: String,
        /// Tag or digest.
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// The raw repository name.
        name: String,
        /// The blob's digest.
        digest: Digest,
    },
    /// `/v2/<name>/tags/list`.
    TagsList {
        /// The raw repository name.
        name: String,
    },
    /// `/v2/<name>/referrers/<digest>`: the manifests that name `digest` as their subject
    /// (OCI distribution spec 1.1, "Listing Referrers").
    Referrers {
        /// The raw repository name.
        name: String,
        /// The subject's digest.
        digest: Digest,
    },
    /// `/v2/<name>/blobs/uploads/...`: push, which a pull-through cache does not do.
    Upload,
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteParseError {
    /// Not an API path at all.
    #[error("not found")]
    NotFound,
    /// A blob path with an invalid digest.
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
    /// A manifest path with an invalid reference.
    #[error("{0}")]
    Reference(NameError),
}

/// Parses a request path (without the query).
pub fn parse_path(path: &str) -> Result<Route, RouteParseError> {
    let rest = path.strip_prefix("/v2").ok_or(RouteParseError::NotFound)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::ApiVersion);
    }
    let rest = rest.strip_prefix('/').ok_or(RouteParseError::NotFound)?;
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return non_empty(name).map(|name| Route::TagsList { name });
    }
    if let Some((name, _)) = rest.rsplit_once("/blobs/uploads") {
        return non_empty(name).map(|_| Route::Upload);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let name = non_empty(name)?;
        let reference = Reference::parse(reference).map_err(RouteParseError::Reference)?;
        return Ok(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        let name = non_empty(name)?;
        return Ok(Route::Referrers {
            name,
            digest: Digest::parse(digest)?,
        });
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        let name = non_empty(name)?;
        return Ok(Route::Blob {
            name,
            digest: Digest::parse(digest)?,
        });
    }
    Err(RouteParseError::NotFound)
}

fn non_empty(name: &str) -> Result<String, RouteParseError> {
    if name.is_empty() {
        Err(RouteParseError::NotFound)
    } else {
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_endpoint() {
        assert_eq!(parse_path("/v2/"), Ok(Route::ApiVersion));
        assert_eq!(parse_path("/v2"), Ok(Route::ApiVersion));
        assert_eq!(
            parse_path("/v2/library/alpine/manifests/3.20"),
            Ok(Route::Manifest {
                name: "library/alpine".into(),
                reference: Reference::Tag("3.20".into())
            })
        );
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            parse_path(&format!("/v2/a/b/c/blobs/{d}")),
            Ok(Route::Blob {
                name: "a/b/c".into(),
                digest: d
            })
        );
        assert_eq!(
            parse_path("/v2/a/tags/list"),
            Ok(Route::TagsList { name: "a".into() })
        );
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            parse_path(&format!("/v2/a/b/referrers/{d}")),
            Ok(Route::Referrers {
                name: "a/b".into(),
                digest: Digest::sha256_of(b"x")
            })
        );
        assert_eq!(parse_path("/v2/a/blobs/uploads/"), Ok(Route::Upload));
        assert_eq!(parse_path("/v2/a/blobs/uploads/123"), Ok(Route::Upload));
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(parse_path("/v3/"), Err(RouteParseError::NotFound));
        assert_eq!(parse_path("/v2/a/other"), Err(RouteParseError::NotFound));
        assert!(matches!(
            parse_path("/v2/a/blobs/sha256:zz"),
            Err(RouteParseError::Digest(_))
        ));
        assert!(matches!(
            parse_path("/v2/a/manifests/-bad"),
            Err(RouteParseError::Reference(_))
        ));
        assert_eq!(
            parse_path("/v2//manifests/x"),
            Err(RouteParseError::NotFound)
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "/v2/.{0,120}") {
            let _ = parse_path(&s);
        }
    }
}
