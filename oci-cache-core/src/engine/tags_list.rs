//! `GET /v2/<name>/tags/list`, kept like a tag: the whole list per (upstream, repository),
//! fresh within the upstream's `tag_ttl` (pages by `n` and `last` go to the upstream, and are
//! cut from the stored whole list when it fails), revalidated after it with one upstream request
//! shared by every concurrent client, served stale when the upstream is down or limiting
//! us, and built from the tags the cache holds when it never saw a list.
//!
//! A page is stored as a blob (a header naming its record, the `Link` header line, the
//! body), named by a record in the tag store under the reserved tag `@tags-list?<query>`;
//! the header keeps records from sharing a blob, so a replaced one can be deleted. Such
//! blobs are never linked to any repository, so no client can read them through the blob
//! API. The tags the cache holds are its tag records, listed by the tag store.

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use oci_cache_storage::{TagKey, TagRecord};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use super::index::store_verified;
use super::manifest::{is_fresh, is_transient};
use super::stats::EngineStats;
use super::Engine;
use crate::name::RepositoryName;
use crate::{Digest, EngineError, StorageError, UpstreamClient, UpstreamError};

/// The media type written into the records of stored pages and tag sets.
const RECORD_MEDIA_TYPE: &str = "application/vnd.oci-cache.tag-list";
/// Largest stored page read back (the upstream's own limit is 4 MiB).
const MAX_PAGE_BYTES: u64 = 8 * 1024 * 1024;

/// One page of a repository's tag list.
#[derive(Debug, Clone)]
pub struct TagList {
    /// The JSON body (`{"name": ..., "tags": [...]}`).
    pub body: Bytes,
    /// The `Link` header of the next page, as the upstream (or the cache) wrote it; its
    /// path names the upstream's repository, not the client's route.
    pub link: Option<String>,
    /// True when served from a copy the upstream could not confirm (it is down or
    /// limiting us), or built from the tags the cache holds.
    pub stale: bool,
}

fn list_key(upstream: &str, repo: &str, query: &str) -> TagKey {
    TagKey {
        namespace: upstream.to_owned(),
        repository: repo.to_owned(),
        tag: format!("@tags-list?{query}"),
    }
}

impl Engine {
    /// A page of `repo`'s tag list on `client`'s upstream; `query` holds `n` and `last`.
    pub async fn tags_list(
        &self,
        client: &Arc<UpstreamClient>,
        repo: &RepositoryName,
        query: &str,
    ) -> Result<TagList, EngineError> {
        let key = list_key(client.name(), repo.as_str(), query);
        // Only the whole list is stored: a client choosing `n` and `last` at will must not
        // make the cache store a page per choice.
        let full = list_key(client.name(), repo.as_str(), "");
        if self
            .tags
            .get(&full)
            .await?
            .is_some_and(|r| is_fresh(&r, client))
        {
            // A page is cut from the fresh whole list: varying `n` and `last` costs no
            // upstream request.
            let page = match self.load_page(&full).await? {
                Some(page) if query.is_empty() => Some(page),
                Some(page) if page.link.is_none() => tags_of(&page.body).map(|tags| {
                    let (body, link) = paginate(repo.as_str(), &tags, query);
                    TagList {
                        body,
                        link,
                        stale: false,
                    }
                }),
                _ => None,
            };
            if let Some(page) = page {
                EngineStats::add(&self.stats.tag_list_hits, 1);
                return Ok(page);
            }
        }
        EngineStats::add(&self.stats.tag_list_misses, 1);
        self.list_revalidations
            .run(key, || async {
                self.refresh_list(client, repo, query, &full)
                    .await
                    .map_err(Arc::new)
            })
            .await
            .map_err(EngineError::Shared)
    }

