//! `GET /v2/<name>/referrers/<digest>` (OCI distribution spec 1.1, "Listing Referrers"),
//! kept like a tag list: the whole list per (upstream, repository, subject) when the
//! subject has referrers, filtered here for any `artifactType`; fresh within
//! the upstream's `tag_ttl`, revalidated once for all concurrent clients, served stale when
//! the upstream fails. An upstream that ignores `artifactType` is filtered here, and the
//! answer says `OCI-Filters-Applied: artifactType` only when some filter was applied. An
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
    /// Whether the `artifactType` filter was applied (by the upstream or here).
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
        let query = artifact_type.map_or(String::new(), |t| format!("artifactType={}", encode(t)));
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
                return Ok(answer(page.body, false, false, artifact_type));
            }
        }
        EngineStats::add(&self.stats.tag_list_misses, 1);
        let fetched = match client.referrers(repo.as_str(), digest, &query).await {
            Ok(found) => found,
            Err(UpstreamError::NotFound) => return Err(EngineError::ManifestUnknown),
            Err(e) if is_transient(&e) => {
                let Some(page) = self.load_page(&key).await? else {
                    return Err(EngineError::Upstream(e));
                };
                EngineStats::add(&self.stats.tag_list_stale, 1);
                tracing::warn!(upstream = client.name(), repo = %repo, %digest, error = %e, "upstream unavailable; serving stale referrers");
                return Ok(answer(page.body, false, true, artifact_type));
            }
            Err(e) => return Err(e.into()),
        };
        let (body, upstream_filtered) = fetched;
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
            tokio::spawn(store_children(c, blobs, links, r, named));
        }
        // Stored: the whole list of a subject that has referrers (a client asking for random
        // digests must not make the cache store an empty answer for each).
        if artifact_type.is_none() && has_referrers {
            self.store_page(&key, &body, None).await;
        }
        Ok(answer(body, upstream_filtered, false, artifact_type))
    }
}

/// The answer to a client: the index, filtered here by `artifact_type` when the upstream
/// did not filter it.
fn answer(
    body: Bytes,
    upstream_filtered: bool,
    stale: bool,
    artifact_type: Option<&str>,
) -> Referrers {
    let Some(wanted) = artifact_type.filter(|_| !upstream_filtered) else {
        return Referrers {
            body,
            filtered: upstream_filtered,
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

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_types_are_encoded_for_the_upstream() {
        assert_eq!(
            encode("application/vnd.dev.cosign.artifact.sig.v1+json"),
            "application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson"
        );
    }

    #[test]
    fn an_unfiltered_index_is_filtered_here_and_says_so() {
        let body = Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"artifactType":"a/sig","digest":"sha256:1"},{"artifactType":"a/sbom","digest":"sha256:2"}]}"#);
        let r = answer(body.clone(), false, false, Some("a/sbom"));
        assert!(r.filtered);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["artifactType"], "a/sbom");
        let r = answer(body.clone(), false, false, None);
        assert!(!r.filtered);
        assert_eq!(r.body, body);
        let r = answer(body.clone(), true, false, Some("a/sbom"));
        assert!(r.filtered);
        assert_eq!(r.body, body, "the upstream filtered it: passed as it is");
    }
}
