//! The pull-through engine: resolves manifests and blobs from storage or, on a miss, from
//! the upstream, verifying everything before it is committed.

mod background;
mod blob;
mod blob_file;
mod bounded;
mod config;
mod evict;
mod fill;
mod flights;
mod hot;
mod in_use;
mod index;
mod limit;
mod links;
mod manifest;
mod negative;
mod probe;
mod referrers;
mod response;
mod stats;
mod tags_list;

use std::sync::Arc;

use crate::name::RepositoryName;
use crate::{BlobStore, EngineError, TagStore};
pub use blob_file::BlobFile;
pub use config::EngineConfig;
pub use fill::RunningFill;
use fill::{FillContext, Fills};
use flights::SingleFlight;
use negative::NegativeCache;
use oci_cache_storage::TagKey;
pub use referrers::{Referrers, REFERRERS_MEDIA_TYPE};
pub use response::{BlobBody, BlobResponse};
use stats::EngineStats;
pub use stats::StatsSnapshot;
pub use tags_list::TagList;

pub use crate::manifest::Manifest as ManifestResponse;

/// The pull-through engine. Cheap to share behind an `Arc`.
pub struct Engine {
    blobs: Arc<dyn BlobStore>,
    tags: Arc<dyn TagStore>,
    fills: Fills,
    revalidations: SingleFlight<TagKey, Result<ManifestResponse, Arc<EngineError>>>,
    list_revalidations: SingleFlight<TagKey, Result<TagList, Arc<EngineError>>>,
    missing: NegativeCache,
    stats: Arc<EngineStats>,
    usage: Arc<in_use::Usage>,
    limit: Arc<limit::Limit>,
    /// Held by an eviction pass: one at a time.
    pass: tokio::sync::Mutex<()>,
    refs: evict::RefIndex,
    links: Arc<links::Links>,
    hot: hot::Hot,
    background: background::Background,
    config: EngineConfig,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over the given stores.
    pub fn new(blobs: Arc<dyn BlobStore>, tags: Arc<dyn TagStore>, config: EngineConfig) -> Self {
        let background = background::Background::default();
        let links = Arc::new(links::Links::new(Arc::clone(&tags), background.clone()));
        let stats: Arc<EngineStats> = Arc::default();
        let usage = Arc::new(in_use::Usage::new(Arc::clone(&blobs), config.touch_every));
        let limit = Arc::new(limit::Limit::new(Arc::clone(&stats)));
        let fills = Fills::new(FillContext::new(
            Arc::clone(&blobs),
            Arc::clone(&stats),
            Arc::clone(&links),
            Arc::clone(&limit),
            &config,
        ));
        Self {
            blobs,
            tags,
            fills,
            revalidations: SingleFlight::default(),
            list_revalidations: SingleFlight::default(),
            missing: NegativeCache::default(),
            stats,
            usage,
            limit,
            pass: tokio::sync::Mutex::new(()),
            refs: evict::RefIndex::default(),
            links,
            hot: hot::Hot::default(),
            background,
            config,
        }
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Declares that `digests` were pulled from `repo` on the upstream named `upstream`, for
    /// content placed in storage by other means (an import, a test): they belong there, and
    /// that upstream produced their bytes. Stored content is served through an (upstream,
    /// repository) only then (see doc/SEMANTICS.md); pulls through the engine record this
    /// themselves.
    pub async fn link(
        &self,
        upstream: &str,
        repo: &RepositoryName,
        digests: &[crate::Digest],
    ) -> Result<(), EngineError> {
        self.links
            .learn_pulled(upstream, repo.as_str(), digests)
            .await
    }

    /// Waits until no fill runs (each has committed what it downloaded, or failed) and the
    /// background work the engine started (link records, an index's children) is done, at
    /// most `limit`; returns how many of them still run then. For a graceful shutdown or
    /// the end of a one-shot job: what a client received before is stored afterwards.
    pub async fn wait_for_fills(&self, limit: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let running = self.fills.len() + self.background.len();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Number of fills running now.
    pub fn fills_in_flight(&self) -> usize {
        self.fills.len()
    }

    /// The `n` images (`upstream/repository:tag`) pulled most by tag, most first, among
    /// the upstreams whose names `visible` accepts (so that a page shown to a client names
    /// only what that client may pull). Only tags that exist upstream or in the cache count.
    pub fn most_pulled(&self, n: usize, visible: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
        self.stats.most_pulled(n, visible)
    }

    /// The engine's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot(self.fills.len());
        if let Some((max, high)) = self.limit.bounds() {
            s.limit_bytes = Some(max);
            s.high_watermark_bytes = Some(high);
        }
        s
    }

    /// The downloads running now, with their progress and how many clients follow each.
    pub fn running_fills(&self) -> Vec<RunningFill> {
        self.fills.running()
    }
}
