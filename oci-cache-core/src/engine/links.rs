//! Which content belongs to which (upstream, repository). Bytes are stored once per digest,
//! but a digest is served through upstream U and repository R only when it is known to
//! belong there: it was fetched from U for R, a manifest fetched from (U, R) names it, or
//! U confirmed it (an upstream HEAD on R). See doc/SEMANTICS.md, "Who may read what".
//!
//! Links live in memory (bounded, oldest out first) and in the tag store, as records under
//! a reserved tag name that no real tag can have (`@<digest>`: a tag never holds `@` or
//! `:`), so they survive restarts on every backend without a new storage trait.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use oci_cache_storage::{TagKey, TagRecord};
use sha2::{Digest as _, Sha256};

use super::bounded::Bounded;
use crate::manifest::{references, Manifest};
use crate::{Digest, EngineError, TagStore};

/// Links remembered in memory; older ones are read back from the tag store when asked.
const KNOWN_LINKS: usize = 50_000;
/// Upstream denials ("not in this repository") remembered at most.
const DENIALS: usize = 4096;
/// The media type written into a link record (it names no manifest).
const LINK_MEDIA_TYPE: &str = "application/vnd.oci-cache.link";
/// The first byte of a link record's tag name.
pub(crate) const LINK_TAG_PREFIX: char = '@';

/// A fixed-size key for (kind, upstream, repository, digest): sha256 of the fields with
/// separators that cannot occur inside them, cut to 128 bits.
type LinkId = [u8; 16];

fn link_id(kind: u8, upstream: &str, repo: &str, digest: &Digest) -> LinkId {
    let mut h = Sha256::new();
    h.update([kind]);
    h.update(upstream.as_bytes());
    h.update([0]);
    h.update(repo.as_bytes());
    h.update([0]);
    h.update(digest.to_string().as_bytes());
    let full = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

/// A link: `digest` belongs to `repo` on `upstream`.
const LINK: u8 = 1;
/// A marker: the references of manifest `digest` were linked to (upstream, repo).
const REFS_LINKED: u8 = 2;

/// The tag-store key of a link record.
pub(crate) fn record_key(upstream: &str, repo: &str, digest: &Digest) -> TagKey {
    TagKey {
        namespace: upstream.to_owned(),
        repository: repo.to_owned(),
        tag: format!("{LINK_TAG_PREFIX}{digest}"),
    }
}

/// Writes link records, all at once.
async fn persist(tags: &dyn TagStore, links: &[(TagKey, Digest)]) -> Result<(), EngineError> {
    let fetched_at = SystemTime::now();
    let writes = links.iter().map(|(key, digest)| {
        let record = TagRecord {
            digest: digest.clone(),
            media_type: LINK_MEDIA_TYPE.to_owned(),
            fetched_at,
        };
        async move { tags.put(key, &record).await }
    });
    for result in futures_util::future::join_all(writes).await {
        result?;
    }
    Ok(())
}

/// The links between content and (upstream, repository).
pub(crate) struct Links {
    tags: Arc<dyn TagStore>,
    known: Mutex<Bounded<LinkId, ()>>,
    denied: Mutex<Bounded<LinkId, Instant>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").finish_non_exhaustive()
    }
}

impl Links {
    /// Links kept in `tags` (and in memory).
    pub(crate) fn new(tags: Arc<dyn TagStore>) -> Self {
        Self {
            tags,
            known: Mutex::new(Bounded::new(KNOWN_LINKS)),
            denied: Mutex::new(Bounded::new(DENIALS)),
        }
    }

    fn knows(&self, id: &LinkId) -> bool {
        self.known.lock().is_ok_and(|k| k.get(id).is_some())
    }

    fn remember(&self, id: LinkId) -> bool {
        let Ok(mut k) = self.known.lock() else {
            return false;
        };
        if k.get(&id).is_some() {
            return false;
        }
        k.insert(id, (), 1);
        true
    }

