//! Operator endpoints beside the API: `/healthz` (the process answers), `/readyz` (storage
//! takes writes; each upstream endpoint's circuit state, reported without failing on it),
//! `/metrics` (Prometheus).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use oci_cache_core::route::{parse_path, Route};
use oci_cache_core::{Engine, Upstreams};

use crate::auth::{AccessPolicy, Identity};
use crate::metrics::Metrics;
use crate::readiness::StorageProbe;
use crate::service::{full_body, Body};
use crate::status::{status_html, status_json};

/// Answers an operator path, or `None` for any other path. `/metrics` is OpenMetrics when
/// the scraper accepts it, else the Prometheus text format.
pub(crate) async fn handle_ops(
    parts: &http::request::Parts,
    engine: &Engine,
    upstreams: &Upstreams,
    metrics: &Metrics,
    access: &AccessPolicy,
    probe: &StorageProbe,
    max_bytes: Option<u64>,
) -> Option<Response<Body>> {
    let status = |identity: &Identity| status_json(engine, upstreams, access, identity, max_bytes);
    match parts.uri.path() {
        "/healthz" => Some(text(StatusCode::OK, "text/plain", "ok\n")),
        "/" | "/status" => {
            let status = status(&viewer(access, parts).await);
            Some(text(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status_html(&status),
            ))
        }
        "/status.json" => Some(text(
            StatusCode::OK,
            "application/json",
            status(&viewer(access, parts).await).to_string(),
        )),
        "/readyz" => Some(readyz(engine, upstreams, probe).await),
        "/metrics" => {
            let openmetrics = parts
                .headers
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            Some(if openmetrics {
                text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.render_openmetrics(),
                )
            } else {
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render_prometheus(),
                )
            })
        }
        _ => None,
    }
}

/// Who is looking at the status page (anonymous when the credentials do not check out).
async fn viewer(access: &AccessPolicy, parts: &http::request::Parts) -> Identity {
    access
        .identify(&parts.headers)
        .await
        .unwrap_or(Identity::Anonymous)
}

/// Whether `path` is a health probe (`/healthz`, `/readyz`): answered without a
/// connection slot, so probes pass while every slot serves a request.
pub(crate) fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// The route label of a request path, for metrics.
pub(crate) fn route_label(path: &str) -> &'static str {
    match path {
        p if is_probe(p) => return "health",
        "/" | "/status" | "/status.json" => return "status",
        "/metrics" => return "metrics",
        _ => {}
    }
    match parse_path(path) {
        Ok(Route::ApiVersion) => "version",
        Ok(Route::Manifest { .. }) => "manifest",
        Ok(Route::Blob { .. }) => "blob",
        Ok(Route::TagsList { .. }) => "tags",
        Ok(Route::Referrers { .. }) => "referrers",
        Ok(Route::Upload) => "upload",
        Err(_) => "other",
    }
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
