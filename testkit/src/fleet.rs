//! The configuration of a fleet of `oci-cache` replicas on one S3 bucket: distinct free
//! ports, a shared peer secret, and one config file naming every replica.

use std::path::{Path, PathBuf};

use crate::net::free_port;

/// A fleet's ports (one per replica, in the order of its `peers`) and config file.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The port of each replica on 127.0.0.1.
    pub ports: Vec<u16>,
    /// The config file they all read.
    pub config: PathBuf,
}

/// Writes into `dir` the peer secret and the config of `n` replicas keeping blobs in
/// `s3://BUCKET/fleet`, mirroring `upstream_url` as `docker.io`; `extra` goes at the top
/// level of the file (before the upstream).
pub fn write_fleet_config(
    dir: &Path,
    n: usize,
    bucket: &str,
    upstream_url: &str,
    extra: &str,
) -> std::io::Result<FleetConfig> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let secret = dir.join("peer-secret");
    std::fs::write(&secret, "the fleet's shared secret, at least 32 bytes\n")?;
    let peers: Vec<String> = ports
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "storage = \"s3://{bucket}/fleet\"\npeers = [{}]\npeer_secret_file = \"{}\"\n{extra}\n\
             [[upstreams]]\nname = \"docker.io\"\nurl = \"{upstream_url}\"\n",
            peers.join(", "),
            secret.display()
        ),
    )?;
    Ok(FleetConfig { ports, config })
}
