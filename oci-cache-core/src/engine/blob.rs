//! Blob requests: a local hit streams from storage; a miss joins or starts the single fill
//! of that digest and reads it as it grows, ranges included.

use std::sync::Arc;

use futures_util::TryStreamExt;

use super::fill;
use super::stats::EngineStats;
use super::{BlobResponse, Engine};
use crate::name::RepositoryName;
use crate::{ByteRange, Digest, EngineError, StorageError, UpstreamClient, UpstreamError};

impl Engine {
    /// The blob, or the part `range` selects: from storage when cached, else from the
    /// digest's single fill (started if none runs), answered as soon as the bytes exist.
    pub async fn blob(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobResponse, EngineError> {
        let linked = self
            .links
            .contains(client.name(), repo.as_str(), digest)
            .await?;
        if let Some(hit) = self.stored(client, repo, digest, range, linked).await? {
            return Ok(hit);
        }
        self.filled_blob(client, repo, digest, range, linked).await
    }

    /// The blob (or the part `range` selects) from storage, when it is stored and may go
    /// out through this upstream for this repository; `None` when it would take a fill.
    /// (A replica asks this before it forwards a miss to the blob's owner replica.)
    pub async fn stored_blob(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobResponse>, EngineError> {
        let linked = self
            .links
            .contains(client.name(), repo.as_str(), digest)
            .await?;
        self.stored(client, repo, digest, range, linked).await
    }

    /// [`Engine::stored_blob`], `linked` saying whether the blob is known to belong to
    /// the repository.
    async fn stored(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
        linked: bool,
    ) -> Result<Option<BlobResponse>, EngineError> {
        let upstream = client.name();
        // Stored bytes go out through this upstream only if it once produced them itself.
        let stored = if self.links.possesses(upstream, digest).await? {
            self.blobs.get(digest, range).await
        } else {
            Err(StorageError::NotFound {
                digest: digest.clone(),
            })
        };
        match stored {
            Ok((meta, resolved, body)) => {
                if !linked {
                    self.confirm_blob(client, repo, digest).await?;
                }
                EngineStats::add(&self.stats.blob_hits, 1);
                self.usage.touch(digest);
                let stats = Arc::clone(&self.stats);
                let reading = self.usage.reading(digest);
                let counted = body.map_ok(move |chunk| {
                    let _held = &reading;
                    EngineStats::add(&stats.bytes_from_cache, chunk.len() as u64);
                    chunk
                });
                Ok(Some(BlobResponse {
                    size: Some(meta.size),
                    range: range.map(|_| resolved),
                    body: Box::pin(counted.map_err(EngineError::Storage)),
                    cached: true,
                }))
            }
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(StorageError::RangeNotSatisfiable { size }) => {
                if !linked {
                    self.confirm_blob(client, repo, digest).await?;
                }
                Err(EngineError::RangeNotSatisfiable { size })
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "storage read failed; filling from upstream");
                Ok(None)
            }
        }
    }

    /// Whether a fill of `digest` from `upstream` runs in this process.
    pub fn fill_running(&self, upstream: &str, digest: &Digest) -> bool {
        self.fills.get(upstream, digest).is_some()
    }

    /// The blob from the digest's single fill (started if none runs).
    async fn filled_blob(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<ByteRange>,
        linked: bool,
    ) -> Result<BlobResponse, EngineError> {
        if !linked && self.links.denied(client.name(), repo.as_str(), digest) {
            return Err(EngineError::BlobUnknown {
                digest: digest.clone(),
            });
        }
        EngineStats::add(&self.stats.blob_misses, 1);
        let (mut handle, joined) = self.fills.join_or_start(client, repo.as_str(), digest);
        if joined {
            EngineStats::add(&self.stats.coalesced, 1);
            // A fill of this upstream for another repository proves nothing about this one.
            if !linked && &*handle.repo != repo.as_str() {
                self.confirm_blob(client, repo, digest).await?;
            }
        }
        let size = match handle.wait_for_size(range.is_some()).await {
            // The fill joined was for another repository of this upstream, which lacks the
            // blob; this repository has it (confirmed above): fill for it.
            Err(e)
                if joined
                    && &*handle.repo != repo.as_str()
                    && matches!(e.root(), EngineError::BlobUnknown { .. }) =>
            {
                handle = self.fills.join_or_start(client, repo.as_str(), digest).0;
                handle.wait_for_size(range.is_some()).await?
            }
            other => other?,
        };
        let chunk = self.config.chunk_size;
        let Some(range) = range else {
            let body = fill::read(handle, 0, None, chunk);
            return Ok(BlobResponse {
                size,
                range: None,
                body,
                cached: false,
            });
        };
        let total = size.unwrap_or(0);
        let resolved = range
            .resolve(total)
            .ok_or(EngineError::RangeNotSatisfiable { size: total })?;
        let body = fill::read(handle, resolved.start, Some(resolved.end), chunk);
        Ok(BlobResponse {
            size,
            range: Some(resolved),
            body,
            cached: false,
        })
    }

    /// The blob's size, without downloading it: from storage or a running fill when the
    /// blob is known to belong to the repository, else from an upstream HEAD (which, when it
    /// succeeds, makes it known).
    pub async fn blob_size(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<u64, EngineError> {
        let upstream = client.name();
        let linked = self.links.contains(upstream, repo.as_str(), digest).await?;
        if linked {
            // A running fill of this upstream announced the size this upstream gave.
            if let Some(size) = self
                .fills
                .get(upstream, digest)
                .and_then(|handle| handle.progress.borrow().size())
            {
                return Ok(size);
            }
            if self.links.possesses(upstream, digest).await? {
                if let Some(meta) = self.blobs.head(digest).await? {
                    return Ok(meta.size);
                }
            }
        }
        let size = self.confirm_blob(client, repo, digest).await?;
        if let Some(size) = size {
            return Ok(size);
        }
        match self.blobs.head(digest).await? {
            Some(meta) => Ok(meta.size),
            None => Err(EngineError::Upstream(UpstreamError::InvalidResponse {
                reason: "blob HEAD without Content-Length",
            })),
        }
    }

    /// Asks the upstream whether `digest` is a blob of `repo` (a HEAD, answered with the
    /// size it announced); remembers a yes as a link and a no for the upstream's
    /// `negative_ttl`.
    async fn confirm_blob(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, EngineError> {
        let upstream = client.name();
        let unknown = || EngineError::BlobUnknown {
            digest: digest.clone(),
        };
        if self.links.denied(upstream, repo.as_str(), digest) {
            return Err(unknown());
        }
        match client.blob_size(repo.as_str(), digest).await {
            Ok(size) => {
                self.links.learn(upstream, repo.as_str(), [digest]);
                Ok(size)
            }
            Err(UpstreamError::NotFound) => {
                let ttl = client.config().negative_ttl;
                self.links.deny(upstream, repo.as_str(), digest, ttl);
                Err(unknown())
            }
            Err(e) => Err(e.into()),
        }
    }
}
