//! The storage write probe behind `/readyz`, run at most once a second: concurrent and
//! repeated probes share the last result, so a flood of anonymous probes (which need no
//! connection slot) costs one small storage commit a second, not one each.

use std::time::{Duration, Instant};

use oci_cache_core::Engine;

/// A result is reused this long.
const REUSE: Duration = Duration::from_secs(1);
/// A probe write that takes longer counts as a failure (within the 5 s the Kubernetes
/// manifests give `/readyz`: an unreachable bucket answers 503, not a timeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The last storage probe and when it ran.
#[derive(Debug, Default)]
pub(crate) struct StorageProbe {
    /// Held across a probe (hence tokio's lock, which has no poisoning): concurrent checks
    /// wait for the running probe and share its result.
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl StorageProbe {
    /// Whether storage takes a write: the last result when it is under a second old, else
    /// a new probe ([`Engine::probe_storage`], one at a time).
    pub(crate) async fn check(&self, engine: &Engine) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref() {
            if at.elapsed() < REUSE {
                return result.clone();
            }
        }
        let result = match tokio::time::timeout(PROBE_TIMEOUT, engine.probe_storage()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}
