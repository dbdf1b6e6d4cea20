//! Requests to one upstream, with the auth flow: try with what we have; on 401 read the
//! challenge, get a token (or use Basic), retry exactly once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::breaker::Breaker;
use super::ratelimit::{self, RateLimit};
use super::token::{TokenCache, TokenResponse};
use super::{UpstreamConfig, UpstreamError};
use crate::auth::{parse_challenge, Challenge};
use crate::manifest::{accept_header, MAX_MANIFEST_BYTES};
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
}

/// One base URL and its circuit breaker.
#[derive(Debug)]
struct Endpoint {
    base: String,
    breaker: Breaker,
}

impl UpstreamClient {
    /// Builds the client. Redirects are followed (at most 10); reqwest drops the
    /// `Authorization` header when a redirect leaves the upstream's host.
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
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(concat!("oci-cache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| UpstreamError::InvalidUrl {
                url: bases.join(" "),
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
            http,
            tokens: TokenCache::default(),
        })
    }

    /// The upstream's configuration.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// The last rate-limit figures the upstream sent (Docker Hub's `ratelimit-*` headers).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit.lock().ok().and_then(|r| *r)
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
    /// [`MAX_MANIFEST_BYTES`].
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
    ) -> Result<UpstreamManifest, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let path = format!("/v2/{repo}/manifests/{reference}");
        let accept = accept_header();
        let mut resp = self.send(method, repo, &path, Some(&accept)).await?;
        let headers = resp.headers().clone();
        let size = resp.content_length();
        if size.is_some_and(|s| s > MAX_MANIFEST_BYTES as u64) {
            return Err(UpstreamError::InvalidResponse {
                reason: "manifest larger than 4 MiB",
            });
        }
        let mut body = Vec::new();
        if !head {
            while let Some(chunk) = resp.chunk().await? {
                if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                    return Err(UpstreamError::InvalidResponse {
                        reason: "manifest larger than 4 MiB",
                    });
                }
                body.extend_from_slice(&chunk);
            }
        }
        Ok(UpstreamManifest {
            bytes: Bytes::from(body),
            content_type: header_str(&headers, CONTENT_TYPE.as_str()),
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
    /// header for the next page, if any.
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
        let body = resp.bytes().await?;
        Ok((body, link))
    }

    /// Sends a request to each endpoint in turn until one answers without a connect error,
    /// timeout or 5xx; maps failure statuses to errors.
    async fn send(
        &self,
        method: Method,
        repo: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        let mut last = UpstreamError::CircuitOpen;
        for endpoint in &self.endpoints {
            if !endpoint.breaker.allow() {
                continue;
            }
            let result = self
                .send_to(&endpoint.base, method.clone(), repo, path, accept)
                .await;
            match result {
                Err(e) if is_failover(&e) => {
                    endpoint.breaker.failure();
                    tracing::warn!(upstream = self.name(), endpoint = %endpoint.base, error = %e, "endpoint failed");
                    last = e;
                }
                other => {
                    endpoint.breaker.success();
                    return other;
                }
            }
        }
        Err(last)
    }

    /// One endpoint, with the auth flow: try with what we have; on 401 read the challenge,
    /// get a token (or use Basic), retry exactly once.
    async fn send_to(
        &self,
        base: &str,
        method: Method,
        repo: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        let scope = format!("repository:{repo}:pull");
        let url = format!("{base}{path}");
        let build = |auth: Option<Auth>| {
            let mut req: RequestBuilder = self.http.request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            match (auth, &self.config.credentials) {
                (Some(Auth::Bearer(token)), _) => req.bearer_auth(token),
                (Some(Auth::Basic), Some(c)) => req.basic_auth(&c.username, Some(&c.password)),
                _ => req,
            }
        };
        let first_auth = self
            .tokens
            .get(&scope)
            .map(|t| Auth::Bearer(t.value().to_owned()));
        let had_token = first_auth.is_some();
        let resp = self.first_byte(build(first_auth)).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return check_status(resp);
        }
        if had_token {
            self.tokens.forget(&scope);
        }
        let challenge = header_str(resp.headers(), WWW_AUTHENTICATE.as_str())
            .and_then(|c| parse_challenge(&c).ok())
            .ok_or(UpstreamError::Unauthorized)?;
        let auth = match challenge {
            Challenge::Bearer { realm, service, .. } => {
                Auth::Bearer(self.fetch_token(&realm, service.as_deref(), &scope).await?)
            }
            Challenge::Basic { .. } if self.config.credentials.is_some() => Auth::Basic,
            Challenge::Basic { .. } => return Err(UpstreamError::Unauthorized),
        };
        let resp = self.first_byte(build(Some(auth))).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(UpstreamError::Unauthorized);
        }
        check_status(resp)
    }

    /// Sends, bounded by the first-byte timeout; notes rate-limit headers.
    async fn first_byte(&self, req: RequestBuilder) -> Result<Response, UpstreamError> {
        let resp = tokio::time::timeout(self.config.first_byte_timeout, req.send())
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        if let Some(limit) = ratelimit::from_headers(resp.headers()) {
            if let Ok(mut r) = self.rate_limit.lock() {
                *r = Some(limit);
            }
        }
        Ok(resp)
    }

    /// Asks the token endpoint for a token for `scope` and caches it.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = &self.config.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let received = Instant::now();
        let resp = req.send().await.map_err(|_| UpstreamError::Token {
            reason: "token endpoint unreachable",
        })?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(UpstreamError::Unauthorized)
            }
            _ => {
                return Err(UpstreamError::Token {
                    reason: "token endpoint error status",
                })
            }
        }
        let bytes = resp.bytes().await.map_err(|_| UpstreamError::Token {
            reason: "token response body failed",
        })?;
        let body: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|_| UpstreamError::Token {
                reason: "token response is not valid JSON",
            })?;
        let token = body.into_token(received).ok_or(UpstreamError::Token {
            reason: "token response has no token",
        })?;
        let value = token.value().to_owned();
        self.tokens.put(scope, token);
        Ok(value)
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

/// Errors after which the next endpoint is tried.
fn is_failover(e: &UpstreamError) -> bool {
    matches!(
        e,
        UpstreamError::Transport { .. }
            | UpstreamError::Timeout
            | UpstreamError::Status { status: 500..=599 }
    )
}

/// What to authorize a request with.
enum Auth {
    Bearer(String),
    Basic,
}

fn check_status(resp: Response) -> Result<Response, UpstreamError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    Err(match status {
        StatusCode::NOT_FOUND => UpstreamError::NotFound,
        StatusCode::UNAUTHORIZED => UpstreamError::Unauthorized,
        StatusCode::FORBIDDEN => UpstreamError::Denied,
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::TooManyRequests {
            retry_after: header_str(resp.headers(), RETRY_AFTER.as_str())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs),
        },
        s => UpstreamError::Status { status: s.as_u16() },
    })
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
