//! [`CacheService`]: the tower `Service` that another application can mount.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Request, Response};
use oci_cache_core::route::{Route, RouteParseError};
use oci_cache_core::{Engine, Upstreams};

use crate::auth::AccessPolicy;
use crate::body::Body;
use crate::endpoint::{Endpoint, OpsPath};
use crate::error::{error_response, ApiError};
use crate::handler::handle;
use crate::metrics::Metrics;
use crate::ops::{handle_ops, OpsContext};
use crate::outcome::Outcome;
use crate::peers::Peers;
use crate::readiness::StorageProbe;

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
    peers: Option<Arc<Peers>>,
    history: Arc<crate::status::History>,
}

impl CacheService {
    /// A service over `engine`, routing to `upstreams`, open to every client.
    pub fn new(engine: Arc<Engine>, upstreams: Arc<Upstreams>) -> Self {
        let metrics = Arc::new(Metrics::new(Arc::clone(&engine), Arc::clone(&upstreams)));
        let history = crate::status::History::start(Arc::clone(&engine), Arc::clone(&upstreams));
        Self {
            history,
            engine,
            upstreams,
            access: Arc::default(),
            metrics,
            probe: Arc::default(),
            role: Role::Both,
            max_bytes: None,
            peers: None,
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

    /// The same service as one replica of several (see [`crate::peers`]): misses of blobs
    /// another replica owns are forwarded to it, and peer requests are answered.
    #[must_use]
    pub fn with_peers(mut self, peers: Arc<Peers>) -> Self {
        self.metrics = Arc::new(Metrics::with_peers(
            Arc::clone(&self.engine),
            Arc::clone(&self.upstreams),
            Arc::clone(&peers),
        ));
        self.peers = Some(peers);
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
        self.call_request_since(req, Instant::now()).await
    }

    /// [`Self::call_request`] for a request whose head the server took in at `started`
    /// (before its wait for a request slot): the start of its
    /// `oci_cache_http_request_duration_seconds` observation.
    pub(crate) async fn call_request_since<B>(
        &self,
        req: Request<B>,
        started: Instant,
    ) -> Response<Body> {
        let (parts, _body) = req.into_parts();
        let endpoint = Endpoint::parse(parts.uri.path());
        let route = endpoint.label();
        let Outcome {
            response: mut resp,
            log,
        } = self.answer(endpoint, &parts).await;
        self.metrics
            .request(route, resp.status().as_u16(), started.elapsed());
        resp.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        let bytes = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info!(
            method = %parts.method,
            route,
            path = parts.uri.path(),
            upstream = log.upstream.as_deref().unwrap_or("-"),
            cache = log.cache,
            bytes,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        resp
    }

    /// The outcome of a request for `endpoint`, as this service's [`Role`] serves it: an
    /// API listener answers no operator endpoint but `/healthz`, an admin listener no API
    /// route.
    async fn answer(&self, endpoint: Endpoint, parts: &Parts) -> Outcome {
        match (endpoint, self.role) {
            (Endpoint::Ops(path), Role::Both | Role::Admin)
            | (Endpoint::Ops(path @ OpsPath::Health), Role::Api) => {
                let cx = OpsContext {
                    engine: &self.engine,
                    upstreams: &self.upstreams,
                    access: &self.access,
                    metrics: &self.metrics,
                    probe: &self.probe,
                    max_bytes: self.max_bytes,
                    history: &self.history,
                };
                Outcome::plain(handle_ops(path, &parts.headers, cx).await)
            }
            (Endpoint::Api(_), Role::Admin) => {
                Outcome::plain(error_response(&ApiError::Path(RouteParseError::NotFound)))
            }
            // Not an API path either: the API handler answers it as such.
            (Endpoint::Ops(_), Role::Api) => self.api(parts, Err(RouteParseError::NotFound)).await,
            (Endpoint::Api(route), Role::Both | Role::Api) => self.api(parts, route).await,
        }
    }

    /// The outcome of an API request (`route`, parsed from its path).
    async fn api(&self, parts: &Parts, route: Result<Route, RouteParseError>) -> Outcome {
        let peers = self.peers.as_ref();
        handle(
            &self.engine,
            &self.upstreams,
            &self.access,
            peers,
            parts,
            route,
        )
        .await
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
