//! Sending one request to an upstream: each endpoint in turn (failover, circuit breakers),
//! the auth flow (anonymous, Basic, Docker bearer tokens; one retry after a 401), the
//! first-byte timeout, and the mapping of failure statuses to errors.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::{header_str, UpstreamClient};
use crate::auth::{parse_challenge, Challenge};
use crate::upstream::body::{read_limited, BodyKind, MAX_TOKEN_BYTES};
use crate::upstream::guard::{realm_gets_credentials, TargetRefusal};
use crate::upstream::ratelimit;
use crate::upstream::token::TokenResponse;
use crate::UpstreamError;

impl UpstreamClient {
    /// Sends a request to each endpoint in turn until one answers without a connect error,
    /// timeout or 5xx; maps failure statuses to errors.
    pub(super) async fn send(
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
            let started = Instant::now();
            let result = self
                .send_to(&endpoint.base, method.clone(), repo, path, accept)
                .await;
            self.stats.observe(started.elapsed());
            if matches!(&result, Err(e) if is_failover(e) || matches!(e, UpstreamError::TooManyRequests { .. }))
            {
                self.stats.error();
            }
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
        if matches!(last, UpstreamError::CircuitOpen) {
            self.stats.error();
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
            Challenge::Bearer { realm, service, .. } => Auth::Bearer(
                self.fetch_token(base, &realm, service.as_deref(), &scope)
                    .await?,
            ),
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
            let mut r = self.rate_limit.lock();
            *r = Some(limit);
        }
        Ok(resp)
    }

    /// Asks the token endpoint for a token for `scope` and caches it. The realm comes from
    /// the upstream, so `guard`'s rules apply: it must be http(s) and not on a private
    /// address unless the upstream is; it gets the credentials only over https or on the
    /// host of `base`, the endpoint that challenged us. Any other realm is asked
    /// anonymously (a warning is logged): public repositories still work, and a private
    /// one fails as `Unauthorized` without the password having left.
    async fn fetch_token(
        &self,
        base: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let realm_url = Url::parse(realm).map_err(|_| UpstreamError::RealmRefused {
            host: String::new(),
            reason: TargetRefusal::Scheme,
        })?;
        self.targets
            .check_target(&realm_url)
            .map_err(|reason| UpstreamError::RealmRefused {
                host: realm_url.host_str().unwrap_or_default().to_owned(),
                reason,
            })?;
        let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm_url.clone()).query(&query);
        if let Some(c) = &self.config.credentials {
            let trusted = Url::parse(base).is_ok_and(|b| realm_gets_credentials(&realm_url, &b));
            if trusted {
                req = req.basic_auth(&c.username, Some(&c.password));
            } else {
                tracing::warn!(
                    upstream = self.name(),
                    realm_host = realm_url.host_str().unwrap_or_default(),
                    "token realm is plain http on another host: asking it without credentials"
                );
            }
        }
        let received = Instant::now();
        let resp = req.send().await.map_err(|e| match UpstreamError::from(e) {
            refused @ UpstreamError::RedirectRefused { .. } => refused,
            _ => UpstreamError::Token {
                reason: "token endpoint unreachable",
            },
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
        let bytes = read_limited(resp, BodyKind::Token, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| match e {
                too_large @ UpstreamError::BodyTooLarge { .. } => too_large,
                _ => UpstreamError::Token {
                    reason: "token response body failed",
                },
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
        // A redirect comes back unfollowed when its `Location` is no http(s) URL (the
        // redirect layer cannot even express `file:` as a request); the policy refuses the rest.
        s if s.is_redirection() => header_str(resp.headers(), LOCATION.as_str())
            .and_then(|l| resp.url().join(&l).ok())
            .filter(|u| !matches!(u.scheme(), "http" | "https"))
            .map_or(UpstreamError::Status { status: s.as_u16() }, |u| {
                UpstreamError::RedirectRefused {
                    host: u.host_str().unwrap_or_default().to_owned(),
                    reason: TargetRefusal::Scheme,
                }
            }),
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
