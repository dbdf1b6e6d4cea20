//! One round of the side-by-side benchmark for one cache: fresh cache processes, the
//! measurements, recorded into [`Results`].

use std::time::Duration;

use crate::load::{concurrent_gets, manifest_storm, verified_get, ManifestRequest, Reading};
use crate::report::Results;
use crate::subject::{Binaries, Kind, Subject};
use crate::upstream::Traffic;
use crate::{BoxError, Registry};

/// Time the upstream gets to write its log lines after responses ended.
const LOG_SETTLE: Duration = Duration::from_millis(300);
/// Concurrent clients of the warm 8-client measurement.
const WARM_CLIENTS: usize = 8;
/// Concurrent clients of the cold thundering-herd measurement.
const HERD_CLIENTS: usize = 20;
/// Requests of each manifest storm.
const STORM_REQUESTS: usize = 2000;
/// Connections of each manifest storm.
const STORM_CONNECTIONS: usize = 64;
/// Time cap of each manifest storm.
const STORM_CAP: Duration = Duration::from_secs(20);
/// Bound of the probes of [`Bench::wait_local`] (each about 0.6 s).
const QUIESCE_TRIES: usize = 100;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// A blob on the upstream.
#[derive(Debug, Clone)]
pub struct Blob {
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// What was seeded on the upstream.
#[derive(Debug)]
pub struct Content {
    /// Repository of everything.
    pub repo: &'static str,
    /// Tag of the manifest.
    pub tag: &'static str,
    /// The big blob.
    pub big: Blob,
    /// The 64 MiB blob.
    pub mid: Blob,
    /// The 4 KiB blobs.
    pub small: Vec<Blob>,
    /// Digest of the manifest.
    pub manifest: String,
    /// The images of the many-clients load.
    pub mixed: Vec<crate::mixed::MixedImage>,
}

/// Everything a round needs.
#[derive(Debug)]
pub struct Bench<'a> {
    /// The HTTP client of all requests.
    pub client: reqwest::Client,
    /// The upstream registry.
    pub upstream: &'a Registry,
    /// The cache binaries.
    pub bins: Binaries<'a>,
    /// The seeded content.
    pub content: &'a Content,
    /// `getconf CLK_TCK`.
    pub ticks: f64,
    /// A file of the big blob's size for the bare sender ([`crate::bare_loop`]).
    pub bare_file: &'a std::path::Path,
    /// What a round measures.
    pub phases: Phases,
    /// Where results go.
    pub results: Results,
}

/// What a round of [`Bench::round`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// Everything.
    All,
    /// The direct GET, the bare relay and the cold GET of the big blob.
    Cold,
    /// The 200-client phase (`mixed.rs`).
    Mixed,
}

