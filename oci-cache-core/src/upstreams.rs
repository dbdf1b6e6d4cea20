//! The closed list of upstreams and the choice of one for a request: containerd's `?ns=`,
//! else a path prefix naming an upstream, else the `Host` header, else the default. The
//! cache never dials a host a client names.

use std::sync::Arc;

use crate::name::{NameError, RepositoryName};
use crate::{UpstreamClient, UpstreamConfig, UpstreamError};

/// Names that all mean Docker Hub.
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Why a request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// `?ns=` names no configured upstream.
    #[error("no upstream named {ns:?}")]
    UnknownUpstream {
        /// The namespace asked for (truncated to 64 characters).
        ns: String,
    },
    /// The repository name is invalid.
    #[error("{0}")]
    Name(#[from] NameError),
    /// The upstream's allow and deny patterns do not let this repository be pulled.
    #[error("repository {repo:?} may not be pulled through this upstream")]
    Denied {
        /// The repository.
        repo: String,
    },
}

/// The configured upstreams; the first is the default.
#[derive(Debug)]
pub struct Upstreams {
    clients: Vec<Arc<UpstreamClient>>,
}

impl Upstreams {
    /// Builds a client for each upstream. At least one is needed.
    pub fn new(configs: Vec<UpstreamConfig>) -> Result<Self, UpstreamError> {
        if configs.is_empty() {
            return Err(UpstreamError::InvalidUrl { url: String::new() });
        }
        let clients = configs
            .into_iter()
            .map(|c| UpstreamClient::new(c).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self { clients })
    }

    /// All upstreams, the default first.
    pub fn all(&self) -> &[Arc<UpstreamClient>] {
        &self.clients
    }

    /// The upstream called `name` (Docker Hub's aliases count as one name).
    pub fn by_name(&self, name: &str) -> Option<&Arc<UpstreamClient>> {
        let hub = DOCKER_HUB_ALIASES.contains(&name);
        self.clients
            .iter()
            .find(|c| c.name() == name || (hub && DOCKER_HUB_ALIASES.contains(&c.name())))
    }

    /// The upstream that lists `host` (a `Host` header, port ignored) among its hosts.
    fn by_host(&self, host: &str) -> Option<&Arc<UpstreamClient>> {
        let host = strip_port(host);
        self.clients.iter().find(|c| {
            c.config()
                .hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
        })
    }

    /// Chooses the upstream for a request (by `?ns=`, path prefix, `Host`, else the
    /// default) and the repository name to ask it for, refusing a name the upstream's allow
    /// and deny patterns do not permit.
    pub fn select(
        &self,
        ns: Option<&str>,
        host: Option<&str>,
        raw_name: &str,
    ) -> Result<(Arc<UpstreamClient>, RepositoryName), RouteError> {
        let (client, name) = self.route(ns, host, raw_name)?;
        if !client.permits(name.as_str()) {
            return Err(RouteError::Denied {
                repo: name.as_str().to_owned(),
            });
        }
        Ok((client, name))
    }

    /// [`Upstreams::select`] without the allow and deny patterns, for a caller that must
    /// decide who is asking before it reveals whether a name is denied (then
    /// [`UpstreamClient::permits`] decides).
    pub fn route(
        &self,
        ns: Option<&str>,
        host: Option<&str>,
        raw_name: &str,
    ) -> Result<(Arc<UpstreamClient>, RepositoryName), RouteError> {
        let (client, name) = if let Some(ns) = ns {
            let client = self
                .by_name(ns)
                .ok_or_else(|| RouteError::UnknownUpstream {
                    ns: ns.chars().take(64).collect(),
                })?;
            (client, raw_name)
        } else {
            match raw_name.split_once('/') {
                Some((prefix, rest)) if self.by_name(prefix).is_some() => {
                    (self.by_name(prefix).ok_or(NameError::InvalidName)?, rest)
                }
                _ => (
                    host.and_then(|h| self.by_host(h))
                        .unwrap_or(&self.clients[0]),
                    raw_name,
                ),
            }
        };
        let name = if client.config().is_docker_hub() && !name.contains('/') {
            RepositoryName::parse(&format!("library/{name}"))?
        } else {
            RepositoryName::parse(name)?
        };
        Ok((Arc::clone(client), name))
    }
}

/// `host` without a `:port` suffix (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port))
            if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') =>
        {
            h
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams() -> Upstreams {
        let mut quay = UpstreamConfig::new("quay.io", "https://quay.io");
        quay.hosts = vec!["quay-cache.internal".into()];
        Upstreams::new(vec![
            UpstreamConfig::new("docker.io", "https://registry-1.docker.io"),
            quay,
        ])
        .unwrap()
    }

    impl Upstreams {
        fn select_ns(
            &self,
            ns: Option<&str>,
            name: &str,
        ) -> Result<(Arc<UpstreamClient>, RepositoryName), RouteError> {
            self.select(ns, None, name)
        }
    }

    #[test]
    fn host_header_selects_after_ns_and_prefix() {
        let u = upstreams();
        let (c, n) = u
            .select(None, Some("quay-cache.internal:5000"), "org/app")
            .unwrap();
        assert_eq!((c.name(), n.as_str()), ("quay.io", "org/app"));
        let (c, _) = u
            .select(Some("docker.io"), Some("quay-cache.internal"), "org/app")
            .unwrap();
        assert_eq!(c.name(), "docker.io");
        let (c, _) = u.select(None, Some("other.internal"), "org/app").unwrap();
        assert_eq!(c.name(), "docker.io");
        assert_eq!(strip_port("[::1]:5000"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn ns_wins_then_prefix_then_default() {
        let u = upstreams();
        let (c, n) = u.select_ns(Some("quay.io"), "docker.io/x").unwrap();
        assert_eq!((c.name(), n.as_str()), ("quay.io", "docker.io/x"));
        let (c, n) = u.select_ns(None, "quay.io/org/app").unwrap();
        assert_eq!((c.name(), n.as_str()), ("quay.io", "org/app"));
        let (c, n) = u.select_ns(None, "org/app").unwrap();
        assert_eq!((c.name(), n.as_str()), ("docker.io", "org/app"));
    }

    #[test]
    fn docker_hub_aliases_and_library_prefix() {
        let u = upstreams();
        let (c, n) = u.select_ns(Some("index.docker.io"), "alpine").unwrap();
        assert_eq!((c.name(), n.as_str()), ("docker.io", "library/alpine"));
        let (_, n) = u.select_ns(None, "registry-1.docker.io/alpine").unwrap();
        assert_eq!(n.as_str(), "library/alpine");
        let (_, n) = u.select_ns(Some("quay.io"), "alpine").unwrap();
        assert_eq!(n.as_str(), "alpine");
    }

    #[test]
    fn unknown_ns_and_bad_names_refused() {
        let u = upstreams();
        assert!(matches!(
            u.select_ns(Some("evil.example"), "x"),
            Err(RouteError::UnknownUpstream { .. })
        ));
        assert!(matches!(
            u.select_ns(None, "Bad/Name"),
            Err(RouteError::Name(_))
        ));
    }
}
