//! The two pull-through caches compared side by side, behind one interface.

use std::net::SocketAddr;
use std::path::Path;

use crate::procfs;
use crate::upstream::DistProxy;
use crate::{BoxError, Cache};

/// Which cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `oci-cache serve`.
    OciCache,
    /// CNCF distribution in proxy mode.
    Distribution,
}

impl Kind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::OciCache, Self::Distribution];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::OciCache => "oci-cache",
            Self::Distribution => "distribution",
        }
    }
}

/// Paths of the two binaries.
#[derive(Debug, Clone)]
pub struct Binaries<'a> {
    /// The `oci-cache` executable.
    pub oci_cache: &'a Path,
    /// The `docker-registry` executable.
    pub registry: &'a Path,
}

/// A running cache of either kind, with a fresh data directory; stopped when dropped.
#[derive(Debug)]
pub enum Subject {
    /// `oci-cache serve`.
    OciCache(Cache),
    /// `docker-registry serve` in proxy mode.
    Distribution(DistProxy),
}

impl Subject {
    /// Starts a cache of `kind` in front of `upstream` and waits until it answers.
    pub async fn start(
        kind: Kind,
        bins: &Binaries<'_>,
        upstream: SocketAddr,
    ) -> Result<Self, BoxError> {
        Ok(match kind {
            Kind::OciCache => Self::OciCache(Cache::start(bins.oci_cache, upstream).await?),
            Kind::Distribution => {
                Self::Distribution(DistProxy::start(bins.registry, upstream).await?)
            }
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::OciCache(c) => c.addr,
            Self::Distribution(d) => d.addr,
        }
    }

    /// The process id (an error if it has exited).
    pub fn pid(&mut self) -> Result<u32, BoxError> {
        match self {
            Self::OciCache(c) => c.pid(),
            Self::Distribution(d) => d.pid(),
        }
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_seconds(&mut self, ticks: f64) -> Result<f64, BoxError> {
        procfs::cpu_seconds(self.pid()?, ticks)
    }

    /// Peak RSS so far, KiB.
    pub fn peak_rss_kib(&mut self) -> Result<u64, BoxError> {
        procfs::peak_rss_kib(self.pid()?)
    }
}
