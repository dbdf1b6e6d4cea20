//! After an image index (or Docker manifest list) is fetched, its child manifests are
//! fetched and stored too, in the background, so every platform and every pull by a child's
//! digest works offline afterwards.

use std::sync::Arc;

use bytes::Bytes;

use super::limit::Limit;
use super::links::Links;
use crate::manifest::{inspect, references, Manifest};
use crate::name::RepositoryName;
use crate::{BlobStore, Digest, EngineError, UpstreamClient};
use oci_cache_storage::CommitOutcome;

/// The digests of an index's child manifests.
pub(crate) fn children(index: &Manifest) -> Vec<Digest> {
    references(&index.bytes)
}

/// Fetches and stores each child that is not stored yet (or was stored from another
/// upstream: this one must produce the bytes itself). Failures are logged: the index
/// itself was served, and a later pull of a child fetches it on demand.
pub(crate) async fn store_children(
    client: Arc<UpstreamClient>,
    blobs: Arc<dyn BlobStore>,
    limit: Arc<Limit>,
    links: Arc<Links>,
    repo: RepositoryName,
    children: Vec<Digest>,
) {
    let max = client.config().index_children;
    if children.len() > max {
        tracing::info!(repo = %repo, children = children.len(), fetched = max, "index has more children than upstreams.index_children; the rest are fetched when asked for");
    }
    for digest in children.into_iter().take(max) {
        let result = async {
            if links.possesses(client.name(), &digest).await?
                && blobs.head(&digest).await?.is_some()
            {
                return Ok(());
            }
            let m = client
                .manifest(repo.as_str(), &digest.to_string(), false)
                .await?;
            let actual = verified_digest(&m.bytes, &digest)?;
            inspect(&m.bytes, m.content_type.as_deref())?;
            store_verified(blobs.as_ref(), &limit, &actual, m.bytes).await;
            links.learn_possession(client.name(), repo.as_str(), &actual);
            Ok::<(), EngineError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%digest, repo = %repo, error = %e, "could not store a child manifest of an index");
        }
    }
}

/// Checks that `bytes` hash to `expected`.
pub(crate) fn verified_digest(bytes: &[u8], expected: &Digest) -> Result<Digest, EngineError> {
    let mut v = expected.verifier();
    v.update(bytes);
    let actual = v.finish();
    if &actual == expected {
        Ok(actual)
    } else {
        Err(EngineError::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }
}

/// Stores a small verified object (counted as stored); a storage failure is logged, not
/// fatal.
pub(crate) async fn store_verified(
    blobs: &dyn BlobStore,
    limit: &Limit,
    digest: &Digest,
    bytes: Bytes,
) {
    let size = bytes.len() as u64;
    let result = async {
        let mut w = blobs.writer(digest, Some(size)).await?;
        w.write(bytes).await?;
        w.commit().await
    }
    .await;
    match result {
        Ok(CommitOutcome::Stored) => limit.committed(size),
        Ok(CommitOutcome::AlreadyExists) => {}
        Err(e) => {
            tracing::warn!(%digest, error = %e, "could not store manifest; served without storing");
        }
    }
}
