//! Prometheus metrics: HTTP requests by route and status and their durations by route
//! (recorded by the service), and, at each scrape, the engine's and every upstream's counters.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use oci_cache_core::{Engine, Upstreams};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::peers::Peers;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

/// Labels of the request duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// Upper bounds (seconds) of the request duration histogram's buckets: 0.1 ms to 10 s.
const DURATION_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A request duration histogram with [`DURATION_BUCKETS`].
fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The metrics of one cache.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    /// Metrics over `engine` and `upstreams`.
    pub fn new(engine: Arc<Engine>, upstreams: Arc<Upstreams>) -> Self {
        Self::build(engine, upstreams, None)
    }

    /// Metrics over `engine`, `upstreams` and this replica's `peers`
    /// (`oci_cache_peer_requests_total`).
    pub fn with_peers(engine: Arc<Engine>, upstreams: Arc<Upstreams>, peers: Arc<Peers>) -> Self {
        Self::build(engine, upstreams, Some(peers))
    }

    fn build(engine: Arc<Engine>, upstreams: Arc<Upstreams>, peers: Option<Arc<Peers>>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "oci_cache_http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "oci_cache_http_request_duration_seconds",
            "Time from the server's taking a request's head in (before its wait for a request \
             slot) to its response head, by route; a body's streaming after the head and \
             requests whose client left before the head are not included",
            durations.clone(),
        );
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        registry.register_collector(Box::new(EngineCollector {
            engine,
            upstreams,
            started,
        }));
        if let Some(peers) = peers {
            registry.register_collector(Box::new(PeerCollector(peers)));
        }
        Self {
            registry,
            requests,
            durations,
        }
    }

    /// Counts one answered request, which took `elapsed` to its response head.
    pub fn request(&self, route: &'static str, status: u16, elapsed: std::time::Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.durations
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The Prometheus text exposition (format 0.0.4), for scrapers and tools (`promtool
    /// check metrics`) that do not ask for OpenMetrics.
    pub fn render_prometheus(&self) -> String {
        to_prometheus_text(&self.render_openmetrics())
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: a counter family `x` is described
/// under its sample name `x_total`, and the OpenMetrics-only `# EOF` and `# UNIT` lines go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(described.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Reads the engine's and upstreams' counters at scrape time.
#[derive(Debug)]
struct EngineCollector {
    engine: Arc<Engine>,
    upstreams: Arc<Upstreams>,
    /// When the metrics were made (the process's start, for counting restarts), Unix
    /// seconds.
    started: i64,
}

/// The peer counters of a replica.
#[derive(Debug)]
struct PeerCollector(Arc<Peers>);

impl Collector for PeerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = self.0.stats();
        let mut family = enc.encode_descriptor(
            "oci_cache_peer_requests",
            "Blob misses by what other replicas did (forwarded: the owner replica answered; fallback: filled here instead; resumed: the owner broke off and a fill here finished; served: answered here as the owner)",
            None,
            MetricType::Counter,
        )?;
        for (result, v) in [
            ("forwarded", &s.forwarded),
            ("fallback", &s.fallbacks),
            ("resumed", &s.resumed),
            ("served", &s.served),
        ] {
            family
                .encode_family(&[("result", result)])?
                .encode_counter::<NoLabelSet, _, u64>(&v.load(Ordering::Relaxed), None)?;
        }
        Ok(())
    }
}

/// An unlabelled counter.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A gauge with one sample per label set (an empty label list: an unlabelled sample).
fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Vec<(&str, &str)>, i64)],
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        if labels.is_empty() {
            family.encode_gauge(v)?;
        } else {
            family.encode_family(labels)?.encode_gauge(v)?;
        }
    }
    Ok(())
}

