//! A stored blob as an open file, for servers that send files without copying them
//! through user space (`sendfile`).

use std::sync::Arc;

use super::in_use::Reading;
use super::stats::EngineStats;
use super::Engine;
use crate::name::RepositoryName;
use crate::{ByteRange, Digest, EngineError, ResolvedRange, StorageError, UpstreamClient};

/// A stored blob's open file and the part of it to send.
pub struct BlobFile {
    /// The open file; it holds exactly the blob's bytes.
    pub file: std::fs::File,
    /// The blob's total size.
    pub size: u64,
    /// The part to send: the whole blob, or what a range selected.
    pub part: ResolvedRange,
    /// Whether a range was asked (then the answer is `206` with `Content-Range`).
    pub ranged: bool,
    /// Keeps the blob counted as being read (so eviction passes it by) until dropped.
    _reading: Reading,
}

impl std::fmt::Debug for BlobFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobFile")
            .field("size", &self.size)
            .field("part", &self.part)
            .field("ranged", &self.ranged)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The blob as an open file when [`Engine::blob`] would serve it from storage without
    /// asking the upstream (it is linked to the client's upstream and repository, that
    /// upstream produced its bytes, and it is stored) and the storage keeps blobs in local
    /// files. `Ok(None)` otherwise: then use [`Engine::blob`], which handles every case.
    /// Also `Ok(None)` when the part to send is smaller than `min_len`. Counted as a hit,
    /// like [`Engine::blob`]'s.
    pub async fn blob_file(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
        min_len: u64,
    ) -> Result<Option<BlobFile>, EngineError> {
        let upstream = client.name();
        if !self.links.contains(upstream, repo.as_str(), digest).await?
            || !self.links.possesses(upstream, digest).await?
        {
            return Ok(None);
        }
        let (meta, part, file) = match self.blobs.open_file(digest, range).await {
            Ok(Some(opened)) => opened,
            Ok(None) | Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(StorageError::RangeNotSatisfiable { size }) => {
                return Err(EngineError::RangeNotSatisfiable { size })
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "storage open failed; reading through the engine");
                return Ok(None);
            }
        };
        if part.len() < min_len {
            return Ok(None);
        }
        EngineStats::add(&self.stats.blob_hits, 1);
        EngineStats::add(&self.stats.bytes_from_cache, part.len());
        self.usage.touch(digest);
        Ok(Some(BlobFile {
            file,
            size: meta.size,
            part,
            ranged: range.is_some(),
            _reading: self.usage.reading(digest),
        }))
    }
}
