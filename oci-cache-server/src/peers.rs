//! Replicas that act as one cache: several `oci-cache` processes on one shared storage
//! (S3) download each blob once for the fleet.
//!
//! Each digest has one owner among the replicas (rendezvous hashing over the current
//! members, `membership.rs`). A replica that misses a blob (not stored, no fill of it
//! running here) and does not own it forwards the client's GET to the owner with a peer
//! token (`token.rs`: the shared secret, the upstream and the client identity this replica
//! already checked) and streams the owner's answer (`forward.rs`). A peer request is never
//! forwarded again; a client cannot make one without the secret. When the owner is
//! unreachable or slow, the replica fills the blob itself, so a change of members costs
//! at most a duplicate download, never a failed pull.

mod forward;
mod membership;
mod token;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use oci_cache_core::Digest;

pub(crate) use forward::{Forward, Forwarded, LocalFill};
pub use membership::{normalise, Members, REFRESH};
pub use token::{PeerSecret, PeerTokenError, MAX_SKEW, PEER_HEADER};

use crate::auth::Identity;

/// Where the members come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerSource {
    /// A fixed list of base URLs (`http://host:port`).
    Static(Vec<String>),
    /// `host:port` whose addresses (a headless Service) are the members, refreshed.
    Dns(String),
}

/// How a replica works with its peers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PeerConfig {
    /// The members.
    pub source: PeerSource,
    /// This replica's own base URL, as the others know it.
    pub me: String,
    /// The shared secret.
    pub secret: PeerSecret,
    /// How long the owner may take to answer (headers) before this replica fills itself.
    pub answer_timeout: Duration,
    /// How long connecting to the owner may take.
    pub connect_timeout: Duration,
}

impl PeerConfig {
    /// Peers from `source`, this replica being `me`, with default timeouts (5 s to answer,
    /// 1 s to connect).
    pub fn new(source: PeerSource, me: &str, secret: PeerSecret) -> Self {
        Self {
            source,
            me: normalise(me),
            secret,
            answer_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// Why peers could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The HTTP client for peer requests could not be built.
    #[error("peer HTTP client: {0}")]
    Client(String),
}

/// Counters of peer work.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Misses forwarded to their owner and answered by it.
    pub forwarded: AtomicU64,
    /// Misses filled here because the owner could not be used.
    pub fallbacks: AtomicU64,
    /// Forwarded answers the owner broke off, finished from a fill here.
    pub resumed: AtomicU64,
    /// Peer requests this replica answered as the owner.
    pub served: AtomicU64,
}

/// This replica's view of its peers.
#[derive(Debug)]
pub struct Peers {
    members: Members,
    source: PeerSource,
    me: String,
    secret: PeerSecret,
    client: reqwest::Client,
    answer_timeout: Duration,
    stats: PeerStats,
}

impl Peers {
    /// Peers as `config` says; call [`Peers::refresh`] to follow a DNS source.
    pub fn new(config: PeerConfig) -> Result<Arc<Self>, PeerError> {
        // reqwest needs a rustls provider even for plain http; the upstream clients use the
        // same one.
        oci_cache_core::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PeerError::Client(e.to_string()))?;
        let members = match &config.source {
            PeerSource::Static(urls) => Members::new(urls.iter().cloned()),
            PeerSource::Dns(_) => Members::default(),
        };
        Ok(Arc::new(Self {
            members,
            source: config.source,
            me: config.me,
            secret: config.secret,
            client,
            answer_timeout: config.answer_timeout,
            stats: PeerStats::default(),
        }))
    }

    /// For a DNS source: resolves it now, then every [`REFRESH`] in a task that ends when
    /// the `Peers` are dropped (a failed lookup keeps the last members). `None` for a
    /// static list.
    pub async fn refresh(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let PeerSource::Dns(name) = &self.source else {
            return None;
        };
        let name = name.clone();
        self.resolve_once(&name).await;
        let weak: Weak<Self> = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(peers) = weak.upgrade() else { return };
                peers.resolve_once(&name).await;
            }
        }))
    }

    async fn resolve_once(&self, name: &str) {
        match membership::resolve(name).await {
            Ok(urls) if !urls.is_empty() => self.members.set(urls),
            Ok(_) => tracing::warn!(
                name,
                "peer DNS name has no addresses; keeping the last members"
            ),
            Err(e) => {
                tracing::warn!(name, error = %e, "peer DNS lookup failed; keeping the last members");
            }
        }
    }

    /// The current members.
    pub fn members(&self) -> Arc<Vec<String>> {
        self.members.list()
    }

    /// This replica's base URL.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether this replica is among the members (if not, it owns nothing and forwards
    /// every miss).
    pub fn includes_me(&self) -> bool {
        self.members.list().contains(&self.me)
    }

    /// The owner of `digest` when it is another replica.
    pub fn owner_elsewhere(&self, digest: &Digest) -> Option<String> {
        self.members.owner(digest).filter(|owner| *owner != self.me)
    }

    /// The counters.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }

    /// The upstream and client identity a peer token vouches for.
    pub(crate) fn verify(
        &self,
        token: &str,
        method: &str,
        path: &str,
    ) -> Result<(String, Identity), PeerTokenError> {
        self.secret.verify(token, method, path)
    }
}
