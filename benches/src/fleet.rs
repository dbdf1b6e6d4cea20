//! Three replicas on one S3 bucket, as platform teams run them: oci-cache's fleet (peers,
//! with or without the local tier) or CNCF distribution in proxy mode with S3 storage, all
//! in front of one upstream. Stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;

use oci_cache_testkit::fleet::{write_fleet_config, FleetConfig};
use oci_cache_testkit::s3::{S3Server, S3_ACCESS_KEY, S3_SECRET_KEY};
use oci_cache_testkit::{CacheOptions, OciCache, RegistryOptions, RegistryS3};
use tempfile::TempDir;

use crate::{procfs, start_distribution, BoxError};

/// Which fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FleetKind {
    /// oci-cache replicas told of each other, with their local tier (the default).
    OciCache,
    /// oci-cache replicas told of each other, with `local_tier_bytes = 0`: every hit
    /// reads the bucket.
    OciCacheNoTier,
    /// CNCF distribution proxies on the bucket (no coordination between them).
    Distribution,
}

impl FleetKind {
    /// The three fleets, in the order of the report's columns.
    pub const ALL: [Self; 3] = [Self::OciCache, Self::OciCacheNoTier, Self::Distribution];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::OciCache => "oci-cache",
            Self::OciCacheNoTier => "oci-cache, no local tier",
            Self::Distribution => "distribution",
        }
    }
}

#[derive(Debug)]
enum Member {
    Cache(OciCache),
    Dist(oci_cache_testkit::Registry),
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    /// Where each replica listens.
    pub addrs: Vec<SocketAddr>,
    members: Vec<Member>,
    _dir: TempDir,
}

impl Fleet {
    /// Starts `n` replicas of `kind` on a new bucket `bucket` of `s3`, mirroring
    /// `upstream` as `docker.io`, and waits until each answers.
    pub async fn start(
        kind: FleetKind,
        binaries: (&Path, &Path),
        upstream: SocketAddr,
        s3: &S3Server,
        bucket: &str,
        n: usize,
    ) -> Result<Self, BoxError> {
        s3.create_bucket(bucket)?;
        let dir = tempfile::Builder::new().prefix("fleet-bench-").tempdir()?;
        let mut members = Vec::new();
        match kind {
            FleetKind::Distribution => {
                for _ in 0..n {
                    let registry = start_distribution(RegistryOptions {
                        binary: Some(binaries.1.to_path_buf()),
                        log_level: "warn",
                        access_log: false,
                        proxy_of: Some(format!("http://{upstream}")),
                        dir_prefix: "fleet-bench-dist-",
                        s3: Some(RegistryS3 {
                            endpoint: s3.endpoint(),
                            bucket: bucket.to_owned(),
                            root: "/fleet".to_owned(),
                            access_key: S3_ACCESS_KEY.to_owned(),
                            secret_key: S3_SECRET_KEY.to_owned(),
                        }),
                        ..RegistryOptions::default()
                    })
                    .await?;
                    members.push(Member::Dist(registry));
                }
            }
            FleetKind::OciCache | FleetKind::OciCacheNoTier => {
                let tier = if kind == FleetKind::OciCache {
                    ""
                } else {
                    "local_tier_bytes = 0\n"
                };
                members = tokio::task::block_in_place(|| {
                    start_oci_fleet(binaries.0, upstream, s3, bucket, n, tier, &dir)
                })?;
            }
        }
        let addrs = members
            .iter()
            .map(|m| match m {
                Member::Cache(c) => c.addr(),
                Member::Dist(d) => d.addr(),
            })
            .collect();
        Ok(Self {
            addrs,
            members,
            _dir: dir,
        })
    }

    /// CPU seconds (user + system) the replicas have used so far, together.
    pub fn cpu_seconds(&mut self, ticks: f64) -> Result<f64, BoxError> {
        let mut total = 0.0;
        for member in &mut self.members {
            let pid = match member {
                Member::Cache(c) => {
                    c.check_running()?;
                    c.pid()
                }
                Member::Dist(d) => {
                    d.check_running()?;
                    d.pid()
                }
            };
            total += procfs::cpu_seconds(pid.ok_or("a replica was stopped")?, ticks)?;
        }
        Ok(total)
    }
}

/// Starts `n` oci-cache replicas on `s3://BUCKET/fleet`, each told every replica's URL.
fn start_oci_fleet(
    binary: &Path,
    upstream: SocketAddr,
    s3: &S3Server,
    bucket: &str,
    n: usize,
    extra: &str,
    dir: &TempDir,
) -> Result<Vec<Member>, BoxError> {
    let FleetConfig { ports, config } =
        write_fleet_config(dir.path(), n, bucket, &format!("http://{upstream}"), extra)?;
    let env: Vec<(String, String)> = s3
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let mut members = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let options = CacheOptions {
            config: Some(config.clone()),
            env: env.clone(),
            port: Some(*port),
            ..CacheOptions::default()
        };
        let name = format!("replica{i}");
        let cache = OciCache::start(binary, &dir.path().join(&name), dir.path(), &name, &options)?;
        members.push(Member::Cache(cache));
    }
    Ok(members)
}
