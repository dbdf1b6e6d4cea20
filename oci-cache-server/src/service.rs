//! [`CacheService`]: the tower `Service` that another application can mount.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use oci_cache_core::{Engine, Upstreams};

use crate::auth::AccessPolicy;
use crate::error::{error_response, ApiError};
use crate::handler::{handle, LogInfo};
use crate::metrics::Metrics;
use crate::ops::{handle_ops, route_label};
use crate::readiness::StorageProbe;
use oci_cache_core::route::RouteParseError;

/// The error type of a response body: a body that fails is cut, never completed.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The response body of [`CacheService`].
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A body holding `bytes`.
pub(crate) fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The API and the operator endpoints (metrics, health, status).
    #[default]
    Both,
    /// The API and `/healthz` only (the operator endpoints are on an admin listener).
    Api,
    /// The operator endpoints only.
    Admin,
}

/// The OCI distribution API (pull side) over an [`Engine`] and its [`Upstreams`].
#[derive(Debug, Clone)]
pub struct CacheService {
    engine: Arc<Engine>,
    upstreams: Arc<Upstreams>,
    access: Arc<AccessPolicy>,
    metrics: Arc<Metrics>,
    probe: Arc<StorageProbe>,
    role: Role,
    max_bytes: Option<u64>,
}

impl CacheService {
    /// A service over `engine`, routing to `upstreams`, open to every client.
    pub fn new(engine: Arc<Engine>, upstreams: Arc<Upstreams>) -> Self {
        let metrics = Arc::new(Metrics::new(Arc::clone(&engine), Arc::clone(&upstreams)));
        Self {
            engine,
            upstreams,
            access: Arc::default(),
            metrics,
            probe: Arc::default(),
            role: Role::Both,
            max_bytes: None,
        }
    }

    /// The same service in another [`Role`] (sharing engine and metrics).
    #[must_use]
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// The storage limit the status page shows.
    #[must_use]
    pub fn with_storage_limit(mut self, max_bytes: Option<u64>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The same service with client access control.
    #[must_use]
    pub fn with_access(mut self, access: AccessPolicy) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// Answers one request. The request body is ignored (the pull API has none).
    pub async fn call_request<B>(&self, req: Request<B>) -> Response<Body> {
        let started = Instant::now();
        let (parts, _body) = req.into_parts();
        let path = parts.uri.path();
        let ops = match self.role {
            Role::Api if path != "/healthz" => None,
            _ => {
                handle_ops(
                    &parts,
                    &self.engine,
                    &self.upstreams,
                    &self.metrics,
                    &self.access,
                    &self.probe,
                    self.max_bytes,
                )
                .await
            }
        };
        let mut resp = match (ops, self.role) {
            (Some(resp), _) => resp,
            (None, Role::Admin) => error_response(&ApiError::Path(RouteParseError::NotFound)),
            (None, _) => match handle(&self.engine, &self.upstreams, &self.access, &parts).await {
                Ok(resp) => resp,
                Err(failure) => {
                    tracing::debug!(error = %failure.error, "request failed");
                    let mut resp = error_response(&failure.error);
                    if let Some(upstream) = failure.upstream {
                        resp.extensions_mut().insert(LogInfo {
                            upstream,
                            cache: "-",
                        });
                    }
                    resp
                }
            },
        };
        let route = route_label(path);
        self.metrics.request(route, resp.status().as_u16());
        resp.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        let info = resp.extensions().get::<LogInfo>();
        let bytes = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            method = %parts.method,
            route,
            path,
            upstream = info.map_or("-", |i| i.upstream.as_str()),
            cache = info.map_or("-", |i| i.cache),
            bytes,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        resp
    }
}

impl<B: Send + 'static> tower_service::Service<Request<B>> for CacheService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.call_request(req).await) })
    }
}
