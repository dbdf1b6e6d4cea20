//! Client load for the side-by-side benchmark: verified blob GETs with time to first
//! byte, concurrent GETs, and a bounded manifest request storm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::{transfer_timeout, BoxError};

/// The manifest media types a client accepts (OCI and Docker schema 2).
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
                          application/vnd.oci.image.index.v1+json, \
                          application/vnd.docker.distribution.manifest.v2+json, \
                          application/vnd.docker.distribution.manifest.list.v2+json";

/// Timing of one verified blob GET.
#[derive(Debug, Clone, Copy)]
pub struct BlobGet {
    /// From sending the request to the first body bytes.
    pub first_byte: Duration,
    /// From sending the request to the last body byte (hashing included).
    pub total: Duration,
}

/// Sends a GET of `url` (a blob of `size` bytes) and checks it is answered 200; returns
/// when it was sent and the response, whose body is still to read.
async fn get_ok(
    client: &reqwest::Client,
    url: &str,
    size: u64,
) -> Result<(Instant, reqwest::Response), BoxError> {
    let started = Instant::now();
    let resp = client
        .get(url)
        .timeout(transfer_timeout(size))
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: {}", resp.status()).into());
    }
    Ok((started, resp))
}

/// GETs `url`, streaming the body through sha256; fails unless the status is 200 and
/// the body is `size` bytes hashing to `digest`.
pub async fn verified_get(
    client: &reqwest::Client,
    url: &str,
    digest: &str,
    size: u64,
) -> Result<BlobGet, BoxError> {
    let (started, mut resp) = get_ok(client, url, size).await?;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut first_byte = None;
    while let Some(chunk) = resp.chunk().await? {
        first_byte.get_or_insert_with(|| started.elapsed());
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let total = started.elapsed();
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if len != size || got != digest {
        return Err(
            format!("GET {url}: got {len} bytes of {got}, want {size} bytes of {digest}").into(),
        );
    }
    Ok(BlobGet {
        first_byte: first_byte.unwrap_or(total),
        total,
    })
}

/// GETs `url` and only counts the body's bytes (as `curl -o /dev/null` would); fails unless
/// the status is 200 and the body is `size` bytes. For throughput of content a
/// [`verified_get`] has checked before: a hashing client on these 2 cores measures its own
/// hash as much as the server.
pub async fn counted_get(
    client: &reqwest::Client,
    url: &str,
    size: u64,
) -> Result<BlobGet, BoxError> {
    let (started, mut resp) = get_ok(client, url, size).await?;
    let mut len = 0u64;
    let mut first_byte = None;
    while let Some(chunk) = resp.chunk().await? {
        first_byte.get_or_insert_with(|| started.elapsed());
        len += chunk.len() as u64;
    }
    let total = started.elapsed();
    if len != size {
        return Err(format!("GET {url}: got {len} bytes, want {size}").into());
    }
    Ok(BlobGet {
        first_byte: first_byte.unwrap_or(total),
        total,
    })
}

/// How a client of [`concurrent_gets`] reads a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Hashes every byte and checks the digest ([`verified_get`]).
    Verified,
    /// Counts the bytes ([`counted_get`]).
    Counted,
}

/// `clients` simultaneous GETs of `url`, each read as `reading` says; returns the wall
/// time until the last one ended.
pub async fn concurrent_gets(
    client: &reqwest::Client,
    url: &str,
    digest: &str,
    size: u64,
    clients: usize,
    reading: Reading,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, digest) = (client.clone(), url.to_owned(), digest.to_owned());
        tasks.spawn(async move {
            match reading {
                Reading::Verified => verified_get(&client, &url, &digest, size).await,
                Reading::Counted => counted_get(&client, &url, size).await,
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(started.elapsed())
}

/// One manifest request kind of a storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestRequest {
    /// GET; the body must hash to the expected digest.
    Get,
    /// HEAD; the `Docker-Content-Digest` header must be the expected digest.
    Head,
}

/// One manifest request, checked against `digest`.
async fn manifest_once(
    client: &reqwest::Client,
    url: &str,
    kind: ManifestRequest,
    digest: &str,
) -> Result<(), BoxError> {
    let req = match kind {
        ManifestRequest::Get => client.get(url),
        ManifestRequest::Head => client.head(url),
    };
    let resp = req
        .header(reqwest::header::ACCEPT, ACCEPT)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(format!("{kind:?} {url}: {}", resp.status()).into());
    }
    let got = match kind {
        ManifestRequest::Get => format!(
            "sha256:{}",
            hex::encode(Sha256::digest(resp.bytes().await?))
        ),
        ManifestRequest::Head => resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)")
            .to_owned(),
    };
    if got != digest {
        return Err(format!("{kind:?} {url}: digest {got}, want {digest}").into());
    }
    Ok(())
}

/// What a manifest storm did.
#[derive(Debug, Default)]
pub struct Storm {
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    /// Failed requests, and the first failure.
    pub errors: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Wall time of the storm.
    pub wall: Duration,
}

impl Storm {
    /// Successful requests per second.
    #[allow(clippy::cast_precision_loss, reason = "request counts are small")]
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies, in ms.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "indexes are small and non-negative"
    )]
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)].as_secs_f64() * 1000.0
    }
}

/// `total` manifest requests to `url` over `connections` concurrent connections, stopped
/// early after `cap`.
pub async fn manifest_storm(
    client: &reqwest::Client,
    url: &str,
    kind: ManifestRequest,
    digest: &str,
    total: usize,
    connections: usize,
    cap: Duration,
) -> Result<Storm, BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + cap;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, digest, next) = (
            client.clone(),
            url.to_owned(),
            digest.to_owned(),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            let mut storm = Storm::default();
            while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                let sent = Instant::now();
                match manifest_once(&client, &url, kind, &digest).await {
                    Ok(()) => storm.latencies.push(sent.elapsed()),
                    Err(e) => {
                        storm.errors += 1;
                        storm.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            storm
        });
    }
    let mut all = Storm::default();
    while let Some(joined) = tasks.join_next().await {
        let storm = joined?;
        all.latencies.extend(storm.latencies);
        all.errors += storm.errors;
        if all.first_error.is_none() {
            all.first_error = storm.first_error;
        }
    }
    all.wall = started.elapsed();
    all.latencies.sort_unstable();
    Ok(all)
}