#[allow(clippy::cast_precision_loss, reason = "byte and request counts < 2^52")]
impl Bench<'_> {
    fn blob_path(&self, blob: &Blob) -> String {
        format!("/v2/{}/blobs/{}", self.content.repo, blob.digest)
    }

    /// Upstream traffic of `path` since `before`, once the log has settled.
    async fn traffic_since(
        &self,
        method: Option<&str>,
        path: &str,
        before: Traffic,
    ) -> Result<Traffic, BoxError> {
        tokio::time::sleep(LOG_SETTLE).await;
        Ok(self.upstream.traffic(method, path).since(before))
    }

    /// Waits (bounded) until the cache holds `path` locally: a HEAD of it through the
    /// cache then causes no upstream request of it and no background fill completes
    /// meanwhile. Distribution's proxy fills its store with a second, background upstream
    /// GET, so the upstream traffic of a cold GET is only complete once this returns.
    async fn wait_local(&self, cache_base: &str, path: &str) -> Result<(), BoxError> {
        for _ in 0..QUIESCE_TRIES {
            tokio::time::sleep(LOG_SETTLE).await;
            let before = self.upstream.traffic(None, path);
            self.client
                .head(format!("{cache_base}{path}"))
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            if self.traffic_since(None, path, before).await?.requests == 0 {
                return Ok(());
            }
        }
        eprintln!("  {path} still not local after {QUIESCE_TRIES} probes");
        Ok(())
    }

    /// Measures `kind` once, recording every metric.
    pub async fn round(&mut self, kind: Kind) -> Result<(), BoxError> {
        if self.phases == Phases::Mixed {
            return self.mixed(kind).await;
        }
        let content = self.content;
        let big = &content.big;
        let big_path = self.blob_path(big);
        let big_gib = big.size as f64 / GIB;
        let direct = verified_get(
            &self.client,
            &format!("http://{}{big_path}", self.upstream.addr),
            &big.digest,
            big.size,
        )
        .await?;
        // The reference for a cold GET: the same GET through a bare relay (no hash, no
        // storage), once per round (in oci-cache's column; it is neither cache).
        if kind == Kind::OciCache {
            let relayed = crate::bare_relay::get_once(
                &self.client,
                self.upstream.addr,
                &big_path,
                &big.digest,
                big.size,
            )
            .await?;
            let r = &mut self.results;
            r.add(kind, "relay_ms", relayed.total.as_secs_f64() * 1e3);
            r.add(
                kind,
                "relay_ratio",
                relayed.total.as_secs_f64() / direct.total.as_secs_f64(),
            );
        }

        let mut cache = Subject::start(kind, &self.bins, self.upstream.addr).await?;
        let base = format!("http://{}", cache.addr());
        let url = format!("{base}{big_path}");

        // Cold big blob.
        let before = self.upstream.traffic(Some("GET"), &big_path);
        let cpu = cache.cpu_seconds(self.ticks)?;
        let cold = verified_get(&self.client, &url, &big.digest, big.size).await?;
        self.wait_local(&base, &big_path).await?;
        let traffic = self.traffic_since(Some("GET"), &big_path, before).await?;
        let cpu = cache.cpu_seconds(self.ticks)? - cpu;
        let r = &mut self.results;
        r.add(kind, "direct_ms", direct.total.as_secs_f64() * 1e3);
        r.add(kind, "cold_ms", cold.total.as_secs_f64() * 1e3);
        r.add(
            kind,
            "cold_ratio",
            cold.total.as_secs_f64() / direct.total.as_secs_f64(),
        );
        r.add(kind, "cold_ttfb_ms", cold.first_byte.as_secs_f64() * 1e3);
        r.add(kind, "cold_up_gets", traffic.requests as f64);
        r.add(kind, "cold_up_mib", traffic.bytes as f64 / MIB);
        r.add(kind, "cold_cpu_gib", cpu / big_gib);
        if self.phases == Phases::Cold {
            return Ok(());
        }

        // Warm big blob: 1 client, then 8; clients that hash every byte, then clients that
        // only count them (the content was verified by the GETs before).
        let before = self.upstream.traffic(Some("GET"), &big_path);
        for (reading, tag) in [(Reading::Verified, ""), (Reading::Counted, "n")] {
            for clients in [1, WARM_CLIENTS] {
                let cpu = cache.cpu_seconds(self.ticks)?;
                let wall =
                    concurrent_gets(&self.client, &url, &big.digest, big.size, clients, reading)
                        .await?;
                let cpu = cache.cpu_seconds(self.ticks)? - cpu;
                let bytes = big.size as f64 * clients as f64;
                self.results.add(
                    kind,
                    format!("warm{clients}{tag}_mbs"),
                    bytes / wall.as_secs_f64() / 1e6,
                );
                self.results.add(
                    kind,
                    format!("warm{clients}{tag}_cpu_gib"),
                    cpu / (bytes / GIB),
                );
            }
        }
        let traffic = self.traffic_since(Some("GET"), &big_path, before).await?;
        self.results
            .add(kind, "warm_up_gets", traffic.requests as f64);
        // The reference: a bare read/write loop sending the same bytes, once per round (in
        // oci-cache's column; it is neither cache).
        if kind == Kind::OciCache {
            let reference =
                crate::bare_loop::get_once(&self.client, self.bare_file, big.size, self.ticks)
                    .await?;
            let r = &mut self.results;
            r.add(kind, "bare1n_cpu_gib", reference.cpu / big_gib);
            r.add(
                kind,
                "bare1n_mbs",
                big.size as f64 / reference.wall.as_secs_f64() / 1e6,
            );
        }

        self.manifests(kind, &mut cache, &base).await?;

        // 4 KiB blobs: fetched once (cold), then timed sequentially (cached).
        for blob in &content.small {
            let url = format!("{base}{}", self.blob_path(blob));
            verified_get(&self.client, &url, &blob.digest, blob.size).await?;
        }
        // Background fills of 4 KiB blobs are quick; misses show in `small_up`.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let small_prefix = format!("/v2/{}/blobs/", content.repo);
        let before = self.upstream.traffic(None, &small_prefix);
        let mut latencies = Vec::with_capacity(content.small.len());
        for blob in &content.small {
            let url = format!("{base}{}", self.blob_path(blob));
            latencies.push(
                verified_get(&self.client, &url, &blob.digest, blob.size)
                    .await?
                    .total,
            );
        }
        let traffic = self.traffic_since(None, &small_prefix, before).await?;
        self.results.add(kind, "small_up", traffic.requests as f64);
        latencies.sort_unstable();
        if let Some(median) = latencies.get(latencies.len() / 2) {
            self.results
                .add(kind, "small_ms", median.as_secs_f64() * 1e3);
        }
        let rss = cache.peak_rss_kib()?;
        drop(cache);

        // Thundering herd: concurrent cold GETs of the 64 MiB blob, fresh cache.
        let mut cache = Subject::start(kind, &self.bins, self.upstream.addr).await?;
        let mid = &content.mid;
        let mid_path = self.blob_path(mid);
        let url = format!("http://{}{mid_path}", cache.addr());
        let before = self.upstream.traffic(Some("GET"), &mid_path);
        let wall = concurrent_gets(
            &self.client,
            &url,
            &mid.digest,
            mid.size,
            HERD_CLIENTS,
            Reading::Verified,
        )
        .await?;
        self.wait_local(&format!("http://{}", cache.addr()), &mid_path)
            .await?;
        let traffic = self.traffic_since(Some("GET"), &mid_path, before).await?;
        let rss = rss.max(cache.peak_rss_kib()?);
        let r = &mut self.results;
        r.add(kind, "herd_up_gets", traffic.requests as f64);
        r.add(kind, "herd_up_mib", traffic.bytes as f64 / MIB);
        r.add(kind, "herd_ms", wall.as_secs_f64() * 1e3);
        r.add(kind, "rss_mib", rss as f64 / 1024.0);
        drop(cache);
        self.mixed(kind).await
    }

    /// oci-cache's own histogram of manifest request durations, from its `/metrics`
    /// (`None` for distribution).
    async fn manifest_durations(
        &self,
        kind: Kind,
        base: &str,
    ) -> Result<Option<Vec<(f64, u64)>>, BoxError> {
        if kind != Kind::OciCache {
            return Ok(None);
        }
        let text = self
            .client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Some(crate::histogram::buckets(
            &text,
            "oci_cache_http_request_duration_seconds",
            "route",
            "manifest",
        )))
    }

    /// The many-clients load on a fresh cache (see `mixed.rs`).
    async fn mixed(&mut self, kind: Kind) -> Result<(), BoxError> {
        let content = self.content;
        let mut cache = Subject::start(kind, &self.bins, self.upstream.addr).await?;
        let base = format!("http://{}", cache.addr());
        let prefix = format!("/v2/{}/", content.repo);
        let before = self.upstream.traffic(None, &prefix);
        let cpu = cache.cpu_seconds(self.ticks)?;
        let mut run = crate::mixed::pull(&self.client, &base, content.repo, &content.mixed).await?;
        let cpu = cache.cpu_seconds(self.ticks)? - cpu;
        let rss = cache.peak_rss_kib()?;
        let traffic = self.traffic_since(None, &prefix, before).await?;
        if let Some(e) = &run.first_error {
            eprintln!("  {} mixed: {} errors, first: {e}", kind.name(), run.errors);
        }
        let q = crate::mixed::quantile_ms;
        let r = &mut self.results;
        r.add(kind, "mix_manifest_p50", q(&mut run.manifests, 0.5));
        r.add(kind, "mix_manifest_p99", q(&mut run.manifests, 0.99));
        r.add(kind, "mix_config_p99", q(&mut run.configs, 0.99));
        r.add(kind, "mix_small_p99", q(&mut run.small_layers, 0.99));
        r.add(kind, "mix_large_p50", q(&mut run.large_layers, 0.5));
        r.add(kind, "mix_large_p99", q(&mut run.large_layers, 0.99));
        r.add(kind, "mix_wall_s", run.wall.as_secs_f64());
        r.add(kind, "mix_errors", run.errors as f64);
        r.add(kind, "mix_up_requests", traffic.requests as f64);
        r.add(kind, "mix_up_mib", traffic.bytes as f64 / MIB);
        r.add(kind, "mix_cpu_s", cpu);

        // The same clients again: everything is cached now.
        let scraped = self.manifest_durations(kind, &base).await?;
        let before = self.upstream.traffic(None, &prefix);
        let cpu = cache.cpu_seconds(self.ticks)?;
        let manifest = format!(
            "{base}/v2/{}/manifests/{}",
            content.repo, content.mixed[0].tag
        );
        // The reference beside the cache's light client (in oci-cache's column only): the
        // same manifest from a bare responder, fetched the same way during the same load.
        let reference = match kind {
            Kind::OciCache => Some(self.bare_probe(&manifest).await?),
            Kind::Distribution => None,
        };
        let probe = crate::probe::Probe::start(manifest);
        let warm = crate::mixed::pull(&self.client, &base, content.repo, &content.mixed).await;
        let probed = tokio::task::spawn_blocking(move || probe.finish()).await?;
        let (mut warm, mut probed) = (warm?, probed?);
        if let Some((responder, probe)) = reference {
            let (mut seen, answered) = tokio::task::spawn_blocking(move || {
                Ok::<_, BoxError>((probe.finish()?, responder.finish()?))
            })
            .await??;
            if answered != seen.len() as u64 {
                return Err(format!(
                    "the bare responder answered {answered} requests, its light client saw {}",
                    seen.len()
                )
                .into());
            }
            let r = &mut self.results;
            r.add(kind, "mixw_bare_probe_p50", q(&mut seen, 0.5));
            r.add(kind, "mixw_bare_probe_p99", q(&mut seen, 0.99));
        }
        let cpu = cache.cpu_seconds(self.ticks)? - cpu;
        let rss = rss.max(cache.peak_rss_kib()?);
        let traffic = self.traffic_since(None, &prefix, before).await?;
        if let Some(e) = &warm.first_error {
            eprintln!(
                "  {} mixed again: {} errors, first: {e}",
                kind.name(),
                warm.errors
            );
        }
        if let Some(scraped) = scraped {
            let now = self
                .manifest_durations(kind, &base)
                .await?
                .unwrap_or_default();
            if let Some(p99) = crate::histogram::quantile(&scraped, &now, 0.99) {
                self.results.add(kind, "mixw_served_p99", p99 * 1e3);
            }
        }
        let r = &mut self.results;
        r.add(kind, "mixw_manifest_p50", q(&mut warm.manifests, 0.5));
        r.add(kind, "mixw_manifest_p99", q(&mut warm.manifests, 0.99));
        r.add(kind, "mixw_probe_p50", q(&mut probed, 0.5));
        r.add(kind, "mixw_probe_p99", q(&mut probed, 0.99));
        r.add(kind, "mixw_config_p99", q(&mut warm.configs, 0.99));
        r.add(kind, "mixw_large_p99", q(&mut warm.large_layers, 0.99));
        r.add(kind, "mixw_wall_s", warm.wall.as_secs_f64());
        r.add(kind, "mixw_errors", warm.errors as f64);
        r.add(kind, "mixw_up_requests", traffic.requests as f64);
        r.add(kind, "mixw_cpu_s", cpu);
        r.add(kind, "mix_rss_mib", rss as f64 / 1024.0);
        Ok(())
    }

    /// A bare responder serving the bytes of the manifest at `url` (fetched through the
    /// cache) and a light client fetching from it.
    async fn bare_probe(
        &self,
        url: &str,
    ) -> Result<(crate::bare_responder::Responder, crate::probe::Probe), BoxError> {
        let resp = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, crate::load::ACCEPT)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let body = resp.bytes().await?;
        let responder = crate::bare_responder::Responder::start(&body, &content_type)?;
        let probe = crate::probe::Probe::start(responder.url());
        Ok((responder, probe))
    }

    /// Manifest storms: GET by digest, GET by tag, HEAD by tag.
    async fn manifests(
        &mut self,
        kind: Kind,
        cache: &mut Subject,
        base: &str,
    ) -> Result<(), BoxError> {
        let content = self.content;
        let prefix = format!("/v2/{}/manifests/", content.repo);
        let by_digest = format!("{base}{prefix}{}", content.manifest);
        let by_tag = format!("{base}{prefix}{}", content.tag);
        for (key, url, method) in [
            ("digest", &by_digest, ManifestRequest::Get),
            ("tag", &by_tag, ManifestRequest::Get),
            ("head", &by_tag, ManifestRequest::Head),
        ] {
            let c = &self.client;
            let warmup = manifest_storm(c, url, method, &content.manifest, 1, 1, STORM_CAP).await?;
            if let Some(e) = warmup.first_error {
                return Err(format!("{} manifest warm-up: {e}", kind.name()).into());
            }
            tokio::time::sleep(LOG_SETTLE).await;
            let before = self.upstream.traffic(None, &prefix);
            let cpu = cache.cpu_seconds(self.ticks)?;
            let storm = manifest_storm(
                c,
                url,
                method,
                &content.manifest,
                STORM_REQUESTS,
                STORM_CONNECTIONS,
                STORM_CAP,
            )
            .await?;
            let cpu = cache.cpu_seconds(self.ticks)? - cpu;
            let traffic = self.traffic_since(None, &prefix, before).await?;
            if let Some(e) = &storm.first_error {
                eprintln!(
                    "  {} {key}: {} errors, first: {e}",
                    kind.name(),
                    storm.errors
                );
            }
            let done = storm.latencies.len().max(1) as f64;
            let r = &mut self.results;
            r.add(kind, format!("m_{key}_rps"), storm.per_second());
            r.add(kind, format!("m_{key}_p50"), storm.quantile_ms(0.5));
            r.add(kind, format!("m_{key}_p99"), storm.quantile_ms(0.99));
            r.add(kind, format!("m_{key}_cpu"), cpu * 1e6 / done);
            r.add(kind, format!("m_{key}_up"), traffic.requests as f64 / done);
            r.add(kind, format!("m_{key}_err"), storm.errors as f64);
        }
        Ok(())
    }
}
