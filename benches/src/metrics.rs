//! The rows of the side-by-side table: the metric keys [`crate::rounds::Bench::round`]
//! records, with labels, units and which way is better.

use crate::report::{Better, Metric, Summary};

const fn metric(key: &'static str, label: &'static str, better: Better) -> Metric {
    Metric {
        key,
        label,
        better,
        summary: Summary::Median,
    }
}

/// The rows of the table, in order .
pub const METRICS: &[Metric] = &[
    metric(
        "warm1_mbs",
        "warm big blob, 1 client (MB/s)",
        Better::Higher,
    ),
    metric(
        "warm8_mbs",
        "warm big blob, 8 clients, aggregate (MB/s)",
        Better::Higher,
    ),
    metric(
        "warm1_cpu_gib",
        "warm, 1 client: server CPU (s/GiB)",
        Better::Lower,
    ),
    metric(
        "warm8_cpu_gib",
        "warm, 8 clients: server CPU (s/GiB)",
        Better::Lower,
    ),
    metric(
        "warm1n_mbs",
        "warm big blob, 1 client counting bytes (MB/s)",
        Better::Higher,
    ),
    metric(
        "warm8n_mbs",
        "warm big blob, 8 clients counting bytes, aggregate (MB/s)",
        Better::Higher,
    ),
    metric(
        "warm1n_cpu_gib",
        "warm, 1 client counting bytes: server CPU (s/GiB)",
        Better::Lower,
    ),
    metric(
        "bare1n_mbs",
        "warm big blob, 1 client counting bytes, from a bare read/write loop (reference) (MB/s)",
        Better::Higher,
    ),
    metric(
        "bare1n_cpu_gib",
        "warm, 1 client counting bytes, from a bare read/write loop (reference): its CPU (s/GiB)",
        Better::Lower,
    ),
    metric(
        "warm8n_cpu_gib",
        "warm, 8 clients counting bytes: server CPU (s/GiB)",
        Better::Lower,
    ),
    metric(
        "warm_up_gets",
        "warm: upstream GETs (all 18 warm GETs)",
        Better::Lower,
    ),
    metric("direct_ms", "direct GET from upstream (ms)", Better::Lower),
    metric("cold_ms", "cold big blob GET (ms)", Better::Lower),
    metric(
        "cold_ratio",
        "cold big blob: time / direct time",
        Better::Lower,
    ),
    metric(
        "relay_ms",
        "cold big blob GET through a bare relay, no hash, no storage (reference) (ms)",
        Better::Lower,
    ),
    metric(
        "relay_ratio",
        "cold big blob through a bare relay (reference): time / direct time",
        Better::Lower,
    ),
    metric(
        "cold_ttfb_ms",
        "cold big blob: time to first byte (ms)",
        Better::Lower,
    ),
    metric(
        "cold_up_gets",
        "cold big blob: upstream GETs",
        Better::Lower,
    ),
    metric("cold_up_mib", "cold big blob: upstream MiB", Better::Lower),
    metric(
        "cold_cpu_gib",
        "cold big blob: server CPU (s/GiB)",
        Better::Lower,
    ),
    metric(
        "herd_up_gets",
        "20 concurrent cold 64 MiB GETs: upstream GETs",
        Better::Lower,
    ),
    metric(
        "herd_up_mib",
        "20 concurrent cold 64 MiB GETs: upstream MiB",
        Better::Lower,
    ),
    metric(
        "herd_ms",
        "20 concurrent cold 64 MiB GETs: wall (ms)",
        Better::Lower,
    ),
    metric(
        "m_digest_rps",
        "manifest GET by digest (req/s)",
        Better::Higher,
    ),
    metric(
        "m_digest_p50",
        "manifest GET by digest p50 (ms)",
        Better::Lower,
    ),
    metric(
        "m_digest_p99",
        "manifest GET by digest p99 (ms)",
        Better::Lower,
    ),
    metric(
        "m_digest_cpu",
        "manifest GET by digest: server CPU (µs/req)",
        Better::Lower,
    ),
    metric(
        "m_digest_up",
        "manifest GET by digest: upstream req/req",
        Better::Lower,
    ),
    metric("m_tag_rps", "manifest GET by tag (req/s)", Better::Higher),
    metric("m_tag_p50", "manifest GET by tag p50 (ms)", Better::Lower),
    metric("m_tag_p99", "manifest GET by tag p99 (ms)", Better::Lower),
    metric(
        "m_tag_cpu",
        "manifest GET by tag: server CPU (µs/req)",
        Better::Lower,
    ),
    metric(
        "m_tag_up",
        "manifest GET by tag: upstream req/req",
        Better::Lower,
    ),
    metric("m_head_rps", "manifest HEAD by tag (req/s)", Better::Higher),
    metric("m_head_p50", "manifest HEAD by tag p50 (ms)", Better::Lower),
    metric("m_head_p99", "manifest HEAD by tag p99 (ms)", Better::Lower),
    metric(
        "m_head_cpu",
        "manifest HEAD by tag: server CPU (µs/req)",
        Better::Lower,
    ),
    metric(
        "m_head_up",
        "manifest HEAD by tag: upstream req/req",
        Better::Lower,
    ),
    metric(
        "small_ms",
        "4 KiB blob GET, cached, sequential: median (ms)",
        Better::Lower,
    ),
    metric(
        "small_up",
        "4 KiB blob GETs, cached: upstream requests (of 100)",
        Better::Lower,
    ),
    metric(
        "mix_manifest_p50",
        "200 clients, 50 images: manifest by tag p50 (ms)",
        Better::Lower,
    ),
    metric(
        "mix_manifest_p99",
        "200 clients: manifest by tag p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mix_config_p99",
        "200 clients: config p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mix_small_p99",
        "200 clients: layer of 4-64 KiB p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mix_large_p50",
        "200 clients: layer of 1-64 MiB p50 (ms)",
        Better::Lower,
    ),
    metric(
        "mix_large_p99",
        "200 clients: layer of 1-64 MiB p99 (ms)",
        Better::Lower,
    ),
    metric("mix_wall_s", "200 clients: wall (s)", Better::Lower),
    metric("mix_errors", "200 clients: failed requests", Better::Lower),
    metric(
        "mix_up_requests",
        "200 clients: upstream requests",
        Better::Lower,
    ),
    metric("mix_up_mib", "200 clients: upstream MiB", Better::Lower),
    metric("mix_cpu_s", "200 clients: cache CPU (s)", Better::Lower),
    metric(
        "mixw_manifest_p50",
        "200 clients again, all cached: manifest by tag p50 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_manifest_p99",
        "200 clients again: manifest by tag p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_probe_p50",
        "200 clients again: cached manifest, one light client beside them, p50 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_probe_p99",
        "200 clients again: cached manifest, one light client beside them, p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_bare_probe_p50",
        "200 clients again: the same manifest from a bare responder (reference), one light client beside them, p50 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_bare_probe_p99",
        "200 clients again: the same manifest from a bare responder (reference), one light client beside them, p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_served_p99",
        "200 clients again: cached manifest, the cache's own time to the response head (its histogram), p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_config_p99",
        "200 clients again: config p99 (ms)",
        Better::Lower,
    ),
    metric(
        "mixw_large_p99",
        "200 clients again: layer of 1-64 MiB p99 (ms)",
        Better::Lower,
    ),
    metric("mixw_wall_s", "200 clients again: wall (s)", Better::Lower),
    metric(
        "mixw_errors",
        "200 clients again: failed requests",
        Better::Lower,
    ),
    metric(
        "mixw_up_requests",
        "200 clients again: upstream requests",
        Better::Lower,
    ),
    metric(
        "mixw_cpu_s",
        "200 clients again: cache CPU (s)",
        Better::Lower,
    ),
    Metric {
        key: "mix_rss_mib",
        label: "200 clients: peak RSS (MiB)",
        better: Better::Lower,
        summary: Summary::Max,
    },
    Metric {
        key: "rss_mib",
        label: "peak RSS (MiB)",
        better: Better::Lower,
        summary: Summary::Max,
    },
];
