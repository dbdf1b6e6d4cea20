//! The upstream of the examples' tests: the real CNCF distribution registry
//! (`docker-registry`, Debian package docker-registry) on 127.0.0.1, holding blobs of
//! deterministic random bytes.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use oci_cache_benches::{random_chunks, Registry};

/// The repository the blobs are pushed to.
pub(crate) const REPO: &str = "team/app";

/// A running registry and a client for it.
pub(crate) struct Upstream {
    pub(crate) registry: Registry,
    pub(crate) client: reqwest::Client,
}

impl Upstream {
    /// Starts the registry; fails loudly when `docker-registry` is not installed.
    pub(crate) async fn start() -> Self {
        let client = client();
        let registry = Registry::start(Path::new("docker-registry"))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry (apt-get install docker-registry): {e}")
            });
        Self { registry, client }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.registry.addr)
    }

    /// Pushes `size` bytes made from `seed`; returns the digest and the bytes.
    pub(crate) async fn push(&mut self, seed: u64, size: u64) -> (String, Vec<u8>) {
        let digest = self
            .registry
            .push_random_blob(&self.client, REPO, seed, size)
            .await
            .unwrap();
        (
            digest,
            random_chunks(seed, size, 1 << 20).flatten().collect(),
        )
    }

    /// Blob GETs of `digest` the registry has answered.
    pub(crate) fn blob_gets(&self, digest: &str) -> usize {
        self.registry.completed_gets(digest)
    }
}

/// A client with a time limit on every request.
pub(crate) fn client() -> reqwest::Client {
    oci_cache_core::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}
