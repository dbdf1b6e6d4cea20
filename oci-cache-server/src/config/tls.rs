//! The `[tls]` section: HTTPS on the listeners, with certificate reload.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// TLS settings. Absent: plain HTTP (the simple default inside a cluster).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Seconds between checks of both files for a change; a changed pair is loaded for
    /// new connections (default 30; 0: never reload).
    #[serde(default = "default_reload")]
    pub reload_secs: u64,
}

fn default_reload() -> u64 {
    30
}

impl TlsSection {
    /// How often the files are checked, `None` when never.
    #[must_use]
    pub fn reload_interval(&self) -> Option<Duration> {
        (self.reload_secs > 0).then(|| Duration::from_secs(self.reload_secs))
    }
}
