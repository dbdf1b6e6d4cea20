//! Run with: `cargo run -p oci-cache-examples --bin embed -- https://registry-1.docker.io 127.0.0.1:8080`
//!
//! Embedding the pull-through cache in another hyper service. The application answers its
//! own `/healthz` and hands everything under `/v2/` to `oci_cache_server::CacheService`,
//! which runs over a `MemoryStore` (any `BlobStore` + `TagStore` would do). The application
//! itself is `oci_cache_examples::App` (in `src/lib.rs`), so the tests can run it too.
//!
//! Try it:
//!
//! ```sh
//! curl http://127.0.0.1:8080/healthz
//! curl -i http://127.0.0.1:8080/v2/
//! skopeo copy --src-tls-verify=false docker://127.0.0.1:8080/library/alpine:3.20 dir:/tmp/alpine
//! ```

use std::error::Error;
use std::net::SocketAddr;

use oci_cache_examples::{memory_cache, serve, App};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(upstream), listen) = (args.next(), args.next()) else {
        return Err("usage: embed UPSTREAM_URL [LISTEN_ADDR (default 127.0.0.1:8080)]".into());
    };
    let listen: SocketAddr = listen.as_deref().unwrap_or("127.0.0.1:8080").parse()?;

    let app = App::new(memory_cache(&upstream)?);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "embed: http://{}/healthz, and /v2/ mirroring {upstream}",
        listener.local_addr()?
    );
    serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
