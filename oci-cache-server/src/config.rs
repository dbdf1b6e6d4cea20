//! The `oci-cache` configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! listen = "0.0.0.0:5000"
//! data_dir = "./data"
//! # storage = "s3://my-bucket/oci-cache"  # AWS_* environment for endpoint, region, keys
//!
//! [limits]                                # client connections
//! header_timeout_secs = 20                 # to send a request head
//! idle_timeout_secs = 75                   # keep-alive silence between requests
//! stalled_write_timeout_secs = 60          # a client reading nothing of a response
//! # max_open_connections = 4096            # default 4 x max_connections
//!
//! [gc]                                    # eviction (runs while serving)
//! max_bytes = 50_000_000_000               # high/low watermarks 0.9/0.8 of it
//! max_age_secs = 604800                    # unused images go after 7 days (0: never)
//!
//! [tls]                                   # optional: HTTPS, files reloaded on change
//! cert_file = "/etc/oci-cache/tls.crt"
//! key_file = "/etc/oci-cache/tls.key"
//!
//! [auth]                                  # optional client access control
//! htpasswd = "/etc/oci-cache/htpasswd"    # bcrypt (htpasswd -B)
//! [[auth.tokens]]
//! user = "ci"
//! token_env = "OCI_CACHE_CI_TOKEN"         # or token = "...", or token_file = "..."
//!
//! [[upstreams]]
//! name = "docker.io"
//! urls = ["https://registry-1.docker.io"]  # or url = "..."; tried in order
//! hosts = ["dockerhub-cache.internal"]     # Host header names that select it
//! username = "me"
//! password_env = "DOCKERHUB_TOKEN"         # or password = "...", or password_file = "..."
//! access = "authenticated"                 # "anonymous", "authenticated" or ["alice", "bob"]
//! ```

mod access;
mod gc;
mod limits;
mod peers;
mod place;
mod secret;
mod tls;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use oci_cache_core::UpstreamConfig;
use serde::Deserialize;

pub use access::{AccessEntry, AuthSection, TokenEntry};
pub use gc::GcSection;
pub use limits::LimitsSection;
use place::{describe_place, place_of};
pub use tls::TlsSection;
pub use upstream::UpstreamEntry;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}{where_}: {message}", where_ = describe_place(*line, *column, key.as_deref()))]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line of the error (from 1), when the parser says.
        line: Option<usize>,
        /// Its column (from 1).
        column: Option<usize>,
        /// The key at that place, as `section.key`, when there is one.
        key: Option<String>,
        /// The parser's message.
        message: String,
    },
    /// An `--upstream` flag is not `NAME=URL`.
    #[error("--upstream must be NAME=URL, got {0:?}")]
    UpstreamFlag(String),
    /// A secret could not be read.
    #[error("{owner}: cannot read secret: {reason}")]
    Secret {
        /// The upstream or token user it belongs to.
        owner: String,
        /// Why (never the secret itself).
        reason: String,
    },
    /// The upstream list is unusable.
    #[error("invalid upstream list: {0}")]
    Upstreams(String),
    /// The `[gc]` settings are unusable.
    #[error("gc: {0}")]
    Gc(String),
    /// The access-control settings are unusable or unsafe.
    #[error("access control: {0}")]
    Access(String),
    /// The peer settings are unusable or unsafe.
    #[error("peers: {0}")]
    Peers(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A second address for the operator endpoints (`/metrics`, `/readyz`, the status page
    /// at `/`); when set, the main listener serves the API and `/healthz` only.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Directory of the filesystem storage, and of the local spool in every case.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `s3://BUCKET/PREFIX` to keep blobs and tags in S3 (endpoint, region and keys from
    /// the usual AWS environment variables); absent: the filesystem under `data_dir`.
    #[serde(default)]
    pub storage: Option<String>,
    /// With S3 storage: bytes of recently used blobs kept on the local disk (under
    /// `data_dir/local-tier`) and read there first, least recently used out first
    /// (default 10 GiB; 0: none). Ignored with filesystem storage.
    #[serde(default = "default_local_tier_bytes")]
    pub local_tier_bytes: u64,
    /// Requests served at once (default 1024); more wait for a slot. Idle connections and
    /// health probes take none (see `[limits]`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connection timeouts and the cap on open connections.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Eviction: storage limits and schedule.
    #[serde(default)]
    pub gc: GcSection,
    /// Client access control; absent means every upstream without credentials is open.
    #[serde(default)]
    pub auth: Option<AuthSection>,
    /// HTTPS on the listeners; absent means plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Upstreams; the first is the default.
    #[serde(default = "default_upstreams")]
    pub upstreams: Vec<UpstreamEntry>,
    /// The other replicas (and this one) on the same storage, as base URLs: each blob is
    /// then downloaded by one of them for all (see `peers_dns` for a headless Service).
    #[serde(default)]
    pub peers: Vec<String>,
    /// `host:port` whose addresses are the replicas (a headless Service), resolved again
    /// every 10 s; instead of `peers`.
    #[serde(default)]
    pub peers_dns: Option<String>,
    /// A file holding the replicas' shared secret (at least 32 bytes); needed with peers.
    #[serde(default)]
    pub peer_secret_file: Option<PathBuf>,
    /// This replica's URL as the others reach it (default `http://` and `listen`, which
    /// must then not be a wildcard address).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Seconds the owner replica may take to answer a forwarded miss before this replica
    /// downloads the blob itself (default 5).
    #[serde(default = "default_peer_timeout_secs")]
    pub peer_timeout_secs: u64,
}

fn default_local_tier_bytes() -> u64 {
    10 << 30
}

fn default_peer_timeout_secs() -> u64 {
    5
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5000))
}

