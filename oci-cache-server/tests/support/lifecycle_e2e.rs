//! Helpers shared by the storage lifecycle tests (e2e_eviction, e2e_full_disk,
//! e2e_prefetch).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::big_blob::{push_blob_file, random_file};
use super::cache::run_cli;
use super::cache_home::{stored_blob_path, CacheHome, CacheRun};
use super::lifecycle::{
    manifest_blobs, metric, oci_cache_output, push_multilayer, scrape_metrics, set_mtime,
    stored_blob_bytes, PausedDownload, PushedImage, TmpfsMount,
};
use super::{
    dead_url, fetch, http_status, sha256_bytes, short_tempdir, skopeo_copy_to_dir,
    skopeo_copy_to_oci_dir, skopeo_inspect_raw, wait_until, write_hosts_toml, Auth, AuthRegistry,
    Cache, Containerd, Registry, SeedOptions, Seeded, PUSH_CREDS,
};

pub const MIB: u64 = 1024 * 1024;
pub const EVICTED_BLOBS: &str = "oci_cache_evicted_blobs_total";
pub const EVICTED_BYTES: &str = "oci_cache_evicted_bytes_total";
pub const STORED_BYTES: &str = "oci_cache_stored_bytes";
pub const PASS_THROUGH: &str = "oci_cache_pass_through_bytes_total";
pub const BLOB_HITS: &str = "oci_cache_lookups_total{kind=\"blob\",result=\"hit\"}";
pub const FILLS_IN_FLIGHT: &str = "oci_cache_fills_in_flight";
/// What the cache logs at the end of each eviction pass that evicted something (once its
/// deletions are done).
pub const PASS_LOGGED: &str = "eviction pass";

/// A cache config: one upstream (the default) with extra keys, and a `[gc]` section.
pub fn config(name: &str, url: &str, upstream_extra: &str, gc: &str) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nurl = \"{url}\"\n{upstream_extra}\n\n[gc]\n{gc}\n")
}

/// `max_bytes * fraction` as the eviction planner computes it.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation
)]
pub fn watermark(max_bytes: u64, fraction: f64) -> u64 {
    (max_bytes as f64 * fraction) as u64
}

/// Copies `image` through the cache into a fresh OCI layout under `out`
/// (blobs verified) and checks the manifest digest.
pub fn pull_through(
    cache: &Cache,
    image: &PushedImage,
    out: &Path,
    what: &str,
    logs: &dyn Fn() -> String,
) {
    let dest = out.join(format!("{what}-{}", image.name.replace('/', "_")));
    let digest = skopeo_copy_to_oci_dir(&cache.docker_ref(&image.name_tag()), &dest, false, None)
        .unwrap_or_else(|e| {
            panic!(
                "{what}: pulling {} through the cache failed: {e}\n{}",
                image.name,
                logs()
            )
        });
    assert_eq!(
        digest, image.digest,
        "{what}: {} changed on the way",
        image.name
    );
}

/// Which of `paths` exist.
pub fn present(paths: &[std::path::PathBuf]) -> Vec<bool> {
    paths.iter().map(|p| p.is_file()).collect()
}

/// How many eviction passes that evicted something have ended, by the cache's log.
pub fn evicting_passes_ended(log: &str) -> usize {
    log.lines().filter(|l| l.contains(PASS_LOGGED)).count()
}
