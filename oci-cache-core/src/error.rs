//! The engine's error: every way a manifest or blob request can fail. The server maps each
//! variant to an OCI error code and status in one function.

use std::sync::Arc;

use crate::manifest::ManifestError;
use crate::{Digest, StorageError, UpstreamError};

/// A failed engine request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The blob is neither cached nor known upstream.
    #[error("blob {digest} unknown")]
    BlobUnknown {
        /// The digest asked for.
        digest: Digest,
    },
    /// The manifest is neither cached nor known upstream.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// The manifest cannot be served.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    /// Upstream content did not hash to the digest it was asked for.
    #[error("upstream sent content for {expected} that hashes to {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Upstream sent fewer or more bytes than it announced.
    #[error("upstream sent {actual} bytes, announced {expected}")]
    SizeMismatch {
        /// The announced size.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// The range does not overlap the blob.
    #[error("range not satisfiable for {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The local spool file of a fill failed.
    #[error("spool I/O error: {0}")]
    Spool(#[source] std::io::Error),
    /// Too many downloads from this upstream wait already, or none could start in time.
    #[error("too many downloads from upstream {upstream} wait for a slot")]
    Busy {
        /// The upstream's name.
        upstream: String,
    },
    /// A fill or revalidation that this request joined failed; the cause is shared by
    /// every request that joined it.
    #[error("{0}")]
    Shared(Arc<EngineError>),
}

impl EngineError {
    /// The cause, looking through shared failures.
    pub fn root(&self) -> &EngineError {
        match self {
            EngineError::Shared(inner) => inner.root(),
            other => other,
        }
    }
}
