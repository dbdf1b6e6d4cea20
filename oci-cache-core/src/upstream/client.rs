//! The client for one upstream: its endpoints and their breakers, its token cache, and the
//! registry operations the engine needs (the sending itself is in `send`).

mod referrers;
mod send;

use parking_lot::Mutex;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, Response};

use super::body::{read_limited, BodyKind, MAX_TAG_LIST_BYTES};
use super::breaker::Breaker;
use super::guard::Targets;
use super::policy::NamePolicy;
use super::ratelimit::RateLimit;
use super::stats::{UpstreamStats, UpstreamStatsSnapshot};
use super::token::TokenCache;
use super::{UpstreamConfig, UpstreamError};
use crate::manifest::{accept_header, inspect, ManifestError, MAX_MANIFEST_BYTES};
use crate::Digest;

/// A manifest as the upstream answered it.
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    /// The body (empty for HEAD).
    pub bytes: Bytes,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, if sent and valid.
    pub digest: Option<Digest>,
    /// `Content-Length`, if sent.
    pub size: Option<u64>,
}

/// The client for one upstream registry.
#[derive(Debug)]
pub struct UpstreamClient {
    config: UpstreamConfig,
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    tokens: TokenCache,
    rate_limit: Mutex<Option<RateLimit>>,
    stats: UpstreamStats,
    names: NamePolicy,
    fills: tokio::sync::Semaphore,
    /// Fills waiting for a slot now.
    queued: std::sync::atomic::AtomicUsize,
    targets: Targets,
}

/// One base URL and its circuit breaker.
#[derive(Debug)]
struct Endpoint {
    base: String,
    breaker: Breaker,
}

impl UpstreamClient {
    /// Builds the client. Redirects are followed as `guard` allows (at most 10, http(s)
    /// only, no downgrade to http, no private addresses unless the upstream lives on one);
    /// reqwest drops the `Authorization` header when a redirect leaves the upstream's host.
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut bases = Vec::with_capacity(config.endpoints.len());
        for url in &config.endpoints {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(UpstreamError::InvalidUrl { url: url.clone() });
            }
            bases.push(url.trim_end_matches('/').to_owned());
        }
        if bases.is_empty() {
            return Err(UpstreamError::InvalidUrl { url: String::new() });
        }
        let targets = Targets::new(&bases);
        let names = NamePolicy::new(&config.allow, &config.deny, config.is_docker_hub())
            .map_err(|reason| UpstreamError::InvalidPattern { reason })?;
        let max_fills = config.max_fills.max(1);
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(targets.redirect_policy())
            .user_agent(concat!("oci-cache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UpstreamError::HttpClient {
                url: bases.join(" "),
                detail: super::error::chain(&e),
            })?;
        let endpoints = bases
            .into_iter()
            .map(|base| Endpoint {
                base,
                breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            })
            .collect();
        Ok(Self {
            config,
            endpoints,
            rate_limit: Mutex::new(None),
            stats: UpstreamStats::default(),
            names,
            fills: tokio::sync::Semaphore::new(max_fills),
            queued: std::sync::atomic::AtomicUsize::new(0),
            http,
            tokens: TokenCache::default(),
            targets,
        })
    }

    /// The upstream's configuration.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// The last rate-limit figures the upstream sent (Docker Hub's `ratelimit-*` headers).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        *self.rate_limit.lock()
    }

    /// Waits for a fill slot of this upstream (`max_fills` run at once); the slot is held
    /// until the returned permit is dropped. `None` at once when `max_queued_fills` fills
    /// wait already, or when no slot frees up within `fill_queue_timeout`.
    pub async fn fill_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        use std::sync::atomic::Ordering;
        struct Queued<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if let Ok(permit) = self.fills.try_acquire() {
            return Some(permit);
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(&self.queued);
        if ahead >= self.config.max_queued_fills {
            return None;
        }
        tokio::time::timeout(self.config.fill_queue_timeout, self.fills.acquire())
            .await
            .ok()?
            .ok()
    }

    /// Whether this upstream's allow and deny patterns let `repo` be pulled.
    pub fn permits(&self, repo: &str) -> bool {
        self.names.permits(repo)
    }

    /// Request counts and latencies so far.
    pub fn stats(&self) -> UpstreamStatsSnapshot {
        self.stats.snapshot()
    }

    /// Each endpoint's base URL and whether its circuit breaker is open.
    pub fn endpoint_states(&self) -> Vec<(String, bool)> {
        self.endpoints
            .iter()
            .map(|e| (e.base.clone(), e.breaker.is_open()))
            .collect()
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// GET (or HEAD) a manifest by tag or digest. The body is limited to
    /// [`MAX_MANIFEST_BYTES`] and must be an OCI or Docker schema 2 manifest or index
    /// ([`inspect`]), else [`UpstreamError::NotAManifest`]. A Docker schema 1 manifest is
    /// passed on: it is a manifest, which the engine refuses with its own message.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let path = format!("/v2/{repo}/manifests/{reference}");
        let accept = accept_header();
        let resp = self.send(method, repo, &path, Some(&accept)).await?;
        let headers = resp.headers().clone();
        let size = resp.content_length();
        let content_type = header_str(&headers, CONTENT_TYPE.as_str());
        let bytes = if head {
            if size.is_some_and(|s| s > MAX_MANIFEST_BYTES as u64) {
                return Err(UpstreamError::BodyTooLarge {
                    body: BodyKind::Manifest,
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            Bytes::new()
        } else {
            let bytes = read_limited(resp, BodyKind::Manifest, MAX_MANIFEST_BYTES).await?;
            match inspect(&bytes, content_type.as_deref()) {
                Ok(_) | Err(ManifestError::Schema1) => {}
                Err(source) => return Err(UpstreamError::NotAManifest { source }),
            }
            bytes
        };
        Ok(UpstreamManifest {
            bytes,
            content_type,
            digest: header_str(&headers, "docker-content-digest")
                .and_then(|d| Digest::parse(&d).ok()),
            size,
        })
    }

    /// Starts a blob GET; the caller streams the body.
    pub async fn blob(&self, repo: &str, digest: &Digest) -> Result<Response, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.send(Method::GET, repo, &path, None).await
    }

    /// The blob's size by HEAD, without downloading it.
    pub async fn blob_size(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Method::HEAD, repo, &path, None).await?;
        Ok(resp
            .content_length()
            .filter(|l| *l > 0)
            .or_else(|| header_str(resp.headers(), "content-length").and_then(|v| v.parse().ok())))
    }

    /// The tag list (`GET /v2/<name>/tags/list` with the client's query), and the `Link`
    /// header for the next page, if any. The body is limited to [`MAX_TAG_LIST_BYTES`].
    pub async fn tags(
        &self,
        repo: &str,
        query: &str,
    ) -> Result<(Bytes, Option<String>), UpstreamError> {
        let path = if query.is_empty() {
            format!("/v2/{repo}/tags/list")
        } else {
            format!("/v2/{repo}/tags/list?{query}")
        };
        let resp = self.send(Method::GET, repo, &path, None).await?;
        let link = header_str(resp.headers(), "link");
        let body = read_limited(resp, BodyKind::TagList, MAX_TAG_LIST_BYTES).await?;
        Ok((body, link))
    }
}

/// Installs ring as the process's rustls crypto provider unless the program installed one
/// already. The upstream client does this itself; call it before building other reqwest
/// clients in a program that uses this crate's reqwest features (`rustls-no-provider`).
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_http_urls() {
        assert!(UpstreamClient::new(UpstreamConfig::new("x", "ftp://a")).is_err());
    }
}
