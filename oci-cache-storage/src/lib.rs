//! Storage for oci-cache: content-addressed blobs and mutable tags.
//!
//! This crate knows bytes, digests and atomic commits. It knows nothing of HTTP, upstreams
//! or manifests. Every backend implements [`BlobStore`] and [`TagStore`] and passes the
//! shared conformance suite (see the `conformance` module, behind the `conformance`
//! feature, and `tests/conformance.rs`).

#![forbid(unsafe_code)]

mod blob;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod digest;
mod error;
pub mod fs;
mod key;
pub mod memory;
pub mod page_cache;
mod range;
#[cfg(feature = "s3")]
pub mod s3;
pub mod space;
mod tag;
pub mod tiered;
pub mod verify;
mod write_check;

pub use blob::{BlobMeta, BlobStore, BlobStream, BlobWriter, CommitOutcome, ListPage};
pub use digest::{Algorithm, Digest, DigestError, Verifier};
pub use error::StorageError;
pub(crate) use range::resolve_request;
pub use range::{ByteRange, ResolvedRange};
pub use tag::{TagKey, TagRecord, TagStore};