    /// Asks the upstream for the page; on a transient failure serves it from the stored
    /// whole list (paged here), or from the tags the cache holds.
    async fn refresh_list(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        query: &str,
        full: &TagKey,
    ) -> Result<TagList, EngineError> {
        match client.tags(repo.as_str(), query).await {
            Ok((body, link)) => {
                if query.is_empty() {
                    self.store_page(full, &body, link.as_deref()).await;
                }
                Ok(TagList {
                    body,
                    link,
                    stale: false,
                })
            }
            Err(UpstreamError::NotFound) => Err(EngineError::NameUnknown {
                repository: repo.as_str().to_owned(),
            }),
            Err(e) if is_transient(&e) => {
                let page = match self.load_page(full).await? {
                    Some(page) if query.is_empty() => Some(page),
                    Some(page) => tags_of(&page.body).map(|tags| {
                        let (body, link) = paginate(repo.as_str(), &tags, query);
                        TagList {
                            body,
                            link,
                            stale: true,
                        }
                    }),
                    None => self.known_tags_page(client, repo, query).await?,
                };
                let Some(mut page) = page else {
                    return Err(EngineError::Upstream(e));
                };
                page.stale = true;
                EngineStats::add(&self.stats.tag_list_stale, 1);
                tracing::warn!(upstream = client.name(), repo = %repo, error = %e, "upstream unavailable; serving a stale tag list");
                Ok(page)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn store_page(&self, key: &TagKey, body: &Bytes, link: Option<&str>) {
        let mut bytes = BytesMut::with_capacity(body.len() + 128);
        bytes.extend_from_slice(link.unwrap_or("").as_bytes());
        bytes.extend_from_slice(b"\n");
        bytes.extend_from_slice(body);
        self.put_record_blob(key, bytes.freeze()).await;
    }

    /// Stores `payload` as a blob of `key`'s own and points `key`'s record at it; deletes
    /// the blob it replaces.
    async fn put_record_blob(&self, key: &TagKey, payload: Bytes) {
        let mut bytes = BytesMut::from(header(key).as_bytes());
        bytes.extend_from_slice(&payload);
        let bytes = bytes.freeze();
        let digest = Digest::sha256_of(&bytes);
        let previous = self.tags.get(key).await.ok().flatten().map(|r| r.digest);
        store_verified(self.blobs.as_ref(), &self.limit, &digest, bytes).await;
        let record = TagRecord {
            digest: digest.clone(),
            media_type: RECORD_MEDIA_TYPE.to_owned(),
            fetched_at: SystemTime::now(),
        };
        if let Err(e) = self.tags.put(key, &record).await {
            tracing::warn!(error = %e, "could not store a tag list record");
            return;
        }
        if let Some(old) = previous.filter(|d| *d != digest) {
            if let Err(e) = self.blobs.delete(&old).await {
                tracing::debug!(error = %e, "could not delete a replaced tag list blob");
            }
        }
    }

    /// The payload of `key`'s stored blob, if it is still there and is `key`'s own.
    async fn load_record_blob(&self, key: &TagKey) -> Result<Option<Bytes>, EngineError> {
        let Some(rec) = self.tags.get(key).await? else {
            return Ok(None);
        };
        let (meta, _, body) = match self.blobs.get(&rec.digest, None).await {
            Ok(found) => found,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if meta.size > MAX_PAGE_BYTES {
            return Ok(None);
        }
        let bytes: BytesMut = body.try_collect().await?;
        let bytes = bytes.freeze();
        let header = header(key);
        Ok(bytes
            .starts_with(header.as_bytes())
            .then(|| bytes.slice(header.len()..)))
    }

    pub(super) async fn load_page(&self, key: &TagKey) -> Result<Option<TagList>, EngineError> {
        let Some(bytes) = self.load_record_blob(key).await? else {
            return Ok(None);
        };
        let Some(newline) = bytes.iter().position(|b| *b == b'\n') else {
            return Ok(None);
        };
        let link = std::str::from_utf8(&bytes[..newline])
            .ok()
            .filter(|l| !l.is_empty())
            .map(str::to_owned);
        Ok(Some(TagList {
            body: bytes.slice(newline + 1..),
            link,
            stale: false,
        }))
    }

    /// A page built from the tags the cache holds (`n` and `last` as the spec says), or
    /// `None` when it holds none.
    async fn known_tags_page(
        &self,
        client: &UpstreamClient,
        repo: &RepositoryName,
        query: &str,
    ) -> Result<Option<TagList>, EngineError> {
        // Tag records of this repository; names starting with `@` are the cache's own.
        let known: BTreeSet<String> = self
            .tags
            .tags(client.name(), repo.as_str())
            .await?
            .into_iter()
            .filter(|t| !t.starts_with('@'))
            .collect();
        if known.is_empty() {
            return Ok(None);
        }
        let (body, link) = paginate(repo.as_str(), &known, query);
        Ok(Some(TagList {
            body,
            link,
            stale: true,
        }))
    }
}

/// The tags of a tag list body.
fn tags_of(body: &[u8]) -> Option<BTreeSet<String>> {
    #[derive(serde::Deserialize)]
    struct List {
        tags: Option<Vec<String>>,
    }
    let list: List = serde_json::from_slice(body).ok()?;
    Some(list.tags.unwrap_or_default().into_iter().collect())
}

/// The first lines of a stored page or tag set: what it is and whose.
fn header(key: &TagKey) -> String {
    format!(
        "oci-cache tag list\n{}\n{}\n{}\n",
        key.namespace, key.repository, key.tag
    )
}

/// One page of `tags` (sorted) after `last`, at most `n` of them, with the `Link` of the
/// next page when more remain.
fn paginate(repo: &str, tags: &BTreeSet<String>, query: &str) -> (Bytes, Option<String>) {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let n = param("n").and_then(|n| n.parse::<usize>().ok());
    let last = param("last");
    let after: Vec<&String> = tags
        .iter()
        .filter(|t| last.as_ref().is_none_or(|l| t.as_str() > l.as_str()))
        .collect();
    let take = n.unwrap_or(after.len()).min(after.len());
    let page: Vec<&String> = after[..take].to_vec();
    let body = serde_json::json!({"name": repo, "tags": page}).to_string();
    let link = match (n, page.last()) {
        (Some(n), Some(last)) if take < after.len() => Some(format!(
            "</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""
        )),
        _ => None,
    };
    (Bytes::from(body), link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_n_and_last() {
        let tags: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        let (body, link) = paginate("x/y", &tags, "");
        assert_eq!(body, r#"{"name":"x/y","tags":["a","b","c"]}"#);
        assert_eq!(link, None);
        let (body, link) = paginate("x/y", &tags, "n=2");
        assert_eq!(body, r#"{"name":"x/y","tags":["a","b"]}"#);
        assert_eq!(
            link.as_deref(),
            Some(r#"</v2/x/y/tags/list?n=2&last=b>; rel="next""#)
        );
        let (body, link) = paginate("x/y", &tags, "n=2&last=b");
        assert_eq!(body, r#"{"name":"x/y","tags":["c"]}"#);
        assert_eq!(link, None);
    }
}
