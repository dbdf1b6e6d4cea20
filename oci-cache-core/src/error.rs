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
    /// The repository is not known upstream (a tag list of a repository that does not
    /// exist).
    #[error("repository {repository} unknown")]
    NameUnknown {
        /// The repository asked for.
        repository: String,
    },
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
    /// The disk is full and the memory that fills may spool into instead is spent.
    #[error("disk full and the memory spools' budget of {limit} bytes is spent")]
    SpoolBudgetSpent {
        /// The budget, in bytes (`memory_spool_limit`).
        limit: u64,
    },
    /// A read asked a memory spool for bytes it does not hold (a defect, reported rather
    /// than served as a short body).
    #[error("spool holds {held} bytes; {len} asked at {offset}")]
    SpoolTooShort {
        /// Where the read started.
        offset: u64,
        /// How many bytes it asked for.
        len: usize,
        /// How many the spool holds.
        held: u64,
    },
    /// The fill this request followed ended without saying how (its task was cancelled or
    /// panicked); nothing of it was committed.
    #[error("the download ended without a result")]
    FillLost,
    /// A task the engine ran on the blocking pool (hashing, spool I/O) was cancelled or
    /// panicked.
    #[error("engine task ({task}) did not finish")]
    TaskLost {
        /// What the task did.
        task: &'static str,
    },
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
