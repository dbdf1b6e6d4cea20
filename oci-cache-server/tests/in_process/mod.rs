//! In-process test helpers: an engine over a memory store, content seeded as a pull through
//! given routes would leave it, and one request through a `CacheService`.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use oci_cache_core::name::RepositoryName;
use oci_cache_core::{Digest, Engine, EngineConfig};
use oci_cache_server::CacheService;
use oci_cache_storage::memory::MemoryStore;
use oci_cache_storage::BlobStore;

/// An engine over a fresh memory store, its spool in a temp dir.
pub struct InProcess {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Its blob and tag store.
    pub store: Arc<MemoryStore>,
    _spool: tempfile::TempDir,
}

impl InProcess {
    /// A new engine with the default settings.
    pub fn new() -> InProcess {
        let store = Arc::new(MemoryStore::new());
        let spool = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::default();
        config.spool_dir = spool.path().to_path_buf();
        let engine = Arc::new(Engine::new(store.clone(), store.clone(), config));
        InProcess {
            engine,
            store,
            _spool: spool,
        }
    }

    /// Stores `bytes` as the cache would after pulling them through each (upstream,
    /// repository) of `from`; returns the digest.
    pub async fn seed(&self, bytes: &[u8], from: &[(&str, &str)]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let mut w = self
            .store
            .writer(&digest, Some(bytes.len() as u64))
            .await
            .unwrap();
        w.write(Bytes::copy_from_slice(bytes)).await.unwrap();
        w.commit().await.unwrap();
        for (upstream, repo) in from {
            let repo = RepositoryName::parse(repo).unwrap();
            self.engine
                .link(upstream, &repo, std::slice::from_ref(&digest))
                .await
                .unwrap();
        }
        digest
    }
}

/// `GET uri` through `service`, with a bearer token when given: status and whole body.
pub async fn get_as(service: &CacheService, uri: &str, token: Option<&str>) -> (StatusCode, Bytes) {
    let mut req = Request::builder().uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = service.call_request(req.body(()).unwrap()).await;
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}
