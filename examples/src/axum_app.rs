//! The `embed-axum` example's application: an axum [`Router`] with routes of its own and
//! the pull-through cache mounted beside them.
//!
//! [`CacheService`] is a tower `Service` for any request body whose error type is
//! `Infallible`, which is what axum asks of a mounted service. It goes in as the router's
//! fallback rather than under `nest_service("/v2", ...)`, because a nested service sees
//! its paths with the prefix cut off, and the cache needs the whole `/v2/...` path.

use axum::routing::get;
use axum::Router;
use oci_cache_server::{CacheService, Role};

/// The application's router: `GET /hello` is the application's; every path it does not
/// route goes to `cache`, which answers the registry API under `/v2/` and `/healthz`, and
/// 404 (an OCI error body) to anything else.
///
/// The cache serves in [`Role::Api`], so its operator endpoints (`/metrics`, `/readyz`,
/// the status page) are not exposed beside the application's routes; an application that
/// wants them mounts a second `CacheService` in [`Role::Admin`] on its own listener.
pub fn router(cache: CacheService) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .fallback_service(cache.with_role(Role::Api))
}

/// The application's own handler.
async fn hello() -> &'static str {
    "hello from the application\n"
}
