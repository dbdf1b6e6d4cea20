//! The `oci-cache` configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! listen = "0.0.0.0:5000"
//! data_dir = "./data"
//!
//! [[upstreams]]
//! name = "docker.io"
//! url = "https://registry-1.docker.io"
//! # username = "me"
//! # password_env = "DOCKERHUB_TOKEN"   # or password = "...", or password_file = "/run/secrets/hub"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_cache_core::{Credentials, UpstreamConfig};
use serde::Deserialize;

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
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// An `--upstream` flag is not `NAME=URL`.
    #[error("--upstream must be NAME=URL, got {0:?}")]
    UpstreamFlag(String),
    /// A secret could not be read.
    #[error("upstream {upstream}: cannot read password: {reason}")]
    Secret {
        /// The upstream.
        upstream: String,
        /// Why (never the secret itself).
        reason: String,
    },
    /// Two upstreams share a name, or there is none.
    #[error("invalid upstream list: {0}")]
    Upstreams(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the filesystem storage.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Upstreams; the first is the default.
    #[serde(default = "default_upstreams")]
    pub upstreams: Vec<UpstreamEntry>,
}

/// One upstream in the file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    /// Name clients select it by, e.g. `docker.io`.
    pub name: String,
    /// Base URL.
    pub url: String,
    /// User name for Basic or token auth.
    pub username: Option<String>,
    /// Password inline (prefer `password_env` or `password_file`).
    pub password: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (e.g. a mounted Kubernetes secret).
    pub password_file: Option<PathBuf>,
    /// Connect timeout in seconds (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// Read timeout in seconds (default 30).
    pub read_timeout_secs: Option<u64>,
}

impl std::fmt::Debug for UpstreamEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamEntry")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5000))
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
            data_dir: default_data_dir(),
            upstreams: default_upstreams(),
        }
    }
}

impl UpstreamEntry {
    /// An upstream without credentials.
    pub fn anonymous(name: &str, url: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            connect_timeout_secs: None,
            read_timeout_secs: None,
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

    /// The engine's view of this upstream, with its secret resolved.
    pub fn resolve(&self) -> Result<UpstreamConfig, ConfigError> {
        let mut config = UpstreamConfig::new(&self.name, &self.url);
        if let Some(s) = self.connect_timeout_secs {
            config.connect_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.read_timeout_secs {
            config.read_timeout = Duration::from_secs(s);
        }
        let secret_err = |reason: String| ConfigError::Secret {
            upstream: self.name.clone(),
            reason,
        };
        let password = match (&self.password, &self.password_env, &self.password_file) {
            (Some(p), None, None) => Some(p.clone()),
            (None, Some(var), None) => Some(
                std::env::var(var)
                    .map_err(|_| secret_err(format!("environment variable {var} is not set")))?,
            ),
            (None, None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| secret_err(format!("{}: {e}", path.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None, None) => None,
            _ => {
                return Err(secret_err(
                    "set only one of password, password_env, password_file".into(),
                ))
            }
        };
        config.credentials = match (&self.username, password) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.clone(),
                password: p,
            }),
            (None, None) => None,
            _ => return Err(secret_err("username and password go together".into())),
        };
        Ok(config)
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned(),
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
            url = "https://ghcr.io"
            username = "bot"
            password = "s3cret"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 5001);
        let u = &c.upstream_configs().unwrap()[0];
        assert_eq!(u.credentials.as_ref().unwrap().password, "s3cret");
        assert!(!format!("{c:?} {u:?}").contains("s3cret"));
    }

    #[test]
    fn defaults_to_docker_hub_and_rejects_bad_flags() {
        let c = Config::default();
        assert_eq!(c.upstreams[0].url, "https://registry-1.docker.io");
        assert!(UpstreamEntry::from_flag("novalue").is_err());
        assert_eq!(UpstreamEntry::from_flag("a=http://x").unwrap().name, "a");
    }

    #[test]
    fn unknown_keys_and_duplicates_refused() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let mut c = Config::default();
        c.upstreams.push(c.upstreams[0].clone());
        assert!(c.upstream_configs().is_err());
    }
}
