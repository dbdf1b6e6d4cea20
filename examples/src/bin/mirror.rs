//! Run with: `cargo run -p oci-cache-examples --bin mirror -- https://registry-1.docker.io 127.0.0.1:5000 [DATA_DIR]`
//!
//! A minimal pull-through mirror of ONE upstream, built from the library API: storage
//! (in memory, or on disk under DATA_DIR when given), the `Engine`, the `Upstreams`, the
//! `CacheService`, and `serve` until Ctrl-C. The `oci-cache` binary does the same with a
//! configuration file, several upstreams and logs.
//!
//! ```sh
//! skopeo copy --src-tls-verify=false docker://127.0.0.1:5000/library/alpine:3.20 dir:/tmp/alpine
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use oci_cache_core::{BlobStore, Engine, EngineConfig, TagStore, UpstreamConfig, Upstreams};
use oci_cache_server::{serve, CacheService};
use oci_cache_storage::fs::FsStore;
use oci_cache_storage::memory::MemoryStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [upstream_url, listen, rest @ ..] = args.as_slice() else {
        return Err("usage: mirror UPSTREAM_URL LISTEN_ADDR [DATA_DIR]".into());
    };
    let listen: SocketAddr = listen.parse()?;

    // The upstream, named by its host: clients may also select it with `?ns=HOST`.
    let host = upstream_url.split("://").last().unwrap_or(upstream_url);
    let name = host.split('/').next().unwrap_or(host);
    let upstreams = Arc::new(Upstreams::new(vec![UpstreamConfig::new(
        name,
        upstream_url.as_str(),
    )])?);

    // Storage: one value implementing both BlobStore (content by digest) and TagStore.
    let mut config = EngineConfig::default();
    let (blobs, tags): (Arc<dyn BlobStore>, Arc<dyn TagStore>) = if let Some(dir) = rest.first() {
        let dir = PathBuf::from(dir);
        config.spool_dir = dir.join("spool"); // fills in flight, on the same disk
        std::fs::create_dir_all(&config.spool_dir)?;
        let store = Arc::new(FsStore::open(dir.join("store")).await?);
        (store.clone(), store)
    } else {
        let store = Arc::new(MemoryStore::new());
        (store.clone(), store)
    };

    let engine = Arc::new(Engine::new(blobs, tags, config));
    let service = CacheService::new(engine, upstreams);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "mirror: {upstream_url} on http://{}",
        listener.local_addr()?
    );
    serve(listener, service, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
