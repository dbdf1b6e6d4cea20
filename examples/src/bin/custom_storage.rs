//! Run with: `cargo run -p oci-cache-examples --bin custom-storage -- UPSTREAM_URL LISTEN_ADDR DATA_DIR`
//!
//! A mirror over an embedder's own storage backend: `oci_cache_examples::tiered::TieredStore`
//! (in `src/tiered.rs`), a filesystem store with small blobs (manifests, configs) also kept
//! in memory. Anything implementing `BlobStore` and `TagStore` plugs in the same way; the
//! conformance suite (`oci_cache_storage::blob_store_conformance!`, feature `conformance`)
//! checks a backend against the contract, as `tests/tiered.rs` does for this one.
//!
//! ```sh
//! cargo run -p oci-cache-examples --bin custom-storage -- https://registry-1.docker.io 127.0.0.1:5000 /tmp/tiered
//! skopeo copy --src-tls-verify=false docker://127.0.0.1:5000/library/alpine:3.20 dir:/tmp/alpine
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use oci_cache_core::{Engine, EngineConfig, UpstreamConfig, Upstreams};
use oci_cache_examples::tiered::TieredStore;
use oci_cache_examples::upstream_name;
use oci_cache_server::{serve, CacheService};
use oci_cache_storage::fs::FsStore;

/// Memory for small blobs.
const HOT_BUDGET: u64 = 64 * 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [upstream_url, listen, dir] = args.as_slice() else {
        return Err("usage: custom-storage UPSTREAM_URL LISTEN_ADDR DATA_DIR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let dir = PathBuf::from(dir);

    let upstream = UpstreamConfig::new(upstream_name(upstream_url), upstream_url.as_str());
    let upstreams = Arc::new(Upstreams::new(vec![upstream])?);
    let store = Arc::new(TieredStore::new(
        FsStore::open(dir.join("store")).await?,
        HOT_BUDGET,
    ));
    let mut config = EngineConfig::default();
    config.spool_dir = dir.join("spool");
    std::fs::create_dir_all(&config.spool_dir)?;
    let engine = Arc::new(Engine::new(store.clone(), store, config));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "custom-storage: {upstream_url} on http://{}",
        listener.local_addr()?
    );
    serve(listener, CacheService::new(engine, upstreams), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
