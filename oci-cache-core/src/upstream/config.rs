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

/// One upstream registry.
#[derive(Debug, Clone)]
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
}

impl UpstreamConfig {
    /// An anonymous upstream with default timeouts (10 s connect, 30 s read).
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            endpoints: vec![url.into()],
            hosts: Vec::new(),
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
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