fn default_max_connections() -> usize {
    1024
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_upstreams() -> Vec<UpstreamEntry> {
    vec![UpstreamEntry::anonymous(
        "docker.io",
        "https://registry-1.docker.io",
    )]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: None,
            data_dir: default_data_dir(),
            storage: None,
            local_tier_bytes: default_local_tier_bytes(),
            max_connections: default_max_connections(),
            limits: LimitsSection::default(),
            gc: GcSection::default(),
            auth: None,
            tls: None,
            upstreams: default_upstreams(),
            peers: Vec::new(),
            peers_dns: None,
            peer_secret_file: None,
            advertise: None,
            peer_timeout_secs: default_peer_timeout_secs(),
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| {
            let place = e.span().map(|span| place_of(&text, span.start));
            let key = place.as_ref().and_then(|p| p.2.clone());
            // A type error quotes the value: never a secret's.
            let secret = key.as_deref().is_some_and(|k| {
                ["password", "token", "secret"]
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s))
            });
            let message = if secret {
                "invalid value (not shown: the key holds a secret)".to_owned()
            } else {
                e.message().to_owned()
            };
            ConfigError::Parse {
                path: path.to_owned(),
                line: place.as_ref().map(|p| p.0),
                column: place.as_ref().map(|p| p.1),
                key,
                message,
            }
        })
    }

    /// The engine's upstream list, checked: at least one, names unique.
    pub fn upstream_configs(&self) -> Result<Vec<UpstreamConfig>, ConfigError> {
        if self.upstreams.is_empty() {
            return Err(ConfigError::Upstreams("no upstream configured".into()));
        }
        let mut names: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
        names.sort_unstable();
        let duplicate = names.windows(2).find_map(|w| match w {
            [a, b] if a == b => Some(*a),
            _ => None,
        });
        if let Some(name) = duplicate {
            return Err(ConfigError::Upstreams(format!("duplicate name {name}")));
        }
        self.upstreams.iter().map(UpstreamEntry::resolve).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_hides_the_password() {
        let c: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:5001"
            data_dir = "/var/cache/oci"
            [[upstreams]]
            name = "ghcr.io"
            urls = ["https://ghcr.io", "https://ghcr-backup.internal"]
            hosts = ["ghcr-cache.internal"]
            username = "bot"
            password = "s3cret"
            access = ["alice"]
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 5001);
        let u = &c.upstream_configs().unwrap()[0];
        assert_eq!(u.credentials.as_ref().unwrap().password, "s3cret");
        assert_eq!(u.endpoints.len(), 2);
        assert_eq!(u.hosts, ["ghcr-cache.internal"]);
        assert!(!format!("{c:?} {u:?}").contains("s3cret"));
    }

    #[test]
    fn defaults_to_docker_hub_and_rejects_bad_flags() {
        let c = Config::default();
        assert_eq!(
            c.upstream_configs().unwrap()[0].endpoints,
            ["https://registry-1.docker.io"]
        );
        assert!(UpstreamEntry::from_flag("novalue").is_err());
        assert_eq!(UpstreamEntry::from_flag("a=http://x").unwrap().name, "a");
    }

    #[test]
    fn unknown_keys_duplicates_and_missing_urls_refused() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let mut c = Config::default();
        c.upstreams.push(c.upstreams[0].clone());
        assert!(c.upstream_configs().is_err());
        let c: Config = toml::from_str("[[upstreams]]\nname = \"x\"\n").unwrap();
        assert!(c.upstream_configs().is_err());
    }
}
