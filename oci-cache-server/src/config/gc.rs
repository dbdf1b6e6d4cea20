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

    /// Time between passes (at least one second).
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }
}
