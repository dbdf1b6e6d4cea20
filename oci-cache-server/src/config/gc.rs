//! The `[gc]` section: storage limits and how often eviction runs.

use std::time::Duration;

use oci_cache_core::gc::GcPolicy;
use serde::Deserialize;

use super::ConfigError;

/// Eviction settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSection {
    /// Stored bytes allowed (absent: no size limit).
    pub max_bytes: Option<u64>,
    /// Eviction starts above this fraction of `max_bytes` (default 0.9).
    #[serde(default = "default_high")]
    pub high_watermark: f64,
    /// ... and stops at or below this fraction (default 0.8).
    #[serde(default = "default_low")]
    pub low_watermark: f64,
    /// Images not used for this many seconds are evicted (default 7 days; 0: never).
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
    /// Seconds between eviction passes (default 300).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Where several processes evict from one storage (replicas with `peers`, or
    /// `oci-cache gc` beside running caches): a blob read by any of them within this many
    /// seconds is never evicted (default 1800, at least 8). Readers refresh a blob's last
    /// access every quarter of it while they read, so no read anywhere is cut.
    #[serde(default = "default_min_idle")]
    pub min_idle_secs: u64,
}

fn default_min_idle() -> u64 {
    1800
}

fn default_high() -> f64 {
    0.9
}
fn default_low() -> f64 {
    0.8
}
fn default_max_age() -> u64 {
    7 * 24 * 3600
}
fn default_interval() -> u64 {
    300
}

impl Default for GcSection {
    fn default() -> Self {
        Self {
            max_bytes: None,
            high_watermark: default_high(),
            low_watermark: default_low(),
            max_age_secs: default_max_age(),
            interval_secs: default_interval(),
            min_idle_secs: default_min_idle(),
        }
    }
}

impl GcSection {
    /// The engine's policy, checked (0 < low <= high <= 1).
    pub fn policy(&self) -> Result<GcPolicy, ConfigError> {
        let (low, high) = (self.low_watermark, self.high_watermark);
        if !(low > 0.0 && low <= high && high <= 1.0) {
            return Err(ConfigError::Gc(format!(
                "watermarks must satisfy 0 < low <= high <= 1, got low {low}, high {high}"
            )));
        }
        let mut policy = GcPolicy::default();
        policy.max_bytes = self.max_bytes;
        policy.high_watermark = high;
        policy.low_watermark = low;
        policy.max_age = (self.max_age_secs > 0).then(|| Duration::from_secs(self.max_age_secs));
        Ok(policy)
    }

    /// [`GcSection::policy`] for a process that shares its storage with others that read
    /// it: blobs read within `min_idle_secs` anywhere stay.
    pub fn shared_policy(&self) -> Result<GcPolicy, ConfigError> {
        if self.min_idle_secs < 8 {
            return Err(ConfigError::Gc(format!(
                "min_idle_secs must be at least 8, got {}",
                self.min_idle_secs
            )));
        }
        let mut policy = self.policy()?;
        policy.min_idle = Some(Duration::from_secs(self.min_idle_secs));
        Ok(policy)
    }

    /// How often a blob's last access is written to shared storage while it is used: a
    /// quarter of `min_idle_secs`, at most 10 minutes (each write is an S3 request). A
    /// blob being read anywhere then shows a last access no older than about this
    /// interval plus the engine's own refresh period (the same, at most a minute), the
    /// time of the write and the storage's whole-second timestamps: well under
    /// `min_idle_secs`.
    pub fn touch_every(&self) -> Duration {
        Duration::from_secs((self.min_idle_secs / 4).clamp(2, 600))
    }

    /// Time between passes (at least one second).
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }
}
