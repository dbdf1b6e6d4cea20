//! One `[[upstreams]]` entry.

use std::path::PathBuf;
use std::time::Duration;

use oci_cache_core::{Credentials, UpstreamConfig};
use serde::Deserialize;

use super::{secret, AccessEntry, ConfigError};

/// One upstream in the file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    /// Name clients select it by, e.g. `docker.io`.
    pub name: String,
    /// Base URL (shorthand for a one-element `urls`).
    pub url: Option<String>,
    /// Base URLs tried in order (fail over on connect errors, timeouts and 5xx).
    #[serde(default)]
    pub urls: Vec<String>,
    /// `Host` header names that select this upstream.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// User name for Basic or token auth.
    pub username: Option<String>,
    /// Password inline (prefer `password_env` or `password_file`).
    pub password: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (e.g. a mounted Kubernetes secret).
    pub password_file: Option<PathBuf>,
    /// Who may pull through this upstream.
    pub access: Option<AccessEntry>,
    /// Blob downloads from this upstream at once (default 32); more wait for a slot.
    pub max_fills: Option<usize>,
    /// Downloads that may wait for a slot (default 256); more are refused with 503.
    pub max_queued_fills: Option<usize>,
    /// Seconds a download waits for a slot before it is refused with 503 (default 30).
    pub fill_queue_secs: Option<u64>,
    /// Child manifests of an image index fetched in the background (default 16).
    pub index_children: Option<usize>,
    /// Repository patterns that may be pulled (`*` within a segment, `**` across).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Repository patterns that may not be pulled (wins over `allow`).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Connect timeout in seconds (default 5).
    pub connect_timeout_secs: Option<u64>,
    /// Read timeout (idle time between chunks) in seconds (default 30).
    pub read_timeout_secs: Option<u64>,
    /// Time to the response headers in seconds (default 20).
    pub first_byte_timeout_secs: Option<u64>,
    /// Tag freshness window in seconds (default 300; 0 revalidates every request).
    pub tag_ttl_secs: Option<u64>,
    /// How long an upstream 404 is remembered, in seconds (default 30).
    pub negative_ttl_secs: Option<u64>,
    /// Consecutive failures that open an endpoint's circuit breaker (default 5).
    pub breaker_threshold: Option<u32>,
    /// Seconds an open breaker waits before a probe (default 30).
    pub breaker_cooldown_secs: Option<u64>,
}

impl std::fmt::Debug for UpstreamEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamEntry")
            .field("name", &self.name)
            .field("urls", &self.endpoints())
            .field("hosts", &self.hosts)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("access", &self.access)
            .field("allow", &self.allow)
            .field("deny", &self.deny)
            .finish_non_exhaustive()
    }
}

impl UpstreamEntry {
    /// An upstream without credentials.
    pub fn anonymous(name: &str, url: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: Some(url.to_owned()),
            urls: Vec::new(),
            hosts: Vec::new(),
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            access: None,
            max_fills: None,
            max_queued_fills: None,
            fill_queue_secs: None,
            index_children: None,
            allow: Vec::new(),
            deny: Vec::new(),
            connect_timeout_secs: None,
            read_timeout_secs: None,
            first_byte_timeout_secs: None,
            tag_ttl_secs: None,
            negative_ttl_secs: None,
            breaker_threshold: None,
            breaker_cooldown_secs: None,
        }
    }

    /// Parses an `--upstream NAME=URL` flag.
    pub fn from_flag(flag: &str) -> Result<Self, ConfigError> {
        match flag.split_once('=') {
            Some((name, url)) if !name.is_empty() && !url.is_empty() => {
                Ok(Self::anonymous(name, url))
            }
            _ => Err(ConfigError::UpstreamFlag(flag.to_owned())),
        }
    }

    /// `url` followed by `urls`.
    pub fn endpoints(&self) -> Vec<String> {
        self.url.iter().chain(&self.urls).cloned().collect()
    }

    /// True when credentials are configured.
    pub fn has_credentials(&self) -> bool {
        self.username.is_some()
    }

    /// The engine's view of this upstream, with its secret resolved.
    pub fn resolve(&self) -> Result<UpstreamConfig, ConfigError> {
        let endpoints = self.endpoints();
        if endpoints.is_empty() {
            return Err(ConfigError::Upstreams(format!(
                "upstream {} has no url",
                self.name
            )));
        }
        let mut config = UpstreamConfig::new(&self.name, String::new());
        config.endpoints = endpoints;
        config.hosts.clone_from(&self.hosts);
        config.allow.clone_from(&self.allow);
        config.max_fills = self.max_fills.unwrap_or(config.max_fills);
        config.max_queued_fills = self.max_queued_fills.unwrap_or(config.max_queued_fills);
        config.index_children = self.index_children.unwrap_or(config.index_children);
        config.deny.clone_from(&self.deny);
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        config.connect_timeout = secs(self.connect_timeout_secs, config.connect_timeout);
        config.read_timeout = secs(self.read_timeout_secs, config.read_timeout);
        config.first_byte_timeout = secs(self.first_byte_timeout_secs, config.first_byte_timeout);
        config.tag_ttl = secs(self.tag_ttl_secs, config.tag_ttl);
        config.negative_ttl = secs(self.negative_ttl_secs, config.negative_ttl);
        config.fill_queue_timeout = secs(self.fill_queue_secs, config.fill_queue_timeout);
        config.breaker_cooldown = secs(self.breaker_cooldown_secs, config.breaker_cooldown);
        config.breaker_threshold = self.breaker_threshold.unwrap_or(config.breaker_threshold);
        let owner = format!("upstream {}", self.name);
        let password = secret::resolve(
            &owner,
            self.password.as_deref(),
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )?;
        config.credentials = match (&self.username, password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p,
            }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Secret {
                    owner,
                    reason: "username and password go together".into(),
                })
            }
        };
        Ok(config)
    }
}
