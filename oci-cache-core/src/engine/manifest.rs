//! Manifest requests. By digest: immutable, storage first, never revalidated. By tag:
//! fresh within the upstream's `tag_ttl`; after it, one upstream HEAD (shared by every
//! concurrent request for the tag) confirms the digest or leads to a GET of the new manifest;
//! when the upstream is down or limits us, the last known manifest is served (stale).
//! Upstream 404s are remembered for `negative_ttl`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use futures_util::TryStreamExt;
use oci_cache_storage::{TagKey, TagRecord};

use super::index::{children, store_children, store_verified, verified_digest};
use super::stats::EngineStats;
use super::Engine;
use crate::manifest::{inspect, is_index, Manifest, MAX_MANIFEST_BYTES};
use crate::name::{Reference, RepositoryName};
use crate::{Digest, EngineError, StorageError, UpstreamClient, UpstreamError};

impl Engine {
    /// The manifest `reference` names in `repo` on `client`'s upstream. A manifest is
    /// served through (upstream, repository) only when it belongs there (see `links`).
    pub async fn manifest(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Manifest, EngineError> {
        let m = match reference {
            Reference::Digest(digest) => self.manifest_by_digest(client, repo, digest).await?,
            Reference::Tag(tag) => {
                let m = self.manifest_by_tag(client, repo, tag).await?;
                self.stats
                    .pulled(client.name(), format!("{}:{tag}", repo.as_str()));
                m
            }
        };
        self.links.learn_manifest(client.name(), repo.as_str(), &m);
        Ok(m)
    }

    /// A manifest by digest: immutable, so storage first when it belongs to the
    /// repository; stored but not known there, the upstream confirms it (a HEAD); else it
    /// is fetched.
    async fn manifest_by_digest(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Manifest, EngineError> {
        let upstream = client.name();
        let linked = self.links.contains(upstream, repo.as_str(), digest).await?;
        if !linked && self.links.denied(upstream, repo.as_str(), digest) {
            return Err(EngineError::ManifestUnknown);
        }
        if let Some(m) = self.possessed_manifest(upstream, digest).await? {
            if linked {
                return Ok(m);
            }
            return match client
                .manifest(repo.as_str(), &digest.to_string(), true)
                .await
            {
                Ok(_) => Ok(m),
                Err(UpstreamError::NotFound) => {
                    let ttl = client.config().negative_ttl;
                    self.links.deny(upstream, repo.as_str(), digest, ttl);
                    Err(EngineError::ManifestUnknown)
                }
                Err(e) => Err(e.into()),
            };
        }
        self.fetch_manifest(
            client,
            repo,
            &Reference::Digest(digest.clone()),
            Some(digest),
        )
        .await
    }

    /// A manifest by tag: the tag record of (upstream, repository, tag) while fresh, else
    /// revalidated once for all concurrent requests.
    async fn manifest_by_tag(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        tag: &str,
    ) -> Result<Manifest, EngineError> {
        let key = TagKey {
            namespace: client.name().to_owned(),
            repository: repo.as_str().to_owned(),
            tag: tag.to_owned(),
        };
        if self.missing.contains(&key) {
            return Err(EngineError::ManifestUnknown);
        }
        let record = match self.hot.tag(&key).filter(|r| is_fresh(r, client)) {
            Some(hot) => Some(hot),
            None => self.stored_tag(&key).await?,
        };
        if let Some(rec) = record.as_ref().filter(|r| is_fresh(r, client)) {
            if let Some(m) = self.possessed_manifest(client.name(), &rec.digest).await? {
                EngineStats::add(&self.stats.manifest_hits, 1);
                return Ok(m);
            }
        }
        EngineStats::add(&self.stats.manifest_misses, 1);
        let flight = key.clone();
        self.revalidations
            .run(flight, || async {
                // A revalidation that ended just before this one started may have
                // refreshed the record meanwhile: look again before asking upstream.
                let record = match self.stored_tag(&key).await {
                    Ok(r) => r,
                    Err(e) => return Err(Arc::new(e)),
                };
                if let Some(rec) = record.as_ref().filter(|r| is_fresh(r, client)) {
                    match self.possessed_manifest(client.name(), &rec.digest).await {
                        Ok(Some(m)) => return Ok(m),
                        Ok(None) => {}
                        Err(e) => return Err(Arc::new(e)),
                    }
                }
                self.revalidate(client, repo, &key, record)
                    .await
                    .map_err(Arc::new)
            })
            .await
            .map_err(EngineError::Shared)
    }

    /// Asks the upstream about a tag that is stale or unknown.
    async fn revalidate(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        key: &TagKey,
        record: Option<TagRecord>,
    ) -> Result<Manifest, EngineError> {
        match self.refresh_tag(client, repo, key, record.as_ref()).await {
            Err(EngineError::ManifestUnknown) => {
                self.missing
                    .insert(key.clone(), client.config().negative_ttl);
                self.hot.forget_tag(key);
                if let Err(e) = self.tags.delete(key).await {
                    tracing::warn!(error = %e, "could not delete a tag record");
                }
                Err(EngineError::ManifestUnknown)
            }
            Err(EngineError::Upstream(e)) if is_transient(&e) => {
                let stale = match &record {
                    Some(r) => self.possessed_manifest(client.name(), &r.digest).await?,
                    None => None,
                };
                let Some(m) = stale else {
                    return Err(EngineError::Upstream(e));
                };
                tracing::warn!(upstream = client.name(), repo = %repo, tag = key.tag, error = %e, "upstream unavailable; serving the cached tag");
                Ok(m)
            }
            other => other,
        }
    }

    /// One HEAD when a record exists (same digest: refresh it); else, or on a new digest,
    /// a GET of the manifest.
    async fn refresh_tag(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        key: &TagKey,
        record: Option<&TagRecord>,
    ) -> Result<Manifest, EngineError> {
        if let Some(rec) = record {
            let head = match client.manifest(repo.as_str(), &key.tag, true).await {
                Err(UpstreamError::NotFound) => return Err(EngineError::ManifestUnknown),
                other => other?,
            };
            if head.digest.as_ref() == Some(&rec.digest) {
                if let Some(m) = self.possessed_manifest(client.name(), &rec.digest).await? {
                    self.put_tag(key, &m).await;
                    return Ok(m);
                }
            }
        }
        let m = self
            .fetch_manifest(client, repo, &Reference::Tag(key.tag.clone()), None)
            .await?;
        self.put_tag(key, &m).await;
        Ok(m)
    }

    async fn put_tag(&self, key: &TagKey, m: &Manifest) {
        let record = TagRecord {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            fetched_at: SystemTime::now(),
        };
        self.hot.keep_tag(key, &record);
        if let Err(e) = self.tags.put(key, &record).await {
            tracing::warn!(error = %e, "could not store a tag record");
        }
    }

    /// The tag's record from the tag store (kept hot).
    async fn stored_tag(&self, key: &TagKey) -> Result<Option<TagRecord>, EngineError> {
        let record = self.tags.get(key).await?;
        if let Some(r) = &record {
            self.hot.keep_tag(key, r);
        }
        Ok(record)
    }

    /// A stored manifest, if `upstream` once served its bytes itself (see `links`).
    async fn possessed_manifest(
        &self,
        upstream: &str,
        digest: &Digest,
    ) -> Result<Option<Manifest>, EngineError> {
        if self.links.possesses(upstream, digest).await? {
            self.stored_manifest(digest).await
        } else {
            Ok(None)
        }
    }

    /// A manifest from storage (or its hot copy), if it is there.
    async fn stored_manifest(&self, digest: &Digest) -> Result<Option<Manifest>, EngineError> {
        if let Some(m) = self.hot.manifest(digest) {
            self.usage.touch(digest);
            return Ok(Some(m));
        }
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
        self.usage.touch(digest);
        let m = Manifest {
            bytes,
            digest: digest.clone(),
            media_type,
        };
        self.hot.keep_manifest(&m);
        Ok(Some(m))
    }

    /// Fetches a manifest from upstream, verifies it (against `expected` when asked by
    /// digest, else against the upstream's `Docker-Content-Digest` when sent), stores it,
    /// and starts storing an index's children.
    async fn fetch_manifest(
        &self,
        client: &Arc<UpstreamClient>,
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
        let digest = match expected.or(um.digest.as_ref()) {
            Some(d) => verified_digest(&um.bytes, d)?,
            None => Digest::sha256_of(&um.bytes),
        };
        let media_type = inspect(&um.bytes, um.content_type.as_deref())?;
        store_verified(self.blobs.as_ref(), &self.limit, &digest, um.bytes.clone()).await;
        let m = Manifest {
            bytes: um.bytes,
            digest,
            media_type,
        };
        self.hot.keep_manifest(&m);
        self.links
            .learn_possession(client.name(), repo.as_str(), &m.digest);
        self.links.learn_manifest(client.name(), repo.as_str(), &m);
        if is_index(&m.media_type) {
            let kids = children(&m);
            if !kids.is_empty() {
                let (client, blobs, repo) =
                    (Arc::clone(client), Arc::clone(&self.blobs), repo.clone());
                let links = Arc::clone(&self.links);
                self.background.spawn(store_children(
                    client,
                    blobs,
                    Arc::clone(&self.limit),
                    links,
                    repo,
                    kids,
                ));
            }
        }
        Ok(m)
    }
}

/// Whether a tag record is within its upstream's freshness window.
pub(super) fn is_fresh(record: &TagRecord, client: &UpstreamClient) -> bool {
    let ttl = client.config().tag_ttl;
    !ttl.is_zero()
        && SystemTime::now()
            .duration_since(record.fetched_at)
            .is_ok_and(|age| age < ttl)
}

/// Failures where a cached copy is better than an error: the upstream (or its token
/// endpoint) is unreachable, failing, or limiting us; not a refusal of our credentials.
pub(super) fn is_transient(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Transport { .. }
            | UpstreamError::Timeout
            | UpstreamError::CircuitOpen
            | UpstreamError::Token { .. }
            | UpstreamError::TooManyRequests { .. }
            | UpstreamError::Status { status: 500..=599 }
    )
}