    /// Whether `digest` is known to belong to (`upstream`, `repo`): in memory, else in the
    /// tag store (a read only for links not used lately).
    pub(crate) async fn contains(
        &self,
        upstream: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, EngineError> {
        let id = link_id(LINK, upstream, repo, digest);
        if self.knows(&id) {
            return Ok(true);
        }
        let found = self
            .tags
            .get(&record_key(upstream, repo, digest))
            .await?
            .is_some_and(|r| &r.digest == digest);
        if found {
            self.remember(id);
        }
        Ok(found)
    }

    /// Records that each of `digests` belongs to (`upstream`, `repo`). Links new to memory
    /// are written to the tag store in the background (a failed write is logged: the link
    /// is then confirmed again with the upstream after a restart).
    pub(crate) fn learn<'a>(
        &self,
        upstream: &str,
        repo: &str,
        digests: impl IntoIterator<Item = &'a Digest>,
    ) {
        let fresh = self.fresh(upstream, repo, digests);
        if !fresh.is_empty() {
            let tags = Arc::clone(&self.tags);
            tokio::spawn(async move {
                if let Err(e) = persist(tags.as_ref(), &fresh).await {
                    tracing::warn!(error = %e, "could not store a link record");
                }
            });
        }
    }

    /// As [`learn`](Self::learn), and waits until the records are stored.
    pub(crate) async fn learn_now(
        &self,
        upstream: &str,
        repo: &str,
        digests: &[Digest],
    ) -> Result<(), EngineError> {
        let keys: Vec<(TagKey, Digest)> = digests
            .iter()
            .map(|d| {
                self.remember(link_id(LINK, upstream, repo, d));
                (record_key(upstream, repo, d), d.clone())
            })
            .collect();
        persist(self.tags.as_ref(), &keys).await
    }

    /// Remembers each link in memory; returns those that were new there, with their keys.
    fn fresh<'a>(
        &self,
        upstream: &str,
        repo: &str,
        digests: impl IntoIterator<Item = &'a Digest>,
    ) -> Vec<(TagKey, Digest)> {
        digests
            .into_iter()
            .filter(|d| self.remember(link_id(LINK, upstream, repo, d)))
            .map(|d| (record_key(upstream, repo, d), d.clone()))
            .collect()
    }

    /// Records that manifest `m` belongs to (`upstream`, `repo`), and with it everything it
    /// references (config, layers, an index's children). Costs a memory lookup when done
    /// before.
    pub(crate) fn learn_manifest(&self, upstream: &str, repo: &str, m: &Manifest) {
        let marker = link_id(REFS_LINKED, upstream, repo, &m.digest);
        if self.knows(&marker) {
            return;
        }
        let mut digests = references(&m.bytes);
        digests.push(m.digest.clone());
        self.learn(upstream, repo, &digests);
        self.remember(marker);
    }

    /// Whether the upstream said lately that `digest` is not in (`upstream`, `repo`).
    pub(crate) fn denied(&self, upstream: &str, repo: &str, digest: &Digest) -> bool {
        let id = link_id(LINK, upstream, repo, digest);
        self.denied
            .lock()
            .ok()
            .and_then(|d| d.get(&id).copied())
            .is_some_and(|until| Instant::now() < until)
    }

    /// Remembers for `ttl` that the upstream denied `digest` in (`upstream`, `repo`).
    pub(crate) fn deny(&self, upstream: &str, repo: &str, digest: &Digest, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if let Ok(mut d) = self.denied.lock() {
            d.insert(
                link_id(LINK, upstream, repo, digest),
                Instant::now() + ttl,
                1,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    #[test]
    fn link_ids_keep_fields_apart() {
        let d = digest(1);
        let a = link_id(LINK, "docker.io", "a/b", &d);
        assert_ne!(a, link_id(LINK, "docker.i", "oa/b", &d));
        assert_ne!(a, link_id(LINK, "docker.io", "a/b", &digest(2)));
        assert_ne!(a, link_id(REFS_LINKED, "docker.io", "a/b", &d));
        assert_ne!(a, link_id(LINK, "private", "a/b", &d));
    }

    #[test]
    fn record_keys_are_never_real_tags() {
        let key = record_key("docker.io", "a/b", &digest(1));
        assert!(key.tag.starts_with(LINK_TAG_PREFIX));
        assert!(
            !matches!(
                crate::name::Reference::parse(&key.tag),
                Ok(crate::name::Reference::Tag(_))
            ),
            "{} parses as a tag",
            key.tag
        );
    }
}
