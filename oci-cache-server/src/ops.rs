//! Operator endpoints beside the API: `/healthz` (the process answers), `/readyz` (storage
//! takes writes; each upstream endpoint's circuit state, reported without failing on it),
//! `/metrics` (Prometheus).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use oci_cache_core::{Engine, Upstreams};

use crate::auth::{AccessPolicy, Identity};
use crate::body::{full_body, Body};
use crate::endpoint::OpsPath;
use crate::metrics::Metrics;
use crate::readiness::StorageProbe;
use crate::status::{status_html, status_json, History, StatusSources};

/// What the operator endpoints read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpsContext<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) upstreams: &'a Upstreams,
    pub(crate) access: &'a AccessPolicy,
    pub(crate) metrics: &'a Metrics,
    pub(crate) probe: &'a StorageProbe,
    /// The storage limit the status page shows.
    pub(crate) max_bytes: Option<u64>,
    /// The last hour, for the status page's charts.
    pub(crate) history: &'a History,
}

/// Answers an operator endpoint; `headers` are the request's. `/metrics` is OpenMetrics
/// when the scraper accepts it, else the Prometheus text format.
pub(crate) async fn handle_ops(
    path: OpsPath,
    headers: &HeaderMap,
    cx: OpsContext<'_>,
) -> Response<Body> {
    let status = |identity: &Identity| {
        let sources = StatusSources {
            engine: cx.engine,
            upstreams: cx.upstreams,
            access: cx.access,
            history: cx.history,
            max_bytes: cx.max_bytes,
        };
        status_json(&sources, identity)
    };
    match path {
        OpsPath::Health => text(StatusCode::OK, "text/plain", "ok\n"),
        OpsPath::StatusPage => {
            let status = status(&viewer(cx.access, headers).await);
            let mut page = text(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status_html(&status),
            );
            // The page needs nothing but its own inline style: no script, no other origin.
            let h = page.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
                ),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            page
        }
        OpsPath::StatusJson => text(
            StatusCode::OK,
            "application/json",
            status(&viewer(cx.access, headers).await).to_string(),
        ),
        OpsPath::Ready => readyz(cx.engine, cx.upstreams, cx.probe).await,
        OpsPath::Metrics => {
            let openmetrics = headers
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            if openmetrics {
                text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    cx.metrics.render_openmetrics(),
                )
            } else {
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    cx.metrics.render_prometheus(),
                )
            }
        }
    }
}

/// Who is looking at the status page (anonymous when the credentials do not check out).
async fn viewer(access: &AccessPolicy, headers: &HeaderMap) -> Identity {
    access
        .identify(headers)
        .await
        .unwrap_or(Identity::Anonymous)
}

async fn readyz(engine: &Engine, upstreams: &Upstreams, probe: &StorageProbe) -> Response<Body> {
    let probe = probe.check(engine).await;
    let storage_ok = probe.is_ok();
    let upstream_states: Vec<serde_json::Value> = upstreams
        .all()
        .iter()
        .map(|u| {
            let endpoints: Vec<serde_json::Value> = u
                .endpoint_states()
                .into_iter()
                .map(|(url, open)| serde_json::json!({"url": url, "circuit": if open { "open" } else { "closed" }}))
                .collect();
            serde_json::json!({"name": u.name(), "endpoints": endpoints})
        })
        .collect();
    let body = serde_json::json!({
        "ready": storage_ok,
        "storage": match &probe { Ok(()) => "writable".to_owned(), Err(e) => format!("not writable: {e}") },
        "upstreams": upstream_states,
    });
    let status = if storage_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "application/json", body.to_string())
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
