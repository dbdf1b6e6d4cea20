//! [`Engine::probe_storage`]: whether the storage takes a write, for readiness checks.

use bytes::Bytes;

use super::Engine;
use crate::{Digest, EngineError};

/// The blob the probe writes. Committing it again is a no-op success, so repeated probes
/// store nothing new.
const PROBE: &[u8] = b"oci-cache readiness probe\n";

impl Engine {
    /// Writes and commits a small fixed blob through the blob store: `Ok` when the storage
    /// takes writes. Runs as long as the storage takes; callers that must answer in time
    /// (a readiness endpoint) put their own time limit on it.
    pub async fn probe_storage(&self) -> Result<(), EngineError> {
        let digest = Digest::sha256_of(PROBE);
        let mut writer = self.blobs.writer(&digest, Some(PROBE.len() as u64)).await?;
        writer.write(Bytes::from_static(PROBE)).await?;
        writer.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use oci_cache_storage::memory::MemoryStore;

    use super::*;
    use crate::{BlobStore, EngineConfig};

    #[tokio::test]
    async fn the_probe_blob_is_stored_and_probing_again_succeeds() {
        let store = Arc::new(MemoryStore::new());
        let engine = Engine::new(store.clone(), store.clone(), EngineConfig::default());
        for _ in 0..2 {
            engine.probe_storage().await.unwrap();
        }
        let meta = store.head(&Digest::sha256_of(PROBE)).await.unwrap();
        assert_eq!(meta.map(|m| m.size), Some(PROBE.len() as u64));
    }
}
