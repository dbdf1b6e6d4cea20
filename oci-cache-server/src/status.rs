//! The status page: stored size against the limit, hit ratio, the last hour minute by
//! minute, running downloads, upstream health and the most pulled images, as HTML (`/`)
//! and JSON (`/status.json`). Both show an identity only the upstreams it may pull from.

mod history;
mod html;
mod svg;

pub(crate) use history::History;
pub(crate) use html::status_html;

use oci_cache_core::{Engine, Upstreams};
use serde_json::{json, Value};

use crate::auth::{AccessPolicy, Identity};
use history::Totals;

/// Images listed as most pulled.
const TOP: usize = 10;
/// Running downloads listed, at most.
const RUNNING: usize = 50;

/// What the status is made of.
pub(crate) struct StatusSources<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) upstreams: &'a Upstreams,
    pub(crate) access: &'a AccessPolicy,
    pub(crate) history: &'a History,
    /// The configured limit, for embedders whose engine runs no eviction loop.
    pub(crate) max_bytes: Option<u64>,
}

/// The status as JSON, as `identity` may see it: the images and downloads of upstreams it
/// may not pull from are left out.
pub(crate) fn status_json(src: &StatusSources<'_>, identity: &Identity) -> Value {
    let s = src.engine.stats();
    let visible = |upstream: &str| src.access.allows(upstream, identity);
    let lookups = s.blob_hits + s.blob_misses;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let hit_ratio = (lookups > 0).then(|| s.blob_hits as f64 / lookups as f64);
    let upstream_health: Vec<Value> = src
        .upstreams
        .all()
        .iter()
        .filter(|u| visible(u.name()))
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
    let most_pulled: Vec<Value> = src
        .engine
        .most_pulled(TOP, |upstream| visible(upstream))
        .into_iter()
        .map(|(image, pulls)| json!({"image": image, "pulls": pulls}))
        .collect();
    let mut running = src.engine.running_fills();
    running.retain(|f| visible(&f.upstream));
    running.sort_by_key(|f| std::cmp::Reverse(f.received));
    running.truncate(RUNNING);
    let running: Vec<Value> = running
        .into_iter()
        .map(|f| {
            json!({
                "upstream": f.upstream,
                "repository": f.repository,
                "digest": f.digest.to_string(),
                "size": f.size,
                "received": f.received,
                "clients": f.clients,
            })
        })
        .collect();
    let minutes = src.history.minutes(Totals::now(src.engine, src.upstreams));
    let series = |f: &dyn Fn(&history::Minute) -> Value| -> Value {
        minutes.iter().map(f).collect::<Vec<_>>().into()
    };
    let history = json!({
        "minute_start": series(&|m| m.start.into()),
        "requests_from_cache": series(&|m| m.from_cache.into()),
        "requests_from_upstream": series(&|m| m.from_upstream.into()),
        "bytes_from_cache": series(&|m| m.bytes_from_cache.into()),
        "bytes_from_upstream": series(&|m| m.bytes_from_upstream.into()),
        "hit_ratio": series(&|m| m.hit_ratio.into()),
        "upstream_errors": series(&|m| m.upstream_errors.into()),
        "upstream_latency_ms": series(&|m| m.upstream_latency_ms.into()),
    });
    json!({
        "stored_bytes": s.stored_bytes,
        "stored_objects": s.stored_objects,
        "max_bytes": s.limit_bytes.or(src.max_bytes),
        "high_watermark_bytes": s.high_watermark_bytes,
        "blob_hits": s.blob_hits,
        "blob_misses": s.blob_misses,
        "hit_ratio": hit_ratio,
        "bytes_from_cache": s.bytes_from_cache,
        "bytes_from_upstream": s.bytes_from_upstream,
        "fills_in_flight": s.fills_in_flight,
        "fills_over_limit": s.fills_over_limit,
        "evicted_blobs": s.evicted_blobs,
        "running": running,
        "history": history,
        "upstreams": upstream_health,
        "most_pulled": most_pulled,
    })
}
