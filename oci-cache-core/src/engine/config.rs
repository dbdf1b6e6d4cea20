//! [`EngineConfig`]: the engine's settings.

use std::path::PathBuf;
use std::time::Duration;

/// Engine settings. Start from [`EngineConfig::default`] and set the fields you need:
///
/// ```
/// let mut config = oci_cache_core::EngineConfig::default();
/// config.spool_dir = std::env::temp_dir().join("oci-cache-spool");
/// ```
///
/// New fields may come in any release (the struct is `#[non_exhaustive]`), each with a
/// default, so this code keeps compiling.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Where fills keep the bytes that clients read while the fill runs (anonymous files,
    /// removed when the fill ends, even after a crash).
    pub spool_dir: PathBuf,
    /// A fill fails when the upstream sends nothing for this long.
    pub fill_idle_timeout: Duration,
    /// Size of the chunks sent to clients.
    pub chunk_size: usize,
    /// When the disk is full (no spool file can be written), fills spool in memory, all of
    /// them together up to this many bytes; a fill that would go past it fails rather than
    /// exhaust memory.
    pub memory_spool_limit: u64,
    /// A hit refreshes its blob's last access in storage at most this often, and a read
    /// that lasts longer refreshes it again every `touch_every` until it ends, so that an
    /// eviction by another process sharing the storage (see
    /// [`GcPolicy::min_idle`](crate::gc::GcPolicy::min_idle)) sees the blob as in use.
    pub touch_every: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            spool_dir: std::env::temp_dir(),
            fill_idle_timeout: Duration::from_secs(60),
            chunk_size: 256 * 1024,
            memory_spool_limit: 256 * 1024 * 1024,
            touch_every: Duration::from_secs(60),
        }
    }
}
