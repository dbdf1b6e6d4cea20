//! `GET /v2/<name>/referrers/<digest>` (OCI distribution spec 1.1, "Listing Referrers"),
//! kept like a tag list: the whole list per (upstream, repository, subject) when the
//! subject has referrers, filtered here for any `artifactType`; fresh within
//! the upstream's `tag_ttl`, revalidated once for all concurrent clients, served stale when
//! the upstream fails. The upstream is always asked for the whole list, whatever filter a
//! client sends, so a client that only ever filters (notation) is served offline too; the
//! answer says `OCI-Filters-Applied: artifactType` only when a filter was applied. An
//! upstream without the API answers 404, and so does the cache, so that clients fall back
//! to the referrers tag schema (`sha256-<hex>` tags), which are ordinary tags here. The
//! manifests the index names (signatures, SBOMs, attestations) are linked to the
//! repository and fetched, verified and stored in the background, like an index's children.

use std::sync::Arc;

use bytes::Bytes;
use oci_cache_storage::TagKey;

use super::index::store_children;
use super::manifest::{is_fresh, is_transient};
use super::stats::EngineStats;
use super::Engine;
use crate::manifest::{inspect, is_index, Manifest};
use crate::name::RepositoryName;
use crate::{Digest, EngineError, UpstreamClient, UpstreamError};

/// The media type of a referrers answer.
pub const REFERRERS_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A referrers answer.
#[derive(Debug, Clone)]
pub struct Referrers {
    /// The image index listing the referrers.
    pub body: Bytes,
    /// Whether the `artifactType` filter was applied.
    pub filtered: bool,
    /// True when served from a copy the upstream could not confirm.
    pub stale: bool,
}

impl Engine {
    /// The referrers of `digest` in `repo` on `client`'s upstream, of `artifact_type` only
    /// when given.
    pub async fn referrers(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers, EngineError> {
        // One stored answer per subject: the whole list, filtered here for any artifactType.
        let key = TagKey {
            namespace: client.name().to_owned(),
            repository: repo.as_str().to_owned(),
            tag: format!("@referrers?{digest}"),
        };
        if self
            .tags
            .get(&key)
            .await?
            .is_some_and(|r| is_fresh(&r, client))
        {
            if let Some(page) = self.load_page(&key).await? {
                EngineStats::add(&self.stats.tag_list_hits, 1);
                return Ok(answer(page.body, false, artifact_type));
            }
        }
        EngineStats::add(&self.stats.tag_list_misses, 1);
        let body = match client.referrers(repo.as_str(), digest).await {
            Ok(found) => found,
            Err(UpstreamError::NotFound) => return Err(EngineError::ManifestUnknown),
            Err(e) if is_transient(&e) => {
                let Some(page) = self.load_page(&key).await? else {
                    return Err(EngineError::Upstream(e));
                };
                EngineStats::add(&self.stats.tag_list_stale, 1);
                tracing::warn!(upstream = client.name(), repo = %repo, %digest, error = %e, "upstream unavailable; serving stale referrers");
                return Ok(answer(page.body, true, artifact_type));
            }
            Err(e) => return Err(e.into()),
        };
        let media_type = inspect(&body, Some(REFERRERS_MEDIA_TYPE))?;
        if !is_index(&media_type) {
            return Err(crate::manifest::ManifestError::NotAManifest {
                reason: "a referrers answer must be an image index",
            }
            .into());
        }
        // The manifests it names belong to this repository; fetch and store them.
        let index = Manifest {
            digest: Digest::sha256_of(&body),
            bytes: body.clone(),
            media_type,
        };
        let mut named = super::index::children(&index);
        // As for an index: bounded, whatever the upstream lists.
        named.truncate(client.config().index_children.max(1) * 64);
        let has_referrers = !named.is_empty();
        self.links.learn(client.name(), repo.as_str(), &named);
        if !named.is_empty() {
            let (c, blobs, links, r) = (
                Arc::clone(client),
                Arc::clone(&self.blobs),
                Arc::clone(&self.links),
                repo.clone(),
            );
            let limit = Arc::clone(&self.limit);
            tokio::spawn(store_children(c, blobs, limit, links, r, named));
        }
        // Stored: the whole list of a subject that has referrers (a client asking for random
        // digests must not make the cache store an empty answer for each).
        if has_referrers {
            self.store_page(&key, &body, None).await;
        }
        Ok(answer(body, false, artifact_type))
    }
}

/// The answer to a client: the whole index, filtered here by `artifact_type` when given.
fn answer(body: Bytes, stale: bool, artifact_type: Option<&str>) -> Referrers {
    let Some(wanted) = artifact_type else {
        return Referrers {
            body,
            filtered: false,
            stale,
        };
    };
    let Ok(mut index) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Referrers {
            body,
            filtered: false,
            stale,
        };
    };
    if let Some(list) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        list.retain(|d| d.get("artifactType").and_then(|t| t.as_str()) == Some(wanted));
    }
    Referrers {
        body: Bytes::from(index.to_string()),
        filtered: true,
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfiltered_index_is_filtered_here_and_says_so() {
        let body = Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"artifactType":"a/sig","digest":"sha256:1"},{"artifactType":"a/sbom","digest":"sha256:2"}]}"#);
        let r = answer(body.clone(), false, Some("a/sbom"));
        assert!(r.filtered);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["artifactType"], "a/sbom");
        let r = answer(body.clone(), false, None);
        assert!(!r.filtered);
        assert_eq!(r.body, body);
    }
}
