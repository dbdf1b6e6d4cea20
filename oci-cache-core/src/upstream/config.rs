//! How to reach one upstream.

use std::fmt;
use std::time::Duration;

/// Credentials for an upstream. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One upstream registry. Start from [`UpstreamConfig::new`] and set the fields you need;
/// the struct is `#[non_exhaustive]`, so a field added later (with a default) does not break
/// that code.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// The name clients select it by (`?ns=`, path prefix), e.g. `docker.io`.
    pub name: String,
    /// Base URLs, e.g. `https://registry-1.docker.io`, tried in order: a connect error,
    /// timeout or 5xx from one moves the request to the next.
    pub endpoints: Vec<String>,
    /// `Host` header names (without port) that select this upstream, for clients that
    /// reach the cache under one DNS name per upstream.
    pub hosts: Vec<String>,
    /// Credentials for Basic access or the token flow.
    pub credentials: Option<Credentials>,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response (headers or body chunks).
    pub read_timeout: Duration,
    /// Time allowed from sending a request to its response headers.
    pub first_byte_timeout: Duration,
    /// A tag is served from the cache without asking the upstream for this long after the
    /// upstream last confirmed it; zero revalidates every time.
    pub tag_ttl: Duration,
    /// An upstream 404 for a manifest is remembered this long.
    pub negative_ttl: Duration,
    /// Consecutive failures of an endpoint that open its circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses requests before one probe.
    pub breaker_cooldown: Duration,
    /// Fills (blob downloads) that may run against this upstream at once; more wait.
    pub max_fills: usize,
    /// Fills that may wait for a slot at once; one more fails at once (503).
    pub max_queued_fills: usize,
    /// How long a fill waits for a slot before it fails (503).
    pub fill_queue_timeout: Duration,
    /// Child manifests of an image index fetched in the background, at most (each is an
    /// upstream GET, which Docker Hub counts against the pull limit); 0 fetches none.
    pub index_children: usize,
    /// Repository patterns that may be pulled (`*` within a path segment, `**` across
    /// segments); empty allows every name not denied.
    pub allow: Vec<String>,
    /// Repository patterns that may not be pulled; a deny wins over an allow.
    pub deny: Vec<String>,
}

impl UpstreamConfig {
    /// An anonymous upstream with the defaults: 5 s connect, 30 s read, 20 s to the first
    /// byte; tags fresh for 5 minutes, 404s remembered for 30 s; the breaker opens after 5
    /// consecutive failures for 30 s; at most 32 fills at once, 256 waiting for at most
    /// 30 s; 16 children of an index fetched in the background.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            endpoints: vec![url.into()],
            hosts: Vec::new(),
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(20),
            tag_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            max_fills: 32,
            max_queued_fills: 256,
            fill_queue_timeout: Duration::from_secs(30),
            index_children: 16,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// True when this upstream is Docker Hub (by name or URL), whose single-segment
    /// repository names live under `library/`.
    pub fn is_docker_hub(&self) -> bool {
        const HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
        HUB.contains(&self.name.as_str())
            || self.endpoints.iter().any(|url| {
                HUB.iter()
                    .any(|h| url.trim_end_matches('/').ends_with(&format!("//{h}")))
            })
    }
}
