//! The one error type of every storage operation.

use crate::Digest;

/// What went wrong in a storage operation. Backends convert their own errors into this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The blob is not stored.
    #[error("blob {digest} not found")]
    NotFound {
        /// The digest asked for.
        digest: Digest,
    },
    /// The requested range does not overlap the blob.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// The bytes written do not hash to the digest the writer was opened for.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the writer was opened for.
        expected: Digest,
        /// The digest of the bytes written.
        actual: Digest,
    },
    /// The bytes written are not of the size the writer was told to expect.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The expected size.
        expected: u64,
        /// The number of bytes written.
        actual: u64,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A remote backend (S3) failed.
    #[error("storage backend error during {op}: {source}")]
    Backend {
        /// The operation that failed.
        op: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The storage configuration is unusable.
    #[error("storage configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on a named path (opening a store: the directory that cannot be
    /// created or written).
    #[error("storage I/O error during {op} at {path}: {source}")]
    IoAt {
        /// The operation that failed.
        op: &'static str,
        /// The path it failed on.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error from the backend.
    #[error("storage I/O error during {op}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error with the operation and the path it came from.
    pub fn io_at(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| StorageError::IoAt { op, path, source }
    }

    /// Wraps an I/O error with the operation it came from.
    pub fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| StorageError::Io { op, source }
    }
}
