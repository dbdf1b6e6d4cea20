//! Manifest requests. By digest: immutable, storage first. By tag: mutable, asked of the
//! upstream, stored with the tag's record; when the upstream is unreachable or limits us,
//! the last known digest is served (stale) if it is cached.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use oci_cache_storage::{TagKey, TagRecord};

use super::Engine;
use crate::manifest::{inspect, Manifest, MAX_MANIFEST_BYTES};
use crate::name::{Reference, RepositoryName};
use crate::{Digest, EngineError, StorageError, UpstreamClient, UpstreamError};

impl Engine {
    /// The manifest `reference` names in `repo` on `client`'s upstream.
    pub async fn manifest(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Manifest, EngineError> {
        match reference {
            Reference::Digest(digest) => {
                if let Some(m) = self.stored_manifest(digest).await? {
                    return Ok(m);
                }
                let m = self
                    .fetch_manifest(client, repo, reference, Some(digest))
                    .await?;
                Ok(m)
            }
            Reference::Tag(tag) => {
                let key = TagKey {
                    namespace: client.name().to_owned(),
                    repository: repo.as_str().to_owned(),
                    tag: tag.clone(),
                };
                match self.fetch_manifest(client, repo, reference, None).await {
                    Ok(m) => {
                        let record = TagRecord {
                            digest: m.digest.clone(),
                            media_type: m.media_type.clone(),
                            fetched_at: SystemTime::now(),
                        };
                        if let Err(e) = self.tags.put(&key, &record).await {
                            tracing::warn!(error = %e, "could not store tag record");
                        }
                        Ok(m)
                    }
                    Err(EngineError::Upstream(e)) if is_transient(&e) => {
                        let stale = match self.tags.get(&key).await? {
                            Some(record) => self.stored_manifest(&record.digest).await?,
                            None => None,
                        };
                        let Some(m) = stale else {
                            return Err(EngineError::Upstream(e));
                        };
                        tracing::warn!(upstream = client.name(), repo = %repo, tag, error = %e, "upstream unavailable; serving cached tag");
                        Ok(m)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// A manifest from storage, if it is there.
    async fn stored_manifest(&self, digest: &Digest) -> Result<Option<Manifest>, EngineError> {
        let (meta, _, body) = match self.blobs.get(digest, None).await {
            Ok(found) => found,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if meta.size > MAX_MANIFEST_BYTES as u64 {
            return Err(crate::manifest::ManifestError::TooLarge.into());
        }
        let bytes: BytesMut = body.try_collect().await?;
        let bytes = bytes.freeze();
        let media_type = inspect(&bytes, None)?;
        Ok(Some(Manifest {
            bytes,
            digest: digest.clone(),
            media_type,
        }))
    }

    /// Fetches a manifest from upstream, verifies it (against `expected` when asked by
    /// digest, else against the upstream's `Docker-Content-Digest` when sent) and stores it.
    async fn fetch_manifest(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        reference: &Reference,
        expected: Option<&Digest>,
    ) -> Result<Manifest, EngineError> {
        let um = match client
            .manifest(repo.as_str(), &reference.to_string(), false)
            .await
        {
            Err(UpstreamError::NotFound) => return Err(EngineError::ManifestUnknown),
            other => other?,
        };
        let claimed = expected.or(um.digest.as_ref());
        let digest = match claimed {
            Some(d) => {
                let mut v = d.verifier();
                v.update(&um.bytes);
                let actual = v.finish();
                if &actual != d {
                    return Err(EngineError::DigestMismatch {
                        expected: d.clone(),
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256_of(&um.bytes),
        };
        let media_type = inspect(&um.bytes, um.content_type.as_deref())?;
        self.store_bytes(&digest, um.bytes.clone()).await;
        Ok(Manifest {
            bytes: um.bytes,
            digest,
            media_type,
        })
    }

    /// Stores a small verified object; a storage failure is logged, not fatal.
    async fn store_bytes(&self, digest: &Digest, bytes: Bytes) {
        let result = async {
            let mut w = self.blobs.writer(digest, Some(bytes.len() as u64)).await?;
            w.write(bytes).await?;
            w.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%digest, error = %e, "could not store manifest; served without storing");
        }
    }

    /// `GET /v2/<name>/tags/list` from the upstream: the body and the `Link` header.
    pub async fn tags_list(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        query: &str,
    ) -> Result<(Bytes, Option<String>), EngineError> {
        match client.tags(repo.as_str(), query).await {
            Err(UpstreamError::NotFound) => Err(EngineError::ManifestUnknown),
            other => Ok(other?),
        }
    }
}

/// Failures where a cached copy is better than an error.
fn is_transient(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Transport { .. }
            | UpstreamError::Timeout
            | UpstreamError::TooManyRequests { .. }
            | UpstreamError::Status { status: 500..=599 }
    )
}
