//! The `[limits]` section: how long a client connection may go without using the cache,
//! and how many may be open. Together with the top-level `max_connections` (requests
//! served at once), it fills the listener's [`ServeOptions`].

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ServeOptions;

/// Connection limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Client connections open at once, served or not; when reached, the one unserved the
    /// longest is closed to make room (absent: 4 times `max_connections`).
    #[serde(default)]
    pub max_open_connections: Option<usize>,
    /// Seconds a client has to send a complete request head: from connecting for the
    /// first request, from its first byte for later ones (default 20; at least 1).
    #[serde(default = "default_header")]
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay silent between requests (default 75; at
    /// least 1).
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Seconds a response may go without the client reading any of it before the
    /// connection is closed (default 60; at least 1).
    #[serde(default = "default_stalled_write")]
    pub stalled_write_timeout_secs: u64,
    /// Send cached blobs of 64 KiB or more with `sendfile` on plain HTTP connections
    /// (default true).
    #[serde(default = "default_zero_copy")]
    pub zero_copy: bool,
}

fn default_header() -> u64 {
    20
}
fn default_idle() -> u64 {
    75
}
fn default_zero_copy() -> bool {
    true
}

fn default_stalled_write() -> u64 {
    60
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_open_connections: None,
            header_timeout_secs: default_header(),
            idle_timeout_secs: default_idle(),
            stalled_write_timeout_secs: default_stalled_write(),
            zero_copy: default_zero_copy(),
        }
    }
}

impl LimitsSection {
    /// The listener's options: `max_connections` requests served at once, these limits,
    /// and `tls`.
    #[must_use]
    pub fn serve_options(
        &self,
        max_connections: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> ServeOptions {
        let secs = |s: u64| Duration::from_secs(s.max(1));
        ServeOptions {
            max_connections,
            max_open_connections: self.max_open_connections,
            header_timeout: secs(self.header_timeout_secs),
            idle_timeout: secs(self.idle_timeout_secs),
            stalled_write_timeout: secs(self.stalled_write_timeout_secs),
            tls,
            zero_copy: self.zero_copy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_serve_options_and_zero_counts_as_one_second() {
        let from_config = LimitsSection::default().serve_options(1024, None);
        let default = ServeOptions::default();
        assert_eq!(from_config.header_timeout, default.header_timeout);
        assert_eq!(from_config.idle_timeout, default.idle_timeout);
        assert_eq!(
            from_config.stalled_write_timeout,
            default.stalled_write_timeout
        );
        assert_eq!(from_config.effective_max_open_connections(), 4096);
        let zero: LimitsSection = toml::from_str("header_timeout_secs = 0").unwrap();
        assert_eq!(
            zero.serve_options(4, None).header_timeout,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_open_cap_stays_above_the_slots() {
        let low: LimitsSection = toml::from_str("max_open_connections = 2").unwrap();
        assert_eq!(
            low.serve_options(8, None).effective_max_open_connections(),
            9
        );
        assert!(toml::from_str::<LimitsSection>("header_timeout = 3").is_err());
    }
}
