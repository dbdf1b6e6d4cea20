//! The status page: stored size against the limit, hit ratio, upstream health and the most
//! pulled images, as HTML (`/`) and JSON (`/status.json`).

use std::fmt::Write as _;

use oci_cache_core::{Engine, Upstreams};

use crate::auth::{AccessPolicy, Identity};
use serde_json::{json, Value};

/// Images listed as most pulled.
const TOP: usize = 10;

/// The status as JSON, as `identity` may see it: the most pulled images of upstreams it
/// may not pull from are left out.
pub(crate) fn status_json(
    engine: &Engine,
    upstreams: &Upstreams,
    access: &AccessPolicy,
    identity: &Identity,
    max_bytes: Option<u64>,
) -> Value {
    let s = engine.stats();
    let lookups = s.blob_hits + s.blob_misses;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let hit_ratio = if lookups == 0 {
        None
    } else {
        Some(s.blob_hits as f64 / lookups as f64)
    };
    let upstream_health: Vec<Value> = upstreams
        .all()
        .iter()
        .map(|u| {
            let st = u.stats();
            let endpoints: Vec<Value> = u
                .endpoint_states()
                .into_iter()
                .map(|(url, open)| json!({"url": url, "circuit": if open { "open" } else { "closed" }}))
                .collect();
            json!({
                "name": u.name(),
                "requests": st.requests,
                "errors": st.errors,
                "ratelimit_remaining": u.rate_limit().map(|r| r.remaining),
                "endpoints": endpoints,
            })
        })
        .collect();
    let most_pulled: Vec<Value> = engine
        .most_pulled(TOP, |upstream| access.allows(upstream, identity))
        .into_iter()
        .map(|(image, pulls)| json!({"image": image, "pulls": pulls}))
        .collect();
    json!({
        "stored_bytes": s.stored_bytes,
        "stored_objects": s.stored_objects,
        "max_bytes": max_bytes,
        "blob_hits": s.blob_hits,
        "blob_misses": s.blob_misses,
        "hit_ratio": hit_ratio,
        "bytes_from_cache": s.bytes_from_cache,
        "bytes_from_upstream": s.bytes_from_upstream,
        "fills_in_flight": s.fills_in_flight,
        "evicted_blobs": s.evicted_blobs,
        "upstreams": upstream_health,
        "most_pulled": most_pulled,
    })
}

/// The same as a small HTML page.
pub(crate) fn status_html(status: &Value) -> String {
    let esc = |v: &Value| {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        };
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut rows = String::new();
    for u in status["upstreams"].as_array().into_iter().flatten() {
        let circuits: Vec<String> = u["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{} ({})", esc(&e["url"]), esc(&e["circuit"])))
            .collect();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u["name"]),
            esc(&u["requests"]),
            esc(&u["errors"]),
            esc(&u["ratelimit_remaining"]),
            circuits.join("<br>")
        );
    }
    let mut pulled = String::new();
    for p in status["most_pulled"].as_array().into_iter().flatten() {
        let _ = write!(
            pulled,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&p["image"]),
            esc(&p["pulls"])
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>oci-cache</title></head><body>\
         <h1>oci-cache</h1>\
         <p>Stored: {} bytes in {} blobs (limit {}). Hit ratio: {} ({} hits, {} misses). \
         Fills in flight: {}. Evicted blobs: {}.</p>\
         <h2>Upstreams</h2><table border=\"1\"><tr><th>name</th><th>requests</th><th>errors</th>\
         <th>rate limit left</th><th>endpoints</th></tr>{rows}</table>\
         <h2>Most pulled</h2><table border=\"1\"><tr><th>image</th><th>pulls</th></tr>{pulled}</table>\
         <p><a href=\"/status.json\">JSON</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
        esc(&status["stored_bytes"]),
        esc(&status["stored_objects"]),
        esc(&status["max_bytes"]),
        esc(&status["hit_ratio"]),
        esc(&status["blob_hits"]),
        esc(&status["blob_misses"]),
        esc(&status["fills_in_flight"]),
        esc(&status["evicted_blobs"]),
    )
}
