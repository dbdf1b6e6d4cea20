//! Run with: `cargo run -p oci-cache-examples --bin embed-axum -- https://registry-1.docker.io 127.0.0.1:8080`
//!
//! Embedding the pull-through cache in an axum application. The application answers its
//! own `/hello`; everything else goes to `oci_cache_server::CacheService`, mounted as the
//! router's fallback, over a `MemoryStore`. The router is `oci_cache_examples::axum_app`
//! (in `src/axum_app.rs`), so the tests can run it too.
//!
//! Try it:
//!
//! ```sh
//! curl http://127.0.0.1:8080/hello
//! curl -i http://127.0.0.1:8080/v2/
//! skopeo copy --src-tls-verify=false docker://127.0.0.1:8080/library/alpine:3.20 dir:/tmp/alpine
//! ```

use std::error::Error;
use std::net::SocketAddr;

use oci_cache_examples::{axum_app, memory_cache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(upstream), listen) = (args.next(), args.next()) else {
        return Err("usage: embed-axum UPSTREAM_URL [LISTEN_ADDR (default 127.0.0.1:8080)]".into());
    };
    let listen: SocketAddr = listen.as_deref().unwrap_or("127.0.0.1:8080").parse()?;

    let app = axum_app::router(memory_cache(&upstream)?);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "embed-axum: http://{}/hello, and /v2/ mirroring {upstream}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
