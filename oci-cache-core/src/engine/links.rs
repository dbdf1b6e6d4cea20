//! Which content belongs to which (upstream, repository). Bytes are stored once per digest,
//! but a digest is served through upstream U and repository R only when it is known to
//! belong there: it was fetched from U for R, a manifest fetched from (U, R) names it, or
//! U confirmed it (an upstream HEAD on R). See doc/SEMANTICS.md, "Who may read what".
//!
//! Bytes an upstream never produced are never served through it: stored content is served
//! through (U, R) only when U *possesses* it too, i.e. U once served bytes that hashed to
//! the digest (a verified fill or manifest fetch). A link alone (a manifest naming the
//! digest, a HEAD) lets the cache ask U for the bytes, not hand out bytes another upstream
//! brought in: a public manifest naming a private layer's digest (foreign layers need not
//! exist upstream) opens nothing.
//!
//! Links and possession live in memory (bounded, oldest out first) and in the tag store, as
//! records under a reserved tag name that no real tag can have (`@<digest>`: a tag never
//! holds `@` or `:`; possession under the repository `@`, never a repository name), so they
//! survive restarts on every backend without a new storage trait.

use std::sync::Arc;

use parking_lot::Mutex;
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
/// The references of one manifest linked at most (a real image has at most 127 layers; an
/// index a few hundred children): a 4 MiB manifest naming 20,000 digests must not cost
/// 20,000 storage writes.
const MAX_LINKED_REFS: usize = 1024;
/// Link records written at once, by all requests together.
const CONCURRENT_WRITES: usize = 8;
/// The repository name under which possession is recorded: never a valid repository.
const POSSESSION: &str = "@";
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

/// Writes link records, at most [`CONCURRENT_WRITES`] at a time across all callers.
async fn persist(
    tags: &dyn TagStore,
    writes: &tokio::sync::Semaphore,
    links: &[(TagKey, Digest)],
) -> Result<(), EngineError> {
    let fetched_at = SystemTime::now();
    let mut first_error = None;
    for (key, digest) in links {
        let Ok(_permit) = writes.acquire().await else {
            break;
        };
        let record = TagRecord {
            digest: digest.clone(),
            media_type: LINK_MEDIA_TYPE.to_owned(),
            fetched_at,
        };
        if let Err(e) = tags.put(key, &record).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// The links between content and (upstream, repository).
pub(crate) struct Links {
    tags: Arc<dyn TagStore>,
    background: super::background::Background,
    writes: Arc<tokio::sync::Semaphore>,
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
    pub(crate) fn new(tags: Arc<dyn TagStore>, background: super::background::Background) -> Self {
        Self {
            tags,
            background,
            writes: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_WRITES)),
            known: Mutex::new(Bounded::new(KNOWN_LINKS)),
            denied: Mutex::new(Bounded::new(DENIALS)),
        }
    }

    fn knows(&self, id: &LinkId) -> bool {
        self.known.lock().get(id).is_some()
    }

    fn remember(&self, id: LinkId) -> bool {
        let mut k = self.known.lock();
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
            let (tags, writes) = (Arc::clone(&self.tags), Arc::clone(&self.writes));
            self.background.spawn(async move {
                if let Err(e) = persist(tags.as_ref(), &writes, &fresh).await {
                    tracing::warn!(error = %e, "could not store a link record");
                }
            });
        }
    }

    /// Records that `upstream` served each of `digests` for `repo` (possession and link,
    /// as after a verified fill), and waits until the records are stored.
    pub(crate) async fn learn_pulled(
        &self,
        upstream: &str,
        repo: &str,
        digests: &[Digest],
    ) -> Result<(), EngineError> {
        let mut keys = Vec::with_capacity(digests.len() * 2);
        for d in digests {
            for r in [POSSESSION, repo] {
                self.remember(link_id(LINK, upstream, r, d));
                keys.push((record_key(upstream, r, d), d.clone()));
            }
        }
        persist(self.tags.as_ref(), &self.writes, &keys).await
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
        digests.truncate(MAX_LINKED_REFS);
        digests.push(m.digest.clone());
        self.learn(upstream, repo, &digests);
        self.remember(marker);
    }

    /// Whether `upstream` once served bytes that hashed to `digest` (see the module
    /// documentation): only then are stored bytes served through it.
    pub(crate) async fn possesses(
        &self,
        upstream: &str,
        digest: &Digest,
    ) -> Result<bool, EngineError> {
        self.contains(upstream, POSSESSION, digest).await
    }

    /// Records that `upstream` served bytes that hashed to `digest` (call only after the
    /// verification), and that they belong to `repo` there.
    pub(crate) fn learn_possession(&self, upstream: &str, repo: &str, digest: &Digest) {
        self.learn(upstream, POSSESSION, [digest]);
        self.learn(upstream, repo, [digest]);
    }

    /// Whether the upstream said lately that `digest` is not in (`upstream`, `repo`).
    pub(crate) fn denied(&self, upstream: &str, repo: &str, digest: &Digest) -> bool {
        let id = link_id(LINK, upstream, repo, digest);
        self.denied
            .lock()
            .get(&id)
            .copied()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Remembers for `ttl` that the upstream denied `digest` in (`upstream`, `repo`).
    pub(crate) fn deny(&self, upstream: &str, repo: &str, digest: &Digest, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut d = self.denied.lock();
        d.insert(
            link_id(LINK, upstream, repo, digest),
            Instant::now() + ttl,
            1,
        );
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

    #[tokio::test]
    async fn a_manifest_links_at_most_max_linked_refs_references() {
        let store = Arc::new(oci_cache_storage::memory::MemoryStore::new());
        let links = Links::new(store, crate::engine::background::Background::default());
        let refs: Vec<Digest> = (0..MAX_LINKED_REFS as u32 + 500)
            .map(|i| Digest::sha256_of(&i.to_be_bytes()))
            .collect();
        let layers: Vec<serde_json::Value> = refs
            .iter()
            .map(|d| serde_json::json!({"mediaType": "x", "digest": d.to_string(), "size": 1}))
            .collect();
        let bytes =
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "layers": layers})).unwrap();
        let m = Manifest {
            digest: Digest::sha256_of(&bytes),
            bytes: bytes.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
        };
        links.learn_manifest("docker.io", "a/b", &m);
        let known = |d: &Digest| links.knows(&link_id(LINK, "docker.io", "a/b", d));
        assert!(known(&refs[MAX_LINKED_REFS - 1]));
        assert!(!known(&refs[MAX_LINKED_REFS]), "past the cap");
        assert!(known(&m.digest));
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
