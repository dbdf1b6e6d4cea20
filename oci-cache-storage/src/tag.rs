//! The mutable tag store: which digest a tag named when it was last fetched.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::{Digest, StorageError};

/// Identifies a tag: a namespace (the upstream's name), a repository and the tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagKey {
    /// The namespace, e.g. the upstream name `docker.io`; keeps upstreams apart.
    pub namespace: String,
    /// The repository, e.g. `library/alpine`.
    pub repository: String,
    /// The tag, e.g. `3.20`.
    pub tag: String,
}

/// What a tag pointed at, and when that was learned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TagRecord {
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// When the upstream last confirmed this digest.
    pub fetched_at: SystemTime,
}

/// Mutable tags, kept apart from immutable blobs.
///
/// # Contract
/// - `put` replaces any previous record for the key atomically: a reader sees the old or the
///   new record, never a mix.
/// - `get` of an unknown key is `Ok(None)`; `delete` of an unknown key succeeds.
/// - Keys with different namespaces never share a record.
/// - `tags(namespace, repository)` lists the tags stored for exactly that repository (not
///   those of a repository below it, nor of another namespace), in any order; a backend may
///   leave out tags whose stored names it cannot read back (names too long for its keys,
///   stored as a hash).
#[async_trait]
pub trait TagStore: Send + Sync + 'static {
    /// The record for `key`, if any.
    async fn get(&self, key: &TagKey) -> Result<Option<TagRecord>, StorageError>;
    /// Stores `record` under `key`.
    async fn put(&self, key: &TagKey, record: &TagRecord) -> Result<(), StorageError>;
    /// Removes the record for `key`.
    async fn delete(&self, key: &TagKey) -> Result<(), StorageError>;
    /// The tags stored for `repository` in `namespace`.
    async fn tags(&self, namespace: &str, repository: &str) -> Result<Vec<String>, StorageError>;
}