impl Collector for EngineCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = self.engine.stats();
        let mut hits = enc.encode_descriptor(
            "oci_cache_lookups",
            "Blob, manifest and tag list requests by result (hit: answered from storage; stale: tag lists served while the upstream failed)",
            None,
            MetricType::Counter,
        )?;
        for (kind, result, v) in [
            ("blob", "hit", s.blob_hits),
            ("blob", "miss", s.blob_misses),
            ("manifest", "hit", s.manifest_hits),
            ("manifest", "miss", s.manifest_misses),
            ("tags", "hit", s.tag_list_hits),
            ("tags", "miss", s.tag_list_misses),
            ("tags", "stale", s.tag_list_stale),
        ] {
            hits.encode_family(&[("kind", kind), ("result", result)])?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        counter(
            &mut enc,
            "oci_cache_bytes_from_cache",
            "Blob bytes served from storage",
            s.bytes_from_cache,
        )?;
        counter(
            &mut enc,
            "oci_cache_bytes_from_upstream",
            "Blob bytes downloaded by fills",
            s.bytes_from_upstream,
        )?;
        counter(
            &mut enc,
            "oci_cache_pass_through_bytes",
            "Filled bytes served but not stored (storage refused them)",
            s.pass_through_bytes,
        )?;
        counter(
            &mut enc,
            "oci_cache_fills_over_limit",
            "Fills served without being stored: no room under gc.max_bytes after eviction",
            s.fills_over_limit,
        )?;
        counter(
            &mut enc,
            "oci_cache_eviction_failures",
            "Eviction passes that failed (storage unreadable, a delete refused)",
            s.eviction_failures,
        )?;
        counter(
            &mut enc,
            "oci_cache_zero_copy_bytes",
            "Cached blob bytes sent from the page cache to the socket with sendfile",
            crate::zero_copy::zero_copy_bytes(),
        )?;
        counter(
            &mut enc,
            "oci_cache_zero_copy_disk_reads",
            "Parts of cached blobs read from the disk on the blocking pool before sendfile sent them",
            crate::zero_copy::warm_reads(),
        )?;
        counter(
            &mut enc,
            "oci_cache_coalesced_waiters",
            "Blob misses that joined a running fill",
            s.coalesced,
        )?;
        counter(
            &mut enc,
            "oci_cache_fills_failed",
            "Fills that failed",
            s.fills_failed,
        )?;
        counter(
            &mut enc,
            "oci_cache_evicted_blobs",
            "Blobs removed by eviction",
            s.evicted_blobs,
        )?;
        counter(
            &mut enc,
            "oci_cache_evicted_bytes",
            "Bytes removed by eviction",
            s.evicted_bytes,
        )?;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            &mut enc,
            "oci_cache_stored_bytes",
            "Bytes stored: the last listing plus what was stored since, minus what was evicted",
            &[(Vec::new(), clamp(s.stored_bytes))],
        )?;
        gauge(
            &mut enc,
            "oci_cache_stored_objects",
            "Blobs stored: the last listing plus what was stored since, minus what was evicted",
            &[(Vec::new(), clamp(s.stored_objects))],
        )?;
        let limits = [
            (
                "oci_cache_storage_limit_bytes",
                "The storage limit held (gc.max_bytes); absent without one",
                s.limit_bytes,
            ),
            (
                "oci_cache_storage_high_watermark_bytes",
                "Above this a download starts an eviction pass (gc.high_watermark of max_bytes)",
                s.high_watermark_bytes,
            ),
        ];
        for (name, help, value) in limits {
            if let Some(v) = value {
                gauge(&mut enc, name, help, &[(Vec::new(), clamp(v))])?;
            }
        }
        gauge(
            &mut enc,
            "oci_cache_start_time_seconds",
            "When this process started, Unix seconds (a change is a restart)",
            &[(Vec::new(), self.started)],
        )?;
        gauge(
            &mut enc,
            "oci_cache_fills_in_flight",
            "Fills running now",
            &[(
                Vec::new(),
                i64::try_from(s.fills_in_flight).unwrap_or(i64::MAX),
            )],
        )?;
        self.encode_upstreams(&mut enc)
    }
}

/// The per-bucket counts prometheus-client's encoder wants (it adds them up itself) from
/// cumulative ones, with the `+Inf` bucket holding the rest of `count`.
fn per_bucket(cumulative: &[(f64, u64)], count: u64) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(cumulative.len() + 1);
    let mut below = 0;
    for (bound, c) in cumulative {
        out.push((*bound, c.saturating_sub(below)));
        below = (*c).max(below);
    }
    out.push((f64::INFINITY, count.saturating_sub(below)));
    out
}

impl EngineCollector {
    fn encode_upstreams(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let ups = self.upstreams.all();
        let mut requests = enc.encode_descriptor(
            "oci_cache_upstream_requests",
            "Requests sent to each upstream",
            None,
            MetricType::Counter,
        )?;
        for u in ups {
            requests
                .encode_family(&[("upstream", u.name())])?
                .encode_counter::<NoLabelSet, _, u64>(&u.stats().requests, None)?;
        }
        let mut errors = enc.encode_descriptor(
            "oci_cache_upstream_errors",
            "Upstream requests that failed (unreachable, timeout, 5xx, 429, circuit open)",
            None,
            MetricType::Counter,
        )?;
        for u in ups {
            errors
                .encode_family(&[("upstream", u.name())])?
                .encode_counter::<NoLabelSet, _, u64>(&u.stats().errors, None)?;
        }
        let mut latency = enc.encode_descriptor(
            "oci_cache_upstream_latency_seconds",
            "Time to the upstream's response headers",
            None,
            MetricType::Histogram,
        )?;
        for u in ups {
            let st = u.stats();
            latency
                .encode_family(&[("upstream", u.name())])?
                .encode_histogram::<NoLabelSet>(
                    st.latency_sum,
                    st.requests,
                    &per_bucket(&st.latency_buckets, st.requests),
                    None,
                )?;
        }
        let mut circuits = Vec::new();
        let mut remaining = Vec::new();
        for u in ups {
            for (endpoint, open) in u.endpoint_states() {
                circuits.push((u.name().to_owned(), endpoint, i64::from(open)));
            }
            if let Some(rl) = u.rate_limit() {
                remaining.push((
                    u.name().to_owned(),
                    i64::try_from(rl.remaining).unwrap_or(i64::MAX),
                ));
            }
        }
        let circuit_samples: Vec<_> = circuits
            .iter()
            .map(|(u, e, v)| (vec![("upstream", u.as_str()), ("endpoint", e.as_str())], *v))
            .collect();
        gauge(
            enc,
            "oci_cache_upstream_circuit_open",
            "1 while the endpoint's circuit breaker is open",
            &circuit_samples,
        )?;
        let remaining_samples: Vec<_> = remaining
            .iter()
            .map(|(u, v)| (vec![("upstream", u.as_str())], *v))
            .collect();
        gauge(
            enc,
            "oci_cache_upstream_ratelimit_remaining",
            "Pulls left in the upstream's rate-limit window (Docker Hub's ratelimit-remaining)",
            &remaining_samples,
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_buckets_are_handed_over_per_bucket_with_the_rest_in_inf() {
        let got = super::per_bucket(&[(0.1, 2), (1.0, 5), (10.0, 5)], 7);
        assert_eq!(got, vec![(0.1, 2), (1.0, 3), (10.0, 0), (f64::INFINITY, 2)]);
    }

    use super::*;

    #[test]
    fn counters_are_described_under_their_sample_names() {
        let om = "# HELP a Things.\n# TYPE a counter\na_total 3\n# HELP g Now.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n# HELP g Now.\n# TYPE g gauge\ng 1\n"
        );
    }
}
