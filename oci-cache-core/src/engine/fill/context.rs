//! What every fill shares, made once with the engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::memory_budget::MemoryBudget;
use crate::engine::limit::Limit;
use crate::engine::links::Links;
use crate::engine::stats::EngineStats;
use crate::engine::EngineConfig;
use crate::BlobStore;

/// What every fill shares: made once with the engine.
pub(crate) struct FillContext {
    pub(crate) blobs: Arc<dyn BlobStore>,
    /// A fill fails when the upstream sends nothing for this long.
    pub(crate) idle_timeout: Duration,
    /// Where spool files are made.
    pub(crate) spool_dir: PathBuf,
    /// The memory all memory spools together may hold.
    pub(crate) memory_budget: Arc<MemoryBudget>,
    pub(crate) stats: Arc<EngineStats>,
    /// Learns, once the bytes are verified, that the upstream possesses the digest and that
    /// it belongs to the repository.
    pub(crate) links: Arc<Links>,
    /// Room in storage, asked for before a fill stores.
    pub(crate) limit: Arc<Limit>,
}

impl FillContext {
    /// A context; the memory spools together may hold `memory_spool_limit` bytes.
    pub(crate) fn new(
        blobs: Arc<dyn BlobStore>,
        stats: Arc<EngineStats>,
        links: Arc<Links>,
        limit: Arc<Limit>,
        config: &EngineConfig,
    ) -> Self {
        Self {
            blobs,
            idle_timeout: config.fill_idle_timeout,
            spool_dir: config.spool_dir.clone(),
            memory_budget: MemoryBudget::new(config.memory_spool_limit),
            stats,
            links,
            limit,
        }
    }
}
