//! The library side of the oci-cache examples: the `embed` example's application, factored
//! out of `src/bin/embed.rs` so that `tests/embed.rs` can run it in-process, the
//! `embed-axum` example's router ([`axum_app::router`]), and the `custom-storage` example's
//! backend ([`tiered::TieredStore`]).
//!
//! It shows how another Rust service embeds the pull-through logic: build an
//! [`oci_cache_core::Engine`] over a storage of its own (here a [`MemoryStore`]), wrap it in
//! an [`oci_cache_server::CacheService`], and hand it the requests under `/v2/` while the
//! application keeps its own routes.

pub mod axum_app;
pub mod tiered;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oci_cache_core::{Engine, EngineConfig, UpstreamConfig, UpstreamError, Upstreams};
use oci_cache_server::{Body, CacheService};
use oci_cache_storage::memory::MemoryStore;
use tokio::net::TcpListener;

/// The name an upstream URL is known by: its host (and port), e.g. `quay.io` for
/// `https://quay.io`. Clients may select it with `?ns=NAME` or a `/v2/NAME/...` prefix.
pub fn upstream_name(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// A pull-through cache of the one upstream at `upstream_url`, stored in process memory.
pub fn memory_cache(upstream_url: &str) -> Result<CacheService, UpstreamError> {
    let upstream = UpstreamConfig::new(upstream_name(upstream_url), upstream_url);
    let upstreams = Arc::new(Upstreams::new(vec![upstream])?);
    // Any `BlobStore` + `TagStore` will do; the memory backend is both.
    let store = Arc::new(MemoryStore::new());
    let engine = Arc::new(Engine::new(store.clone(), store, EngineConfig::default()));
    Ok(CacheService::new(engine, upstreams))
}

/// The embedding application: its own routes (`/healthz`) and the registry API under
/// `/v2/`, answered by the cache.
#[derive(Debug, Clone)]
pub struct App {
    cache: CacheService,
}

impl App {
    /// An application that hands `/v2/...` to `cache`.
    pub fn new(cache: CacheService) -> Self {
        Self { cache }
    }

    /// Answers one request.
    pub async fn handle<B: Send + 'static>(&self, req: Request<B>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/v2" || path.starts_with("/v2/") {
            // Equivalently, through tower: `tower_service::Service::call(&mut cache, req)`.
            return self.cache.call_request(req).await;
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// A plain-text response with the cache's body type, so both kinds of route share one
/// response type.
fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let body: Body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` completes. Connections in
/// flight are not waited for.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Running out of descriptors and the like: back off, keep serving.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.handle(req).await) }
                    });
                    // A client that goes away mid-response is not an error of the app.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::upstream_name;

    #[test]
    fn upstream_name_is_the_host() {
        assert_eq!(upstream_name("https://quay.io"), "quay.io");
        assert_eq!(upstream_name("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(
            upstream_name("registry-1.docker.io"),
            "registry-1.docker.io"
        );
    }
}
